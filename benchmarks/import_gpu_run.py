"""Copy what benchmarks/run_on_gpu.sh made on a GPU machine into reference-run/.

    python benchmarks/import_gpu_run.py gpu-run.tgz      # the archive the script packs (PACK=...)
    python benchmarks/import_gpu_run.py WORK_DIR         # or its work folder

- the executed notebooks in ``reference-run/`` go to ``reference-run/`` (outputs included);
- each reference notebook's figures to ``reference-run/figures/<notebook>/`` (found through
  the run folder the notebook printed);
- every run's ``history.json`` to ``reference-run/runs/<run name>.json``, with the card and
  the commit added (from ``machine.txt``), for ``benchmarks/claims_table.py``;
- the benchmark's and the profile's JSON and log to ``reference-run/``;
- when the reference notebooks were run, ``machine.txt``, ``times.txt`` and
  ``reference-run/README.md``: the card, the software, the commit (and whether the code that
  ran was that commit's, compared file by file), the date, the data, the commands, and each
  notebook's results.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.claims_table import run_numbers  # noqa: E402

DATA_NOTE = ("CIFAR-10 re-encoded as JPEG at quality 75 (all 60,000 images), exported to `train/<class>/` and "
             "`test/<class>/` image folders and read by `helper_dataset`'s image-folder path. The original files "
             "could not be downloaded on the machine the run was made on. JPEG loses some fine detail, so expect the "
             "original CIFAR-10 files to score somewhat higher.")


def machine_facts(work: Path) -> dict:
    """What run_on_gpu.sh recorded in machine.txt: the card and software once, then a block per invocation.

    Returns the card, its driver, the software, the commit (one for all invocations: runs
    made at two commits must be imported from two work folders, and so must runs of edited
    code), the SHA-256 of each code file and any uncommitted changes, the first date, every
    command, the notebook options and the data.
    """
    lines = (work / "machine.txt").read_text().splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith("name, driver_version")), None)
    card = [part.strip() for part in lines[header + 1].split(",")] if header is not None and header + 1 < len(lines) \
        else ["unknown card (nvidia-smi printed nothing)"]

    def all_after(prefix: str) -> list[str]:
        return [line[len(prefix):].strip() for line in lines if line.startswith(prefix)]

    commits = sorted({found[:7] for found in all_after("commit ")})
    if len(commits) > 1:
        raise ValueError(f"{work / 'machine.txt'} records invocations at several commits ({', '.join(commits)}): "
                         "import the runs of each commit from a work folder of its own.")
    ran: dict[str, set[str]] = {}
    for entry in all_after("code: "):
        digest, _, name = entry.partition(" ")
        ran.setdefault(name.strip().lstrip("*"), set()).add(digest)
    edited = sorted(name for name, digests in ran.items() if len(digests) > 1)
    if edited:
        raise ValueError(f"{work / 'machine.txt'} records invocations that ran different code ({', '.join(edited)}): "
                         "import the runs of each version from a work folder of its own.")
    code = {name: digest for name, (digest,) in ran.items()}
    options = sorted(set(all_after("notebook options:")) - {"none"})
    return {"card": card[0], "driver": card[1] if len(card) > 1 else "unknown",
            "software": (all_after("python ") or ["unknown"])[0], "commit": commits[0] if commits else "unknown",
            "code": code, "uncommitted": all_after("uncommitted: "), "date": (all_after("date:") or ["unknown"])[0],
            "commands": all_after("command:"), "notebook_options": options,
            "data": (all_after("data:") or ["unknown"])[0]}


def files_differing(commit: str, code: dict[str, str], repository: Path = ROOT,
                    digests: dict[str, str] | None = None) -> list[str] | None:
    """The files of ``code`` (name -> SHA-256) whose content at ``commit`` differs or is missing there.

    None where the repository lacks the commit. ``digests`` (blob id -> SHA-256) lets several calls
    read each blob once.
    """
    digests = {} if digests is None else digests
    tree = subprocess.run(["git", "ls-tree", "-r", commit, "--", *code], cwd=repository, capture_output=True, text=True)
    if tree.returncode != 0:
        return None
    blobs = {line.partition("\t")[2]: line.split()[2] for line in tree.stdout.splitlines()}
    for blob in blobs.values():
        if blob not in digests:
            content = subprocess.run(["git", "cat-file", "blob", blob], cwd=repository, capture_output=True).stdout
            digests[blob] = hashlib.sha256(content).hexdigest()
    return [name for name, digest in code.items() if name not in blobs or digests[blobs[name]] != digest]


def code_matches_commit(facts: dict) -> tuple[bool | None, str]:
    """Whether the code that ran is the recorded commit's, file by file (SHA-256), and a note saying so."""
    if facts["uncommitted"]:
        return False, f" (with uncommitted changes: {', '.join(facts['uncommitted'])})"
    if facts["commit"] == "unknown":
        return None, " (not recorded: RUN_COMMIT was not set)"
    if not facts["code"]:
        return None, " (the code that ran was not recorded, so it could not be compared with it)"
    differing = files_differing(facts["commit"], facts["code"])
    if differing is None:
        return None, " (not in this repository, so the code could not be compared with it)"
    if differing:
        return False, f" (but the code that ran differed from it in {', '.join(differing)})"
    return True, ""


