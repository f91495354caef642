"""Training the VGG-16 tutorial's model: the lecture's ``train_model`` loop, made safe for long runs.

``train_model`` (at the bottom) reads like the lecture's loop. Everything extra a real
run needs is one call to a small function defined above it, whose name says what it does:

1. settings checks that fail before any work starts;
2. one training step, with mixed precision on CUDA;
3. checkpoints: the random-number state, an atomic save every epoch, a resume that
   refuses a checkpoint from another model or a damaged file;
4. guards: a non-finite loss stops the run at once, an interrupt returns what was learned,
   a run stuck at chance level after a few epochs gets a warning;
5. the live plot, redrawn in place after every epoch in Jupyter.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from helper_evaluation import autocast_dtype, compute_accuracy, predict_batches, save_atomically
from helper_plotting import plot_live_progress

SCHEDULER_SIGNALS = ("valid_acc", "minibatch_loss")
CHECKPOINT_FILE = "checkpoint.pt"
BEST_MODEL_FILE = "best_model.pt"
INTERRUPTED_MODEL_FILE = "interrupted_model.pt"


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite: training cannot recover from that by itself."""


class TrainingStalledWarning(UserWarning):
    """After a few epochs the model still guesses: accuracy at chance level, loss at ln(num_classes)."""


# ---------------------------------------------------------------------------
# 1. Settings checks
# ---------------------------------------------------------------------------


def check_training_settings(num_epochs: int, scheduler_on: str) -> None:
    """Reject settings that would fail (or silently do nothing) before any training starts."""
    if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 1:
        raise ValueError(f"num_epochs must be a whole number of at least 1, got {num_epochs!r}.")
    if scheduler_on not in SCHEDULER_SIGNALS:
        raise ValueError(
            f"scheduler_on must be one of {SCHEDULER_SIGNALS} (the value the scheduler watches), "
            f"got {scheduler_on!r}."
        )


def check_model_output(model: torch.nn.Module, data_loader: Iterable, device, num_classes: int | None) -> int:
    """Run one batch through the model, check that it outputs one score per class, and return that number.

    A model built for the wrong number of classes either crashes deep inside the loss
    (too few outputs) or trains while wasting outputs (too many); both are caught here.
    """
    _, logits, targets = next(iter(predict_batches(model, data_loader, device)))
    width = logits.shape[-1]
    if num_classes is not None and width != num_classes:
        raise ValueError(
            f"The model outputs {width} scores per image, but the data have {num_classes} classes. "
            f"Build the model with num_classes={num_classes}."
        )
    if int(targets.max()) >= width:
        raise ValueError(
            f"The model outputs {width} scores per image, but a label in the data is {int(targets.max())}. "
            "Build the model with one output per class (num_classes=10 for CIFAR-10)."
        )
    return width


# ---------------------------------------------------------------------------
# 2. One training step
# ---------------------------------------------------------------------------


