"""Copy what benchmarks/run_on_gpu.sh made on a GPU machine into reference-run/.

    python benchmarks/import_gpu_run.py gpu-run.tgz      # the archive the script packs (PACK=...)
    python benchmarks/import_gpu_run.py WORK_DIR         # or its work folder

- the executed notebooks in ``reference-run/`` go to ``reference-run/`` (outputs included);
- each reference notebook's figures to ``reference-run/figures/<notebook>/`` (found through
  the run folder the notebook printed);
- every run's ``history.json`` to ``reference-run/runs/<run name>.json``, with the card and
  the commit added (from ``machine.txt``), for ``benchmarks/claims_table.py``;
- ``machine.txt``, ``times.txt`` and the benchmark's and the profile's JSON and log to ``reference-run/``.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine_facts(work: Path) -> dict:
    """The card and the commit, as run_on_gpu.sh recorded them in machine.txt."""
    text = (work / "machine.txt").read_text()
    card = text.splitlines()[1].split(",")[0].strip() if len(text.splitlines()) > 1 else "unknown card"
    commit = re.search(r"commit ([0-9a-f]{7})", text)
    return {"card": card, "commit": commit.group(1) if commit else "unknown"}


def printed_run_folder(notebook: Path) -> str | None:
    """The run folder's name that an executed notebook printed ("This run's folder: ...")."""
    for cell in json.loads(notebook.read_text())["cells"]:
        for output in cell.get("outputs", []):
            found = re.search(r"This run's folder: (\S+)", "".join(output.get("text", "")))
            if found:
                return Path(found.group(1)).name
    return None


def import_work(work: Path, target: Path) -> list[Path]:
    """Copy one GPU run's work folder into ``target`` (reference-run/); return the files written."""
    facts, written = machine_facts(work), []
    target.mkdir(parents=True, exist_ok=True)
    for name in ("machine.txt", "times.txt", "skipped.txt", "benchmark.json", "benchmark.log", "profile.json",
                 "profile.log"):
        if (work / name).exists():
            written.append(Path(shutil.copy(work / name, target / name)))
    for notebook in sorted((work / "reference-run").glob("*.ipynb")):
        written.append(Path(shutil.copy(notebook, target / notebook.name)))
        run = printed_run_folder(notebook)
        if run is not None:
            figures = target / "figures" / notebook.stem
            figures.mkdir(parents=True, exist_ok=True)
            for png in sorted((work / "results" / run).glob("*.png")):
                written.append(Path(shutil.copy(png, figures / png.name)))
    runs = target / "runs"
    runs.mkdir(exist_ok=True)
    for history in sorted((work / "results").glob("*/history.json")):
        record = {**json.loads(history.read_text()), **facts}
        path = runs / f"{history.parent.name}.json"
        path.write_text(json.dumps(record, indent=1))
        written.append(path)
    return written


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    source = Path(sys.argv[1])
    with tempfile.TemporaryDirectory() as unpacked:
        if source.is_file():
            with tarfile.open(source) as archive:
                archive.extractall(unpacked, filter="data")
            source = Path(unpacked)
        for path in import_work(source, ROOT / "reference-run"):
            print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
