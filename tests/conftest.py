"""Shared generated data and a tiny model for the test suite (no CIFAR-10 download needed)."""

import pickle
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import helper_train  # noqa: E402
from helper_dataset import CIFAR10_CLASSES, ImageArrays  # noqa: E402

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


class FakeClock:
    """helper_train's clock (``time.perf_counter``), which only the test moves on: ``clock.now += seconds``.

    Timings printed or recorded by helper_train are then exact, whatever the machine's load.
    """

    def __init__(self, monkeypatch, now: float = 0.0):
        self.now = now
        monkeypatch.setattr(helper_train, "time", self)

    def perf_counter(self):
        return self.now


class InterruptAt:
    """A training loader that raises KeyboardInterrupt at one batch of one epoch, like Jupyter's stop button
    (or ``error``: e.g. the RuntimeError of a DataLoader worker that died).

    train_model iterates it twice per epoch (training, then the training accuracy): the interrupt
    comes in the training pass of ``epoch`` (1-based), before batch ``batch`` (0-based) is yielded.
    """

    def __init__(self, loader, epoch, batch, error: BaseException | type = KeyboardInterrupt):
        self.loader, self.epoch, self.batch, self.error, self.calls = loader, epoch, batch, error, 0

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.calls += 1
        for index, item in enumerate(self.loader):
            if self.calls == 2 * self.epoch - 1 and index == self.batch:
                raise self.error
            yield item


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
def tiny_net():
    torch.manual_seed(0)
    return TinyNet()


def random_images(count: int, seed: int = 0) -> ImageArrays:
    """Unstructured uint8 images: every pixel value occurs, a hard case for resizing."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
    return ImageArrays(images, rng.integers(0, 10, size=count).astype(np.int64))


def write_pickled_cifar10(root: Path) -> ImageArrays:
    """Write a miniature CIFAR-10 in torchvision's on-disk format (cifar-10-batches-py), 20 images per file."""
    rng, per_batch = np.random.default_rng(0), 20
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    all_images, all_labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3 * 32 * 32), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, f)
        if name != "test_batch":
            all_images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            all_labels += labels
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(CIFAR10_CLASSES)}, f)
    return ImageArrays(np.concatenate(all_images), np.asarray(all_labels))


def checksums_of(folder: Path):
    """Patch torchvision's expected MD5s to those of the miniature files in ``folder`` (nothing else)."""
    md5 = {path.name: torchvision.datasets.utils.calculate_md5(str(path)) for path in folder.iterdir()}
    cifar = torchvision.datasets.CIFAR10
    return mock.patch.multiple(
        cifar,
        train_list=[[name, md5[name]] for name, _ in cifar.train_list],
        test_list=[[name, md5[name]] for name, _ in cifar.test_list],
        meta={**cifar.meta, "md5": md5[cifar.meta["filename"]]},
    )


def write_image_folder(root: Path, per_class: int = 3, suffix: str = ".png", classes=CIFAR10_CLASSES):
    """Write root/train/<class>/ and root/test/<class>/ with flat images whose grey level encodes the class."""
    for split in ("train", "test"):
        for label, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for k in range(per_class):
                pixels = np.full((32, 32, 3), 20 * label + k, dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{k:03d}{suffix}")