def make_grad_scaler(device: torch.device, amp_dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """The gradient scaler for ``amp_dtype``: active for float16 (small gradients would underflow), else a no-op."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)


def training_step(
    model: torch.nn.Module,
    features: torch.Tensor,
    targets: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    scaler: torch.amp.GradScaler,
) -> torch.Tensor:
    """One forward and backward pass and one optimizer step; returns the (detached) loss.

    With ``amp_dtype`` set, the forward pass runs in mixed precision; for float16 the
    gradient scaler keeps small gradients from underflowing (bf16 does not need it,
    and then the scaler is a no-op).
    """
    features = features.to(device, non_blocking=True)
    targets = targets.to(device, non_blocking=True)
    if device.type == "cuda":
        features = features.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        logits = model(features)
        loss = F.cross_entropy(logits, targets)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def check_finite_loss(loss: float, epoch: int, batch_idx: int, num_batches: int) -> None:
    """Stop at the first NaN or infinite loss, saying where it happened and what usually causes it."""
    if not math.isfinite(loss):
        raise TrainingDivergedError(
            f"The loss became {loss} in epoch {epoch + 1}, batch {batch_idx}/{num_batches}: training diverged. "
            "Likely fixes: lower the learning rate (e.g. LEARNING_RATE = 0.001), check that the inputs are "
            "normalized (values around -1..1, not 0..255), and check the labels. "
            "The checkpoint of the last complete epoch was not touched."
        )


def step_scheduler(scheduler, scheduler_on: str, valid_acc: float, minibatch_loss: float) -> None:
    """Step the scheduler on the value the lecture chose, and say when the learning rate drops."""
    before = [group["lr"] for group in scheduler.optimizer.param_groups]
    scheduler.step(valid_acc if scheduler_on == "valid_acc" else minibatch_loss)
    after = [group["lr"] for group in scheduler.optimizer.param_groups]
    if after != before:
        print(f"Learning rate lowered from {before[0]:g} to {after[0]:g}")


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move the model to the device; on CUDA store its weights channels-last (faster convolutions)."""
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


# ---------------------------------------------------------------------------
# 3. Checkpoints
# ---------------------------------------------------------------------------


def capture_rng_state() -> dict:
    """Python's, NumPy's, torch's and CUDA's random-number state, as plain tensors and numbers.

    The data order and the random crops of the next epoch are drawn from torch's state,
    so restoring it at an epoch boundary replays the same data order.
    """
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict) -> None:
    """Undo ``capture_rng_state``: the run continues with the same random numbers."""
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, model, optimizer, scheduler, scaler, epochs_done: int, history: dict) -> None:
    """Write everything needed to continue the run, atomically (a kill mid-save keeps the old file)."""
    checkpoint = {
        "epochs_done": epochs_done,
        "history": history,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict(),
        "rng": capture_rng_state(),
    }
    save_atomically(path, lambda temporary: torch.save(checkpoint, temporary))


