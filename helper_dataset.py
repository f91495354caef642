"""CIFAR-10 data for the VGG-16 tutorial: reading, splitting and batching.

Read top to bottom:

1. ``CIFAR10_CLASSES``: the one place that knows the class names and their label order.
2. Reading images into uint8 arrays: the torchvision files (downloaded on first use),
   an offline ``train/<class>/*`` + ``test/<class>/*`` folder, or synthetic smoke-test data.
3. ``split_train_valid``: the lecture's split (the *last* images of the training set validate).
4. Two ways to batch the arrays, both yielding ``(features, targets)``:
   the classic ``DataLoader`` with per-image PIL transforms, and ``DeviceBatchLoader``,
   which keeps the uint8 images on the GPU and applies the *same* torchvision transforms
   to whole batches there.
5. ``get_dataloaders_cifar10``: the lecture's entry point, tying 2-4 together.
6. ``UnNormalize`` and ``compute_channel_mean_std`` for showing and standardizing images.

This module knows nothing about models.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets, transforms

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
"""CIFAR-10's class names; position i is label i (also the alphabetical order)."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FOLDER_SHUFFLE_SEED = 0


class ImageArrays(NamedTuple):
    """One split of a data set: uint8 images (N, 32, 32, 3) and int64 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray


# ---------------------------------------------------------------------------
# 2. Reading CIFAR-10 into arrays
# ---------------------------------------------------------------------------


def missing_data_message(root: str | os.PathLike, reason: str) -> str:
    """Explain, for a student on an offline machine, where CIFAR-10 must go."""
    root = Path(root)
    return (
        f"CIFAR-10 was not found under '{root}' and could not be downloaded ({reason}).\n"
        "Fix it in one of two ways:\n"
        f"  1. Put the torchvision files in '{root / 'cifar-10-batches-py'}': data_batch_1 ... "
        "data_batch_5, test_batch and batches.meta (unpacked from cifar-10-python.tar.gz), or "
        f"copy cifar-10-python.tar.gz itself into '{root}'.\n"
        f"  2. Put one image per file in '{root / 'train'}/<class>/' and '{root / 'test'}/<class>/' "
        f"(PNG or JPEG), with the ten class folders {', '.join(CIFAR10_CLASSES)}.\n"
        "Or set SMOKE_TEST = True to run the notebook on synthetic data."
    )


def is_image_folder(root: str | os.PathLike) -> bool:
    """True when ``root`` holds the offline ``train/`` and ``test/`` folder layout."""
    return (Path(root) / "train").is_dir() and (Path(root) / "test").is_dir()


def read_image_folder(folder: str | os.PathLike) -> ImageArrays:
    """Decode every image in ``folder/<class>/`` into arrays, in a fixed shuffled order.

    The class folders must be exactly CIFAR-10's ten names, so that folder name and
    label agree with the torchvision files. Files are listed class by class; we shuffle
    them once with a fixed seed so that the last images of the training set (the
    validation split) contain every class, as they do in the torchvision files.
    """
    folder = Path(folder)
    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if tuple(found) != CIFAR10_CLASSES:
        raise ValueError(
            f"'{folder}' must contain exactly the ten CIFAR-10 class folders "
            f"{list(CIFAR10_CLASSES)}; found {found}. Rename the folders so that "
            "each label matches CIFAR-10's label order."
        )
    paths, labels = [], []
    for label, name in enumerate(CIFAR10_CLASSES):
        files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise FileNotFoundError(f"No PNG or JPEG images found in the class folders of '{folder}'.")
    images = np.stack([decode_image(path) for path in paths])
    order = np.random.default_rng(FOLDER_SHUFFLE_SEED).permutation(len(paths))
    return ImageArrays(images[order], np.asarray(labels, dtype=np.int64)[order])


def decode_image(path: Path) -> np.ndarray:
    """Read one 32x32 image file as a uint8 RGB array, or say which file is wrong."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
    if array.shape != (32, 32, 3):
        raise ValueError(f"'{path}' is {array.shape[1]}x{array.shape[0]} pixels; CIFAR-10 images are 32x32.")
    return array


