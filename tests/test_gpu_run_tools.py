"""The tools that bring a GPU run into the repository: import_gpu_run.py and the claims table."""

import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from benchmarks import claims_table, import_gpu_run
from benchmarks.claims_table import table
from benchmarks.import_gpu_run import commit_with_code, import_work, machine_facts

ROOT = Path(__file__).resolve().parents[1]


def history(name, settings, valid_acc, test_acc):
    return {"run_name": name, "settings": settings, "valid_acc": valid_acc, "train_acc": valid_acc,
            "minibatch_loss": [1.0] * len(valid_acc), "iter_per_epoch": 1, "epoch_seconds": [30.0] * len(valid_acc),
            "checkpoint_seconds": [0.0] * len(valid_acc), "test_acc": test_acc}


LECTURE = {"seed": 123, "batch_size": 256, "learning_rate": 0.01, "image_size": 64, "dropout2d": 0.0,
           "normalization": "mean=std=0.5", "precision": "auto", "deterministic": False}


MACHINE = ("name, driver_version, memory.total [MiB]\nNVIDIA H200, 580.159.04, 143771 MiB\n"
           "python 3.12.3 | torch 2.11.0 | torchvision 0.26.0\n")


def invocation(commit="0123456789abcdef", code="", steps="reference", options="none"):
    """One invocation's block of machine.txt, as run_on_gpu.sh appends it."""
    return (f"--- invocation\ncommit {commit} (from RUN_COMMIT)\n{code}date: 2026-11-26 09:00 UTC\n"
            f"command: bash benchmarks/run_on_gpu.sh /tmp/cifar10 /tmp/w 540 {steps}\nnotebook options: {options}\n"
            "data: image folders in /tmp/cifar10: 60000 JPEG and 0 PNG files\n")


def code_lines(commit, change=None):
    """run_on_gpu.sh's "code:" lines for the files of ``commit``; ``change`` names one file whose hash differs."""
    lines = []
    for name in ("helper_train.py", "vgg16-cifar10.ipynb"):
        content = subprocess.run(["git", "show", f"{commit}:{name}"], cwd=ROOT, capture_output=True, check=True).stdout
        digest = hashlib.sha256(content + (b"# edited" if name == change else b"")).hexdigest()
        lines.append(f"code: {digest}  {name}\n")
    return "".join(lines)


