"""The notebooks' code run without Jupyter (benchmarks/notebook_code.py); their cells checked against the lecture."""

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from torchvision import transforms

from benchmarks.notebook_code import cells_defining, code_cells, compile_cell, parse_override, run
from tests.test_notebooks import NOTEBOOKS, ROOT


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_code_cell_compiles_once_the_ipython_lines_are_skipped(notebook):
    """The Colab cell's indented `!git clone` and `%pip` lines and the `%watermark` magics become `pass`."""
    for index, (source, _) in enumerate(code_cells(ROOT / notebook)):
        compile(source, f"<{notebook}, code cell {index + 1}>", "exec")


def run_cells(notebook: str, marker: str, namespace: dict, **overrides) -> dict:
    """Execute the notebook's parameters cell, then ``overrides`` (as papermill's -p), then the code cells containing
    ``marker``, in ``namespace``."""
    for number, (source, tags) in enumerate(code_cells(ROOT / notebook), start=1):
        if "parameters" in tags or marker in source:
            exec(compile_cell(source, ROOT / notebook, number), namespace)
        if "parameters" in tags:
            namespace.update(overrides)
    return namespace


@pytest.mark.parametrize(("image_size", "resized"), [(64, 70), (32, 35)])
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_each_notebook_transforms_its_images_as_the_lecture_does(notebook, image_size, resized):
    """Training images are resized to 70x70 and cropped at a random place to 64x64 (at IMAGE_SIZE 32: 35 and 32);
    evaluation images get the same resize and the centre crop, so that the test set is scored the same way every
    time. The main notebook normalizes with 0.5, the standardized one with the channel statistics it computed
    (planted: either crop swapped for the other, or a resize to 72, passed every test, smoke notebooks included)."""
    channel_mean, channel_std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)  # stand-ins for the computed statistics
    namespace = run_cells(notebook, "train_transforms = ", {"torch": torch, "transforms": transforms,
                                                            "CHANNEL_MEAN": channel_mean, "CHANNEL_STD": channel_std},
                          IMAGE_SIZE=image_size)
    mean, std = ((0.5, 0.5, 0.5),) * 2 if notebook == "vgg16-cifar10.ipynb" else (channel_mean, channel_std)

    def steps(compose):
        return [(type(step).__name__, *(getattr(step, name, None) for name in ("size", "mean", "std")))
                for step in compose.transforms]

    for name, crop in (("train_transforms", "RandomCrop"), ("test_transforms", "CenterCrop")):
        assert steps(namespace[name]) == [
            ("Resize", (resized, resized), None, None), (crop, (image_size, image_size), None, None),
            ("ToTensor", None, None, None), ("Normalize", None, mean, std)], name


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_each_notebook_trains_with_the_lectures_optimizer_and_scheduler(notebook):
    """SGD with momentum 0.9 at LEARNING_RATE (here set to 0.05); the rate divided by 10 when the validation accuracy
    stops rising (planted: momentum 0.8, a factor of 0.5, or the lecture's 0.01 whatever LEARNING_RATE says, passed
    every test)."""
    namespace = run_cells(notebook, "optimizer = torch.optim.", {"torch": torch, "model": torch.nn.Linear(2, 2)},
                          LEARNING_RATE=0.05)
    optimizer, scheduler = namespace["optimizer"], namespace["scheduler"]
    assert type(optimizer) is torch.optim.SGD and type(scheduler) is torch.optim.lr_scheduler.ReduceLROnPlateau
    assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["lr"] == 0.05
    assert (scheduler.factor, scheduler.mode) == (0.1, "max") and scheduler.optimizer is optimizer


