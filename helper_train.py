"""Training the VGG-16 tutorial's model: the lecture's ``train_model`` loop, made safe for long runs.

``train_model`` (at the bottom) reads like the lecture's loop. Everything extra a real
run needs is one call to a small function defined above it, whose name says what it does:

1. settings checks that fail before any work starts;
2. the run's identity: the settings that define what is trained, stored with the
   checkpoint, so that a run is only ever continued with the settings it started with;
3. one training step, with mixed precision on CUDA, and optional compilation;
4. the minibatch losses, kept on the device and brought to the host only at the logging
   points, and the divergence guard that checks them before anything is saved;
5. checkpoints: written in a background thread while the next epoch trains, atomically,
   verified when loaded;
6. watching the run: the stall warning and the live plot;
7. the loop itself.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import inspect
import json
import math
import os
import random
import re
import tempfile
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from helper_dataset import describe_loader, load_image
from helper_evaluation import (
    HISTORY_FILE,
    RERUN_CELLS,
    DevicePolicy,
    check_device_chosen,
    compute_accuracy,
    device_policy,
    device_problem,
    predict_batches,
    read_history,
    remove_stale_temporary_files,
    save_atomically,
)
from helper_plotting import plot_live_progress

SCHEDULER_SIGNALS = ("valid_acc", "minibatch_loss")
CHECKPOINT_FILE = "checkpoint.pt"
BEST_MODEL_FILE = "best_model.pt"
INTERRUPTED_MODEL_FILE = "interrupted_model.pt"

DIVERGENCE_FACTOR = 100.0
"""A minibatch loss above DIVERGENCE_FACTOR x ln(num_classes) counts as divergence.

ln(num_classes) is the loss of a model that guesses (2.303 for CIFAR-10); the notebook's
freshly initialized VGG-16 starts between 3.4 and 5.4. A loss of 230 means the model puts
probability e^-230 on the right class: its outputs have grown by orders of magnitude,
which only an exploding run does. Waiting for NaN is too late: by then the weights of
the last complete epoch may already be 1e15 and worthless.
"""

LIVE_PLOT_MAX_SHARE = 0.05  # the live plot may take at most this share of the training time (see LivePlot)
PACE_STEPS = 5  # the training steps timed after the first (which includes one-off set-up) to foresee a long run
LONG_RUN_SECONDS = 3600.0  # a run whose training steps alone will take longer than this gets a warning

LECTURE_SETTINGS = {
    "seed": 123,
    "batch_size": 256,
    "learning_rate": 0.01,
    "dropout2d": 0.0,
    "normalization": "mean=std=0.5",
    "image_size": 64,
    "precision": "auto",
    "deterministic": False,
    "train_images": 45_000,  # CIFAR-10's 50,000 less the 5,000 validation images: a run on part of them says so
}
"""The lecture's values of the settings a student changes most; a run's name lists those that differ."""


class TrainingDivergedError(RuntimeError):
    """The loss exploded (NaN, infinite, or far above the guessing loss): training cannot recover by itself."""


class TrainingStalledWarning(UserWarning):
    """After a few epochs the model still guesses: accuracy near chance level, loss near ln(num_classes)."""


class LongRunWarning(UserWarning):
    """The run's first training steps show that it will take hours on this device."""


class RunMismatchError(RuntimeError):
    """The checkpoint in the folder belongs to a run with other settings: continuing it would mix two runs."""


# ---------------------------------------------------------------------------
# 1. Settings checks
# ---------------------------------------------------------------------------


def is_whole_number(value) -> bool:
    """True for Python and NumPy integers (not for bool, float or str)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_training_settings(num_epochs: int, scheduler_on: str, logging_interval: int) -> None:
    """Reject settings that would fail (or silently do nothing) before any training starts."""
    if not is_whole_number(num_epochs) or num_epochs < 1:
        raise ValueError(f"num_epochs must be a whole number of at least 1, got {num_epochs!r}.")
    if not is_whole_number(logging_interval) or logging_interval < 1:
        raise ValueError(
            f"logging_interval must be a whole number of at least 1 (print every Nth batch's loss), "
            f"got {logging_interval!r}."
        )
    if scheduler_on not in SCHEDULER_SIGNALS:
        raise ValueError(
            f"scheduler_on must be one of {SCHEDULER_SIGNALS} (the value the scheduler watches), "
            f"got {scheduler_on!r}."
        )


NOTEBOOK_SWITCHES = ("SMOKE_TEST", "DETERMINISTIC", "CHECKPOINTS", "LIVE_PLOT")  # True or False, nothing else
NUMBER_SETTINGS = ("RANDOM_SEED", "BATCH_SIZE", "NUM_EPOCHS", "NUM_WORKERS", "LEARNING_RATE", "IMAGE_SIZE", "DROPOUT2D")


def number_in_quotes(value) -> int | float | None:
    """The number a text such as ``"0.01"`` or ``"256"`` spells (what a student meant), else None."""
    if not isinstance(value, str):
        return None
    try:
        number = ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return number if is_real_number(number) else None  # not bool, not a complex number, not "1e999" (inf)


def is_real_number(value) -> bool:
    """True for ints (of any size) and finite floats, NumPy's too; not for bool or str."""
    if isinstance(value, (bool, np.bool_)):
        return False
    return isinstance(value, (int, np.integer)) or (isinstance(value, (float, np.floating)) and math.isfinite(value))


EXAMPLE_FOLDER = '"results"'
PATH_EXAMPLES = {"MY_IMAGE": '"my_cat.jpg"', "DATA_ROOT": '"data"', "RESULTS_DIR": EXAMPLE_FOLDER}
"""How each path setting is written, for the message that asks for quotes."""
WEB_ADDRESS_FIXES = {
    "MY_IMAGE": "a web address is not a file: download the picture and give its path (on Colab: None, then upload).",
    "DATA_ROOT": 'a web address is not a folder: give a folder on this machine, e.g. "data"; CIFAR-10 is downloaded '
                 "into it.",
    "RESULTS_DIR": 'a web address is not a folder: give a folder on this machine, e.g. "results" (on Colab, one on '
                   "your mounted Google Drive keeps the runs).",
}
"""What to write instead of a web address, for each path setting."""


def path_problem(name: str, value) -> str | None:
    """What is wrong with a path setting's form (before looking at the file system), or None."""
    if not isinstance(value, (str, os.PathLike)):
        return f"{name} is a path: write it in quotes, e.g. {PATH_EXAMPLES.get(name, EXAMPLE_FOLDER)}."
    if str(value).startswith("~"):
        return "Python does not expand '~' in a path: write the full path (os.path.expanduser gives it)."
    if str(value).startswith(("http://", "https://")):  # RESULTS_DIR's check would make a folder "https:" here
        return WEB_ADDRESS_FIXES.get(name, "a web address is not a path on this machine: give a file or folder here.")
    return None


def setting_problem(name: str, value) -> str | None:
    """What is wrong with one setting of the notebooks' parameters cell, and the fix; None if it can run.

    Settings this function does not know pass.
    """
    if name == "DEVICE":
        return device_problem(value)
    if name in NUMBER_SETTINGS and (number := number_in_quotes(value)) is not None:
        problem = setting_problem(name, number)  # and what would still be wrong without the quotes
        return f"this is text (in quotes), not a number: write {name} = {number!r} without the quotes" + \
            (f", and then: {problem}" if problem else ".")
    whole = is_whole_number(value)
    if name == "RANDOM_SEED" and not (whole and 0 <= value < 2**32):
        return "a seed is a whole number from 0 to 2**32 - 1 (NumPy's range). The lecture uses 123."
    if name in ("BATCH_SIZE", "NUM_EPOCHS") and not (whole and value >= 1):
        return "it must be a whole number of at least 1. The lecture uses " \
               f"{256 if name == 'BATCH_SIZE' else 50}."
    if name == "NUM_WORKERS" and not (whole and value >= 0):
        return "the number of DataLoader worker processes is a whole number of at least 0 (0: load in the notebook)."
    if name == "LEARNING_RATE" and not (is_real_number(value) and value > 0):
        return "the learning rate must be a finite number above 0 (at 0 no weight changes). The lecture uses 0.01."
    if name == "IMAGE_SIZE" and not (whole and value >= 32):  # five 2x2 poolings take 32 pixels to 1, fewer to nothing
        return "VGG-16 halves the image five times, so it needs a whole number of at least 32 pixels. " \
               "Use 64 (the lecture) or 32 (CIFAR-10's own size)."
    if name == "DROPOUT2D" and not (is_real_number(value) and 0 <= value < 1):
        return "the share of feature maps Dropout2d zeroes is at least 0 and below 1 (1 would zero every map, " \
               "and nothing would be learned). Try 0.1 to 0.3, or 0.0 for the lecture's model."
    if name in NOTEBOOK_SWITCHES and not isinstance(value, bool):
        return "write True or False, without quotes (the string \"False\" counts as true in Python)."
    if name in ("FAST_DATA_PATH", "COMPILE") and not (value == "auto" or isinstance(value, bool)):
        return 'choose "auto", True or False.'
    if name == "PRECISION" and value not in ("auto", "float32"):
        return 'choose "auto" (mixed precision where it helps) or "float32".'
    if name in ("DATA_ROOT", "RESULTS_DIR", "MY_IMAGE") and not (name == "MY_IMAGE" and value is None) \
            and (problem := path_problem(name, value)):
        return problem
    if name == "DATA_ROOT" and Path(value).exists() and not Path(value).is_dir():
        return "it is a file, not a folder. Set it to the folder that holds (or will hold) CIFAR-10, e.g. \"data\"."
    if name == "RESULTS_DIR":
        try:
            check_writable_folder(Path(value), "RESULTS_DIR", fix="RESULTS_DIR")
        except OSError as error:
            return str(error)
    if name == "MY_IMAGE" and value is not None:
        try:
            load_image(value)
        except (OSError, ValueError) as error:
            return f"{error} Or set MY_IMAGE = None to classify a test image."
    return None


