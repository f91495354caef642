"""helper_plotting: every function returns a Figure with the expected axes and saves its PNG."""

import io
import itertools
import logging
import re
import warnings

import numpy as np
import pytest
import torch
from conftest import MEAN, STD, TinyNet, TinyNetOnGpu, batches_on_gpu, lecture_test_transforms
from IPython.core.pylabtools import print_figure
from matplotlib.figure import Figure
from PIL import Image
from test_evaluation_runs import make_history

import helper_plotting
from helper_dataset import CIFAR10_CLASSES, UnNormalize, get_dataloaders_cifar10
from helper_evaluation import classify_image, predict_batches
from helper_plotting import (
    draw_image_tensor,
    plot_accuracy,
    plot_confusion_matrix,
    plot_live_progress,
    plot_run_comparison,
    plot_training_loss,
    prediction_title,
    running_average,
    show_confident_mistakes,
    show_examples,
    show_image_as_network_sees_it,
)


@pytest.mark.parametrize("num_iterations, num_epochs", [(1750, 10), (30, 1), (7, 2)])
def test_training_loss_plot_has_running_average_no_longer_than_the_data(tmp_path, num_iterations, num_epochs):
    losses = list(np.linspace(2.3, 0.5, num_iterations))
    fig = plot_training_loss(losses, num_epochs, num_iterations // num_epochs, results_dir=tmp_path)
    assert isinstance(fig, Figure)
    loss_axes, epoch_axes = fig.axes
    raw, average = loss_axes.get_lines()
    assert len(average.get_xdata()) <= len(raw.get_xdata()) == num_iterations
    assert len(average.get_xdata()) >= 1 and max(average.get_xdata()) == num_iterations - 1
    assert loss_axes.get_xlabel() == "Iterations" and loss_axes.get_ylabel() == "Loss"
    assert epoch_axes.get_xlabel() == "Epochs"
    assert (tmp_path / "plot_training_loss.png").stat().st_size > 0


def test_running_average_is_aligned_with_the_end_of_its_window():
    x, y = running_average([1, 2, 3, 4, 5, 6], window=3)
    assert x.tolist() == [2, 3, 4, 5]
    np.testing.assert_allclose(y, [2, 3, 4, 5])


def test_running_average_window_shrinks_to_half_the_values_for_short_runs():
    """The lecture's 100-iteration window on a 10-iteration smoke run averages 5 values, leaving a curve of 6 points."""
    x, y = running_average(np.arange(10.0), window=100)
    assert x.tolist() == [4, 5, 6, 7, 8, 9]
    np.testing.assert_allclose(y, [2, 3, 4, 5, 6, 7])


def test_training_loss_plot_zooms_in_on_the_losses_after_the_first_1000_iterations():
    """The first iterations' large losses would squash the rest of the curve into a flat line at the bottom."""
    losses = [50.0] * 1000 + list(np.linspace(2.0, 0.5, 750))
    loss_axes = plot_training_loss(losses, num_epochs=10, iter_per_epoch=175).axes[0]
    assert loss_axes.get_ylim() == pytest.approx((0.0, 3.0))  # 1.5 x the largest loss after iteration 1000
    one_after = plot_training_loss([50.0] * 1000 + [2.0], num_epochs=1, iter_per_epoch=1001).axes[0]
    assert one_after.get_ylim() == pytest.approx((0.0, 3.0))  # 1001 losses: zoomed on the one after the 1000th


@pytest.mark.parametrize("num_iterations", [1, 1000])
def test_training_loss_plot_of_one_or_exactly_1000_iterations(num_iterations):
    """One iteration: an epoch of one batch (batch size = training set). 1000: zooming needs losses after the 1000th."""
    losses = list(np.linspace(2.3, 0.5, num_iterations))
    raw, average = plot_training_loss(losses, num_epochs=1, iter_per_epoch=num_iterations).axes[0].get_lines()
    assert len(raw.get_xdata()) == num_iterations and len(average.get_xdata()) >= 1


def test_training_loss_running_average_uses_the_window_it_is_given():
    losses = [4.0, 2.0, 0.0, 2.0, 4.0, 2.0, 0.0, 2.0]
    average = plot_training_loss(losses, 2, 4, averaging_iterations=2).axes[0].get_lines()[1]
    assert list(average.get_xdata()) == [1, 2, 3, 4, 5, 6, 7]
    np.testing.assert_allclose(average.get_ydata(), [3.0, 1.0, 1.0, 3.0, 3.0, 1.0, 1.0])


def test_training_loss_running_average_spans_the_lectures_100_iterations_by_default():
    average = plot_training_loss(list(np.linspace(2.3, 0.5, 300)), 3, 100).axes[0].get_lines()[1]
    assert average.get_xdata()[0] == 99


def test_running_average_of_a_single_value_is_that_value():
    x, y = running_average([2.3], window=100)
    assert x.tolist() == [0] and y.tolist() == [2.3]


@pytest.mark.parametrize(("num_epochs", "iter_per_epoch", "ticks"), [
    (3, 7, [0, 7, 14, 21]), (20, 5, [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]),
    (47, 1, [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 47]),  # 47 is 3 after 44: a tick of its own (planted: None)
])
def test_training_loss_epoch_axis_marks_each_epoch_at_its_first_iteration(num_epochs, iter_per_epoch, ticks):
    losses = list(np.linspace(2.3, 0.5, num_epochs * iter_per_epoch))
    fig = plot_training_loss(losses, num_epochs, iter_per_epoch)
    fig.draw_without_rendering()
    loss_axes, epoch_axes = fig.axes
    assert epoch_axes.get_xticks().tolist() == ticks
    assert [label.get_text() for label in epoch_axes.get_xticklabels()] == [str(t // iter_per_epoch) for t in ticks]
    assert epoch_axes.get_xlim() == loss_axes.get_xlim()  # the two axes line up: epoch 1 is under iteration 7


def test_accuracy_plot_shows_both_curves_even_for_one_epoch(tmp_path):
    fig = plot_accuracy([40.0], [38.0], results_dir=tmp_path)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["Training", "Validation"]
    assert ax.get_xlabel() == "Epoch" and ax.get_ylabel() == "Accuracy (%)"
    assert (tmp_path / "plot_accuracy.png").exists()


def test_show_examples_titles_predictions_and_true_labels(tmp_path):
    *_, test_loader = get_dataloaders_cifar10(16, test_transforms=lecture_test_transforms(), smoke_test=True)
    fig = show_examples(TinyNet(), test_loader, UnNormalize(MEAN, STD), dict(enumerate(CIFAR10_CLASSES)),
                        results_dir=tmp_path)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(fig.axes) == 15 and len(titles) == 15
    assert all(title.startswith("P: ") and "\nT: " in title for title in titles)
    assert all(title.split("\nT: ")[1] in CIFAR10_CLASSES for title in titles)
    image = fig.axes[0].get_images()[0].get_array()
    assert image.min() >= 0.0 and image.max() <= 1.0  # clipped to the range imshow can draw
    assert (tmp_path / "show_examples.png").exists()


def test_show_examples_fills_its_15_cells_from_several_small_batches_in_order():
    """BATCH_SIZE = 7: the first batch alone would leave 8 of the 15 cells blank."""
    labels = torch.arange(21) % 10
    batches = [(torch.rand(7, 3, 8, 8), labels[i : i + 7]) for i in range(0, 21, 7)]
    fig = show_examples(TinyNet(), batches)
    true_labels = [ax.get_title().split("\nT: ")[1] for ax in fig.axes if ax.get_images()]
    assert true_labels == [str(int(label)) for label in labels[:15]]
    with pytest.raises(ValueError, match="yielded no images"):
        show_examples(TinyNet(), [])


@pytest.mark.parametrize("batch_size", [5, 15, 16])
def test_show_examples_reads_no_batch_after_the_one_that_completes_its_15_images(batch_size):
    """Every batch read is a forward pass: with BATCH_SIZE = 5, exactly three; the rest of the test set is not read."""
    read = []

    def loader():
        for index in range(6):
            read.append(index)
            yield torch.rand(batch_size, 3, 8, 8), torch.arange(batch_size) % 10

    show_examples(TinyNet(), loader())
    assert len(read) == -(-15 // batch_size)


def test_show_examples_draws_the_un_normalized_images():
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.25, 0.5)  # different per channel, so a mix-up of channels shows too
    seen = torch.rand(3, 3, 8, 8)  # what the eye should see, in [0, 1]
    normalized = (seen - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    fig = show_examples(TinyNet(), [(normalized, torch.tensor([0, 1, 2]))], UnNormalize(mean, std))
    drawn = [ax.get_images()[0].get_array() for ax in fig.axes if ax.get_images()]
    assert len(drawn) == 3
    for image, expected in zip(drawn, seen, strict=True):
        np.testing.assert_allclose(image, expected.permute(1, 2, 0).numpy(), atol=1e-6)


def test_show_examples_without_class_names_uses_numbers():
    batch = [(torch.rand(3, 3, 64, 64), torch.tensor([1, 2, 3]))]
    fig = show_examples(TinyNet(), batch)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 3 and all(title.split("\nT: ")[1] in {"1", "2", "3"} for title in titles)


def test_confusion_matrix_plot_labels_classes_and_counts(tmp_path):
    conf_mat = np.diag(np.arange(10)) + 1
    fig = plot_confusion_matrix(conf_mat, class_names=CIFAR10_CLASSES, show_normed=True, colorbar=True,
                                results_dir=tmp_path)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(CIFAR10_CLASSES)
    assert ax.get_xlabel() == "predicted label" and ax.get_ylabel() == "true label"
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 100 and texts[0] == "1\n(0.10)" and texts[11] == "2\n(0.18)"  # row 1: 2 of 11
    assert len(fig.axes) == 2  # the colour bar
    assert (tmp_path / "plot_confusion_matrix.png").exists()


def test_confusion_matrix_plot_puts_each_count_in_its_true_row_and_predicted_column():
    conf_mat = np.array([[5, 0, 1], [3, 1, 0], [0, 0, 8]])  # not symmetric: a transposed matrix looks different
    names = ["cat", "dog", "frog"]
    fig = plot_confusion_matrix(conf_mat, class_names=names, show_normed=True)
    ax = fig.axes[0]
    normed = conf_mat / conf_mat.sum(axis=1, keepdims=True)  # each row: the fractions of one true class
    np.testing.assert_allclose(ax.get_images()[0].get_array(), normed)  # row r of the image is drawn at y = r
    cells = {tuple(round(v) for v in text.get_position()): text.get_text() for text in ax.texts}  # (x, y): text
    assert cells[(0, 1)] == "3\n(0.75)"  # true dog (row 1) predicted cat (column 0): 3 of the 4 dogs
    assert cells == {(col, row): f"{conf_mat[row, col]}\n({normed[row, col]:.2f})" for row in range(3)
                     for col in range(3)}
    assert [t.get_text() for t in ax.get_yticklabels()] == names  # the true labels name the rows


def test_confusion_matrix_plot_writes_white_on_dark_cells_and_black_on_light_ones():
    fig = plot_confusion_matrix(np.array([[9, 1], [2, 8]]))
    colours = {text.get_text(): text.get_color() for text in fig.axes[0].texts}
    assert colours == {"9": "white", "8": "white", "1": "black", "2": "black"}  # the threshold: half of the largest


def test_confusion_matrix_plot_shows_fractions_alone_and_shades_by_them_when_asked():
    conf_mat = np.array([[1, 0], [10, 90]])  # class 0: one image, all right; class 1: 90 of 100
    fig = plot_confusion_matrix(conf_mat, show_absolute=False, show_normed=True)
    colours = {tuple(round(v) for v in t.get_position()): (t.get_text(), t.get_color()) for t in fig.axes[0].texts}
    assert colours == {(0, 0): ("1.00", "white"), (1, 0): ("0.00", "black"),  # dark: a fraction of 1.00
                       (0, 1): ("0.10", "black"), (1, 1): ("0.90", "white")}


def test_confusion_matrix_plot_refuses_empty_cells_and_the_wrong_number_of_names():
    with pytest.raises(ValueError, match="show_absolute or show_normed"):
        plot_confusion_matrix(np.eye(3, dtype=int), show_absolute=False, show_normed=False)
    with pytest.raises(ValueError, match="class_names has 3 names for 10 classes: pass one name for each, "
                                         "e.g. CIFAR10_CLASSES.$"):
        plot_confusion_matrix(np.eye(10, dtype=int), class_names=["cat", "dog", "frog"])


def test_confusion_matrix_plot_applies_the_lectures_display_options():
    fig = plot_confusion_matrix(np.eye(3, dtype=int), hide_spines=True, hide_ticks=True, figsize=(4, 3), cmap="Greens")
    ax = fig.axes[0]
    assert tuple(fig.get_size_inches()) == (4, 3)
    assert ax.get_images()[0].get_cmap().name == "Greens"
    assert list(ax.get_xticks()) == [] and list(ax.get_yticks()) == []
    assert not any(spine.get_visible() for spine in ax.spines.values())


def test_confusion_matrix_plot_handles_an_empty_row():
    """A class absent from the test images: its row shows 0 and 0.00, without a division-by-zero warning (planted:
    dividing every row passed, the test finding "0\n(0.00)" in the other row)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot_confusion_matrix(np.array([[2, 0], [0, 0]]), show_normed=True)
    texts = {tuple(round(v) for v in t.get_position()): t.get_text() for t in fig.axes[0].texts}
    assert texts == {(0, 0): "2\n(1.00)", (1, 0): "0\n(0.00)", (0, 1): "0\n(0.00)", (1, 1): "0\n(0.00)"}


def test_confusion_matrix_plot_shades_by_counts_unless_fractions_are_shown_and_has_no_colour_bar_by_default():
    """Planted: shading always by the fractions, or a colour bar unless asked for, passed every test."""
    conf_mat = np.array([[1, 0], [10, 90]])
    fig = plot_confusion_matrix(conf_mat)
    assert len(fig.axes) == 1
    np.testing.assert_array_equal(fig.axes[0].get_images()[0].get_array(), conf_mat)


class ConfidentlyWrong(torch.nn.Module):
    """Predicts class 0 with a confidence set by the image's brightness; the labels of ``graded_images`` are all 1."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        brightness = x.mean(dim=(1, 2, 3))
        return torch.stack([10 * brightness, torch.zeros_like(brightness)], dim=1) + self.dummy


def graded_images(count=40, batch_size=16):
    """Batches of uniformly grey images from black to white, all labelled 1."""
    images = torch.linspace(0, 1, count)[:, None, None, None].expand(count, 3, 8, 8)
    return [(images[i : i + batch_size], torch.ones(len(images[i : i + batch_size]), dtype=torch.long))
            for i in range(0, count, batch_size)]


def test_confident_mistakes_shows_the_most_confident_wrong_predictions(tmp_path):
    fig = show_confident_mistakes(ConfidentlyWrong(), graded_images(), num_images=5, results_dir=tmp_path)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 5 and all(re.fullmatch(r"P: 0 \(\d+\.\d%\)\nT: 1", t) for t in titles)
    shown = [float(ax.get_images()[0].get_array().mean()) for ax in fig.axes if ax.get_images()]
    assert shown == sorted(shown, reverse=True) and shown[0] == pytest.approx(1.0)  # brightest first
    assert (tmp_path / "confident_mistakes.png").exists()


def test_confident_mistakes_of_a_model_on_a_gpu_are_those_it_finds_on_the_cpu():
    """The mistakes are picked on the CPU, mask included (planted: the mask left on the GPU while it indexes the CPU
    copies, which fails on a GPU, passed every CPU test)."""
    torch.manual_seed(0)
    on_gpu, on_cpu = TinyNetOnGpu(), TinyNet()
    on_cpu.load_state_dict(on_gpu.state_dict())
    plain = [(x.as_subclass(torch.Tensor), y.as_subclass(torch.Tensor)) for x, y in batches_on_gpu()]
    titles = [[ax.get_title() for ax in fig.axes] for fig in (show_confident_mistakes(on_gpu, batches_on_gpu()),
                                                              show_confident_mistakes(on_cpu, plain))]
    assert titles[0] == titles[1] and [title for title in titles[0] if title.startswith("P: ")]


def test_show_examples_titles_show_the_models_prediction_over_the_true_label():
    fig = show_examples(ConfidentlyWrong(), graded_images(count=5))  # predicts 0 for images labelled 1
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["P: 0\nT: 1"] * 5


@pytest.mark.parametrize("num_images", [5, 7, 15])
def test_confident_mistakes_grid_has_room_for_every_mistake_asked_for(num_images):
    fig = show_confident_mistakes(ConfidentlyWrong(), graded_images(), num_images=num_images)  # 40 mistakes
    assert len([ax for ax in fig.axes if ax.get_images()]) == num_images


def test_confident_mistakes_of_a_model_without_mistakes_says_so():
    all_right = [(images, torch.zeros_like(labels)) for images, labels in graded_images()]  # it predicts 0
    fig = show_confident_mistakes(ConfidentlyWrong(), all_right)
    assert fig.get_suptitle() == "No mistakes in these images"
    assert not [ax for ax in fig.axes if ax.get_images()] and fig.get_size_inches()[1] < 2  # no page of blank cells
    assert print_figure(fig, "png")  # what Jupyter displays: nothing at all for a figure without axes


def test_confident_mistakes_without_mistakes_is_one_frameless_axes_with_one_sentence():
    """The figure holds a single axes, without frame or ticks, that says in words that every image was right."""
    all_right = [(images, torch.zeros_like(labels)) for images, labels in graded_images()]
    fig = show_confident_mistakes(ConfidentlyWrong(), all_right, subtitle=SMOKE)
    [ax] = fig.axes
    assert not ax.axison
    assert [text.get_text() for text in ax.texts] == ["Every image was classified correctly."]
    assert fig.get_suptitle() == f"No mistakes in these images\n{SMOKE}"


def test_confident_mistakes_grid_has_no_blank_rows_when_there_are_few_mistakes():
    three_wrong = [(images, torch.tensor([1, 1, 1] + [0] * (len(images) - 3))) for images, _ in graded_images(count=8)]
    fig = show_confident_mistakes(ConfidentlyWrong(), three_wrong, num_images=15)  # model predicts 0 for all
    assert len([ax for ax in fig.axes if ax.get_images()]) == 3
    assert len(fig.axes) == 5  # one row of five, not three


def test_confident_mistakes_titles_use_the_class_names_it_is_given():
    """Planted: class_dict not passed on to the titles passed every test, all of them without names."""
    fig = show_confident_mistakes(ConfidentlyWrong(), graded_images(count=3), None, {0: "airplane", 1: "automobile"},
                                  num_images=1)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["P: airplane (100.0%)\nT: automobile"]


def test_confident_mistakes_grid_has_a_row_for_each_five_mistakes():
    """Six mistakes need two rows of five (planted: rows for every six mistakes showed five of them)."""
    fig = show_confident_mistakes(ConfidentlyWrong(), graded_images(), num_images=6)
    assert len(fig.axes) == 10 and len([ax for ax in fig.axes if ax.get_images()]) == 6


def test_confident_mistakes_titles_show_the_predicted_probability_in_percent():
    dim_grey = [(torch.full((1, 3, 8, 8), 0.1), torch.tensor([1]))]  # scores (1, 0): softmax gives class 0 73.1%
    fig = show_confident_mistakes(ConfidentlyWrong(), dim_grey, num_images=1)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["P: 0 (73.1%)\nT: 1"]
    assert prediction_title(3, 5, dict(enumerate(CIFAR10_CLASSES)), torch.tensor(0.973)) == "P: cat (97.3%)\nT: dog"


def test_images_outside_the_displayable_range_are_clipped_to_0_1_without_a_warning_each(caplog):
    """An un-normalized image is often slightly outside [0, 1]. Left to imshow, each one would print "Clipping input
    data to the valid range" under the grid: fifteen warnings for one figure."""
    images = torch.stack([torch.full((3, 4, 4), -0.5), torch.full((3, 4, 4), 1.7)])
    with caplog.at_level(logging.WARNING):
        fig = show_examples(TinyNet(), [(images, torch.tensor([0, 1]))])
    drawn = [ax.get_images()[0].get_array() for ax in fig.axes if ax.get_images()]
    assert [(float(image.min()), float(image.max())) for image in drawn] == [(0.0, 0.0), (1.0, 1.0)]
    assert [record.getMessage() for record in caplog.records] == []


def test_one_channel_images_are_drawn_in_grey_on_a_fixed_0_1_scale():
    fig = Figure()
    ax = fig.add_subplot(1, 1, 1)
    draw_image_tensor(ax, torch.full((1, 4, 4), 0.25))  # a flat dark grey: not stretched to black or white
    [image] = ax.get_images()
    assert image.get_array().shape == (4, 4)
    assert image.get_cmap().name == "gray" and image.get_clim() == (0, 1)


def test_live_progress_has_loss_and_accuracy_panels():
    fig = plot_live_progress([2.3, 2.0, 1.8, 1.5], [30.0, 40.0], [28.0, 35.0], iter_per_epoch=2)
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_ylabel() == "Loss" and acc_ax.get_ylabel() == "Accuracy (%)"
    assert list(acc_ax.get_lines()[1].get_ydata()) == [28.0, 35.0]


# --- titles, epoch ticks, readable grids ------------------------------------------------------

SMOKE = "smoke test (synthetic data)"


def random_batch(count=15):
    return [(torch.rand(count, 3, 64, 64), torch.arange(count) % 10)]


FIGURES = {
    "loss": lambda **kw: plot_training_loss([2.3, 2.0, 1.8, 1.5], 2, 2, **kw),
    "accuracy": lambda **kw: plot_accuracy([30.0, 40.0], [28.0, 35.0], **kw),
    "examples": lambda **kw: show_examples(TinyNet(), random_batch(), **kw),
    "mistakes": lambda **kw: show_confident_mistakes(ConfidentlyWrong(), graded_images(), **kw),
    "confusion": lambda **kw: plot_confusion_matrix(np.eye(3, dtype=int), **kw),
    "live": lambda **kw: plot_live_progress([2.3, 2.0, 1.8, 1.5], [30.0, 40.0], [28.0, 35.0], 2, **kw),
    "runs": lambda **kw: plot_run_comparison({"baseline": make_history("baseline", [30.0, 40.0])}, **kw),
    "picture": lambda **kw: show_image_as_network_sees_it(Image.new("RGB", (40, 30)), torch.rand(3, 64, 64),
                                                          [("cat", 0.6), ("dog", 0.3)], **kw),
}


@pytest.mark.parametrize("name", FIGURES)
def test_every_figure_has_a_title_and_shows_the_subtitle_as_its_second_line(name):
    title = FIGURES[name]().get_suptitle()
    assert title and "\n" not in title
    assert FIGURES[name](subtitle=SMOKE).get_suptitle() == f"{title}\n{SMOKE}"


def visible_tick_labels(axis):
    low, high = sorted(axis.get_view_interval())
    return [label.get_text() for loc, label in zip(axis.get_ticklocs(), axis.get_ticklabels(), strict=True)
            if low <= loc <= high]


@pytest.mark.parametrize("num_epochs", [1, 2, 3])
def test_every_epoch_axis_shows_whole_epochs_only(num_epochs):
    iter_per_epoch = 7
    losses = list(np.linspace(2.3, 0.5, num_epochs * iter_per_epoch))
    accuracies = list(np.linspace(20.0, 60.0, num_epochs))
    loss_fig = plot_training_loss(losses, num_epochs, iter_per_epoch)
    accuracy_fig = plot_accuracy(accuracies, accuracies)
    live_fig = plot_live_progress(losses, accuracies, accuracies, iter_per_epoch)
    for fig in (loss_fig, accuracy_fig, live_fig):
        fig.draw_without_rendering()  # tick labels are only computed when the figure is drawn
    epoch_axes = {"loss": loss_fig.axes[1].xaxis, "accuracy": accuracy_fig.axes[0].xaxis,
                  "live loss": live_fig.axes[0].xaxis, "live accuracy": live_fig.axes[1].xaxis}
    for name, axis in epoch_axes.items():
        labels = visible_tick_labels(axis)
        assert labels and all(re.fullmatch(r"\d+", label) for label in labels), f"{name} epoch axis: {labels}"
    for name in ("loss", "accuracy"):  # the last epoch is marked too
        labels = visible_tick_labels(epoch_axes[name])
        assert labels[-1] == str(num_epochs), f"{name} epoch axis: {labels}"


def overlap(box, other):
    return min(box.x1, other.x1) > max(box.x0, other.x0) and min(box.y1, other.y1) > max(box.y0, other.y0)


@pytest.mark.parametrize("num_epochs", [1, 7, 21, 25, 37, 50, 99])
def test_the_loss_plots_epoch_axis_ends_at_the_last_epoch_with_labels_apart(num_epochs):
    """A step of 2 over 25 epochs stopped at 24, and the end's tick must not crowd the one before it."""
    iter_per_epoch = 5
    fig = plot_training_loss(list(np.linspace(2.3, 0.5, num_epochs * iter_per_epoch)), num_epochs, iter_per_epoch)
    fig.draw_without_rendering()
    epoch_axis = fig.axes[1].xaxis
    labels = visible_tick_labels(epoch_axis)
    assert labels[0] == "0" and labels[-1] == str(num_epochs), labels
    assert len(labels) <= 13, labels
    boxes = [label.get_window_extent() for label in epoch_axis.get_ticklabels() if label.get_text() in labels]
    assert not any(overlap(box, other) for box, other in itertools.pairwise(boxes)), labels
    if num_epochs == 50:  # the lecture's run: every fifth epoch
        assert labels == [str(epoch) for epoch in range(0, 51, 5)]


def test_mistake_titles_have_two_lines_and_run_into_nothing():
    class_dict = {0: "automobile", 1: "truck"}  # the longest CIFAR-10 name, with "(100.0%)" after it
    fig = show_confident_mistakes(ConfidentlyWrong(), graded_images(), class_dict=class_dict, subtitle=SMOKE)
    fig.draw_without_rendering()
    titles = [ax.title for ax in fig.axes if ax.get_title()]
    assert len(titles) == 15 and all(title.get_text().count("\n") == 1 for title in titles)
    texts = titles + list(fig.texts)  # fig.texts holds the figure's title
    images = [ax.get_window_extent() for ax in fig.axes if ax.get_images()]
    for i, text in enumerate(texts):
        box = text.get_window_extent()
        others = [other.get_window_extent() for other in texts[:i] + texts[i + 1 :]]
        assert not any(overlap(box, other) for other in others + images), f"{text.get_text()!r} overlaps"
    assert min(image.height for image in images) >= 1.5 * fig.dpi  # the images were not squeezed to make room


@pytest.mark.parametrize("show", [show_examples, show_confident_mistakes])
def test_grids_predict_in_the_precision_they_are_given(monkeypatch, show):
    seen = []

    def spy(model, data_loader, device, *, use_amp=None):
        seen.append(use_amp)
        return predict_batches(model, data_loader, device, use_amp=use_amp)

    monkeypatch.setattr(helper_plotting, "predict_batches", spy)
    show(TinyNet(), random_batch(), use_amp=False)
    assert seen == [False]


# --- comparing runs ----------------------------------------------------------------------------


def test_run_comparison_without_runs_says_there_are_none_yet():
    with pytest.raises(ValueError, match=r"^There are no runs to compare yet: each training run writes "
                                         r"RESULTS_DIR/<run name>/history.json, and none was found. Train a model "
                                         r"first, or check RESULTS_DIR.$"):
        plot_run_comparison({})


@pytest.mark.parametrize("num_epochs", [1, 3])
def test_run_comparison_of_one_run(tmp_path, num_epochs):
    valid_acc = list(np.linspace(30.0, 50.0, num_epochs))
    fig = plot_run_comparison({"baseline": make_history("baseline", valid_acc)}, tmp_path)
    fig.draw_without_rendering()
    ax = fig.axes[0]
    [line] = ax.get_lines()
    assert line.get_label() == "baseline" and list(line.get_ydata()) == valid_acc
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["baseline"]
    assert visible_tick_labels(ax.xaxis) == [str(epoch) for epoch in range(1, num_epochs + 1)]
    assert ax.get_xlabel() == "Epoch" and "accuracy" in ax.get_ylabel().lower()
    assert (tmp_path / "run_comparison.png").stat().st_size > 0


def test_run_comparison_draws_each_run_labelled_by_name():
    histories = {"baseline": make_history("baseline", [30.0, 40.0, 45.0]),
                 "lr=0.1": make_history("lr=0.1", [10.0, 12.0])}
    fig = plot_run_comparison(histories, subtitle=SMOKE)
    lines = fig.axes[0].get_lines()
    assert [(line.get_label(), list(line.get_xdata()), list(line.get_ydata())) for line in lines] == [
        ("baseline", [1, 2, 3], [30.0, 40.0, 45.0]), ("lr=0.1", [1, 2], [10.0, 12.0])]
    assert [text.get_text() for text in fig.axes[0].get_legend().get_texts()] == ["baseline", "lr=0.1"]


def test_run_comparison_labels_each_curve_by_its_key_so_two_runs_of_one_name_differ():
    """load_run_histories keys the second folder of a shared run name "baseline (baseline-copy)"."""
    histories = {"baseline": make_history("baseline", [30.0]),
                 "baseline (baseline-copy)": make_history("baseline", [20.0])}
    legend = plot_run_comparison(histories).axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["baseline", "baseline (baseline-copy)"]


def test_run_comparison_legend_stands_beside_the_plot_and_names_a_diverged_run():
    """Seven runs' legend inside the axes covered the curves; a diverged run has no curve, only its label."""
    histories = {f"run-{i}": make_history(f"run-{i}", [30.0 + i, 40.0 + i]) for i in range(7)}
    histories["learning_rate=10"] = {**make_history("learning_rate=10", []), "stopped": "diverged in epoch 1"}
    fig = plot_run_comparison(histories)
    fig.savefig(io.BytesIO(), format="png")  # lays the figure out
    ax = fig.axes[0]
    legend = ax.get_legend()
    assert legend.get_window_extent().x0 > ax.get_window_extent().x1  # right of the plot, not over it
    assert legend.get_texts()[-1].get_text() == "learning_rate=10 (diverged in epoch 1)"
    assert legend.get_window_extent().x1 <= fig.bbox.x1  # and not cut off


def test_run_comparison_legend_starts_at_the_top_of_the_plot_and_stays_in_the_figure():
    """Beside the plot, its first line level with the plot's top: anchored lower, a long legend runs off the bottom."""
    histories = {f"run-{i}": make_history(f"run-{i}", [30.0 + i, 40.0 + i]) for i in range(7)}
    fig = plot_run_comparison(histories)
    fig.savefig(io.BytesIO(), format="png")  # lays the figure out
    legend, ax = fig.axes[0].get_legend().get_window_extent(), fig.axes[0].get_window_extent()
    assert legend.y1 == pytest.approx(ax.y1, abs=2) and legend.y0 >= fig.bbox.y0


# --- your own picture --------------------------------------------------------------------------


def test_picture_figure_shows_the_picture_its_32x32_version_the_input_and_the_predictions():
    orange = Image.new("RGB", (100, 80), (200, 100, 50))  # no 0 or 255: normalized values differ when clipped
    network_input, predictions = classify_image(TinyNet(), orange, lecture_test_transforms(), "cpu", CIFAR10_CLASSES)
    fig = show_image_as_network_sees_it(orange, network_input, predictions, UnNormalize(MEAN, STD), subtitle=SMOKE)
    picture_ax, small_ax, input_ax, bars_ax = fig.axes
    assert picture_ax.get_images()[0].get_array().shape == (80, 100, 3)
    assert small_ax.get_images()[0].get_array().shape == (32, 32, 3)
    drawn_input = input_ax.get_images()[0].get_array()
    assert drawn_input.shape == (64, 64, 3)
    np.testing.assert_allclose(drawn_input, np.broadcast_to(np.array([200, 100, 50]) / 255, (64, 64, 3)), atol=1e-6)
    names, probabilities = zip(*predictions, strict=True)
    assert [bar.get_width() for bar in bars_ax.patches] == pytest.approx([100 * p for p in probabilities])
    assert [label.get_text() for label in bars_ax.get_yticklabels()] == list(names)
    assert bars_ax.yaxis_inverted()  # the most probable class on top
    assert fig.get_suptitle() == f"Prediction: {names[0]} ({100 * probabilities[0]:.1f}%)\n{SMOKE}"


def test_picture_figure_gives_sizes_as_width_x_height():
    picture, network_input = Image.new("RGB", (100, 80)), torch.rand(3, 48, 64)  # 64 wide, 48 high
    fig = show_image_as_network_sees_it(picture, network_input, [("cat", 0.6)])
    assert fig.axes[0].get_title() == "Your picture (100x80)"
    assert fig.axes[2].get_title() == "The network's input (64x48)"


def test_picture_figure_names_each_panel_and_the_probability_axis():
    """Planted: any of these texts replaced passed every test."""
    fig = show_image_as_network_sees_it(Image.new("RGB", (100, 80)), torch.rand(3, 64, 64), [("cat", 0.6)])
    assert [ax.get_title() for ax in fig.axes] == ["Your picture (100x80)", "As CIFAR-10 stores it (32x32)",
                                                  "The network's input (64x64)", "Top 1 predictions"]
    assert fig.axes[3].get_xlabel() == "Probability (%)" and fig.axes[3].get_xlim() == (0, 130)


def test_picture_figure_without_predictions_is_a_clear_error():
    with pytest.raises(ValueError, match="^There are no predictions to show: classify_image returns at least one.$"):
        show_image_as_network_sees_it(Image.new("RGB", (40, 30)), torch.rand(3, 64, 64), [])


def test_live_loss_curves_are_drawn_against_epochs():
    """Minibatch i of an epoch of 2 is at epoch i / 2; the running average's points at their windows' last values."""
    losses = [2.4, 2.0, 1.8, 1.6, 1.4, 1.2]
    fig = plot_live_progress(losses, [30.0, 40.0, 50.0], [28.0, 35.0, 45.0], iter_per_epoch=2, averaging_iterations=2)
    raw, average = fig.axes[0].get_lines()
    assert list(raw.get_xdata()) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5] and list(raw.get_ydata()) == losses
    assert list(average.get_xdata()) == [0.5, 1.0, 1.5, 2.0, 2.5]
    np.testing.assert_allclose(average.get_ydata(), [2.2, 1.9, 1.7, 1.5, 1.3])


def test_picture_figure_shows_the_32x32_picture_that_classify_image_used():
    """The middle panel explains the network's answer only if it is the very picture the network was given."""
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, size=(80, 100, 3), dtype=np.uint8))
    network_input, predictions = classify_image(TinyNet(), picture, lecture_test_transforms(), "cpu", CIFAR10_CLASSES)
    fig = show_image_as_network_sees_it(picture, network_input, predictions, UnNormalize(MEAN, STD))
    shown = np.asarray(fig.axes[1].get_images()[0].get_array())
    np.testing.assert_array_equal(shown, np.asarray(picture.resize((32, 32), Image.Resampling.BILINEAR)))


def test_live_loss_curve_of_one_batch_per_epoch_is_drawn_against_epochs():
    """A training set of one batch: minibatch i is at epoch i (planted: max(2, iter_per_epoch) passed)."""
    fig = plot_live_progress([2.4, 2.0, 1.8], [30.0, 40.0, 50.0], [28.0, 35.0, 45.0], iter_per_epoch=1)
    assert list(fig.axes[0].get_lines()[0].get_xdata()) == [0.0, 1.0, 2.0]


def test_a_single_minibatch_loss_is_visible_in_both_loss_plots():
    """A run whose loss broke at its second batch keeps one loss: a line of one point draws nothing, and the loss
    panel looked empty (a review). It gets a marker; longer curves stay plain lines."""
    single = plot_training_loss([3.36], num_epochs=1, iter_per_epoch=36).axes[0]
    live = plot_live_progress([3.36], [], [], 36).axes[0]
    assert single.get_lines()[0].get_marker() == "o" and live.get_lines()[0].get_marker() == "o"
    longer = plot_training_loss([3.36, 2.9], num_epochs=1, iter_per_epoch=36).axes[0]
    assert longer.get_lines()[0].get_marker() == "None"
    assert plot_live_progress([3.36, 2.9], [], [], 36).axes[0].get_lines()[0].get_marker() == "None"


def test_the_loss_plot_fills_its_figure():
    """One panel, not a quarter or half of the figure with the rest left blank (planted: add_subplot(2, 1, 1))."""
    fig = plot_training_loss(list(np.linspace(2.3, 0.5, 300)), num_epochs=3, iter_per_epoch=100)
    box = fig.axes[0].get_position()
    assert box.width > 0.7 and box.height > 0.5


def test_the_iterations_axis_counts_whole_iterations():
    """A short run's iteration axis read 0.0, 0.2, ... 1.0 (a review): iterations that do not exist."""
    axes = plot_training_loss([2.5], num_epochs=1, iter_per_epoch=1).axes[0]
    ticks = [tick for tick in axes.get_xticks() if axes.get_xlim()[0] <= tick <= axes.get_xlim()[1]]
    assert ticks and all(float(tick).is_integer() for tick in ticks)


def test_live_plot_can_be_drawn_before_the_first_epoch():
    """train_model shows the live plot before training starts, when there is no loss or accuracy yet."""
    fig = plot_live_progress([], [], [], 9, subtitle="run lecture-123456")
    assert isinstance(fig, Figure) and len(fig.axes) == 2


def test_saved_figures_carry_their_title_in_the_png(tmp_path):
    plot_accuracy([50.0, 60.0], [45.0, 55.0], results_dir=tmp_path, subtitle="smoke test (synthetic data)")
    with Image.open(tmp_path / "plot_accuracy.png") as saved:
        assert saved.text["Title"].endswith("smoke test (synthetic data)")


def test_picture_figure_is_saved_in_the_run_folder(tmp_path):
    FIGURES["picture"](results_dir=tmp_path)
    assert Image.open(tmp_path / "my_picture.png").info["Title"] == "Prediction: cat (60.0%)"


# --- pinned by the mutation review of helper_plotting ------------------------------------------


def test_figures_are_saved_and_never_shown(monkeypatch, tmp_path):
    """plt.show() in a helper would show each figure twice in Jupyter (once more as the cell's value); a figure made
    with pyplot stays open there, and Jupyter's inline backend shows it again at the end of the cell: the live plot
    once per redraw (planted: plt.show() in the live plot, plt.figure in plot_accuracy or in the live plot, each passed
    every test)."""
    import matplotlib.pyplot as plt

    shown, open_before = [], plt.get_fignums()
    monkeypatch.setattr(plt, "show", lambda *args, **kwargs: shown.append(args))
    for name, make in FIGURES.items():
        if name == "live":  # redrawn in place, never saved
            make()
        else:
            make(results_dir=tmp_path)
    assert shown == [] and plt.get_fignums() == open_before
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["plot_training_loss.png", "plot_accuracy.png", "show_examples.png", "confident_mistakes.png",
         "plot_confusion_matrix.png", "run_comparison.png", "my_picture.png"])


