"""What a student types in the parameters cell: a device or image size the machine or the model cannot use is refused,
with the fix, before any data is loaded."""

import pytest
import torch

from benchmarks.notebook_code import code_cells
from helper_evaluation import choose_device
from tests.test_notebooks import NOTEBOOKS, ROOT


@pytest.fixture
def machine(monkeypatch):
    """Pretend to be a machine with a given number of CUDA GPUs and with or without Apple's MPS."""
    def pretend(gpus=0, mps=False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    return pretend


@pytest.mark.parametrize("gpus, mps, chosen", [(1, True, "cuda"), (0, True, "mps"), (0, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_the_cpu(machine, gpus, mps, chosen):
    machine(gpus, mps)
    assert choose_device("auto") == torch.device(chosen)


def test_a_device_the_machine_has_is_used_as_named(machine):
    machine(gpus=2)
    assert choose_device("cuda:1") == torch.device("cuda", 1)
    assert choose_device("cpu") == torch.device("cpu") and choose_device(torch.device("cpu")) == torch.device("cpu")


def test_the_lectures_second_gpu_on_a_one_gpu_machine_names_the_fix(machine):
    machine(gpus=1)
    with pytest.raises(ValueError, match=r"'cuda:1', but this machine has 1 CUDA GPU\(s\), numbered from 0 to 0\. "
                                         r'Set DEVICE = "auto" or "cuda:0"'):
        choose_device("cuda:1")


@pytest.mark.parametrize("setting", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu_names_the_fix(machine, setting):
    machine(gpus=0, mps=True)
    with pytest.raises(ValueError, match=r"no CUDA GPU .* Set DEVICE = \"auto\" \(or \"cpu\"\); on Colab, choose "
                                         r"Runtime -> Change runtime type -> GPU"):
        choose_device(setting)


def test_mps_without_apple_silicon_names_the_fix(machine):
    machine(gpus=1, mps=False)
    with pytest.raises(ValueError, match="MPS is not available here. Set DEVICE = \"auto\""):
        choose_device("mps")


@pytest.mark.parametrize("setting", ["gpu", "meta", "cuda:x"])
def test_what_is_not_a_device_for_the_notebooks_is_refused(machine, setting):
    machine(gpus=1)
    with pytest.raises(ValueError, match=f"DEVICE = '{setting}'"):
        choose_device(setting)


def run_settings_cells(notebook, **overrides):
    """Execute the parameters cell, apply ``overrides`` as papermill would, then the cell that applies the settings."""
    cells = code_cells(ROOT / notebook)
    [parameters] = [source for source, tags in cells if "parameters" in tags]
    [settings] = [source for source, _ in cells if "choose_device(DEVICE)" in source]
    namespace = {}
    exec(parameters, namespace)
    namespace.update(overrides)
    exec(settings, namespace)
    return namespace


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_settings_cell_applies_auto_and_refuses_what_cannot_run_before_the_data(notebook, machine):
    machine(gpus=0)
    assert run_settings_cells(notebook)["DEVICE"] == torch.device("cpu")
    assert run_settings_cells(notebook, IMAGE_SIZE=32)["IMAGE_SIZE"] == 32
    with pytest.raises(ValueError, match="this machine has no CUDA GPU"):
        run_settings_cells(notebook, DEVICE="cuda:1")
    for size in (16, 31, 64.0, "64"):
        with pytest.raises(ValueError, match=f"IMAGE_SIZE = {size!r}: .* at least 32 pixels. Use 64"):
            run_settings_cells(notebook, IMAGE_SIZE=size)
    sources = [source for source, _ in code_cells(ROOT / notebook)]
    settings_index = [i for i, source in enumerate(sources) if "choose_device(DEVICE)" in source]
    data_index = [i for i, source in enumerate(sources) if "read_cifar10(" in source or "_cifar10(" in source]
    assert settings_index[0] < min(data_index)  # refused before any image is read
