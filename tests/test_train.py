"""helper_train.train_model on a tiny learnable task."""

import math
import warnings

import IPython.display
import pytest
import torch
from conftest import TinyNet, lecture_test_transforms, lecture_train_transforms
from matplotlib.figure import Figure
from torchvision import transforms

import helper_train
from helper_dataset import get_dataloaders_cifar10, make_loader, make_synthetic_cifar10
from helper_evaluation import set_all_seeds
from helper_train import TrainingStalledWarning, train_model


def smoke_loaders(device=None, train_transforms=None, batch_size=32):
    return get_dataloaders_cifar10(
        batch_size, validation_fraction=0.1,
        train_transforms=train_transforms or lecture_train_transforms(),
        test_transforms=lecture_test_transforms(), smoke_test=True, device=device,
    )


def run(epochs=4, device=None, scheduler_on="valid_acc", seed=0, **kwargs):
    set_all_seeds(seed)
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, mode="max")
    loaders = smoke_loaders(device)
    results = train_model(model, epochs, *loaders, optimizer, "cpu", logging_interval=5,
                          scheduler=scheduler, scheduler_on=scheduler_on, **kwargs)
    return model, results


def test_train_model_learns_the_tiny_task_and_prints_the_lecture_log(capsys):
    _, (losses, train_acc, valid_acc) = run(epochs=4)
    out = capsys.readouterr().out
    assert len(losses) == 4 * 9 and len(train_acc) == len(valid_acc) == 4
    assert all(type(v) is float for v in losses + train_acc + valid_acc)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 * 0.5
    assert valid_acc[-1] >= 90.0
    assert "Epoch: 001/004 | Batch 0000/0009 | Loss: " in out
    assert "Epoch: 004/004 | Train: " in out and "| Validation: " in out
    assert "Time elapsed: " in out and "Total Training Time: " in out and "Test accuracy " in out


def test_minibatch_loss_scheduler_is_supported():
    _, (losses, _, _) = run(epochs=1, scheduler_on="minibatch_loss")
    assert all(math.isfinite(v) for v in losses)


def test_unknown_scheduler_signal_is_rejected_before_training():
    with pytest.raises(ValueError, match="scheduler_on"):
        train_model(TinyNet(), 1, [], [], [], torch.optim.SGD(TinyNet().parameters(), lr=0.1), "cpu",
                    scheduler_on="valid_loss")


@pytest.mark.parametrize("epochs", [0, -1, 1.5])
def test_bad_epoch_count_is_rejected(epochs):
    with pytest.raises(ValueError, match="num_epochs"):
        train_model(TinyNet(), epochs, [], [], [], torch.optim.SGD(TinyNet().parameters(), lr=0.1), "cpu")


def test_same_seed_gives_identical_runs():
    _, first = run(epochs=1, seed=3)
    _, second = run(epochs=1, seed=3)
    assert first == second


def test_lowering_the_learning_rate_is_printed(capsys):
    set_all_seeds(0)
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, mode="max", patience=0)
    train_model(model, 3, *smoke_loaders(), optimizer, "cpu", scheduler=scheduler, scheduler_on="minibatch_loss")
    assert "Learning rate lowered from 0.1 to 0.01" in capsys.readouterr().out


def test_fast_path_tracks_the_classic_path_step_for_step():
    """Same seed and same batches (unshuffled test split, centre crops), AMP off: same losses."""
    losses, first_batches = [], []
    for device in (None, "cpu"):
        *_, test_loader = smoke_loaders(device)
        batches = list(test_loader)
        first_batches.append(batches[0][0])
        set_all_seeds(0)
        model = TinyNet()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        run_losses = []
        for features, targets in batches * 2:
            loss = torch.nn.functional.cross_entropy(model(features), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            run_losses.append(loss.item())
        losses.append(run_losses)
    assert (first_batches[0] - first_batches[1]).abs().max() <= 2 / 255 / 0.5 + 1e-6
    assert losses[0] == pytest.approx(losses[1], rel=1e-3, abs=1e-3)


# --- watching the run ----------------------------------------------------------------------------


class Guessing(torch.nn.Module):
    """Cannot learn: outputs equal scores for every class whatever its (frozen) weight."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.zeros(x.shape[0], 10) * self.weight


def test_stall_warning_fires_for_a_model_that_cannot_learn():
    set_all_seeds(0)
    model = Guessing()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    balanced = make_synthetic_cifar10(100, seed=5)  # 10 images per class: predicting class 0 scores 10%
    loader = make_loader(balanced, transforms.ToTensor(), 20, shuffle=True, drop_last=True, num_workers=0, device=None)
    with pytest.warns(TrainingStalledWarning, match=r"still guessing.*learning rate.*initialization.*normalization"):
        train_model(model, 2, loader, loader, loader, optimizer, "cpu")


def test_stall_warning_stays_silent_on_a_learning_run():
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingStalledWarning)
        run(epochs=2)


def test_live_plot_updates_one_display_instead_of_adding_figures(monkeypatch):
    calls = {"display": 0, "update": 0}

    class Handle:
        def update(self, fig):
            assert isinstance(fig, Figure)
            calls["update"] += 1

    def fake_display(fig, display_id=False):
        assert display_id is True and isinstance(fig, Figure)
        calls["display"] += 1
        return Handle()

    monkeypatch.setattr(helper_train, "running_in_jupyter", lambda: True)
    monkeypatch.setattr(IPython.display, "display", fake_display)
    run(epochs=3, live_plot=True)
    assert calls == {"display": 1, "update": 2}


def test_live_plot_does_nothing_outside_jupyter(monkeypatch):
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: pytest.fail("displayed outside Jupyter"))
    assert not helper_train.running_in_jupyter()
    run(epochs=1, live_plot=True)