def lecture_vgg16_layers(num_classes: int) -> list[str]:
    """The lecture's VGG-16, layer by layer as PyTorch prints each: five blocks of 3x3 convolutions with ReLU, each
    block ending in a 2x2 max-pool; pooling to 3x3; three fully connected layers with dropout 0.5 between them."""
    layers, channels = [], 3
    for width, convolutions in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
        for _ in range(convolutions):
            layers += [f"Conv2d({channels}, {width}, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))", "ReLU()"]
            channels = width
        layers.append("MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)")
    layers += ["AdaptiveAvgPool2d(output_size=(3, 3))", "Identity()"]  # Identity: the Dropout2d exercise, off
    for inputs, outputs in ((512 * 3 * 3, 4096), (4096, 4096)):
        layers += [f"Linear(in_features={inputs}, out_features={outputs}, bias=True)", "ReLU()",
                   "Dropout(p=0.5, inplace=False)"]
    return layers + [f"Linear(in_features=4096, out_features={num_classes}, bias=True)"]


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_each_notebook_builds_the_lectures_vgg16_with_kaiming_uniform_weights_and_zero_biases(notebook):
    """The model class is the lesson: its layers and their initialization must be the lecture's (planted: max instead
    of average pooling, a first convolution without padding, or biases of one passed every test)."""
    vgg16 = cells_defining(ROOT / notebook, "class VGG16(")["VGG16"]
    torch.manual_seed(0)
    model = vgg16(num_classes=10)
    layers = [module for module in model.modules() if not list(module.children())]
    assert [str(layer) for layer in layers] == lecture_vgg16_layers(10)
    for layer in layers:
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
            bound = (6 / layer.weight[0].numel()) ** 0.5  # Kaiming uniform for ReLU: U(-sqrt(6 / fan_in), ...)
            assert 0.99 * bound < layer.weight.abs().max() <= bound and not layer.bias.any(), layer
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 10)


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_each_notebook_seeds_with_random_seed_and_builds_the_model_with_dropout2d(notebook):
    """RANDOM_SEED = 7 seeds the run with 7, and DROPOUT2D = 0.2 puts Dropout2d(0.2) in the model (planted: the
    lecture's seed 123 or a Dropout2d rate of 0 written into those cells passed every test: the smoke notebooks run
    with the defaults)."""
    from helper_dataset import CIFAR10_CLASSES
    from helper_evaluation import make_pooling_deterministic, set_all_seeds, set_deterministic

    benchmark, states = torch.backends.cudnn.benchmark, (random.getstate(), np.random.get_state())
    with torch.random.fork_rng():  # the seeds of the tests that follow stay as they were
        torch.manual_seed(0)  # not 7 already
        try:
            run_cells(notebook, "set_all_seeds(RANDOM_SEED)", {"torch": torch, "set_all_seeds": set_all_seeds,
                                                               "set_deterministic": set_deterministic}, RANDOM_SEED=7)
            assert torch.initial_seed() == 7
        finally:
            torch.backends.cudnn.benchmark = benchmark
            random.setstate(states[0])
            np.random.set_state(states[1])
    namespace = {"torch": torch, "VGG16": cells_defining(ROOT / notebook, "class VGG16(")["VGG16"],
                 "CIFAR10_CLASSES": CIFAR10_CLASSES, "make_pooling_deterministic": make_pooling_deterministic}
    model = run_cells(notebook, "model = VGG16(", namespace, DROPOUT2D=0.2, DEVICE=torch.device("cpu"))["model"]
    assert str(model.feature_dropout) == "Dropout2d(p=0.2, inplace=False)"


@pytest.mark.parametrize(("text", "expected"), [
    ("NUM_EPOCHS=50", ("NUM_EPOCHS", 50)), ("SMOKE_TEST=True", ("SMOKE_TEST", True)),
    ("DEVICE=cuda:0", ("DEVICE", "cuda:0")), ("DATA_ROOT=/data/cifar10", ("DATA_ROOT", "/data/cifar10")),
    ("DATA_ROOT=/data/a=b", ("DATA_ROOT", "/data/a=b")),  # the name ends at the first "=", the value keeps the rest
])
def test_an_override_is_a_python_literal_else_the_text_itself(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["NUM_EPOCHS", "=5", "NUM EPOCHS=5", "DATA_ROOT="])
def test_an_override_without_a_name_and_an_equals_sign_is_refused(text):
    """Before: "NUM_EPOCHS" alone set NUM_EPOCHS to the empty string, and the run went on with it. So did
    "DATA_ROOT=", what a shell passes for DATA_ROOT=$DATA with $DATA unset: check_settings accepts an empty
    DATA_ROOT or RESULTS_DIR, which then silently means the current folder."""
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        parse_override(text)


def write_notebook(path, cells):
    """A notebook with the given (source, tags) code cells."""
    notebook = {"cells": [{"cell_type": "code", "source": source, "metadata": {"tags": tags}, "outputs": [],
                           "execution_count": None} for source, tags in cells],
                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(notebook))
    return path


def tiny_notebook(tmp_path):
    """A Colab-style first cell, a parameters cell, then cells that use and change the settings."""
    return write_notebook(tmp_path / "tiny.ipynb", [
        ('import sys\nif "google.colab" in sys.modules:\n    !git clone x\n    %cd x\nSEEN = []', []),
        ('EPOCHS = 1\nNAME = "x"\nOUT = None', ["parameters"]),
        ("SEEN.append((EPOCHS, NAME))\nEPOCHS = EPOCHS * 2", []),
        ("SEEN.append(EPOCHS)\nopen(OUT, 'w').write(repr(SEEN))", []),
    ])


def test_run_applies_the_overrides_once_right_after_the_parameters_cell(tmp_path):
    run(tiny_notebook(tmp_path), {"EPOCHS": 5, "OUT": str(tmp_path / "seen.txt")})
    assert (tmp_path / "seen.txt").read_text() == "[(5, 'x'), 10]"


