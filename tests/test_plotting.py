"""helper_plotting: every function returns a Figure with the expected axes and saves its PNG."""

import re

import numpy as np
import pytest
import torch
from conftest import MEAN, STD, TinyNet, lecture_test_transforms
from matplotlib.figure import Figure

from helper_dataset import CIFAR10_CLASSES, UnNormalize, get_dataloaders_cifar10
from helper_plotting import (
    plot_accuracy,
    plot_confusion_matrix,
    plot_live_progress,
    plot_training_loss,
    running_average,
    show_confident_mistakes,
    show_examples,
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
    assert all(title.startswith("P: ") and " | T: " in title for title in titles)
    assert all(title.split(" | T: ")[1] in CIFAR10_CLASSES for title in titles)
    image = fig.axes[0].get_images()[0].get_array()
    assert image.min() >= 0.0 and image.max() <= 1.0  # un-normalized for display
    assert (tmp_path / "show_examples.png").exists()


def test_show_examples_without_class_names_uses_numbers():
    batch = [(torch.rand(3, 3, 64, 64), torch.tensor([1, 2, 3]))]
    fig = show_examples(TinyNet(), batch)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 3 and all(title.split(" | T: ")[1] in {"1", "2", "3"} for title in titles)


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


def test_confusion_matrix_plot_handles_an_empty_row():
    fig = plot_confusion_matrix(np.array([[2, 0], [0, 0]]), show_normed=True)
    assert "0\n(0.00)" in [t.get_text() for t in fig.axes[0].texts]


def test_confident_mistakes_shows_the_most_confident_wrong_predictions(tmp_path):
    class Confident(torch.nn.Module):
        """Predicts class 0 with a confidence set by the image's brightness; labels are all 1."""

        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            brightness = x.mean(dim=(1, 2, 3))
            return torch.stack([10 * brightness, torch.zeros_like(brightness)], dim=1) + self.dummy

    images = torch.linspace(0, 1, 40)[:, None, None, None].expand(40, 3, 8, 8)
    batches = [(images[i : i + 16], torch.ones(len(images[i : i + 16]), dtype=torch.long)) for i in range(0, 40, 16)]
    fig = show_confident_mistakes(Confident(), batches, num_images=5, results_dir=tmp_path)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 5 and all(re.fullmatch(r"P: 0 \(\d+\.\d%\) \| T: 1", t) for t in titles)
    shown = [float(ax.get_images()[0].get_array().mean()) for ax in fig.axes if ax.get_images()]
    assert shown == sorted(shown, reverse=True) and shown[0] == pytest.approx(1.0)  # brightest first
    assert (tmp_path / "confident_mistakes.png").exists()


def test_live_progress_has_loss_and_accuracy_panels():
    fig = plot_live_progress([2.3, 2.0, 1.8, 1.5], [30.0, 40.0], [28.0, 35.0], iter_per_epoch=2)
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_ylabel() == "Loss" and acc_ax.get_ylabel() == "Accuracy (%)"
    assert list(acc_ax.get_lines()[1].get_ydata()) == [28.0, 35.0]
