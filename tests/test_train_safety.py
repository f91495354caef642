"""helper_train for long runs: checkpoints, exact resume after a kill, interrupts, divergence, bad input."""

import copy
import io
import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FakeClock, InterruptAt, TinyNet, lecture_test_transforms, lecture_train_transforms

import helper_train
from helper_dataset import get_dataloaders_cifar10
from helper_evaluation import make_pooling_deterministic, run_table_row, set_all_seeds
from helper_train import (
    BEST_MODEL_FILE,
    CHECKPOINT_FILE,
    HISTORY_FILE,
    INTERRUPTED_MODEL_FILE,
    RunMismatchError,
    train_model,
)

WORKER = Path(__file__).with_name("resume_worker.py")


def loaders():
    return get_dataloaders_cifar10(
        32, validation_fraction=0.1, train_transforms=lecture_train_transforms(),
        test_transforms=lecture_test_transforms(), smoke_test=True,
    )


def fresh(lr=0.05, model=None):
    set_all_seeds(0)
    model = model or TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, mode="max")
    return model, optimizer, scheduler


def run_worker(*args):
    return subprocess.run([sys.executable, str(WORKER), *map(str, args)], capture_output=True, text=True, timeout=300)


TIMINGS = {"epoch_seconds", "checkpoint_seconds"}


def assert_same_state(a, b, path="checkpoint"):
    """Equal nested dicts/lists of tensors and numbers, bit for bit (tensors with torch.equal)."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert set(a) == set(b), path
        for key in a:
            assert_same_state(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{path}/{index}")
    else:
        assert a == b, path


def test_a_saved_rng_state_replays_python_numpy_and_torch_draws():
    """A student's own transform may draw from random or NumPy: a resumed run must draw the same numbers.

    The resume test cannot see this: nothing in the tutorial's own pipeline draws from Python or NumPy.
    """
    saved = io.BytesIO()
    torch.save(helper_train.capture_rng_state(), saved)  # as the checkpoint stores it
    first = (random.random(), float(np.random.rand()), torch.rand(1).item())
    random.seed(99), np.random.seed(99), torch.manual_seed(99)  # a new process, seeded at the top of the notebook
    saved.seek(0)
    helper_train.restore_rng_state(torch.load(saved, weights_only=True))
    assert (random.random(), float(np.random.rand()), torch.rand(1).item()) == first


def saved_and_restored_rng_state(draw_between):
    """Capture the state as a checkpoint stores it, call ``draw_between()``, restore the state."""
    saved = io.BytesIO()
    torch.save(helper_train.capture_rng_state(), saved)
    draw_between()
    saved.seek(0)
    helper_train.restore_rng_state(torch.load(saved, weights_only=True))


def test_a_saved_rng_state_replays_numpys_gaussian_draws():
    """NumPy draws Gaussian numbers in pairs and keeps the second for the next call: a transform that adds noise
    with np.random.normal draws that kept number first after a resume."""
    np.random.seed(0)
    np.random.normal()  # the second number of the pair is kept for later
    saved_and_restored_rng_state(lambda: np.random.normal(size=3))
    after_restore = np.random.normal(size=3)
    np.random.seed(0)
    np.random.normal()
    assert np.array_equal(after_restore, np.random.normal(size=3))


def test_a_saved_rng_state_includes_the_gpus(monkeypatch):
    """On a CUDA machine the GPU's random state (dropout masks drawn on the GPU) is saved and restored too."""
    gpu_states, restored = [torch.arange(16, dtype=torch.uint8)], []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: gpu_states)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    saved_and_restored_rng_state(lambda: None)
    assert len(restored) == 1 and len(restored[0]) == 1 and torch.equal(restored[0][0], gpu_states[0])


def test_killed_run_resumes_bit_for_bit_with_two_workers(tmp_path):
    """SIGKILL in epoch 2, resume: weights, optimizer, scheduler, scaler and history equal the uninterrupted run."""
    uninterrupted = run_worker(tmp_path / "a", tmp_path / "a.pt")
    assert uninterrupted.returncode == 0, uninterrupted.stderr

    killed = run_worker(tmp_path / "b", tmp_path / "b.pt", "kill")
    assert killed.returncode == -signal.SIGKILL
    assert "Epoch: 001/002 | Train:" in killed.stdout and "Epoch: 002/002 | Train:" not in killed.stdout
    resumed = run_worker(tmp_path / "b", tmp_path / "b.pt")
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming from epoch 2" in resumed.stdout

    a = torch.load(tmp_path / "a.pt", weights_only=True)
    b = torch.load(tmp_path / "b.pt", weights_only=True)
    for part in ("model", "optimizer", "scheduler", "scaler", "rng", "epochs_done", "run"):
        assert_same_state(a[part], b[part], part)
    assert a["scaler"]["_growth_tracker"] == len(a["history"]["minibatch_loss"])  # it counted every step
    for name in set(a["history"]) - TIMINGS:
        assert a["history"][name] == b["history"][name], name