def check_settings(settings: Mapping[str, object]) -> None:
    """Refuse the notebook's settings that cannot run, all of them at once, each with its fix, before any data is read.

    Without this, a wrong setting shows up late: a string "False" runs as True, a negative
    Dropout2d silently drops nothing, a learning rate of 0 trains 50 epochs without changing a
    weight, and a misspelt MY_IMAGE fails after the whole training.
    """
    problems = [f"{name} = {value!r}: {problem}" for name, value in settings.items()
                if (problem := setting_problem(name, value)) is not None]
    if problems:
        raise ValueError("Change these settings in the parameters cell:\n" + "\n".join(problems))


def check_scheduler_mode(scheduler, scheduler_on: str) -> None:
    """Refuse a ReduceLROnPlateau whose mode contradicts the value it watches.

    Accuracy should go up (mode="max"), a loss down (mode="min"). With the wrong mode the
    scheduler sees every improvement as a setback and lowers the learning rate for no reason.
    """
    if not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        return
    wanted = "max" if scheduler_on == "valid_acc" else "min"
    if scheduler.mode != wanted:
        raise ValueError(
            f"ReduceLROnPlateau(mode={scheduler.mode!r}) watches scheduler_on={scheduler_on!r}, which should "
            f"{'rise' if wanted == 'max' else 'fall'}: create it with mode={wanted!r}."
        )


def number_of_classes_in(data_loader) -> int | None:
    """The number of classes in a loader's labels (largest label + 1), where the loader lets us see them."""
    num_classes = describe_loader(data_loader)["num_classes"]
    return num_classes if isinstance(num_classes, int) else None


def check_model_output(model: torch.nn.Module, data_loader: Iterable, device, num_classes: int | None,
                       *, use_amp: bool | None = None) -> tuple[int, int]:
    """Run one batch through the model, check that it outputs one score per class; return that and the image size.

    Without ``num_classes`` (a lecture-style call) the number of classes is taken from the
    data. A model built for the wrong number of classes either crashes deep inside the
    loss (too few outputs) or trains while wasting outputs (too many); both are caught here.
    """
    if num_classes is None:
        num_classes = number_of_classes_in(data_loader)
    try:
        features, logits, targets = next(iter(predict_batches(model, data_loader, device, use_amp=use_amp)))
    except RuntimeError as error:
        if "Adaptive pool MPS" not in str(error):
            raise
        raise RuntimeError(
            "Apple's MPS cannot compute this model's AdaptiveAvgPool2d (its input and output sizes do not divide, "
            "e.g. 2x2 to 3x3). Call make_pooling_deterministic(model), from helper_evaluation, after building the "
            "model: it swaps in the same function as two matrix products, which MPS can compute (the notebooks' "
            "model cell does this)."
        ) from error
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
    return width, features.shape[-1]


# ---------------------------------------------------------------------------
# 2. The run's identity
# ---------------------------------------------------------------------------

SCHEDULER_PROGRESS_KEYS = {"last_epoch", "_step_count", "_last_lr", "best", "num_bad_epochs", "cooldown_counter",
                           "_get_lr_called_within_step", "_is_initial"}


def describe_optimizer(optimizer: torch.optim.Optimizer) -> str:
    """The optimizer's class and constructor hyperparameters (not its momentum or the current rate).

    Numbers as the numbers they mean (``plain_number``): ``weight_decay=0.0`` is ``weight_decay=0``.

    With several parameter groups, also how each group after the first is set apart from
    the first (``describe_group``): a smaller rate for the classifier, say, is another run.
    The first group's own rate is not described, because schedulers lower it as the run
    goes on: give the optimizer the first group's rate as its ``lr=`` (as the notebooks do),
    or a changed rate there is not told apart from the run before.
    """
    settings = ", ".join(f"{name}={plain_number(value)!r}" for name, value in sorted(optimizer.defaults.items()))
    first, *others = optimizer.param_groups
    groups = "".join(f"; group {number}: {difference}"
                     for number, difference in enumerate((describe_group(group, first) for group in others), 2)
                     if difference)
    return f"{type(optimizer).__name__}({settings}; {len(optimizer.param_groups)} parameter group(s){groups})"


def describe_group(group: Mapping[str, object], first: Mapping[str, object]) -> str:
    """The hyperparameters in which a parameter group differs from the first group ("" if none).

    The rate is given as a multiple of the first group's rate: schedulers lower every
    group's rate by the same factor, so the multiple (unlike the rate) stays the same as
    the run goes on, and a run continued after its rate was lowered keeps its identity.
    """
    if group["lr"] == first["lr"]:
        differences = []
    elif first["lr"] == 0:  # a frozen first group: no multiple to give
        differences = [f"lr={group['lr']!r}"]
    else:
        differences = [f"lr x{group['lr'] / first['lr']:.6g}"]
    differences += [f"{name}={plain_number(value)!r}" for name, value in sorted(group.items())
                    if name not in ("params", "lr") and value != first.get(name)]
    return ", ".join(differences)


def describe_scheduler(scheduler) -> str:
    """The scheduler's class and configuration, without its progress (epoch count, best value so far)."""
    if scheduler is None:
        return "none"
    settings = {k: v for k, v in scheduler.state_dict().items() if k not in SCHEDULER_PROGRESS_KEYS}
    return f"{type(scheduler).__name__}({', '.join(f'{k}={v!r}' for k, v in sorted(settings.items()))})"


def describe_precision(device: torch.device | str, use_amp: bool | None) -> str:
    """"float32" or "mixed": whether the forward pass runs in reduced precision.

    Which reduced type (bf16 or float16) depends on the GPU, not on the recipe, so a run
    started on a bf16 GPU can continue on Colab's T4 (float16); the type used is recorded
    in each run's history.
    """
    return "mixed" if device_policy(device, use_amp).amp_dtype is not None else "float32"


def describe_run(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    train_loader: Iterable,
    valid_loader: Iterable,
    *,
    device: torch.device | str,
    use_amp: bool | None = None,
    settings: Mapping[str, object] | None = None,
) -> dict[str, str]:
    """Everything that defines what a run trains, as strings: the run's identity.

    Model class and architecture (its printout and every parameter's shape, so that
    ``Dropout2d(0.2)`` differs from ``Identity``), optimizer and scheduler settings, batch
    size, both transforms, the data, the precision, the determinism switch, plus the
    caller's ``settings`` (the notebook adds the seed and its named settings). Not the
    number of epochs: more epochs continue the same run.
    """
    check_device_chosen(device)  # "auto" from a parameters cell run again: say which cell to run, not torch's list
    train, valid = describe_loader(train_loader), describe_loader(valid_loader)
    identity = {
        "model": f"{type(model).__name__}: {model!r}",
        "model_code": model_code_fingerprint(type(model)),
        "parameter_shapes": "; ".join(f"{name} {tuple(p.shape)}" for name, p in model.named_parameters()),
        "optimizer": describe_optimizer(optimizer),
        "scheduler": describe_scheduler(scheduler),
        "batch_size": str(train["batch_size"]),
        "train_transform": str(train["transform"]),
        "eval_transform": str(valid["transform"]),
        "train_data": str(train["data"]),
        "valid_data": str(valid["data"]),
        "precision": describe_precision(device, use_amp),
        "deterministic": str(torch.are_deterministic_algorithms_enabled()),
    }
    identity.update({f"setting: {name}": repr(plain_number(value)) for name, value in (settings or {}).items()})
    return {name: without_memory_addresses(text) for name, text in identity.items()}


