"""Both notebooks run top to bottom in smoke mode, offline: they print the lecture's log, learn, and compare runs."""

import json
import re
from pathlib import Path

import nbformat
import papermill
import pytest
from PIL import Image

from helper_dataset import CIFAR10_CLASSES, read_cifar10

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["vgg16-cifar10.ipynb", "vgg16-cifar10-standardized.ipynb"]
DROPOUT2D = {NOTEBOOKS[0]: 0.0, NOTEBOOKS[1]: 0.25}  # the smoke tests run both settings of the exercise


def code_cells(name):
    return [c for c in nbformat.read(ROOT / name, as_version=4).cells if c.cell_type == "code"]


def model_cell(name):
    [cell] = [c for c in code_cells(name) if c.source.startswith("class VGG16(")]
    return cell.source


def cell_text(cell):
    return "".join(
        output.get("text", "") + output.get("data", {}).get("text/plain", "")
        for output in cell.get("outputs", [])
    )


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    """One RESULTS_DIR for both notebooks, as by default: the second run's comparison shows both runs."""
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module", params=NOTEBOOKS)
def executed(request, tmp_path_factory, results_dir):
    work = tmp_path_factory.mktemp(request.param.split(".")[0])
    papermill.execute_notebook(
        str(ROOT / request.param), str(work / request.param), cwd=str(ROOT), kernel_name="python3",
        parameters={"SMOKE_TEST": True, "RESULTS_DIR": str(results_dir), "DATA_ROOT": str(work / "data"),
                    "NUM_WORKERS": 0, "DROPOUT2D": DROPOUT2D[request.param]},
        progress_bar=False,
    )
    nb = nbformat.read(work / request.param, as_version=4)
    text = "\n".join(cell_text(c) for c in nb.cells if c.cell_type == "code")
    [run_dir] = re.findall(r"This run's folder: (\S+)", text)
    return request.param, nb, text, Path(run_dir)


def test_model_cells_are_identical():
    assert model_cell(NOTEBOOKS[0]) == model_cell(NOTEBOOKS[1])


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_have_no_outputs_and_one_parameters_cell(name):
    cells = code_cells(name)
    assert not any(c.outputs or c.execution_count for c in cells)
    assert sum("parameters" in c.metadata.get("tags", []) for c in cells) == 1


def test_notebook_runs_and_prints_the_lecture_log(executed):
    name, nb, text, run_dir = executed
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert "SMOKE TEST" in text
    assert "Trainable parameters: 50,415,434" in text
    assert re.search(r"Epoch: 001/\d{3} \| Batch 0000/\d{4} \| Loss: \d+\.\d{4}", text)
    assert re.search(r"Epoch: \d{3}/\d{3} \| Train: \d+\.\d\d% \| Validation: \d+\.\d\d%", text)
    assert "block_5                  (1, 512, 2, 2)" in text and "block_5                  (1, 512, 1, 1)" in text
    assert "Most confused (true -> predicted)" in text
    expected_dropout = "Dropout2d(p=0.25" if DROPOUT2D[name] else "Identity()"
    assert f"Feature-map dropout: {expected_dropout}" in text
    if name == "vgg16-cifar10-standardized.ipynb":
        assert re.search(r"Computed over \d+ training images", text)
        assert re.search(r"Per-channel mean \(R, G, B\): \[0\.\d+, 0\.\d+, 0\.\d+\]", text)


def test_smoke_run_learns(executed):
    """At least 60% test accuracy on the synthetic set, with rising accuracy and a diagonal confusion matrix."""
    name, nb, text, run_dir = executed
    history = json.loads((run_dir / "history.json").read_text())
    assert history["test_acc"] >= 60.0, history["test_acc"]
    assert f"Test accuracy {history['test_acc']:.2f}%" in text
    assert history["valid_acc"][-1] > history["valid_acc"][0] or history["valid_acc"][0] >= 90.0
    assert len(history["minibatch_loss"]) == len(history["train_acc"]) * history["iter_per_epoch"]
    rows = re.findall(r"^ *(\w+) \| +([\d.]+)%$", text, flags=re.MULTILINE)  # the per-class accuracy table
    assert len(rows) == 10 and sum(float(accuracy) >= 50.0 for _, accuracy in rows) >= 6, rows


