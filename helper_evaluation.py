"""Evaluating the VGG-16 tutorial's models: seeds, determinism, and one prediction loop.

Read top to bottom:

1. ``set_all_seeds``, ``set_deterministic`` and ``make_pooling_deterministic``:
   reproducible runs, on CPU and CUDA.
2. ``device_problem``, ``choose_device``, ``device_policy`` and ``predict_batches``: which device, and the one
   loop that runs a model over a loader (mixed precision and channels-last on CUDA). Accuracy, the confusion
   matrix and the example grids are all computed from it.
3. ``compute_accuracy`` and ``compute_confusion_matrix``: the lecture's functions.
4. Reading the confusion matrix: per-class accuracy and the most confused pairs.
5. ``print_layer_shapes``: each block's output shape, found with forward hooks.
6. ``save_atomically``: the one function that writes result files, so that a crash
   mid-write never leaves half a file behind; ``remove_stale_temporary_files`` clears
   what a killed process could not.
7. ``load_run_histories`` and ``print_run_table``: your runs side by side, one folder
   per run under ``RESULTS_DIR``.
8. ``classify_image``: the model's top guesses for a picture of your own
   (``save_uploaded_picture``: one chosen in Colab's upload dialog).

This module never loads the data set: it receives loaders (and, for section 8, one
picture). It reads only the runs' own history files.
"""

from __future__ import annotations

import io
import json
import numbers
import operator
import os
import random
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

# ---------------------------------------------------------------------------
# 1. Seeds and determinism
# ---------------------------------------------------------------------------


def set_all_seeds(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU), so weights and data order repeat.

    ``seed`` may be any integer type: NumPy's too, which Python's ``random.seed`` refuses.
    """
    seed = operator.index(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def set_deterministic() -> None:
    """Ask PyTorch for bit-identical results run to run, at some cost in speed.

    cuDNN normally benchmarks several convolution algorithms and picks the fastest,
    and some of those use atomic additions whose order varies between runs. This turns
    that off, makes cuBLAS use a fixed workspace (it needs ``CUBLAS_WORKSPACE_CONFIG``
    set before its first call), and makes PyTorch raise on any operation that has no
    deterministic implementation instead of silently varying.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True)


class DeterministicAdaptiveAvgPool2d(torch.nn.Module):
    """``AdaptiveAvgPool2d`` computed as two small matrix products, so that its backward is deterministic.

    On CUDA, the backward pass of ``AdaptiveAvgPool2d`` adds gradients with atomic
    operations and PyTorch refuses it under ``torch.use_deterministic_algorithms(True)``.
    Adaptive average pooling is a fixed linear map, separable into rows and columns:
    output = R @ x @ C^T, where row i of R averages input rows floor(i*H/h) to
    ceil((i+1)*H/h) - 1, exactly PyTorch's bins. Matrix products have deterministic
    gradients, so the result is the same function with a reproducible backward.
    """

    def __init__(self, output_size: int | tuple[int | None, int | None]):
        super().__init__()
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)

    @staticmethod
    def pooling_matrix(in_size: int, out_size: int, like: torch.Tensor) -> torch.Tensor:
        """(out_size, in_size) matrix whose row i averages the inputs of adaptive bin i."""
        matrix = torch.zeros(out_size, in_size, dtype=like.dtype, device=like.device)
        for i in range(out_size):
            start, end = (i * in_size) // out_size, -((-(i + 1) * in_size) // out_size)
            matrix[i, start:end] = 1.0 / (end - start)
        return matrix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = self.output_size
        height = x.shape[-2] if height is None else height  # a size of None keeps the input's, as in PyTorch's
        width = x.shape[-1] if width is None else width
        rows = self.pooling_matrix(x.shape[-2], height, x)
        cols = self.pooling_matrix(x.shape[-1], width, x)
        return rows @ x @ cols.T

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