def fake_gpu_work(work: Path) -> None:
    """What run_on_gpu.sh leaves: machine.txt, an executed notebook naming its run folder, run folders."""
    (work / "reference-run").mkdir(parents=True)
    (work / "machine.txt").write_text(MACHINE + invocation())
    (work / "times.txt").write_text(f"{work}/reference-run/vgg16-cifar10.ipynb: exit status 0, 183 s for the whole "
                                    f"notebook\n{work}/reference-run/vgg16-cifar10-standardized.ipynb: exit status "
                                    "124, 240 s for the whole notebook\n")
    output = {"output_type": "stream", "name": "stdout", "text": ["This run's folder: /tmp/w/results/lecture-aaaaaa\n"]}
    notebook = {"cells": [{"cell_type": "code", "source": "x", "metadata": {}, "outputs": [output],
                           "execution_count": 1}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (work / "reference-run" / "vgg16-cifar10.ipynb").write_text(json.dumps(notebook))
    killed = {**notebook, "cells": [{**notebook["cells"][0], "outputs": []}]}  # stopped by its time limit
    (work / "reference-run" / "vgg16-cifar10-standardized.ipynb").write_text(json.dumps(killed))
    runs = {"lecture-aaaaaa": history("lecture-aaaaaa", LECTURE, [50.0, 80.0, 79.0], 81.5),
            "dropout2d=0.2-bbbbbb": history("dropout2d=0.2-bbbbbb", {**LECTURE, "dropout2d": 0.2}, [40.0, 70.0], 75.25),
            "seed=7-cccccc": history("seed=7-cccccc", {**LECTURE, "seed": 7}, [60.0], None)}
    for name, record in runs.items():
        (work / "results" / name).mkdir(parents=True)
        (work / "results" / name / "history.json").write_text(json.dumps(record))
    (work / "results" / "lecture-aaaaaa" / "plot_accuracy.png").write_bytes(b"png")


def test_import_copies_notebooks_figures_and_histories_with_card_and_commit(tmp_path):
    fake_gpu_work(tmp_path / "work")
    written = import_work(tmp_path / "work", tmp_path / "reference-run")
    target = tmp_path / "reference-run"
    assert (target / "vgg16-cifar10.ipynb").exists() and (target / "machine.txt") in written
    assert (target / "figures" / "vgg16-cifar10" / "plot_accuracy.png").read_bytes() == b"png"
    run = json.loads((target / "runs" / "lecture-aaaaaa.json").read_text())
    assert run["card"] == "NVIDIA H200" and run["commit"] == "0123456" and run["test_acc"] == 81.5
    assert sorted(p.name for p in (target / "runs").iterdir()) == [
        "dropout2d=0.2-bbbbbb.json", "lecture-aaaaaa.json", "seed=7-cccccc.json"]


def test_claims_table_has_one_row_per_run_in_the_lectures_order(tmp_path):
    fake_gpu_work(tmp_path / "work")
    import_work(tmp_path / "work", tmp_path / "reference-run")
    runs = [json.loads(p.read_text()) for p in sorted((tmp_path / "reference-run" / "runs").glob("*.json"))]
    rows = table(runs).splitlines()[2:]
    assert rows[0] == "| the main notebook as it is | 81.50% | 80.00% (2) | 1.50 min | NVIDIA H200, `0123456` |"
    assert rows[1].startswith("| Dropout2d 0.2 (`DROPOUT2D = 0.2`) | 75.25% | 70.00% (2) | 1.00 min |")
    assert rows[2].startswith("| the main notebook, another seed (`RANDOM_SEED = 7`) | "
                              "not finished: stopped after 1 epochs | 60.00% (1) |")


def test_claims_table_script_says_when_there_are_no_runs(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "claims_table.py"), "--runs", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "No runs found" in done.stderr


def test_import_describes_the_reference_run_in_its_readme(tmp_path):
    fake_gpu_work(tmp_path / "work")
    written = import_work(tmp_path / "work", tmp_path / "reference-run")
    readme = (tmp_path / "reference-run" / "README.md").read_text()
    assert tmp_path / "reference-run" / "README.md" in written
    for fact in ("| card | NVIDIA H200 (driver 580.159.04) |", "| software | python 3.12.3, torch 2.11.0, torchvision "
                 "0.26.0 |", "| commit | `0123456` (the code that ran was not recorded, so it could not be compared",
                 "| date | 2026-11-26 09:00 UTC |", "JPEG at quality 75 (all 60,000 images)",
                 "(recorded: image folders in /tmp/cifar10: 60000 JPEG and 0 PNG files) |",
                 "| command | `bash benchmarks/run_on_gpu.sh /tmp/cifar10 /tmp/w 540 reference` ",
                 "executed top to bottom with their default settings on a GPU"):
        assert fact in readme
    assert ("| [`vgg16-cifar10.ipynb`](vgg16-cifar10.ipynb) | `lecture-aaaaaa` | 3 | 81.50% | 80.00% (2) | 1.50 min "
            "| 3.0 min | [figures](figures/vgg16-cifar10/) |") in readme
    assert ("| [`vgg16-cifar10-standardized.ipynb`](vgg16-cifar10-standardized.ipynb) | none printed | no history "
            "| - | - | - | failed (exit status 124) | none |") in readme
    assert readme.index("[`vgg16-cifar10.ipynb`]") < readme.index("[`vgg16-cifar10-standardized.ipynb`]")
    assert not (tmp_path / "reference-run" / "figures" / "vgg16-cifar10-standardized").exists()


def test_a_machine_without_nvidia_smi_gives_no_card_name(tmp_path):
    fake_gpu_work(tmp_path / "work")
    machine = tmp_path / "work" / "machine.txt"
    machine.write_text("bash: nvidia-smi: command not found\n" + "\n".join(machine.read_text().splitlines()[2:]))
    assert machine_facts(tmp_path / "work")["card"] == "unknown card (nvidia-smi printed nothing)"
    assert machine_facts(tmp_path / "work")["commit"] == "0123456"


def test_import_of_claims_runs_alone_leaves_the_reference_readme_alone(tmp_path):
    fake_gpu_work(tmp_path / "work")
    for notebook in (tmp_path / "work" / "reference-run").glob("*.ipynb"):
        notebook.unlink()
    (tmp_path / "reference-run").mkdir()
    (tmp_path / "reference-run" / "README.md").write_text("the earlier reference run")
    import_work(tmp_path / "work", tmp_path / "reference-run")
    assert (tmp_path / "reference-run" / "README.md").read_text() == "the earlier reference run"
    assert not (tmp_path / "reference-run" / "machine.txt").exists()  # it describes the claims runs, not the reference
    assert (tmp_path / "reference-run" / "runs" / "lecture-aaaaaa.json").exists()


def test_the_code_that_ran_is_compared_file_by_file_with_the_recorded_commit(tmp_path):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    fake_gpu_work(tmp_path / "work")
    machine = tmp_path / "work" / "machine.txt"
    machine.write_text(MACHINE + invocation(head.strip(), code_lines("HEAD")))
    import_work(tmp_path / "work", tmp_path / "same")
    assert f"| commit | `{head[:7]}` |" in (tmp_path / "same" / "README.md").read_text()
    assert json.loads((tmp_path / "same" / "runs" / "lecture-aaaaaa.json").read_text())["code_matches_commit"] is True

    machine.write_text(MACHINE + invocation("0123456789abcdef",  # a commit this clone lacks, code no commit has
                                            code_lines("HEAD", change="helper_train.py")))
    import_work(tmp_path / "work", tmp_path / "unknown")
    assert ("| commit | `0123456` (not in this repository, so the code could not be compared with it) |"
            in (tmp_path / "unknown" / "README.md").read_text())

    machine.write_text(MACHINE + invocation(head.strip(), code_lines("HEAD", change="helper_train.py")))
    import_work(tmp_path / "work", tmp_path / "edited")
    assert (f"| commit | `{head[:7]}` (but the code that ran differed from it in helper_train.py) |"
            in (tmp_path / "edited" / "README.md").read_text())
    runs = [json.loads(p.read_text()) for p in sorted((tmp_path / "edited" / "runs").glob("*.json"))]
    assert all(row.endswith(f"`{head[:7]}` (code differed) |") for row in table(runs).splitlines()[2:])


def test_the_commit_is_the_one_that_made_the_code_not_the_newest_with_the_same_files(tmp_path):
    def git(*arguments):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *arguments], cwd=tmp_path,
                              capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    commits = {}
    for name, train, readme in [("zero", "v2", "a"), ("one", "v1", "a"), ("two", "v2", "a"), ("three", "v2", "b"),
                                ("four", "v3", "b")]:
        (tmp_path / "helper_train.py").write_text(train)
        (tmp_path / "README.md").write_text(readme)
        git("add", ".")
        git("commit", "-q", "-m", name)
        commits[name] = git("rev-parse", "HEAD")
    v2 = {"helper_train.py": hashlib.sha256(b"v2").hexdigest()}
    assert commit_with_code(v2, repository=tmp_path) == commits["two"]  # "three" changed the README only, and
    # "zero" had the same file before "one" changed it: not the code that the stretch from HEAD started with
    assert commit_with_code({"helper_train.py": hashlib.sha256(b"v3").hexdigest()}, repository=tmp_path) \
        == commits["four"]
    assert commit_with_code({"helper_train.py": hashlib.sha256(b"v9").hexdigest()}, repository=tmp_path) is None
    assert commit_with_code({**v2, "gone.py": hashlib.sha256(b"").hexdigest()}, repository=tmp_path) is None


def test_a_stale_recorded_commit_is_replaced_by_the_commit_of_the_code_that_ran(tmp_path):
    """Seen on the H100 on 2026-11-26: git there named the commit before the one whose files it ran."""
    fake_gpu_work(tmp_path / "work")
    (tmp_path / "work" / "machine.txt").write_text(
        MACHINE + invocation("0123456789abcdef", code_lines("HEAD")).replace(
            "(from RUN_COMMIT)\n", "(from RUN_COMMIT)\nuncommitted:  M benchmarks/run_on_gpu.sh\n"))
    import_work(tmp_path / "work", tmp_path / "reference-run")
    commit = json.loads((tmp_path / "reference-run" / "runs" / "lecture-aaaaaa.json").read_text())["commit"]
    assert code_lines(commit) == code_lines("HEAD") and commit != "0123456"
    assert (f"| commit | `{commit}` (machine.txt names `0123456` with uncommitted changes; the SHA-256 of every "
            "code file that ran is this commit's) |") in (tmp_path / "reference-run" / "README.md").read_text()


def test_later_invocations_into_the_same_work_folder_are_all_named(tmp_path):
    fake_gpu_work(tmp_path / "work")
    machine = tmp_path / "work" / "machine.txt"
    machine.write_text(machine.read_text() + invocation(steps="claims", options="-p SMOKE_TEST True"))
    import_work(tmp_path / "work", tmp_path / "reference-run")
    readme = (tmp_path / "reference-run" / "README.md").read_text()
    assert ("| command | `bash benchmarks/run_on_gpu.sh /tmp/cifar10 /tmp/w 540 reference`; then "
            "`bash benchmarks/run_on_gpu.sh /tmp/cifar10 /tmp/w 540 claims` ") in readme
    assert "with their default settings, with `-p SMOKE_TEST True` added (papermill) on a GPU" in readme

    machine.write_text(machine.read_text() + invocation(commit="fedcba9876543210", steps="claims"))
    with pytest.raises(ValueError, match="several commits \\(0123456, fedcba9\\)"):
        import_work(tmp_path / "work", tmp_path / "other")


def test_data_other_than_the_jpeg_copy_is_described_as_recorded(tmp_path):
    fake_gpu_work(tmp_path / "work")
    machine = tmp_path / "work" / "machine.txt"
    machine.write_text(machine.read_text().replace("data: image folders in /tmp/cifar10: 60000 JPEG and 0 PNG files",
                                                   "data: torchvision's CIFAR-10 files in /data"))
    import_work(tmp_path / "work", tmp_path / "reference-run")
    readme = (tmp_path / "reference-run" / "README.md").read_text()
    assert "| data | recorded: torchvision's CIFAR-10 files in /data |" in readme and "JPEG" not in readme


def test_claims_table_lists_the_claims_in_the_lectures_order_whatever_the_run_names():
    """As it is, 32x32, standardized, Dropout2d, another seed, float32: not the alphabetical order of the names."""
    changes = [("seed=7-a", {"seed": 7}), ("image_size=32-b", {"image_size": 32}), ("lecture-c", {}),
               ("precision=float32-d", {"precision": "float32"}), ("dropout2d=0.2-e", {"dropout2d": 0.2}),
               ("normalization=per-channel-f", {"normalization": "per-channel"})]
    runs = [history(name, {**LECTURE, **change}, [50.0], 60.0) for name, change in changes]
    labels = [row.split(" | ")[0] for row in table(runs).splitlines()[2:]]
    assert labels == ["| the main notebook as it is", "| the raw 32x32 images (`IMAGE_SIZE = 32`)",
                      "| the standardized notebook (per-channel mean and std)", "| Dropout2d 0.2 (`DROPOUT2D = 0.2`)",
                      "| the main notebook, another seed (`RANDOM_SEED = 7`)",
                      "| the main notebook in float32 (`PRECISION = \"float32\"`)"]


def test_claims_table_training_time_includes_the_time_spent_saving_checkpoints():
    run = {**history("lecture-a", LECTURE, [50.0, 60.0], 61.0), "checkpoint_seconds": [15.0, 15.0]}
    assert " | 1.50 min | " in table([run])  # 2 x 30 s training + 2 x 15 s saving


def test_claims_table_names_the_first_epoch_that_reached_the_best_validation_accuracy():
    """As best_model.pt and the notebook's run table do."""
    assert " | 80.00% (2) | " in table([history("lecture-a", LECTURE, [50.0, 80.0, 80.0], 79.0)])



def run_on_gpu(tmp_path, steps, seconds="0"):
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "run_on_gpu.sh"), str(tmp_path / "data"),
                           str(tmp_path / "work"), seconds, steps], capture_output=True, text=True, timeout=120)