def test_run_refuses_an_override_that_is_not_a_setting(tmp_path):
    with pytest.raises(SystemExit, match=r"Not settings of .*tiny\.ipynb: \['EPOCH'\]"):
        run(tiny_notebook(tmp_path), {"EPOCH": 5, "OUT": str(tmp_path / "seen.txt")})
    assert not (tmp_path / "seen.txt").exists()


def test_the_script_runs_a_notebook_from_another_folder_with_its_helpers_and_every_override(tmp_path):
    """As the docstring's command: the notebook's folder is on sys.path (its helper_*.py import), every NAME=value
    after the notebook is applied, and the cells run as __main__ (as in Jupyter)."""
    (tmp_path / "course").mkdir()
    (tmp_path / "course" / "helper_here.py").write_text("VALUE = 3\n")
    notebook = write_notebook(tmp_path / "course" / "tiny.ipynb", [
        ("N = 1\nM = 1\nOUT = None", ["parameters"]),
        ("import helper_here\nopen(OUT, 'w').write(repr((N, M, helper_here.VALUE, __name__)))", []),
    ])
    (tmp_path / "elsewhere").mkdir()
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "notebook_code.py"), str(notebook), "N=2", "M=5",
                           f"OUT={tmp_path / 'seen.txt'}"], cwd=tmp_path / "elsewhere", capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "seen.txt").read_text() == "(2, 5, 3, '__main__')"


def test_cells_defining_runs_the_parameters_cell_and_the_named_cells_only(tmp_path):
    """The benchmark's transforms read IMAGE_SIZE from the parameters cell; the training cells must not run."""
    notebook = write_notebook(tmp_path / "tiny.ipynb", [
        ("IMAGE_SIZE = 48", ["parameters"]),
        ("class Net(object):\n    size = IMAGE_SIZE", []),
        ('raise RuntimeError("a cell that was not asked for ran")', []),
    ])
    assert cells_defining(notebook, "class Net(")["Net"].size == 48


def test_a_class_defined_by_a_cell_has_its_own_source_for_the_run_fingerprint_and_for_tracebacks(tmp_path):
    """train_model names a run after the model class's code (inspect.getsource). Compiled under the .ipynb's
    file name, getsource read whatever JSON lines had the cell's line numbers, so a changed model could keep
    an old run's name; tracebacks showed JSON lines too."""
    import inspect
    import traceback

    from helper_train import model_code_fingerprint

    def net_notebook(factor):
        return write_notebook(tmp_path / f"net{factor}.ipynb", [
            ("SIZE = 1", ["parameters"]),
            (f"class Net(object):\n    def forward(self, x):\n        return x * {factor}\n\n"
             "    def fail(self):\n        raise ValueError('from the cell')", []),
        ])

    nets = [cells_defining(net_notebook(factor), "class Net(")["Net"] for factor in (2, 3)]
    assert inspect.getsource(nets[0].forward) == "    def forward(self, x):\n        return x * 2\n"
    assert model_code_fingerprint(nets[0]) != model_code_fingerprint(nets[1])
    with pytest.raises(ValueError) as error:
        nets[0]().fail()
    assert "raise ValueError('from the cell')" in "".join(traceback.format_tb(error.value.__traceback__))
    assert "net2.ipynb, code cell 2" in "".join(traceback.format_tb(error.value.__traceback__))


def test_cells_defining_runs_the_cell_of_each_name_it_is_given(tmp_path):
    """check_determinism.py asks for the model and the transforms, defined in two different cells: it needs both."""
    notebook = write_notebook(tmp_path / "tiny.ipynb", [
        ("IMAGE_SIZE = 48", ["parameters"]),
        ("class Net(object):\n    size = IMAGE_SIZE", []),
        ("train_transforms = ('resize', IMAGE_SIZE)", []),
        ('raise RuntimeError("a cell that was not asked for ran")', []),
    ])
    namespace = cells_defining(notebook, "class Net(", "train_transforms = ")
    assert namespace["Net"].size == 48 and namespace["train_transforms"] == ("resize", 48)


def test_a_raw_cell_is_not_run_as_code(tmp_path):
    """A raw cell (notes kept as they are, nbconvert's pass-through) is text, not Python: only code cells run."""
    notebook = write_notebook(tmp_path / "tiny.ipynb", [("OUT = None", ["parameters"]),
                                                         ("open(OUT, 'w').write('ran')", [])])
    cells = json.loads(notebook.read_text())
    cells["cells"].insert(1, {"cell_type": "raw", "source": "Notes: not Python at all", "metadata": {}})
    notebook.write_text(json.dumps(cells))
    assert [source for source, _ in code_cells(notebook)] == ["OUT = None", "open(OUT, 'w').write('ran')"]
    run(notebook, {"OUT": str(tmp_path / "seen.txt")})
    assert (tmp_path / "seen.txt").read_text() == "ran"
