"""helper_train.train_model on a tiny learnable task."""

import contextlib
import json
import math
import re
import warnings

import IPython.display
import numpy as np
import pytest
import torch
from conftest import (
    FakeClock,
    InterruptAt,
    MovedTo,
    TinyNet,
    cpu_autocast_dtype,
    lecture_test_transforms,
    lecture_train_transforms,
)
from matplotlib.figure import Figure
from torchvision import transforms

import helper_train
from helper_dataset import get_dataloaders_cifar10, make_loader, make_synthetic_cifar10
from helper_evaluation import compute_accuracy, device_policy, set_all_seeds
from helper_train import LongRunWarning, TrainingStalledWarning, train_model


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
    assert len(losses) == 4 * 18 and len(train_acc) == len(valid_acc) == 4  # 576 images / 32
    assert all(type(v) is float for v in losses + train_acc + valid_acc)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 * 0.5
    assert valid_acc[-1] >= 90.0
    # every epoch's lines, counted from 1 (planted: the batch lines counted from 0 passed the check of one line)
    lines = out.splitlines()
    batch_lines = [re.sub(r"Loss: \d+\.\d{4}$", "Loss: x", line) for line in lines if "| Batch " in line]
    assert batch_lines == [f"Epoch: {epoch:03d}/004 | Batch {batch:04d}/0018 | Loss: x"  # every 5th batch
                           for epoch in range(1, 5) for batch in (0, 5, 10, 15)]
    epoch_lines = [line for line in lines if "| Train: " in line]
    assert epoch_lines == [f"Epoch: {epoch:03d}/004 | Train: {train:.2f}% | Validation: {valid:.2f}%"
                           for epoch, train, valid in zip(range(1, 5), train_acc, valid_acc, strict=True)]
    assert "Time elapsed: " in out and "Total Training Time: " in out and "Test accuracy " in out


def test_called_without_a_logging_interval_it_logs_every_50th_batch_as_in_the_lecture(capsys):
    """The lecture's default (planted: a default of 100 passed every test, all of which name the interval)."""
    set_all_seeds(0)
    model = TinyNet()
    train_model(model, 1, *smoke_loaders(batch_size=8), torch.optim.SGD(model.parameters(), lr=0.01), "cpu")
    assert re.findall(r"\| Batch (\d+)/(\d+)", capsys.readouterr().out) == [("0000", "0072"), ("0050", "0072")]


def test_each_epoch_line_prints_the_training_then_the_validation_accuracy(monkeypatch, capsys):
    """The tiny task scores 100% on both sets, so the log test cannot tell them apart (planted: the two swapped in
    the printed line passed every test)."""
    accuracy = {"train loader": 12.5, "valid loader": 67.25}
    monkeypatch.setattr(helper_train, "compute_accuracy", lambda model, loader, device, use_amp=None: accuracy[loader])
    history = {"train_acc": [], "valid_acc": []}
    result = helper_train.evaluate_epoch(TinyNet(), "train loader", "valid loader", "cpu", None, 2, 5, history)
    assert result == (12.5, 67.25) and history == {"train_acc": [12.5], "valid_acc": [67.25]}
    assert capsys.readouterr().out == "Epoch: 003/005 | Train: 12.50% | Validation: 67.25%\n"


def scheduler_metrics(monkeypatch) -> list:
    """The metrics ReduceLROnPlateau.step is given from now on, in order (it still steps)."""
    seen = []
    original = torch.optim.lr_scheduler.ReduceLROnPlateau.step
    monkeypatch.setattr(torch.optim.lr_scheduler.ReduceLROnPlateau, "step",
                        lambda self, metric: (seen.append(metric), original(self, metric))[1])
    return seen


def test_minibatch_loss_scheduler_sees_the_last_minibatch_loss(monkeypatch):
    seen = scheduler_metrics(monkeypatch)
    set_all_seeds(0)
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min")
    losses, _, _ = train_model(model, 2, *smoke_loaders(), optimizer, "cpu", scheduler=scheduler,
                               scheduler_on="minibatch_loss")
    assert seen == [losses[17], losses[35]]  # the last loss of each epoch


def test_valid_acc_scheduler_sees_the_validation_accuracy(monkeypatch, capsys):
    """The lecture's ReduceLROnPlateau(mode="max") watches the validation accuracy, not the training accuracy; the
    test accuracy printed at the end is the test set's (planted: the last validation accuracy printed instead passed
    every test)."""
    seen = scheduler_metrics(monkeypatch)
    set_all_seeds(0)
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max")
    train_loader, valid_loader, test_loader = smoke_loaders()
    mislabelled = [(features, (targets + 1) % 10) for features, targets in valid_loader]  # scores far below training
    _, train_acc, valid_acc = train_model(model, 2, train_loader, mislabelled, test_loader, optimizer, "cpu",
                                          scheduler=scheduler)
    assert seen == valid_acc and min(train_acc) > max(valid_acc) + 50
    test_acc = compute_accuracy(model, test_loader, "cpu")
    assert f"Test accuracy {test_acc:.2f}%\n" in capsys.readouterr().out and test_acc > valid_acc[-1] + 50


@pytest.mark.parametrize(("mode", "signal"), [("min", "valid_acc"), ("max", "minibatch_loss")])
def test_scheduler_mode_that_contradicts_its_signal_is_refused(mode, signal):
    optimizer = torch.optim.SGD(TinyNet().parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode)
    with pytest.raises(ValueError, match=f"mode={'max' if mode == 'min' else 'min'!r}"):
        train_model(TinyNet(), 1, [], [], [], optimizer, "cpu", scheduler=scheduler, scheduler_on=signal)


def test_other_schedulers_are_stepped_once_per_epoch_without_the_metric(capsys, tmp_path):
    """Also: history.json records the rate each epoch trained with, before the scheduler's step at its end."""
    set_all_seeds(0)
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    train_model(model, 2, *smoke_loaders(), optimizer, "cpu", scheduler=scheduler, history_file=tmp_path / "h.json")
    assert scheduler.last_epoch == 2 and type(scheduler.last_epoch) is int
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.025)
    assert "Learning rate lowered from 0.05 to 0.025" in capsys.readouterr().out
    assert json.loads((tmp_path / "h.json").read_text())["learning_rate"] == pytest.approx([0.1, 0.05])


def test_a_rate_the_scheduler_raises_is_said_to_be_raised(capsys):
    """A warm-up (LambdaLR doubling the rate) printed "Learning rate lowered from 0.001 to 0.002"."""
    set_all_seeds(0)
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001)
    warm_up = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0 + epoch)
    train_model(model, 1, *smoke_loaders(), optimizer, "cpu", scheduler=warm_up)
    out = capsys.readouterr().out
    assert "Learning rate raised from 0.001 to 0.002" in out and "lowered" not in out


def test_unknown_scheduler_signal_is_rejected_before_training():
    with pytest.raises(ValueError, match="scheduler_on"):
        train_model(TinyNet(), 1, [], [], [], torch.optim.SGD(TinyNet().parameters(), lr=0.1), "cpu",
                    scheduler_on="valid_loss")


@pytest.mark.parametrize("epochs", [0, -1, 1.5])
def test_bad_epoch_count_is_rejected(epochs):
    with pytest.raises(ValueError, match="num_epochs"):
        train_model(TinyNet(), epochs, [], [], [], torch.optim.SGD(TinyNet().parameters(), lr=0.1), "cpu")


@pytest.mark.parametrize("interval", [0, -5, 2.5])
def test_bad_logging_interval_is_rejected(interval):
    with pytest.raises(ValueError, match="logging_interval must be a whole number of at least 1"):
        train_model(TinyNet(), 1, [], [], [], torch.optim.SGD(TinyNet().parameters(), lr=0.1), "cpu",
                    logging_interval=interval)


def test_numpy_integers_are_whole_numbers():
    import numpy as np

    train_model_settings = helper_train.check_training_settings
    train_model_settings(np.int64(3), "valid_acc", np.int32(10))  # no error
    train_model_settings(1, "valid_acc", 1)  # one epoch, a line for every batch: the smallest allowed


def test_same_seed_gives_identical_runs():
    _, first = run(epochs=1, seed=3)
    _, second = run(epochs=1, seed=3)
    assert first == second


