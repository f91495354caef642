"""The executed reference notebooks in reference-run/ run today's code (a stale reference is named cell by cell).

The reference run is made on a GPU by benchmarks/run_on_gpu.sh; until it has been committed,
the two tests about it are skipped, saying so.
"""

import hashlib
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


def cell_key(name: str, number: int, source: str | None) -> str:
    """How reference-run/README.md names a changed code cell: notebook, number, SHA-256 prefix of today's source."""
    return f"`{name}` code cell {number} (`{hashlib.sha256((source or '').encode()).hexdigest()[:8]}`)"


def unexplained_changes(name: str, reference: list[str], current: list[str], readme: str) -> list[str]:
    """The changed cells that reference-run/README.md does not list (by ``cell_key``) as leaving the results standing.

    Re-running the reference takes a GPU session; until then, a change that cannot alter what is
    trained or measured (a message, a check of the settings) may be listed there with the reason.
    The key holds the cell's hash, so any later edit of a listed cell needs a new look.
    """
    lines = changed_cells(reference, current)
    numbers = [int(re.match(r"code cell (\d+)", line).group(1)) for line in lines]
    return [line for line, number in zip(lines, numbers, strict=True)
            if cell_key(name, number, current[number - 1] if number <= len(current) else None) not in readme]


@pytest.mark.parametrize("name", [pytest.param(n, marks=needs_reference(n)) for n in NOTEBOOKS])
def test_reference_notebook_runs_todays_code(name):
    reference = ROOT / "reference-run" / name
    readme = (ROOT / "reference-run" / "README.md").read_text()
    changed = unexplained_changes(name, code_sources(reference), code_sources(ROOT / name), readme)
    assert not changed, (f"reference-run/{name} is stale: these code cells changed since it was run. Re-run "
                         "benchmarks/run_on_gpu.sh on a GPU, or, for a change that cannot alter the results, list "
                         "each cell in reference-run/README.md's 'Code changed since this run' as "
                         f"`{name}` code cell N (`first 8 hex digits of its SHA-256`) with the reason:\n"
                         + "\n".join(changed))


def test_a_listed_change_is_accepted_only_for_the_cells_source_it_names():
    reference, current = ["a = 1", "b = 2"], ["a = 1", "b = 3"]
    listed = f"- {cell_key('x.ipynb', 2, 'b = 3')}: a message reworded"
    assert unexplained_changes("x.ipynb", reference, current, listed) == []
    assert unexplained_changes("x.ipynb", reference, ["a = 1", "b = 4"], listed) == ["code cell 2: b = 4"]
    assert unexplained_changes("x.ipynb", reference, ["a = 0", "b = 3"], listed) == ["code cell 1: a = 0"]
    assert unexplained_changes("y.ipynb", reference, current, listed) == ["code cell 2: b = 3"]


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
