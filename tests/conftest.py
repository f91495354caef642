"""Shared generated data and a tiny model for the test suite (no CIFAR-10 download needed)."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helper_dataset import ImageArrays, make_synthetic_cifar10  # noqa: E402

MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


def lecture_train_transforms():
    return transforms.Compose(
        [transforms.Resize((70, 70)), transforms.RandomCrop((64, 64)), transforms.ToTensor(),
         transforms.Normalize(MEAN, STD)]
    )


def lecture_test_transforms():
    return transforms.Compose(
        [transforms.Resize((70, 70)), transforms.CenterCrop((64, 64)), transforms.ToTensor(),
         transforms.Normalize(MEAN, STD)]
    )


class TinyNet(torch.nn.Module):
    """A few thousand parameters: learns the synthetic task in seconds on a CPU."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, kernel_size=3, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d((4, 4)),
        )
        self.classifier = torch.nn.Linear(8 * 4 * 4, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


@pytest.fixture
def synthetic_train() -> ImageArrays:
    return make_synthetic_cifar10(200, seed=1)


@pytest.fixture
def tiny_net():
    torch.manual_seed(0)
    return TinyNet()


def random_images(count: int, seed: int = 0) -> ImageArrays:
    """Unstructured uint8 images: every pixel value occurs, a hard case for resizing."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
    return ImageArrays(images, rng.integers(0, 10, size=count).astype(np.int64))