def test_run_on_gpu_refuses_a_mistyped_step_before_doing_anything(tmp_path):
    finished = run_on_gpu(tmp_path, "reference floa32")
    assert finished.returncode == 2 and "unknown step 'floa32'" in finished.stderr
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("steps, claims", [("image-size-32", ["image-size-32"]),
                                           ("dropout2d-0.2 float32", ["dropout2d-0.2", "float32"]),
                                           ("claims", ["seed-7", "image-size-32", "dropout2d-0.2", "float32"])])
def test_run_on_gpu_runs_one_claim_or_all_of_them(tmp_path, steps, claims):
    finished = run_on_gpu(tmp_path, steps)  # no time left: every notebook is skipped, and says so
    assert finished.returncode == 0, finished.stderr
    skipped = (tmp_path / "work" / "skipped.txt").read_text().splitlines()
    assert [line.split("/claims/")[1].split(".ipynb")[0] for line in skipped] == claims


def test_import_of_a_folder_without_a_gpu_run_names_what_to_pass_instead_of_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "benchmarks/import_gpu_run.py", str(tmp_path)], capture_output=True,
                            text=True, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "neither the archive run_on_gpu.sh packs" in result.stderr


def test_claims_table_sorts_a_run_of_two_claims_by_its_first_claim_and_names_both():
    """Both changes named (in the settings' order), joined by "; "; the row placed by its first claim in the lecture."""
    runs = [history("seed=7-a", {**LECTURE, "seed": 7}, [50.0], 60.0),
            history("image_size=32_seed=7-b", {**LECTURE, "image_size": 32, "seed": 7}, [50.0], 60.0),
            history("dropout2d=0.2-c", {**LECTURE, "dropout2d": 0.2}, [50.0], 60.0)]
    labels = [row.split(" | ")[0] for row in table(runs).splitlines()[2:]]
    assert labels == ["| the main notebook, another seed (`RANDOM_SEED = 7`); the raw 32x32 images (`IMAGE_SIZE = 32`)",
                      "| Dropout2d 0.2 (`DROPOUT2D = 0.2`)", "| the main notebook, another seed (`RANDOM_SEED = 7`)"]