def test_a_rate_lowered_beside_a_frozen_first_group_is_said_to_be_lowered(capsys, tmp_path):
    """Features frozen (rate 0), the classifier at 0.1 halved by StepLR: it printed "Learning rate raised from 0
    to 0", comparing the frozen group's rates; and the history recorded the frozen group's 0 every epoch, so the
    run table said the rate never changed."""
    set_all_seeds(0)
    model = TinyNet()
    first, *rest = list(model.parameters())
    optimizer = torch.optim.SGD([{"params": [first], "lr": 0.0}, {"params": rest}], lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    train_model(model, 2, *smoke_loaders(), optimizer, "cpu", scheduler=scheduler, history_file=tmp_path / "h.json")
    out = capsys.readouterr().out
    assert "Learning rate lowered from 0.1 to 0.05" in out and "raised" not in out
    assert json.loads((tmp_path / "h.json").read_text())["learning_rate"] == pytest.approx([0.1, 0.05])


def test_when_every_group_is_lowered_the_first_groups_rate_is_printed(capsys):
    """Features at 0.1, classifier at 0.01, both halved: the line names the first group's rate, as the notebook's
    LEARNING_RATE (planted: the last changed group's rate printed passed every test, which froze the first group)."""
    model = TinyNet()
    optimizer = torch.optim.SGD([{"params": model.features.parameters()},
                                 {"params": model.classifier.parameters(), "lr": 0.01}], lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    optimizer.step()  # an epoch's steps come first (no gradients: nothing changes)
    helper_train.step_scheduler(scheduler, "valid_acc", 50.0, 2.0)
    assert capsys.readouterr().out == "Learning rate lowered from 0.1 to 0.05\n"


def test_a_learning_rate_given_as_a_tensor_is_recorded_as_a_number(capsys, tmp_path):
    """torch allows lr=torch.tensor(0.1) (for a compiled optimizer step): writing history.json failed after the first
    epoch ("Object of type Tensor is not JSON serializable"), and the scheduler's in-place change went unsaid."""
    set_all_seeds(0)
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=torch.tensor(0.1))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    train_model(model, 2, *smoke_loaders(), optimizer, "cpu", scheduler=scheduler, history_file=tmp_path / "h.json")
    assert json.loads((tmp_path / "h.json").read_text())["learning_rate"] == pytest.approx([0.1, 0.05])
    assert "Learning rate lowered from 0.1 to 0.05" in capsys.readouterr().out


def test_lowering_the_learning_rate_is_printed(capsys):
    set_all_seeds(0)
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, mode="min", patience=0,
                                                           threshold=100.0, threshold_mode="abs")
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


def test_fast_path_trains_end_to_end_with_each_image_keeping_its_label():
    """The on-device loader (here on the CPU) shuffles; a label mix-up would keep accuracy near chance."""
    set_all_seeds(0)
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _, train_acc, valid_acc = train_model(model, 4, *smoke_loaders(device="cpu"), optimizer, "cpu",
                                          logging_interval=5)
    assert train_acc[-1] >= 90.0 and valid_acc[-1] >= 90.0


def test_losses_are_read_from_the_device_only_at_the_logging_points(host_reads):
    """No host-device synchronization per step: one read per logging point and one at the end of the epoch."""
    set_all_seeds(0)
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_loader = smoke_loaders(device="cpu")[0]  # no per-image random draws, unlike the DataLoader path
    losses: list[float] = []
    cpu = torch.device("cpu")
    scaler = helper_train.make_grad_scaler(cpu, None)
    step = lambda x, y: helper_train.training_step(model, x, y, optimizer, cpu, device_policy(cpu), scaler)  # noqa: E731
    helper_train.train_one_epoch(step, model, train_loader, 0, 1, 100, losses, 1e9, 0)
    assert len(losses) == 18 and all(type(v) is float for v in losses)
    assert len(host_reads) <= 3  # logging point at batch 0, the end of the epoch, the loader's shuffle seed


def test_a_logging_point_at_the_last_batch_of_an_epoch_leaves_nothing_to_read_at_its_end(capsys):
    """18 batches, logged every 17: batch 17 is a logging point, so the end of the epoch finds no losses left."""
    batches = [(torch.zeros(1, 3, 8, 8), torch.zeros(1, dtype=torch.long))] * 18
    losses: list[float] = []
    helper_train.train_one_epoch(lambda x, y: torch.tensor(2.3), TinyNet(), batches, 0, 1, 17, losses, 230.0, 0)
    assert len(losses) == 18 and "Batch 0017/0018" in capsys.readouterr().out


def stopped_at_batch_8():
    """Ten batches of one blank image, and Ctrl-C (Jupyter's stop button) when batch 8 is asked for."""
    return InterruptAt([(torch.zeros(1, 3, 8, 8), torch.zeros(1, dtype=torch.long))] * 10, epoch=1, batch=8)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 500.0])  # 500: above the divergence limit of 230
def test_a_run_stopped_after_its_loss_went_bad_ends_as_the_divergence_it_is(bad):
    """A student stops a run between two logging points after its loss went bad: the losses kept for the plots and
    the history end before the first bad one, and the run is reported as diverged at that batch, as a logging
    point would have (planted: every loss kept, as it was: the loss plot of the next cell then failed with "Axis
    limits cannot be NaN or Inf"; and the bad losses dropped without a word, the NaN weights passed off as an
    interrupted run's)."""
    step_losses = iter([2.3, 2.2, 2.1, 2.0, 1.9, bad, float("nan"), 2.0])
    losses = [2.5] * 3  # an earlier epoch's
    with pytest.raises(helper_train.TrainingDivergedError, match=f"The loss became {bad:.4g}.* in epoch 2, "
                                                                 r"batch 5/10: training diverged") as error:
        helper_train.train_one_epoch(lambda x, y: torch.tensor(next(step_losses)), TinyNet(), stopped_at_batch_8(),
                                     1, 2, 50, losses, 230.0, 0)
    assert losses == pytest.approx([2.5] * 3 + [2.3, 2.2, 2.1, 2.0, 1.9])
    assert error.value.__suppress_context__  # the traceback shows the divergence, not the Ctrl-C after it


def test_a_run_stopped_with_good_losses_keeps_every_one_of_them():
    losses: list[float] = []
    with pytest.raises(KeyboardInterrupt):
        helper_train.train_one_epoch(lambda x, y: torch.tensor(2.0), TinyNet(), stopped_at_batch_8(), 0, 1, 50,
                                     losses, 230.0, 0)
    assert losses == [2.0] * 8


def test_each_epoch_trains_in_training_mode_also_after_the_student_switched_to_evaluation():
    """VGG-16's dropout only works in training mode: a model left in eval() by an earlier cell must train as usual."""
    model, modes = TinyNet(), []
    model.eval()
    batches = [(torch.zeros(1, 3, 8, 8), torch.zeros(1, dtype=torch.long))] * 3
    helper_train.train_one_epoch(lambda x, y: modes.append(model.training) or torch.tensor(2.3), model, batches,
                                 0, 1, 50, [], 230.0, 0)
    assert modes == [True, True, True]


# --- watching the run ----------------------------------------------------------------------------


def shown(category, action) -> list[str]:
    """The messages of ``category`` that ``action()`` shows. (A warnings "error" filter cannot test silence here:
    the helpers switch their own warnings to "always", which comes first, so an "error" filter never fires.)"""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        action()
    return [str(w.message) for w in caught if issubclass(w.category, category)]


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
    with pytest.warns(TrainingStalledWarning, match=r"still guessing.*learning rate.*initialization.*normalization") \
            as caught:
        train_model(model, 2, loader, loader, loader, optimizer, "cpu")
    assert [w.filename for w in caught if w.category is TrainingStalledWarning] == [__file__]  # the caller's line


def test_stall_warning_judges_the_validation_accuracy_not_the_training_accuracy():
    """Training images all of class 0, which equal scores happen to call right (argmax picks 0): 100% training
    accuracy, 10% validation accuracy, loss ln(10). Still guessing (planted: the training accuracy judged passed)."""
    set_all_seeds(0)
    model = Guessing()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    balanced = make_synthetic_cifar10(100, seed=5)  # 10 images per class
    all_zero = balanced._replace(labels=np.zeros_like(balanced.labels))
    train, valid = (make_loader(data, transforms.ToTensor(), 20, shuffle=False, drop_last=True, num_workers=0,
                                device=None) for data in (all_zero, balanced))
    with pytest.warns(TrainingStalledWarning, match=r"validation accuracy 10.00%"):
        _, train_acc, _ = train_model(model, 2, train, valid, valid, optimizer, "cpu")
    assert train_acc == [100.0, 100.0]