def make_pooling_deterministic(model: torch.nn.Module) -> int:
    """Replace every ``AdaptiveAvgPool2d`` in ``model`` with ``DeterministicAdaptiveAvgPool2d``; return how many.

    Found by module type, not by position, so it works for any model. Call it after
    building the model when ``set_deterministic()`` is on and the model runs on CUDA, and
    for Apple's MPS, which has no kernel for adaptive average pooling whose sizes do not
    divide (the notebooks' 2x2 feature map pooled to 3x3; at least PyTorch 2.11 to 2.14,
    pytorch/pytorch#96056). It holds no weights, so checkpoints load into either model.
    """
    replaced = 0
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, torch.nn.AdaptiveAvgPool2d):
                setattr(parent, name, DeterministicAdaptiveAvgPool2d(child.output_size))
                replaced += 1
    return replaced


def needs_deterministic_pooling(device: torch.device | str, deterministic: bool) -> bool:
    """Whether the model cell must call ``make_pooling_deterministic``: on Apple's MPS, and on CUDA when deterministic.

    MPS cannot compute the 2x2-to-3x3 adaptive pooling at all; CUDA computes its backward
    with atomic additions, whose order (and so the last bits) changes from run to run. The
    device must be the one the settings cell chose: the parameters cell's "auto", left by
    running the parameters cell and then this one, is refused with the cells to run.
    """
    check_device_chosen(device)
    device_type = torch.device(device).type
    return device_type == "mps" or (deterministic and device_type == "cuda")


# ---------------------------------------------------------------------------
# 2. One prediction loop
# ---------------------------------------------------------------------------


def device_problem(setting: str | torch.device) -> str | None:
    """What is wrong with the notebooks' ``DEVICE`` setting on this machine, and the fix; None if it can run.

    The lecture's code hard-coded ``"cuda:1"``, the second GPU of its machine, which fails on
    Colab's single GPU and on every laptop: a device this machine lacks is named with its fix.
    """
    if setting == "auto":
        return None
    try:
        device = torch.device(setting)
    except (RuntimeError, TypeError):
        return 'not a device: use "auto", "cpu", "cuda", "cuda:0" or "mps".'
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return ('this machine has no CUDA GPU that PyTorch can use. Set DEVICE = "auto" (or "cpu"); on Colab, '
                    'choose Runtime -> Change runtime type -> GPU first.')
        if device.index is not None and device.index >= count:
            return (f'this machine has {count} CUDA GPU(s), numbered from 0 to {count - 1}. Set DEVICE = "auto" '
                    'or "cuda:0".')
    elif device.type == "mps" and not torch.backends.mps.is_available():
        return 'Apple\'s MPS is not available here. Set DEVICE = "auto".'
    elif device.type not in ("cpu", "cuda", "mps"):
        return 'the notebooks run on "cpu", "cuda" or "mps"; use "auto" to choose.'
    return None


def choose_device(setting: str | torch.device = "auto") -> torch.device:
    """The device that the notebooks' ``DEVICE`` setting names: "auto" picks CUDA, else Apple's MPS, else the CPU.

    A named device that this machine does not have is refused, with the fix (``device_problem``).
    """
    if (problem := device_problem(setting)) is not None:
        raise ValueError(f"DEVICE = {setting!r}: {problem}")
    if setting == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    return torch.device(setting)


RERUN_CELLS = ("In the notebook, run the cells above the training cell again, from the settings cell down "
               "(Jupyter: select the training cell, then Run > Run All Above Selected Cell; "
               "Colab: Runtime > Run before), then the training cell.")


