"""What a student types in the parameters cell: a device the machine lacks, or any setting that cannot run, is refused
with the fix before any data is loaded; the settings cells then do what they say."""

import os
import random
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import helper_dataset
import helper_evaluation
import helper_plotting
import helper_train
from benchmarks.notebook_code import cells_defining, code_cells
from helper_dataset import CIFAR10_CLASSES
from helper_evaluation import choose_device
from helper_train import setting_problem
from tests.test_notebooks import NOTEBOOKS, ROOT


@pytest.fixture
def machine(monkeypatch):
    """Pretend to be a machine with a given number of CUDA GPUs and with or without Apple's MPS."""
    def pretend(gpus=0, mps=False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
        if gpus:  # the settings cell prints the GPU's name
            monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Pretend GPU")
    return pretend


@pytest.mark.parametrize("gpus, mps, chosen", [(1, True, "cuda"), (0, True, "mps"), (0, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_the_cpu(machine, gpus, mps, chosen):
    machine(gpus, mps)
    assert choose_device("auto") == torch.device(chosen)


def test_the_messages_for_a_device_the_notebooks_cannot_use_in_full(machine):
    """The fix each message names (planted: a changed sentence passed, the tests matching a few words)."""
    machine(gpus=0, mps=False)
    assert choose_device() == torch.device("cpu")  # the default is "auto"
    with pytest.raises(ValueError) as error:
        choose_device("mps")
    assert str(error.value) == "DEVICE = 'mps': Apple's MPS is not available here. Set DEVICE = \"auto\"."
    with pytest.raises(ValueError) as error:
        choose_device("meta")
    assert str(error.value) == ("DEVICE = 'meta': the notebooks run on \"cpu\", \"cuda\" or \"mps\"; use \"auto\" "
                                "to choose.")


def test_a_device_the_machine_has_is_used_as_named(machine):
    machine(gpus=2)
    assert choose_device("cuda:1") == torch.device("cuda", 1)
    assert choose_device("cpu") == torch.device("cpu") and choose_device(torch.device("cpu")) == torch.device("cpu")


def test_the_lectures_second_gpu_on_a_one_gpu_machine_names_the_fix(machine):
    machine(gpus=1)
    with pytest.raises(ValueError, match=r"'cuda:1': this machine has 1 CUDA GPU\(s\), numbered from 0 to 0\. "
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
    namespace["RESULTS_DIR"] = str(Path(tempfile.gettempdir()) / "vgg16-settings-test")  # not the repository's
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
    for size in (16, 31, 64.0):  # "64" in quotes: see BAD_SETTINGS
        with pytest.raises(ValueError, match=f"IMAGE_SIZE = {size!r}: .* at least 32 pixels. Use 64"):
            run_settings_cells(notebook, IMAGE_SIZE=size)
    sources = [source for source, _ in code_cells(ROOT / notebook)]
    settings_index = [i for i, source in enumerate(sources) if "choose_device(DEVICE)" in source]
    data_index = [i for i, source in enumerate(sources) if "read_cifar10(" in source or "_cifar10(" in source]
    assert settings_index[0] < min(data_index)  # refused before any image is read


BAD_SETTINGS = [  # (setting, value, part of the message): each is refused by the settings cell, before the data
    ("RANDOM_SEED", -1, "0 to 2\\*\\*32 - 1"), ("RANDOM_SEED", 2**32, "0 to 2"), ("RANDOM_SEED", 1.5, "whole number"),
    ("RANDOM_SEED", "7", "text \\(in quotes\\), not a number: write RANDOM_SEED = 7 without the quotes\\.$"),
    ("BATCH_SIZE", 0, "at least 1"), ("BATCH_SIZE", "256", "write BATCH_SIZE = 256 without the quotes\\.$"),
    ("BATCH_SIZE", 3.0, "it must be a whole number of at least 1\\. The lecture uses 256\\.$"),
    ("NUM_EPOCHS", 0, "at least 1"), ("NUM_EPOCHS", 2.5, "whole number"),
    ("NUM_EPOCHS", "2.5", "NUM_EPOCHS = 2.5 without the quotes, and then: it must be a whole number of at least 1"),
    ("NUM_WORKERS", -1, "at least 0"), ("NUM_WORKERS", "two", "whole number of at least 0"),
    ("LEARNING_RATE", 0, "above 0 \\(at 0 no weight changes\\)"), ("LEARNING_RATE", -0.1, "above 0"),
    ("LEARNING_RATE", "0.01", "write LEARNING_RATE = 0.01 without the quotes\\.$"),
    ("LEARNING_RATE", "1e-3", "LEARNING_RATE = 0.001 without"), ("LEARNING_RATE", float("nan"), "above 0"),
    ("LEARNING_RATE", float("inf"), "a finite number"),
    ("DROPOUT2D", -0.1, "at least 0 and below 1"), ("DROPOUT2D", 1.0, "1 would zero every map"),
    ("DROPOUT2D", "0.2", "write DROPOUT2D = 0.2 without the quotes\\.$"),
    ("IMAGE_SIZE", " 64 ", "IMAGE_SIZE = 64 without"),
    ("SMOKE_TEST", "False", 'the string "False" counts as true'), ("CHECKPOINTS", "True", "True or False"),
    ("LIVE_PLOT", 1, "True or False"), ("DETERMINISTIC", "False", "True or False"),
    ("FAST_DATA_PATH", "False", '"auto", True or False'), ("COMPILE", "yes", '"auto", True or False'),
    ("PRECISION", "bf16", '"auto" .* or "float32"'),
    ("LEARNING_RATE", True, "a finite number above 0"), ("DROPOUT2D", True, "1 would zero every map"),
    ("DROPOUT2D", False, "at least 0 and below 1"),  # True is 1 to Python: Dropout2d(p=True) zeroes every map
]


@pytest.mark.parametrize("text, number", [("0.01", 0.01), (" 64", 64), ("1e-3", 0.001), ("-1", -1), ("True", None),
                                          ("[5]", None), ("nan", None), ("0.01.", None), ("", None), (5, None)])
def test_a_number_in_quotes_is_read_as_the_number_it_spells_and_nothing_else_is(text, number):
    """Only a number written as text gets "write it without the quotes": "True" or "[5]" would not run without them."""
    assert helper_train.number_in_quotes(text) == number and type(helper_train.number_in_quotes(text)) is type(number)


@pytest.mark.parametrize("notebook", NOTEBOOKS)
@pytest.mark.parametrize("name, value, message", BAD_SETTINGS)
def test_a_setting_that_cannot_run_is_refused_before_the_data_naming_it_and_the_fix(notebook, machine, name, value,
                                                                                   message):
    machine(gpus=0)
    with pytest.raises(ValueError, match=f"{name} = {re.escape(repr(value))}: .*{message}"):
        run_settings_cells(notebook, **{name: value})


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_wrong_setting_is_named_at_once(notebook, machine):
    machine(gpus=0)
    with pytest.raises(ValueError) as refused:
        run_settings_cells(notebook, LEARNING_RATE=0, DROPOUT2D=1.0, CHECKPOINTS="False")
    assert [line.split(" = ")[0] for line in str(refused.value).splitlines()[1:]] == ["LEARNING_RATE", "DROPOUT2D",
                                                                                    "CHECKPOINTS"]


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_folders_that_cannot_be_used_are_refused_before_the_data(notebook, machine, tmp_path):
    machine(gpus=0)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    with pytest.raises(ValueError, match="RESULTS_DIR = .*Cannot write to RESULTS_DIR .* Choose another RESULTS_DIR"):
        run_settings_cells(notebook, RESULTS_DIR=str(a_file / "results"))
    with pytest.raises(ValueError, match="DATA_ROOT = .*: it is a file, not a folder"):
        run_settings_cells(notebook, DATA_ROOT=str(a_file))


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_paths_of_the_wrong_form_are_refused_with_the_other_problems_not_lost(notebook, machine):
    machine(gpus=0)
    with pytest.raises(ValueError) as refused:
        run_settings_cells(notebook, RESULTS_DIR=None, DATA_ROOT="~/cifar10", DROPOUT2D=10**400, LEARNING_RATE=0)
    message = str(refused.value)
    assert "RESULTS_DIR = None: RESULTS_DIR is a path: write it in quotes" in message
    assert "DATA_ROOT = '~/cifar10': Python does not expand '~'" in message
    assert "DROPOUT2D = 1" in message and "LEARNING_RATE = 0" in message  # no OverflowError or TypeError first
    with pytest.raises(ValueError, match="Choose another RESULTS_DIR that you can write to"):
        run_settings_cells(notebook, RESULTS_DIR="/proc/no-results-here")


def test_my_image_as_a_web_address_or_a_number_says_what_to_give_instead(machine):
    machine(gpus=0)
    with pytest.raises(ValueError, match="MY_IMAGE = 'https://example.com/cat.jpg': a web address is not a file"):
        run_settings_cells(NOTEBOOKS[0], MY_IMAGE="https://example.com/cat.jpg")
    with pytest.raises(ValueError, match="MY_IMAGE = 5: MY_IMAGE is a path: write it in quotes"):
        run_settings_cells(NOTEBOOKS[0], MY_IMAGE=5)


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_settings_that_can_run_pass(notebook, machine, tmp_path):
    machine(gpus=0)
    namespace = run_settings_cells(notebook, RANDOM_SEED=2**32 - 1, BATCH_SIZE=1, NUM_EPOCHS=1, NUM_WORKERS=0,
                                   LEARNING_RATE=1, DROPOUT2D=0.0, FAST_DATA_PATH=True, COMPILE=False,
                                   PRECISION="float32", DETERMINISTIC=True, RESULTS_DIR=str(tmp_path / "new" / "dir"))
    assert namespace["LEARNING_RATE"] == 1 and (tmp_path / "new" / "dir").is_dir()
    assert run_settings_cells(notebook, DROPOUT2D=0.99, RANDOM_SEED=0, LEARNING_RATE=0.5)["DROPOUT2D"] == 0.99


def test_my_image_that_cannot_be_read_is_refused_before_the_data(machine, tmp_path):
    """Not after 50 epochs of training, in the notebook's last cell."""
    machine(gpus=0)
    with pytest.raises(ValueError, match="MY_IMAGE = .*No image file at .*Or set MY_IMAGE = None"):
        run_settings_cells(NOTEBOOKS[0], MY_IMAGE=str(tmp_path / "my_cat.jpg"))
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(ValueError, match="MY_IMAGE = .*is not an image file"):
        run_settings_cells(NOTEBOOKS[0], MY_IMAGE=str(tmp_path / "notes.txt"))
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "cat.png")
    assert run_settings_cells(NOTEBOOKS[0], MY_IMAGE=str(tmp_path / "cat.png"))["MY_IMAGE"].endswith("cat.png")


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_setting_of_the_parameters_cell_is_used_by_the_notebook(notebook):
    """A setting that no cell reads (besides the settings check) would do nothing, silently."""
    cells = code_cells(ROOT / notebook)
    [parameters] = [source for source, tags in cells if "parameters" in tags]
    names = re.findall(r"^([A-Z][A-Z0-9_]*) = ", parameters, flags=re.MULTILINE)
    later = "\n".join(re.sub(r"check_settings\(\{.*?\}\)", "", source, flags=re.DOTALL)
                      for source, tags in cells if "parameters" not in tags)
    assert len(names) >= 17 and [name for name in names if not re.search(rf"\b{name}\b", later)] == []


# --- review 2: the notebooks' own cells, run without Jupyter on generated data -----------------------------


@pytest.mark.parametrize("notebook", NOTEBOOKS)
@pytest.mark.parametrize("name, smoke, students_own, lecture", [("BATCH_SIZE", 16, 32, 256),
                                                                ("LEARNING_RATE", 0.001, 0.005, 0.01),
                                                                ("NUM_EPOCHS", 3, 2, 50)])
def test_smoke_test_replaces_the_lectures_value_but_not_a_students_own(notebook, machine, name, smoke, students_own,
                                                                       lecture):
    """The smoke test's batch size, learning rate and at most three epochs replace only the lecture's values."""
    machine(gpus=0)
    assert run_settings_cells(notebook, SMOKE_TEST=True)[name] == smoke
    assert run_settings_cells(notebook, SMOKE_TEST=True, **{name: students_own})[name] == students_own
    assert run_settings_cells(notebook)[name] == lecture


def cell_containing(notebook, text):
    [source] = [source for source, _ in code_cells(ROOT / notebook) if text in source]
    return source


def run_folder_cell(notebook, results_dir, overridden_loader=None, **overrides):
    """The settings cells (with RUN_SETTINGS), then the run-folder cell (RUN_DIR), for a tiny model and smoke data
    (or, for training, ``overridden_loader``)."""
    from conftest import TinyNet, lecture_test_transforms, lecture_train_transforms

    from helper_dataset import get_dataloaders_cifar10

    namespace = run_settings_cells(notebook, RESULTS_DIR=str(results_dir), **overrides)
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=namespace["LEARNING_RATE"], momentum=0.9)
    train_loader, valid_loader, _ = get_dataloaders_cifar10(
        namespace["BATCH_SIZE"], validation_fraction=0.1, train_transforms=lecture_train_transforms(),
        test_transforms=lecture_test_transforms(), smoke_test=True)
    namespace.update(model=model, optimizer=optimizer, train_loader=train_loader, valid_loader=valid_loader,
                     scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max"), USE_AMP=False)
    if overridden_loader is not None:
        namespace["train_loader"] = overridden_loader
    exec(cell_containing(notebook, "RUN_DIR = choose_run_folder("), namespace)
    return namespace


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_raw_32_pixel_images_are_a_run_of_their_own_named_after_the_image_size(notebook, machine, tmp_path):
    machine(gpus=0)
    assert run_folder_cell(notebook, tmp_path, IMAGE_SIZE=32)["RUN_DIR"].name.startswith("image_size=32")


@pytest.mark.parametrize(("notebook", "name"), [(NOTEBOOKS[0], "smoke-lecture-"),
                                                (NOTEBOOKS[1], "smoke-normalization=per-channel-")])
def test_a_smoke_run_is_named_against_the_smoke_tests_own_batch_size_and_rate(notebook, name, machine, tmp_path):
    machine(gpus=0)
    assert run_folder_cell(notebook, tmp_path, SMOKE_TEST=True)["RUN_DIR"].name.startswith(name)


@pytest.mark.parametrize(("notebook", "named"), [(NOTEBOOKS[0], ""), (NOTEBOOKS[1], "normalization=per-channel_")])
def test_a_run_on_fewer_training_images_than_the_lectures_is_named_for_them(notebook, named, machine, tmp_path,
                                                                            capsys):
    """A review ran a 600-image folder of its own: it became `lecture-5d00b1`, beside the GPU's `lecture-f0274e` in
    the run table, with "settings that differ from the lecture's: none". The lecture's 45,000 add nothing to the
    name, nor do the smoke test's 576 to a smoke run's (planted: no train_images, 50,000 as the lecture's count, no
    smoke default of 576)."""
    machine(gpus=0)
    subset = run_folder_cell(notebook, tmp_path)["RUN_DIR"].name  # the smoke data's 576 training images
    assert subset.startswith(f"{named}train_images=576-")
    assert "train_images=576 (the six characters" in capsys.readouterr().out
    lectures = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(45_000, 1)), batch_size=256)
    all_of_them = f"{named[:-1]}-" if named else "lecture-"  # the name without train_images
    assert run_folder_cell(notebook, tmp_path, lectures)["RUN_DIR"].name.startswith(all_of_them)
    assert run_folder_cell(notebook, tmp_path, SMOKE_TEST=True)["RUN_DIR"].name.startswith(f"smoke-{all_of_them}")


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_a_smoke_run_saves_no_checkpoints(notebook, machine, tmp_path):
    machine(gpus=0)
    assert run_folder_cell(notebook, tmp_path, SMOKE_TEST=True)["SAVE_CHECKPOINTS"] is False
    assert run_folder_cell(notebook, tmp_path)["SAVE_CHECKPOINTS"] is True


@pytest.mark.parametrize("notebook", NOTEBOOKS)
@pytest.mark.parametrize("smoke_test", [True, False])
def test_the_comparison_shows_smoke_runs_in_a_smoke_test_and_real_runs_otherwise(notebook, smoke_test, tmp_path,
                                                                                  monkeypatch):
    import json

    import helper_evaluation
    import helper_plotting

    for name in ("smoke-lecture-aaaaaa", "lecture-bbbbbb", "smoke-dropout2d=0.25-cccccc"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "history.json").write_text(json.dumps({"run_name": name, "valid_acc": [50.0]}))
    shown = []
    monkeypatch.setattr(helper_evaluation, "print_run_table", lambda histories: shown.append(sorted(histories)))
    monkeypatch.setattr(helper_plotting, "plot_run_comparison", lambda histories, **kwargs: None)
    namespace = {"RESULTS_DIR": str(tmp_path), "RUN_DIR": tmp_path / "lecture-bbbbbb", "SMOKE_TEST": smoke_test}
    exec(cell_containing(notebook, "load_run_histories(RESULTS_DIR)"), namespace)
    assert shown == [["smoke-dropout2d=0.25-cccccc", "smoke-lecture-aaaaaa"] if smoke_test else ["lecture-bbbbbb"]]


def test_own_picture_with_checkpoints_off_uses_the_trained_model_not_an_earlier_runs_best_weights(
        tmp_path, monkeypatch, capsys):
    """CHECKPOINTS = False trains from scratch in a folder where an earlier run's best_model.pt may stay."""
    import numpy as np
    from conftest import TinyNet, lecture_test_transforms
    from PIL import Image

    import helper_plotting
    from helper_dataset import CIFAR10_CLASSES

    torch.manual_seed(0)
    trained, earlier = TinyNet(), TinyNet()
    torch.save(earlier.state_dict(), tmp_path / "best_model.pt")
    Image.fromarray(np.full((40, 40, 3), 200, dtype=np.uint8)).save(tmp_path / "photo.png")
    monkeypatch.setattr(helper_plotting, "show_image_as_network_sees_it", lambda *args, **kwargs: None)
    namespace = {"MY_IMAGE": tmp_path / "photo.png", "SMOKE_TEST": False, "SAVE_CHECKPOINTS": False,
                 "RUN_DIR": tmp_path, "DROPOUT2D": 0.0,
                 "CIFAR10_CLASSES": CIFAR10_CLASSES, "model": trained, "DEVICE": torch.device("cpu"),
                 "test_transforms": lecture_test_transforms(), "USE_AMP": False, "unnormalizer": None,
                 "FIGURE_SUBTITLE": None}
    exec(cell_containing(NOTEBOOKS[0], "picture_model ="), namespace)
    used = namespace["picture_model"].state_dict()
    assert all(torch.equal(used[k], v) for k, v in trained.state_dict().items())
    assert "Weights: the model as trained above" in capsys.readouterr().out


def test_own_picture_with_checkpoints_on_uses_the_best_weights_and_leaves_the_trained_model_as_it_is(
        tmp_path, monkeypatch, capsys):
    """The picture's network is a copy of the model: best_model.pt is loaded into the copy, not into the notebook's
    model, whose final weights the cells above evaluate and save (planted 'picture_model = model', a shallow copy,
    and a cell that ignored best_model.pt all passed every test)."""
    from conftest import TinyNet, lecture_test_transforms

    import helper_plotting
    from helper_dataset import CIFAR10_CLASSES

    torch.manual_seed(0)
    trained, best = TinyNet(), TinyNet()
    final_weights = {name: value.clone() for name, value in trained.state_dict().items()}
    torch.save(best.state_dict(), tmp_path / "best_model.pt")
    Image.fromarray(np.full((40, 40, 3), 200, dtype=np.uint8)).save(tmp_path / "photo.png")
    monkeypatch.setattr(helper_plotting, "show_image_as_network_sees_it", lambda *args, **kwargs: None)
    namespace = {"MY_IMAGE": tmp_path / "photo.png", "SMOKE_TEST": False, "SAVE_CHECKPOINTS": True,
                 "RUN_DIR": tmp_path, "DROPOUT2D": 0.0, "CIFAR10_CLASSES": CIFAR10_CLASSES, "model": trained,
                 "DEVICE": torch.device("cpu"), "test_transforms": lecture_test_transforms(), "USE_AMP": False,
                 "unnormalizer": None, "FIGURE_SUBTITLE": None}
    exec(cell_containing(NOTEBOOKS[0], "picture_model ="), namespace)
    used = namespace["picture_model"].state_dict()
    assert all(torch.equal(used[k], v) for k, v in best.state_dict().items())
    assert all(torch.equal(trained.state_dict()[k], v) for k, v in final_weights.items())
    assert "(the best validation epoch)" in capsys.readouterr().out


def test_standardized_notebook_computes_the_channel_statistics_over_the_training_images_only(machine, capsys):
    """The first 90% of the training split (45,000 of 50,000 images; here 576 of the 640 smoke images)."""
    from helper_dataset import compute_channel_mean_std, read_cifar10

    machine(gpus=0)
    notebook = NOTEBOOKS[1]
    namespace = run_settings_cells(notebook, SMOKE_TEST=True)
    exec(cell_containing(notebook, "compute_channel_mean_std("), namespace)
    expected = compute_channel_mean_std(read_cifar10(train=True, smoke_test=True).images[:576])
    assert (namespace["CHANNEL_MEAN"], namespace["CHANNEL_STD"]) == expected
    assert "Computed over 576 training images" in capsys.readouterr().out


@pytest.mark.parametrize(("mistake", "error", "message"), [
    ("an empty test class", FileNotFoundError, r"No PNG or JPEG images in '.*test.cat'"),
    ("a batch larger than the training set", ValueError, r"batch_size=19 .* larger than the 18 training images"),
])
def test_the_statistics_cell_refuses_what_the_data_cell_would_before_decoding_an_image(machine, tmp_path, monkeypatch,
                                                                                      mistake, error, message):
    """It reads the training images before the data cell: without the data cell's checks first, a mistake was named
    only after all 50,000 were decoded (planted: the check_data_settings line removed)."""
    from conftest import write_image_folder

    machine(gpus=0)
    write_image_folder(tmp_path, per_class=2)
    batch_size = 4
    if mistake == "an empty test class":
        for path in (tmp_path / "test" / "cat").iterdir():
            path.unlink()
    else:
        batch_size = 19  # 20 images, 2 of them validate
    monkeypatch.setattr(helper_dataset, "decode_image", lambda path: pytest.fail(f"decoded {path} first"))
    notebook = NOTEBOOKS[1]
    namespace = run_settings_cells(notebook, DATA_ROOT=str(tmp_path), BATCH_SIZE=batch_size, NUM_WORKERS=0)
    with pytest.raises(error, match=message):
        exec(cell_containing(notebook, "compute_channel_mean_std("), namespace)


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_the_shape_tables_start_with_the_students_own_image_size(notebook, capsys):
    """IMAGE_SIZE = 48 shows 48 (block 5 leaves 1x1: 48 halved five times), then the lecture's 64 and the raw 32."""
    namespace = cells_defining(ROOT / notebook, "class VGG16(")
    namespace.update(model=namespace["VGG16"](num_classes=10), IMAGE_SIZE=48)
    exec(cell_containing(notebook, "print_layer_shapes("), namespace)
    inputs = re.findall(r"^\(input\) +\((.*)\)", capsys.readouterr().out, flags=re.MULTILINE)
    assert inputs == ["1, 3, 48, 48", "1, 3, 64, 64", "1, 3, 32, 32"]


def training_cell_after(namespace, notebook):
    """Run the notebook's training cell in ``namespace`` (the test set: the validation loader, to be quick)."""
    namespace.setdefault("test_loader", namespace["valid_loader"])
    exec(cell_containing(notebook, "train_model("), namespace)
    return namespace


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_a_setting_changed_without_running_the_cells_below_it_is_refused_by_the_training_cell(notebook, machine,
                                                                                              tmp_path):
    """IMAGE_SIZE 64 -> 32, then only the parameters, settings and training cells: the data are still 64x64."""
    machine(gpus=0)
    namespace = run_folder_cell(notebook, tmp_path, SMOKE_TEST=True)
    rerun = run_settings_cells(notebook, RESULTS_DIR=str(tmp_path), SMOKE_TEST=True, IMAGE_SIZE=32)
    namespace.update({name: value for name, value in rerun.items() if name.isupper()})
    with pytest.raises(helper_train.RunMismatchError, match=r"image_size(.|\n)*Run All Above Selected Cell"):
        training_cell_after(namespace, notebook)
    assert not (namespace["RUN_DIR"] / "history.json").exists()


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_a_model_rebuilt_after_the_run_folder_was_chosen_is_refused_by_the_training_cell(notebook, machine, tmp_path):
    """The model and optimizer cells run again, the run-folder cell not: the run would be filed under the old run."""
    from conftest import TinyNet

    machine(gpus=0)
    namespace = run_folder_cell(notebook, tmp_path, SMOKE_TEST=True)
    namespace["model"] = torch.nn.Sequential(TinyNet())
    namespace["optimizer"] = torch.optim.SGD(namespace["model"].parameters(), lr=namespace["LEARNING_RATE"],
                                             momentum=0.9)
    with pytest.raises(helper_train.RunMismatchError, match=r"folder was chosen for other settings(.|\n)*  model: "):
        training_cell_after(namespace, notebook)
    assert not (namespace["RUN_DIR"] / "history.json").exists()


@pytest.mark.parametrize("notebook", NOTEBOOKS)
@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_the_parameters_cell_run_again_then_only_the_training_cell_is_refused_whatever_device_it_names(
        notebook, machine, tmp_path, device):
    """DROPOUT2D 0.0 -> 0.2, then only the parameters cell and the training cell: the model, RUN_SETTINGS and the
    folder are all still the old run's, consistent with one another, so only DEVICE (text again) can tell. With
    DEVICE = "cpu" the old model trained on under the old name, the change ignored without a word (planted:
    only "auto" refused, as it was)."""
    machine(gpus=0)
    namespace = run_folder_cell(notebook, tmp_path, SMOKE_TEST=True, NUM_EPOCHS=1, DEVICE=device)
    exec(next(source for source, tags in code_cells(ROOT / notebook) if "parameters" in tags), namespace)
    namespace.update(RESULTS_DIR=str(tmp_path), SMOKE_TEST=True, NUM_EPOCHS=1, DEVICE=device, DROPOUT2D=0.2)
    with pytest.raises(ValueError, match=r"device=.* (is a setting, not a device|is the parameters cell's DEVICE as "
                                         r"text)(.|\n)*Run All Above Selected Cell"):
        training_cell_after(namespace, notebook)
    assert not (namespace["RUN_DIR"] / "history.json").exists()


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_the_model_cell_run_straight_after_the_parameters_cell_names_the_settings_cell(notebook, machine):
    """DROPOUT2D changed, then the parameters cell and the model cell, where the Dropout2d rate is used: DEVICE is
    "auto" again, and the cell stopped on "'str' object has no attribute 'type'" (planted: the cell deciding from
    DEVICE.type again; needs_deterministic_pooling without its check, which fails in torch.device("auto")). A named
    device is the device it names, so there the model is built, with the new rate."""
    machine(gpus=0)
    namespace = run_settings_cells(notebook)
    namespace["VGG16"] = cells_defining(ROOT / notebook, "class VGG16(")["VGG16"]
    parameters = next(source for source, tags in code_cells(ROOT / notebook) if "parameters" in tags)
    exec(parameters, namespace)
    namespace["DROPOUT2D"] = 0.2
    with pytest.raises(ValueError, match=r"device='auto' is a setting, not a device(.|\n)*from the settings cell down"):
        exec(cell_containing(notebook, "model = VGG16("), namespace)
    namespace["DEVICE"] = "cpu"
    exec(cell_containing(notebook, "model = VGG16("), namespace)
    assert namespace["model"].feature_dropout.p == 0.2
    assert isinstance(namespace["model"].avgpool, torch.nn.AdaptiveAvgPool2d)


@pytest.mark.parametrize("notebook", NOTEBOOKS)
@pytest.mark.parametrize("gpus, fast_data_path", [(1, "auto"), (0, True)])  # the fast path: on a GPU, or asked for
def test_the_data_cell_run_straight_after_the_parameters_cell_names_the_settings_cell(notebook, machine, gpus,
                                                                                       fast_data_path):
    """BATCH_SIZE changed, then the parameters cell and the data cell on the fast path: DEVICE is "auto" again, and
    torch's own error listed every device type there is (planted: the data cell deciding the path from DEVICE.type
    again, which stopped on "'str' object has no attribute 'type'"; get_dataloaders_cifar10 without the check)."""
    machine(gpus=gpus)
    namespace = run_settings_cells(notebook, FAST_DATA_PATH=fast_data_path, SMOKE_TEST=True, NUM_WORKERS=0)
    exec(next(source for source, tags in code_cells(ROOT / notebook) if "parameters" in tags), namespace)
    namespace.update(FAST_DATA_PATH=fast_data_path, SMOKE_TEST=True, NUM_WORKERS=0, BATCH_SIZE=32,
                     train_transforms=None, test_transforms=None)
    with pytest.raises(ValueError, match=r"device='auto' is a setting, not a device(.|\n)*Run All Above Selected"):
        exec(cell_containing(notebook, "get_dataloaders_cifar10(\n"), namespace)


# --- settings computed with NumPy or pathlib, paths that only look like paths, each message's fix -------


def test_numpy_numbers_count_as_numbers():
    """A learning rate or Dropout2d share computed with NumPy (np.float32, np.int64) is a number and runs."""
    for name, value in [("LEARNING_RATE", np.float32(0.01)), ("LEARNING_RATE", np.int64(1)),
                        ("DROPOUT2D", np.float32(0.25)), ("DROPOUT2D", np.int64(0))]:
        assert setting_problem(name, value) is None, (name, value)


def test_path_settings_may_be_pathlib_paths(tmp_path):
    """DATA_ROOT = Path("data") is as good a path as "data"; only the form (quotes) of non-paths is refused."""
    Image.new("RGB", (8, 8)).save(tmp_path / "cat.png")
    for name, value in [("DATA_ROOT", tmp_path / "data"), ("RESULTS_DIR", tmp_path / "results"),
                        ("MY_IMAGE", tmp_path / "cat.png")]:
        assert setting_problem(name, value) is None, name


def test_a_path_starting_with_a_tilde_is_refused_in_every_form():
    """Python expands neither "~/data" nor "~alice/data" nor "~": each would make a folder named "~"."""
    for value in ("~/cifar10", "~alice/cifar10", "~"):
        assert "does not expand '~'" in setting_problem("DATA_ROOT", value), value


def test_my_image_as_a_plain_http_address_is_named_a_web_address():
    """Not only https: an http:// address is refused as a web address too, with the fix (download it)."""
    assert "a web address is not a file: download the picture" in setting_problem("MY_IMAGE",
                                                                                   "http://example.com/cat.jpg")


@pytest.mark.parametrize("value", ["float16", "fp16", "bf16", "bfloat16", "mixed", "half", True, False, None])
def test_precision_accepts_only_auto_and_float32(value):
    """PRECISION names a recipe, not a type: "float16" (or any other spelling of a reduced type) is refused with the
    two choices, as "auto" picks bf16 or float16 by the GPU (planted: "float16" accepted passed every test)."""
    assert setting_problem("PRECISION", value) == 'choose "auto" (mixed precision where it helps) or "float32".'


@pytest.mark.parametrize(("name", "fix"), [
    ("DATA_ROOT", 'a web address is not a folder: give a folder on this machine, e.g. "data"; CIFAR-10 is downloaded '
                  "into it."),
    ("RESULTS_DIR", 'a web address is not a folder: give a folder on this machine, e.g. "results" (on Colab, one on '
                    "your mounted Google Drive keeps the runs)."),
])
def test_a_web_address_as_a_folder_setting_is_refused_without_making_a_folder(tmp_path, monkeypatch, name, fix):
    """A folder setting is never told to download a picture, and checking RESULTS_DIR = "https://x/y" made the
    folders https:/x/y where the notebook ran (a review)."""
    monkeypatch.chdir(tmp_path)
    for address in ("https://example.com/results", "http://example.com/results"):
        assert setting_problem(name, address) == fix
    assert list(tmp_path.iterdir()) == []


def test_a_number_too_large_for_a_float_in_quotes_is_not_told_to_be_written_as_inf():
    """"1e999" is inf: "write LEARNING_RATE = inf without the quotes" is no Python a student can write (a review)."""
    assert setting_problem("LEARNING_RATE", "1e999") == (
        "the learning rate must be a finite number above 0 (at 0 no weight changes). The lecture uses 0.01.")
    assert setting_problem("LEARNING_RATE", "1e-3").startswith("this is text (in quotes), not a number: write "
                                                               "LEARNING_RATE = 0.001 without the quotes")


def test_batch_size_and_epochs_messages_quote_each_ones_own_lecture_value():
    """The fix names the lecture's value of the setting refused: 256 for BATCH_SIZE, 50 for NUM_EPOCHS."""
    assert setting_problem("BATCH_SIZE", 0).endswith("The lecture uses 256.")
    assert setting_problem("NUM_EPOCHS", 0).endswith("The lecture uses 50.")


@pytest.mark.parametrize("value", [1.5, 2.0, "two", True])
def test_num_workers_must_be_a_whole_number(value):
    """DataLoader(num_workers=1.5) fails only once the data are loaded; "2" (quotes) is refused, not a TypeError."""
    assert "a whole number of at least 0" in setting_problem("NUM_WORKERS", value)
    assert setting_problem("NUM_WORKERS", "2") == "this is text (in quotes), not a number: write NUM_WORKERS = 2 " \
                                                  "without the quotes."


def test_the_results_folder_check_leaves_nothing_behind(tmp_path):
    """The write test's file is removed again: a student's RESULTS_DIR holds only the runs' folders."""
    assert setting_problem("RESULTS_DIR", str(tmp_path / "results")) is None
    assert list((tmp_path / "results").iterdir()) == []


def test_a_results_folder_that_exists_but_refuses_writes_is_refused_with_the_reason(tmp_path, monkeypatch):
    """An existing folder on a read-only disk (or another user's) passes mkdir; only writing a file shows the problem.
    The system's reason is quoted, so the student sees why. Only files in that folder are refused: a probe written
    anywhere else (the system's temporary folder) would pass it."""
    read_only = tmp_path / "results"
    read_only.mkdir()
    make_temporary_file = tempfile.NamedTemporaryFile

    def refuse_in_the_folder(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == read_only:
            raise PermissionError(13, "Permission denied")
        return make_temporary_file(*args, dir=dir, **kwargs)

    monkeypatch.setattr(helper_train.tempfile, "NamedTemporaryFile", refuse_in_the_folder)
    problem = setting_problem("RESULTS_DIR", str(read_only))
    assert problem is not None and "Cannot write to RESULTS_DIR" in problem and "Permission denied" in problem


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_the_final_weights_are_saved_only_for_a_finished_run(notebook, tmp_path, capsys):
    """Interrupted in epoch 2 of 3, then the cells below run: the interrupted weights are not filed as final ones."""
    from conftest import TinyNet

    namespace = {"SMOKE_TEST": False, "NUM_EPOCHS": 3, "RUN_DIR": tmp_path, "model": TinyNet(), "torch": torch,
                 "valid_acc_list": [50.0]}
    exec(cell_containing(notebook, "save_atomically(RUN_DIR"), namespace)
    assert not (tmp_path / "vgg16-cifar10.pt").exists()
    assert "Training stopped after 1 of 3 epochs" in capsys.readouterr().out
    namespace["valid_acc_list"] = [50.0, 60.0, 70.0]
    exec(cell_containing(notebook, "save_atomically(RUN_DIR"), namespace)
    assert (tmp_path / "vgg16-cifar10.pt").exists()


def without_adaptive_pooling_kernel(monkeypatch):
    """Stand in for Apple's MPS: PyTorch 2.11 to 2.14 have no MPS kernel for adaptive average pooling whose sizes do
    not divide (the VGG-16's 2x2 map to 3x3; torch.testing's MPS list marks it as an expected failure)."""
    def refuse(input, output_size):
        raise RuntimeError("Adaptive pool MPS: output sizes must be divisible by input sizes.")
    monkeypatch.setattr(torch.nn.functional, "adaptive_avg_pool2d", refuse)


def trains_and_predicts(model) -> bool:
    """One forward and backward pass of a 64x64 batch, as training does: False if pooling could not be computed."""
    try:
        model(torch.randn(2, 3, 64, 64)).sum().backward()
    except RuntimeError as error:
        assert "Adaptive pool MPS" in str(error)
        return False
    return True


@pytest.mark.parametrize("notebook", NOTEBOOKS)
@pytest.mark.parametrize("device, deterministic, swapped", [("mps", False, True), ("cuda", True, True),
                                                           ("cuda", False, False), ("cpu", True, False),
                                                           ("cpu", False, False)])
def test_the_model_cell_swaps_the_pooling_only_where_it_must(notebook, machine, monkeypatch, device, deterministic,
                                                            swapped):
    """On MPS (no kernel for this pooling) and on CUDA with DETERMINISTIC (no deterministic backward for it) the model
    cell swaps the pooling for the same function as matrix products; elsewhere it keeps the lecture's
    AdaptiveAvgPool2d. On a CPU that pooling is deterministic already, and the swap, equal up to the last digits,
    made a DETERMINISTIC smoke run differ from the default one from its second batch on (validation accuracy
    51.56% against 62.50% after epoch 1), where the notebook says seeding alone gives identical CPU runs."""
    machine(gpus=0, mps=device == "mps")
    namespace = run_settings_cells(notebook, DETERMINISTIC=deterministic)
    namespace["DEVICE"] = torch.device(device)  # only its type matters to the model cell (no CUDA here to name)
    namespace["VGG16"] = cells_defining(ROOT / notebook, "class VGG16(")["VGG16"]
    exec(cell_containing(notebook, "model = VGG16("), namespace)
    without_adaptive_pooling_kernel(monkeypatch)
    assert trains_and_predicts(namespace["model"]) == swapped


def test_the_picture_cell_classifies_with_the_network_the_model_cell_built(machine, monkeypatch, tmp_path, capsys):
    """Its model is a copy of the trained one, with the pooling swapped on MPS; a VGG16 built afresh would have the
    pooling that MPS cannot compute."""
    from helper_dataset import UnNormalize
    from helper_evaluation import make_pooling_deterministic

    machine(gpus=0)
    Image.fromarray(np.full((40, 40, 3), 200, dtype=np.uint8)).save(tmp_path / "cat.png")
    namespace = run_settings_cells(NOTEBOOKS[0], MY_IMAGE=str(tmp_path / "cat.png"))
    notebook_objects = cells_defining(ROOT / NOTEBOOKS[0], "class VGG16(", "test_transforms = transforms.Compose(")
    model = notebook_objects["VGG16"](num_classes=10)
    make_pooling_deterministic(model)  # what the model cell does on MPS
    namespace.update(VGG16=notebook_objects["VGG16"], test_transforms=notebook_objects["test_transforms"],
                     model=model, RUN_DIR=tmp_path, SAVE_CHECKPOINTS=False, USE_AMP=False, FIGURE_SUBTITLE=None,
                     unnormalizer=UnNormalize((0.5,) * 3, (0.5,) * 3))
    without_adaptive_pooling_kernel(monkeypatch)
    exec(cell_containing(NOTEBOOKS[0], "picture_model ="), namespace)
    assert re.search(r"^1\. \w+ +\d+\.\d%$", capsys.readouterr().out, flags=re.MULTILINE)
    assert (tmp_path / "my_picture.png").exists()


# --- review 3: mutation testing of the settings checks ------------------------------------------------------------


@pytest.mark.parametrize("name", ["FAST_DATA_PATH", "COMPILE"])
@pytest.mark.parametrize("value", [1, 0, 1.0])
def test_a_switch_with_an_auto_choice_refuses_numbers_that_equal_true_or_false(name, value):
    """COMPILE = 1 equals True to Python but is not True: should_compile would take it for "auto" and, on most GPUs,
    not compile (planted 'value in ("auto", True, False)' passed every test)."""
    assert setting_problem(name, value) == 'choose "auto", True or False.'


# --- review 4: mutation testing of choose_device ------------------------------------------------------------------


@pytest.mark.parametrize("setting", [None, 1.5])
def test_a_device_of_the_wrong_type_is_refused_with_the_choices(machine, setting):
    """torch.device(None) raises TypeError, not RuntimeError: it gets the same message (planted: only RuntimeError
    caught passed, every tested wrong device being a string)."""
    machine(gpus=1)
    with pytest.raises(ValueError, match=f"DEVICE = {setting!r}: not a device: use \"auto\""):
        choose_device(setting)


def test_cuda_that_pytorch_cannot_use_is_refused_even_when_gpus_are_counted(machine, monkeypatch):
    """A driver too old for this PyTorch: is_available() is False while device_count() still counts the GPU
    (planted: the count taken without is_available() passed: every tested machine agreed on both)."""
    machine(gpus=0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="no CUDA GPU that PyTorch can use"):
        choose_device("cuda")


@pytest.mark.parametrize("gpus, mps, refused", [(0, False, True), (1, True, False)])
def test_mps_is_refused_exactly_where_apples_mps_is_missing(machine, gpus, mps, refused):
    """Neither CUDA nor MPS: refused; MPS beside a CUDA GPU: used (planted: the MPS check asking whether CUDA is
    available passed, the one tested machine having a GPU and no MPS)."""
    machine(gpus=gpus, mps=mps)
    if refused:
        with pytest.raises(ValueError, match="MPS is not available here"):
            choose_device("mps")
    else:
        assert choose_device("mps") == torch.device("mps")


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_the_data_path_line_names_the_device_the_images_are_stored_on(notebook, machine, capsys):
    """FAST_DATA_PATH = True on a CPU: the images are on the CPU, and the line said "stored on the GPU"."""
    machine(gpus=0)
    capsys.readouterr()
    run_settings_cells(notebook, FAST_DATA_PATH=True, SMOKE_TEST=True, NUM_WORKERS=0)
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Data path:")]
    assert "GPU" not in line and line.startswith("Data path: fast (images stored on the CPU"), line


@pytest.mark.parametrize("name, example", [("MY_IMAGE", '"my_cat.jpg"'), ("DATA_ROOT", '"data"'),
                                           ("RESULTS_DIR", '"results"')])
def test_a_path_written_without_quotes_is_shown_with_an_example_of_its_own_kind(name, example):
    """MY_IMAGE = 5 was told 'write it in quotes, e.g. "results"': the results folder is no picture to classify."""
    assert setting_problem(name, 5) == f"{name} is a path: write it in quotes, e.g. {example}."


# --- review: mutmut on helper_train (each test below failed on a mutant that passed every test before) --------------


def test_every_wrong_setting_is_listed_at_once_each_with_its_fix(tmp_path):
    """The message a student gets for a parameters cell full of mistakes, in full (planted: any of these sentences
    changed passed every test, which looked for a few words of each)."""
    data_file = tmp_path / "data.tar.gz"
    data_file.write_bytes(b"not a folder")
    with pytest.raises(ValueError) as error:
        helper_train.check_settings({
            "RANDOM_SEED": -1, "NUM_WORKERS": -1, "DROPOUT2D": 1.0, "SMOKE_TEST": "False", "PRECISION": "bf16",
            "DATA_ROOT": str(data_file), "RESULTS_DIR": 5, "MY_IMAGE": "https://example.com/cat.jpg",
            "LEARNING_RATE": 0.01})
    assert str(error.value).splitlines() == [
        "Change these settings in the parameters cell:",
        "RANDOM_SEED = -1: a seed is a whole number from 0 to 2**32 - 1 (NumPy's range). The lecture uses 123.",
        "NUM_WORKERS = -1: the number of DataLoader worker processes is a whole number of at least 0 (0: load in "
        "the notebook).",
        "DROPOUT2D = 1.0: the share of feature maps Dropout2d zeroes is at least 0 and below 1 (1 would zero every "
        "map, and nothing would be learned). Try 0.1 to 0.3, or 0.0 for the lecture's model.",
        "SMOKE_TEST = 'False': write True or False, without quotes (the string \"False\" counts as true in Python).",
        "PRECISION = 'bf16': choose \"auto\" (mixed precision where it helps) or \"float32\".",
        f"DATA_ROOT = {str(data_file)!r}: it is a file, not a folder. Set it to the folder that holds (or will hold) "
        "CIFAR-10, e.g. \"data\".",
        "RESULTS_DIR = 5: RESULTS_DIR is a path: write it in quotes, e.g. \"results\".",
        "MY_IMAGE = 'https://example.com/cat.jpg': a web address is not a file: download the picture and give its "
        "path (on Colab: None, then upload).",
    ]


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_a_missing_gpu_is_listed_with_the_other_wrong_settings(notebook, machine):
    """DEVICE = "cuda" on a machine without one stopped the settings cell before check_settings, so the other
    mistakes came one run later (a review: "all at once" was not so)."""
    machine(gpus=0)
    with pytest.raises(ValueError) as error:
        run_settings_cells(notebook, DEVICE="cuda", DROPOUT2D=-0.1)
    assert str(error.value).splitlines()[:3] == [
        "Change these settings in the parameters cell:",
        "DEVICE = 'cuda': this machine has no CUDA GPU that PyTorch can use. Set DEVICE = \"auto\" (or \"cpu\"); "
        "on Colab, choose Runtime -> Change runtime type -> GPU first.",
        "DROPOUT2D = -0.1: the share of feature maps Dropout2d zeroes is at least 0 and below 1 (1 would zero every "
        "map, and nothing would be learned). Try 0.1 to 0.3, or 0.0 for the lecture's model."]
    assert helper_train.setting_problem("DEVICE", "auto") is None and helper_train.setting_problem("DEVICE", "cpu") \
        is None


# --- the notebooks' cells are the lecture's, and do what the parameters cell says ------------------------------------


@pytest.mark.parametrize(("image_size", "resized"), [(64, 70), (32, 35)])
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_each_notebook_transforms_its_images_as_the_lecture_does(notebook, image_size, resized):
    """Training images are resized to 70x70 and cropped at a random place to 64x64 (at IMAGE_SIZE 32: 35 and 32);
    evaluation images get the same resize and the centre crop, so that the test set is scored the same way every
    time. The main notebook normalizes with 0.5, the standardized one with the channel statistics it computed
    (planted: either crop swapped for the other, or a resize to 72, passed every test, smoke notebooks included)."""
    channel_mean, channel_std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)  # stand-ins for the computed statistics
    namespace = run_settings_cells(notebook, IMAGE_SIZE=image_size)
    namespace.update(CHANNEL_MEAN=channel_mean, CHANNEL_STD=channel_std)
    exec(cell_containing(notebook, "train_transforms = "), namespace)
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
    namespace = run_settings_cells(notebook, LEARNING_RATE=0.05)
    namespace["model"] = torch.nn.Linear(2, 2)
    exec(cell_containing(notebook, "optimizer = torch.optim."), namespace)
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


@pytest.fixture
def determinism_restored():
    """The global switches the seeding cell sets, as they were before the test."""
    switches = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
                torch.backends.cudnn.benchmark, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    states = random.getstate(), np.random.get_state()
    with torch.random.fork_rng():
        yield
    torch.use_deterministic_algorithms(switches[0])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = switches[1:3]
    if switches[3] is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = switches[3]
    random.setstate(states[0])
    np.random.set_state(states[1])


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_each_notebook_seeds_with_random_seed_and_builds_the_model_with_dropout2d(notebook, determinism_restored):
    """RANDOM_SEED = 7 seeds the run with 7, and DROPOUT2D = 0.2 puts Dropout2d(0.2) in the model (planted: the
    lecture's seed 123 or a Dropout2d rate of 0 written into those cells passed every test: the smoke notebooks run
    with the defaults)."""
    namespace = run_settings_cells(notebook, RANDOM_SEED=7, DROPOUT2D=0.2)
    torch.manual_seed(0)  # not 7 already
    exec(cell_containing(notebook, "set_all_seeds(RANDOM_SEED)"), namespace)
    assert torch.initial_seed() == 7
    namespace["VGG16"] = cells_defining(ROOT / notebook, "class VGG16(")["VGG16"]
    exec(cell_containing(notebook, "model = VGG16("), namespace)
    assert str(namespace["model"].feature_dropout) == "Dropout2d(p=0.2, inplace=False)"


# --- review 3: each cell hands the settings on to the helper it calls ---------------------------------------


def recorder(calls, result):
    """A stand-in for a helper: records each call's keyword arguments (positional ones as ``args``)."""
    def record(*args, **kwargs):
        calls.append({**kwargs, **({"args": args} if args else {})})
        return result
    return record


def stand_in(name):
    """An object equal only to itself, for a value a cell must hand on as it got it (transforms, a device, a switch):
    a cell that writes in a value of its own, even the usual one, then fails the comparison."""
    return type(name, (), {})()


@pytest.mark.parametrize("notebook", NOTEBOOKS)
@pytest.mark.parametrize("device, fast_data_path, precision, data_device, use_amp", [
    ("cpu", "auto", "auto", None, False),  # "auto": the classic path on a CPU
    ("cpu", True, "auto", "cpu", False),  # the fast path asked for on a CPU: the images stay on the CPU
    ("cuda", "auto", "auto", "cuda", True),  # a GPU: images on it, mixed precision
    ("cuda", "auto", "float32", "cuda", False),  # PRECISION = "float32" on a GPU
    ("cuda", False, "auto", None, False),  # the lecture's DataLoader on a GPU: float32
])
@pytest.mark.parametrize("smoke_test", [False, True])
def test_the_data_cell_hands_every_setting_to_the_loaders(notebook, machine, tmp_path, device, fast_data_path,
                                                          precision, data_device, use_amp, smoke_test):
    """BATCH_SIZE, NUM_WORKERS, DATA_ROOT, SMOKE_TEST, FAST_DATA_PATH and PRECISION reach get_dataloaders_cifar10
    and USE_AMP, which the settings cell decides with the device (planted, each passed every test: a batch size of
    256 or 2 workers written into the call, the fast path decided by the device alone, mixed precision on every GPU
    whatever PRECISION said)."""
    machine(gpus=1 if device == "cuda" else 0)
    namespace = run_settings_cells(notebook, BATCH_SIZE=32, NUM_WORKERS=3, DATA_ROOT=str(tmp_path / "images"),
                                   SMOKE_TEST=smoke_test, FAST_DATA_PATH=fast_data_path, PRECISION=precision,
                                   DEVICE=device)
    calls, train, test = [], stand_in("train_transforms"), stand_in("test_transforms")
    namespace.update(train_transforms=train, test_transforms=test,
                     get_dataloaders_cifar10=recorder(calls, ("train", "valid", "test")))
    exec(cell_containing(notebook, "get_dataloaders_cifar10(\n"), namespace)
    assert calls == [dict(batch_size=32, num_workers=3, validation_fraction=0.1, train_transforms=train,
                          test_transforms=test, root=str(tmp_path / "images"), smoke_test=smoke_test,
                          device=data_device and torch.device(data_device))]
    assert namespace["USE_AMP"] is use_amp
    assert [namespace[f"{name}_loader"] for name in ("train", "valid", "test")] == ["train", "valid", "test"]


@pytest.mark.parametrize("notebook", NOTEBOOKS)
@pytest.mark.parametrize("smoke_test, checkpoints", [(False, True), (False, False), (True, True)])
def test_the_training_cell_hands_every_setting_to_train_model(notebook, machine, tmp_path, smoke_test, checkpoints):
    """NUM_EPOCHS, LIVE_PLOT, CHECKPOINTS, SMOKE_TEST and the choices the cells above made (mixed precision,
    compilation, the device, the run's folder, settings and identity) reach train_model (planted, each passed every
    test: num_epochs=50 written into the call, which a smoke test on a CPU would train for hours; use_amp=False or
    True; compile_model=False or True; device="cpu"; checkpoints saved in a smoke test or with CHECKPOINTS = False;
    no run_settings)."""
    machine(gpus=0)
    namespace = run_folder_cell(notebook, tmp_path, SMOKE_TEST=smoke_test, CHECKPOINTS=checkpoints, NUM_EPOCHS=7,
                                LIVE_PLOT=False)
    calls, device, use_amp, use_compile = [], stand_in("device"), stand_in("use_amp"), stand_in("use_compile")
    namespace.update(DEVICE=device, USE_AMP=use_amp, use_compile=use_compile, train_model=recorder(calls, ([], [], [])))
    training_cell_after(namespace, notebook)
    folder = namespace["RUN_DIR"]
    assert calls == [dict(
        model=namespace["model"], num_epochs=3 if smoke_test else 7, train_loader=namespace["train_loader"],
        valid_loader=namespace["valid_loader"], test_loader=namespace["test_loader"],
        optimizer=namespace["optimizer"], device=device, scheduler=namespace["scheduler"],
        scheduler_on="valid_acc", logging_interval=10 if smoke_test else 100, use_amp=use_amp, num_classes=10,
        checkpoint_dir=folder if checkpoints and not smoke_test else None, history_file=folder / "history.json",
        run_settings=namespace["RUN_SETTINGS"], run_identity=namespace["run_identity"], compile_model=use_compile,
        live_plot=False, figure_subtitle=namespace["FIGURE_SUBTITLE"])]


@pytest.mark.parametrize("notebook", NOTEBOOKS)
@pytest.mark.parametrize("smoke_test, checkpoints, epochs_done, epochs_to_train", [
    (False, True, 30, 20),  # resumed: the 20 epochs left
    (False, False, 30, 50),  # CHECKPOINTS = False: not resumed, all 50 train
    (False, True, 50, 0),  # finished: nothing to train, so nothing to compile even with COMPILE = True
    (True, True, 30, 3),  # a smoke test: at most 3 epochs, never resumed
])
@pytest.mark.parametrize("use_amp", [False, True])
def test_compilation_is_weighed_against_the_epochs_a_resumed_run_has_left(notebook, machine, tmp_path, smoke_test,
                                                                          checkpoints, epochs_done, epochs_to_train,
                                                                          use_amp):
    """A checkpoint holding 30 of 50 epochs leaves 20 to train, and COMPILE = "auto" must weigh those: on an H200
    they save 20 x 0.43 s, less than the 27.3 s compilation takes; and it must know whether the run is in mixed
    precision, the only setup whose compilation was measured (planted: NUM_EPOCHS passed whatever the checkpoint
    held, as it was; at least 1 epoch passed; the device, SMOKE_TEST or the precision written into the call)."""
    machine(gpus=0)
    namespace = run_folder_cell(notebook, tmp_path, SMOKE_TEST=smoke_test, CHECKPOINTS=checkpoints, COMPILE=True,
                                BATCH_SIZE=32)
    namespace["RUN_DIR"].mkdir(parents=True)
    torch.save({"epochs_done": epochs_done}, namespace["RUN_DIR"] / helper_train.CHECKPOINT_FILE)
    calls, decision, identity = [], stand_in("use_compile"), namespace["run_identity"]
    namespace.update(DEVICE=torch.device("cuda", 0), should_compile=recorder(calls, (decision, "the reason")),
                     USE_AMP=use_amp, describe_run=lambda *args, **kwargs: identity)  # the same folder either way
    exec(cell_containing(notebook, "RUN_DIR = choose_run_folder("), namespace)  # again, as on a GPU
    assert calls == [dict(args=(True, torch.device("cuda", 0), epochs_to_train), smoke_test=smoke_test,
                          use_amp=use_amp)]
    assert namespace["use_compile"] is decision


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_the_run_folder_line_weighs_the_checkpoint_against_the_students_num_epochs(notebook, machine, tmp_path,
                                                                                   capsys):
    """A checkpoint of 7 epochs: NUM_EPOCHS = 7 has nothing left to train, 9 continues (planted: NUM_EPOCHS not
    passed to choose_run_folder, or the lecture's 50 in its place)."""
    machine(gpus=0)
    folder = run_folder_cell(notebook, tmp_path, NUM_EPOCHS=7)["RUN_DIR"]
    folder.mkdir(parents=True)
    torch.save({"epochs_done": 7}, folder / helper_train.CHECKPOINT_FILE)
    capsys.readouterr()
    assert run_folder_cell(notebook, tmp_path, NUM_EPOCHS=7)["RUN_DIR"] == folder
    assert "after epoch 7: with NUM_EPOCHS = 7 nothing is left to train" in capsys.readouterr().out
    run_folder_cell(notebook, tmp_path, NUM_EPOCHS=9)
    assert "the run continues where it stopped, after epoch 7\n" in capsys.readouterr().out


@pytest.mark.parametrize("notebook, normalization", [(NOTEBOOKS[0], "mean=std=0.5"),
                                                            (NOTEBOOKS[1], "per-channel")])
def test_the_run_settings_record_the_students_own_values(notebook, normalization, machine):
    """The run's folder and identity are made from RUN_SETTINGS: runs that differ only in their seed, precision or
    DETERMINISTIC are different runs (planted: the lecture's seed, "auto" precision or deterministic=False written
    into RUN_SETTINGS passed every test; train_model can check only the batch size, rate, image size and Dropout2d
    rate against its objects)."""
    machine(gpus=1)  # on a GPU, where "float32" changes what is trained (see the next test)
    namespace = run_settings_cells(notebook, RANDOM_SEED=7, BATCH_SIZE=32, LEARNING_RATE=0.05, IMAGE_SIZE=32,
                                   DROPOUT2D=0.2, PRECISION="float32", DETERMINISTIC=True)
    assert namespace["RUN_SETTINGS"] == {"seed": 7, "batch_size": 32, "learning_rate": 0.05, "image_size": 32,
                                         "dropout2d": 0.2, "normalization": normalization, "precision": "float32",
                                         "deterministic": True}


@pytest.mark.parametrize("notebook", NOTEBOOKS)
@pytest.mark.parametrize("gpus, fast_data_path, precision, recorded", [
    (1, "auto", "auto", "auto"),  # the fast path on a GPU: mixed precision
    (1, "auto", "float32", "float32"),
    (1, False, "auto", "float32"),  # the classic path on a GPU trains in float32: filed with the float32 runs
    (1, False, "float32", "float32"),
    (0, "auto", "auto", "auto"),  # on a CPU every run is float32: PRECISION changes nothing, nor the folder
    (0, "auto", "float32", "auto"),
    (0, True, "float32", "auto"),
    ("mps", "auto", "auto", "auto"),  # a Mac: float32, and the classic path unless asked for
    ("mps", "auto", "float32", "auto"),
])
def test_the_run_settings_record_the_precision_the_run_trains_in(notebook, machine, gpus, fast_data_path, precision,
                                                                   recorded):
    """The same training is the same run: on a CPU PRECISION = "float32" started a new run of identical training
    in a folder of its own, and on a GPU the classic path's float32 run was named like the mixed-precision lecture
    run (planted: the PRECISION setting recorded as written; "float32" for every run without mixed precision)."""
    machine(gpus=0, mps=True) if gpus == "mps" else machine(gpus=gpus)
    namespace = run_settings_cells(notebook, FAST_DATA_PATH=fast_data_path, PRECISION=precision)
    assert namespace["RUN_SETTINGS"]["precision"] == recorded
    assert namespace["USE_AMP"] is (recorded == "auto" and gpus == 1)
    assert namespace["use_fast_path"] is (fast_data_path is True or (fast_data_path == "auto" and gpus == 1))


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_the_seeding_cell_turns_determinism_on_and_off_as_deterministic_says(notebook, determinism_restored):
    """DETERMINISTIC = True asks for bit-identical runs; set back to False in the same session, the cell undoes that
    and lets cuDNN time its convolution algorithms again (planted: the cell ignoring DETERMINISTIC, or leaving
    cuDNN's benchmark off, passed every test)."""
    cell = cell_containing(notebook, "set_all_seeds(RANDOM_SEED)")
    exec(cell, run_settings_cells(notebook, DETERMINISTIC=True))
    assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    assert not torch.backends.cudnn.benchmark
    exec(cell, run_settings_cells(notebook, DETERMINISTIC=False))
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    assert torch.backends.cudnn.benchmark


RESULT_HELPERS = {"plot_training_loss": None, "plot_accuracy": None, "show_examples": None,
                  "compute_confusion_matrix": "the confusion matrix", "plot_confusion_matrix": None,
                  "show_confident_mistakes": None}  # each name: what its stand-in returns


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_the_result_cells_show_the_epochs_trained_on_the_test_set_in_the_runs_folder(notebook, machine, monkeypatch,
                                                                                      tmp_path):
    """A run stopped after 3 of 7 epochs: the loss figure spans the 3 epochs trained, with the training loader's
    batches per epoch; the examples, the confusion matrix and the confident mistakes come from the test set, in
    the run's precision, and every figure is saved in the run's folder under its subtitle (planted, each passed
    every test: NUM_EPOCHS for the epochs trained, the validation loader's batches per epoch, the confusion
    matrix of the validation set)."""
    machine(gpus=0)
    calls = {name: [] for name in RESULT_HELPERS}
    for name, result in RESULT_HELPERS.items():  # patched where the cells import them from
        module = helper_evaluation if hasattr(helper_evaluation, name) else helper_plotting
        monkeypatch.setattr(module, name, recorder(calls[name], result))
    namespace = run_settings_cells(notebook, NUM_EPOCHS=7)
    losses, loaders = [2.3] * 54, {"train": list(range(18)), "valid": list(range(2)), "test": list(range(4))}
    device, use_amp = stand_in("device"), stand_in("use_amp")
    namespace.update(model="the model", minibatch_loss_list=losses, train_acc_list=[30.0, 40.0, 50.0],
                     valid_acc_list=[29.0, 38.0, 47.0], RUN_DIR=tmp_path, FIGURE_SUBTITLE="run x", USE_AMP=use_amp,
                     DEVICE=device,
                     NORMALIZE_MEAN=(0.4, 0.5, 0.6), NORMALIZE_STD=(0.2, 0.3, 0.4),
                     **{f"{name}_loader": loader for name, loader in loaders.items()})
    for call in ("plot_training_loss(\n", "plot_accuracy(train_acc_list", "show_examples(model", "conf_mat = compute",
                 "show_confident_mistakes(model"):
        exec(cell_containing(notebook, call), namespace)
    figure = dict(results_dir=tmp_path, subtitle="run x")
    test_set = dict(model="the model", data_loader=loaders["test"], use_amp=use_amp)
    classes = dict(enumerate(CIFAR10_CLASSES))
    unnormalizers = [call.pop("unnormalizer") for name in ("show_examples", "show_confident_mistakes")
                     for call in calls[name]]
    assert calls == {
        "plot_training_loss": [dict(minibatch_loss_list=losses, num_epochs=3, iter_per_epoch=18,
                                    averaging_iterations=100, **figure)],
        "plot_accuracy": [dict(train_acc_list=[30.0, 40.0, 50.0], valid_acc_list=[29.0, 38.0, 47.0], **figure)],
        "show_examples": [dict(class_dict=classes, **test_set, **figure)],
        "compute_confusion_matrix": [dict(device=device, **test_set)],
        "plot_confusion_matrix": [dict(args=("the confusion matrix",), class_names=CIFAR10_CLASSES, **figure)],
        "show_confident_mistakes": [dict(class_dict=classes, **test_set, **figure)],
    }
    for unnormalizer in unnormalizers:  # undoes the notebook's own normalization
        assert unnormalizer.mean.tolist() == pytest.approx([0.4, 0.5, 0.6])
        assert unnormalizer.std.tolist() == pytest.approx([0.2, 0.3, 0.4])
