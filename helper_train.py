"""Training the VGG-16 tutorial's model: the lecture's ``train_model`` loop.

``train_model`` reads like the lecture's loop. Everything extra a real run needs is
one call to a small function defined above it, whose name says what it does.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import torch
import torch.nn.functional as F

from helper_evaluation import autocast_dtype, compute_accuracy

SCHEDULER_SIGNALS = ("valid_acc", "minibatch_loss")


def check_training_settings(num_epochs: int, scheduler_on: str) -> None:
    """Reject settings that would fail (or silently do nothing) before any training starts."""
    if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 1:
        raise ValueError(f"num_epochs must be a whole number of at least 1, got {num_epochs!r}.")
    if scheduler_on not in SCHEDULER_SIGNALS:
        raise ValueError(
            f"scheduler_on must be one of {SCHEDULER_SIGNALS} (the value the scheduler watches), got {scheduler_on!r}."
        )


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
) -> tuple[list[float], list[float], list[float]]:
    """Train ``model`` and return ``(minibatch_loss_list, train_acc_list, valid_acc_list)``.

    As in the lecture: after every epoch the accuracy on the training and validation
    sets is printed, the scheduler (if any) is stepped on ``scheduler_on`` (the
    validation accuracy, or the last minibatch loss), and at the end the test accuracy
    is printed. ``use_amp`` (None: automatic, on for CUDA only) picks mixed precision.
    """
    check_training_settings(num_epochs, scheduler_on)
    device = torch.device(device)
    amp_dtype = autocast_dtype(device, use_amp)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    prepare_model(model, device)
    minibatch_loss_list, train_acc_list, valid_acc_list = [], [], []
    start_time = time.perf_counter()

    for epoch in range(num_epochs):
        model.train()
        for batch_idx, (features, targets) in enumerate(train_loader):
            loss = training_step(model, features, targets, optimizer, device, amp_dtype, scaler)
            minibatch_loss_list.append(loss.item())
            if not batch_idx % logging_interval:
                print(
                    f"Epoch: {epoch + 1:03d}/{num_epochs:03d} "
                    f"| Batch {batch_idx:04d}/{len(train_loader):04d} "
                    f"| Loss: {minibatch_loss_list[-1]:.4f}"
                )

        train_acc = compute_accuracy(model, train_loader, device, use_amp=use_amp)
        valid_acc = compute_accuracy(model, valid_loader, device, use_amp=use_amp)
        print(f"Epoch: {epoch + 1:03d}/{num_epochs:03d} | Train: {train_acc:.2f}% | Validation: {valid_acc:.2f}%")
        train_acc_list.append(train_acc)
        valid_acc_list.append(valid_acc)
        print(f"Time elapsed: {(time.perf_counter() - start_time) / 60:.2f} min")

        if scheduler is not None:
            step_scheduler(scheduler, scheduler_on, valid_acc, minibatch_loss_list[-1])

    print(f"Total Training Time: {(time.perf_counter() - start_time) / 60:.2f} min")
    test_acc = compute_accuracy(model, test_loader, device, use_amp=use_amp)
    print(f"Test accuracy {test_acc:.2f}%")
    return minibatch_loss_list, train_acc_list, valid_acc_list