def read_torchvision_cifar10(root: str | os.PathLike, train: bool, download: bool = True) -> ImageArrays:
    """Read the torchvision CIFAR-10 files under ``root``, downloading them if needed."""
    try:
        dataset = datasets.CIFAR10(root=str(root), train=train, download=download)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a missing file a RuntimeError
        raise FileNotFoundError(missing_data_message(root, str(error))) from error
    return ImageArrays(np.asarray(dataset.data, dtype=np.uint8), np.asarray(dataset.targets, dtype=np.int64))


def make_synthetic_cifar10(num_images: int, seed: int = 0) -> ImageArrays:
    """Generate CIFAR-shaped images whose class is visible in the pixels.

    Each class has its own background colour and its own colour for a centred square;
    Gaussian noise hides nothing a small network cannot see. Used by the smoke test
    and the test suite, so that every code path runs offline in seconds.
    """
    rng = np.random.default_rng(seed)
    palette = np.random.default_rng(12345).integers(0, 256, size=(len(CIFAR10_CLASSES), 2, 3))
    labels = np.arange(num_images, dtype=np.int64) % len(CIFAR10_CLASSES)
    rng.shuffle(labels)
    images = np.empty((num_images, 32, 32, 3), dtype=np.float64)
    images[:] = palette[labels, 0][:, None, None, :]
    images[:, 8:24, 8:24, :] = palette[labels, 1][:, None, None, :]
    images += rng.normal(0.0, 20.0, size=images.shape)
    return ImageArrays(np.clip(images, 0, 255).round().astype(np.uint8), labels)


def read_cifar10(
    root: str | os.PathLike = "data", train: bool = True, *, download: bool = True, smoke_test: bool = False
) -> ImageArrays:
    """Read one CIFAR-10 split (training: 50,000 images; test: 10,000) as uint8 arrays.

    ``root`` may hold the torchvision files (downloaded there on first use) or the
    offline ``train/<class>/*`` and ``test/<class>/*`` folders, detected automatically.
    With ``smoke_test=True`` a small synthetic set (320 training, 80 test images) stands in.
    """
    if smoke_test:
        return make_synthetic_cifar10(320, seed=1) if train else make_synthetic_cifar10(80, seed=2)
    if is_image_folder(root):
        return read_image_folder(Path(root) / ("train" if train else "test"))
    return read_torchvision_cifar10(root, train, download=download)


# ---------------------------------------------------------------------------
# 3. The lecture's train / validation split
# ---------------------------------------------------------------------------


def check_validation_fraction(validation_fraction: float | None) -> None:
    """Reject a validation fraction outside (0, 1) before any data is read."""
    if validation_fraction is not None and not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            f"validation_fraction must be between 0 and 1 (for example 0.1 for 10%), got {validation_fraction!r}."
        )


def split_train_valid(data: ImageArrays, validation_fraction: float) -> tuple[ImageArrays, ImageArrays]:
    """Split off the *last* ``validation_fraction`` of the images for validation (45,000 / 5,000)."""
    check_validation_fraction(validation_fraction)
    num_valid = int(validation_fraction * len(data.labels))
    num_train = len(data.labels) - num_valid
    train = ImageArrays(data.images[:num_train], data.labels[:num_train])
    valid = ImageArrays(data.images[num_train:], data.labels[num_train:])
    return train, valid


# ---------------------------------------------------------------------------
# 4a. The classic path: per-image PIL transforms in a DataLoader
# ---------------------------------------------------------------------------


class ArrayDataset(Dataset):
    """Serve uint8 images as PIL images through a torchvision transform, like ``datasets.CIFAR10``."""

    def __init__(self, data: ImageArrays, transform: Callable | None = None):
        self.data = data
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data.labels)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.data.images[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.data.labels[index])


# ---------------------------------------------------------------------------
# 4b. The fast path: the same transforms, applied to whole batches on the device
# ---------------------------------------------------------------------------

SUPPORTED_BATCH_TRANSFORMS = (
    "Resize (bilinear)",
    "RandomCrop (no padding)",
    "CenterCrop",
    "RandomHorizontalFlip",
    "ToTensor",
    "Normalize",
)


class BatchStep(NamedTuple):
    """One torchvision transform, translated to work on a whole (N, C, H, W) batch at once.

    Before ``ToTensor`` batches are uint8 with 0-255 values, as PIL images are; from
    ``ToTensor`` on they are float. ``random`` steps draw from the loader's generator.
    """

    apply: Callable[[torch.Tensor, torch.Generator], torch.Tensor]
    random: bool
    to_tensor: bool = False