def test_claims_table_orders_two_runs_of_one_setting_by_their_names_whatever_the_files_order():
    """The README's two 32x32 rows must not swap places when the runs are read in another order."""
    runs = [history("image_size=32-b", {**LECTURE, "image_size": 32}, [50.0], 61.0),
            history("image_size=32-a", {**LECTURE, "image_size": 32}, [50.0], 62.0)]
    assert table(runs) == table(runs[::-1])
    assert [row.split(" | ")[1] for row in table(runs).splitlines()[2:]] == ["62.00%", "61.00%"]


def test_claims_table_reads_a_history_saved_before_checkpoint_times_were_recorded():
    """An older history.json has no checkpoint_seconds: its training time is its epochs' time alone."""
    run = history("lecture-a", LECTURE, [50.0, 60.0], 61.0)
    del run["checkpoint_seconds"]
    assert " | 1.00 min | " in table([run])


def test_claims_table_prints_a_test_accuracy_of_zero_as_a_finished_run():
    """0.0 is a test accuracy (a diverged run), not a missing one."""
    assert "| 0.00% | 50.00% (1) |" in table([history("lecture-a", LECTURE, [50.0], 0.0)])


def test_claims_table_script_prints_every_stored_run(tmp_path):
    """The script reads each JSON file of --runs: none is left out of the table it prints."""
    runs = [history("lecture-a", LECTURE, [50.0], 60.0), history("seed=7-b", {**LECTURE, "seed": 7}, [55.0], 65.0)]
    for run in runs:
        (tmp_path / f"{run['run_name']}.json").write_text(json.dumps(run))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "claims_table.py"), "--runs", str(tmp_path)],
                          capture_output=True, text=True, check=True)
    assert done.stdout == table(runs) + "\n"


