"""Run a tutorial notebook's code without Jupyter: for machines that have torch but no Jupyter.

    python benchmarks/notebook_code.py vgg16-cifar10.ipynb DATA_ROOT=/data/cifar10 NUM_EPOCHS=50

Each ``NAME=value`` overrides a setting of the notebook's ``parameters`` cell (the value
is read as a Python literal, else kept as a string), as papermill would. IPython-only
lines (``%magic``, ``!shell``) are skipped; figures are not shown, but every figure the
notebook saves still lands in its RESULTS_DIR. The benchmark also uses this module to
take the VGG16 class and the transforms from the notebook itself, so they cannot drift.
"""

from __future__ import annotations

import ast
import json
import linecache
import sys
from pathlib import Path


def code_cells(notebook: str | Path) -> list[tuple[str, list[str]]]:
    """The notebook's code cells as (source, tags), with IPython-only lines replaced by ``pass``."""
    cells = []
    for cell in json.loads(Path(notebook).read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        lines = "".join(cell["source"]).splitlines()
        python = [
            line[: len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!")) else line
            for line in lines
        ]
        cells.append(("\n".join(python), cell.get("metadata", {}).get("tags", [])))
    return cells


def compile_cell(source: str, notebook: str | Path, number: int):
    """Compile one code cell under a name of its own (``<vgg16-cifar10.ipynb, code cell 10>``), as IPython does.

    The cell's lines are registered with ``linecache`` under that name, so a traceback shows
    the cell's own lines and ``inspect.getsource`` finds a class's code (``train_model``
    fingerprints the model class by it). Compiled under the notebook's file name, both
    would read whatever JSON lines of the .ipynb file have those line numbers.
    """
    name = f"<{Path(notebook).name}, code cell {number}>"
    linecache.cache[name] = (len(source), None, source.splitlines(keepends=True), name)  # no mtime: kept
    return compile(source, name, "exec")


def cells_defining(notebook: str | Path, *names: str) -> dict:
    """Execute the parameters cell and the cells that define ``names`` (e.g. "class VGG16("); return the namespace."""
    import torch
    from torchvision import transforms

    namespace = {"torch": torch, "transforms": transforms,
                 "NORMALIZE_MEAN": (0.5, 0.5, 0.5), "NORMALIZE_STD": (0.5, 0.5, 0.5)}
    for number, (source, tags) in enumerate(code_cells(notebook), start=1):
        if "parameters" in tags or any(name in source for name in names):
            exec(compile_cell(source, notebook, number), namespace)
    return namespace


def parse_override(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` as (name, value): a Python literal where the value is one, else the text itself.

    An empty value is refused too: ``NAME=`` is what a shell passes for ``NAME=$VAR`` with ``VAR`` unset.
    """
    name, equals, value = text.partition("=")
    if not equals or not name.isidentifier() or not value:
        raise SystemExit(f"{text!r} is not a setting: write NAME=VALUE, e.g. NUM_EPOCHS=5 or DEVICE=cuda:0.")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def run(notebook: str | Path, overrides: dict) -> None:
    """Execute every code cell in order, applying ``overrides`` right after the parameters cell."""
    namespace = {"__name__": "__main__"}
    for number, (source, tags) in enumerate(code_cells(notebook), start=1):
        exec(compile_cell(source, notebook, number), namespace)
        if "parameters" in tags:
            unknown = set(overrides) - set(namespace)
            if unknown:
                raise SystemExit(f"Not settings of {notebook}: {sorted(unknown)}")
            namespace.update(overrides)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    sys.path.insert(0, str(Path(sys.argv[1]).resolve().parent))
    run(sys.argv[1], dict(parse_override(arg) for arg in sys.argv[2:]))