def test_saved_figures_are_150_dpi(tmp_path):
    """A 7 x 4.5-inch figure is saved 1050 x 675 pixels: sharp enough to read its tick labels in the README."""
    plot_accuracy([50.0, 60.0], [45.0, 55.0], results_dir=tmp_path)
    with Image.open(tmp_path / "plot_accuracy.png") as saved:
        assert saved.size == (1050, 675)


def test_training_loss_plot_draws_minibatch_i_at_iteration_i_under_its_legend():
    """The raw losses start at iteration 0, so the running average's point at 2 averages iterations 0 to 2."""
    losses = [4.0, 2.0, 0.0, 2.0, 4.0, 2.0]
    loss_axes = plot_training_loss(losses, 2, 3, averaging_iterations=3).axes[0]
    raw, average = loss_axes.get_lines()
    assert list(raw.get_xdata()) == [0, 1, 2, 3, 4, 5] and list(raw.get_ydata()) == losses
    assert list(average.get_xdata()) == [2, 3, 4, 5]
    assert [text.get_text() for text in loss_axes.get_legend().get_texts()] == ["Minibatch loss",
                                                                              "Running average (3 batches)"]


@pytest.mark.parametrize("num_losses, label", [(1, "Running average (1 batch)"), (3, "Running average (1 batch)"),
                                               (108, "Running average (54 batches)"),
                                               (200, "Running average (100 batches)"),
                                               (8750, "Running average (100 batches)")])
