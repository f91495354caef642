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


def cpu_autocast_dtype() -> torch.dtype | None:
    """The CPU autocast type in force where this is called, None when autocast is off.

    torch 2.4 added the device argument of ``torch.is_autocast_enabled``; torch 2.3, which
    requirements.txt still admits, has only the CPU-specific functions.
    """
    try:
        return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
    except TypeError:  # torch 2.3: "is_autocast_enabled() takes no arguments"
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None


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


# --- stand-ins for a GPU on a machine without one ---------------------------------------------


class MovedTo:
    """A batch's stand-in: records where it is sent (``.to``) and hands back the tensor it holds."""

    def __init__(self, tensor):
        self.tensor, self.calls = tensor, []

    def to(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.tensor


class StrictOnGpu(torch.Tensor):
    """A CPU tensor that behaves like a CUDA one where it matters: an operation mixing it with a CPU tensor (other than
    a 0-d scalar) fails, and NumPy refuses it, until ``.cpu()`` returns a plain tensor."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        values = []
        for value in [*args, *kwargs.values()]:
            values.extend(value if isinstance(value, (list, tuple)) else [value])
        tensors = [value for value in values if isinstance(value, torch.Tensor)]
        if (func not in (torch.Tensor.cpu, torch.Tensor.to) and any(isinstance(t, cls) for t in tensors)
                and any(type(t) is torch.Tensor and t.dim() > 0 for t in tensors)):
            raise RuntimeError(f"{func.__name__}: expected all tensors to be on the same device, cuda:0 and cpu")
        return super().__torch_function__(func, types, args, kwargs)

    def numpy(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() first.")

    def cpu(self, *args, **kwargs):
        return super().cpu(*args, **kwargs).as_subclass(torch.Tensor)


class TinyNetOnGpu(TinyNet):
    """TinyNet whose logits stand in for a GPU's (``StrictOnGpu``)."""

    def forward(self, x):
        return super().forward(x.as_subclass(torch.Tensor)).as_subclass(StrictOnGpu)


def batches_on_gpu(count: int = 3, size: int = 6) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` batches of random 8x8 images and labels, standing in for batches on a GPU (``StrictOnGpu``)."""
    generator = torch.Generator().manual_seed(0)
    return [(torch.rand(size, 3, 8, 8, generator=generator).as_subclass(StrictOnGpu),
             torch.randint(0, 10, (size,), generator=generator).as_subclass(StrictOnGpu)) for _ in range(count)]


@pytest.fixture
def host_reads(monkeypatch) -> list[str]:
    """The reads of a tensor's value by Python (``item``, ``tolist``, ``float()``, ``int()``, ``bool()``, an index):
    on a GPU each one waits until all queued work is done. The list grows by one name per read."""
    reads: list[str] = []
    for name in ("item", "tolist", "__float__", "__int__", "__index__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    return reads


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
