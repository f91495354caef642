"""Figures for the VGG-16 tutorial: data in, Figure out.

Every function returns a ``matplotlib.figure.Figure`` and never calls ``plt.show()``;
in Jupyter the returned figure is drawn inline. Given ``results_dir``, a function also
saves its figure there as PNG. The figures are built without pyplot's global state,
so calling them in a loop does not pile up open figures.

Every figure has a title, and every function takes ``subtitle`` (keyword-only), shown
as the title's second line: the notebooks pass "smoke test (synthetic data)" in smoke
mode, so a figure from a smoke test can never be mistaken for a real result. Every axis
that counts epochs shows whole epochs only.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import offset_copy
from PIL import Image

from helper_evaluation import (
    check_count,
    class_names_in_order,
    predict_batches,
    rate_change_epochs,
    resize_like_cifar10,
    save_atomically,
)


def save_figure(fig: Figure, results_dir: str | os.PathLike | None, file_name: str) -> None:
    """Save ``fig`` as ``results_dir/file_name`` (PNG) when a results folder is given.

    The figure's title goes into the PNG's metadata too, so a saved figure says which
    run (or smoke test) it belongs to even when it is looked at on its own.
    """
    if results_dir is not None:
        metadata = {"Title": fig.get_suptitle()}
        save_atomically(Path(results_dir) / file_name,
                        lambda path: fig.savefig(path, format="png", dpi=150, metadata=metadata))


def fit_lines(text: str, max_chars: int) -> str:
    """Break each line of ``text`` longer than ``max_chars`` after a space, "_" or "-" (a run name has no spaces)."""
    lines = []
    for line in text.split("\n"):
        current = ""
        for piece in re.findall(r"[^ _-]+[ _-]*|[ _-]+", line):
            if current and len(current) + len(piece) > max_chars:
                lines.append(current.rstrip())
                current = ""
            current += piece
        lines.append(current.rstrip())
    return "\n".join(lines)


def set_title(fig: Figure, title: str, subtitle: str | None = None) -> None:
    """Title ``fig``; a ``subtitle`` (say "smoke test (synthetic data)") becomes the title's second line.

    A subtitle wider than the figure (a run name with several changed settings) is broken
    into lines at " | ", then after "_" or "-": the saved PNG would cut it at both ends,
    losing "smoke test" and the run's six identifying characters.
    """
    text = title if not subtitle else f"{title}\n{subtitle}"
    suptitle = fig.suptitle(text)
    width = suptitle.get_window_extent().width
    if subtitle and width > 0.95 * fig.bbox.width:
        longest = max(len(line) for line in text.split("\n"))
        suptitle.set_text(fit_lines(text.replace(" | ", "\n"), int(longest * 0.95 * fig.bbox.width / width)))


def use_whole_epoch_ticks(axis) -> None:
    """Put ticks on ``axis`` (an x- or y-axis counting epochs) at whole epochs only.

    Matplotlib's default ticks divide a short range finely: a one-epoch run would show
    0.96, 0.98, ... 1.04, and the live plot 0.5, 1.5 -- epochs that do not exist.
    """
    axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def averaging_window(num_values: int, window: int) -> int:
    """The running average's window: ``window`` values, or half of them for a short run (at least 1).

    Shrunk so that the curve is never longer than the data it averages and still has points to draw.
    """
    return max(1, min(window, num_values // 2))


def running_average_label(num_values: int, window: int) -> str:
    """The legend's name for the running average, with its window (shrunk in a short run, so say it)."""
    batches = averaging_window(num_values, window)
    return f"Running average ({batches} batch{'' if batches == 1 else 'es'})"


