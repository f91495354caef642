"""The executed reference notebooks in reference-run/ run today's code (a stale reference is named cell by cell).

The reference run is made on a GPU by benchmarks/run_on_gpu.sh; until it has been committed,
the two tests about it are skipped, saying so.
"""

from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["vgg16-cifar10.ipynb", "vgg16-cifar10-standardized.ipynb"]


def code_sources(path: Path) -> list[str]:
    """The code cells' sources, without papermill's injected-parameters cell."""
    cells = nbformat.read(path, as_version=4).cells
    return [c.source for c in cells
            if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


def changed_cells(reference: list[str], current: list[str]) -> list[str]:
    """One line per code cell that differs: its number and first line in the current notebook."""
    lines = []
    for index in range(max(len(reference), len(current))):
        old = reference[index] if index < len(reference) else None
        new = current[index] if index < len(current) else None
        if old != new:
            first = (new or old or "").splitlines()[0] if (new or old) else ""
            lines.append(f"code cell {index + 1}{' (removed)' if new is None else ' (new)' if old is None else ''}: "
                         f"{first[:70]}")
    return lines


def needs_reference(name):
    return pytest.mark.skipif(not (ROOT / "reference-run" / name).exists(),
                              reason=f"reference-run/{name} not made yet (benchmarks/run_on_gpu.sh on a GPU)")


@pytest.mark.parametrize("name", [pytest.param(n, marks=needs_reference(n)) for n in NOTEBOOKS])
def test_reference_notebook_runs_todays_code(name):
    reference = ROOT / "reference-run" / name
    changed = changed_cells(code_sources(reference), code_sources(ROOT / name))
    assert not changed, (f"reference-run/{name} is stale: these code cells changed since it was run "
                         "(re-run benchmarks/run_on_gpu.sh on a GPU):\n" + "\n".join(changed))


@pytest.mark.parametrize("name", [pytest.param(n, marks=needs_reference(n)) for n in NOTEBOOKS])
def test_reference_notebook_ran_without_errors_and_has_its_figures(name):
    cells = nbformat.read(ROOT / "reference-run" / name, as_version=4).cells
    outputs = [o for c in cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "Epoch: 050/050 | Train:" in text and "Test accuracy" in text and "SMOKE TEST" not in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 5


def test_changed_cells_names_what_differs():
    assert changed_cells(["a = 1", "b = 2"], ["a = 1", "b = 3", "c = 4"]) == ["code cell 2: b = 3",
                                                                              "code cell 3 (new): c = 4"]