def commit_with_code(code: dict[str, str], depth: int = 500, repository: Path = ROOT) -> str | None:
    """The commit that made the code that ran: its files have exactly the recorded SHA-256s.

    Walking back from HEAD (at most ``depth`` commits), the oldest commit of the first unbroken
    stretch that matches: the commits after it in that stretch changed other files only. The
    commit that machine.txt names is what git said on the GPU machine, whose copy of the history
    can be older than the working tree it ran: the code's hashes decide.
    """
    digests: dict[str, str] = {}
    listed = subprocess.run(["git", "rev-list", f"--max-count={depth}", "HEAD"], cwd=repository,
                            capture_output=True, text=True)
    found = None
    for commit in listed.stdout.split():
        if files_differing(commit, code, repository, digests) == []:
            found = commit
        elif found is not None:
            break
    return found


def with_commit_of_code(facts: dict) -> dict:
    """``facts`` with the commit replaced by the one whose files are exactly the code that ran, where they differ.

    The note added under "recorded" says what machine.txt named instead; without a recorded code or a
    commit that has it, ``facts`` comes back unchanged (and code_matches_commit says why).
    """
    if not facts["code"] or code_matches_commit(facts)[0] is True:
        return facts
    found = commit_with_code(facts["code"])
    if found is None:
        return facts
    named = f"`{facts['commit']}`" + (" with uncommitted changes" if facts["uncommitted"] else "")
    return {**facts, "commit": found[:7], "uncommitted": [],
            "recorded": f" (machine.txt names {named}; the SHA-256 of every code file that ran is this commit's)"}


def notebook_seconds(work: Path) -> dict[str, str]:
    """Each notebook's whole run time and exit status, from times.txt ("...: exit status 0, 181 s for ...")."""
    found = {}
    for line in (work / "times.txt").read_text().splitlines() if (work / "times.txt").exists() else []:
        match = re.match(r"(.+\.ipynb): exit status (\d+), (\d+) s", line)
        if match:
            found[Path(match.group(1)).name] = (f"{int(match.group(3)) / 60:.1f} min" if match.group(2) == "0"
                                                else f"failed (exit status {match.group(2)})")
    return found


def data_description(recorded: str) -> str:
    """The data row: the JPEG copy of CIFAR-10 explained, anything else as run_on_gpu.sh recorded it."""
    jpeg = re.search(r": (\d+) JPEG and 0 PNG files", recorded)
    return f"{DATA_NOTE} (recorded: {recorded})" if jpeg and int(jpeg.group(1)) > 0 else f"recorded: {recorded}"


def reference_readme(work: Path, target: Path, notebooks: dict[str, str | None], facts: dict, code_note: str) -> str:
    """reference-run/README.md: what was run, on what, at which commit, and what came out.

    ``facts`` are machine.txt's, with the commit of the code that ran; ``code_note`` says how that code
    compares with the commit (code_matches_commit).
    """
    seconds = notebook_seconds(work)
    code_note += facts.get("recorded", "")
    options = ", ".join(f"`{option}`" for option in facts["notebook_options"])
    settings = f"their default settings, with {options} added (papermill)" if options else "their default settings"
    rows = []
    for notebook, run in notebooks.items():
        history_file = work / "results" / str(run) / "history.json"
        history = json.loads(history_file.read_text()) if run and history_file.exists() else None
        if history and history.get("valid_acc"):
            numbers = " | ".join([str(len(history["valid_acc"])), *run_numbers(history)])
        else:
            numbers = "no history | - | - | -"
        folder = f"`{run}`" if run else "none printed"
        figures = f"[figures](figures/{Path(notebook).stem}/)" if (target / "figures" / Path(notebook).stem).is_dir() \
            else "none"
        rows.append(f"| [`{notebook}`]({notebook}) | {folder} | {numbers} | {seconds.get(notebook, '?')} | {figures} |")
    return "\n".join([
        "# Reference run",
        "",
        f"Both notebooks executed top to bottom with {settings} on a GPU, outputs included, so that",
        "you can see what a healthy run looks like before (or instead of) running one: every epoch's log, the",
        "curves, the example predictions and the confusion matrix. Compare your own run's figures with the ones",
        "in `figures/`. The top-level notebooks stay without outputs.",
        "",
        "| | |",
        "|---|---|",
        f"| card | {facts['card']} (driver {facts['driver']}) |",
        f"| software | python {facts['software'].replace(' | ', ', ')} |",
        f"| commit | `{facts['commit']}`{code_note} |",
        f"| date | {facts['date']} |",
        f"| data | {data_description(facts['data'])} |",
        f"| command | {'; then '.join(f'`{command}`' for command in facts['commands']) or 'unknown'} "
        "(papermill, one notebook after the other) |",
        "",
        "| notebook | run folder | epochs | test accuracy | best validation accuracy (epoch) | training time "
        "| whole notebook | figures |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "- `figures/<notebook>/`: the PNG figures each notebook saved in its run folder.",
        "- `runs/`: the `history.json` of every run made on the GPU (settings, every loss and accuracy, the",
        "  time per epoch, the test accuracy), with the card and the commit added; `python benchmarks/claims_table.py`",
        "  makes the README's table of the lecture's claims from them.",
        "- `machine.txt`, `times.txt`: what `benchmarks/run_on_gpu.sh` recorded; `benchmarks/`: speed measurements.",
        "- `tests/test_reference_run.py` checks that these notebooks' code cells are the current notebooks' code",
        "  cells (apart from the injected parameters) and names any cell that changed since: a stale reference",
        "  run is visible.",
        "",
    ])


