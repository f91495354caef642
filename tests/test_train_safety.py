"""helper_train for long runs: checkpoints, exact resume after a kill, interrupts, divergence, bad input."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TinyNet, lecture_test_transforms, lecture_train_transforms

from helper_dataset import get_dataloaders_cifar10
from helper_evaluation import make_pooling_deterministic, set_all_seeds
from helper_train import BEST_MODEL_FILE, CHECKPOINT_FILE, INTERRUPTED_MODEL_FILE, TrainingDivergedError, train_model

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


def test_killed_run_resumes_bit_for_bit(tmp_path):
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
    assert a["history"] == b["history"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def test_checkpoint_and_best_weights_are_written_every_epoch(tmp_path):
    model, optimizer, scheduler = fresh()
    train_model(model, 2, *loaders(), optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    checkpoint = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert checkpoint["epochs_done"] == 2 and len(checkpoint["history"]["valid_acc"]) == 2
    assert set(checkpoint) >= {"model", "optimizer", "scheduler", "scaler", "rng", "history"}
    TinyNet().load_state_dict(torch.load(tmp_path / BEST_MODEL_FILE, weights_only=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CHECKPOINT_FILE, BEST_MODEL_FILE])


def test_finished_checkpoint_only_evaluates(tmp_path, capsys):
    model, optimizer, scheduler = fresh()
    first = train_model(model, 1, *loaders(), optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    model, optimizer, scheduler = fresh()
    again = train_model(model, 1, *loaders(), optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    assert again == first
    out = capsys.readouterr().out
    assert out.count("Batch 0000") == 1 and "Test accuracy" in out


class InterruptAt:
    """A training loader that raises KeyboardInterrupt at one batch of one epoch, like Jupyter's stop button."""

    def __init__(self, loader, epoch, batch):
        self.loader, self.epoch, self.batch, self.calls = loader, epoch, batch, 0

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.calls += 1
        for index, item in enumerate(self.loader):
            if self.calls == 2 * self.epoch - 1 and index == self.batch:
                raise KeyboardInterrupt
            yield item


def test_interrupt_returns_the_history_so_far_and_saves(tmp_path, capsys):
    model, optimizer, scheduler = fresh()
    train_loader, valid_loader, test_loader = loaders()
    losses, train_acc, valid_acc = train_model(
        model, 3, InterruptAt(train_loader, epoch=2, batch=4), valid_loader, test_loader, optimizer, "cpu",
        scheduler=scheduler, checkpoint_dir=tmp_path)
    assert len(train_acc) == len(valid_acc) == 1 and len(losses) == 9 + 4
    out = capsys.readouterr().out
    assert "interrupted during epoch 2/3 after 1 complete epoch(s)" in out and "Test accuracy" not in out
    assert torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["epochs_done"] == 1
    assert (tmp_path / INTERRUPTED_MODEL_FILE).exists()


def test_divergence_stops_within_the_batch_and_keeps_the_last_checkpoint(tmp_path):
    model, optimizer, scheduler = fresh()
    train_model(model, 1, *loaders(), optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    before = (tmp_path / CHECKPOINT_FILE).read_bytes()

    model, optimizer, scheduler = fresh(lr=1e6)  # a new run into the same folder, not resuming
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, batch \d/9.*lower the learning rate.*normalized"):
        train_model(model, 3, *loaders(), optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path,
                    resume=False)
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == before


def test_model_with_the_wrong_output_width_is_rejected_before_training(capsys):
    model, optimizer, _ = fresh(model=TinyNet(num_classes=5))
    with pytest.raises(ValueError, match="outputs 5 scores.*num_classes=10"):
        train_model(model, 1, *loaders(), optimizer, "cpu")
    model, optimizer, _ = fresh(model=TinyNet(num_classes=12))
    with pytest.raises(ValueError, match="outputs 12 scores.*10 classes"):
        train_model(model, 1, *loaders(), optimizer, "cpu", num_classes=10)
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
    with pytest.raises(RuntimeError, match="different model"):
        train_model(model, 2, *loaders(), optimizer, "cpu", checkpoint_dir=tmp_path)
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == before


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_checkpoint_is_refused_and_not_overwritten(tmp_path, damage):
    model, optimizer, _ = fresh()
    train_model(model, 1, *loaders(), optimizer, "cpu", checkpoint_dir=tmp_path)
    path = tmp_path / CHECKPOINT_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a checkpoint")
    damaged = path.read_bytes()
    model, optimizer, _ = fresh()
    with pytest.raises(RuntimeError, match="damaged or not a checkpoint"):
        train_model(model, 2, *loaders(), optimizer, "cpu", checkpoint_dir=tmp_path)
    assert path.read_bytes() == damaged


def test_deterministic_pooling_replaces_adaptive_pooling_by_type():
    model = TinyNet()
    x = torch.randn(2, 3, 64, 64)
    expected = model(x)
    assert make_pooling_deterministic(model) == 1
    assert not any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in model.modules())
    torch.testing.assert_close(model(x), expected)