def check_device_chosen(device, run_settings: Mapping[str, object] | None = None) -> None:
    """Refuse the parameters cell's ``DEVICE`` text where the device that the settings cell chose belongs.

    The settings cell turns ``DEVICE`` ("auto", "cpu", "cuda:0") into a ``torch.device`` and
    builds ``RUN_SETTINGS``; the parameters cell sets ``DEVICE`` back to text. So text next to
    ``run_settings`` means that the parameters cell ran again after the settings cell: the
    settings, data, model and folder still hold the old values, and training them would
    silently ignore the change. "auto" is refused everywhere: torch's own error for it lists
    every device type there is and not the cell to run.
    """
    if not isinstance(device, str):
        return
    if device.strip().lower() == "auto":
        raise ValueError(
            "device='auto' is a setting, not a device: the settings cell turns it into one (choose_device), "
            "and it has not run since the parameters cell. " + RERUN_CELLS
        )
    if run_settings is not None:
        raise ValueError(
            f"device={device!r} is the parameters cell's DEVICE as text, not the torch.device that the settings "
            "cell makes of it (choose_device): the parameters cell has run again since the settings cell, so "
            "RUN_SETTINGS, the data, the model, the optimizer and the run's folder still have the settings of "
            f"before, and a setting you changed would be ignored. {RERUN_CELLS} (Outside the notebooks: pass "
            f"device=torch.device({device!r}).)"
        )


class DevicePolicy(NamedTuple):
    """How tensors are laid out and computed on one device: decided in one place, used everywhere."""

    channels_last: bool  # NHWC layout: what fast GPU convolutions want; on a CPU the conversion only costs
    amp_dtype: torch.dtype | None  # the mixed-precision type, or None for float32


def device_policy(device: torch.device | str, use_amp: bool | None = None) -> DevicePolicy:
    """The layout and precision that training, evaluation and the on-device loader all use on ``device``."""
    device = torch.device(device)
    return DevicePolicy(channels_last=device.type == "cuda", amp_dtype=autocast_dtype(device, use_amp))


def autocast_dtype(device: torch.device | str, use_amp: bool | None = None) -> torch.dtype | None:
    """The mixed-precision type for ``device``: bf16 on recent GPUs, float16 on older ones (T4), None on CPU/MPS.

    ``use_amp=None`` decides automatically (on for CUDA only: bf16 autocast on a CPU
    is many times slower than float32); ``False`` turns it off; ``True`` forces it on CUDA.
    """
    device = torch.device(device)
    if use_amp is False or device.type != "cuda":
        return None
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def forward_in_eval_mode(model: torch.nn.Module, features: torch.Tensor, policy: DevicePolicy) -> torch.Tensor:
    """The model's float32 outputs for ``features``, computed in eval mode, inference mode and ``policy``'s precision.

    Eval and inference mode are on only for this forward pass: the model's train/eval
    mode is restored before returning, so whatever the caller does next (a loop body,
    the rest of a training epoch) runs in the mode the caller chose. The outputs are
    copied out of inference mode (a few numbers per image), detached from any graph,
    so the caller may change them in place like any other tensor.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), torch.autocast(
            features.device.type, dtype=policy.amp_dtype or torch.float32, enabled=policy.amp_dtype is not None
        ):
            logits = model(features).float()
    finally:
        model.train(was_training)
    return logits.detach().clone()


def predict_batches(
    model: torch.nn.Module, data_loader: Iterable, device: torch.device | str, *, use_amp: bool | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(features, logits, targets)`` for every batch; the model runs in eval mode without gradients.

    Layout and precision come from ``device_policy`` (channels-last and mixed precision
    on CUDA, float32 elsewhere or with ``use_amp=False``). Only the forward pass runs in
    eval and inference mode (see ``forward_in_eval_mode``): between batches the model is
    in the mode it was in, so evaluating in the middle of training (as ``train_model``
    does every epoch), or stopping the loop early, never switches dropout off for good.
    """
    device = torch.device(device)
    policy = device_policy(device, use_amp)
    for features, targets in data_loader:
        features = features.to(device, non_blocking=True)
        if policy.channels_last:
            features = features.contiguous(memory_format=torch.channels_last)
        yield features, forward_in_eval_mode(model, features, policy), targets.to(device)


# ---------------------------------------------------------------------------
# 3. The lecture's evaluation functions
# ---------------------------------------------------------------------------