def running_average(values: Sequence[float], window: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each ``window`` consecutive values, with the x position of the window's last value.

    For short runs the window shrinks (``averaging_window``).
    """
    values = np.asarray(values, dtype=float)
    if len(values) == 0:  # the live plot before the first epoch
        return np.arange(0), values
    window = averaging_window(len(values), window)
    averaged = np.convolve(values, np.ones(window) / window, mode="valid")
    return np.arange(window - 1, len(values)), averaged


def epoch_ticks(num_epochs: int) -> list[int]:
    """About ten evenly spaced epochs from 0, ending at ``num_epochs`` itself (25 epochs: 0, 2, ..., 22, 25).

    The run's last epoch is always marked: a plain ``range`` with step 2 would stop at 24.
    """
    step = max(1, num_epochs // 10)
    epochs = list(range(0, num_epochs + 1, step))
    if epochs[-1] != num_epochs:
        if num_epochs - epochs[-1] <= step / 2:  # too close to share the axis: the end replaces it
            epochs[-1] = num_epochs
        else:
            epochs.append(num_epochs)
    return epochs


def lone_point_marker(values: Sequence[float]) -> str | None:
    """A marker for a curve of a single value, which a line alone does not show; None (a plain line) otherwise.

    A run whose loss breaks at its second batch keeps one minibatch loss (the first batch's, the good one before
    the bad): its loss plot would look empty.
    """
    return "o" if len(values) == 1 else None


def plot_training_loss(
    minibatch_loss_list: Sequence[float],
    num_epochs: int,
    iter_per_epoch: int,
    results_dir: str | os.PathLike | None = None,
    averaging_iterations: int = 100,
    *,
    subtitle: str | None = None,
) -> Figure:
    """Minibatch loss per iteration with its running average, and a second x-axis in whole epochs."""
    fig = Figure(figsize=(7, 4.5))
    ax1 = fig.add_subplot(1, 1, 1)
    ax1.plot(range(len(minibatch_loss_list)), minibatch_loss_list, marker=lone_point_marker(minibatch_loss_list),
             label="Minibatch loss")
    ax1.plot(*running_average(minibatch_loss_list, averaging_iterations),
             label=running_average_label(len(minibatch_loss_list), averaging_iterations))
    if len(minibatch_loss_list) > 1000:  # the first iterations' large losses would squash the rest
        ax1.set_ylim([0, np.max(minibatch_loss_list[1000:]) * 1.5])
    ax1.set_xlabel("Iterations")
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))  # not 0.2, 0.4, ... for a short run
    ax1.set_ylabel("Loss")
    ax1.legend()
    last_epoch_end = num_epochs * iter_per_epoch  # one past the last iteration: outside the data's limits in short runs
    ax1.set_xlim(right=max(ax1.get_xlim()[1], last_epoch_end))

    ax2 = ax1.twiny()
    epochs = epoch_ticks(num_epochs)
    ax2.set_xticks([epoch * iter_per_epoch for epoch in epochs])
    ax2.set_xticklabels(epochs)
    ax2.xaxis.set_ticks_position("bottom")
    ax2.xaxis.set_label_position("bottom")
    ax2.spines["bottom"].set_position(("outward", 45))
    ax2.set_xlabel("Epochs")
    ax2.set_xlim(ax1.get_xlim())
    set_title(fig, "Training loss", subtitle)
    fig.tight_layout()
    save_figure(fig, results_dir, "plot_training_loss.png")
    return fig


def mark_no_epochs(ax) -> None:
    """Say on an accuracy-per-epoch ``ax`` that no epoch has finished, on a 0-100% scale without epoch ticks.

    A run interrupted in its first epoch (as the CPU's LongRunWarning advises) has no
    accuracy yet; matplotlib would draw empty axes from -0.04% to 0.04% over an "epoch 0".
    """
    ax.set_ylim(0.0, 100.0)
    ax.set_xticks([])
    ax.text(0.5, 0.5, "No epoch has finished yet:\naccuracy is measured at the end of each epoch.",
            ha="center", va="center", transform=ax.transAxes)


def draw_accuracy_curves(ax, train_acc_list: Sequence[float], valid_acc_list: Sequence[float]) -> None:
    """Training and validation accuracy per epoch on ``ax`` (markers, so a one-epoch run is visible too)."""
    if len(train_acc_list) != len(valid_acc_list):
        raise ValueError(f"train_acc_list has {len(train_acc_list)} epochs but valid_acc_list has "
                         f"{len(valid_acc_list)}: pass the two lists that train_model returned for one run.")
    epochs = np.arange(1, len(train_acc_list) + 1)
    ax.plot(epochs, train_acc_list, marker="o", label="Training")
    ax.plot(epochs, valid_acc_list, marker="o", label="Validation")
    ax.set_xlabel("Epoch")
    use_whole_epoch_ticks(ax.xaxis)
    ax.set_ylabel("Accuracy (%)")
    ax.legend()
    if len(train_acc_list) == 0:  # the lists have the same length (checked above)
        mark_no_epochs(ax)


def plot_accuracy(
    train_acc_list: Sequence[float],
    valid_acc_list: Sequence[float],
    results_dir: str | os.PathLike | None = None,
    *,
    subtitle: str | None = None,
) -> Figure:
    """Training and validation accuracy per epoch."""
    fig = Figure(figsize=(7, 4.5))
    draw_accuracy_curves(fig.add_subplot(1, 1, 1), train_acc_list, valid_acc_list)
    set_title(fig, "Accuracy", subtitle)
    fig.tight_layout()
    save_figure(fig, results_dir, "plot_accuracy.png")
    return fig


def prediction_title(predicted: int, true: int, class_dict: Mapping[int, str] | Sequence[str] | None,
                     confidence=None) -> str:
    """``P: cat`` over ``T: dog`` (class numbers without ``class_dict``), with the prediction's probability if given.

    Two lines, as in the lecture: on one line, long names such as "automobile (99.8%)"
    run into the neighbouring image's title.
    """
    names = [class_name(class_dict, int(label)) if class_dict is not None else str(int(label))
             for label in (predicted, true)]
    probability = f" ({100 * float(confidence):.1f}%)" if confidence is not None else ""
    return f"P: {names[0]}{probability}\nT: {names[1]}"


def class_name(class_dict: Mapping[int, str] | Sequence[str], label: int) -> str:
    """The name of ``label`` from a ``{label: name}`` dict or a list of names (``CIFAR10_CLASSES``).

    A missing name is reported as such, not as a bare ``KeyError`` from inside the figure.
    """
    try:
        return class_dict[label]
    except (KeyError, IndexError):
        raise ValueError(f"class_dict has no name for label {label}: pass one for every class, "
                         "e.g. dict(enumerate(CIFAR10_CLASSES)).") from None


def draw_image_tensor(ax, image: torch.Tensor) -> None:
    """Draw one image (C, H, W) with values in [0, 1] (or uint8 0 to 255) on ``ax``: clipped, grey for one channel."""
    if image.dtype == torch.uint8:  # stored images (0 to 255), not yet converted: scale, or every pixel is white
        image = image / 255
    pixels = image.detach().float().cpu().permute(1, 2, 0).clamp(0, 1).numpy()
    if pixels.shape[-1] == 1:
        ax.imshow(pixels.squeeze(-1), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(pixels)


def image_grid(
    images: torch.Tensor,
    titles: Sequence[str],
    unnormalizer: Callable | None,
    nrows: int = 3,
    ncols: int = 5,
    suptitle: str | None = None,
    *,
    subtitle: str | None = None,
) -> Figure:
    """Show up to nrows x ncols images (N, C, H, W) with a two-line title each, un-normalized for display.

    Each row is 2.8 inches high: 2.2 for the image and the rest for its two title lines,
    so a title never runs into the image above it; 0.6 inch on top holds the figure's
    two-line title.
    """
    fig = Figure(figsize=(2.2 * ncols, 2.8 * nrows + 0.6))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    images = images.detach().cpu()  # uint8 stays uint8 for draw_image_tensor, which scales it
    if unnormalizer is not None:
        images = unnormalizer(images.float())
    for index, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if index >= len(images):
            continue
        draw_image_tensor(ax, images[index])
        ax.set_title(titles[index], fontsize=9)
    if suptitle:
        set_title(fig, suptitle, subtitle)
    fig.tight_layout()
    return fig


def show_examples(
    model: torch.nn.Module,
    data_loader,
    unnormalizer: Callable | None = None,
    class_dict: Mapping[int, str] | None = None,
    *,
    results_dir: str | os.PathLike | None = None,
    use_amp: bool | None = None,
    subtitle: str | None = None,
) -> Figure:
    """A 3x5 grid of the loader's first 15 images titled ``P: <prediction>`` over ``T: <true label>``.

    Batches are read until there are 15 images (a batch size under 15 would leave blank
    cells). ``use_amp`` is passed to ``predict_batches``: pass what training used, so the
    grid shows the predictions that the printed accuracy counted (``False``: float32).
    """
    device = next(model.parameters()).device
    batches = []  # (features, predictions, targets) of each batch read
    for features, logits, targets in predict_batches(model, data_loader, device, use_amp=use_amp):
        batches.append((features.float().cpu(), logits.argmax(dim=1).cpu(), targets.cpu()))
        if sum(len(batch[2]) for batch in batches) >= 15:
            break
    if not batches:
        raise ValueError("The data loader yielded no images to show.")
    features, predictions, targets = (torch.cat(parts)[:15] for parts in zip(*batches, strict=True))
    titles = [prediction_title(p, t, class_dict) for p, t in zip(predictions, targets, strict=True)]
    fig = image_grid(features, titles, unnormalizer, suptitle="Predictions (P) and true labels (T)",
                     subtitle=subtitle)
    save_figure(fig, results_dir, "show_examples.png")
    return fig


def show_confident_mistakes(
    model: torch.nn.Module,
    data_loader,
    unnormalizer: Callable | None = None,
    class_dict: Mapping[int, str] | None = None,
    *,
    num_images: int = 15,
    results_dir: str | os.PathLike | None = None,
    use_amp: bool | None = None,
    subtitle: str | None = None,
) -> Figure:
    """The wrongly classified images the model was most sure about, titled ``P: cat (97.0%)`` over ``T: dog``.

    These are the most instructive errors: ambiguous images, odd viewpoints, and now
    and then a wrong label in the data set itself. ``use_amp`` as in ``show_examples``.
    """
    check_count("num_images", num_images)  # before the whole loader is run: 0 would read as "no mistakes"
    device = next(model.parameters()).device
    mistakes = None  # (images, confidences, predictions, targets) of the most confident mistakes so far
    for features, logits, targets in predict_batches(model, data_loader, device, use_amp=use_amp):
        confidence, predictions = logits.softmax(dim=1).max(dim=1)
        wrong = (predictions != targets).cpu()
        batch = (features.float().cpu()[wrong], confidence.cpu()[wrong], predictions.cpu()[wrong],
                 targets.cpu()[wrong])
        if mistakes is not None:
            batch = tuple(torch.cat(pair) for pair in zip(mistakes, batch, strict=True))
        most_confident = batch[1].topk(min(num_images, len(batch[1]))).indices
        mistakes = tuple(values[most_confident] for values in batch)
    if mistakes is None:
        raise ValueError("The data loader yielded no images to look for mistakes in.")
    images, confidences, predictions, targets = mistakes
    titles = [prediction_title(p, t, class_dict, c) for p, c, t in zip(predictions, confidences, targets, strict=True)]
    if len(images):  # as many rows as the mistakes fill, so a handful of mistakes leaves no blank rows
        fig = image_grid(images, titles, unnormalizer, nrows=math.ceil(len(images) / 5), ncols=5,
                         suptitle="Most confident mistakes", subtitle=subtitle)
    else:  # a title and one line, not a page of empty cells (a figure without axes would not even be displayed)
        fig = Figure(figsize=(6, 1.4))
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, "Every image was classified correctly.", ha="center", va="center")
        set_title(fig, "No mistakes in these images", subtitle)
    save_figure(fig, results_dir, "confident_mistakes.png")
    return fig


def show_image_as_network_sees_it(
    image: Image.Image,
    network_input: torch.Tensor,
    predictions: Sequence[tuple[str, float]],
    unnormalizer: Callable | None = None,
    *,
    results_dir: str | os.PathLike | None = None,
    subtitle: str | None = None,
) -> Figure:
    """Your picture, its 32x32 CIFAR-10 version and the network's input, with the top predictions as bars.

    Takes what ``classify_image`` returns. Seeing the 32x32 version explains many a
    surprising answer: at that size a cat's face is a few pixels, and a wide picture
    is squeezed. ``unnormalizer`` undoes the transforms' ``Normalize`` for display.
    Saved as ``my_picture.png`` in ``results_dir``, when given.
    """
    if not predictions:
        raise ValueError("There are no predictions to show: classify_image returns at least one.")
    fig = Figure(figsize=(14, 3.8))
    picture_ax, small_ax, input_ax, bars_ax = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1, 1, 1, 1.3]})
    picture_ax.imshow(image.convert("RGB"))
    picture_ax.set_title(f"Your picture ({image.width}x{image.height})", fontsize=10)
    small_ax.imshow(resize_like_cifar10(image))
    small_ax.set_title("As CIFAR-10 stores it (32x32)", fontsize=10)
    shown = network_input.detach().float().cpu()
    draw_image_tensor(input_ax, unnormalizer(shown) if unnormalizer is not None else shown)
    input_ax.set_title(f"The network's input ({shown.shape[-1]}x{shown.shape[-2]})", fontsize=10)
    for ax in (picture_ax, small_ax, input_ax):
        ax.axis("off")

    names = [name for name, _ in predictions]
    percentages = [100 * probability for _, probability in predictions]
    bars = bars_ax.barh(np.arange(len(names)), percentages)
    bars_ax.bar_label(bars, labels=[f"{percentage:.1f}%" for percentage in percentages], padding=3)
    bars_ax.set_yticks(np.arange(len(names)), names)
    bars_ax.invert_yaxis()  # the most probable class on top
    bars_ax.set_xlim(0, 130)  # room right of a 100% bar for its "100.0%", even in a panel narrowed by long names
    bars_ax.set_xticks(range(0, 101, 20))  # probabilities: no tick beyond 100%
    bars_ax.set_xlabel("Probability (%)")
    bars_ax.set_title(f"Top {len(names)} predictions", fontsize=10)
    set_title(fig, f"Prediction: {names[0]} ({percentages[0]:.1f}%)", subtitle)
    fig.tight_layout()
    save_figure(fig, results_dir, "my_picture.png")
    return fig


def plot_live_progress(
    minibatch_loss_list: Sequence[float],
    train_acc_list: Sequence[float],
    valid_acc_list: Sequence[float],
    iter_per_epoch: int,
    averaging_iterations: int = 100,
    *,
    subtitle: str | None = None,
) -> Figure:
    """One figure with the loss so far (left) and the accuracies so far (right), redrawn during training."""
    fig = Figure(figsize=(11, 4.2))
    loss_ax, acc_ax = fig.subplots(1, 2)
    epochs = np.arange(len(minibatch_loss_list)) / max(1, iter_per_epoch)
    loss_ax.plot(epochs, minibatch_loss_list, alpha=0.4, marker=lone_point_marker(minibatch_loss_list),
                 label="Minibatch loss")
    x, average = running_average(minibatch_loss_list, averaging_iterations)
    loss_ax.plot(x / max(1, iter_per_epoch), average,
                 label=running_average_label(len(minibatch_loss_list), averaging_iterations))
    loss_ax.set_xlabel("Epochs")
    use_whole_epoch_ticks(loss_ax.xaxis)
    loss_ax.set_ylabel("Loss")
    loss_ax.legend()
    draw_accuracy_curves(acc_ax, train_acc_list, valid_acc_list)
    set_title(fig, "Training progress", subtitle)
    fig.tight_layout()
    return fig


RATE_CHANGE_LABEL = "learning rate changed after this epoch"


def mark_rate_changes(ax, epochs: Sequence[int], valid_acc: Sequence[float], color: str) -> bool:
    """A downward triangle in the run's colour just above each of ``epochs`` (1-based); whether it drew any.

    Above the point, pointing at it, so that the curves running through it do not hide it.
    """
    if not epochs:
        return False
    above = offset_copy(ax.transData, fig=ax.figure, y=9, units="points")
    ax.plot(epochs, [valid_acc[epoch - 1] for epoch in epochs], linestyle="none", marker="v", markersize=9,
            color=color, transform=above, clip_on=False, label="_rate changes")  # "_": no legend entry
    return True


def plot_run_comparison(
    histories: Mapping[str, Mapping],
    results_dir: str | os.PathLike | None = None,
    *,
    subtitle: str | None = None,
) -> Figure:
    """Validation accuracy per epoch of each run, one labelled curve per run (from ``load_run_histories``).

    The legend stands beside the plot, so that it hides no curve however many runs there are;
    a run that diverged says so in its label (it may have no epoch to draw). A triangle above
    a point marks each epoch after which that run's learning rate changed: a run usually
    gains a point or more right after its rate is lowered, which a run compared with it may
    not have had.
    """
    if not histories:
        raise ValueError(
            "There are no runs to compare yet: each training run writes RESULTS_DIR/<run name>/history.json, "
            "and none was found. Train a model first, or check RESULTS_DIR."
        )
    fig = Figure(figsize=(11, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    any_rate_change = False
    for name, history in histories.items():
        valid_acc = history["valid_acc"]
        label = f"{name} ({history['stopped']})" if history.get("stopped") else name
        [line] = ax.plot(np.arange(1, len(valid_acc) + 1), valid_acc, marker="o", markersize=3, label=label)
        any_rate_change |= mark_rate_changes(ax, rate_change_epochs(history) or [], valid_acc, line.get_color())
    if any_rate_change:  # one legend entry for every run's triangles, in black
        ax.plot([], [], linestyle="none", marker="v", markersize=9, color="black", label=RATE_CHANGE_LABEL)
    ax.set_xlabel("Epoch")
    use_whole_epoch_ticks(ax.xaxis)
    ax.set_ylabel("Validation accuracy (%)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    if not any(len(history["valid_acc"]) for history in histories.values()):
        mark_no_epochs(ax)
    set_title(fig, "Validation accuracy of each run", subtitle)
    fig.tight_layout()
    save_figure(fig, results_dir, "run_comparison.png")
    return fig


def plot_confusion_matrix(
    conf_mat: np.ndarray,
    hide_spines: bool = False,
    hide_ticks: bool = False,
    figsize: tuple[float, float] | None = None,
    cmap=None,
    colorbar: bool = False,
    show_absolute: bool = True,
    show_normed: bool = False,
    class_names: Sequence[str] | Mapping[int, str] | None = None,
    *,
    results_dir: str | os.PathLike | None = None,
    subtitle: str | None = None,
) -> Figure:
    """Draw a confusion matrix (rows: true labels, columns: predictions) with counts and/or row fractions.

    ``class_names``: a list of names in label order, or the ``{label: name}`` dict (None: label numbers).
    """
    conf_mat = np.asarray(conf_mat)
    if not (show_absolute or show_normed):
        raise ValueError("Set show_absolute or show_normed (or both): otherwise the cells would be empty.")
    if class_names is not None:
        class_names = class_names_in_order(class_names, len(conf_mat))
    row_sums = conf_mat.sum(axis=1, keepdims=True)
    normed = np.divide(conf_mat, row_sums, out=np.zeros(conf_mat.shape), where=row_sums > 0)

    fig = Figure(figsize=figsize or (1.0 + 0.75 * len(conf_mat), 1.0 + 0.75 * len(conf_mat)))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.matshow(normed if show_normed else conf_mat, cmap=cmap or "Blues")
    if colorbar:
        fig.colorbar(image, ax=ax)
    shade_limit = (normed if show_normed else conf_mat).max() / 2
    for row in range(conf_mat.shape[0]):
        for col in range(conf_mat.shape[1]):
            parts = []
            if show_absolute:
                parts.append(str(conf_mat[row, col]))
            if show_normed:
                parts.append(f"({normed[row, col]:.2f})" if show_absolute else f"{normed[row, col]:.2f}")
            value = normed[row, col] if show_normed else conf_mat[row, col]
            ax.text(
                col,
                row,
                "\n".join(parts),
                va="center",
                ha="center",
                fontsize=8,
                color="white" if value > shade_limit else "black",
            )
    if class_names is not None:
        ax.set_xticks(range(len(class_names)), class_names, rotation=90)
        ax.set_yticks(range(len(class_names)), class_names)
    if hide_spines:
        for spine in ax.spines.values():
            spine.set_visible(False)
    ax.yaxis.set_ticks_position("left")
    ax.xaxis.set_ticks_position("bottom")
    if hide_ticks:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    set_title(fig, "Confusion matrix", subtitle)
    fig.tight_layout()
    save_figure(fig, results_dir, "plot_confusion_matrix.png")
    return fig