def plain_number(value):
    """0, 0.0 and np.int64(0) alike: a setting's value as the number it means (other values unchanged)."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return int(value) if float(value).is_integer() else float(value)
    return value


def model_code_fingerprint(model_class: type) -> str:
    """Twelve hexadecimal digits that change when the model class's code changes.

    The printout of a model shows its layers, not what ``forward`` does with them or how
    ``__init__`` initializes the weights: moving the dropout after the pooling, or
    switching from Kaiming to Xavier initialization, must make a new run too. The source
    of every method the class defines is hashed (in Jupyter too, where cells are kept in
    ``linecache``); where no source can be found, its compiled bytecode.
    """
    parts = []
    for cls in model_class.__mro__:  # inherited methods count too; PyTorch's own classes do not
        if cls is object or cls.__module__.split(".")[0] == "torch":
            continue
        for name, member in sorted(vars(cls).items()):
            function = getattr(member, "__func__", member)
            if not callable(function) or not hasattr(function, "__code__"):
                continue
            try:
                parts.append(inspect.getsource(function))
            except (OSError, TypeError):
                parts.append(f"{name}: {bytecode_summary(function.__code__)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def bytecode_summary(code) -> str:
    """A function's compiled code as text: its instructions, the names and the constants they use (``x * 2`` and
    ``x * 3`` differ only in a constant), and those of the functions defined inside it, the same in every session."""
    constants = [bytecode_summary(constant) if inspect.iscode(constant)
                 else repr(sorted(constant, key=repr)) if isinstance(constant, frozenset)  # its order varies by session
                 else repr(constant) for constant in code.co_consts]
    return f"{code.co_code.hex()} {code.co_names} ({', '.join(constants)})"


def without_memory_addresses(text: str) -> str:
    """Drop the ``at 0x7f...`` that Python prints for objects without a readable repr (a lambda transform).

    The address changes every time the notebook runs; left in, the same settings would
    never be recognized as the same run.
    """
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)


def run_hash(identity: Mapping[str, str]) -> str:
    """Six hexadecimal digits that differ for (almost) any two different identities."""
    return hashlib.sha256(json.dumps(dict(identity), sort_keys=True).encode()).hexdigest()[:6]


def run_name(identity: Mapping[str, str], settings: Mapping[str, object], *, smoke_test: bool = False,
             defaults: Mapping[str, object] = LECTURE_SETTINGS) -> str:
    """A short folder name for the run: the settings that differ from ``defaults``, then the identity's hash.

    ``lecture-3f2a1c`` is the lecture's configuration, ``dropout2d=0.2-8e41b0`` the Dropout2d
    exercise; smoke-test runs always start with ``smoke-``. The hash covers the whole
    identity, so two runs that differ in anything (an edited transform, say) get two folders.
    Characters that a folder name cannot hold ("/", spaces) become "-"; past 80 characters,
    the last settings are counted instead of named (``..._and-2-more``).
    """
    items = ["".join(c if c.isalnum() or c in "=._+-" else "-" for c in f"{name}={value}")
             for name, value in changed_settings(settings, defaults).items()]
    label = "_".join(items) or "lecture"
    kept = len(items)
    while len(label) > 80 and kept > 1:  # whole settings, not one cut off mid-value; the hash tells runs apart
        kept -= 1
        label = "_".join(items[:kept]) + f"_and-{len(items) - kept}-more"
    return f"{'smoke-' if smoke_test else ''}{label[:80]}-{run_hash(identity)}"


def changed_settings(settings: Mapping[str, object], defaults: Mapping[str, object]) -> dict[str, object]:
    """The settings whose values differ from ``defaults``; settings that ``defaults`` does not name are left out."""
    return {name: value for name, value in settings.items() if name in defaults and defaults[name] != value}


def stopped_before_first_epoch(history_path: Path) -> str | None:
    """How the run recorded in ``history_path`` stopped ("interrupted after 0 of 50 epochs") if it finished no
    epoch; None if it finished one, or if the file cannot be read.

    Such a run left a history but nothing to continue, even with checkpoints on.
    """
    try:
        history = read_history(history_path)
    except (OSError, ValueError):  # as load_run_histories skips such a file
        return None
    return history["stopped"] if history.get("stopped") and not history["valid_acc"] else None


def choose_run_folder(results_dir: str | Path, identity: Mapping[str, str], settings: Mapping[str, object], *,
                      smoke_test: bool = False, checkpoints: bool = True, num_epochs: int | None = None,
                      defaults: Mapping[str, object] = LECTURE_SETTINGS) -> Path:
    """The folder of this configuration under ``results_dir``; print which one and why.

    Same settings as an earlier run: the same folder, so training continues from its
    checkpoint (``checkpoints=False``: starts over there, saying so; a checkpoint that already
    holds ``num_epochs`` epochs: nothing to train, also said). Different settings: a new
    folder, and the earlier runs stay for comparison.
    """
    folder = Path(results_dir) / run_name(identity, settings, smoke_test=smoke_test, defaults=defaults)
    changed = [f"{name}={value!r}" for name, value in changed_settings(settings, defaults).items()]
    print(f"This run's folder: {folder}")
    print(f"  settings that differ from the {'smoke test' if smoke_test else 'lecture'}'s: "
          f"{', '.join(changed) or 'none'} (the six characters at the end identify all settings)")
    checkpoint = folder / CHECKPOINT_FILE
    replaced = "history and figures" if smoke_test else "history, figures and final weights"  # smoke: no weights
    if checkpoint.exists() and not checkpoints:
        print("  a checkpointed run of these settings is there, but checkpoints are off: this run starts from "
              f"scratch and replaces its {replaced} (its checkpoint and best weights stay)")
    elif checkpoint.exists():
        done = epochs_in_checkpoint(folder)  # 0: a file that cannot be read (a checkpoint holds 1 epoch or more)
        if not done:
            print("  a checkpoint file is there, but it cannot be read (cut short, damaged, or not this tutorial's): "
                  "the training cell stops before training and says how to go on")
        elif num_epochs is not None and done >= num_epochs:
            print(f"  a checkpoint of exactly these settings is there, after epoch {done}: with NUM_EPOCHS = "
                  f"{num_epochs} nothing is left to train, so the training cell only loads it (NUM_EPOCHS above "
                  f"{done} trains on)")
        else:
            print(f"  a checkpoint of exactly these settings is there: the run continues where it stopped, after epoch "
                  f"{done}")
    elif stopped := stopped_before_first_epoch(folder / HISTORY_FILE):
        print(f"  an earlier run of these settings stopped before its first epoch ended ({stopped}): this run "
              "starts from scratch and replaces its history and figures")
    elif (folder / HISTORY_FILE).exists():
        print("  these settings ran here before without checkpoints: this run starts from scratch and replaces "
              f"that run's {replaced}")
    else:
        print("  a configuration not trained before: training starts from scratch, earlier runs keep their folders")
    return folder


def identity_differences(saved: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """One line per setting that differs between two identities: ``name: old -> new``."""
    lines = []
    for name in sorted(set(saved) | set(current)):
        old, new = saved.get(name, "(not recorded)"), current.get(name, "(not recorded)")
        if old != new:
            lines.append(f"  {name}: {shorten_difference(old, new)}")
    return lines


def shorten_difference(old: str, new: str) -> str:
    """``old -> new``; for long values only the parts that differ.

    Long values are compared line by line (the model's printout) or, on one line, item by
    item (the optimizer's ``lr=0.05, momentum=0.9; ...``), so that the message names
    ``momentum=0.9 -> momentum=0.8`` instead of cutting both values off before it.
    """
    if len(old) <= 120 and len(new) <= 120:
        return f"{old} -> {new}"
    old_parts, new_parts = description_parts(old), description_parts(new)
    changes = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old_parts, b=new_parts, autojunk=False).get_opcodes():
        if tag != "equal":
            was, now = ", ".join(old_parts[i1:i2]) or "(nothing)", ", ".join(new_parts[j1:j2]) or "(nothing)"
            changes.append(f"{was[:100]} -> {now[:100]}")
    if not changes:  # they differ only in spacing
        return f"{old[:60]}... -> {new[:60]}..."
    more = f" (and {len(changes) - 3} more)" if len(changes) > 3 else ""
    return " | ".join(changes[:3]) + more


def description_parts(text: str) -> list[str]:
    """A value's lines, or for a one-line ``Name(a=1, b=2; c)`` its name and items, stripped."""
    if "\n" in text:
        parts = text.splitlines()
    else:
        call = re.fullmatch(r"(\w+)\((.*)\)", text)
        parts = [call[1], *split_items(call[2])] if call else split_items(text)
    return [part.strip() for part in parts if part.strip()]


def split_items(text: str) -> list[str]:
    """``text`` split at ", " and "; " outside brackets: Adam's ``betas=(0.9, 0.999)`` is one item, not two."""
    items, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth = max(depth + (char in "([{") - (char in ")]}"), 0)
        if depth == 0 and text.startswith((", ", "; "), index):
            items.append(text[start:index])
            start = index + 2
    return [*items, text[start:]]


def check_same_run(path: Path, saved: Mapping[str, str] | None, current: Mapping[str, str]) -> None:
    """Refuse to continue a checkpoint whose run had other settings, listing each difference."""
    differences = identity_differences(saved or {}, current)
    if differences:
        raise RunMismatchError(
            f"The checkpoint '{path}' belongs to a run with other settings, so continuing it would mix "
            "two different runs:\n" + "\n".join(differences) + "\n"
            "Either train the new settings in another folder (the notebooks do this by themselves: each "
            "configuration gets its own folder under RESULTS_DIR), or delete this folder's checkpoint to "
            "start this folder over."
        )


def dropout2d_rate(model: torch.nn.Module) -> float:
    """The largest ``Dropout2d`` rate in the model, 0.0 when it has none (``Identity`` in its place)."""
    return max((float(module.p) for module in model.modules() if isinstance(module, torch.nn.Dropout2d)), default=0.0)


def settings_mismatches(settings: Mapping[str, object], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        train_loader: Iterable, image_size: int) -> list[str]:
    """The named settings (the notebook's ``RUN_SETTINGS``) that the objects to be trained do not have.

    In a notebook the transforms, the loaders, the model, the optimizer and the settings are
    made in separate cells. A student who changes a setting and runs only some of those cells
    again would train objects of the old settings under the new settings' name, or the other
    way round. Four settings can be read back from the objects: the batch size from the
    training loader, the learning rate the optimizer was built with, the image size of a batch
    (``image_size``) and the model's Dropout2d rate (the largest ``nn.Dropout2d`` module's;
    a functional ``F.dropout2d`` in ``forward`` is not seen). Settings that are absent are not checked.
    """
    found = {
        "batch_size": (describe_loader(train_loader)["batch_size"], "the training loader's batch size is {}"),
        "learning_rate": (optimizer.defaults.get("lr"), "the optimizer was built with lr={}"),
        "image_size": (image_size, "the data loaders give {0}x{0} images"),
        "dropout2d": (dropout2d_rate(model), "the model's Dropout2d rate is {}"),
    }
    problems = []
    for name, (actual, description) in found.items():
        if name not in settings or not is_real_number(actual) or not is_real_number(settings[name]):
            continue
        if not math.isclose(float(settings[name]), float(actual), rel_tol=1e-6):  # np.float32(0.001) is 0.001
            problems.append(f"  {name} = {plain_number(settings[name])!r} in the run's settings, but "
                            + description.format(plain_number(actual)))
    return problems


def check_objects_match_settings(settings: Mapping[str, object] | None, model: torch.nn.Module,
                                 optimizer: torch.optim.Optimizer, train_loader: Iterable, image_size: int) -> None:
    """Refuse to train objects that were built with other settings than the run is recorded under."""
    problems = settings_mismatches(settings or {}, model, optimizer, train_loader, image_size)
    if problems:
        raise RunMismatchError(
            "The model, optimizer or data were not built with the run's settings:\n" + "\n".join(problems) + "\n"
            "A setting was probably changed and only some of the cells below it were run again. " + RERUN_CELLS
            + " If you built them this way on purpose (your own transforms or model), set the setting in the "
            "parameters cell to what they do, so that the run is recorded and named for what it trains."
        )


def check_same_identity(chosen: Mapping[str, str] | None, current: Mapping[str, str]) -> None:
    """Refuse to train when the objects describe another run than the one whose folder was chosen.

    ``chosen`` is the identity that ``choose_run_folder`` named the folder after. If the model,
    optimizer, data or settings changed since (a cell above the training cell was run again,
    but not the folder's cell), the run would be recorded in another configuration's folder.
    """
    differences = identity_differences(chosen, current) if chosen is not None else []
    if differences:
        raise RunMismatchError(
            "The run's folder was chosen for other settings than the ones about to be trained:\n"
            + "\n".join(differences) + "\n" + RERUN_CELLS
        )


# ---------------------------------------------------------------------------
# 3. One training step
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
    policy: DevicePolicy,
    scaler: torch.amp.GradScaler,
) -> torch.Tensor:
    """One forward and backward pass and one optimizer step; returns the loss, still on the device.

    Reading the loss (``.item()``) here would make the CPU wait for the GPU after every
    step; the caller reads the losses in bulk instead. ``policy`` (from ``device_policy``,
    decided once per run) gives the layout and the precision: with ``policy.amp_dtype``
    set, the forward pass runs in mixed precision; for float16 the gradient scaler keeps
    small gradients from underflowing (bf16 does not need it, and then the scaler is a no-op).
    """
    features = features.to(device, non_blocking=True)
    targets = targets.to(device, non_blocking=True)
    if policy.channels_last:
        features = features.contiguous(memory_format=torch.channels_last)
    amp_dtype = policy.amp_dtype
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        logits = model(features)
        loss = F.cross_entropy(logits, targets)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def learning_rate(optimizer: torch.optim.Optimizer) -> float:
    """The rate the optimizer trains with, as a number: the largest of its groups' rates.

    The largest, so that a frozen group (rate 0) hides no change of the others; ``float``,
    because torch also accepts a Tensor rate, which JSON cannot store.
    """
    return max(float(group["lr"]) for group in optimizer.param_groups)


def step_scheduler(scheduler, scheduler_on: str, valid_acc: float, minibatch_loss: float) -> None:
    """Step the scheduler once per epoch, and say when the learning rate changes.

    ``ReduceLROnPlateau`` gets the value it watches; every other scheduler (StepLR, ...)
    is stepped without an argument, since its ``step`` takes an epoch number, not a metric.
    The rate printed is the first one that changed: beside a frozen first group (rate 0),
    the classifier's, not "raised from 0 to 0".
    """
    before = [float(group["lr"]) for group in scheduler.optimizer.param_groups]  # a Tensor rate changes in place
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(valid_acc if scheduler_on == "valid_acc" else minibatch_loss)
    else:
        scheduler.step()
    after = [float(group["lr"]) for group in scheduler.optimizer.param_groups]
    changed = [(was, now) for was, now in zip(before, after, strict=True) if was != now]  # not a frozen first group's 0
    if changed:
        was, now = changed[0]
        print(f"Learning rate {'lowered' if now < was else 'raised'} from {was:g} to {now:g}")


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move the model to the device, in the memory layout the device policy asks for."""
    model.to(device)
    if device_policy(device).channels_last:
        model.to(memory_format=torch.channels_last)
    return model


COMPILE_MEASUREMENTS: dict[str, tuple[float, float]] = {"H200": (27.3, 0.43), "H100": (31.7, 0.36)}
"""Per GPU name: (seconds torch.compile takes, seconds it saves per epoch), as measured by the benchmark.

Both come from the benchmark's compiled rung against the uncompiled rung below it (the fast path
in mixed precision, validation batches of 1,024), each after a whole warm-up epoch:

NVIDIA H200, torch 2.11 (reference-run/benchmarks/h200-69cfdc5.json): compiling took 27.3 s,
then an epoch took 1.79 s instead of 2.23 s. So 50 epochs lose about 6 s, and only runs of
64 epochs or more gain. (An earlier H200 run, h200-run1.json, measured 20.5 s and 0.49 s.)

NVIDIA H100 80GB HBM3, torch 2.11 (reference-run/benchmarks/h100-78df2f7.json): compiling
took 31.7 s, then an epoch took 2.03 s instead of 2.39 s. So 50 epochs lose about 14 s, and
only runs of 89 epochs or more gain.

``COMPILE = "auto"`` compiles only on a GPU listed here, only for what was measured there (mixed
precision on the fast data path), and only when the run is long enough for the saving to repay
the compilation. Anything never measured is not compiled: compilation can also make a run
slower, and it takes minutes on 2 CPU cores.
"""


def should_compile(setting: bool | str, device: torch.device | str, epochs_to_train: int, *,
                   smoke_test: bool = False, use_amp: bool = True) -> tuple[bool, str]:
    """Decide the notebook's COMPILE setting ("auto", True or False); return (compile?, the reason).

    ``epochs_to_train``: the epochs this run will train, which for a run resumed from its checkpoint are
    only those left (``NUM_EPOCHS - epochs_in_checkpoint(...)``): compiling must pay off over them.
    ``use_amp``: whether the run trains in mixed precision on the fast data path (the notebook's
    ``USE_AMP``), the only setup whose compilation was measured; a float32 run or one on the classic
    path (where the GPU waits for the data anyway) is not compiled by "auto".
    """
    device = torch.device(device)
    if not (isinstance(setting, bool) or setting == "auto"):  # 1 and 0 equal True and False, but are neither
        raise ValueError(f'COMPILE must be "auto", True or False, got {setting!r}.')
    if epochs_to_train < 1:  # train_model then compiles nothing, whatever the setting
        return False, "no: the run's checkpoint already holds every epoch, so there is nothing to train"
    if setting is not True and setting is not False:
        if device.type != "cuda":
            return False, f"no: COMPILE = \"auto\" compiles only on a CUDA GPU, and this run is on the {device.type}"
        if smoke_test:
            return False, "no: COMPILE = \"auto\" never compiles in a smoke test"
        if not use_amp:
            return False, ("no: COMPILE = \"auto\" compiles only mixed-precision runs on the fast data path, where "
                           "it was measured, and this run is in float32 (set COMPILE = True to compile anyway)")
        name = torch.cuda.get_device_name(device)
        measured = next((value for key, value in COMPILE_MEASUREMENTS.items() if key in name), None)
        if measured is None:
            return False, f"no: COMPILE = \"auto\" and compiling was never measured on the {name}"
        compile_seconds, saved_per_epoch = measured
        epochs = f"{epochs_to_train} epoch{'' if epochs_to_train == 1 else 's'}"
        if saved_per_epoch * epochs_to_train <= compile_seconds:
            return False, (f"no: on the {name} compiling takes about {compile_seconds:.0f} s and saves "
                           f"{saved_per_epoch:.2f} s per epoch, which {epochs} to train do not repay")
        return True, (f"yes: on the {name} it saves about {saved_per_epoch * epochs_to_train - compile_seconds:.0f} s "
                      f"over {epochs} to train")
    return setting, f"{'yes' if setting else 'no'}: COMPILE = {setting}"


def epochs_in_checkpoint(folder: str | Path) -> int:
    """How many epochs the checkpoint in ``folder`` holds: those a resumed run will not train again (0: none).

    Only the checkpoint's small record is read; its tensors are memory-mapped, not loaded, so this is
    instant even for a 400 MB file. A checkpoint that cannot be read counts 0 here: ``train_model``
    refuses it, with the fix, before it trains.
    """
    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        return 0
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epochs_done"])
    except Exception:  # truncated, corrupt or foreign: several kinds of error, reported by train_model
        return 0


def compile_for_training(model: torch.nn.Module, train_loader: Iterable, device: torch.device,
                         policy: DevicePolicy) -> torch.nn.Module:
    """``torch.compile(model)``, tried once on one batch; the plain model if compilation fails.

    Compilation needs a C compiler and a supported GPU; where it fails (a laptop without
    one, an old driver) training goes on uncompiled with a warning instead of crashing.
    The trial runs a forward and backward pass in training mode and a forward pass in
    evaluation mode on a whole training batch (the shape training uses), so both graphs are
    compiled up front (20 s on an H200, longer on fewer CPU cores); evaluation's last,
    smaller batches compile once more when first seen. The trial changes no weights and,
    thanks to ``fork_rng``, no random numbers.
    """
    compiled = torch.compile(model)
    was_training = model.training
    amp_dtype = policy.amp_dtype
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        features = next(iter(train_loader))[0].to(device)  # drawing a batch uses random numbers: not the run's
        if policy.channels_last:
            features = features.contiguous(memory_format=torch.channels_last)
        try:
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                model.train()
                compiled(features).float().sum().backward()
                model.eval()
                with torch.no_grad():
                    compiled(features)
        except Exception as error:  # the compiler stack raises many kinds
            warnings.warn(f"torch.compile failed ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
                          "training without compilation.", stacklevel=3)
            return model
        finally:
            model.zero_grad(set_to_none=True)
            model.train(was_training)
    return compiled


# ---------------------------------------------------------------------------
# 4. Minibatch losses and the divergence guard
# ---------------------------------------------------------------------------


def divergence_limit(num_classes: int) -> float:
    """The minibatch loss above which a run counts as diverged (see ``DIVERGENCE_FACTOR``)."""
    return DIVERGENCE_FACTOR * math.log(num_classes)


def divergence_message(what: str, epoch: int, batch: int | None, num_batches: int, epochs_saved: int) -> str:
    """Say where the run broke, what usually causes it, and that the saved state is still good."""
    where = f"epoch {epoch + 1}, batch {batch}/{num_batches}" if batch is not None else f"epoch {epoch + 1}"
    saved = (f"The checkpoint holds the last good epoch ({epochs_saved}); the broken epoch was not saved. "
             if epochs_saved else "")
    return (
        f"{what} in {where}: training diverged. Likely fixes: lower the learning rate (e.g. LEARNING_RATE = "
        "0.001), check that the inputs are normalized (values around -1..1, not 0..255), and check the labels. "
        f"{saved}A run with a new learning rate is a new run: the notebook trains it from scratch in its own folder."
    )


def record_losses(pending: list[torch.Tensor], first_batch: int, minibatch_loss_list: list[float], limit: float,
                  epoch: int, num_batches: int, epochs_saved: int) -> None:
    """Bring the losses kept on the device to the host in one transfer, check them, and append them.

    ``first_batch`` is the batch index of ``pending[0]``. The first loss that is NaN,
    infinite or above ``limit`` raises ``TrainingDivergedError`` naming its epoch and
    batch, before that epoch can be checkpointed.
    """
    if not pending:
        return
    values = torch.stack(pending).float().tolist()
    pending.clear()
    offset = first_bad_loss(values, limit)
    minibatch_loss_list.extend(values[:offset])  # up to the first bad one: the good batches, for the plots
    if offset < len(values):
        loss = values[offset]
        what = f"The loss became {loss:.4g}" + ("" if not math.isfinite(loss) else f" (limit {limit:.0f})")
        raise TrainingDivergedError(divergence_message(what, epoch, first_batch + offset, num_batches,
                                                       epochs_saved))


def first_bad_loss(values: list[float], limit: float) -> int:
    """The index of the first loss that is NaN, infinite or above ``limit``; ``len(values)`` if none is."""
    return next((i for i, loss in enumerate(values) if not math.isfinite(loss) or loss > limit), len(values))


def check_finite_weights(model: torch.nn.Module, epoch: int, epochs_saved: int) -> None:
    """Refuse to save an epoch whose weights hold NaN or infinity (one check on the device, one read)."""
    finite = torch.stack([p.detach().isfinite().all() for p in model.parameters()]).all()
    if not bool(finite):
        raise TrainingDivergedError(divergence_message("The weights became NaN or infinite", epoch, None, 0,
                                                       epochs_saved))


# ---------------------------------------------------------------------------
# 5. Checkpoints
# ---------------------------------------------------------------------------


def capture_rng_state() -> dict:
    """Python's, NumPy's, torch's and CUDA's random-number state, as plain tensors and numbers.

    The data order, the random crops and the DataLoader workers' seeds of the next epoch
    are all drawn from these, so restoring them at an epoch boundary replays the same data.
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