def test_the_loss_legend_says_over_how_many_batches_the_average_runs(num_losses, label):
    """A smoke test's 108 losses are averaged over 54 batches, not the 100 the markdown names: the legend says so."""
    losses = list(np.linspace(2.3, 0.5, num_losses))
    for fig in (plot_training_loss(losses, 3, 36), plot_live_progress(losses, [30.0], [28.0], iter_per_epoch=36)):
        assert [text.get_text() for text in fig.axes[0].get_legend().get_texts()] == ["Minibatch loss", label]


def test_training_loss_epoch_axis_is_drawn_below_the_iteration_axis():
    """The epoch axis sits under the iteration axis, its ticks and labels at the bottom, not on top of the plot
    and not on top of the iteration axis's own tick labels."""
    fig = plot_training_loss(list(np.linspace(2.3, 0.5, 30)), 3, 10)
    fig.savefig(io.BytesIO(), format="png")  # lays the figure out
    loss_axes, epoch_axes = fig.axes
    assert epoch_axes.xaxis.get_ticks_position() == "bottom"
    iteration_labels = loss_axes.xaxis.get_tightbbox()  # its tick labels and "Iterations"
    epoch_labels = [label.get_window_extent() for label in epoch_axes.get_xticklabels() if label.get_text()]
    assert epoch_labels and all(box.y1 <= iteration_labels.y0 + 1 for box in epoch_labels)