def test_claims_table_puts_a_run_that_changes_another_setting_last_not_among_the_lectures_own():
    """A run of batch size 128 is "anything else": after the claims, not sorted by name with the unchanged notebook."""
    runs = [history("lecture-c", LECTURE, [50.0], 60.0), history("batch_size=128-a", {**LECTURE, "batch_size": 128},
                                                                  [50.0], 60.0),
            history("seed=7-b", {**LECTURE, "seed": 7}, [50.0], 60.0)]
    labels = [row.split(" | ")[0] for row in table(runs).splitlines()[2:]]
    assert labels == ["| the main notebook as it is", "| the main notebook, another seed (`RANDOM_SEED = 7`)",
                      "| `batch_size = 128`"]


def test_claims_table_names_an_image_size_other_than_32_as_it_is_not_as_the_raw_images():
    """IMAGE_SIZE = 48 is neither the raw 32x32 images nor the lecture's 64: the row must say 48."""
    [row] = table([history("image_size=48-a", {**LECTURE, "image_size": 48}, [50.0], 60.0)]).splitlines()[2:]
    assert row.startswith("| `image_size = 48` | ")


def test_code_lines_of_sha256sum_in_binary_mode_name_the_file_without_its_star(tmp_path):
    """sha256sum -b writes "HASH *name": the file is still "name", so it can be compared with the commit's."""
    fake_gpu_work(tmp_path / "work")
    (tmp_path / "work" / "machine.txt").write_text(MACHINE + invocation(code=f"code: {'a' * 64} *helper_train.py\n"))
    assert machine_facts(tmp_path / "work")["code"] == {"helper_train.py": "a" * 64}


def test_the_readme_gives_the_first_invocations_date(tmp_path):
    """The run began at the first invocation: a later one appended to the same work folder does not move the date."""
    fake_gpu_work(tmp_path / "work")
    machine = tmp_path / "work" / "machine.txt"
    machine.write_text(machine.read_text() + invocation(steps="claims").replace("2026-11-26 09:00", "2026-11-27 10:00"))
    import_work(tmp_path / "work", tmp_path / "reference-run")
    assert "| date | 2026-11-26 09:00 UTC |" in (tmp_path / "reference-run" / "README.md").read_text()


def test_a_recorded_commit_this_clone_lacks_is_replaced_by_the_short_commit_of_the_code_that_ran(tmp_path):
    """The GPU machine's git named a commit unknown here, but the code's hashes are a commit's of this history."""
    fake_gpu_work(tmp_path / "work")
    (tmp_path / "work" / "machine.txt").write_text(MACHINE + invocation("0123456789abcdef", code_lines("HEAD")))
    import_work(tmp_path / "work", tmp_path / "reference-run")
    run = json.loads((tmp_path / "reference-run" / "runs" / "lecture-aaaaaa.json").read_text())
    assert len(run["commit"]) == 7 and run["commit"] != "0123456" and code_lines(run["commit"]) == code_lines("HEAD")
    assert run["code_matches_commit"] is True
    assert (f"| commit | `{run['commit']}` (machine.txt names `0123456`; the SHA-256 of every code file that ran is "
            "this commit's) |") in (tmp_path / "reference-run" / "README.md").read_text()


def test_data_without_jpeg_files_is_not_called_the_jpeg_copy(tmp_path):
    fake_gpu_work(tmp_path / "work")
    machine = tmp_path / "work" / "machine.txt"
    machine.write_text(machine.read_text().replace("60000 JPEG and 0 PNG", "0 JPEG and 0 PNG"))
    import_work(tmp_path / "work", tmp_path / "reference-run")
    readme = (tmp_path / "reference-run" / "README.md").read_text()
    assert "| data | recorded: image folders in /tmp/cifar10: 0 JPEG and 0 PNG files |" in readme
    assert "quality 75" not in readme


def test_import_copies_the_benchmark_and_profile_and_the_scripts_records(tmp_path):
    """benchmark.json/.log, profile.json/.log, machine.txt, times.txt and skipped.txt all reach reference-run/."""
    fake_gpu_work(tmp_path / "work")
    names = ["benchmark.json", "benchmark.log", "profile.json", "profile.log", "skipped.txt"]
    for name in names:
        (tmp_path / "work" / name).write_text(name)
    written = import_work(tmp_path / "work", tmp_path / "reference-run")
    for name in [*names, "machine.txt", "times.txt"]:
        target = tmp_path / "reference-run" / name
        assert target in written and target.read_text() == (tmp_path / "work" / name).read_text()


def test_import_removes_an_earlier_runs_skipped_steps(tmp_path):
    """A run that skipped nothing leaves no skipped.txt of an earlier run beside its own machine.txt and times.txt.

    Planted: the earlier file kept (it listed claims skipped in another session as if this run had skipped them).
    """
    fake_gpu_work(tmp_path / "work")
    (tmp_path / "reference-run").mkdir()
    (tmp_path / "reference-run" / "skipped.txt").write_text("SKIPPED /tmp/work/claims/seed-7.ipynb: 173 s left\n")
    import_work(tmp_path / "work", tmp_path / "reference-run")
    assert not (tmp_path / "reference-run" / "skipped.txt").exists()
    assert (tmp_path / "reference-run" / "times.txt").exists()