def test_stall_warning_thresholds_fire_on_the_stuck_smoke_run_and_not_on_slow_learners():
    """Measured: the stuck VGG-16 smoke run had mean loss 2.24 and 6.25% validation accuracy after 2 epochs."""
    with pytest.warns(TrainingStalledWarning):
        helper_train.warn_if_stalled([2.24] * 9, 6.25, 10, 1)
    rising_accuracy = shown(TrainingStalledWarning, lambda: helper_train.warn_if_stalled([2.24] * 9, 16.0, 10, 1))
    falling_loss = shown(TrainingStalledWarning, lambda: helper_train.warn_if_stalled([2.0] * 9, 10.0, 10, 1))
    assert rising_accuracy == [] and falling_loss == []


@pytest.mark.parametrize("num_classes", [10, 100])
def test_stall_warning_thresholds_sit_at_one_and_a_half_times_chance_and_nine_tenths_of_ln_c(num_classes):
    """The documented thresholds, from either side: 1.5 x chance (15% for 10 classes) and 0.9 x ln(C).
    Planted: 1.2 x chance, 0.95 x ln(C), a chance of 10% whatever the classes."""
    chance, guessing_loss = 100 / num_classes, math.log(num_classes)
    stuck_loss, stuck_acc = [0.97 * guessing_loss] * 9, 0.6 * chance  # as the stuck smoke run measured

    def warns(losses, valid_acc):
        def check():
            helper_train.warn_if_stalled(losses, valid_acc, num_classes, 1)
        return shown(TrainingStalledWarning, check) != []

    assert warns(stuck_loss, 1.49 * chance) and not warns(stuck_loss, 1.51 * chance)
    assert not warns(stuck_loss, 1.5 * chance)  # "under": 750 of 5,000 validation images right is not guessing
    assert warns([0.91 * guessing_loss] * 9, stuck_acc) and not warns([0.89 * guessing_loss] * 9, stuck_acc)
    assert not warns([0.9 * guessing_loss], stuck_acc)  # "above": exactly 0.9 x ln(C) is not


def test_stall_warning_judges_the_epochs_mean_loss_not_its_last_batch():
    """One batch is noisy: a stuck epoch (mean 2.24) whose last batch happened to drop to 1.12 still warns, and a
    learning epoch (mean 1.5) whose last batch jumped to 2.3 does not (planted: the last loss only passed every
    test)."""
    stuck_with_a_lucky_last_batch = [2.38] * 8 + [1.12]  # mean 2.24
    learning_with_an_unlucky_last_batch = [1.4] * 8 + [2.3]  # mean 1.5
    assert shown(TrainingStalledWarning,
                 lambda: helper_train.warn_if_stalled(stuck_with_a_lucky_last_batch, 6.25, 10, 1)) != []
    assert shown(TrainingStalledWarning,
                 lambda: helper_train.warn_if_stalled(learning_with_an_unlucky_last_batch, 6.25, 10, 1)) == []


def test_stall_warning_message_in_full():
    """What the student reads, with the causes to check (planted: the causes' sentence changed, passed the suite)."""
    [message] = shown(TrainingStalledWarning, lambda: helper_train.warn_if_stalled([2.24] * 9, 6.25, 10, 1))
    assert message == (
        "After 2 epochs the model is still guessing: validation accuracy 6.25% (chance: 10%), loss 2.240 (guessing: "
        "ln(10) = 2.303). Consider stopping and checking: the learning rate (too high or too low), the weight "
        "initialization, the input normalization, and the data and labels (shuffled? matching?).")


def test_stall_check_judges_the_losses_of_its_epoch_only(monkeypatch):
    """After epoch 2 the check sees epoch 2's 18 losses: epoch 1's high start would make a learning run look stuck."""
    calls = []
    monkeypatch.setattr(helper_train, "warn_if_stalled", lambda *args: calls.append(args))
    _, (losses, _, valid_acc) = run(epochs=3, stall_check_epoch=2)
    assert calls == [(losses[18:36], valid_acc[1], 10, 1)]


def test_stall_warning_shows_again_when_the_cell_runs_again():
    """Python shows a warning once per code location by default; a student who re-runs the cell must see it again."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(2):
            helper_train.warn_if_stalled([2.24] * 9, 6.25, 10, 1)
    assert [w.category for w in caught] == [TrainingStalledWarning, TrainingStalledWarning]


def test_stall_warning_counts_the_epochs_from_one():
    """warn_if_stalled gets the 0-based epoch index; the student reads "after 2 epochs" after the second."""
    assert "After 2 epochs the model is still guessing" in shown(
        TrainingStalledWarning, lambda: helper_train.warn_if_stalled([2.24] * 9, 6.25, 10, 1))[0]


def test_stall_warning_stays_silent_on_a_learning_run():
    assert shown(TrainingStalledWarning, lambda: run(epochs=2)) == []


def test_long_run_warning_names_the_time_left_and_the_ways_out():
    """The lecture's run on a 2-core CPU: 8.6 s per step of 256 images, 8,744 steps to go."""
    with pytest.warns(LongRunWarning) as caught:
        helper_train.warn_if_long(8.6, 8744, torch.device("cpu"))
    message = str(caught[0].message)
    assert "on cpu" in message and "8.60 s" in message and "8,744 steps" in message
    assert "about 21 hours" in message  # 8.6 x 8,744 = 75,198 s
    assert "SMOKE_TEST = True" in message and "Change runtime type -> GPU" in message and "NUM_EPOCHS" in message


def test_long_run_warning_on_a_cuda_gpu_does_not_send_the_student_to_a_gpu():
    """A run on a CUDA GPU can take hours too (a laptop's GPU, the lecture's path in float32; the lecture's own GPU
    run took 90.7 minutes): "use a CUDA GPU (Change runtime type -> GPU)" is no way out there, fewer epochs and the
    GPU's fast settings are."""
    with pytest.warns(LongRunWarning) as caught:
        helper_train.warn_if_long(0.7, 8744, torch.device("cuda"))
    message = str(caught[0].message)
    assert "on cuda" in message and "use a CUDA GPU" not in message and "Change runtime type" not in message
    assert all(name in message for name in ("SMOKE_TEST", "NUM_EPOCHS", "FAST_DATA_PATH", "PRECISION", "DETERMINISTIC"))


def test_long_run_warning_on_apples_gpu_points_to_a_cuda_gpu():
    """Mixed precision and the on-GPU data path are CUDA's fast settings: on a Mac (MPS) the way out is a CUDA GPU."""
    with pytest.warns(LongRunWarning) as caught:
        helper_train.warn_if_long(2.0, 8744, torch.device("mps"))
    message = str(caught[0].message)
    assert "on mps" in message and "use a CUDA GPU" in message and "PRECISION" not in message


def test_long_run_warning_only_beyond_an_hour():
    assert shown(LongRunWarning, lambda: helper_train.warn_if_long(0.1, 8744, torch.device("cuda"))) == []  # 15 min
    assert shown(LongRunWarning, lambda: helper_train.warn_if_long(1.0, 3600, torch.device("cpu"))) == []  # the limit
    with pytest.warns(LongRunWarning, match="about 60 minutes"):
        helper_train.warn_if_long(1.0, 3601, torch.device("cpu"))


def test_long_run_warning_shows_again_when_the_cell_runs_again():
    """Python shows a warning once per code location by default; a student who re-runs the cell must see it again."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(2):
            helper_train.warn_if_long(8.6, 8744, torch.device("cpu"))
    assert [w.category for w in caught] == [LongRunWarning, LongRunWarning]


@pytest.mark.parametrize(("warn", "category"), [
    (lambda: helper_train.warn_if_long(8.6, 8744, torch.device("cpu")), LongRunWarning),
    (lambda: helper_train.warn_if_stalled([2.24] * 9, 6.25, 10, 1), TrainingStalledWarning),
])
def test_the_runs_warnings_show_despite_a_notebooks_blanket_ignore(warn, category):
    """Many notebooks start with warnings.filterwarnings("ignore") to hide library noise; "this run takes 21 hours"
    and "the model is still guessing" are not noise."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("ignore")
        warn()
    assert [w.category for w in caught] == [category]