def pair(size: int | Sequence[int]) -> tuple[int, int]:
    """Turn torchvision's ``size`` argument (int or (h, w)) into (h, w)."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[-1]))


def resized_shape(size: int | Sequence[int], height: int, width: int) -> tuple[int, int]:
    """The (h, w) that torchvision's ``Resize(size)`` produces for an image of (height, width)."""
    if isinstance(size, int) or len(size) == 1:
        short = size if isinstance(size, int) else size[0]
        if height <= width:
            return short, int(short * width / height)
        return int(short * height / width), short
    return pair(size)


def to_device_without_waiting(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy random numbers drawn on the CPU to ``device`` without waiting for the GPU to catch up.

    The random offsets are drawn with the loader's CPU generator (so they are the same
    on every device). A plain ``.to("cuda")`` makes PyTorch wait until all queued GPU
    work is done, once per batch; with ``non_blocking=True`` it does not, so the CPU can
    prepare the next batch while the GPU still computes the last one. (Safe here: from
    ordinary, unpinned memory CUDA copies the values to its own buffer before returning.)
    """
    return tensor.to(device, non_blocking=True)


def crop_batch(batch: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop image k of an (N, C, H, W) batch at (top[k], left[k]), all in one indexing operation.

    ``unfold`` turns the batch into a view of every possible crop position (no copy);
    indexing that view with each image's own offset copies just the chosen crops.
    """
    windows = batch.unfold(2, size[0], 1).unfold(3, size[1], 1)  # (N, C, H - h + 1, W - w + 1, h, w)
    return windows[torch.arange(batch.shape[0], device=batch.device), :, top, left]


def resize_step(transform: transforms.Resize, scaled: bool) -> BatchStep:
    """Bilinear resize; before ToTensor the result is rounded back to uint8, as PIL does."""
    if transform.interpolation != transforms.InterpolationMode.BILINEAR:
        raise ValueError("The batched path supports Resize with bilinear interpolation only.")

    def resize(batch, generator):
        shape = resized_shape(transform.size, batch.shape[2], batch.shape[3])
        downscale = shape[0] < batch.shape[2] or shape[1] < batch.shape[3]
        out = F.interpolate(
            batch.float(), size=shape, mode="bilinear", align_corners=False,
            antialias=bool(transform.antialias) and downscale,
        )
        return out if scaled else out.round_().clamp_(0, 255).to(torch.uint8)

    return BatchStep(resize, random=False)


def random_crop_step(transform: transforms.RandomCrop) -> BatchStep:
    """A crop at an independent random position for every image of the batch."""
    if transform.padding is not None or transform.pad_if_needed:
        raise ValueError("The batched path supports RandomCrop without padding only.")

    def random_crop(batch, generator):
        size = pair(transform.size)
        count = batch.shape[0]
        top = torch.randint(0, batch.shape[2] - size[0] + 1, (count,), generator=generator)
        left = torch.randint(0, batch.shape[3] - size[1] + 1, (count,), generator=generator)
        top, left = to_device_without_waiting(torch.stack([top, left]), batch.device)
        return crop_batch(batch, top, left, size)

    return BatchStep(random_crop, random=True)


def center_crop_step(transform: transforms.CenterCrop) -> BatchStep:
    """The same central crop for every image, positioned as torchvision positions it."""

    def center_crop(batch, generator):
        height, width = pair(transform.size)
        top = round((batch.shape[2] - height) / 2.0)
        left = round((batch.shape[3] - width) / 2.0)
        return batch[:, :, top : top + height, left : left + width]

    return BatchStep(center_crop, random=False)


def horizontal_flip_step(transform: transforms.RandomHorizontalFlip) -> BatchStep:
    """Mirror each image independently with probability ``p``."""

    def horizontal_flip(batch, generator):
        flip = to_device_without_waiting(torch.rand(batch.shape[0], generator=generator) < transform.p, batch.device)
        return torch.where(flip[:, None, None, None], batch.flip(-1), batch)

    return BatchStep(horizontal_flip, random=True)


def normalize_step(transform: transforms.Normalize) -> BatchStep:
    """(x - mean) / std per channel, computed as one multiply-add."""

    def normalize(batch, generator):
        mean = torch.as_tensor(transform.mean, dtype=batch.dtype, device=batch.device)[:, None, None]
        std = torch.as_tensor(transform.std, dtype=batch.dtype, device=batch.device)[:, None, None]
        return torch.addcmul(-mean / std, batch, 1.0 / std)

    return BatchStep(normalize, random=False)