def test_only_the_png_figures_of_a_run_folder_go_to_figures(tmp_path):
    """The run folder also holds history.json (and checkpoints): figures/ gets the PNG files alone."""
    fake_gpu_work(tmp_path / "work")
    import_work(tmp_path / "work", tmp_path / "reference-run")
    figures = tmp_path / "reference-run" / "figures" / "vgg16-cifar10"
    assert sorted(path.name for path in figures.iterdir()) == ["plot_accuracy.png"]


def import_main(monkeypatch, tmp_path, source):
    """import_gpu_run.py's command line, importing into tmp_path/repo/reference-run instead of the repository's."""
    (tmp_path / "repo").mkdir(exist_ok=True)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    monkeypatch.setattr(import_gpu_run, "ROOT", tmp_path / "repo")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(sys, "argv", ["import_gpu_run.py", str(source)])
    import_gpu_run.main()
    return tmp_path / "repo" / "reference-run"


def test_import_script_reads_the_archive_run_on_gpu_packs(tmp_path, monkeypatch):
    """PACK=... packs the work folder's contents (tar czf FILE -C WORK .): the import finds them at the top."""
    fake_gpu_work(tmp_path / "work")
    with tarfile.open(tmp_path / "gpu-run.tgz", "w:gz") as archive:
        archive.add(tmp_path / "work", arcname=".")
    target = import_main(monkeypatch, tmp_path, tmp_path / "gpu-run.tgz")
    assert sorted(p.name for p in (target / "runs").iterdir()) == [
        "dropout2d=0.2-bbbbbb.json", "lecture-aaaaaa.json", "seed=7-cccccc.json"]
    assert (target / "README.md").exists() and (target / "vgg16-cifar10.ipynb").exists()


def test_import_script_reads_a_work_folder(tmp_path, monkeypatch):
    fake_gpu_work(tmp_path / "work")
    target = import_main(monkeypatch, tmp_path, tmp_path / "work")
    assert (target / "runs" / "lecture-aaaaaa.json").exists() and (target / "machine.txt").exists()


def test_import_script_refuses_an_archive_member_that_would_land_outside_its_folder(tmp_path, monkeypatch):
    """The archive comes from another machine: a member named ../x must not be written next to the unpacked folder."""
    fake_gpu_work(tmp_path / "work")
    (tmp_path / "escaped.txt").write_text("outside")
    with tarfile.open(tmp_path / "gpu-run.tgz", "w:gz") as archive:
        archive.add(tmp_path / "work", arcname=".")
        archive.add(tmp_path / "escaped.txt", arcname="../escaped.txt")
    (tmp_path / "escaped.txt").unlink()
    with pytest.raises(tarfile.FilterError):
        import_main(monkeypatch, tmp_path, tmp_path / "gpu-run.tgz")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "repo" / "reference-run").exists()


def test_invocations_that_ran_different_code_are_refused_like_two_commits(tmp_path):
    """A file edited between two invocations into one work folder: the runs did not all run one commit's code.

    Keeping the first invocation's hashes alone let the README say every code file that ran was one commit's.
    """
    fake_gpu_work(tmp_path / "work")
    (tmp_path / "work" / "machine.txt").write_text(
        MACHINE + invocation(code=code_lines("HEAD")) + invocation(code=code_lines("HEAD", change="helper_train.py"),
                                                                   steps="claims"))
    with pytest.raises(ValueError, match=r"ran different code \(helper_train\.py\)"):
        import_work(tmp_path / "work", tmp_path / "reference-run")
    assert not (tmp_path / "reference-run").exists()


def test_invocations_that_ran_the_same_code_are_imported_together(tmp_path):
    fake_gpu_work(tmp_path / "work")
    (tmp_path / "work" / "machine.txt").write_text(
        MACHINE + invocation(code=code_lines("HEAD")) + invocation(code=code_lines("HEAD"), steps="claims"))
    assert set(machine_facts(tmp_path / "work")["code"]) == {"helper_train.py", "vgg16-cifar10.ipynb"}


def test_uncommitted_changes_outside_the_hashed_code_are_still_named_in_the_readme(tmp_path):
    """The recorded commit is here and every hashed file matches it, but git saw uncommitted changes: say so."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    fake_gpu_work(tmp_path / "work")
    (tmp_path / "work" / "machine.txt").write_text(MACHINE + invocation(head.strip(), code_lines("HEAD")).replace(
        "(from RUN_COMMIT)\n", "(from RUN_COMMIT)\nuncommitted: ?? .whl/\n"))
    import_work(tmp_path / "work", tmp_path / "reference-run")
    assert (f"(machine.txt names `{head[:7]}` with uncommitted changes; the SHA-256 of every code file that ran is "
            "this commit's) |") in (tmp_path / "reference-run" / "README.md").read_text()


@pytest.mark.parametrize("status, shown", [
    ("exit status 0, 210 s", "3.5 min"),  # 210 s keeps its tenths of a minute, not 3.0 (whole minutes)
    ("exit status 1, 183 s", "failed (exit status 1)"),  # an error in a cell fails it, not only 124 (time limit)
])
def test_the_whole_notebooks_time_or_its_failure_is_shown(tmp_path, status, shown):
    """The reference README's whole-notebook column: the time in tenths of a minute, or why the notebook failed."""
    fake_gpu_work(tmp_path / "work")
    times = tmp_path / "work" / "times.txt"
    times.write_text(times.read_text().replace("exit status 0, 183 s", status))
    import_work(tmp_path / "work", tmp_path / "reference-run")
    assert f"| 1.50 min | {shown} | [figures]" in (tmp_path / "reference-run" / "README.md").read_text()