@pytest.mark.parametrize("seconds, words", [(3601, "60 minutes"), (5400, "90 minutes"), (7199, "120 minutes"),
                                             (7200, "2 hours"), (12600, "4 hours"), (75198, "21 hours")])
def test_durations_read_as_minutes_up_to_two_hours_then_hours(seconds, words):
    assert helper_train.format_duration(seconds) == words


def steps_taking(monkeypatch, clock, seconds_per_step, first_step_seconds):
    """Every training step moves the fake clock on: the first by ``first_step_seconds``, later ones by the other."""
    original, steps = helper_train.training_step, []

    def timed_step(*args, **kwargs):
        clock.now += first_step_seconds if not steps else seconds_per_step
        steps.append(clock.now)
        return original(*args, **kwargs)

    monkeypatch.setattr(helper_train, "training_step", timed_step)


def test_the_elapsed_and_total_training_times_are_printed_in_minutes(monkeypatch, capsys):
    """Steps of 10 s on a fake clock, 18 of them per epoch: 3 minutes per epoch (planted: the seconds printed as
    minutes passed every test)."""
    clock = FakeClock(monkeypatch)
    steps_taking(monkeypatch, clock, 10.0, first_step_seconds=10.0)
    run(epochs=2)
    assert re.findall(r"(?:Time elapsed|Total Training Time): .*", capsys.readouterr().out) == [
        "Time elapsed: 3.00 min", "Time elapsed: 6.00 min", "Total Training Time: 6.00 min"]


def test_a_resumed_runs_total_training_time_says_which_epochs_it_counts_and_what_the_whole_run_took(
        monkeypatch, capsys, tmp_path):
    """The run table sums every epoch of the run; the session's own line counted only its own, unexplained."""
    clock = FakeClock(monkeypatch)
    steps_taking(monkeypatch, clock, 10.0, first_step_seconds=10.0)
    for epochs in (2, 3, 5, 5):
        run(epochs=epochs, checkpoint_dir=tmp_path)
    assert re.findall(r"Total Training Time: .*", capsys.readouterr().out) == [
        "Total Training Time: 6.00 min",
        "Total Training Time: 3.00 min (this session: epoch 3; the run's 3 epochs: 9.00 min)",
        "Total Training Time: 6.00 min (this session: epochs 4 to 5; the run's 5 epochs: 15.00 min)",
        "Total Training Time: 0.00 min (this session: nothing left to train; the run's 5 epochs: 15.00 min)"]


def test_a_run_resumed_after_its_first_epoch_also_says_which_epochs_the_session_trained():
    """A checkpoint of one epoch is a resumed run too (planted: the note only after two or more epochs passed every
    test, whose runs resumed after 2, 3 and 5)."""
    assert helper_train.training_time_line(60.0, 1, {"epoch_seconds": [30.0, 30.0, 30.0]}) == (
        "Total Training Time: 1.00 min (this session: epochs 2 to 3; the run's 3 epochs: 1.50 min)")


@pytest.mark.parametrize("seconds_per_step, expect_warning", [(100.0, True), (50.0, False)])
def test_a_run_whose_first_steps_are_slow_is_warned_once_with_the_steps_still_to_come(
        monkeypatch, seconds_per_step, expect_warning):
    """4 epochs of 18 steps: after steps 0 to 5 of the first epoch, 66 are left. At 100 s each that is 6,600 s
    (warned); at 50 s, 3,300 s (not). Step 0 takes 10,000 s (set-up) and must not count."""
    clock = FakeClock(monkeypatch)
    steps_taking(monkeypatch, clock, seconds_per_step, first_step_seconds=10_000.0)
    long_runs = shown(LongRunWarning, lambda: run(epochs=4))
    if expect_warning:
        assert len(long_runs) == 1
        assert f"{seconds_per_step:.2f} s" in long_runs[0] and "66 steps" in long_runs[0]
    else:
        assert long_runs == []


def test_a_resumed_run_counts_only_the_epochs_it_has_left(monkeypatch, tmp_path):
    """Resumed after 3 of 4 epochs: 18 steps, 12 of them after the timed ones, at 1,000 s each: 12,000 s."""
    run(epochs=3, checkpoint_dir=tmp_path)
    clock = FakeClock(monkeypatch)
    steps_taking(monkeypatch, clock, 1000.0, first_step_seconds=1.0)
    with pytest.warns(LongRunWarning, match=r"the 12 steps still to come take about 3 hours") as caught:
        run(epochs=4, checkpoint_dir=tmp_path)
    assert [w.filename for w in caught if w.category is LongRunWarning] == [__file__]  # run()'s call of train_model


class QueuedSteps:
    """A device like CUDA or MPS: a step is queued and returns at once; reading a loss waits for the queued steps."""

    def __init__(self, monkeypatch, clock, seconds_per_step):
        self.queued, self.reads = 0, 0
        original = torch.Tensor.item

        def item(tensor):
            clock.now += self.queued * seconds_per_step
            self.queued, self.reads = 0, self.reads + 1
            return original(tensor)

        monkeypatch.setattr(torch.Tensor, "item", item)

    def step(self) -> torch.Tensor:
        self.queued += 1
        return torch.tensor(2.3)


def test_the_pace_is_timed_on_the_device_and_read_from_it_twice_only(monkeypatch):
    """The clock is read after waiting for step 0 and for step 5, or it times the queuing (0 s), not the steps (a
    planted finished_at without loss.item() passed every test), and at no other step: the fast path never waits
    per step (a planted wait at every step of the first epoch passed too)."""
    clock = FakeClock(monkeypatch)
    device = QueuedSteps(monkeypatch, clock, seconds_per_step=100.0)
    pace = helper_train.PaceCheck(steps_left=1000, device=torch.device("cuda"))
    long_runs = shown(LongRunWarning, lambda: [pace.after_step(batch_idx, device.step()) for batch_idx in range(18)])
    assert len(long_runs) == 1 and "100.00 s" in long_runs[0] and "the 995 steps" in long_runs[0]
    assert device.reads == 2


def test_live_plot_is_shown_before_training_and_redrawn_after_each_epoch_line_before_its_checkpoint(
        monkeypatch, tmp_path, capsys):
    events = []

    class Handle:
        def update(self, fig):
            assert isinstance(fig, Figure)
            out = capsys.readouterr().out
            epoch = sum(e == "update" for e in events) + 1
            assert f"Epoch: {epoch:03d}/003 | Train:" in out  # right after this epoch's line
            saved = helper_train.CHECKPOINT_FILE
            done = torch.load(tmp_path / saved, weights_only=True)["epochs_done"] if (tmp_path / saved).exists() else 0
            assert done < epoch  # and before this epoch's checkpoint
            events.append("update")

    def fake_display(fig, display_id=False):
        assert display_id is True and isinstance(fig, Figure)
        assert "Batch" not in capsys.readouterr().out  # above the training log
        events.append("display")
        return Handle()

    monkeypatch.setattr(helper_train, "running_in_jupyter", lambda: True)
    monkeypatch.setattr(IPython.display, "display", fake_display)
    monkeypatch.setattr(helper_train, "LIVE_PLOT_MAX_SHARE", math.inf)  # drawing costs nothing: every epoch
    run(epochs=3, live_plot=True, checkpoint_dir=tmp_path)
    assert events == ["display", "update", "update", "update"]


def test_live_plot_that_would_slow_short_epochs_is_redrawn_only_every_few_epochs_and_after_the_last(
        monkeypatch, capsys):
    """Drawing takes 1 s here and the tiny epochs no time at all (a fake clock, so that a busy machine cannot
    change the outcome): redrawing after each would be most of the run."""
    clock, updates = FakeClock(monkeypatch), []

    class Handle:
        def update(self, fig):
            clock.now += 1.0
            updates.append(capsys.readouterr().out.count("| Train:"))  # epochs finished since the last drawing

    def slow_display(fig, display_id=False):
        clock.now += 1.0
        return Handle()

    monkeypatch.setattr(helper_train, "running_in_jupyter", lambda: True)
    monkeypatch.setattr(IPython.display, "display", slow_display)
    capsys.readouterr()
    run(epochs=4, live_plot=True)
    assert updates == [4]  # once, after the last of the 4 epochs


