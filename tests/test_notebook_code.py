"""benchmarks/notebook_code.py: a notebook's code run without Jupyter, with papermill-like overrides."""

import json
import subprocess
import sys

import pytest

from benchmarks.notebook_code import cells_defining, code_cells, parse_override, run
from tests.test_notebooks import NOTEBOOKS, ROOT


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_code_cell_compiles_once_the_ipython_lines_are_skipped(notebook):
    """The Colab cell's indented `!git clone` and `%pip` lines and the `%watermark` magics become `pass`."""
    for index, (source, _) in enumerate(code_cells(ROOT / notebook)):
        compile(source, f"<{notebook}, code cell {index + 1}>", "exec")


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