def compute_accuracy(
    model: torch.nn.Module, data_loader: Iterable, device: torch.device | str, *, use_amp: bool | None = None
) -> float:
    """Percentage of correctly classified images in ``data_loader`` (0-100, a Python float).

    The count of correct predictions stays on the device until the end: reading it
    after every batch would make the CPU wait for the GPU each time.
    """
    correct, total = 0, 0
    for _, logits, targets in predict_batches(model, data_loader, device, use_amp=use_amp):
        correct = correct + (logits.argmax(dim=1) == targets).sum()
        total += targets.numel()
    if total == 0:
        raise ValueError("The data loader yielded no images, so there is no accuracy to compute.")
    return 100.0 * int(correct) / total


def check_labels(targets: torch.Tensor, num_classes: int) -> None:
    """Refuse labels outside 0 .. num_classes - 1: they would land in another class's cell, or in none."""
    if not len(targets):
        return
    lowest, highest = int(targets.min()), int(targets.max())  # one read each, on a GPU too
    if not (0 <= lowest and highest < num_classes):
        raise ValueError(f"The labels must be 0 to {num_classes - 1}, one for each of the model's {num_classes} "
                         f"outputs, but this batch has labels from {lowest} to {highest}.")


def compute_confusion_matrix(
    model: torch.nn.Module, data_loader: Iterable, device: torch.device | str, *, use_amp: bool | None = None
) -> np.ndarray:
    """Count (true label, predicted label) pairs: rows are true labels, columns predictions.

    The matrix is always num_classes x num_classes (the width of the model's output),
    so a class that never occurs still has its row and column, filled with zeros.
    """
    matrix = None
    for _, logits, targets in predict_batches(model, data_loader, device, use_amp=use_amp):
        num_classes = logits.shape[1]
        check_labels(targets, num_classes)
        pairs = (targets.long() * num_classes + logits.argmax(dim=1)).cpu()
        counts = torch.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
        matrix = counts if matrix is None else matrix + counts
    if matrix is None:
        raise ValueError("The data loader yielded no images, so there is no confusion matrix to compute.")
    return matrix.numpy()


# ---------------------------------------------------------------------------
# 4. Reading the confusion matrix
# ---------------------------------------------------------------------------


def per_class_accuracy(conf_mat: np.ndarray) -> np.ndarray:
    """Percentage of each true class predicted correctly (the diagonal over the row sums); NaN for absent classes."""
    conf_mat = np.asarray(conf_mat, dtype=float)
    row_sums = conf_mat.sum(axis=1)
    return np.divide(100.0 * np.diag(conf_mat), row_sums, out=np.full(len(conf_mat), np.nan), where=row_sums > 0)


def class_names_in_order(class_names: Sequence[str] | Mapping[int, str], num_classes: int) -> list[str]:
    """The names of labels 0, 1, ..., as a list: from a list, or from a ``{label: name}`` dict (``class_dict``).

    Iterating a dict gives its labels, not its names, so a table or a figure would show
    numbers; and a list of the wrong length would name the wrong classes. Both are refused.
    """
    if isinstance(class_names, Mapping):
        missing = [label for label in range(num_classes) if label not in class_names]
        if missing:
            raise ValueError(f"class_names has no name for label(s) {missing}: pass one name for each of the "
                             f"{num_classes} classes, e.g. CIFAR10_CLASSES or dict(enumerate(CIFAR10_CLASSES)).")
        class_names = [class_names[label] for label in range(num_classes)]
    names = [str(name) for name in class_names]
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} names for {num_classes} classes: pass one name for each, "
                         "e.g. CIFAR10_CLASSES.")
    return names