@pytest.mark.parametrize("stop", [KeyboardInterrupt, helper_train.TrainingDivergedError])
def test_an_interrupt_or_a_divergence_draws_the_live_plot_up_to_the_moment_it_stopped(monkeypatch, stop):
    """Throttled redraws can leave the plot epochs behind; Ctrl-C, or a loss that explodes, brings it up to date,
    unfinished epoch included (planted: no catch-up after a divergence passed every test)."""
    clock, drawn = FakeClock(monkeypatch), []  # the epoch (x) of each minibatch loss, per drawing

    class Handle:
        def update(self, fig):
            drawn.append(list(fig.axes[0].lines[0].get_xdata()))

    def slow_display(fig, display_id=False):
        clock.now += 1.0  # so slow that no epoch of this tiny run is worth a redraw
        return Handle()

    original, calls = helper_train.train_one_epoch, []

    def stopped_in_epoch_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            args[6].extend([0.5, 0.5])  # minibatch_loss_list: two batches of epoch 3 finished, then the stop
            raise stop("stopped in epoch 3")
        return original(*args, **kwargs)

    monkeypatch.setattr(helper_train, "running_in_jupyter", lambda: True)
    monkeypatch.setattr(IPython.display, "display", slow_display)
    monkeypatch.setattr(helper_train, "train_one_epoch", stopped_in_epoch_3)
    if stop is KeyboardInterrupt:
        _, (_, _, valid_acc) = run(epochs=4, live_plot=True)
        assert len(valid_acc) == 2
    else:
        with pytest.raises(stop):
            run(epochs=4, live_plot=True)
    # one drawing, after the stop, of everything, at 18 batches per epoch (planted: the validation loader's 2 batches
    # per epoch passed every test)
    assert [len(x) for x in drawn] == [2 * 18 + 2] and drawn[0][-1] == pytest.approx(37 / 18)


def test_live_plot_does_nothing_outside_jupyter(monkeypatch):
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: pytest.fail("displayed outside Jupyter"))
    assert not helper_train.running_in_jupyter()
    run(epochs=1, live_plot=True)


def test_live_plot_needs_a_notebook_kernel_not_just_ipython(monkeypatch):
    """In IPython in a terminal a figure cannot be redrawn in place: each epoch would print a new text line instead."""
    class Shell:
        pass

    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell())
    assert not helper_train.running_in_jupyter()
    Shell.kernel = object()
    assert helper_train.running_in_jupyter()


# --- compilation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("gpu", "epochs", "expected"), [
    ("NVIDIA H200", 50, False),  # 50 x 0.43 s = 21.5 s: less than the 27.3 s compilation
    ("NVIDIA H200", 64, True),  # 64 x 0.43 s = 27.52 s: just repays it
    ("NVIDIA H200", 63, False),  # 63 x 0.43 s = 27.09 s: does not repay the compilation
    ("Tesla T4", 50, False),  # never measured there
    ("NVIDIA H100 80GB HBM3", 50, False),  # 50 x 0.36 s = 18 s: less than the 31.7 s compilation
    ("NVIDIA H100 80GB HBM3", 89, True),  # 89 x 0.36 s = 32.04 s: just repays it
])
def test_compile_auto_follows_the_measurement(monkeypatch, gpu, epochs, expected):
    monkeypatch.setattr(helper_train.torch.cuda, "get_device_name", lambda device=None: gpu)
    decided, reason = helper_train.should_compile("auto", "cuda", epochs)
    assert decided is expected and reason.startswith("yes" if expected else "no")