def test_a_run_whose_code_could_not_be_compared_is_recorded_as_unknown_not_as_matching(tmp_path):
    """No "code:" lines in machine.txt: code_matches_commit is None in runs/, neither True nor False."""
    fake_gpu_work(tmp_path / "work")
    import_work(tmp_path / "work", tmp_path / "reference-run")
    for path in (tmp_path / "reference-run" / "runs").glob("*.json"):
        assert json.loads(path.read_text())["code_matches_commit"] is None


def test_claims_table_shows_a_run_that_stopped_before_its_first_epoch_ended():
    """train_model writes history.json also for a run that diverged (or was interrupted) in epoch 1: no crash."""
    [row] = table([history("seed=7-a", {**LECTURE, "seed": 7}, [], None)]).splitlines()[2:]
    assert row.startswith("| the main notebook, another seed (`RANDOM_SEED = 7`) | not finished: stopped after 0 "
                          "epochs | - | 0.00 min | ")


def test_claims_table_ignores_recorded_settings_the_lecture_has_no_value_for():
    """Only LECTURE_SETTINGS name a run (as train_model names its folder): an extra recorded key changes nothing."""
    [row] = table([history("lecture-a", {**LECTURE, "num_workers": 4}, [50.0], 60.0)]).splitlines()[2:]
    assert row.startswith("| the main notebook as it is | ")


def test_a_notebook_killed_before_its_run_wrote_a_history_is_described_not_a_crash(tmp_path):
    """The notebook printed its run folder, but was stopped before history.json was written."""
    fake_gpu_work(tmp_path / "work")
    (tmp_path / "work" / "results" / "lecture-aaaaaa" / "history.json").unlink()
    import_work(tmp_path / "work", tmp_path / "reference-run")
    assert ("| [`vgg16-cifar10.ipynb`](vgg16-cifar10.ipynb) | `lecture-aaaaaa` | no history | - | - | - | 3.0 min "
            "| [figures](figures/vgg16-cifar10/) |") in (tmp_path / "reference-run" / "README.md").read_text()


def test_a_work_folder_with_smoke_test_runs_is_refused_before_anything_is_copied(tmp_path):
    """A dry run on a CPU leaves smoke-* runs; imported, their accuracies would become rows of the README's table."""
    fake_gpu_work(tmp_path / "work")
    (tmp_path / "work" / "results" / "smoke-lecture-dddddd").mkdir()
    (tmp_path / "work" / "results" / "smoke-lecture-dddddd" / "history.json").write_text(
        json.dumps(history("smoke-lecture-dddddd", LECTURE, [90.0], 100.0)))
    with pytest.raises(ValueError, match=r"smoke-test runs \(smoke-lecture-dddddd\)"):
        import_work(tmp_path / "work", tmp_path / "reference-run")
    assert not (tmp_path / "reference-run").exists()


def test_a_stored_run_of_the_same_settings_is_not_replaced_without_a_word(tmp_path):
    """A second run of one setting has the first one's name: importing it must not overwrite the first silently.

    Refused before anything is copied: not even the new run's benchmark.json lands in reference-run/.
    """
    fake_gpu_work(tmp_path / "work")
    (tmp_path / "work" / "benchmark.json").write_text("{}")
    stored = tmp_path / "reference-run" / "runs" / "seed=7-cccccc.json"
    stored.parent.mkdir(parents=True)
    stored.write_text(json.dumps({**history("seed=7-cccccc", {**LECTURE, "seed": 7}, [60.0, 70.0], None),
                                  "card": "NVIDIA H200", "commit": "fedcba9"}))
    before = stored.read_text()
    with pytest.raises(ValueError, match=r"seed=7-cccccc\.json already hold\(s\) another run.*Move the old file"):
        import_work(tmp_path / "work", tmp_path / "reference-run")
    assert stored.read_text() == before
    assert sorted(path.name for path in (tmp_path / "reference-run").rglob("*")) == ["runs", "seed=7-cccccc.json"]


def test_importing_the_same_work_folder_twice_is_allowed(tmp_path):
    fake_gpu_work(tmp_path / "work")
    first = import_work(tmp_path / "work", tmp_path / "reference-run")
    assert import_work(tmp_path / "work", tmp_path / "reference-run") == first


