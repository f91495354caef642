"""Both notebooks execute top to bottom in smoke mode, offline, and print what the lecture prints."""

import json
import re
from pathlib import Path

import nbformat
import papermill
import pytest

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


@pytest.fixture(scope="module", params=NOTEBOOKS)
def executed(request, tmp_path_factory):
    work = tmp_path_factory.mktemp(request.param.split(".")[0])
    papermill.execute_notebook(
        str(ROOT / request.param), str(work / request.param), cwd=str(ROOT), kernel_name="python3",
        parameters={"SMOKE_TEST": True, "RESULTS_DIR": str(work / "results"), "DATA_ROOT": str(work / "data"),
                    "NUM_WORKERS": 0, "DROPOUT2D": DROPOUT2D[request.param]},
        progress_bar=False,
    )
    return request.param, nbformat.read(work / request.param, as_version=4), work / "results"


def test_model_cells_are_identical():
    assert model_cell(NOTEBOOKS[0]) == model_cell(NOTEBOOKS[1])


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_have_no_outputs_and_one_parameters_cell(name):
    cells = code_cells(name)
    assert not any(c.outputs or c.execution_count for c in cells)
    assert sum("parameters" in c.metadata.get("tags", []) for c in cells) == 1


def test_notebook_runs_and_prints_the_lecture_log(executed):
    name, nb, results = executed
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(cell_text(c) for c in nb.cells if c.cell_type == "code")
    assert "SMOKE TEST" in text
    assert "Trainable parameters: 50,415,434" in text
    assert re.search(r"Epoch: 001/002 \| Batch 0000/0009 \| Loss: \d+\.\d{4}", text)
    assert re.search(r"Epoch: 002/002 \| Train: \d+\.\d\d% \| Validation: \d+\.\d\d%", text)
    assert re.search(r"Test accuracy \d+\.\d\d%", text)
    # loss, accuracy, examples, confusion matrix, confident mistakes, and ONE live plot updated in place
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) == 6
    assert {p.name for p in results.iterdir()} >= {
        "plot_training_loss.png", "plot_accuracy.png", "show_examples.png", "plot_confusion_matrix.png",
        "confident_mistakes.png", "history.json", "vgg16-cifar10.pt",
    }
    assert "block_5                  (1, 512, 2, 2)" in text and "block_5                  (1, 512, 1, 1)" in text
    assert "Most confused (true -> predicted)" in text
    expected_dropout = "Dropout2d(p=0.25" if DROPOUT2D[name] else "Identity()"
    assert f"Feature-map dropout: {expected_dropout}" in text
    history = json.loads((results / "history.json").read_text())
    assert len(history["train_acc"]) == 2 and len(history["minibatch_loss"]) == 18
    if name == "vgg16-cifar10-standardized.ipynb":
        assert "Computed over 288 training images" in text
        assert re.search(r"Per-channel mean \(R, G, B\): \[0\.\d+, 0\.\d+, 0\.\d+\]", text)


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
