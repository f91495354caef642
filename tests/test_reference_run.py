"""The executed reference notebooks in reference-run/ run today's code (a stale reference is named cell by cell).

The reference run is made on a GPU by benchmarks/run_on_gpu.sh; until it has been committed,
the two tests about it are skipped, saying so.
"""

import json
import re
from pathlib import Path

import nbformat
import pytest

from benchmarks.claims_table import table

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


def markdown_links(text: str) -> list[str]:
    """The targets of Markdown links and images, ``[text](target)`` and ``![alt](target)``, without web addresses."""
    return [target for target in re.findall(r"\]\(([^)\s]+)\)", text)
            if not re.match(r"[a-z]+:|#", target)]


def notebook_markdown(path: Path) -> str:
    return "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "markdown")


@pytest.mark.parametrize("document", ["README.md", "reference-run/README.md", *NOTEBOOKS])
def test_every_relative_link_points_to_a_file_in_the_repository(document):
    path = ROOT / document
    if not path.exists():
        pytest.skip(f"{document} not made yet (benchmarks/import_gpu_run.py)")
    text = notebook_markdown(path) if path.suffix == ".ipynb" else path.read_text()
    missing = [target for target in markdown_links(text) if not (path.parent / target).exists()]
    assert not missing, f"{document} links to files that do not exist: {missing}"


@pytest.mark.parametrize("name", [pytest.param(n, marks=needs_reference(n)) for n in NOTEBOOKS])
def test_each_reference_figure_is_linked_from_its_notebook(name):
    figures = sorted((ROOT / "reference-run" / "figures" / Path(name).stem).glob("*.png"))
    linked = set(markdown_links(notebook_markdown(ROOT / name)))
    assert figures, f"reference-run/figures/{Path(name).stem}/ holds no figures"
    assert not [f.name for f in figures if str(f.relative_to(ROOT)) not in linked]


@pytest.mark.skipif(not (ROOT / "reference-run" / "runs").is_dir(), reason="no GPU runs imported yet")
def test_the_readmes_claims_table_is_what_claims_table_prints_from_the_stored_runs():
    runs = [json.loads(path.read_text()) for path in sorted((ROOT / "reference-run" / "runs").glob("*.json"))]
    expected = table(runs)
    readme = (ROOT / "README.md").read_text()
    assert expected in readme, ("README.md's table of the lecture's claims differs from what "
                                "`python benchmarks/claims_table.py` prints: paste its output into the README")