def copy_to_host(value, buffers: dict, key: str = ""):
    """A copy of ``value`` (nested dicts/lists of tensors and numbers) that training cannot change.

    GPU tensors go to pinned CPU buffers that are reused every epoch (allocating 400 MB of
    pinned memory each time would cost more than the copy); the copies are queued on
    the GPU without waiting, in order before the next epoch's first weight update.
    """
    if isinstance(value, torch.Tensor):
        if value.device.type != "cuda":
            return value.detach().clone()
        buffer = buffers.get(key)
        if buffer is None or buffer.shape != value.shape or buffer.dtype != value.dtype:
            buffer = buffers[key] = torch.empty(value.shape, dtype=value.dtype, pin_memory=True)
        return buffer.copy_(value.detach(), non_blocking=True)
    if isinstance(value, dict):
        return {name: copy_to_host(item, buffers, f"{key}/{name}") for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(copy_to_host(item, buffers, f"{key}/{index}") for index, item in enumerate(value))
    return value


class CheckpointWriter:
    """Writes checkpoints in a background thread, so the next epoch trains while the disk works.

    ``save`` waits for the previous write (if the disk is slower than an epoch), copies the
    state to CPU memory, and hands the writing to a thread: first the best weights (when
    this epoch is the best so far), then the checkpoint. That order means ``best_model.pt``
    is never older than the best epoch the checkpoint records. Both files are written
    atomically. An error in the thread (a full disk) is raised at the next ``save`` or ``wait``.
    """

    def __init__(self, folder: Path, device: torch.device):
        self.folder = folder
        self.device = device
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.buffers: dict = {}

    def wait(self) -> None:
        """Block until the write in progress (if any) is finished; raise its error if it failed."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise RuntimeError(f"Writing a checkpoint to '{self.folder}' failed: {error}") from error

    def save(self, checkpoint: dict, is_best: bool) -> None:
        """Start writing ``checkpoint`` (and its weights as the best model when ``is_best``)."""
        self.start_writing(self.snapshot(checkpoint), is_best)

    def snapshot(self, checkpoint: dict) -> dict:
        """Wait for the previous write, then copy ``checkpoint`` to CPU memory: the part training waits for."""
        self.wait()
        return copy_to_host(checkpoint, self.buffers)

    def start_writing(self, snapshot: dict, is_best: bool) -> None:
        """Hand a ``snapshot`` to the background thread, which writes it once the GPU's copies are done."""
        copied = torch.cuda.Event() if self.device.type == "cuda" else None
        if copied is not None:  # on the stream of the training device, where the copies were queued
            copied.record(torch.cuda.current_stream(self.device))
        self.thread = threading.Thread(target=self.write, args=(snapshot, is_best, copied),
                                       name="checkpoint-writer")
        self.thread.start()

    def write(self, snapshot: dict, is_best: bool, copied) -> None:
        """The thread's work: wait for the GPU copies, then write both files."""
        try:
            if copied is not None:
                copied.synchronize()
            if is_best:
                save_atomically(self.folder / BEST_MODEL_FILE, lambda path: torch.save(snapshot["model"], path))
            save_atomically(self.folder / CHECKPOINT_FILE, lambda path: torch.save(snapshot, path))
        except BaseException as error:  # surfaced on the training thread by wait()
            self.error = error


def make_checkpoint(model, optimizer, scheduler, scaler, epochs_done: int, history: dict, identity: dict) -> dict:
    """Everything needed to continue the run: a plain dict of tensors, numbers and strings."""
    return {
        "epochs_done": epochs_done,
        "run": dict(identity),
        "history": {name: list(values) for name, values in history.items()},
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict(),
        "rng": capture_rng_state(),
    }


def load_verified(path: str | Path):
    """``torch.load(path, weights_only=True)`` after checking every byte of the file.

    torch does not check the checksums its zip archive stores, so a flipped bit inside
    the weights would load silently; ``zipfile.testzip`` recomputes them all first.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
        if damaged is not None:
            raise ValueError(f"the stored checksum of '{damaged}' does not match its bytes")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, corrupt or foreign file: several kinds of error
        raise RuntimeError(
            f"'{path}' is damaged or not a file of this tutorial ({error}). It was left as it is: "
            "delete or rename it (to start training from scratch, delete the run's checkpoint)."
        ) from error


def load_checkpoint(path: Path, model, optimizer, scheduler, scaler, identity: Mapping[str, str] | None = None
                    ) -> tuple[int, dict]:
    """Restore a run from ``path``; return (epochs done, history).

    The file is verified first, then its run's settings are compared with ``identity``
    (when given): nothing is loaded into the model or optimizer unless they match.
    """
    checkpoint = load_verified(path)
    if not {"epochs_done", "history", "model", "optimizer", "rng"} <= set(checkpoint):
        raise RuntimeError(f"'{path}' is not a checkpoint of this tutorial. Delete or rename it to start over.")
    if identity is not None:
        check_same_run(path, checkpoint.get("run"), identity)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        raise RunMismatchError(
            f"The checkpoint '{path}' was saved from a different model, so it cannot continue this one "
            f"({str(error).splitlines()[0]}). Use another folder, or delete this checkpoint to start from scratch."
        ) from error
    optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None and checkpoint["scheduler"] is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    if checkpoint.get("scaler"):  # empty when saved with the scaler off (CPU, bf16): the new scaler starts fresh
        scaler.load_state_dict(checkpoint["scaler"])
    restore_rng_state(checkpoint["rng"])
    return int(checkpoint["epochs_done"]), checkpoint["history"]


def check_writable_folder(folder: Path, what: str = "the run folder", fix: str = "RESULTS_DIR (or checkpoint_dir)"
                          ) -> None:
    """Create ``folder`` and write a file in it, or fail now (not after the first epoch), naming what to change.

    The file has a name of its own (and is deleted at once), so that two runs started at the same time in one
    RESULTS_DIR (both notebooks, say) cannot delete each other's and take their folder for unwritable.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-") as probe:
            probe.write(b"ok")
            probe.flush()
    except OSError as error:
        raise OSError(f"Cannot write to {what} '{folder}' ({error}). Choose another {fix} that you can write to.") \
            from error


def prepare_run_folder(folder: Path) -> None:
    """Create the run's folder (or fail now, not after the first epoch) and remove leftovers of killed saves."""
    check_writable_folder(folder)
    for leftover in remove_stale_temporary_files(folder):
        print(f"Removed '{leftover.name}', a temporary file left by an interrupted save.")


def prepare_run_files(checkpoint_dir: str | Path | None, history_file: str | Path | None
                      ) -> tuple[Path | None, Path | None]:
    """Return the run's folder (created, leftovers of killed saves removed) and the path of its history.

    The history goes into the run's folder unless ``history_file`` names another place. That
    place's folder is checked too (also when there are no checkpoints at all), so that a wrong
    path fails now, not after the first epoch has trained.
    """
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if folder is not None:
        prepare_run_folder(folder)
    if history_file is None:
        return folder, (folder / HISTORY_FILE if folder is not None else None)
    history_path = Path(history_file)
    if history_path.parent != folder:
        check_writable_folder(history_path.parent)
    return folder, history_path


def new_history() -> dict[str, list]:
    """An empty history: the lecture's three lists, then each epoch's seconds, its checkpoint's seconds and the
    learning rate it trained with (the largest of its parameter groups' rates), so that a run's history shows
    when the scheduler lowered it."""
    return {"minibatch_loss": [], "train_acc": [], "valid_acc": [], "epoch_seconds": [], "checkpoint_seconds": [],
            "learning_rate": []}


def make_run_info(history_path: Path | None, run_settings: Mapping[str, object] | None, identity: dict,
                  device: torch.device, amp_dtype: torch.dtype | None, iter_per_epoch: int, num_epochs: int) -> dict:
    """What the history records about the run besides its curves; the test accuracy is filled in at the end.

    ``num_epochs``, the epochs the run is to train, lets the run table tell a run whose session ended
    during training (a crash, a lost Colab connection: nothing could record why) from a finished one.
    """
    return {"run_name": history_path.parent.name if history_path else None,
            "settings": dict(run_settings or {}), "identity": identity, "device": str(device),
            "precision": str(amp_dtype).replace("torch.", "") if amp_dtype else "float32",
            "iter_per_epoch": iter_per_epoch, "num_epochs": num_epochs, "test_acc": None}


def write_history(path: Path, history: dict, extra: Mapping[str, object]) -> None:
    """Write the run's self-describing history (settings, device, precision, times, accuracies) as JSON."""
    record = {**extra, **history}
    save_atomically(path, lambda temporary: Path(temporary).write_text(json.dumps(record, indent=1)))


# ---------------------------------------------------------------------------
# 6. Watching the run
# ---------------------------------------------------------------------------


def warn_every_time(message: str, category: type[Warning], stacklevel: int) -> None:
    """Warn with ``category``, also when the student runs the same cell again.

    Python shows a warning once per code location by default, so a re-run of the training
    cell would stay silent. A blanket ``warnings.filterwarnings("ignore")``, which many
    notebooks put at the top to hide library noise, does not hide it either: these warnings
    are the tutorial's advice about this run (hours to go, a model that does not learn).
    ``stacklevel`` counts from the caller, as in ``warnings.warn``: the warning names the
    line that called ``train_model``, the student's own.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("always", category)
        warnings.warn(message, category, stacklevel=stacklevel + 1)


def warn_if_stalled(epoch_losses: list[float], valid_acc: float, num_classes: int, epoch: int) -> None:
    """Warn when the model still guesses: validation accuracy under 1.5 x chance and loss above 0.9 x ln(C).

    This is the symptom users of VGG-16 notebooks report most ("loss stuck at 2.303,
    accuracy 10%"). The thresholds: a stuck VGG-16 on the smoke data measured a mean loss
    of 2.24 (0.97 x ln 10) and 6.25% validation accuracy after 2 epochs, while learning
    runs are below 0.9 x ln(C) or above 1.5 x chance by then (see the tests). Waiting
    longer rarely helps; the usual causes are listed.
    """
    chance, guessing_loss = 100.0 / num_classes, math.log(num_classes)
    mean_loss = sum(epoch_losses) / len(epoch_losses)
    if valid_acc < 1.5 * chance and mean_loss > 0.9 * guessing_loss:
        warn_every_time(
            f"After {epoch + 1} epochs the model is still guessing: validation accuracy {valid_acc:.2f}% "
            f"(chance: {chance:.0f}%), loss {mean_loss:.3f} (guessing: ln({num_classes}) = {guessing_loss:.3f}). "
            "Consider stopping and checking: the learning rate (too high or too low), the weight "
            "initialization, the input normalization, and the data and labels (shuffled? matching?).",
            TrainingStalledWarning,
            stacklevel=3,  # the line that called train_model: warn_if_stalled <- train_model <- the notebook cell
        )


def training_time_line(seconds: float, first_epoch: int, history: Mapping) -> str:
    """The lecture's "Total Training Time" line: this session's time. A resumed run's line also says which
    epochs that was, and what all the run's epochs took (their sum, as the run table counts it)."""
    line = f"Total Training Time: {seconds / 60:.2f} min"
    if first_epoch == 0:
        return line
    done = len(history["epoch_seconds"])
    if done == first_epoch:
        trained = "nothing left to train"
    else:
        trained = f"epoch {done}" if done == first_epoch + 1 else f"epochs {first_epoch + 1} to {done}"
    return f"{line} (this session: {trained}; the run's {done} epochs: {sum(history['epoch_seconds']) / 60:.2f} min)"


def format_duration(seconds: float) -> str:
    """A long time in words a student reads at a glance: minutes up to two hours, then hours."""
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.0f} hours"


def ways_to_a_shorter_run(device: torch.device) -> str:
    """The end of the long-run warning: a GPU where there is none; on a CUDA GPU, its fast settings or fewer epochs."""
    if device.type == "cuda":
        return ("for the real run lower NUM_EPOCHS, or check that this GPU's fast settings are on "
                "(FAST_DATA_PATH = \"auto\", PRECISION = \"auto\", DETERMINISTIC = False).")
    return "for the real run use a CUDA GPU (on Colab: Runtime -> Change runtime type -> GPU), or lower NUM_EPOCHS."


def warn_if_long(seconds_per_step: float, steps_left: int, device: torch.device) -> None:
    """Warn when the training steps still to come will take more than ``LONG_RUN_SECONDS``.

    On a laptop CPU, or on Colab without a GPU, the lecture's 50 epochs take a day or more
    (VGG-16 at 64x64 trains about 30 images/s on a 2-core CPU), and the first per-epoch
    line would come only after half an hour. The estimate counts the training steps
    only, so the run takes at least this long (each epoch also has its evaluation passes).
    """
    seconds_left = seconds_per_step * steps_left
    if seconds_left <= LONG_RUN_SECONDS:
        return
    warn_every_time(
        f"This run will take long on {device.type}: a training step takes {seconds_per_step:.2f} s here, so the "
        f"{steps_left:,} steps still to come take about {format_duration(seconds_left)}, and evaluating each "
        "epoch adds to that. To check that the notebook runs, stop it and set SMOKE_TEST = True (about a "
        f"minute); {ways_to_a_shorter_run(device)}",
        LongRunWarning,
        stacklevel=5,  # the line that called train_model: warn_if_long <- PaceCheck <- train_one_epoch <- train_model
    )


def finished_at(loss: torch.Tensor) -> float:
    """The time at which the step that computed ``loss`` had finished (waits for the device, once)."""
    loss.item()
    return time.perf_counter()


class PaceCheck:
    """Times training steps 1 to ``PACE_STEPS`` of a run's first epoch and warns once if the run will take hours.

    Step 0 is not timed: it includes one-off set-up (starting the DataLoader workers,
    cuDNN's search for the fastest kernels). Reading the loss waits for the device, but
    only twice per run, so the fast path still never waits at every step.
    """

    def __init__(self, steps_left: int, device: torch.device):
        self.steps_left = steps_left  # training steps from the first timed one to the end of the run
        self.device = device
        self.start: float | None = None

    def after_step(self, batch_idx: int, loss: torch.Tensor) -> None:
        if batch_idx == 0:
            self.start = finished_at(loss)
        elif batch_idx == PACE_STEPS:
            seconds_per_step = (finished_at(loss) - self.start) / PACE_STEPS
            warn_if_long(seconds_per_step, self.steps_left - PACE_STEPS, self.device)


def running_in_jupyter() -> bool:
    """True inside a Jupyter (or Colab) kernel, where figures can be shown and updated inline."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


class LivePlot:
    """The loss and accuracy curves so far, in one notebook output that is redrawn in place during training.

    Shown before the first epoch (empty, or the curves of a resumed run), the figure stays
    above the training log instead of scrolling away with it. Drawing it takes a tenth of a
    second or two (matplotlib renders a PNG): nothing after a CPU's 20-second epoch, but a
    tenth of the run after a fast GPU's 1.5-second epochs. So ``redraw`` draws only once the
    time since the last drawing is at least ``1 / LIVE_PLOT_MAX_SHARE`` times what that
    drawing took (at most 5% of the run), and always after the last epoch: every epoch on a
    CPU or a T4, every few epochs on an H200.
    """

    def __init__(self, history: dict, iter_per_epoch: int, subtitle: str | None):
        from IPython.display import display

        self.iter_per_epoch, self.subtitle = iter_per_epoch, subtitle
        started = time.perf_counter()
        self.handle = display(self.figure(history), display_id=True)
        self.drawn_at = time.perf_counter()
        self.draw_seconds = self.drawn_at - started

    def figure(self, history: dict):
        return plot_live_progress(history["minibatch_loss"], history["train_acc"], history["valid_acc"],
                                  self.iter_per_epoch, subtitle=self.subtitle)

    def redraw(self, history: dict, last_epoch: bool) -> None:
        """Redraw the curves after an epoch, if it is the last one or drawing costs little by now."""
        started = time.perf_counter()
        if not last_epoch and started - self.drawn_at < self.draw_seconds / LIVE_PLOT_MAX_SHARE:
            return
        self.handle.update(self.figure(history))
        self.drawn_at = time.perf_counter()
        self.draw_seconds = self.drawn_at - started

    def catch_up(self, history: dict) -> None:
        """After an interrupt or a divergence, draw everything so far, the unfinished epoch's losses included.

        A second Ctrl-C while it draws skips the drawing: the first one is being handled.
        """
        if history["minibatch_loss"]:
            try:
                self.redraw(history, last_epoch=True)
            except KeyboardInterrupt:
                pass


# ---------------------------------------------------------------------------
# 7. The loop
# ---------------------------------------------------------------------------


def train_one_epoch(step: Callable, model, train_loader, epoch: int, num_epochs: int, logging_interval: int,
                    minibatch_loss_list: list[float], loss_limit: float, epochs_saved: int, *,
                    pace: PaceCheck | None = None) -> None:
    """The lecture's inner loop: one pass over the training batches, logging every few batches.

    The losses stay on the device; they are read (and checked for divergence) in one
    transfer at each logging point and at the end of the epoch, not after every step.
    ``pace`` times the first steps (in a run's first epoch) to warn of a run that takes hours.
    """
    model.train()
    num_batches = len(train_loader)
    losses_before = len(minibatch_loss_list)  # the earlier epochs': the rest count this epoch's recorded batches
    pending: list[torch.Tensor] = []  # losses of the batches since the last logging point, on the device
    try:
        for batch_idx, (features, targets) in enumerate(train_loader):
            pending.append(step(features, targets))
            if pace is not None:
                pace.after_step(batch_idx, pending[-1])
            if not batch_idx % logging_interval:
                record_losses(pending, len(minibatch_loss_list) - losses_before, minibatch_loss_list, loss_limit,
                              epoch, num_batches, epochs_saved)
                print(f"Epoch: {epoch + 1:03d}/{num_epochs:03d} "
                      f"| Batch {batch_idx:04d}/{num_batches:04d} "
                      f"| Loss: {minibatch_loss_list[-1]:.4f}")
    except KeyboardInterrupt:  # keep the losses of the batches that did finish, for the plots; if one is bad, the
        # run diverged before the student stopped it, and it ends as a diverged run: said so, no NaN kept or saved
        try:
            record_losses(pending, len(minibatch_loss_list) - losses_before, minibatch_loss_list, loss_limit, epoch,
                          num_batches, epochs_saved)
        except TrainingDivergedError as diverged:
            raise diverged from None  # the divergence is the news, not the Ctrl-C that came after it
        raise
    record_losses(pending, len(minibatch_loss_list) - losses_before, minibatch_loss_list, loss_limit, epoch,
                  num_batches, epochs_saved)


def evaluate_epoch(forward, train_loader, valid_loader, device, use_amp, epoch: int, num_epochs: int,
                   history: dict) -> tuple[float, float]:
    """The lecture's end of an epoch: accuracy on the training and validation sets, printed and recorded."""
    train_acc = compute_accuracy(forward, train_loader, device, use_amp=use_amp)
    valid_acc = compute_accuracy(forward, valid_loader, device, use_amp=use_amp)
    print(f"Epoch: {epoch + 1:03d}/{num_epochs:03d} | Train: {train_acc:.2f}% | Validation: {valid_acc:.2f}%")
    history["train_acc"].append(train_acc)
    history["valid_acc"].append(valid_acc)
    return train_acc, valid_acc


def save_epoch(writer: CheckpointWriter, checkpoint: dict, history: dict) -> None:
    """Hand the epoch's checkpoint to the background writer; record how long the training thread was held up.

    The time is recorded in the history and in the checkpoint's own copy of it, so a resumed run keeps it:
    it is the wait for the previous write plus the copy, known before the thread starts writing the copy
    (starting the thread, about 0.1 ms, is not counted).
    """
    start = time.perf_counter()
    snapshot = writer.snapshot(checkpoint)
    seconds = time.perf_counter() - start
    snapshot["history"]["checkpoint_seconds"].append(seconds)
    *earlier, latest = history["valid_acc"]  # the best epoch is the first to reach the highest accuracy, as
    writer.start_writing(snapshot, is_best=latest > max(earlier, default=-math.inf))  # the run table counts it
    history["checkpoint_seconds"].append(seconds)


TRAINED_MARK = "trained_by_train_model"  # an attribute train_model sets on every model it trains


def mark_as_trained(model: torch.nn.Module) -> None:
    """Note on the model object that its weights are no longer its initial ones (see ``check_fresh_start``)."""
    setattr(model, TRAINED_MARK, True)


def check_fresh_start(optimizer: torch.optim.Optimizer, model: torch.nn.Module | None = None) -> None:
    """Refuse to record a new run that would start from an already-trained model.

    Re-running only the training cell after an interrupt in the first epoch (nothing saved
    yet), or after changing a setting without rebuilding the model, would train on from
    the old weights and momentum while the run folder says "from scratch". A new optimizer
    hides the momentum, not the weights: a model that ``train_model`` has trained is marked.
    """
    if optimizer.state:
        raise RuntimeError(
            "This optimizer has already taken steps (it holds momentum from an earlier training) and there is no "
            "checkpoint of this run to continue, so the run would start from an already-trained model. Build a "
            "fresh model and optimizer first: in the notebook, run it again from the top, or from the "
            "Reproducibility cell (the seeds) down."
        )
    if model is not None and getattr(model, TRAINED_MARK, False):
        raise RuntimeError(
            "This model has already been trained (by an earlier train_model call in this session), and there is "
            "no checkpoint of this run to continue, so the new run would start from trained weights instead of "
            "from scratch. Build a fresh model first: in the notebook, run it again from the Reproducibility "
            "cell (the seeds) down, so that the new model also gets the seed's initial weights."
        )


def resume_if_possible(checkpoint: Path | None, resume: bool, model, optimizer, scheduler, scaler,
                       history: dict, num_epochs: int, identity: dict) -> int:
    """Load ``checkpoint`` into the run if asked and present; return the number of epochs already done."""
    if checkpoint is None or not resume or not checkpoint.exists():
        return 0
    epochs_done, saved = load_checkpoint(checkpoint, model, optimizer, scheduler, scaler, identity)
    for name, values in saved.items():
        history.setdefault(name, []).extend(values)
    if epochs_done < num_epochs:
        print(f"Resuming from epoch {epochs_done + 1} (checkpoint '{checkpoint}')")
    elif epochs_done == num_epochs:
        print(f"The checkpoint '{checkpoint}' already holds all {epochs_done} epochs: nothing left to train "
              "(raise num_epochs to train longer).")
    else:
        print(f"The checkpoint '{checkpoint}' holds {epochs_done} epochs, more than num_epochs={num_epochs}: "
              f"nothing to train. The model and the history are those after epoch {epochs_done}, not "
              f"{num_epochs}; to stop at {num_epochs} epoch{'' if num_epochs == 1 else 's'}, train this "
              "configuration from scratch in another folder (in the notebooks: another RESULTS_DIR).")
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
    history_file: str | Path | None = None,
    run_settings: Mapping[str, object] | None = None,
    run_identity: Mapping[str, str] | None = None,
    compile_model: bool = False,
    live_plot: bool = False,
    figure_subtitle: str | None = None,
    stall_check_epoch: int | None = 2,
) -> tuple[list[float], list[float], list[float]]:
    """Train ``model`` and return ``(minibatch_loss_list, train_acc_list, valid_acc_list)``.

    As in the lecture: after every epoch the accuracy on the training and validation
    sets is printed, the scheduler (if any) is stepped on ``scheduler_on`` (the
    validation accuracy, or the last minibatch loss), and at the end the test accuracy
    is printed. New, all optional:

    - ``use_amp``: mixed precision (None: automatic, on for CUDA only).
    - ``num_classes``: checked against the model's output width (None: taken from the data).
    - ``checkpoint_dir``: the run's folder; a checkpoint and the best validation weights
      are saved there after every epoch (in the background), and with ``resume=True`` a
      checkpoint of the same run is continued. A checkpoint of a run with other settings
      (see ``describe_run``; ``run_settings`` adds the caller's, e.g. the seed) is refused.
    - ``run_settings``: the batch size, learning rate, image size and Dropout2d rate among them
      must be those of the loaders, optimizer and model (a notebook cell not run again is refused).
    - ``run_identity``: the identity the run's folder was chosen for (``choose_run_folder``); the
      objects must still describe that run.
    - ``history_file``: where to keep the run's history as JSON (default: in ``checkpoint_dir``).
    - ``compile_model``: train with ``torch.compile`` (falls back to the plain model if it fails).
    - ``live_plot``: in Jupyter, redraw the loss and accuracy curves after each epoch (after every
      few epochs where epochs are so short that drawing would slow the run; see ``LivePlot``).
    - ``stall_check_epoch``: after this epoch, warn if the model is still guessing (None: never).
    - A run whose first training steps show that it will take over an hour warns (``LongRunWarning``).
    - Interrupting (Ctrl-C, Jupyter's stop button), also during a save or the final test
      pass, returns the history so far; a loss that explodes raises ``TrainingDivergedError``
      before the broken epoch is saved.
    """
    check_training_settings(num_epochs, scheduler_on, logging_interval)
    check_scheduler_mode(scheduler, scheduler_on)
    check_device_chosen(device, run_settings)
    device = torch.device(device)
    policy = device_policy(device, use_amp)
    scaler = make_grad_scaler(device, policy.amp_dtype)
    identity = describe_run(model, optimizer, scheduler, train_loader, valid_loader, device=device,
                            use_amp=use_amp, settings=run_settings)
    check_same_identity(run_identity, identity)
    folder, history_path = prepare_run_files(checkpoint_dir, history_file)
    prepare_model(model, device)
    num_classes, image_size = check_model_output(model, valid_loader, device, num_classes, use_amp=use_amp)
    check_objects_match_settings(run_settings, model, optimizer, train_loader, image_size)
    history = new_history()
    minibatch_loss_list, train_acc_list = history["minibatch_loss"], history["train_acc"]  # the lecture's lists,
    valid_acc_list = history["valid_acc"]  # filled in place (also by a resumed checkpoint)
    checkpoint = folder / CHECKPOINT_FILE if folder is not None else None
    first_epoch = resume_if_possible(checkpoint, resume, model, optimizer, scheduler, scaler, history, num_epochs,
                                     identity)
    if first_epoch > 0:
        mark_as_trained(model)  # it holds the checkpoint's trained weights now
    elif history_path is not None:
        check_fresh_start(optimizer, model)
    # compiled after the resume, and only with an epoch left to train (the trial draws its random numbers aside)
    forward = (compile_for_training(model, train_loader, device, policy) if compile_model and first_epoch < num_epochs
               else model)

    def step(features, targets):
        loss = training_step(forward, features, targets, optimizer, device, policy, scaler)
        mark_as_trained(model)  # after its first step, not before: a run stopped earlier may simply start again
        return loss

    run_info = make_run_info(history_path, run_settings, identity, device, policy.amp_dtype, len(train_loader),
                             max(num_epochs, first_epoch))  # a checkpoint of more epochs than asked: the run has them
    writer = CheckpointWriter(folder, device) if folder is not None else None
    live = LivePlot(history, len(train_loader), figure_subtitle) if live_plot and running_in_jupyter() else None
    epochs_saved, epoch = first_epoch, first_epoch
    start_time = time.perf_counter()
    try:
        for epoch in range(first_epoch, num_epochs):
            epoch_start = time.perf_counter()
            pace = PaceCheck((num_epochs - epoch) * len(train_loader) - 1, device) if epoch == first_epoch else None
            train_one_epoch(step, model, train_loader, epoch, num_epochs, logging_interval, minibatch_loss_list,
                            divergence_limit(num_classes), epochs_saved, pace=pace)
            train_acc, valid_acc = evaluate_epoch(forward, train_loader, valid_loader, device, use_amp, epoch,
                                                  num_epochs, history)
            history["epoch_seconds"].append(time.perf_counter() - epoch_start)
            history["learning_rate"].append(learning_rate(optimizer))  # before the scheduler's step
            print(f"Time elapsed: {(time.perf_counter() - start_time) / 60:.2f} min")
            if live is not None:
                live.redraw(history, last_epoch=epoch + 1 == num_epochs)
            if scheduler is not None:
                step_scheduler(scheduler, scheduler_on, valid_acc, minibatch_loss_list[-1])
            check_finite_weights(model, epoch, epochs_saved)
            if writer is not None:
                save_epoch(writer, make_checkpoint(model, optimizer, scheduler, scaler, epoch + 1, history, identity),
                           history)
                epochs_saved = epoch + 1
            if history_path is not None:
                write_history(history_path, history, run_info)
            if epoch + 1 == stall_check_epoch:
                warn_if_stalled(minibatch_loss_list[-len(train_loader):], valid_acc, num_classes, epoch)
        if writer is not None:
            writer.wait()
        print(training_time_line(time.perf_counter() - start_time, first_epoch, history))
        run_info["test_acc"] = compute_accuracy(forward, test_loader, device, use_amp=use_amp)
        print(f"Test accuracy {run_info['test_acc']:.2f}%")
        remove_interrupt_weights(folder)
    except KeyboardInterrupt:
        if live is not None:
            live.catch_up(history)
        run_info["stopped"] = report_interrupt(model, writer, folder, num_epochs, len(valid_acc_list))
    except TrainingDivergedError:
        if live is not None:
            live.catch_up(history)
        if history_path is not None:  # the run's record shows the losses up to the explosion, and says why it ends
            write_history(history_path, history, {**run_info, "stopped": f"diverged in epoch {epoch + 1}"})
        raise
    finally:
        if writer is not None:
            finish_writing(writer)
    if history_path is not None:
        write_history(history_path, history, run_info)
    return minibatch_loss_list, train_acc_list, valid_acc_list


def remove_interrupt_weights(folder: Path | None) -> None:
    """Once the run has finished, delete the weights an earlier interrupt saved, saying so.

    They are the weights in the middle of an unfinished epoch (200 MB for VGG-16); the run
    that went on from the checkpoint has replaced them with its own, finished ones.
    """
    if folder is None:  # checkpoints off: no interrupt weights were saved
        return
    path = folder / INTERRUPTED_MODEL_FILE
    if path.exists():
        path.unlink()
        print(f"Removed '{path}', the weights saved when an earlier session was interrupted: the run has finished.")


def finish_writing(writer: CheckpointWriter) -> None:
    """Let a checkpoint write in progress finish, so the files on disk are complete (also after Ctrl-C)."""
    try:
        writer.wait()
    except KeyboardInterrupt:
        print("The checkpoint write in progress continues in the background; its file appears when it is complete.")


def report_interrupt(model, writer: CheckpointWriter | None, folder: Path | None, num_epochs: int,
                     epochs_complete: int) -> str:
    """After Ctrl-C: save the current weights, say what was completed and how to go on; return it for the history."""
    stopped = f"interrupted after {epochs_complete} of {num_epochs} epochs"
    if epochs_complete >= num_epochs:
        stopped += ", in the test pass"
    print(f"\nTraining {stopped}. The history so far is returned, so the plots below still work.")
    if folder is not None:
        finish_writing(writer)
        saved = save_atomically(folder / INTERRUPTED_MODEL_FILE, lambda path: torch.save(model.state_dict(), path))
        print(f"The weights at the moment of the interrupt are in '{saved}'.")
    if folder is not None and (folder / CHECKPOINT_FILE).exists():
        print(f"Run the training again with the same settings to resume from the last saved epoch "
              f"(checkpoint '{folder / CHECKPOINT_FILE}').")
    else:
        print(("Checkpoints are off for this run" if folder is None else "No epoch of this run was saved yet")
              + ", so it cannot be continued: to train it again, run the notebook again from the Reproducibility "
              "cell (the seeds) down.")
    return stopped