def test_accuracy_plot_draws_each_curve_from_its_own_list_with_markers():
    """A one-epoch run is a single point per curve: visible only as a marker."""
    fig = plot_accuracy([40.0, 50.0], [38.0, 45.0])
    training, validation = fig.axes[0].get_lines()
    assert (training.get_label(), list(training.get_xdata()), list(training.get_ydata())) == ("Training", [1, 2],
                                                                                                [40.0, 50.0])
    assert (validation.get_label(), list(validation.get_xdata()), list(validation.get_ydata())) == (
        "Validation", [1, 2], [38.0, 45.0])
    assert training.get_marker() == "o" and validation.get_marker() == "o"


def test_live_loss_panel_counts_epochs_and_run_comparison_names_validation_accuracy():
    """The live loss is drawn against epochs (not iterations); the run comparison draws validation accuracy."""
    live = plot_live_progress([2.3, 2.0, 1.8, 1.5], [30.0, 40.0], [28.0, 35.0], iter_per_epoch=2)
    assert live.axes[0].get_xlabel() == "Epochs"
    assert [text.get_text() for text in live.axes[0].get_legend().get_texts()] == ["Minibatch loss",
                                                                                 "Running average (2 batches)"]
    runs = plot_run_comparison({"baseline": make_history("baseline", [30.0, 40.0])})
    assert runs.axes[0].get_ylabel() == "Validation accuracy (%)"
    one_epoch = plot_run_comparison({"baseline": make_history("baseline", [30.0])})
    assert one_epoch.axes[0].get_lines()[0].get_marker() == "o"  # one epoch is one point: visible only as a marker