def printed_run_folder(notebook: Path) -> str | None:
    """The run folder's name that an executed notebook printed ("This run's folder: ...")."""
    for cell in json.loads(notebook.read_text())["cells"]:
        for output in cell.get("outputs", []):
            found = re.search(r"This run's folder: (\S+)", "".join(output.get("text", "")))
            if found:
                return Path(found.group(1)).name
    return None


def import_work(work: Path, target: Path) -> list[Path]:
    """Copy one GPU run's work folder into ``target`` (reference-run/); return the files written.

    Smoke-test runs (a dry run of run_on_gpu.sh on a CPU) are refused before anything is
    copied: they check the code, and their accuracies would land in the README's table. So is
    a run whose settings already have a different stored run (the run name comes from the
    settings): re-importing the same archive is fine, silently replacing a measurement is not.
    """
    smoke = sorted(path.parent.name for path in (work / "results").glob("smoke-*/history.json"))
    if smoke:
        raise ValueError(f"{work} holds smoke-test runs ({', '.join(smoke)}): they check the code and measure "
                         "nothing, so they are not imported. Import the work folder of a real GPU run (delete "
                         "the smoke-* folders from its results/ first if a smoke test ran in it too).")
    facts, written = with_commit_of_code(machine_facts(work)), []
    matches, code_note = code_matches_commit(facts)
    runs = target / "runs"
    records = {runs / f"{history.parent.name}.json": {**json.loads(history.read_text()), "card": facts["card"],
                                                       "commit": facts["commit"], "code_matches_commit": matches}
               for history in sorted((work / "results").glob("*/history.json"))}
    replaced = [path for path, record in records.items() if path.exists() and json.loads(path.read_text()) != record]
    if replaced:
        raise ValueError(f"{', '.join(str(path) for path in replaced)} already hold(s) another run of the same "
                         "settings: importing would replace a measured run without a trace. Move the old file "
                         f"aside first (for example to {runs / 'unfinished'}/ for a run that was cut short), "
                         "or delete it if the new run is meant to replace it.")
    target.mkdir(parents=True, exist_ok=True)
    for name in ("benchmark.json", "benchmark.log", "profile.json", "profile.log"):
        if (work / name).exists():
            written.append(Path(shutil.copy(work / name, target / name)))
    notebooks = {}
    for notebook in sorted((work / "reference-run").glob("*.ipynb"), key=lambda path: (len(path.name), path.name)):
        written.append(Path(shutil.copy(notebook, target / notebook.name)))
        run = notebooks[notebook.name] = printed_run_folder(notebook)
        for png in sorted((work / "results" / run).glob("*.png")) if run is not None else []:
            figures = target / "figures" / notebook.stem
            figures.mkdir(parents=True, exist_ok=True)
            written.append(Path(shutil.copy(png, figures / png.name)))
    runs.mkdir(exist_ok=True)
    for path, record in records.items():
        path.write_text(json.dumps(record, indent=1))
        written.append(path)
    if notebooks:  # a run of the reference notebooks (not only of the claims): describe it, with its records
        for name in ("machine.txt", "times.txt", "skipped.txt"):
            if (work / name).exists():
                written.append(Path(shutil.copy(work / name, target / name)))
            else:  # an earlier run's record (its skipped steps) must not stand beside this run's
                (target / name).unlink(missing_ok=True)
        (target / "README.md").write_text(reference_readme(work, target, notebooks, facts, code_note))
        written.append(target / "README.md")
    return written


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        raise SystemExit(__doc__)
    source = Path(sys.argv[1])
    if not (source / "machine.txt").is_file() and not source.is_file():
        raise SystemExit(f"{source} is neither the archive run_on_gpu.sh packs (PACK=...) nor a work folder with "
                         "machine.txt in it: pass one of them.")
    with tempfile.TemporaryDirectory() as unpacked:
        if source.is_file():
            with tarfile.open(source) as archive:
                archive.extractall(unpacked, filter="data")
            source = Path(unpacked)
        for path in import_work(source, ROOT / "reference-run"):
            print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