def batched_step(transform: Callable, scaled: bool) -> BatchStep:
    """Translate one torchvision transform; ``scaled`` says whether ToTensor came before it."""
    t = transforms
    if isinstance(transform, t.Resize):
        return resize_step(transform, scaled)
    if isinstance(transform, t.RandomCrop):
        return random_crop_step(transform)
    if isinstance(transform, t.CenterCrop):
        return center_crop_step(transform)
    if isinstance(transform, t.RandomHorizontalFlip):
        return horizontal_flip_step(transform)
    if isinstance(transform, t.ToTensor):
        return BatchStep(lambda batch, generator: batch.float().div_(255.0), random=False, to_tensor=True)
    if isinstance(transform, t.Normalize):
        return normalize_step(transform)
    raise ValueError(
        f"The on-device batch loader cannot apply {type(transform).__name__}. Supported transforms: "
        f"{', '.join(SUPPORTED_BATCH_TRANSFORMS)}. Use the classic DataLoader path "
        "(FAST_DATA_PATH = False) for other transforms."
    )


def batched_steps(transform: Callable | None) -> list[BatchStep]:
    """Translate a ``transforms.Compose`` (or a single transform) into batch steps; ToTensor is required."""
    if transform is None:
        transform = transforms.ToTensor()
    parts = transform.transforms if isinstance(transform, transforms.Compose) else [transform]
    steps: list[BatchStep] = []
    for part in parts:
        steps.append(batched_step(part, scaled=any(step.to_tensor for step in steps)))
    if not any(step.to_tensor for step in steps):
        raise ValueError("The transforms must contain ToTensor(), as the DataLoader path needs it too.")
    return steps


def count_fixed_leading_steps(steps: list[BatchStep]) -> int:
    """How many leading steps give the same uint8 result every epoch (no randomness, before ToTensor)."""
    count = 0
    while count < len(steps) and not steps[count].random and not steps[count].to_tensor:
        count += 1
    return count


def seed_from_global_rng() -> int:
    """Draw a seed from torch's global RNG, exactly as DataLoader's samplers do each epoch."""
    return int(torch.empty((), dtype=torch.int64).random_().item())


class DeviceBatchLoader:
    """Batches of CIFAR-10 made on the device from uint8 images stored there.

    Behaves like the DataLoader it replaces: ``len()`` is the number of batches, each
    epoch draws a new shuffle order (and new random crops) from torch's global RNG, the
    last incomplete batch is dropped when ``drop_last`` is set, and iterating yields
    ``(features, targets)``. The torchvision transforms run once per *batch* instead of
    once per image, so the CPU never becomes the bottleneck. Leading transforms that
    give the same result every epoch (the resize to 70x70, the evaluation's centre crop)
    are applied once, when the loader is built, and their uint8 result is stored.
    """

    def __init__(
        self,
        data: ImageArrays,
        transform: Callable | None,
        batch_size: int,
        device: torch.device | str,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        channels_last: bool | None = None,
        chunk_size: int = 2048,
    ):
        steps = batched_steps(transform)
        fixed = count_fixed_leading_steps(steps)
        self.steps = steps[fixed:]
        self.device = torch.device(device)
        images = torch.as_tensor(data.images).to(self.device).permute(0, 3, 1, 2)
        self.images = torch.cat([self.apply(steps[:fixed], images[i : i + chunk_size], None)
                                 for i in range(0, len(images), chunk_size)]).contiguous()
        self.labels = torch.as_tensor(data.labels, dtype=torch.int64).to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        if channels_last is None:  # the layout fast GPU convolutions want; on a CPU the conversion only costs
            channels_last = self.device.type == "cuda"
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    @staticmethod
    def apply(steps: list[BatchStep], batch: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Run ``batch`` through ``steps`` in order (used once for the fixed steps, per batch for the rest)."""
        for step in steps:
            batch = step.apply(batch, generator)
        return batch

    def __len__(self) -> int:
        count = len(self.labels) / self.batch_size
        return math.floor(count) if self.drop_last else math.ceil(count)

    def __iter__(self):
        generator = torch.Generator().manual_seed(seed_from_global_rng() if self.shuffle else 0)
        count = len(self.labels)
        order = torch.randperm(count, generator=generator) if self.shuffle else torch.arange(count)
        order = order.to(self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            batch = self.apply(self.steps, self.images[index], generator)
            yield batch.contiguous(memory_format=self.memory_format), self.labels[index]


# ---------------------------------------------------------------------------
# 5. The lecture's entry point
# ---------------------------------------------------------------------------


def check_batch_size(batch_size: int) -> None:
    """Reject a batch size that is not a positive integer before any data is read."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive whole number such as 256, got {batch_size!r}.")