def test_confident_mistakes_draws_the_un_normalized_images():
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.25, 0.5)
    seen = torch.rand(3, 3, 8, 8)
    normalized = (seen - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    wrong_labels = torch.full((3,), 2)  # ConfidentlyWrong predicts 0 or 1: every image is a mistake
    fig = show_confident_mistakes(ConfidentlyWrong(), [(normalized, wrong_labels)], UnNormalize(mean, std))
    drawn = sorted((ax.get_images()[0].get_array() for ax in fig.axes if ax.get_images()), key=lambda a: a.sum())
    expected = sorted((image.permute(1, 2, 0).numpy() for image in seen), key=lambda a: a.sum())
    assert len(drawn) == 3
    for image, want in zip(drawn, expected, strict=True):
        np.testing.assert_allclose(image, want, atol=1e-6)


def test_image_grids_show_images_without_frames_and_no_blank_row_for_five_mistakes():
    """Each cell is a bare image under its title; five mistakes fill exactly one row of five."""
    examples = show_examples(TinyNet(), random_batch())
    assert not any(ax.axison for ax in examples.axes)
    mistakes = show_confident_mistakes(ConfidentlyWrong(), graded_images(), num_images=5)
    assert len(mistakes.axes) == 5 and not any(ax.axison for ax in mistakes.axes)


def test_confusion_matrix_of_ten_classes_has_room_for_every_cell_and_class_name():
    """The default size grows with the classes: each cell's count and fraction, and each class name on the
    x-axis (turned upright), stay clear of their neighbours."""
    conf_mat = np.full((10, 10), 100) + np.diag(np.full(10, 900))
    fig = plot_confusion_matrix(conf_mat, class_names=CIFAR10_CLASSES, show_normed=True)
    fig.savefig(io.BytesIO(), format="png")  # lays the figure out
    ax = fig.axes[0]
    for boxes in ([text.get_window_extent() for text in ax.texts],
                  [label.get_window_extent() for label in ax.get_xticklabels()]):
        assert len(boxes) in (100, 10)
        assert not any(overlap(box, other) for i, box in enumerate(boxes) for other in boxes[i + 1 :])
    assert all(label.get_rotation() == 90 for label in ax.get_xticklabels())


def test_confusion_matrix_refuses_more_class_names_than_classes():
    with pytest.raises(ValueError, match="class_names has 4 names for 3 classes"):
        plot_confusion_matrix(np.eye(3, dtype=int), class_names=["cat", "dog", "frog", "ship"])


@pytest.mark.parametrize("names", [["cat", "dog", "frog"], ["automobile", "airplane", "truck"]])
def test_picture_figure_keeps_each_bars_label_inside_the_panel(names):
    """A sure prediction's "100.0%" stands right of its bar inside the frame, even when long class names narrow
    the panel; the axis marks probabilities up to 100% only. Each bar is labelled with its own percentage."""
    predictions = list(zip(names, [1.0, 0.0007, 0.0003], strict=True))
    fig = show_image_as_network_sees_it(Image.new("RGB", (40, 30)), torch.rand(3, 64, 64), predictions)
    fig.savefig(io.BytesIO(), format="png")  # lays the figure out
    bars_ax = fig.axes[3]
    assert [text.get_text() for text in bars_ax.texts] == ["100.0%", "0.1%", "0.0%"]
    panel = bars_ax.get_window_extent()
    assert all(text.get_window_extent().x1 < panel.x1 - 2 for text in bars_ax.texts)
    assert max(bars_ax.get_xticks()) == 100
    assert bars_ax.get_title() == "Top 3 predictions"


def test_a_failed_save_keeps_the_previous_png(monkeypatch, tmp_path):
    """Figures are written to a temporary file and renamed: a save that fails half-way (a full disk, a kernel
    stopped mid-write) leaves the previous run's figure whole, not half a PNG."""
    plot_accuracy([50.0, 60.0], [45.0, 55.0], results_dir=tmp_path)
    before = (tmp_path / "plot_accuracy.png").read_bytes()

    def fail_half_way(self, path, **kwargs):
        with open(path, "wb") as file:
            file.write(before[:100])
        raise OSError("No space left on device")

    monkeypatch.setattr(Figure, "savefig", fail_half_way)
    with pytest.raises(OSError, match="No space left"):
        plot_accuracy([70.0], [65.0], results_dir=tmp_path)
    assert (tmp_path / "plot_accuracy.png").read_bytes() == before
    assert [path.name for path in tmp_path.iterdir()] == ["plot_accuracy.png"]  # no temporary file left


def test_accuracy_legend_confusion_tick_sides_and_picture_panels_without_frames():
    """The accuracy plot names its curves in a legend; the confusion matrix's class names stand at the bottom
    and left, beside 'predicted label' and 'true label' (matshow would put them on top); the picture's three
    image panels have no frame or ticks."""
    legend = plot_accuracy([40.0, 50.0], [38.0, 45.0]).axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["Training", "Validation"]
    ax = plot_confusion_matrix(np.eye(3, dtype=int), class_names=["cat", "dog", "frog"]).axes[0]
    assert ax.xaxis.get_ticks_position() == "bottom" and ax.yaxis.get_ticks_position() == "left"
    picture = FIGURES["picture"]()
    assert [ax.axison for ax in picture.axes] == [False, False, False, True]


def test_every_figure_has_its_own_title_and_an_empty_subtitle_adds_no_line():
    titles = {"loss": "Training loss", "accuracy": "Accuracy", "examples": "Predictions (P) and true labels (T)",
              "mistakes": "Most confident mistakes", "confusion": "Confusion matrix", "live": "Training progress",
              "runs": "Validation accuracy of each run", "picture": "Prediction: cat (60.0%)"}
    assert {name: make(subtitle="").get_suptitle() for name, make in FIGURES.items()} == titles


def test_accuracy_plot_before_the_first_epoch_says_so_on_a_percent_scale(tmp_path):
    """Interrupted in epoch 1 (as the LongRunWarning on a CPU advises): no accuracy yet.

    The plot used to show empty axes from -0.04% to 0.04% over an "epoch 0" that does not exist.
    """
    for fig in (plot_accuracy([], [], results_dir=tmp_path), plot_live_progress([2.3, 2.2], [], [], 10)):
        ax = fig.axes[-1]
        fig.draw_without_rendering()
        assert ax.get_ylim() == (0.0, 100.0)
        assert any("No epoch has finished yet" in text.get_text() for text in ax.texts)
        assert visible_tick_labels(ax.xaxis) == []  # no "epoch 0"


def test_run_comparison_of_runs_without_a_finished_epoch_says_so_on_a_percent_scale():
    stopped = "interrupted after 0 of 50 epochs"
    histories = {"lecture-abc123": {**make_history("lecture-abc123", []), "stopped": stopped}}
    fig = plot_run_comparison(histories)
    fig.draw_without_rendering()
    ax = fig.axes[0]
    assert ax.get_ylim() == (0.0, 100.0)
    assert any("No epoch has finished yet" in text.get_text() for text in ax.texts)
    assert ax.get_legend().get_texts()[0].get_text() == "lecture-abc123 (interrupted after 0 of 50 epochs)"


LONG_RUN = ("smoke test (synthetic data) | run smoke-image_size=32_dropout2d=0.1_normalization=per-channel_"
            "precision=float32_determin-105128")  # the standardized notebook's folder with five settings changed


@pytest.mark.parametrize("name", FIGURES)
def test_a_long_run_name_in_the_title_stays_inside_the_figure(name):
    """Five changed settings make a run name of 93 characters: the saved PNGs cut the title's second line at both
    ends, losing "smoke test" and the run's six identifying characters."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = FIGURES[name](subtitle=LONG_RUN)
    canvas = FigureCanvasAgg(fig)  # draws at the figure's own dpi, so the title and the figure are measured alike
    canvas.draw()
    title = fig.get_suptitle()
    [text] = [t for t in fig.texts if t.get_text() == title]
    extent = text.get_window_extent(canvas.get_renderer())
    assert fig.bbox.x0 <= extent.x0 and extent.x1 <= fig.bbox.x1, (extent, fig.bbox)
    lines = title.split("\n")
    assert any("smoke test (synthetic data)" in line for line in lines)  # whole: the notebook tests read it
    assert LONG_RUN.split(" | ")[1] in "".join(lines)  # the whole run name, perhaps over several lines


def test_fit_lines_breaks_after_a_space_underscore_or_hyphen_only_where_a_line_is_too_long():
    """The exact lines: no empty first line before a word longer than the width, no trailing space, a line of
    exactly the width kept whole, each line of a multi-line title broken on its own."""
    from helper_plotting import fit_lines

    assert fit_lines("run smoke-image_size=32_dropout2d=0.1_normalization=per-channel-105128", 20) == (
        "run smoke-image_\nsize=32_\ndropout2d=0.1_\nnormalization=per-\nchannel-105128")
    assert fit_lines("normalization=per-channel_x", 5) == "normalization=per-\nchannel_\nx"
    assert fit_lines("ab cd", 5) == "ab cd"
    assert fit_lines("ab cd\nefgh-ij", 4) == "ab\ncd\nefgh-\nij"


def test_run_comparison_beside_a_run_without_a_finished_epoch_draws_no_such_note():
    """One run interrupted in its first epoch next to one with epochs: the curve is there, so no "No epoch has
    finished yet" over it."""
    stopped = {**make_history("dropout-def456", []), "stopped": "interrupted after 0 of 50 epochs"}
    histories = {"lecture-abc123": make_history("lecture-abc123", [50.0, 60.0]), "dropout-def456": stopped}
    fig = plot_run_comparison(histories)
    assert not any("No epoch has finished yet" in text.get_text() for text in fig.axes[0].texts)


def test_run_comparison_marks_the_epochs_after_which_a_run_s_learning_rate_changed():
    """The Dropout2d run's jump came right after its rate was lowered (epoch 39), which the plot did not show: a
    triangle in the run's colour above each such epoch's point, one black legend entry for all; none for a run whose
    history cannot say (recorded before the rate was)."""
    lowered = make_history("lowered", [30.0, 40.0, 41.0, 50.0, 52.0], learning_rate=[0.01, 0.01, 0.01, 0.001, 0.0001])
    steady = make_history("steady", [31.0, 39.0, 42.0, 43.0, 44.0])
    unknown = make_history("unknown", [20.0, 25.0], learning_rate=[0.01])
    fig = plot_run_comparison({"lowered": lowered, "steady": steady, "unknown": unknown})
    ax = fig.axes[0]
    curves = {line.get_label(): line for line in ax.get_lines()}
    [triangles] = [line for line in ax.get_lines() if line.get_marker() == "v" and len(line.get_xdata())]
    assert list(triangles.get_xdata()) == [3, 4] and list(triangles.get_ydata()) == [41.0, 50.0]
    assert triangles.get_color() == curves["lowered"].get_color() and not triangles.get_clip_on()
    fig.canvas.draw()
    point = ax.transData.transform((3, 41.0))
    assert triangles.get_transform().transform((3, 41.0))[1] > point[1]  # above the point, not on the curves
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["lowered", "steady", "unknown", "learning rate changed after this epoch"]
    # triangles only, no line joining them; the legend's entry a black triangle (planted: linestyle or marker of
    # either dropped, which drew a line from triangle to triangle or a legend entry without its triangle, passed)
    entry = ax.get_legend().legend_handles[-1]
    assert triangles.get_linestyle() == "None" and triangles.get_markersize() == 9
    assert (entry.get_linestyle(), entry.get_marker(), entry.get_color()) == ("None", "v", "black")


def test_run_comparison_without_a_rate_change_has_no_triangle_in_its_legend():
    fig = plot_run_comparison({"steady": make_history("steady", [31.0, 39.0, 42.0])})
    assert [text.get_text() for text in fig.axes[0].get_legend().get_texts()] == ["steady"]


# --- arguments a student may pass in another form: a dict of names, a count of 0, stored uint8 images ---------


def test_the_confusion_matrix_names_its_classes_also_from_the_notebooks_class_dict():
    """The notebook has both CIFAR10_CLASSES and class_dict = {0: "airplane", ...}: either names the ticks (planted:
    the dict used as it came, whose iteration gives 0, 1, 2: the figure showed numbers without a word)."""
    names = ["cat", "dog", "ship"]
    for class_names in (names, dict(enumerate(names))):
        ax = plot_confusion_matrix(np.eye(3, dtype=int), class_names=class_names).axes[0]
        assert [label.get_text() for label in ax.get_yticklabels()] == names
    with pytest.raises(ValueError, match=r"class_names has no name for label\(s\) \[2\]: .*dict\(enumerate\("):
        plot_confusion_matrix(np.eye(3, dtype=int), class_names={0: "cat", 1: "dog", 5: "ship"})


@pytest.mark.parametrize("num_images", [0, -1, 2.5])
def test_confident_mistakes_refuse_a_count_below_one_before_running_the_model(num_images):
    """num_images=0 drew "No mistakes in these images" for a model that got 40 of 40 wrong; -1 failed in torch after
    the whole loader had run (planted: no check, as it was)."""
    batches = iter(graded_images())  # a one-pass loader: what a check after the predictions would have used up
    with pytest.raises(ValueError, match=f"num_images must be a whole number of at least 1, got {num_images!r}"):
        show_confident_mistakes(ConfidentlyWrong(), batches, num_images=num_images)
    assert len(list(batches)) == 3


def test_a_class_dict_without_a_label_of_the_grid_names_the_missing_label():
    """A KeyError(0) from deep inside the plot did not say that class_dict lacks a name; a missing true label as much
    as a missing prediction (the model predicts 0 for images labelled 1)."""
    for class_dict, missing in (({1: "one"}, 0), ({0: "zero"}, 1), (["zero"], 1)):
        with pytest.raises(ValueError, match=f"class_dict has no name for label {missing}: pass one for every class, "
                                             r"e.g. dict\(enumerate\(CIFAR10_CLASSES\)\).$"):
            show_examples(ConfidentlyWrong(), graded_images(count=5), class_dict=class_dict)


def test_the_list_of_class_names_serves_as_class_dict_as_it_always_did():
    """show_examples(..., class_dict=CIFAR10_CLASSES) worked before the missing-name check; it must still (planted:
    the check asking whether the label is among the names, as a first version of it did)."""
    for class_dict in (CIFAR10_CLASSES, list(CIFAR10_CLASSES), dict(enumerate(CIFAR10_CLASSES))):
        fig = show_examples(ConfidentlyWrong(), graded_images(count=5), class_dict=class_dict)
        assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["P: airplane\nT: automobile"] * 5


def test_a_stored_uint8_image_is_drawn_at_its_brightness_not_white():
    """uint8 pixels (0 to 255) were clipped to [0, 1] as they were: anything above 0 drawn white."""
    fig = Figure()
    ax = fig.add_subplot()
    draw_image_tensor(ax, torch.full((3, 2, 2), 51, dtype=torch.uint8))
    assert ax.get_images()[0].get_array().max() == pytest.approx(0.2)
    grid = helper_plotting.image_grid(torch.full((2, 3, 2, 2), 51, dtype=torch.uint8), ["a", "b"], None, 1, 2)
    assert [ax.get_images()[0].get_array().max() for ax in grid.axes if ax.get_images()] == pytest.approx([0.2] * 2)


def test_accuracy_lists_of_different_lengths_are_refused_by_name():
    """matplotlib's "x and y must have same first dimension" did not say which list was short."""
    with pytest.raises(ValueError, match="train_acc_list has 2 epochs but valid_acc_list has 1"):
        plot_accuracy([50.0, 60.0], [50.0])
    with pytest.raises(ValueError, match="train_acc_list has 0 epochs but valid_acc_list has 1"):
        plot_accuracy([], [50.0])


# --- review 8: planted bugs in helper_plotting that passed every test -----------------------------------------------


@pytest.mark.parametrize("mode, colour", [("L", 128), ("RGBA", (200, 100, 50, 0)), ("P", 3)])
def test_the_picture_panel_draws_a_grey_transparent_or_palette_photo_in_its_own_colours(mode, colour):
    """Planted: the photo drawn as PIL gives it, which shows a grey photo in matplotlib's false colours, passed every
    test."""
    picture = Image.new(mode, (40, 30), colour)
    fig = show_image_as_network_sees_it(picture, torch.rand(3, 32, 32), [("cat", 0.6)])
    np.testing.assert_array_equal(fig.axes[0].get_images()[0].get_array(), np.asarray(picture.convert("RGB")))


def test_the_confusion_matrix_writes_white_on_cells_darker_than_half_the_largest_count():
    """4 of 10 is black on light blue, 6 of 10 white on dark blue (planted: a threshold of a third passed every test,
    whose counts were all far from it)."""
    texts = plot_confusion_matrix(np.array([[10, 4], [6, 0]])).axes[0].texts
    assert {text.get_text(): text.get_color() for text in texts} == {"10": "white", "6": "white", "4": "black",
                                                                     "0": "black"}


def test_the_confusion_matrix_is_blue_by_default():
    """The text colours assume light cells for small counts (planted: viridis, dark for small counts, passed)."""
    assert plot_confusion_matrix(np.eye(2, dtype=int)).axes[0].get_images()[0].get_cmap().name == "Blues"


@pytest.mark.parametrize("show_normed", [False, True])
def test_the_confusion_matrix_colour_scale_spans_its_values(show_normed):
    """Planted: the scale fixed at 0 to 1 (every count saturated), or ending at half the largest value, passed."""
    conf_mat = np.array([[9, 1], [2, 8]])
    shown = conf_mat / conf_mat.sum(axis=1, keepdims=True) if show_normed else conf_mat
    image = plot_confusion_matrix(conf_mat, show_normed=show_normed, colorbar=True).axes[0].get_images()[0]
    assert image.get_clim() == pytest.approx((shown.min(), shown.max()))


@pytest.mark.parametrize("name", [name for name in FIGURES if name != "live"])
def test_the_saved_png_is_the_finished_figure(tmp_path, name):
    """The file holds the figure the notebook shows: its title and its final layout (planted: the confusion matrix
    saved before its title, the loss plot before its layout, both passed every test)."""
    fig = FIGURES[name](results_dir=tmp_path, subtitle=SMOKE)
    [saved_path] = tmp_path.iterdir()
    again = io.BytesIO()
    fig.savefig(again, format="png", dpi=150)
    with Image.open(saved_path) as saved, Image.open(again) as expected:
        assert saved.text["Title"] == fig.get_suptitle()
        np.testing.assert_array_equal(np.asarray(saved), np.asarray(expected))


def test_a_title_slightly_wider_than_the_figure_is_broken_too():
    """Planted: a title broken only once 5% wider than the figure (its ends cut off) passed every test, whose long
    title was far wider."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    def width(text):
        probe = Figure(figsize=(7, 4.5))
        return probe.suptitle(text).get_window_extent().width / probe.bbox.width

    subtitle = next(f"run {'ab_' * k}x" for k in range(1, 200) if 1.0 < width(f"Accuracy\nrun {'ab_' * k}x") < 1.05)
    fig = plot_accuracy([30.0], [28.0], subtitle=subtitle)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    [title] = [text for text in fig.texts if text.get_text() == fig.get_suptitle()]
    extent = title.get_window_extent(canvas.get_renderer())
    assert fig.bbox.x0 <= extent.x0 and extent.x1 <= fig.bbox.x1


def test_a_long_subtitle_is_broken_first_between_its_parts():
    """"smoke test (synthetic data)" on its own line, the run's name on the next (planted: broken anywhere passed)."""
    lines = FIGURES["accuracy"](subtitle=LONG_RUN).get_suptitle().split("\n")
    assert lines[1] == SMOKE and lines[2].startswith("run smoke-")


def test_the_examples_are_a_grid_of_three_rows_of_five():
    """Planted: five rows of three passed every test."""
    positions = [ax.get_position() for ax in show_examples(TinyNet(), random_batch()).axes]
    assert len({round(p.y0, 3) for p in positions}) == 3 and len({round(p.x0, 3) for p in positions}) == 5


def test_the_loss_legend_names_the_window_it_was_given():
    """Planted: the legend built with the default 100 batches passed every test, whose six losses halve both windows
    to 3."""
    ax = plot_training_loss(list(np.linspace(2.3, 0.5, 300)), 3, 100, averaging_iterations=20).axes[0]
    assert ax.get_lines()[1].get_xdata()[0] == 19
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["Minibatch loss",
                                                                         "Running average (20 batches)"]


# --- review 9: planted bugs in the recently changed helpers that passed every test ----------------------------------


def test_accuracy_lists_of_different_lengths_name_the_lists_to_pass():
    """The refusal says what to pass instead: the two lists of one train_model run. Planted: the message without its
    fix, caught."""
    with pytest.raises(ValueError) as error:
        plot_accuracy([50.0, 60.0], [50.0])
    assert str(error.value) == ("train_acc_list has 2 epochs but valid_acc_list has 1: pass the two lists that "
                                "train_model returned for one run.")


def test_an_empty_or_numpy_class_dict_is_used_as_given_not_as_no_class_dict():
    """Only None means "label numbers": an empty dict names no class and is refused by name, and a numpy array of the
    names titles the images (its truth value is ambiguous). Planted: `if class_dict` for `is not None` in
    prediction_title, caught."""
    assert prediction_title(3, 5, np.array(CIFAR10_CLASSES)) == "P: cat\nT: dog"
    with pytest.raises(ValueError, match="class_dict has no name for label 3"):
        prediction_title(3, 5, {})


def test_an_empty_or_numpy_list_of_class_names_is_checked_not_skipped():
    """An empty dict of names is refused, not drawn without tick labels, and a numpy array of names labels the ticks.
    Planted: `if class_names:` for `is not None` in plot_confusion_matrix, caught."""
    names = ["cat", "dog", "ship"]
    ax = plot_confusion_matrix(np.eye(3, dtype=int), class_names=np.array(names)).axes[0]
    assert [label.get_text() for label in ax.get_yticklabels()] == names
    with pytest.raises(ValueError, match=r"class_names has no name for label\(s\) \[0, 1, 2\]"):
        plot_confusion_matrix(np.eye(3, dtype=int), class_names={})