def test_checkpoint_best_weights_and_history_are_written(tmp_path):
    model, optimizer, scheduler = fresh()
    train_model(model, 2, *loaders(), optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    checkpoint = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert checkpoint["epochs_done"] == 2 and len(checkpoint["history"]["valid_acc"]) == 2
    assert set(checkpoint) >= {"model", "optimizer", "scheduler", "scaler", "rng", "history", "run"}
    TinyNet().load_state_dict(torch.load(tmp_path / BEST_MODEL_FILE, weights_only=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CHECKPOINT_FILE, BEST_MODEL_FILE, HISTORY_FILE])
    history = json.loads((tmp_path / HISTORY_FILE).read_text())
    assert history["valid_acc"] == checkpoint["history"]["valid_acc"] and history["test_acc"] is not None
    assert len(history["epoch_seconds"]) == 2 and history["device"] == "cpu" and history["precision"] == "float32"
    assert history["settings"] == {}  # no run_settings given: still a dict, as the claims table reads it


def test_history_names_its_run_after_the_folder_and_records_the_iterations_per_epoch(tmp_path):
    """load_run_histories names each run by run_name; the loss figure's epoch axis needs iter_per_epoch."""
    model, optimizer, scheduler = fresh()
    train_loader, valid_loader, test_loader = loaders()
    run_folder = tmp_path / "lecture-abc123"
    train_model(model, 1, train_loader, valid_loader, test_loader, optimizer, "cpu", checkpoint_dir=run_folder)
    history = json.loads((run_folder / HISTORY_FILE).read_text())
    assert history["run_name"] == "lecture-abc123"
    assert history["iter_per_epoch"] == len(train_loader) == len(history["minibatch_loss"]) == 18


def test_finished_checkpoint_only_evaluates(tmp_path, capsys):
    model, optimizer, scheduler = fresh()
    first = train_model(model, 1, *loaders(), optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    model, optimizer, scheduler = fresh()
    again = train_model(model, 1, *loaders(), optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    assert again == first
    out = capsys.readouterr().out
    assert out.count("Batch 0000") == 1 and "Test accuracy" in out


def test_interrupt_returns_the_history_so_far_and_saves(tmp_path, capsys):
    model, optimizer, scheduler = fresh()
    train_loader, valid_loader, test_loader = loaders()
    losses, train_acc, valid_acc = train_model(
        model, 3, InterruptAt(train_loader, epoch=2, batch=4), valid_loader, test_loader, optimizer, "cpu",
        scheduler=scheduler, checkpoint_dir=tmp_path)
    assert len(train_acc) == len(valid_acc) == 1 and len(losses) == 18 + 4
    out = capsys.readouterr().out
    assert "Training interrupted after 1 of 3 epochs." in out and "Test accuracy" not in out
    assert torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["epochs_done"] == 1
    # the model's weights, not just a file (planted: torch.save(None, ...) passed when only its existence was checked)
    saved = torch.load(tmp_path / INTERRUPTED_MODEL_FILE, weights_only=True)
    assert saved.keys() == model.state_dict().keys()
    assert all(torch.equal(saved[name], value) for name, value in model.state_dict().items())
    assert f"The weights at the moment of the interrupt are in '{tmp_path / INTERRUPTED_MODEL_FILE}'." in out
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["stopped"] == "interrupted after 1 of 3 epochs"  # the run table and the comparison show it


def test_a_run_stopped_after_its_loss_became_nan_ends_as_diverged_not_as_interrupted(tmp_path, monkeypatch):
    """The loss went NaN in epoch 2 and the student pressed stop before the next logging point: the run is recorded
    as diverged at that batch, its NaN weights are not saved as an interrupted run's, and the checkpoint keeps the
    last good epoch (planted: the bad losses dropped at the interrupt and the run reported as interrupted)."""
    model, optimizer, scheduler = fresh()
    train_loader, valid_loader, test_loader = loaders()
    steps, original = [], helper_train.training_step

    def nan_from_step_21(*args):
        steps.append(1)
        loss = original(*args)
        return torch.full_like(loss, float("nan")) if len(steps) > 20 else loss  # epoch 2, batch 2 (18 per epoch)

    monkeypatch.setattr(helper_train, "training_step", nan_from_step_21)
    with pytest.raises(helper_train.TrainingDivergedError, match=r"The loss became nan in epoch 2, batch 2/18"):
        train_model(model, 3, InterruptAt(train_loader, epoch=2, batch=4), valid_loader, test_loader, optimizer,
                    "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["stopped"] == "diverged in epoch 2" and len(history["minibatch_loss"]) == 18 + 2
    assert not (tmp_path / INTERRUPTED_MODEL_FILE).exists()
    assert torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["epochs_done"] == 1


def test_an_interrupted_run_without_checkpoints_says_it_cannot_be_continued(tmp_path, capsys):
    """A smoke test (no checkpoints) stopped in epoch 2: running the training cell again would not continue it."""
    model, optimizer, scheduler = fresh()
    train_loader, valid_loader, test_loader = loaders()
    train_model(model, 3, InterruptAt(train_loader, epoch=2, batch=4), valid_loader, test_loader, optimizer, "cpu",
                scheduler=scheduler, history_file=tmp_path / "history.json")
    assert "Checkpoints are off for this run, so it cannot be continued" in capsys.readouterr().out
    assert json.loads((tmp_path / "history.json").read_text())["stopped"] == "interrupted after 1 of 3 epochs"


def test_a_run_whose_session_ended_during_training_is_unfinished_in_the_run_table(tmp_path):
    """A DataLoader worker died in epoch 2 of 3 (or Colab lost the connection): nothing recorded why, and the run
    table showed the 1-epoch run like a finished one (a review). The history records the epochs planned, so the
    table says "unfinished", also after a resumed run dies again (planted: num_epochs not recorded; the table
    ignoring it; the epochs left recorded instead of the run's total)."""
    train_loader, valid_loader, test_loader = loaders()

    def train(loader):
        model, optimizer, scheduler = fresh()
        train_model(model, 3, loader, valid_loader, test_loader, optimizer, "cpu", scheduler=scheduler,
                    checkpoint_dir=tmp_path)
        return json.loads((tmp_path / HISTORY_FILE).read_text())

    for epochs_done in (1, 2):  # dies in epoch 2, then, resumed, in epoch 3 (its own second epoch)
        died = InterruptAt(train_loader, epoch=2, batch=4, error=RuntimeError("DataLoader worker exited unexpectedly"))
        with pytest.raises(RuntimeError, match="worker exited"):
            train(died)
        assert run_table_row("crashed", json.loads((tmp_path / HISTORY_FILE).read_text()))[4] == (
            f"unfinished: {epochs_done} of 3 epochs")
    never_dies = InterruptAt(train_loader, epoch=99, batch=0)  # the same kind of loader, so the same run
    history = train(never_dies)  # resumed once more, it finishes: its test accuracy
    assert run_table_row("finished", history)[4] == f"{history['test_acc']:.2f}%"


def test_a_resumed_run_that_finishes_no_longer_says_it_was_interrupted(tmp_path, capsys):
    """Nor keeps the weights the interrupt saved (200 MB for VGG-16, of an unfinished epoch): they go, saying so."""
    model, optimizer, scheduler = fresh()
    train_loader, valid_loader, test_loader = loaders()
    train_model(model, 2, InterruptAt(train_loader, epoch=2, batch=4), valid_loader, test_loader, optimizer, "cpu",
                scheduler=scheduler, checkpoint_dir=tmp_path)
    assert (tmp_path / INTERRUPTED_MODEL_FILE).exists()
    capsys.readouterr()
    model, optimizer, scheduler = fresh()  # the same loader type again (the run's identity), without an interrupt
    train_model(model, 2, InterruptAt(train_loader, epoch=99, batch=0), valid_loader, test_loader, optimizer, "cpu",
                scheduler=scheduler, checkpoint_dir=tmp_path)
    history = json.loads((tmp_path / "history.json").read_text())
    assert "stopped" not in history and history["test_acc"] is not None
    assert not (tmp_path / INTERRUPTED_MODEL_FILE).exists()
    assert f"Removed '{tmp_path / INTERRUPTED_MODEL_FILE}', the weights saved when an earlier session was " \
           "interrupted: the run has finished." in capsys.readouterr().out


# --- faults around saves ------------------------------------------------------------------------------


def interrupt_on_call(monkeypatch, target, name, call_number):
    """Make ``target.name`` raise KeyboardInterrupt on its ``call_number``-th call (as Ctrl-C would there)."""
    original, calls = getattr(target, name), {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call_number:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, interrupted)


def assert_valid_checkpoint(folder, epochs_done):
    checkpoint = helper_train.load_verified(folder / CHECKPOINT_FILE)
    assert checkpoint["epochs_done"] == epochs_done
    TinyNet().load_state_dict(helper_train.load_verified(folder / BEST_MODEL_FILE))
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_ctrl_c_while_saving_the_checkpoint_ends_like_any_interrupt(tmp_path, monkeypatch, capsys):
    interrupt_on_call(monkeypatch, helper_train.CheckpointWriter, "snapshot", 2)  # the second epoch's save
    model, optimizer, scheduler = fresh()
    _, _, valid_acc = train_model(model, 3, *loaders(), optimizer, "cpu", scheduler=scheduler,
                                  checkpoint_dir=tmp_path)
    assert len(valid_acc) == 2
    assert "Training interrupted after 2 of 3 epochs." in capsys.readouterr().out
    assert_valid_checkpoint(tmp_path, 1)


def slow_saves(monkeypatch, seconds: float) -> None:
    """Every torch.save takes ``seconds`` longer, like a slow disk: the background write is still running later."""
    original_save = torch.save

    def slow_save(obj, path):
        time.sleep(seconds)
        original_save(obj, path)

    monkeypatch.setattr(helper_train.torch, "save", slow_save)


def test_ctrl_c_while_waiting_for_the_best_model_write_leaves_complete_files(tmp_path, monkeypatch, capsys):
    """Ctrl-C arrives while the main thread waits for a slow background write: the write still completes."""
    slow_saves(monkeypatch, 1.0)  # longer than epoch 2 takes: the write is still running when Ctrl-C comes
    interrupt_on_call(monkeypatch, threading.Thread, "join", 1)
    model, optimizer, scheduler = fresh()
    _, _, valid_acc = train_model(model, 3, *loaders(), optimizer, "cpu", scheduler=scheduler,
                                  checkpoint_dir=tmp_path)
    assert len(valid_acc) == 2  # Ctrl-C came while epoch 2's save waited for epoch 1's write
    assert "Training interrupted after 2 of 3 epochs." in capsys.readouterr().out
    assert_valid_checkpoint(tmp_path, 1)


def test_ctrl_c_while_the_first_checkpoint_is_still_written_says_the_run_can_resume(tmp_path, monkeypatch, capsys):
    """The interrupt comes early in epoch 2, before epoch 1's write has finished: that write completes first."""
    slow_saves(monkeypatch, 1.0)
    model, optimizer, scheduler = fresh()
    train_loader, valid_loader, test_loader = loaders()
    train_model(model, 2, InterruptAt(train_loader, epoch=2, batch=1), valid_loader, test_loader, optimizer, "cpu",
                scheduler=scheduler, checkpoint_dir=tmp_path)
    assert "to resume from the last saved epoch" in capsys.readouterr().out
    assert_valid_checkpoint(tmp_path, 1)


def test_ctrl_c_during_the_final_test_pass_returns_the_whole_history(tmp_path, capsys):
    train_loader, valid_loader, test_loader = loaders()

    class StopAtTest:
        def __len__(self):
            return len(test_loader)

        def __iter__(self):
            raise KeyboardInterrupt
            yield

    model, optimizer, scheduler = fresh()
    _, _, valid_acc = train_model(model, 2, train_loader, valid_loader, StopAtTest(), optimizer, "cpu",
                                  scheduler=scheduler, checkpoint_dir=tmp_path)
    assert len(valid_acc) == 2
    assert "Training interrupted after 2 of 2 epochs, in the test pass." in capsys.readouterr().out
    assert_valid_checkpoint(tmp_path, 2)


def test_temporary_files_of_a_killed_save_are_removed_at_the_next_start(tmp_path, capsys):
    leftover = tmp_path / f".{CHECKPOINT_FILE}.4242.0123abcd.tmp"
    leftover.write_bytes(b"half a checkpoint")
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    model, optimizer, scheduler = fresh()
    train_model(model, 1, *loaders(), optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    assert not leftover.exists() and keep.read_text() == "mine"
    assert "temporary file left by an interrupted save" in capsys.readouterr().out


def scripted_validation(monkeypatch, values, valid_loader):
    """Validation accuracies decided by the test: the best epoch is known in advance."""
    original, calls = helper_train.compute_accuracy, {"n": 0}

    def accuracy(model, loader, device, **kwargs):
        if loader is valid_loader:
            calls["n"] += 1
            return values[calls["n"] - 1]
        return original(model, loader, device, **kwargs)

    monkeypatch.setattr(helper_train, "compute_accuracy", accuracy)


def train_with_scripted_validation(tmp_path, monkeypatch, values):
    """Train one epoch per value in tmp_path/<epochs>/, validation scoring ``values``; return the final weights."""
    train_loader, valid_loader, test_loader = loaders()
    scripted_validation(monkeypatch, values, valid_loader)
    model, optimizer, _ = fresh()
    folder = tmp_path / str(len(values))
    train_model(model, len(values), train_loader, valid_loader, test_loader, optimizer, "cpu",
                checkpoint_dir=folder, history_file=folder / "history.json")
    return model.state_dict()


def test_best_model_holds_the_best_validation_epoch_not_the_last(tmp_path, monkeypatch):
    weights = {2: train_with_scripted_validation(tmp_path, monkeypatch, [50.0, 80.0]),
               3: train_with_scripted_validation(tmp_path, monkeypatch, [50.0, 80.0, 60.0])}
    best = torch.load(tmp_path / "3" / BEST_MODEL_FILE, weights_only=True)
    assert all(torch.equal(best[k], weights[2][k]) for k in best)  # epoch 2 of the 3-epoch run
    assert not all(torch.equal(best[k], weights[3][k]) for k in best)


def test_best_model_on_a_tie_is_the_first_epoch_to_reach_the_best_accuracy_as_the_run_table_says(
        tmp_path, monkeypatch):
    weights = {2: train_with_scripted_validation(tmp_path, monkeypatch, [50.0, 80.0]),
               3: train_with_scripted_validation(tmp_path, monkeypatch, [50.0, 80.0, 80.0])}
    best = torch.load(tmp_path / "3" / BEST_MODEL_FILE, weights_only=True)
    assert all(torch.equal(best[k], weights[2][k]) for k in best)  # epoch 2, not the tied epoch 3
    assert not all(torch.equal(best[k], weights[3][k]) for k in best)
    history = json.loads((tmp_path / "3" / "history.json").read_text())
    assert "80.00% (2)" in run_table_row("3", history)


def test_an_epoch_is_the_best_only_when_it_beats_every_earlier_epoch_not_just_the_last():
    """The first epoch is always the best so far, also at 0% (the notebook loads best_model.pt after any run)."""
    class RecordingWriter:
        def __init__(self):
            self.is_best = []

        def snapshot(self, checkpoint):
            return checkpoint

        def start_writing(self, snapshot, is_best):
            self.is_best.append(is_best)

    writer, history = RecordingWriter(), {"valid_acc": [], "checkpoint_seconds": []}
    for accuracy in [0.0, 80.0, 40.0, 60.0, 80.0, 90.0]:
        history["valid_acc"].append(accuracy)
        helper_train.save_epoch(writer, {"history": {"checkpoint_seconds": []}}, history)
    assert writer.is_best == [True, True, False, False, False, True]


def test_best_weights_are_written_before_the_checkpoint_that_records_them(tmp_path, monkeypatch):
    """So that a kill between the two writes never leaves best_model.pt older than the checkpoint's best epoch."""
    order, original = [], helper_train.save_atomically

    def recording(path, write):
        order.append(Path(path).name)
        return original(path, write)

    monkeypatch.setattr(helper_train, "save_atomically", recording)
    model, optimizer, _ = fresh()
    train_model(model, 2, *loaders(), optimizer, "cpu", checkpoint_dir=tmp_path)
    written = [name for name in order if name in (CHECKPOINT_FILE, BEST_MODEL_FILE)]
    assert written[:2] == [BEST_MODEL_FILE, CHECKPOINT_FILE]


def test_the_next_epoch_trains_while_the_checkpoint_is_written(tmp_path, monkeypatch):
    """The checkpoint of epoch 1 can only finish once epoch 2 has started: a blocking save would deadlock."""
    epoch_2_started, original_save = threading.Event(), torch.save

    def save_when_epoch_2_runs(obj, path):
        if isinstance(obj, dict) and obj.get("epochs_done") == 1:
            assert epoch_2_started.wait(timeout=20), "the checkpoint write blocked the next epoch"
        original_save(obj, path)

    class SignalEpoch2:
        def __init__(self, loader):
            self.loader, self.calls = loader, 0

        def __len__(self):
            return len(self.loader)

        def __iter__(self):
            self.calls += 1
            if self.calls == 3:
                epoch_2_started.set()
            yield from self.loader

    monkeypatch.setattr(helper_train.torch, "save", save_when_epoch_2_runs)
    train_loader, valid_loader, test_loader = loaders()
    model, optimizer, _ = fresh()
    train_model(model, 2, SignalEpoch2(train_loader), valid_loader, test_loader, optimizer, "cpu",
                checkpoint_dir=tmp_path)
    assert_valid_checkpoint(tmp_path, 2)


@pytest.mark.parametrize("where", ["checkpoint_dir", "history_file", "history_file_beside_checkpoints"])
def test_folder_that_cannot_be_created_fails_before_the_first_epoch(tmp_path, capsys, where):
    """Also without checkpoints (a smoke test, CHECKPOINTS = False), where only the history goes to the run folder,
    and for a history kept outside the checkpoint folder."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    target = {"checkpoint_dir": {"checkpoint_dir": blocker / "run"},
              "history_file": {"history_file": blocker / "h.json"},
              "history_file_beside_checkpoints": {"checkpoint_dir": tmp_path / "run",
                                                  "history_file": blocker / "h.json"}}[where]
    model, optimizer, _ = fresh()
    with pytest.raises(OSError, match="Cannot write to the run folder .* Choose another RESULTS_DIR"):
        train_model(model, 1, *loaders(), optimizer, "cpu", **target)
    assert "Batch" not in capsys.readouterr().out


def test_checking_that_a_folder_is_writable_leaves_other_runs_files_alone(tmp_path):
    """Two runs started at once in one RESULTS_DIR each write and delete a probe file. With one fixed name, one run
    deleted the other's and that run then refused its folder as unwritable (seen when two test processes shared a
    folder: "No such file or directory: '.../.write-test'"). The check leaves the folder as it found it."""
    (tmp_path / ".write-test").write_bytes(b"the probe of another run, in flight")
    helper_train.check_writable_folder(tmp_path)
    assert [path.name for path in tmp_path.iterdir()] == [".write-test"]
    errors = []

    def check_repeatedly():
        for _ in range(200):
            try:
                helper_train.check_writable_folder(tmp_path)
            except OSError as error:
                errors.append(error)

    threads = [threading.Thread(target=check_repeatedly) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and [path.name for path in tmp_path.iterdir()] == [".write-test"]


def test_a_run_folder_is_created_with_the_results_folder_above_it(tmp_path):
    """Before the first run RESULTS_DIR does not exist: the run's folder and the folders above it are made."""
    folder, history_path = helper_train.prepare_run_files(tmp_path / "results" / "lecture-abc123", None)
    assert folder.is_dir() and history_path == folder / HISTORY_FILE
    _, elsewhere = helper_train.prepare_run_files(None, tmp_path / "smoke" / "smoke-lecture-abc123" / HISTORY_FILE)
    assert elsewhere.parent.is_dir()


@pytest.mark.parametrize("saved_enabled", [False, True])
def test_checkpoint_resumes_across_gpus_with_and_without_the_gradient_scaler(tmp_path, monkeypatch, saved_enabled):
    """A checkpoint from a bf16 GPU or the CPU (scaler off) continues on a float16 T4 (scaler on), and back."""
    for enabled in (saved_enabled, not saved_enabled):
        monkeypatch.setattr(helper_train, "make_grad_scaler",
                            lambda device, amp_dtype, on=enabled: torch.amp.GradScaler("cpu", enabled=on))
        model, optimizer, scheduler = fresh()
        epochs = 1 if enabled == saved_enabled else 2
        _, _, valid_acc = train_model(model, epochs, *loaders(), optimizer, "cpu", scheduler=scheduler,
                                      checkpoint_dir=tmp_path)
    assert len(valid_acc) == 2
    assert bool(torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["scaler"]) != saved_enabled


# --- bad input ---------------------------------------------------------------------------------------


def test_model_with_the_wrong_output_width_is_rejected_before_training(capsys):
    model, optimizer, _ = fresh(model=TinyNet(num_classes=5))
    with pytest.raises(ValueError, match="outputs 5 scores.*num_classes=10"):
        train_model(model, 1, *loaders(), optimizer, "cpu")
    model, optimizer, _ = fresh(model=TinyNet(num_classes=12))
    with pytest.raises(ValueError, match="outputs 12 scores.*10 classes"):
        train_model(model, 1, *loaders(), optimizer, "cpu", num_classes=10)
    assert "Batch" not in capsys.readouterr().out


@pytest.mark.parametrize("error, expected", [
    ("Adaptive pool MPS: output sizes must be divisible by input sizes.", r"make_pooling_deterministic\(model\)"),
    ("some other failure", "some other failure")])
def test_a_model_that_apples_mps_cannot_pool_is_refused_with_the_fix(monkeypatch, capsys, error, expected):
    """A student's own model on MPS (the notebooks' model cell swaps the pooling itself) gets the fix before
    training, not PyTorch's advice to move tensors to the CPU; any other error stays as it is."""
    def pooling_on_mps(input, output_size):
        raise RuntimeError(error)

    monkeypatch.setattr(torch.nn.functional, "adaptive_avg_pool2d", pooling_on_mps)
    pooled = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d((3, 3)), torch.nn.Flatten(), torch.nn.Linear(27, 10))
    model, optimizer, _ = fresh(model=pooled)
    with pytest.raises(RuntimeError, match=expected) as raised:
        train_model(model, 1, *loaders(), optimizer, "cpu")
    assert ("MPS cannot compute" in str(raised.value)) == (expected != error)
    assert "Batch" not in capsys.readouterr().out


def test_lecture_style_call_takes_the_number_of_classes_from_the_data(capsys):
    model, optimizer, _ = fresh(model=TinyNet(num_classes=100))
    with pytest.raises(ValueError, match="outputs 100 scores.*data have 10 classes.*num_classes=10"):
        train_model(model, 1, *loaders(), optimizer, "cpu")
    assert "Batch" not in capsys.readouterr().out


def test_checkpoint_from_another_model_is_refused_and_kept(tmp_path):
    model, optimizer, _ = fresh()
    train_model(model, 1, *loaders(), optimizer, "cpu", checkpoint_dir=tmp_path)
    before = (tmp_path / CHECKPOINT_FILE).read_bytes()

    class WiderNet(TinyNet):
        def __init__(self):
            super().__init__()
            self.features[0] = torch.nn.Conv2d(3, 16, kernel_size=3, padding=1)
            self.classifier = torch.nn.Linear(16 * 4 * 4, 10)

    model, optimizer, _ = fresh(model=WiderNet())
    with pytest.raises(RunMismatchError, match="other settings(.|\n)*model: TinyNet: .* -> WiderNet") as error:
        train_model(model, 2, *loaders(), optimizer, "cpu", checkpoint_dir=tmp_path)
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == before
    assert str(error.value).startswith(f"The checkpoint '{tmp_path / CHECKPOINT_FILE}' belongs to a run with other "
                                       "settings")  # planted: the path not passed on (None) passed every test


def test_a_checkpoint_whose_weights_do_not_fit_the_model_is_refused_with_the_way_out(tmp_path):
    """A parameter outside any layer does not show in the model's printout: the weights themselves must still fit."""
    class WithSpare(TinyNet):
        def __init__(self, spare):
            super().__init__()
            self.spare = torch.nn.Parameter(torch.zeros(spare))

    model, optimizer, _ = fresh(model=WithSpare(3))
    scaler = helper_train.make_grad_scaler(torch.device("cpu"), None)
    path = tmp_path / CHECKPOINT_FILE
    torch.save(helper_train.make_checkpoint(model, optimizer, None, scaler, 1, helper_train.new_history(), {}), path)
    model, optimizer, _ = fresh(model=WithSpare(4))
    with pytest.raises(RunMismatchError, match="saved from a different model(.|\n)*delete this checkpoint") as error:
        helper_train.load_checkpoint(path, model, optimizer, None, scaler)
    assert f"'{path}' was saved from a different model, so it cannot continue this one (Error(s) in loading " \
           "state_dict for WithSpare:)" in str(error.value)  # planted: torch's reason dropped passed every test


@pytest.mark.parametrize("saved_with_scheduler", [False, True])
def test_a_checkpoint_loads_with_or_without_a_scheduler_on_either_side(tmp_path, saved_with_scheduler):
    """load_checkpoint without an identity (a script, not the notebooks) restores a scheduler only where both the
    checkpoint and the run have one; the other state loads either way (planted: `or` for `and`, which called
    load_state_dict on None, passed every test)."""
    def scheduler_of(optimizer):
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max")

    model, optimizer, _ = fresh()
    scaler = helper_train.make_grad_scaler(torch.device("cpu"), None)
    saved = scheduler_of(optimizer) if saved_with_scheduler else None
    path = tmp_path / CHECKPOINT_FILE
    torch.save(helper_train.make_checkpoint(model, optimizer, saved, scaler, 3, helper_train.new_history(), {}), path)
    model, optimizer, _ = fresh()
    loading = None if saved_with_scheduler else scheduler_of(optimizer)
    epochs_done, _ = helper_train.load_checkpoint(path, model, optimizer, loading, scaler)
    assert epochs_done == 3


def resume_from(tmp_path, epochs_done: int, saved_history: dict, num_epochs: int) -> dict:
    """Save a checkpoint of ``epochs_done`` epochs, resume it with ``num_epochs``; return the resumed history."""
    model, optimizer, _ = fresh()
    scaler = helper_train.make_grad_scaler(torch.device("cpu"), None)
    path = tmp_path / CHECKPOINT_FILE
    torch.save(helper_train.make_checkpoint(model, optimizer, None, scaler, epochs_done, saved_history, {}), path)
    model, optimizer, _ = fresh()
    history = helper_train.new_history()
    assert helper_train.resume_if_possible(path, True, model, optimizer, None, scaler, history, num_epochs, {}) \
        == epochs_done
    return history


@pytest.mark.parametrize("epochs_done, num_epochs, said", [
    (2, 2, "already holds all 2 epochs: nothing left to train (raise num_epochs to train longer)."),
    (3, 2, "holds 3 epochs, more than num_epochs=2: nothing to train. The model and the history are those after "
           "epoch 3, not 2; to stop at 2 epochs, train this configuration from scratch in another folder (in the "
           "notebooks: another RESULTS_DIR).")])
def test_a_checkpoint_with_nothing_left_to_train_says_what_to_do(tmp_path, capsys, epochs_done, num_epochs, said):
    """Planted: the advice in the first message changed, and "epoch" without its plural, both passed every test."""
    resume_from(tmp_path, epochs_done, helper_train.new_history(), num_epochs)
    assert said in capsys.readouterr().out


def test_a_checkpoint_whose_history_has_a_list_this_version_lacks_keeps_it(tmp_path):
    """A checkpoint written by a later version, with a record this one does not know, resumes with it (planted:
    setdefault(name, None), which failed on it, passed every test)."""
    history = resume_from(tmp_path, 1, {**helper_train.new_history(), "valid_loss": [0.7]}, 2)
    assert history["valid_loss"] == [0.7]


def flip_a_byte_in_the_weights(data: bytes) -> bytes:
    """Damage the middle of the largest tensor's bytes, as a bad disk sector would; the zip structure stays."""
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        tensors = [info for info in archive.infolist() if "/data/" in info.filename]  # not data.pkl, often larger:
        largest = max(tensors, key=lambda info: info.file_size)  # a broken pickle fails to load even unverified
        offset = largest.header_offset + 30 + len(largest.filename.encode()) + len(largest.extra)
    position = offset + largest.file_size // 2
    damaged = bytearray(data)
    damaged[position] ^= 0x40
    return bytes(damaged)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flipped byte"])
def test_damaged_checkpoint_is_refused_and_not_overwritten(tmp_path, damage):
    model, optimizer, _ = fresh()
    train_model(model, 1, *loaders(), optimizer, "cpu", checkpoint_dir=tmp_path)
    path = tmp_path / CHECKPOINT_FILE
    data = path.read_bytes()
    damaged = {"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint",
               "flipped byte": flip_a_byte_in_the_weights(data)}[damage]
    path.write_bytes(damaged)
    model, optimizer, _ = fresh()
    with pytest.raises(RuntimeError, match="damaged or not a file of this tutorial") as refused:
        train_model(model, 2, *loaders(), optimizer, "cpu", checkpoint_dir=tmp_path)
    assert path.read_bytes() == damaged
    assert str(refused.value).endswith(" It was left as it is: delete or rename it (to start training from scratch, "
                                       "delete the run's checkpoint).")  # the way on, not only what is wrong


def test_a_file_holding_other_python_objects_is_refused(tmp_path):
    """Loading a pickle without weights_only runs whatever it names: a checkpoint from elsewhere could run code."""
    path = tmp_path / CHECKPOINT_FILE
    torch.save({"epochs_done": 1, "model": Path("any object")}, path)
    with pytest.raises(RuntimeError, match="damaged or not a file of this tutorial"):
        helper_train.load_verified(path)


def test_a_weights_file_in_the_checkpoints_place_is_refused_and_kept(tmp_path):
    """A best_model.pt copied to checkpoint.pt, say: a sound file, but no checkpoint to continue."""
    model, optimizer, _ = fresh()
    torch.save(model.state_dict(), tmp_path / CHECKPOINT_FILE)
    before = (tmp_path / CHECKPOINT_FILE).read_bytes()
    with pytest.raises(RuntimeError, match="is not a checkpoint of this tutorial. Delete or rename it"):
        train_model(model, 1, *loaders(), optimizer, "cpu", checkpoint_dir=tmp_path)
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == before


def test_deterministic_pooling_replaces_adaptive_pooling_by_type():
    model = TinyNet()
    x = torch.randn(2, 3, 64, 64)
    expected = model(x)
    assert make_pooling_deterministic(model) == 1
    assert not any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in model.modules())
    torch.testing.assert_close(model(x), expected)


# --- review 2: the background writer, resuming, and what the history records -----------------------------


def test_a_failed_background_write_is_raised_on_the_training_thread(tmp_path, monkeypatch):
    """A full disk in the writer thread must stop the run at the next save or wait, not vanish with the thread."""
    def full_disk(path, write):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(helper_train, "save_atomically", full_disk)
    writer = helper_train.CheckpointWriter(tmp_path, torch.device("cpu"))
    writer.save({"model": {"w": torch.zeros(2)}, "epochs_done": 1}, is_best=True)
    with pytest.raises(RuntimeError, match=r"Writing a checkpoint to '.*' failed: .*No space left on device"):
        writer.wait()
    writer.wait()  # reported once


def test_a_checkpoint_holds_the_weights_of_its_epoch_while_the_next_epoch_changes_them(tmp_path, monkeypatch):
    """The optimizer updates the weights in place while the writer thread is still writing the previous epoch."""
    next_step_done, original_save = threading.Event(), torch.save

    def save_after_the_next_step(obj, path):
        assert next_step_done.wait(timeout=20)
        original_save(obj, path)

    monkeypatch.setattr(helper_train.torch, "save", save_after_the_next_step)
    weights = torch.zeros(3)
    writer = helper_train.CheckpointWriter(tmp_path, torch.device("cpu"))
    writer.save({"model": {"w": weights}, "epochs_done": 1}, is_best=True)
    weights.add_(1.0)  # the next epoch's first step
    next_step_done.set()
    writer.wait()
    assert torch.equal(torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["model"]["w"], torch.zeros(3))
    assert torch.equal(torch.load(tmp_path / BEST_MODEL_FILE, weights_only=True)["w"], torch.zeros(3))


def test_the_history_on_disk_is_updated_after_every_epoch(tmp_path, monkeypatch):
    """A run killed in epoch 2 (a closed laptop, a Colab timeout) keeps the record of its first epoch."""
    original, on_disk = helper_train.train_one_epoch, []

    def reading_the_history_first(*args, **kwargs):
        path = tmp_path / HISTORY_FILE
        on_disk.append(len(json.loads(path.read_text())["valid_acc"]) if path.exists() else None)
        return original(*args, **kwargs)

    monkeypatch.setattr(helper_train, "train_one_epoch", reading_the_history_first)
    model, optimizer, _ = fresh()
    train_model(model, 2, *loaders(), optimizer, "cpu", history_file=tmp_path / HISTORY_FILE)
    assert on_disk == [None, 1]


def test_a_history_file_named_outside_the_run_folder_is_kept_there(tmp_path):
    folder, history_path = helper_train.prepare_run_files(tmp_path / "run", tmp_path / "elsewhere" / "history.json")
    assert folder == tmp_path / "run" and history_path == tmp_path / "elsewhere" / "history.json"


def test_a_history_write_that_fails_midway_keeps_the_previous_history(tmp_path, monkeypatch):
    """A full disk while the history is written: the file still holds the last complete record, not half of one."""
    path = tmp_path / HISTORY_FILE
    helper_train.write_history(path, {"valid_acc": [50.0]}, {"run_name": "a"})

    def full_disk(self, text, *args, **kwargs):
        with open(self, "w") as file:
            file.write(text[:10])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(OSError, match="No space left"):
        helper_train.write_history(path, {"valid_acc": [50.0, 60.0]}, {"run_name": "a"})
    monkeypatch.undo()
    assert json.loads(path.read_text())["valid_acc"] == [50.0]


def test_a_diverged_run_leaves_its_last_checkpoint_complete(tmp_path, monkeypatch):
    """Epoch 1's checkpoint is still being written when epoch 2 explodes: the error waits for the write."""
    original_epoch, calls = helper_train.train_one_epoch, []

    def explodes_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise helper_train.TrainingDivergedError("The loss became inf in epoch 2")
        return original_epoch(*args, **kwargs)

    slow_saves(monkeypatch, 0.5)
    monkeypatch.setattr(helper_train, "train_one_epoch", explodes_in_epoch_2)
    model, optimizer, _ = fresh()
    with pytest.raises(helper_train.TrainingDivergedError):
        train_model(model, 3, *loaders(), optimizer, "cpu", checkpoint_dir=tmp_path)
    assert_valid_checkpoint(tmp_path, 1)


def test_a_resumed_run_that_diverges_at_once_says_its_checkpoint_still_holds_the_last_good_epoch(tmp_path, monkeypatch):
    """The run resumed from epoch 1's checkpoint and its first step explodes: the checkpoint it resumed from is the
    good one (planted: the count of saved epochs started at 0 on a resume, so the message said nothing of it)."""
    model, optimizer, scheduler = fresh()
    train_model(model, 1, *loaders(), optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    model, optimizer, scheduler = fresh()
    monkeypatch.setattr(helper_train, "training_step", lambda *args: torch.tensor(float("nan")))
    with pytest.raises(helper_train.TrainingDivergedError, match=r"The loss became nan in epoch 2, batch 0/\d+: .*"
                       r"The checkpoint holds the last good epoch \(1\); the broken epoch was not saved\."):
        train_model(model, 2, *loaders(), optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    assert_valid_checkpoint(tmp_path, 1)


def test_a_second_ctrl_c_while_waiting_for_the_last_write_is_reported_not_raised(tmp_path, capsys):
    class StillWriting:
        def wait(self):
            raise KeyboardInterrupt

    helper_train.finish_writing(StillWriting())
    assert "continues in the background" in capsys.readouterr().out


def test_the_history_records_one_checkpoint_time_per_epoch(tmp_path):
    """The claims table adds these times to the training time: one entry per epoch, none twice."""
    model, optimizer, scheduler = fresh()
    train_model(model, 2, *loaders(), optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    history = json.loads((tmp_path / HISTORY_FILE).read_text())
    checkpoint = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert len(history["checkpoint_seconds"]) == len(history["epoch_seconds"]) == 2
    assert len(checkpoint["history"]["checkpoint_seconds"]) == 2


def test_resume_false_trains_from_scratch_in_a_folder_with_a_checkpoint(tmp_path, capsys):
    model, optimizer, scheduler = fresh()
    train_model(model, 1, *loaders(), optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    capsys.readouterr()
    model, optimizer, scheduler = fresh()
    _, _, valid_acc = train_model(model, 1, *loaders(), optimizer, "cpu", scheduler=scheduler,
                                  checkpoint_dir=tmp_path, resume=False)
    out = capsys.readouterr().out
    assert len(valid_acc) == 1 and "Batch 0000" in out and "nothing left to train" not in out


def test_a_finished_checkpoint_says_there_is_nothing_left_to_train(tmp_path, capsys):
    model, optimizer, scheduler = fresh()
    train_model(model, 1, *loaders(), optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    capsys.readouterr()
    model, optimizer, scheduler = fresh()
    train_model(model, 1, *loaders(), optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    out = capsys.readouterr().out
    assert "already holds all 1 epochs: nothing left to train" in out and "Resuming" not in out


def test_the_history_records_the_mixed_precision_type_that_training_used(tmp_path, monkeypatch):
    """On a bf16 GPU the history says bfloat16 (here the CPU is made to train in bf16 autocast)."""
    from helper_evaluation import DevicePolicy

    monkeypatch.setattr(helper_train, "device_policy", lambda device, use_amp=None: DevicePolicy(False, torch.bfloat16))
    model, optimizer, _ = fresh()
    train_model(model, 1, *loaders(), optimizer, "cpu", checkpoint_dir=tmp_path)
    history = json.loads((tmp_path / HISTORY_FILE).read_text())
    assert history["precision"] == "bfloat16" and history["identity"]["precision"] == "mixed"


def test_the_last_checkpoint_is_complete_before_the_test_pass_starts(tmp_path, monkeypatch):
    """The training time includes the last write, and a failed last write stops the run before the test pass."""
    original_accuracy = helper_train.compute_accuracy
    train_loader, valid_loader, test_loader = loaders()
    on_disk_at_test_pass = []

    def accuracy(model, loader, device, **kwargs):
        if loader is test_loader:
            path = tmp_path / CHECKPOINT_FILE
            on_disk_at_test_pass.append(torch.load(path, weights_only=True)["epochs_done"] if path.exists() else None)
        return original_accuracy(model, loader, device, **kwargs)

    slow_saves(monkeypatch, 0.5)
    monkeypatch.setattr(helper_train, "compute_accuracy", accuracy)
    model, optimizer, _ = fresh()
    train_model(model, 1, train_loader, valid_loader, test_loader, optimizer, "cpu", checkpoint_dir=tmp_path)
    assert on_disk_at_test_pass == [1]


def test_a_run_interrupted_before_its_first_checkpoint_is_not_told_to_resume(tmp_path, capsys):
    """Checkpoints on, stopped in epoch 1: there is no checkpoint to resume from, and the message says so."""
    model, optimizer, scheduler = fresh()
    train_loader, valid_loader, test_loader = loaders()
    train_model(model, 2, InterruptAt(train_loader, epoch=1, batch=5), valid_loader, test_loader, optimizer, "cpu",
                scheduler=scheduler, checkpoint_dir=tmp_path)
    out = capsys.readouterr().out
    assert "No epoch of this run was saved yet, so it cannot be continued" in out and "resume" not in out
    assert (tmp_path / INTERRUPTED_MODEL_FILE).exists() and not (tmp_path / CHECKPOINT_FILE).exists()


def test_a_label_the_model_has_no_output_for_is_refused_when_the_loader_does_not_tell_the_classes(capsys):
    """A student's own loader (here a list of batches) does not say how many classes there are: the largest label
    of the first batch is checked instead. Label 9 needs 10 outputs; 9 outputs would fail deep inside the loss
    (planted '>' for '>=' passed every test)."""
    model, optimizer, _ = fresh(model=TinyNet(num_classes=9))
    batches = [(torch.randn(4, 3, 16, 16), torch.tensor([0, 3, 9, 1]))]
    with pytest.raises(ValueError, match="outputs 9 scores per image, but a label in the data is 9"):
        train_model(model, 1, batches, batches, batches, optimizer, "cpu")
    assert "Batch" not in capsys.readouterr().out


# --- review: mutmut on helper_train (each test below failed on a mutant that passed every test before) --------------


def test_a_resumed_run_continues_its_scheduler_where_it_stopped(tmp_path):
    """ReduceLROnPlateau counts the epochs without improvement: a fresh one after a resume would wait another ten
    epochs to lower the rate (planted: the scheduler's state restored only when none was passed passed every test)."""
    model, optimizer, scheduler = fresh()
    for accuracy in (50.0, 60.0, 55.0, 54.0):
        scheduler.step(accuracy)
    scaler = helper_train.make_grad_scaler(torch.device("cpu"), None)
    path = tmp_path / CHECKPOINT_FILE
    torch.save(helper_train.make_checkpoint(model, optimizer, scheduler, scaler, 4, {"valid_acc": []}, {}), path)
    model, optimizer, resumed = fresh()
    helper_train.load_checkpoint(path, model, optimizer, resumed, scaler)
    assert (resumed.best, resumed.num_bad_epochs, resumed.last_epoch) == (60.0, 2, 4)


def test_a_checkpoint_written_on_a_gpu_continues_on_a_machine_without_one(monkeypatch):
    """Trained on Colab's GPU, continued on a laptop: the CUDA generators' states are skipped there (planted: `or`
    for `and`, which set CUDA states on a machine without CUDA, passed every test: none saved any)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: pytest.fail("set CUDA states without CUDA"))
    state = {**helper_train.capture_rng_state(), "cuda": [torch.zeros(16, dtype=torch.uint8)]}
    expected = torch.rand(3)
    helper_train.restore_rng_state(state)
    assert torch.equal(torch.rand(3), expected)


def test_the_history_records_how_long_each_save_held_training_up(monkeypatch):
    """The checkpoint cost that issue 11 measures: the time the training thread waits for the previous write and
    the copy, in the history and in the copy the checkpoint file is written from (planted: None, or the clock
    plus the start, recorded instead passed every test, which only counted the entries)."""
    clock = FakeClock(monkeypatch, now=100.0)

    class SlowWriter:
        def snapshot(self, checkpoint):
            clock.now += 0.25
            return copy.deepcopy(checkpoint)

        def start_writing(self, snapshot, is_best):
            self.written = copy.deepcopy(snapshot)  # what the thread writes: nothing added later reaches the file
            clock.now += 1.0  # the thread's start is not part of the cost

    writer = SlowWriter()
    checkpoint, history = {"history": {"checkpoint_seconds": []}}, {"valid_acc": [50.0], "checkpoint_seconds": []}
    helper_train.save_epoch(writer, checkpoint, history)
    assert history["checkpoint_seconds"] == [0.25] and writer.written["history"]["checkpoint_seconds"] == [0.25]


def test_on_a_gpu_the_writer_thread_waits_for_the_copies_before_writing(tmp_path, monkeypatch):
    """The copies to pinned memory are queued on the GPU without waiting; the thread must wait for an event recorded
    after them on the training stream, or it could write a half-copied state (planted: no event on CUDA passed
    every CPU test). The GPU is stood in for: the event records what happens to it."""
    log = []

    class RecordingEvent:
        def record(self, stream):
            log.append(("recorded on", stream))

        def synchronize(self):
            log.append("waited for the copies")

    real_save = torch.save

    def logging_save(obj, path):
        log.append("wrote")
        real_save(obj, path)

    monkeypatch.setattr(helper_train.torch.cuda, "Event", RecordingEvent)
    monkeypatch.setattr(helper_train.torch.cuda, "current_stream", lambda device: f"the stream of {device}")
    monkeypatch.setattr(helper_train.torch, "save", logging_save)
    writer = helper_train.CheckpointWriter(tmp_path, torch.device("cuda", 0))
    writer.start_writing({"model": {"w": torch.zeros(2)}}, is_best=False)
    writer.wait()
    assert log == [("recorded on", "the stream of cuda:0"), "waited for the copies", "wrote"]


class OnGpu(torch.Tensor):
    """A CPU tensor that says it is on the GPU: copy_to_host's GPU path, on a machine without one."""

    @property
    def device(self):
        return torch.device("cuda", 0)


class RecordingBuffer(torch.Tensor):
    """A pinned buffer's stand-in that records how it is filled: a blocking copy would hold training up."""

    blocking_copies = 0

    def copy_(self, source, non_blocking=False):
        if not non_blocking:
            RecordingBuffer.blocking_copies += 1
        return super().copy_(source.as_subclass(torch.Tensor), non_blocking=non_blocking)


@pytest.fixture
def pinned_allocations(monkeypatch):
    """Record each ``torch.empty(..., pin_memory=...)`` of helper_train (pinning itself needs a GPU driver)."""
    real_empty, pinned = torch.empty, []

    def empty(*args, pin_memory=False, **kwargs):
        pinned.append(pin_memory)
        return real_empty(*args, **kwargs).as_subclass(RecordingBuffer)

    monkeypatch.setattr(helper_train.torch, "empty", empty)
    monkeypatch.setattr(RecordingBuffer, "blocking_copies", 0)
    return pinned


def test_gpu_tensors_are_copied_into_pinned_buffers_that_every_epoch_reuses(pinned_allocations):
    """Each GPU tensor of the state gets a pinned CPU buffer of its own, allocated once and refilled every epoch
    (allocating 400 MB of pinned memory per epoch costs more than the copy); CPU tensors are cloned. Planted and
    caught: the GPU tensors cloned like CPU ones (a 400 MB second copy on the GPU), a new buffer every epoch, two
    tensors of one shape in a dict or a list sharing a buffer (one written as the other), a buffer of the old dtype
    or shape reused (values silently converted), the copy not made at all."""
    weights, bias = torch.ones(3).as_subclass(OnGpu), torch.zeros(3).as_subclass(OnGpu)
    states = [torch.full((3,), 5.0).as_subclass(OnGpu), torch.full((3,), 6.0).as_subclass(OnGpu)]
    state = {"model": {"w": weights, "b": bias}, "optimizer": {"state": states, "lr": 0.01}, "rng": torch.arange(2),
             "python_rng": (3, (1, 2), None)}  # random.getstate(): tuples stay tuples
    buffers = {}
    first = helper_train.copy_to_host(state, buffers)
    weights.add_(1.0)  # the next epoch trains while the thread writes the copy
    assert torch.equal(first["model"]["w"], torch.ones(3)) and torch.equal(first["model"]["b"], torch.zeros(3))
    assert [state.tolist() for state in first["optimizer"]["state"]] == [[5.0] * 3, [6.0] * 3]
    assert first["optimizer"]["lr"] == 0.01 and torch.equal(first["rng"], torch.arange(2))
    assert first["python_rng"] == (3, (1, 2), None)
    assert pinned_allocations == [True] * 4  # the four GPU tensors; the CPU tensor is cloned
    assert RecordingBuffer.blocking_copies == 0  # queued on the GPU: training goes on while they run
    second = helper_train.copy_to_host(state, buffers)  # after the first write has finished
    assert torch.equal(second["model"]["w"], torch.full((3,), 2.0))
    assert second["model"]["w"].data_ptr() == first["model"]["w"].data_ptr() and len(pinned_allocations) == 4
    state["model"]["w"] = torch.tensor([1, 2, 3]).as_subclass(OnGpu)  # the same shape, another dtype
    third = helper_train.copy_to_host(state, buffers)
    assert third["model"]["w"].dtype == torch.int64 and torch.equal(third["model"]["w"], torch.tensor([1, 2, 3]))
    state["model"]["w"] = torch.tensor([[1, 2, 3], [4, 5, 6]]).as_subclass(OnGpu)  # the same dtype, another shape
    assert helper_train.copy_to_host(state, buffers)["model"]["w"].tolist() == [[1, 2, 3], [4, 5, 6]]
    assert len(pinned_allocations) == 6


def test_the_writer_keeps_its_pinned_buffers_from_one_epochs_snapshot_to_the_next(tmp_path, pinned_allocations):
    """The buffers live as long as the run's writer (planted: a new dict of buffers per snapshot, which allocated 400 MB
    of pinned memory every epoch on a GPU and passed every CPU test)."""
    writer = helper_train.CheckpointWriter(tmp_path, torch.device("cuda", 0))
    weights = torch.ones(3).as_subclass(OnGpu)
    first = writer.snapshot({"model": {"w": weights}})["model"]["w"]
    second = writer.snapshot({"model": {"w": weights}})["model"]["w"]
    assert pinned_allocations == [True] and first.data_ptr() == second.data_ptr()


def test_a_resumed_run_keeps_the_checkpoint_times_of_the_epochs_before(tmp_path):
    """The checkpoint's copy of the history used to hold 0.0 for the epoch it saved, and a resumed run loaded that
    back, so history.json lost a measured time at every resume (a review: [0.00445, 0.0, 0.00507])."""
    model, optimizer, scheduler = fresh()
    train_model(model, 2, *loaders(), optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    before = json.loads((tmp_path / HISTORY_FILE).read_text())["checkpoint_seconds"]
    model, optimizer, scheduler = fresh()
    train_model(model, 3, *loaders(), optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    after = json.loads((tmp_path / HISTORY_FILE).read_text())["checkpoint_seconds"]
    assert after[:2] == before and len(after) == 3 and all(seconds > 0 for seconds in after)


class RunsCodeWhenUnpickled:
    """What a malicious "checkpoint" could hold: unpickling it calls ``Path.touch`` on a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_a_checkpoint_that_would_run_code_when_loaded_is_refused_without_running_it(tmp_path):
    """Checkpoints are loaded with weights_only=True: a downloaded or shared file cannot run code (planted:
    weights_only=False passed every test)."""
    marker, path = tmp_path / "code-ran", tmp_path / CHECKPOINT_FILE
    torch.save({"epochs_done": 1, "payload": RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(RuntimeError, match="is damaged or not a file of this tutorial"):
        helper_train.load_verified(path)
    assert not marker.exists()


def test_counting_a_checkpoints_epochs_runs_no_code_either(tmp_path):
    """The notebook's run-folder cell counts the epochs of whatever checkpoint.pt lies in the run's folder, before
    train_model verifies it (planted: weights_only=False there ran the file's code)."""
    marker = tmp_path / "code-ran"
    torch.save({"epochs_done": 1, "payload": RunsCodeWhenUnpickled(marker)}, tmp_path / CHECKPOINT_FILE)
    assert helper_train.epochs_in_checkpoint(tmp_path) == 0
    assert not marker.exists()


def test_a_second_interrupt_while_the_interrupt_weights_are_saved_keeps_the_earlier_file(tmp_path, monkeypatch):
    """The interrupt weights are written atomically: a second Ctrl-C (or a full disk) in the middle of writing them
    leaves the earlier session's complete file, not the first bytes of a new one (planted: torch.save directly)."""
    model = TinyNet()
    earlier = {name: value + 1 for name, value in model.state_dict().items()}
    torch.save(earlier, tmp_path / INTERRUPTED_MODEL_FILE)

    def stopped_midway(obj, f, *args, **kwargs):
        with open(f, "wb") as file:
            file.write(b"PK\x03\x04")  # the start of a zip archive, then nothing
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", stopped_midway)
    with pytest.raises(KeyboardInterrupt):
        helper_train.report_interrupt(model, helper_train.CheckpointWriter(tmp_path, torch.device("cpu")), tmp_path,
                                      3, 1)
    monkeypatch.undo()
    saved = torch.load(tmp_path / INTERRUPTED_MODEL_FILE, weights_only=True)
    assert all(torch.equal(saved[name], value) for name, value in earlier.items())


def test_a_finished_run_without_interrupt_weights_says_nothing_of_removing_them(tmp_path, capsys):
    """Only weights that were there are reported removed: a run never interrupted ends without that line
    (planted: the line printed whether or not the file was there)."""
    helper_train.remove_interrupt_weights(tmp_path)
    assert capsys.readouterr().out == ""


def test_an_unwritable_run_folder_names_both_settings_that_choose_it(tmp_path):
    """The notebooks choose the run folder with RESULTS_DIR, a direct train_model call with checkpoint_dir: the message
    names both (planted: only RESULTS_DIR, the settings check's wording, passed every test)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OSError, match=r"Choose another RESULTS_DIR \(or checkpoint_dir\) that you can write to"):
        helper_train.check_writable_folder(blocker / "run")


def test_each_epochs_history_record_holds_that_epochs_checkpoint_time(tmp_path, monkeypatch):
    """history.json is written after the epoch's checkpoint is handed to the writer, so a session that dies between
    epochs leaves a record with one save time per epoch (planted: the history written before the checkpoint)."""
    written = []
    original = helper_train.write_history

    def recording(path, history, extra):
        written.append((len(history["valid_acc"]), len(history["checkpoint_seconds"])))
        original(path, history, extra)

    monkeypatch.setattr(helper_train, "write_history", recording)
    model, optimizer, scheduler = fresh()
    train_model(model, 2, *loaders(), optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    assert written == [(1, 1), (2, 2), (2, 2)]  # after each epoch, then at the end with the test accuracy


def test_a_run_without_float16_trains_and_saves_without_a_gradient_scaler(tmp_path):
    """Only float16 needs its loss scaled (its small gradients underflow); bf16 and float32 runs have a disabled
    scaler, whose saved state is empty (planted: make_grad_scaler given float16 whatever the precision passed every
    test: the scaled and unscaled steps agree on a CPU)."""
    model, optimizer, scheduler = fresh()
    train_model(model, 1, *loaders(), optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    assert torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["scaler"] == {}
