"""The README's table of the lecture's claims, made from the stored histories of the measured runs.

    python benchmarks/claims_table.py                      # reads reference-run/runs/*.json
    python benchmarks/claims_table.py --runs OTHER_FOLDER

Each JSON file is a run's ``history.json`` (what ``train_model`` writes: settings, per-epoch
accuracies and times, test accuracy) plus ``card`` and ``commit``, which
``benchmarks/import_gpu_run.py`` adds when it copies a GPU run into the repository. One row
per run, in the order of the lecture's claims; the Markdown table goes to standard output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helper_train import LECTURE_SETTINGS  # noqa: E402

LABELS = {  # a setting that differs from the lecture's -> how the table names the run
    "normalization": "the standardized notebook (per-channel mean and std)",
    "image_size": "the raw 32x32 images (`IMAGE_SIZE = 32`)",
    "dropout2d": "Dropout2d {value} (`DROPOUT2D = {value}`)",
    "seed": "the main notebook, another seed (`RANDOM_SEED = {value}`)",
    "precision": "the main notebook in float32 (`PRECISION = \"float32\"`)",
}
LABELLED_VALUES = {"image_size": 32, "normalization": "per-channel", "precision": "float32"}  # a label naming one value


def row_label(settings: dict) -> str:
    """Name a run by how its settings differ from the lecture's."""
    changed = {name: value for name, value in settings.items()
               if name in LECTURE_SETTINGS and LECTURE_SETTINGS[name] != value}
    if not changed:
        return "the main notebook as it is"
    return "; ".join(LABELS[name].format(value=value) if name in LABELS and LABELLED_VALUES.get(name, value) == value
                     else f"`{name} = {value!r}`" for name, value in changed.items())


def sort_key(settings: dict) -> int:
    """The lecture's order: as it is, 32x32, standardized, Dropout2d, another seed, float32, anything else."""
    order = [None, "image_size", "normalization", "dropout2d", "seed", "precision"]
    changed = [name for name in order[1:] if name in settings and LECTURE_SETTINGS.get(name) != settings[name]]
    if changed:
        return order.index(changed[0])
    other = [name for name in LECTURE_SETTINGS if name in settings and LECTURE_SETTINGS[name] != settings[name]]
    return len(order) if other else 0


def run_numbers(run: dict) -> tuple[str, str, str]:
    """A run's test accuracy, best validation accuracy with its epoch, and training time, as the tables print them.

    The best epoch is the first to reach the highest validation accuracy (the one whose weights
    ``best_model.pt`` keeps; "-" for a run stopped in its first epoch); the training time counts
    the time the checkpoints held training.
    """
    valid = run["valid_acc"]
    best = max(range(len(valid)), key=valid.__getitem__) if valid else None
    minutes = (sum(run["epoch_seconds"]) + sum(run.get("checkpoint_seconds", []))) / 60
    test = f"{run['test_acc']:.2f}%" if run.get("test_acc") is not None \
        else f"not finished: stopped after {len(valid)} epochs"
    return test, f"{valid[best]:.2f}% ({best + 1})" if best is not None else "-", f"{minutes:.2f} min"


def table(runs: list[dict]) -> str:
    """The Markdown table: one row per run."""
    lines = ["| setting (50 epochs each) | test accuracy | best validation accuracy (epoch) | training time "
             "| card, commit |", "|---|---|---|---|---|"]
    for run in sorted(runs, key=lambda r: (sort_key(r["settings"]), r["run_name"])):
        test, best_valid, training = run_numbers(run)
        lines.append(f"| {row_label(run['settings'])} | {test} | {best_valid} | "
                     f"{training} | {run.get('card', '?')}, `{run.get('commit', '?')}`"
                     f"{' (code differed)' if run.get('code_matches_commit') is False else ''} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=ROOT / "reference-run" / "runs")
    runs = [json.loads(path.read_text()) for path in sorted(parser.parse_args().runs.glob("*.json"))]
    if not runs:
        raise SystemExit("No runs found: copy a GPU run into the repository with benchmarks/import_gpu_run.py first.")
    print(table(runs))


if __name__ == "__main__":
    main()