def make_loader(
    data: ImageArrays,
    transform: Callable | None,
    batch_size: int,
    *,
    shuffle: bool,
    drop_last: bool,
    num_workers: int,
    device: torch.device | str | None,
):
    """Build one split's loader: a DeviceBatchLoader when ``device`` is given, else a DataLoader."""
    if device is not None:
        return DeviceBatchLoader(data, transform, batch_size, device, shuffle=shuffle, drop_last=drop_last)
    return DataLoader(
        ArrayDataset(data, transform or transforms.ToTensor()),
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )


def get_dataloaders_cifar10(
    batch_size: int,
    num_workers: int = 0,
    validation_fraction: float | None = None,
    train_transforms: Callable | None = None,
    test_transforms: Callable | None = None,
    *,
    root: str | os.PathLike = "data",
    download: bool = True,
    smoke_test: bool = False,
    device: torch.device | str | None = None,
):
    """Return ``(train_loader, valid_loader, test_loader)``, or ``(train_loader, test_loader)``.

    As in the lecture: the training loader shuffles and drops its last incomplete batch,
    the validation images are the last ``validation_fraction`` of the training set (seen
    through ``test_transforms``, so without augmentation), and the test set is the
    official 10,000 images. ``device="cuda"`` switches to the fast on-device batches.
    """
    check_batch_size(batch_size)
    check_validation_fraction(validation_fraction)
    train_data = read_cifar10(root, train=True, download=download, smoke_test=smoke_test)
    test_data = read_cifar10(root, train=False, download=download, smoke_test=smoke_test)
    options = dict(batch_size=batch_size, num_workers=num_workers, device=device)
    valid_loader = None
    if validation_fraction is not None:
        train_data, valid_data = split_train_valid(train_data, validation_fraction)
        valid_loader = make_loader(valid_data, test_transforms, shuffle=False, drop_last=False, **options)
    train_loader = make_loader(train_data, train_transforms, shuffle=True, drop_last=True, **options)
    test_loader = make_loader(test_data, test_transforms, shuffle=False, drop_last=False, **options)
    if valid_loader is None:
        return train_loader, test_loader
    return train_loader, valid_loader, test_loader


# ---------------------------------------------------------------------------
# 6. Showing and standardizing images
# ---------------------------------------------------------------------------


class UnNormalize:
    """Undo ``transforms.Normalize(mean, std)`` for display; returns a new tensor."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = torch.as_tensor(mean, dtype=torch.float32)
        self.std = torch.as_tensor(std, dtype=torch.float32)

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        """Accept one image (C, H, W) or a batch (N, C, H, W)."""
        mean = self.mean.to(tensor.device)[:, None, None]
        std = self.std.to(tensor.device)[:, None, None]
        return tensor * std + mean


def compute_channel_mean_std(images: np.ndarray, chunk_size: int = 5000) -> tuple[list[float], list[float]]:
    """Exact per-channel mean and (population) standard deviation of uint8 images (N, H, W, C), in [0, 1].

    One streaming pass sums the pixel values and their squares per channel. On uint8
    data these sums are whole numbers, so float64 holds them exactly and the result is
    the population statistic, not an average of per-batch standard deviations.
    """
    total = np.zeros(images.shape[-1], dtype=np.float64)
    total_sq = np.zeros(images.shape[-1], dtype=np.float64)
    for start in range(0, len(images), chunk_size):
        chunk = images[start : start + chunk_size].reshape(-1, images.shape[-1]).astype(np.float64)
        total += chunk.sum(axis=0)
        total_sq += (chunk * chunk).sum(axis=0)
    count = images.size // images.shape[-1]
    mean = total / count
    std = np.sqrt(total_sq / count - mean**2)
    return (mean / 255.0).tolist(), (std / 255.0).tolist()