def load_checkpoint(path: Path, model, optimizer, scheduler, scaler) -> tuple[int, dict]:
    """Restore a run from ``path``; return (epochs done, history). Only tensors and numbers are unpickled."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        epochs_done, history = int(checkpoint["epochs_done"]), checkpoint["history"]
    except Exception as error:  # truncated, corrupt or foreign file: torch raises many kinds
        raise RuntimeError(
            f"The checkpoint '{path}' is damaged or not a checkpoint of this tutorial ({error}). "
            "It was left as it is: delete or rename it to start training from scratch."
        ) from error
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        raise RuntimeError(
            f"The checkpoint '{path}' was saved from a different model, so it cannot continue this one "
            f"({str(error).splitlines()[0]}). Use another checkpoint folder, or delete this checkpoint "
            "to start from scratch."
        ) from error
    optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None and checkpoint["scheduler"] is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    scaler.load_state_dict(checkpoint["scaler"])
    restore_rng_state(checkpoint["rng"])
    return epochs_done, history


def save_best_model(path: Path, model, valid_acc_list: list[float]) -> None:
    """Keep the weights of the epoch with the highest validation accuracy so far in their own file."""
    if valid_acc_list[-1] >= max(valid_acc_list):
        save_atomically(path, lambda temporary: torch.save(model.state_dict(), temporary))


# ---------------------------------------------------------------------------
# 4. Watching the run
# ---------------------------------------------------------------------------


def warn_if_stalled(epoch_losses: list[float], valid_acc: float, num_classes: int, epoch: int) -> None:
    """Warn when the model still guesses: validation accuracy within 2 points of chance, loss within 2% of ln(C).

    This is the symptom users of VGG-16 notebooks report most ("loss stuck at 2.303,
    accuracy 10%"). Waiting longer rarely helps; the usual causes are listed.
    """
    chance, guessing_loss = 100.0 / num_classes, math.log(num_classes)
    mean_loss = sum(epoch_losses) / len(epoch_losses)
    if abs(valid_acc - chance) <= 2.0 and abs(mean_loss - guessing_loss) <= 0.02 * guessing_loss:
        with warnings.catch_warnings():
            warnings.simplefilter("always", TrainingStalledWarning)  # also on a re-run of the same cell
            warnings.warn(
                f"After {epoch + 1} epochs the model is still guessing: validation accuracy {valid_acc:.2f}% "
                f"(chance: {chance:.0f}%), loss {mean_loss:.3f} (guessing: ln({num_classes}) = {guessing_loss:.3f}). "
                "Consider stopping and checking: the learning rate (too high or too low), the weight "
                "initialization, the input normalization, and the data and labels (shuffled? matching?).",
                TrainingStalledWarning,
                stacklevel=3,
            )


def running_in_jupyter() -> bool:
    """True inside a Jupyter (or Colab) kernel, where figures can be shown and updated inline."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


def refresh_live_plot(display_handle, history: dict, iter_per_epoch: int):
    """Draw the curves so far into one inline output, replacing the previous drawing; return its handle."""
    from IPython.display import display

    fig = plot_live_progress(history["minibatch_loss"], history["train_acc"], history["valid_acc"], iter_per_epoch)
    if display_handle is None:
        return display(fig, display_id=True)
    display_handle.update(fig)
    return display_handle


# ---------------------------------------------------------------------------
# 5. The loop
# ---------------------------------------------------------------------------


def train_one_epoch(model, train_loader, optimizer, device, amp_dtype, scaler, epoch, num_epochs,
                    logging_interval, minibatch_loss_list) -> None:
    """The lecture's inner loop: one pass over the training batches, logging every few batches."""
    model.train()
    for batch_idx, (features, targets) in enumerate(train_loader):
        loss = training_step(model, features, targets, optimizer, device, amp_dtype, scaler).item()
        check_finite_loss(loss, epoch, batch_idx, len(train_loader))
        minibatch_loss_list.append(loss)
        if not batch_idx % logging_interval:
            print(f"Epoch: {epoch + 1:03d}/{num_epochs:03d} "
                  f"| Batch {batch_idx:04d}/{len(train_loader):04d} "
                  f"| Loss: {loss:.4f}")


def resume_if_possible(checkpoint: Path | None, resume: bool, model, optimizer, scheduler, scaler,
                       history: dict, num_epochs: int) -> int:
    """Load ``checkpoint`` into the run if asked and present; return the number of epochs already done."""
    if checkpoint is None or not resume or not checkpoint.exists():
        return 0
    epochs_done, saved = load_checkpoint(checkpoint, model, optimizer, scheduler, scaler)
    for name, values in saved.items():
        history[name].extend(values)
    if epochs_done < num_epochs:
        print(f"Resuming from epoch {epochs_done + 1} (checkpoint '{checkpoint}'; delete it to start over)")
    else:
        print(f"The checkpoint '{checkpoint}' already holds all {epochs_done} epochs: nothing left to train "
              "(delete it to start over, or raise num_epochs to train longer).")
    return epochs_done


def train_model(
    model: torch.nn.Module,
    num_epochs: int,
    train_loader: Iterable,
    valid_loader: Iterable,
    test_loader: Iterable,
    optimizer: torch.optim.Optimizer,
    device: torch.device | str,
    logging_interval: int = 50,
    scheduler=None,
    scheduler_on: str = "valid_acc",
    *,
    use_amp: bool | None = None,
    num_classes: int | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    live_plot: bool = False,
    stall_check_epoch: int | None = 2,
) -> tuple[list[float], list[float], list[float]]:
    """Train ``model`` and return ``(minibatch_loss_list, train_acc_list, valid_acc_list)``.

    As in the lecture: after every epoch the accuracy on the training and validation
    sets is printed, the scheduler (if any) is stepped on ``scheduler_on`` (the
    validation accuracy, or the last minibatch loss), and at the end the test accuracy
    is printed. New, all optional:

    - ``use_amp``: mixed precision (None: automatic, on for CUDA only).
    - ``num_classes``: checked against the model's output width before training.
    - ``checkpoint_dir``: save a checkpoint there after every epoch (and the best
      validation weights); with ``resume=True`` an existing checkpoint is continued.
    - ``live_plot``: in Jupyter, redraw the loss and accuracy curves after every epoch.
    - ``stall_check_epoch``: after this epoch, warn if the model is still guessing (None: never).
    - Interrupting (Ctrl-C, Jupyter's stop button) returns the history so far; a NaN
      or infinite loss raises ``TrainingDivergedError`` at once.
    """
    check_training_settings(num_epochs, scheduler_on)
    device = torch.device(device)
    amp_dtype = autocast_dtype(device, use_amp)
    scaler = make_grad_scaler(device, amp_dtype)
    prepare_model(model, device)
    num_classes = check_model_output(model, valid_loader, device, num_classes)
    history = {"minibatch_loss": [], "train_acc": [], "valid_acc": []}
    minibatch_loss_list, train_acc_list, valid_acc_list = history.values()
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    first_epoch = resume_if_possible(checkpoint, resume, model, optimizer, scheduler, scaler, history, num_epochs)
    live_display = None
    start_time = time.perf_counter()

    for epoch in range(first_epoch, num_epochs):
        try:
            train_one_epoch(model, train_loader, optimizer, device, amp_dtype, scaler, epoch, num_epochs,
                            logging_interval, minibatch_loss_list)
            train_acc = compute_accuracy(model, train_loader, device, use_amp=use_amp)
            valid_acc = compute_accuracy(model, valid_loader, device, use_amp=use_amp)
        except KeyboardInterrupt:
            report_interrupt(model, checkpoint, epoch, num_epochs)
            return minibatch_loss_list, train_acc_list, valid_acc_list
        print(f"Epoch: {epoch + 1:03d}/{num_epochs:03d} | Train: {train_acc:.2f}% | Validation: {valid_acc:.2f}%")
        train_acc_list.append(train_acc)
        valid_acc_list.append(valid_acc)
        print(f"Time elapsed: {(time.perf_counter() - start_time) / 60:.2f} min")
        if scheduler is not None:
            step_scheduler(scheduler, scheduler_on, valid_acc, minibatch_loss_list[-1])
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, scheduler, scaler, epoch + 1, history)
            save_best_model(checkpoint.parent / BEST_MODEL_FILE, model, valid_acc_list)
        if epoch + 1 == stall_check_epoch:
            warn_if_stalled(minibatch_loss_list[-len(train_loader):], valid_acc, num_classes, epoch)
        if live_plot and running_in_jupyter():
            live_display = refresh_live_plot(live_display, history, len(train_loader))

    print(f"Total Training Time: {(time.perf_counter() - start_time) / 60:.2f} min")
    test_acc = compute_accuracy(model, test_loader, device, use_amp=use_amp)
    print(f"Test accuracy {test_acc:.2f}%")
    return minibatch_loss_list, train_acc_list, valid_acc_list


def report_interrupt(model, checkpoint: Path | None, epoch: int, num_epochs: int) -> None:
    """After Ctrl-C: save the current weights, and say what was completed and how to continue."""
    print(f"\nTraining interrupted during epoch {epoch + 1}/{num_epochs} after {epoch} complete epoch(s). "
          "The history so far is returned, so the plots below still work.")
    if checkpoint is not None:
        saved = save_atomically(checkpoint.parent / INTERRUPTED_MODEL_FILE,
                                lambda temporary: torch.save(model.state_dict(), temporary))
        print(f"The weights at the moment of the interrupt are in '{saved}'. "
              f"Run the training cell again to resume from epoch {epoch + 1} (checkpoint '{checkpoint}').")