def test_compile_auto_gives_the_h100s_measurement_as_its_reason_not_that_it_was_never_measured(monkeypatch):
    monkeypatch.setattr(helper_train.torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert helper_train.should_compile("auto", "cuda", 50) == (False, (
        "no: on the NVIDIA H100 80GB HBM3 compiling takes about 32 s and saves 0.36 s per epoch, "
        "which 50 epochs to train do not repay"))


def test_compile_auto_compiles_only_the_mixed_precision_fast_path_it_was_measured_on(monkeypatch):
    """Every measurement is of the fast path in mixed precision: a float32 run (PRECISION = "float32", or the classic
    path, which is float32) long enough to repay it there is not compiled by "auto", and says why and how to compile
    anyway; an explicit True still compiles (planted: the check dropped, as when an H200's float32 run compiled)."""
    monkeypatch.setattr(helper_train.torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert helper_train.should_compile("auto", "cuda", 100, use_amp=True)[0] is True
    assert helper_train.should_compile("auto", "cuda", 100, use_amp=False) == (False, (
        'no: COMPILE = "auto" compiles only mixed-precision runs on the fast data path, where it was measured, '
        "and this run is in float32 (set COMPILE = True to compile anyway)"))
    assert helper_train.should_compile(True, "cuda", 100, use_amp=False) == (True, "yes: COMPILE = True")
    assert helper_train.should_compile("auto", "cuda", 100, smoke_test=True, use_amp=False)[1] == (
        'no: COMPILE = "auto" never compiles in a smoke test')


def test_compile_auto_names_the_epochs_left_to_train_of_a_resumed_run(monkeypatch):
    """The notebook passes the epochs a resumed run has left; one epoch is one "epoch", not "1 epochs"."""
    monkeypatch.setattr(helper_train.torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert helper_train.should_compile("auto", "cuda", 1)[1].endswith("which 1 epoch to train do not repay")


@pytest.mark.parametrize("setting", ["auto", True, False])
def test_nothing_is_compiled_when_the_checkpoint_already_holds_every_epoch(monkeypatch, setting):
    """train_model then only evaluates, uncompiled: the notebook's line must not promise a compilation (planted:
    ``< 0`` for ``< 1`` printed "yes: COMPILE = True" for a run with nothing left to train)."""
    monkeypatch.setattr(helper_train.torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    for epochs_to_train in (0, -3):  # -3: NUM_EPOCHS lowered below the checkpoint's epochs
        assert helper_train.should_compile(setting, "cuda", epochs_to_train) == (
            False, "no: the run's checkpoint already holds every epoch, so there is nothing to train")


def test_the_epochs_in_a_checkpoint_are_read_from_the_file_train_model_writes(tmp_path):
    """The notebook weighs compilation against NUM_EPOCHS minus these; no checkpoint, or one that cannot be read
    (train_model refuses it later, with the fix), counts 0 (planted: always 0; a foreign file crashing the cell)."""
    assert helper_train.epochs_in_checkpoint(tmp_path) == 0
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    train_model(model, 2, *smoke_loaders(), optimizer, "cpu", checkpoint_dir=tmp_path)
    assert helper_train.epochs_in_checkpoint(tmp_path) == 2
    checkpoint = tmp_path / helper_train.CHECKPOINT_FILE
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # cut off, as by a full disk
    assert helper_train.epochs_in_checkpoint(tmp_path) == 0
    torch.save({"weights": torch.zeros(2)}, checkpoint)  # not a checkpoint of this tutorial
    assert helper_train.epochs_in_checkpoint(tmp_path) == 0


def test_compile_auto_asks_for_the_name_of_the_gpu_the_run_is_on(monkeypatch):
    """On a machine with two GPUs, DEVICE = "cuda:1" is measured by its own name, not the first GPU's."""
    def name_of(device=None):  # None: the current GPU, which is the first
        return {0: "NVIDIA H200", 1: "Tesla T4"}[0 if device is None else torch.device(device).index or 0]

    monkeypatch.setattr(helper_train.torch.cuda, "get_device_name", name_of)
    assert helper_train.should_compile("auto", "cuda:0", 100)[0] is True
    assert helper_train.should_compile("auto", "cuda:1", 100) == (
        False, 'no: COMPILE = "auto" and compiling was never measured on the Tesla T4')


def test_compile_auto_needs_a_saving_larger_than_the_compilation(monkeypatch):
    """Saving exactly what compiling costs gains nothing, so "auto" does not compile (20 epochs x 0.5 s = 10 s)."""
    monkeypatch.setattr(helper_train.torch.cuda, "get_device_name", lambda device=None: "Test GPU")
    monkeypatch.setattr(helper_train, "COMPILE_MEASUREMENTS", {"Test GPU": (10.0, 0.5)})
    assert helper_train.should_compile("auto", "cuda", 20)[0] is False
    assert helper_train.should_compile("auto", "cuda", 21)[0] is True


def test_the_epochs_in_a_checkpoint_are_read_safely_and_without_loading_its_tensors(tmp_path, monkeypatch):
    """weights_only=True: never unpickle code (torch before 2.6, which the requirements allow, defaulted to False);
    map_location="cpu": a GPU run's checkpoint is counted on a machine without one; mmap=True: the 400 MB of
    weights stay on disk, so the notebook's line is instant."""
    torch.save({"epochs_done": 4}, tmp_path / helper_train.CHECKPOINT_FILE)
    calls = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(helper_train.torch, "load", recording_load)
    assert helper_train.epochs_in_checkpoint(tmp_path) == 4
    assert calls == [{"map_location": "cpu", "weights_only": True, "mmap": True}]


def test_compile_setting_on_cpu_smoke_and_explicit():
    """Each reason says what applies: a CPU run that is no smoke test read "never in a smoke test" (a review)."""
    assert helper_train.should_compile("auto", "cpu", 50) == (
        False, 'no: COMPILE = "auto" compiles only on a CUDA GPU, and this run is on the cpu')
    assert helper_train.should_compile("auto", "cuda", 50, smoke_test=True) == (
        False, 'no: COMPILE = "auto" never compiles in a smoke test')
    assert helper_train.should_compile("auto", "mps", 50) == (  # Apple's GPU: never asks CUDA for its name
        False, 'no: COMPILE = "auto" compiles only on a CUDA GPU, and this run is on the mps')
    assert helper_train.should_compile(True, "cpu", 1)[0] is True
    assert helper_train.should_compile(False, "cuda", 50)[0] is False
    with pytest.raises(ValueError, match='COMPILE must be "auto", True or False'):
        helper_train.should_compile("yes", "cpu", 50)


def test_training_puts_the_model_and_each_batch_in_the_layout_the_device_policy_asks_for(monkeypatch):
    """A GPU's policy (channels-last), faked on the CPU: the model's weights and every training batch get that layout
    (planted: the model left in its layout, or the batches left in theirs, passed every test on the CPU's policy; on a
    GPU each convolution would then convert its input)."""
    policy = helper_train.device_policy
    monkeypatch.setattr(helper_train, "device_policy",
                        lambda device, use_amp=None: policy(device, use_amp)._replace(channels_last=True))
    layouts = []  # per training batch: channels-last (and not also the default layout, as a 1-channel batch is)?

    def record_layout(module, inputs):
        if module.training:
            layouts.append(inputs[0].is_contiguous(memory_format=torch.channels_last) and not inputs[0].is_contiguous())

    set_all_seeds(0)
    model = TinyNet()
    model.register_forward_pre_hook(record_layout)
    train_model(model, 1, *smoke_loaders(), torch.optim.SGD(model.parameters(), lr=0.1), "cpu")
    weight = model.features[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert layouts == [True] * 18


class Compiled(torch.nn.Module):
    """Stands in for what torch.compile returns, a wrapper around the model; records each call's training mode,
    batch shape, whether the batch is channels-last, and the CPU autocast type (None when autocast is off)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.seen = []

    def forward(self, x):
        autocast = cpu_autocast_dtype()
        self.seen.append((self.model.training, tuple(x.shape), x.is_contiguous(memory_format=torch.channels_last),
                          autocast))
        return self.model(x)


class CompilerMissing(torch.nn.Module):
    """Stands in for what torch.compile returns where compiling fails: its first call raises (no C compiler)."""

    def forward(self, x):
        raise RuntimeError("no C compiler found")


def test_compile_trial_compiles_the_training_graph_in_training_mode(monkeypatch):
    """The model arrives in evaluation mode (check_model_output just ran it): the trial's forward and backward pass
    runs in training mode, then the evaluation pass in evaluation mode, so that both graphs are compiled up front
    (planted: no model.train() before the trial)."""
    set_all_seeds(0)
    monkeypatch.setattr(helper_train.torch, "compile", Compiled)
    forward = helper_train.compile_for_training(TinyNet().eval(), smoke_loaders()[0], torch.device("cpu"),
                                                device_policy("cpu"))
    assert [training for training, *_ in forward.seen] == [True, False]


def test_a_failed_compilation_warns_at_the_line_that_called_train_model(monkeypatch):
    """The fallback's warning names the student's line (here: this test's), not a line inside helper_train
    (planted: stacklevel=1)."""
    set_all_seeds(0)
    monkeypatch.setattr(helper_train.torch, "compile", lambda model: CompilerMissing())
    model = TinyNet()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_model(model, 1, *smoke_loaders(), torch.optim.SGD(model.parameters(), lr=0.01), "cpu",
                    compile_model=True)
    failed = [w for w in caught if str(w.message).startswith("torch.compile failed")]
    assert [w.filename for w in failed] == [__file__]


@pytest.mark.parametrize("setting", [0, 1, "True", None])
def test_compile_refuses_what_is_not_auto_true_or_false(setting):
    """0 and 1 equal False and True but are neither: they took the "auto" branch (1 compiled nothing on a CPU,
    0 would compile on an H200). A review found it; setting_problem refuses them in the notebook."""
    with pytest.raises(ValueError) as error:
        helper_train.should_compile(setting, "cpu", 50)
    assert str(error.value) == f'COMPILE must be "auto", True or False, got {setting!r}.'


@pytest.mark.parametrize("compiler_works", [True, False])
def test_compile_trial_changes_nothing_and_falls_back_when_compiling_fails(monkeypatch, compiler_works):
    """The trial batch draws no random numbers of the run, leaves no gradients, weights or mode changed."""

    set_all_seeds(0)
    model = TinyNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    monkeypatch.setattr(helper_train.torch, "compile", lambda m: Compiled(m) if compiler_works else CompilerMissing())
    train_loader = smoke_loaders()[0]
    rng = torch.get_rng_state()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        forward = helper_train.compile_for_training(model.eval(), train_loader, torch.device("cpu"),
                                                    device_policy("cpu"))
    assert isinstance(forward, Compiled) if compiler_works else forward is model  # the fallback: the plain model
    assert [str(w.message).startswith("torch.compile failed (RuntimeError: no C compiler") for w in caught] == (
        [] if compiler_works else [True])
    assert torch.equal(torch.get_rng_state(), rng)
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# --- review 2: the live plot's throttle --------------------------------------


def live_plot_drawing_at(monkeypatch, clock, draw_seconds):
    """A LivePlot whose first drawing takes 1 s; the returned list gets the clock time of every redraw."""
    updates = []

    class Handle:
        def update(self, fig):
            updates.append(clock.now)
            clock.now += draw_seconds

    def display(fig, display_id=False):
        clock.now += 1.0
        return Handle()

    monkeypatch.setattr(IPython.display, "display", display)
    history = {"minibatch_loss": [2.0, 1.5], "train_acc": [50.0], "valid_acc": [40.0]}
    return helper_train.LivePlot(history, 2, None), history, updates


def test_live_plot_waits_twenty_drawing_times_from_the_last_drawing_not_the_first(monkeypatch):
    clock = FakeClock(monkeypatch)
    live, history, updates = live_plot_drawing_at(monkeypatch, clock, draw_seconds=1.0)
    for now in (25.0, 30.0, 47.0):  # drawn at 0-1 s and 25-26 s: the next drawing is due at 46 s
        clock.now = now
        live.redraw(history, last_epoch=False)
    assert updates == [25.0, 47.0]


def test_live_plot_counts_each_redrawing_from_its_end(monkeypatch):
    """Drawn at 25-26 s: the next is due 20 drawing times after 26 s, at 46 s, not at 45 s (counted from the start of
    the drawing; planted, it passed every test)."""
    clock = FakeClock(monkeypatch)
    live, history, updates = live_plot_drawing_at(monkeypatch, clock, draw_seconds=1.0)
    for now in (25.0, 45.5, 46.0):
        clock.now = now
        live.redraw(history, last_epoch=False)
    assert updates == [25.0, 46.0]


def test_live_plot_waits_longer_once_a_drawing_took_longer(monkeypatch):
    clock = FakeClock(monkeypatch)
    live, history, updates = live_plot_drawing_at(monkeypatch, clock, draw_seconds=5.0)
    for now in (25.0, 60.0, 131.0):  # the drawing at 25-30 s took 5 s: the next is due 100 s later, at 130 s
        clock.now = now
        live.redraw(history, last_epoch=False)
    assert updates == [25.0, 131.0]


def test_live_plot_counts_its_first_drawing_from_the_end_of_the_drawing(monkeypatch):
    """The first drawing takes 0-1 s: the next is due 20 drawing times after it ended, at 21 s, not at 11 s (a share
    of 10%) nor at 20 s (counted from its start). Planted, each passed every test: LIVE_PLOT_MAX_SHARE = 0.1; the
    first drawing's end taken as its start."""
    clock = FakeClock(monkeypatch)
    live, history, updates = live_plot_drawing_at(monkeypatch, clock, draw_seconds=1.0)
    for now in (15.0, 20.5, 21.0):
        clock.now = now
        live.redraw(history, last_epoch=False)
    assert updates == [21.0]


def test_live_plot_counts_building_the_figure_as_drawing_time(monkeypatch):
    """Building the figure (four curves, tight_layout) is most of a drawing: 4 s to build it and 1 s to update give
    5 s, so the next drawing is due 100 s later (planted: only the update timed passed every test)."""
    clock = FakeClock(monkeypatch)
    live, history, updates = live_plot_drawing_at(monkeypatch, clock, draw_seconds=1.0)
    plot_live_progress = helper_train.plot_live_progress

    def slow_figure(*args, **kwargs):
        clock.now += 4.0
        return plot_live_progress(*args, **kwargs)

    monkeypatch.setattr(helper_train, "plot_live_progress", slow_figure)
    for now in (50.0, 88.0, 188.0):  # drawn at 50-55 s (5 s): due at 155 s; then at 188-193 s
        clock.now = now
        live.redraw(history, last_epoch=False)
    assert updates == [54.0, 192.0]


def test_live_plot_catches_up_after_an_interrupt_in_the_first_epoch(monkeypatch):
    """Stopped before the first epoch ended: the losses so far are drawn (planted: drawn only once an epoch had
    ended passed every test, whose interrupts came later)."""
    drawn = []

    class Handle:
        def update(self, fig):
            drawn.append(list(fig.axes[0].lines[0].get_ydata()))

    monkeypatch.setattr(IPython.display, "display", lambda fig, display_id=False: Handle())
    live = helper_train.LivePlot({"minibatch_loss": [], "train_acc": [], "valid_acc": []}, 18, None)
    live.catch_up({"minibatch_loss": [2.3, 2.2], "train_acc": [], "valid_acc": []})
    assert drawn == [[2.3, 2.2]]


def test_a_second_ctrl_c_while_the_plot_catches_up_skips_the_drawing(monkeypatch):
    """The student presses stop twice: the first interrupt is being handled, the history must still come back."""
    class Handle:
        def update(self, fig):
            raise KeyboardInterrupt

    monkeypatch.setattr(IPython.display, "display", lambda fig, display_id=False: Handle())
    history = {"minibatch_loss": [2.0, 1.5], "train_acc": [50.0], "valid_acc": [40.0]}
    helper_train.LivePlot(history, 2, None).catch_up(history)


def test_the_history_records_each_epochs_own_time_not_the_time_so_far(monkeypatch, tmp_path):
    """18 steps of 10 s per epoch (a fake clock): each epoch took 180 s, the second one too."""
    clock = FakeClock(monkeypatch)
    steps_taking(monkeypatch, clock, 10.0, first_step_seconds=10.0)
    run(epochs=2, history_file=tmp_path / helper_train.HISTORY_FILE)
    history = json.loads((tmp_path / helper_train.HISTORY_FILE).read_text())
    assert history["epoch_seconds"] == [180.0, 180.0]


# --- review 3: mutation testing of the settings checks, the training step and compilation -------------------------


@pytest.mark.parametrize(("mode", "signal", "direction"), [("min", "valid_acc", "rise"),
                                                           ("max", "minibatch_loss", "fall")])
def test_a_contradicting_scheduler_mode_is_told_which_way_its_signal_should_go(mode, signal, direction):
    """Accuracy should rise, a loss fall (planted: the two words swapped, which passed every test)."""
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(torch.optim.SGD(TinyNet().parameters(), lr=0.1), mode=mode)
    with pytest.raises(ValueError, match=f"scheduler_on='{signal}', which should {direction}: "):
        helper_train.check_scheduler_mode(scheduler, signal)


def test_the_gradient_scaler_is_active_for_float16_only():
    """float16 (Colab's T4) needs it, or small gradients underflow to zero; bf16 has float32's range, float32 too."""
    cpu = torch.device("cpu")
    assert [helper_train.make_grad_scaler(cpu, dtype).is_enabled()
            for dtype in (torch.float16, torch.bfloat16, None)] == [True, False, False]


def test_a_training_step_with_the_gradient_scaler_on_is_the_plain_step_and_the_scale_adapts():
    """With the scaler on (float16 training) the weights change as in a plain SGD step: the loss is scaled before
    backward and the gradients unscaled before the update; then the scale is adapted (here: doubled after each step
    without overflow). The loss comes back detached, so the losses kept until the next logging point hold no graph."""
    set_all_seeds(0)
    model, reference = TinyNet(), TinyNet()
    reference.load_state_dict(model.state_dict())
    features, targets = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1)
    loss = helper_train.training_step(model, features, targets, torch.optim.SGD(model.parameters(), lr=0.1),
                                      torch.device("cpu"), device_policy("cpu"), scaler)
    plain = torch.optim.SGD(reference.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(reference(features), targets).backward()
    plain.step()
    assert all(torch.allclose(a, b) for a, b in zip(model.parameters(), reference.parameters(), strict=True))
    assert scaler.get_scale() == 2.0**11
    assert loss.grad_fn is None and not loss.requires_grad


def test_a_training_step_sends_its_batch_to_the_device_without_waiting():
    """The classic path's batches come from the CPU: each step copies them to the training device, without waiting
    where the loader pins its batches (the notebooks' DataLoader does not, as in the lecture: there the copy waits
    anyway; the fast path's batches are on the device already). Planted, each passed every test on this CPU-only
    machine: the copy sent to no device or made blocking; on a GPU the first would stop at once."""
    cpu = torch.device("cpu")
    model = TinyNet()
    features, targets = MovedTo(torch.randn(4, 3, 8, 8)), MovedTo(torch.tensor([0, 1, 2, 3]))
    helper_train.training_step(model, features, targets, torch.optim.SGD(model.parameters(), lr=0.1), cpu,
                               device_policy(cpu), helper_train.make_grad_scaler(cpu, None))
    assert features.calls == targets.calls == [((cpu,), {"non_blocking": True})]


class RecordsItsPrecision(torch.nn.Module):
    """A linear classifier that records the dtype its layer computed in."""

    def __init__(self):
        super().__init__()
        self.linear, self.seen = torch.nn.Linear(3 * 8 * 8, 10), []

    def forward(self, x):
        logits = self.linear(x.flatten(1))
        self.seen.append(logits.dtype)
        return logits


@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, torch.float16, None])
def test_a_training_step_computes_the_forward_pass_in_the_policys_precision(amp_dtype):
    """bf16 or float16 where the run's policy says so (mixed precision on a GPU, float16 on a T4; here autocast on the
    CPU, tiny), float32 otherwise (planted: autocast switched off in the training step passed every test; only
    evaluation was checked; so did bf16 for every mixed-precision policy, which a T4 cannot compute)."""
    cpu, model = torch.device("cpu"), RecordsItsPrecision()
    policy = helper_train.DevicePolicy(channels_last=False, amp_dtype=amp_dtype)
    loss = helper_train.training_step(model, torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]),
                                      torch.optim.SGD(model.parameters(), lr=0.1), cpu, policy,
                                      helper_train.make_grad_scaler(cpu, amp_dtype))
    assert model.seen == [amp_dtype or torch.float32] and loss.dtype == torch.float32


@pytest.mark.parametrize("use_amp", [False, True])
def test_every_accuracy_of_a_run_is_computed_in_the_runs_precision(monkeypatch, use_amp):
    """Training, validation and test accuracy in the precision the run trains in: a float32 run (use_amp=False) on a
    GPU must not be judged in mixed precision (planted, each passed every test on this CPU: use_amp dropped from the
    training or the validation accuracy, which then decides automatically: mixed precision on every GPU)."""
    calls, original = [], helper_train.compute_accuracy

    def recorded(model, loader, device, *, use_amp=None):
        calls.append(use_amp)
        return original(model, loader, device, use_amp=use_amp)

    monkeypatch.setattr(helper_train, "compute_accuracy", recorded)
    model = TinyNet()
    train_model(model, 2, *smoke_loaders(), torch.optim.SGD(model.parameters(), lr=0.01), "cpu", use_amp=use_amp)
    assert calls == [use_amp] * 5  # 2 epochs x (training, validation), then the test set


def test_compile_gives_the_time_it_saves_or_the_setting_as_its_reason(monkeypatch):
    """The notebook prints the reason: how much "auto" saves on a measured GPU, or the student's own choice."""
    monkeypatch.setattr(helper_train.torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert helper_train.should_compile("auto", "cuda", 70) == (True, "yes: on the NVIDIA H200 it saves about 3 s "
                                                                     "over 70 epochs to train")  # 70 x 0.43 - 27.3
    assert helper_train.should_compile("auto", "cuda", 100) == (True, "yes: on the NVIDIA H200 it saves about 16 s "
                                                                      "over 100 epochs to train")  # 100 x 0.43 - 27.3
    assert helper_train.should_compile(False, "cuda", 50) == (False, "no: COMPILE = False")
    assert helper_train.should_compile(True, "cpu", 50) == (True, "yes: COMPILE = True")


def test_prepare_model_returns_the_model_it_moved():
    """benchmarks/check_determinism.py trains the model that prepare_model returns."""
    model = TinyNet()
    assert helper_train.prepare_model(model, torch.device("cpu")) is model


# --- review: mutmut on helper_train (each test below failed on a mutant that passed every test before) --------------


def test_weights_that_became_nan_are_reported_for_the_epoch_without_a_batch():
    """Planted: "batch None/0" in this message, or the sentence on what the checkpoint holds always there or never,
    passed every test."""
    assert helper_train.divergence_message("The weights became NaN or infinite", 2, None, 0, 2) == (
        "The weights became NaN or infinite in epoch 3: training diverged. Likely fixes: lower the learning rate "
        "(e.g. LEARNING_RATE = 0.001), check that the inputs are normalized (values around -1..1, not 0..255), and "
        "check the labels. The checkpoint holds the last good epoch (2); the broken epoch was not saved. A run with a "
        "new learning rate is a new run: the notebook trains it from scratch in its own folder.")
    assert "The checkpoint holds" not in helper_train.divergence_message("Loss 1e9", 0, 3, 18, 0)


def test_the_live_plot_carries_the_runs_subtitle(monkeypatch):
    """The live figure names the run (and "smoke test") as the saved ones do (planted: subtitle not passed on)."""
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda fig, display_id=False: shown.append(fig))
    history = {"minibatch_loss": [2.0, 1.5], "train_acc": [50.0], "valid_acc": [40.0]}
    helper_train.LivePlot(history, 2, "run lecture-123456")
    assert shown[0].get_suptitle().endswith("\nrun lecture-123456")


def test_the_compile_trial_runs_training_and_evaluation_on_a_whole_batch_as_training_will(monkeypatch):
    """Both graphs are compiled up front from a training batch in the run's layout and precision: a trial in another
    layout or precision would compile graphs that training never uses (planted: the channels-last conversion, the
    mixed-precision type or the batch itself dropped passed every test, all on the CPU's float32 policy)."""
    monkeypatch.setattr(helper_train.torch, "compile", Compiled)
    policy = device_policy("cpu")._replace(channels_last=True, amp_dtype=torch.float16)  # a T4's policy
    train_loader = smoke_loaders()[0]
    compiled = helper_train.compile_for_training(TinyNet(), train_loader, torch.device("cpu"), policy)
    batch = tuple(next(iter(train_loader))[0].shape)
    assert compiled.seen == [(True, batch, True, torch.float16), (False, batch, True, torch.float16)]


# --- review 6: the GPU's branches, stood in for on this CPU-only machine --------------------------------------------


def test_a_run_in_float16_scales_its_gradients(monkeypatch):
    """A T4 trains in float16, whose small gradients underflow to zero without the gradient scaler (planted: the
    scaler made only for use_amp=True, so off for the notebook's automatic choice, passed every CPU test). Here the
    policy of a T4 stands in: float16 unless use_amp=False."""
    scalers, make_grad_scaler = [], helper_train.make_grad_scaler
    monkeypatch.setattr(helper_train, "device_policy", lambda device, use_amp=None: helper_train.DevicePolicy(
        channels_last=False, amp_dtype=None if use_amp is False else torch.float16))
    monkeypatch.setattr(helper_train, "make_grad_scaler",
                        lambda device, amp_dtype: scalers.append(make_grad_scaler(device, amp_dtype)) or scalers[-1])
    model = TinyNet()
    train_model(model, 1, *smoke_loaders(), torch.optim.SGD(model.parameters(), lr=0.01), "cpu")
    assert [scaler.is_enabled() for scaler in scalers] == [True]


def test_the_compile_trial_on_a_gpu_sends_its_batch_there_and_spares_the_gpus_random_numbers(monkeypatch):
    """The trial batch must go to the GPU (planted: not sent, so the trial failed and every run silently trained
    uncompiled on the classic path), and its random numbers are drawn aside on the GPU too (planted: fork_rng of the
    CPU only, so dropout on the GPU started from another state than without compilation). Both passed every CPU test.
    torch.compile and fork_rng are stood in for."""
    forked, gpu = [], torch.device("cuda", 0)

    @contextlib.contextmanager
    def fork_rng(devices=None, **kwargs):
        forked.append(devices)
        yield

    monkeypatch.setattr(helper_train.torch, "compile", Compiled)
    monkeypatch.setattr(helper_train.torch.random, "fork_rng", fork_rng)
    batch = MovedTo(torch.randn(4, 3, 8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # autocast("cuda") on a machine without CUDA
        compiled = helper_train.compile_for_training(TinyNet(), [(batch, torch.zeros(4, dtype=torch.long))], gpu,
                                                     helper_train.DevicePolicy(False, None))
    assert isinstance(compiled, Compiled)
    assert forked == [[gpu]] and batch.calls == [((gpu,), {})]


@pytest.mark.parametrize("amp_dtype, expected", [(torch.float16, "float16"), (torch.bfloat16, "bfloat16"),
                                                 (None, "float32")])
def test_the_history_records_the_precision_the_run_trained_in(amp_dtype, expected):
    """A T4's run is float16, not bf16 (planted: "bfloat16" for every mixed-precision run passed every test)."""
    info = helper_train.make_run_info(None, None, {}, torch.device("cuda", 0), amp_dtype, 10, 2)
    assert info["precision"] == expected and info["device"] == "cuda:0"


def test_the_check_for_finite_weights_reads_the_device_once(host_reads):
    """After every epoch: one read for all parameters (planted: a read per parameter tensor, 32 waits for the GPU per
    epoch for VGG-16, passed every test)."""
    helper_train.check_finite_weights(TinyNet(), 0, 0)
    assert len(host_reads) == 1


def test_training_on_without_a_run_record_is_allowed_as_in_the_lecture():
    """Without checkpoint_dir or history_file nothing records a run, so a second train_model call trains the same
    model on, as calling the lecture's function twice does; only a recorded run must start from scratch (planted:
    the fresh-start check made also without a record)."""
    set_all_seeds(0)
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    train_model(model, 1, *smoke_loaders(), optimizer, "cpu")
    before = [p.detach().clone() for p in model.parameters()]
    losses, train_acc, valid_acc = train_model(model, 1, *smoke_loaders(), optimizer, "cpu")
    assert len(valid_acc) == 1 and len(losses) == len(smoke_loaders()[0])
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