@pytest.mark.parametrize("field, value", [("test_acc", 99.0), ("card", "NVIDIA H100 80GB HBM3")])
def test_a_stored_run_that_differs_in_one_field_only_is_not_replaced(tmp_path, field, value):
    """The whole record is compared: a run of the same commit (or with the same validation accuracies) whose test
    accuracy or card differs is another measurement, and must not be overwritten silently."""
    fake_gpu_work(tmp_path / "work")
    import_work(tmp_path / "work", tmp_path / "reference-run")
    stored = tmp_path / "reference-run" / "runs" / "lecture-aaaaaa.json"
    stored.write_text(json.dumps({**json.loads(stored.read_text()), field: value}))
    before = stored.read_text()
    with pytest.raises(ValueError, match=r"lecture-aaaaaa\.json already hold\(s\) another run"):
        import_work(tmp_path / "work", tmp_path / "reference-run")
    assert stored.read_text() == before


def test_the_same_notebook_options_of_two_invocations_are_named_once(tmp_path):
    fake_gpu_work(tmp_path / "work")
    machine = tmp_path / "work" / "machine.txt"
    machine.write_text(MACHINE + invocation(options="-p COMPILE False") + invocation(steps="claims",
                                                                                     options="-p COMPILE False"))
    import_work(tmp_path / "work", tmp_path / "reference-run")
    assert ("with their default settings, with `-p COMPILE False` added (papermill) on a GPU"
            in (tmp_path / "reference-run" / "README.md").read_text())


def test_the_commit_of_the_code_is_found_behind_a_long_stretch_of_other_changes_and_within_depth(tmp_path):
    """Seven commits that changed the README only since the code's commit: the walk reaches it; ``depth`` bounds it."""
    def git(*arguments):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *arguments], cwd=tmp_path,
                              capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    commits = []
    for number in range(8):
        (tmp_path / "helper_train.py").write_text("v1")
        (tmp_path / "README.md").write_text(str(number))
        git("add", ".")
        git("commit", "-q", "-m", str(number))
        commits.append(git("rev-parse", "HEAD"))
    v1 = {"helper_train.py": hashlib.sha256(b"v1").hexdigest()}
    assert commit_with_code(v1, repository=tmp_path) == commits[0]
    assert commit_with_code(v1, depth=3, repository=tmp_path) == commits[-3]


def test_import_script_refuses_an_archive_link_to_a_file_outside_it(tmp_path, monkeypatch):
    """A member that is a symbolic link to an absolute path: imported, the file it points to (any file of the
    importing machine) would be copied into reference-run/ as a figure."""
    fake_gpu_work(tmp_path / "work")
    (tmp_path / "secret.txt").write_text("private")
    (tmp_path / "work" / "results" / "lecture-aaaaaa" / "plot_loss.png").symlink_to(tmp_path / "secret.txt")
    with tarfile.open(tmp_path / "gpu-run.tgz", "w:gz") as archive:
        archive.add(tmp_path / "work", arcname=".")
    with pytest.raises(tarfile.FilterError):
        import_main(monkeypatch, tmp_path, tmp_path / "gpu-run.tgz")
    assert not (tmp_path / "repo" / "reference-run").exists()


def test_import_script_refuses_two_sources_instead_of_importing_the_first_alone(tmp_path, monkeypatch):
    fake_gpu_work(tmp_path / "work")
    fake_gpu_work(tmp_path / "work2")
    monkeypatch.setattr(import_gpu_run, "ROOT", tmp_path / "repo")
    monkeypatch.setattr(sys, "argv", ["import_gpu_run.py", str(tmp_path / "work"), str(tmp_path / "work2")])
    with pytest.raises(SystemExit, match="import_gpu_run.py gpu-run.tgz"):
        import_gpu_run.main()
    assert not (tmp_path / "repo").exists()


def test_claims_table_puts_a_run_that_changes_another_setting_after_the_float32_runs():
    """"Anything else" comes after every claim, float32 (the last) included, not sorted by name among its runs."""
    runs = [history("precision=float32-z", {**LECTURE, "precision": "float32"}, [50.0], 60.0),
            history("batch_size=128-a", {**LECTURE, "batch_size": 128}, [50.0], 60.0)]
    labels = [row.split(" | ")[0] for row in table(runs).splitlines()[2:]]
    assert labels == ["| the main notebook in float32 (`PRECISION = \"float32\"`)", "| `batch_size = 128`"]


def test_claims_table_quotes_an_unlabelled_text_setting():
    """A setting without a label of its own is shown as Python writes it: 'bf16' is text, not a name."""
    [row] = table([history("precision=bf16-a", {**LECTURE, "precision": "bf16"}, [50.0], 60.0)]).splitlines()[2:]
    assert row.startswith("| `precision = 'bf16'` | ")


def test_claims_table_script_leaves_out_the_runs_moved_aside_into_a_subfolder(tmp_path, monkeypatch, capsys):
    """reference-run/runs/unfinished/ holds runs cut short, moved aside so that the table leaves them out."""
    run = history("lecture-a", LECTURE, [50.0], 60.0)
    (tmp_path / "lecture-a.json").write_text(json.dumps(run))
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "seed=7-b.try1.json").write_text(
        json.dumps(history("seed=7-b", {**LECTURE, "seed": 7}, [20.0], None)))
    monkeypatch.setattr(sys, "argv", ["claims_table.py", "--runs", str(tmp_path)])
    claims_table.main()
    assert capsys.readouterr().out == table([run]) + "\n"