def check_count(name: str, value: object) -> None:
    """Refuse a count (how many pairs, how many images) that is not a whole number of at least 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}.")


def most_confused_pairs(conf_mat: np.ndarray, k: int = 5) -> list[tuple[int, int, int]]:
    """The ``k`` largest off-diagonal cells as (true label, predicted label, count), largest first."""
    check_count("k", k)
    conf_mat = np.asarray(conf_mat)
    pairs = [(int(conf_mat[t, p]), t, p) for t in range(len(conf_mat)) for p in range(len(conf_mat)) if t != p]
    pairs.sort(key=lambda item: (-item[0], item[1], item[2]))
    return [(t, p, count) for count, t, p in pairs[:k] if count > 0]


def print_confusion_summary(conf_mat: np.ndarray, class_names, k: int = 5) -> None:
    """Print per-class accuracy and the ``k`` most confused (true, predicted) pairs as small tables."""
    class_names = class_names_in_order(class_names, len(conf_mat))  # both checked before a line is printed
    pairs = most_confused_pairs(conf_mat, k)
    print(f"{'class':>12} | accuracy")
    for name, accuracy in zip(class_names, per_class_accuracy(conf_mat), strict=True):
        print(f"{name:>12} | {accuracy:6.2f}%")
    print(f"\nMost confused (true -> predicted), of {int(np.sum(conf_mat)):,} images:")
    for true, predicted, count in pairs:
        print(f"{class_names[true]:>12} -> {class_names[predicted]:<12} {count:6d} images")
    if not pairs:
        print("        none: every image was classified correctly")


# ---------------------------------------------------------------------------
# 5. The layer-shape table
# ---------------------------------------------------------------------------


def print_layer_shapes(
    model: torch.nn.Module, input_size: tuple[int, ...], *, all_layers: bool = False, device=None
) -> list[tuple[str, tuple[int, ...], int]]:
    """Run one dummy batch through ``model`` and print each block's output shape and parameter count.

    Forward hooks record the shapes; they are always removed afterwards. If the forward
    pass fails (say, the classifier's input size does not match), the table is printed
    up to the failing layer and the error is raised again, naming that layer.
    ``all_layers=True`` lists every layer instead of only the top-level blocks.
    Returns the rows as (name, output shape, parameters).
    """
    if device is None:
        device = next(model.parameters()).device
    rows, entered, handles = [], [], []

    def on_enter(module, args):
        entered.append(module)

    def on_exit(module, args, output):
        entered.remove(module)
        rows.append((names[module], tuple(output.shape), sum(p.numel() for p in module.parameters())))

    names = {m: n for n, m in model.named_modules() if n and (all_layers or "." not in n)}
    for module in names:
        handles.append(module.register_forward_pre_hook(on_enter))
        handles.append(module.register_forward_hook(on_exit))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_size, device=device))
    except Exception as error:
        print_shape_table(rows, input_size)
        failing = names[entered[-1]] if entered else "(outside any layer)"
        raise RuntimeError(f"The forward pass failed in layer '{failing}': {error}") from error
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    print_shape_table(rows, input_size)
    return rows


def print_shape_table(rows: list[tuple[str, tuple[int, ...], int]], input_size: tuple[int, ...]) -> None:
    """Print the rows that ``print_layer_shapes`` collected."""
    print(f"{'layer':<24} {'output shape':<22} {'parameters':>12}")
    print(f"{'(input)':<24} {str(tuple(input_size)):<22} {'':>12}")
    for name, shape, parameters in rows:
        print(f"{name:<24} {str(shape):<22} {parameters:>12,}")


# ---------------------------------------------------------------------------
# 6. Writing result files
# ---------------------------------------------------------------------------


TEMPORARY_FILE_NAME = re.compile(r"\..+\.\d+\.[0-9a-f]{8}\.tmp")  # .NAME.PID.HEX.tmp, see temporary_path_for


def temporary_path_for(path: Path) -> Path:
    """``.NAME.PID.HEX.tmp`` beside ``path``: hidden, unique to this process and call, and easy to recognize later."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def flush_to_disk(path: str | os.PathLike) -> None:
    """Make the operating system write ``path``'s contents to the disk now (``fsync``).

    The handle is opened for writing: Windows refuses ``fsync`` on a read-only handle
    (OSError, EBADF), where POSIX systems accept either.
    """
    descriptor = os.open(path, os.O_RDWR)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def save_atomically(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(temporary_path)``, then rename the finished file to ``path``.

    The temporary file lives in the same folder, so the rename is atomic: readers see
    either the previous file or the complete new one, never half a file. It is flushed
    to the disk before the rename, so a power cut cannot leave an empty file behind it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = str(temporary_path_for(path))
    try:
        write(temporary)
        flush_to_disk(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def remove_stale_temporary_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed saves left in ``folder`` (not its subfolders); return them, sorted.

    ``save_atomically`` removes its temporary file when writing fails, but a process that
    is killed mid-write (the kernel dies, Colab disconnects) cannot, and each leftover can
    be as large as a checkpoint. Only names of the form ``.NAME.PID.HEX.tmp`` are touched.
    Call it when nothing is saving into ``folder``, as training does at the start of a run.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(p for p in folder.iterdir() if TEMPORARY_FILE_NAME.fullmatch(p.name) and p.is_file())
    for leftover in stale:
        leftover.unlink(missing_ok=True)
    return stale


# ---------------------------------------------------------------------------
# 7. Comparing runs
# ---------------------------------------------------------------------------

HISTORY_FILE = "history.json"  # each run's record, in RESULTS_DIR/<run name>/, written by train_model


def read_history(path: Path) -> dict:
    """One run's history from ``path``; ValueError or OSError if it is not a history.

    The fields the run table and the comparison figure read must hold what train_model writes
    there, or a file edited by hand would stop the comparison cell halfway.
    """
    history = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(history, dict):
        raise ValueError("not a JSON object")
    if not isinstance(history.get("valid_acc"), list):
        raise ValueError("no per-epoch validation accuracy ('valid_acc')")
    if not all(is_json_number(value) for value in history["valid_acc"]):
        raise ValueError("'valid_acc' holds something other than numbers")
    if history.get("test_acc") is not None and not is_json_number(history["test_acc"]):
        raise ValueError("'test_acc' is neither a number nor null")
    seconds = history.get("epoch_seconds")
    if seconds is not None and not (isinstance(seconds, list) and all(is_json_number(value) for value in seconds)):
        raise ValueError("'epoch_seconds' is not a list of numbers")
    if history.get("stopped") is not None and not isinstance(history["stopped"], str):
        raise ValueError("'stopped' is not a text")
    return history


def is_json_number(value) -> bool:
    """A number as JSON stores one: an int or a float, not true or false (which Python counts as 1 and 0)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_run_histories(results_dir: str | os.PathLike) -> dict[str, dict]:
    """Every run's ``history.json`` in ``results_dir/<run folder>/``, keyed by run name and sorted by it.

    A run without a ``run_name`` is named after its folder; a name that two folders share
    gets the folder's name added. A file that cannot be read (truncated, edited by hand)
    is skipped with a printed line naming it, so one bad file never stops the comparison.
    No runs yet (or no such folder): an empty dict.
    """
    histories = {}
    for path in sorted(Path(results_dir).glob(f"*/{HISTORY_FILE}")):
        try:
            history = read_history(path)
        except (OSError, ValueError) as error:  # ValueError covers bad JSON and bad text encoding
            print(f"Skipped {path}: cannot read it as a run history ({error}).")
            continue
        name = str(history.get("run_name") or path.parent.name)
        histories[f"{name} ({path.parent.name})" if name in histories else name] = history
    return dict(sorted(histories.items()))


def percent_or_dash(value: float | None) -> str:
    """``81.86%``, or ``-`` for a value not known (yet)."""
    return "-" if value is None else f"{value:.2f}%"


def rate_change_epochs(history: Mapping) -> list[int] | None:
    """The epochs after which the run's learning rate changed ([39]); None if the history cannot say.

    Histories written before train_model recorded each epoch's rate, or continued from such
    a run's checkpoint, do not hold one rate per epoch.
    """
    rates, valid = history.get("learning_rate"), history["valid_acc"]
    if not isinstance(rates, list) or len(rates) != len(valid):
        return None
    return [epoch for epoch in range(1, len(rates)) if rates[epoch] != rates[epoch - 1]]


def rate_changes(history: Mapping) -> str:
    """``rate_change_epochs`` for the run table: "39", "28, 39", "1-49"; "-" if never, "?" if unknown."""
    changes = rate_change_epochs(history)
    if changes is None:
        return "?"
    return ", ".join(epoch_ranges(changes)) or "-"


def epoch_ranges(epochs: Sequence[int]) -> list[str]:
    """Increasing epoch numbers with each run of consecutive ones as a range: [1, 2, 3, 7] gives ["1-3", "7"].

    A cosine or warm-up schedule changes the rate after every epoch: 49 numbers would make
    the run table's rows some 200 characters wide.
    """
    ranges: list[list[int]] = []
    for epoch in epochs:
        if ranges and ranges[-1][1] == epoch - 1:
            ranges[-1][1] = epoch
        else:
            ranges.append([epoch, epoch])
    return [f"{first}-{last}" if last > first else str(first) for first, last in ranges]


def outcome_cell(history: Mapping) -> str:
    """The run table's "test" cell, the run's outcome: the test accuracy; else why the run stopped
    ("diverged in epoch 2", "interrupted after 3 of 50 epochs"); else, for a run that ended without a word
    (its session crashed or lost its connection, or it is still training elsewhere), "unfinished: 3 of 50
    epochs" ("unfinished: no test pass" when every epoch had trained); "-" if unknown."""
    if history.get("stopped"):
        return history["stopped"]
    planned, done = history.get("num_epochs"), len(history["valid_acc"])
    if history.get("test_acc") is not None or type(planned) is not int or planned < 1:  # older or hand-made
        return percent_or_dash(history.get("test_acc"))
    return f"unfinished: {done} of {planned} epochs" if done < planned else "unfinished: no test pass"


def run_table_row(name: str, history: dict) -> list[str]:
    """The cells of one run's row in ``print_run_table``."""
    valid = history["valid_acc"]
    best_epoch = int(np.argmax(valid)) + 1 if valid else None
    seconds = history.get("epoch_seconds")
    return [
        name,
        str(len(valid)),
        percent_or_dash(valid[-1] if valid else None),
        f"{percent_or_dash(valid[best_epoch - 1])} ({best_epoch})" if valid else "-",
        outcome_cell(history),
        f"{sum(seconds) / 60:.1f}" if seconds else "-",
        rate_changes(history),
    ]


def print_run_table(histories: dict[str, dict]) -> None:
    """Print one row per run: name, epochs, final and best validation accuracy (epoch), test accuracy, minutes,
    and the epochs after which the learning rate changed.

    The test accuracy is known once the run has finished training; before, the cell says why
    it stopped or that it is unfinished (``outcome_cell``); the minutes are the training time
    summed over the epochs (``epoch_seconds``). The last column matters when comparing runs: a run whose scheduler
    lowered its rate (``ReduceLROnPlateau`` after a plateau) usually gains a point or more
    right after, which another run may simply not have had yet (``rate_changes``).
    """
    if not histories:
        print("No runs to compare yet: each training run writes RESULTS_DIR/<run name>/history.json.")
        return
    header = ["run", "epochs", "final valid", "best valid (epoch)", "test", "training min", "lr changed after"]
    rows = [header] + [run_table_row(name, history) for name, history in histories.items()]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        print("  ".join(cells))


# ---------------------------------------------------------------------------
# 8. Classifying your own picture
# ---------------------------------------------------------------------------

CIFAR10_IMAGE_SIZE = 32  # every CIFAR-10 image is 32x32 pixels


def resize_like_cifar10(image: Image.Image) -> Image.Image:
    """``image`` as a 32x32 RGB picture, as CIFAR-10 stores every image (PIL bilinear; a non-square one is squeezed)."""
    return image.convert("RGB").resize((CIFAR10_IMAGE_SIZE, CIFAR10_IMAGE_SIZE), Image.Resampling.BILINEAR)


def save_uploaded_picture(uploaded: Mapping[str, bytes], folder: str | os.PathLike) -> Path:
    """Save the photo chosen in Colab's upload dialog (what ``files.upload()`` returns) in ``folder``; its path.

    ``files.upload()`` also writes the file next to the notebook, but under another name
    when that name is taken ("photo (1).jpg") while it returns the name chosen
    ("photo.jpg"): opening the returned name would classify an earlier upload. So the
    bytes it returns are written here, under the name chosen after "uploaded-": a photo
    named like a file the run writes (its figure ``my_picture.png``, ``history.json``) would
    replace it, or be replaced by it. A cancelled dialog returns nothing, and a file PIL
    cannot read (an iPhone's HEIC photo) is not saved: both are refused with the ways on,
    before the cell's ``MY_IMAGE`` names a file, so that running the cell again opens the
    dialog again.
    """
    if not uploaded:
        raise ValueError("No photo was chosen in the upload dialog. Run this cell again and choose one, or set "
                         "MY_IMAGE in the parameters cell to a photo's path.")
    name, data = next(iter(uploaded.items()))
    if len(uploaded) > 1:
        print(f"{len(uploaded)} files were chosen: classifying the first, {name}.")
    if not is_picture(data):
        raise ValueError(f"'{name}' is not a picture PIL can read (PNG or JPEG expected; an iPhone's HEIC photo can "
                         "be exported as JPEG). Run this cell again and choose another.")
    return save_atomically(Path(folder) / f"uploaded-{Path(name).name}", lambda path: Path(path).write_bytes(data))


def is_picture(data: bytes) -> bool:
    """Whether PIL recognizes ``data`` as an image (from its header; ``load_image`` decodes the pixels)."""
    try:
        with Image.open(io.BytesIO(data)):
            return True
    except UnidentifiedImageError:
        return False


def classify_image(
    model: torch.nn.Module,
    image: Image.Image,
    transforms: Callable[[Image.Image], torch.Tensor],
    device: torch.device | str,
    class_names: Sequence[str] | Mapping[int, str],
    *,
    k: int = 3,
    use_amp: bool | None = None,
) -> tuple[torch.Tensor, list[tuple[str, float]]]:
    """The model's ``k`` most probable classes for one picture of any size, and the tensor the network saw.

    The picture is first shrunk to 32x32 pixels, as every CIFAR-10 image is (crop it
    square first if it is not, or it is squeezed), then passed through ``transforms``:
    the notebook's evaluation transforms (say Resize 70, CenterCrop 64, ToTensor,
    Normalize), so the network sees it as it saw the test images (on the GPU's fast path
    those steps ran on the GPU, within 1/255 per pixel of these PIL ones). The model runs
    through ``predict_batches`` (eval mode, no gradients, its mode restored afterwards).
    Returns the network's input (C, H, W) and [(class name, probability), ...], most
    probable first.
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL image, not {type(image).__name__}: load a file with "
                        "helper_dataset.load_image(path), which shows it as a viewer does (a phone photo upright, "
                        "transparency on white), unlike PIL.Image.open.")
    network_input = transforms(resize_like_cifar10(image))
    one_image = [(network_input[None], torch.zeros(1, dtype=torch.long))]  # a one-image loader; the label is unused
    _, logits, _ = next(iter(predict_batches(model, one_image, device, use_amp=use_amp)))
    num_classes = logits.shape[1]
    if len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} names, but the model outputs {num_classes} scores.")
    if not 1 <= k <= num_classes:
        raise ValueError(f"k must be between 1 and the number of classes ({num_classes}), got {k}.")
    probabilities, labels = logits[0].softmax(dim=0).topk(k)
    return network_input, [(class_names[int(label)], float(p)) for p, label in zip(probabilities, labels, strict=True)]