def test_smoke_run_keeps_its_files_in_its_own_small_folder(executed, results_dir):
    name, nb, text, run_dir = executed
    assert run_dir.parent == results_dir and run_dir.name.startswith("smoke-")
    names = {p.name for p in run_dir.iterdir()}
    assert names >= {"plot_training_loss.png", "plot_accuracy.png", "show_examples.png", "plot_confusion_matrix.png",
                     "confident_mistakes.png", "history.json", "run_comparison.png"}
    assert ("my_picture.png" in names) == (name == NOTEBOOKS[0])  # the picture section is the main notebook's only
    assert not [n for n in names if n.endswith(".pt")]  # no 600 MB of checkpoints for a check
    size = sum(p.stat().st_size for p in results_dir.rglob("*") if p.is_file())
    assert size <= 50e6, size
    for png in set(run_dir.glob("*.png")) - {run_dir / "example-picture.png"}:  # every figure, not the photo
        with Image.open(png) as image:
            assert "smoke test (synthetic data)" in image.text.get("Title", ""), png.name


def test_smoke_figures_are_shown_with_one_live_plot(executed):
    name, nb, text, run_dir = executed
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    # live plot (one, updated in place), loss, accuracy, examples, confusion matrix, mistakes, comparison[, picture]
    assert len(figures) == (8 if name == NOTEBOOKS[0] else 7)


def test_comparison_section_shows_every_smoke_run_in_the_results_folder(executed, results_dir):
    """Each run has a row of the run table (a table without rows passed: the picture section prints the run's name)."""
    name, nb, text, run_dir = executed
    runs = sorted(p.name for p in results_dir.iterdir() if (p / "history.json").exists())
    lines = text.splitlines()
    [header] = [i for i, line in enumerate(lines) if re.match(r"run +epochs +final valid", line)]
    rows = []
    for line in lines[header + 1 :]:  # "<name>  <epochs>  ..." until the table ends
        if not (row := re.match(r"(\S+) +\d+ ", line)):
            break
        rows.append(row.group(1))
    assert rows == runs
    if name == NOTEBOOKS[1]:  # the second notebook: both notebooks' runs, with different settings
        assert len(runs) == 2 and "normalization=per-channel" in " ".join(runs)


def test_own_picture_section_classifies_a_generated_picture(executed):
    name, nb, text, run_dir = executed
    if name != NOTEBOOKS[0]:  # the section is the main notebook's only
        assert "classify_image" not in "".join(c.source for c in nb.cells)
        return
    assert "MY_IMAGE is None: classifying" in text
    first = read_cifar10("unused", train=False, smoke_test=True).labels[0]  # planted: the label of another image
    assert f"the first test image, labelled {CIFAR10_CLASSES[first]} in the test set" in text
    predictions = re.findall(r"^([123])\. (\w+) +([\d.]+)%$", text, flags=re.MULTILINE)
    assert [rank for rank, _, _ in predictions] == ["1", "2", "3"]
    probabilities = [float(p) for _, _, p in predictions]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 100.05


def test_notebook_model_has_the_lecture_shape_and_parameter_count():
    import torch

    from benchmarks.notebook_code import cells_defining

    VGG16 = cells_defining(ROOT / NOTEBOOKS[0], "class VGG16(")["VGG16"]
    model = VGG16(num_classes=10).eval()
    assert sum(p.numel() for p in model.parameters()) == 50_415_434
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 10)
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)  # adaptive pooling copes with a 1x1 map
    assert isinstance(VGG16(10, dropout2d=0.2).feature_dropout, torch.nn.Dropout2d)
    biases = [m.bias for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(biases) == 16 and all(torch.count_nonzero(b) == 0 for b in biases)
