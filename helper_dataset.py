"""CIFAR-10 data for the VGG-16 tutorial: reading, splitting and batching.

Read top to bottom:

1. ``CIFAR10_CLASSES``: the one place that knows the class names and their label order.
2. Reading images into uint8 arrays: one image file (``load_image``, also for the
   student's own picture), an offline ``train/<class>/*`` + ``test/<class>/*`` folder,
   the torchvision files (downloaded on first use), or synthetic smoke-test data.
   Each result says where it came from (``ImageArrays.source``). Anything wrong with
   the data stops with an error that names the file or folder and the fix.
3. ``split_train_valid``: the lecture's split (the *last* images of the training set validate).
4. Two ways to batch the arrays, both yielding ``(features, targets)``:
   the classic ``DataLoader`` with per-image PIL transforms, and ``DeviceBatchLoader``,
   which keeps the uint8 images on the GPU and applies the *same* torchvision transforms
   to whole batches there.
5. ``get_dataloaders_cifar10``: the lecture's entry point, tying 2-4 together, with its
   settings checked before any work; ``describe_loader`` says what a loader serves.
6. ``UnNormalize`` and ``compute_channel_mean_std`` for showing and standardizing images.

This module knows nothing about models; from ``helper_evaluation`` it takes only
``device_policy``, so that loader, training and evaluation agree on the memory layout.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import operator
import os
import socket
import tarfile
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torchvision import datasets, transforms
from torchvision.datasets.utils import check_integrity, download_and_extract_archive

from helper_evaluation import check_device_chosen, device_policy

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
    """One split of a data set: uint8 images (N, 32, 32, 3), int64 labels (N,), and where they came from.

    ``source`` is part of a training run's identity, so it names the kind of data and
    the split but never an absolute path: moving the data folder does not change it.
    Example: ``"CIFAR-10 torchvision files, training split, 50,000 images, first 45,000"``.
    An image folder's source also carries a digest of its pixels and labels (``content_digest``):
    two folders of the same name and size hold other images.
    """

    images: np.ndarray
    labels: np.ndarray
    source: str = ""


# ---------------------------------------------------------------------------
# 2. Reading CIFAR-10 into arrays
# ---------------------------------------------------------------------------

CIFAR10_TRAIN_IMAGES = 50_000
"""Images in CIFAR-10's training set (its test set has 10,000)."""

SMOKE_TRAIN_IMAGES, SMOKE_TEST_IMAGES = 640, 100
"""Sizes of the synthetic sets that ``smoke_test=True`` reads: 576 train and 64 validate at the lecture's 10%,
enough for VGG-16 to learn them visibly in the smoke test's 3 epochs of batches of 16
(see ``make_synthetic_cifar10``)."""


# 2a. One image file ------------------------------------------------------------


def deep_grey_to_rgb(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit or floating-point grey image as 8-bit RGB (see ``to_rgb``), a transparent grey on white."""
    grey = np.asarray(image, dtype=np.float64)
    brightest = grey.max()
    if image.mode.startswith("I;16") or brightest > 255:
        full_scale = 65535.0
    else:
        full_scale = 1.0 if image.mode == "F" and brightest <= 1 else 255.0
    scaled = np.clip(grey * 255.0 / full_scale, 0, 255).round().astype(np.uint8)
    if "transparency" in image.info:  # a PNG may mark one grey value as transparent, as 8-bit images do
        scaled[grey == image.info["transparency"]] = 255
    return Image.fromarray(scaled).convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB, as an image viewer shows it: transparent parts on white, deep grey scaled to 8 bits.

    ``convert("RGB")`` alone keeps whatever colour hides under transparent pixels (often
    black or garbage), clips 16-bit grey values above 255 to white, and floating-point grey
    in 0..1 to black. Mode "I;16..." is 16-bit grey; modes "I" (32-bit integers, also how
    older Pillow opens 16-bit PNGs) and "F" (floats) do not say their range, so it is
    guessed from the brightest pixel: up to 1 (floats only), up to 255, else 16 bits.
    """
    if image.mode.startswith("I") or image.mode == "F":
        return deep_grey_to_rgb(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:  # an alpha channel, or a transparent colour
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open one image file as an RGB PIL image, fully decoded, or say which file is wrong and what to do.

    PIL reads a file lazily: ``Image.open`` only looks at the header, so a truncated or
    corrupt file would fail later, deep inside a DataLoader, with a bare "image file is
    truncated". We force the full decode here, inside the ``try``, so the error names the
    file. An image so large that PIL suspects a decompression bomb is refused the same
    way, whether PIL raises its error or only warns (the warning is turned into the error).
    A photo's EXIF orientation is applied, as every image viewer does: phones store a
    portrait photo sideways with a tag saying so, and without it the picture would be
    classified (and shown) lying on its side.
    Used for the data set's files and for "classify your own picture".
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No image file at '{path}': check the path (and that it is a file, not a folder).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return to_rgb(ImageOps.exif_transpose(image))  # upright, as a viewer shows it; decodes every pixel
    except UnidentifiedImageError:
        raise ValueError(f"'{path}' is not an image file PIL can read (PNG or JPEG expected): replace it.") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(
            f"'{path}' is refused as a possible decompression bomb ({error}). The network sees 64x64 pixels: "
            "replace it with a smaller image, or delete it (re-export the data set if it came from one)."
        ) from error
    except (OSError, SyntaxError, ValueError) as error:  # PIL's "image file is truncated", "broken data stream"
        raise ValueError(
            f"'{path}' is damaged (truncated or corrupt; PIL says: {error}). Delete or replace this file "
            "(if it belongs to a data set folder, re-export or re-copy the data set)."
        ) from error


def decode_image(path: Path) -> np.ndarray:
    """Read one 32x32 image file as a uint8 RGB array, or say which file is wrong."""
    array = np.asarray(load_image(path))
    if array.shape != (32, 32, 3):
        raise ValueError(f"'{path}' is {array.shape[1]}x{array.shape[0]} pixels; CIFAR-10 images are 32x32.")
    return array


# 2b. The offline image-folder layout: root/train/<class>/*, root/test/<class>/* -------


def uses_image_folders(root: str | os.PathLike) -> bool:
    """True when ``root`` holds the ``train/`` and ``test/`` folders; an error naming the one that is missing.

    Without this check a lone ``train/`` would be ignored and CIFAR-10 downloaded instead,
    and the student would never learn that ``test/`` was what the layout lacked.
    """
    root = Path(root)
    has_train, has_test = (root / "train").is_dir(), (root / "test").is_dir()
    if has_train != has_test:
        present, missing = ("train", "test") if has_train else ("test", "train")
        raise FileNotFoundError(
            f"'{root / present}' exists but '{root / missing}' does not. The image-folder layout needs both, "
            f"each with the ten class folders: add '{root / missing}', or remove '{root / present}' "
            "to use torchvision's CIFAR-10 files instead."
        )
    return has_train


def list_image_folder(folder: Path) -> tuple[list[Path], list[int]]:
    """The image files of ``folder/<class>/`` and their labels, class by class, without decoding them.

    The class folders must be exactly CIFAR-10's ten names, so that folder name and
    label agree with the torchvision files, and none may be empty: a missing class
    would otherwise train silently on nine.
    """
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
    empty = [str(folder / name) for label, name in enumerate(CIFAR10_CLASSES) if label not in labels]
    if empty:
        raise FileNotFoundError(
            f"No PNG or JPEG images in {', '.join(repr(e) for e in empty)}. Every class needs its images: "
            "copy them there (one image per file), or re-export the data set."
        )
    return paths, labels


def read_image_folder(folder: str | os.PathLike) -> ImageArrays:
    """Decode every image in ``folder/<class>/`` into arrays, in a fixed shuffled order.

    Files are listed class by class; we shuffle them once with a fixed seed so that the
    last images of the training set (the validation split) contain every class, as they
    do in the torchvision files.
    """
    folder = Path(folder)
    paths, labels = list_image_folder(folder)
    images = np.stack([decode_image(path) for path in paths])
    order = np.random.default_rng(FOLDER_SHUFFLE_SEED).permutation(len(paths))
    images, labels = images[order], np.asarray(labels, dtype=np.int64)[order]
    source = f"image folder {folder.name}/, {len(paths):,} images, content {content_digest(images, labels)}"
    return ImageArrays(images, labels, source)


def content_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """Eight hex digits of a SHA-256 of every pixel and label, in order.

    Part of an image folder's ``source``, and so of a run's identity: a JPEG and a PNG export
    of CIFAR-10, or two subsets of the same size, have the same folder name and image count,
    and without this a run trained on one would be continued (and evaluated) on the other.
    The torchvision files need none: torchvision refuses them unless their checksums match.
    """
    digest = hashlib.sha256(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()[:8]


# 2c. torchvision's files: root/cifar-10-batches-py/, or the archive they come in ------


def torchvision_files() -> list[tuple[str, str]]:
    """(file name, MD5) of every file torchvision's CIFAR10 checks in ``cifar-10-batches-py``."""
    cifar = datasets.CIFAR10
    return [(name, md5) for name, md5 in cifar.train_list + cifar.test_list] + [
        (cifar.meta["filename"], cifar.meta["md5"])
    ]


def torchvision_file_problems(root: str | os.PathLike) -> list[str]:
    """One line per missing or damaged torchvision file under ``root``; empty when all are intact.

    torchvision itself only says "Dataset not found or corrupted"; naming the file
    (a truncated ``data_batch_3`` after an interrupted copy, say) tells the student what to fix.
    """
    folder = Path(root) / datasets.CIFAR10.base_folder
    problems = []
    for name, md5 in torchvision_files():
        path = folder / name
        if not path.is_file():
            problems.append(f"'{path}' is missing")
        elif not check_integrity(str(path), md5):
            problems.append(f"'{path}' is damaged (its MD5 checksum is not torchvision's: truncated or changed)")
    return problems


def archive_problem(root: str | os.PathLike, download: bool) -> str:
    """Say what is wrong with a ``cifar-10-python.tar.gz`` that is already in ``root``; '' when there is none."""
    archive = Path(root) / datasets.CIFAR10.filename
    if not archive.is_file():
        return ""
    if not check_integrity(str(archive), datasets.CIFAR10.tgz_md5):
        return (
            f"'{archive}' is there but damaged (its MD5 checksum is not torchvision's: an interrupted "
            f"download or copy?). Delete it and download it again from {datasets.CIFAR10.url}"
        )
    if not download:
        return f"'{archive}' is intact but not unpacked: pass download=True (nothing is downloaded) or unpack it"
    return f"'{archive}' is intact but could not be unpacked into '{root}': check free disk space and permissions"


def download_cifar10(root: str | os.PathLike, timeout: float) -> str:
    """Download and unpack ``cifar-10-python.tar.gz`` into ``root``; return why that failed, or ''.

    torchvision's download has no timeout: a server that accepts the connection and
    never answers would hang the notebook forever, silently. ``timeout`` bounds every
    wait on the network (connecting, each read). It is set as the socket default for
    the duration of the download only, since torchvision offers no other way to pass it.
    An intact archive already in ``root`` is only unpacked.
    """
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        download_and_extract_archive(
            datasets.CIFAR10.url, str(root), filename=datasets.CIFAR10.filename, md5=datasets.CIFAR10.tgz_md5
        )
    except (OSError, RuntimeError, EOFError, tarfile.TarError, zlib.error) as error:  # URLError is an OSError
        if isinstance(error, TimeoutError) or isinstance(getattr(error, "reason", None), TimeoutError):
            return f"the server did not answer within {timeout:g} s"
        return f"{type(error).__name__}: {error}"
    finally:
        socket.setdefaulttimeout(previous)
    return ""


def missing_data_message(root: str | os.PathLike, reason: str, problems: Sequence[str] = ()) -> str:
    """Explain, for a student on an offline machine, what is wrong under ``root`` and where CIFAR-10 must go."""
    root = Path(root)
    found = "".join(f"  - {problem}.\n" for problem in problems)
    return (
        f"CIFAR-10 could not be read from '{root}' and could not be downloaded ({reason}).\n"
        + (f"What is wrong:\n{found}" if found else "")
        + "Fix it in one of two ways:\n"
        f"  1. Put intact torchvision files in '{root / 'cifar-10-batches-py'}': data_batch_1 ... "
        "data_batch_5, test_batch and batches.meta (unpacked from cifar-10-python.tar.gz), or "
        f"copy an intact cifar-10-python.tar.gz into '{root}'.\n"
        f"  2. Put one image per file in '{root / 'train'}/<class>/' and '{root / 'test'}/<class>/' "
        f"(PNG or JPEG), with the ten class folders {', '.join(CIFAR10_CLASSES)}.\n"
        "Or set SMOKE_TEST = True to run the notebook on synthetic data."
    )


def read_torchvision_cifar10(
    root: str | os.PathLike, train: bool, download: bool = True, *, download_timeout: float = 60.0
) -> ImageArrays:
    """Read the torchvision CIFAR-10 files under ``root``, downloading them if needed.

    We check the files ourselves first, so that a failure names each missing or damaged
    file. The offline message is raised ``from None``: it already quotes the network
    error, and in Jupyter a chained traceback would bury it under 190 lines.
    """
    problems = torchvision_file_problems(root)
    root_existed = Path(root).is_dir()
    reason = "download=False"
    if problems and download:
        reason = download_cifar10(root, download_timeout) or "the download did not restore the files"
        problems = torchvision_file_problems(root)
    if problems:
        if not (Path(root) / datasets.CIFAR10.base_folder).is_dir():
            problems = []  # nothing there at all: the two ways to fix it say everything
        problems += [line for line in [archive_problem(root, download)] if line]
        if not root_existed:  # a typo in DATA_ROOT looks like missing data, and the download made the folder
            made = " (the download made it)" if Path(root).is_dir() else ""
            problems.append(f"there was no folder '{root}' before{made}: if DATA_ROOT has a typo, correct it")
        raise FileNotFoundError(missing_data_message(root, reason, problems)) from None
    dataset = datasets.CIFAR10(root=str(root), train=train, download=False)
    source = f"CIFAR-10 torchvision files, {'training' if train else 'test'} split, {len(dataset):,} images"
    return ImageArrays(np.asarray(dataset.data, dtype=np.uint8), np.asarray(dataset.targets, dtype=np.int64), source)


# 2d. Synthetic data for the smoke test -----------------------------------------


SMOKE_COLOURS = (
    (0, 255, 255),  # airplane: cyan, a sky
    (255, 0, 0),  # automobile: red
    (255, 255, 0),  # bird: yellow
    (255, 128, 0),  # cat: orange
    (128, 128, 128),  # deer: grey
    (255, 255, 255),  # dog: white
    (0, 255, 0),  # frog: green
    (0, 0, 0),  # horse: black
    (0, 0, 255),  # ship: blue
    (255, 0, 255),  # truck: magenta
)
"""One colour per class for the synthetic smoke-test images, far apart in RGB (corners of the colour cube)."""


def make_synthetic_cifar10(num_images: int, seed: int = 0) -> ImageArrays:
    """Generate CIFAR-shaped images whose class is visible in their colours, balanced over the ten classes.

    An image of class c is filled with class c's colour, with a centred 16x16 square in the
    colour of class (c + 5) mod 10, plus Gaussian noise (standard deviation 20) so that no
    two images are alike. Large areas of strong, distinct colours are what a deep ReLU
    network picks up in its first few dozen SGD steps, so the smoke test's VGG-16 visibly
    learns (rising accuracy, a confusion-matrix diagonal) instead of guessing. Classes c and
    c + 5 share their two colours, swapped, so the mistakes it still makes are readable
    (bird, yellow around black, taken for horse, black around yellow).

    Measured on a 2-core CPU with the notebook's VGG16 and transforms, SMOKE_TRAIN_IMAGES
    and SMOKE_TEST_IMAGES, batches of 16, learning rate 0.001, 3 epochs (108 steps): 88-100%
    test accuracy (both notebooks, seeds 1, 2 and 123, with and without Dropout2d), the whole
    notebook in about 75 s (the README's smoke-test figures).
    Used by the smoke test and the test suite, so that every code path runs offline.
    """
    rng = np.random.default_rng(seed)
    colours = np.asarray(SMOKE_COLOURS, dtype=np.float64)
    labels = np.arange(num_images, dtype=np.int64) % len(CIFAR10_CLASSES)
    rng.shuffle(labels)
    images = np.empty((num_images, 32, 32, 3), dtype=np.float64)
    images[:] = colours[labels][:, None, None, :]
    images[:, 8:24, 8:24, :] = colours[(labels + 5) % len(CIFAR10_CLASSES)][:, None, None, :]
    images += rng.normal(0.0, 20.0, size=images.shape)
    source = f"synthetic smoke-test data, seed {seed}, {num_images:,} images"
    return ImageArrays(np.clip(images, 0, 255).round().astype(np.uint8), labels, source)


# 2e. One entry point for all three sources -------------------------------------


def check_data_root(root: str | os.PathLike) -> None:
    """Refuse a ``root`` that is a file (torchvision would fail with a bare "[Errno 17] File exists")."""
    if Path(root).exists() and not Path(root).is_dir():
        raise NotADirectoryError(
            f"DATA_ROOT '{root}' is a file, not a folder. Set DATA_ROOT to the folder that holds "
            "(or will hold) CIFAR-10, for example 'data'."
        )


def count_training_images(root: str | os.PathLike, *, smoke_test: bool = False) -> int:
    """How many training images ``read_cifar10`` will return, found without decoding any.

    Lets ``get_dataloaders_cifar10`` check the split and the batch size before the long
    work. For image folders it lists both ``train/`` and ``test/``, so that a wrong class
    folder in either is reported at once, not after 50,000 images have been decoded.
    """
    if smoke_test:
        return SMOKE_TRAIN_IMAGES
    check_data_root(root)
    if uses_image_folders(root):
        list_image_folder(Path(root) / "test")
        return len(list_image_folder(Path(root) / "train")[0])
    return CIFAR10_TRAIN_IMAGES


def read_cifar10(
    root: str | os.PathLike = "data",
    train: bool = True,
    *,
    download: bool = True,
    smoke_test: bool = False,
    download_timeout: float = 60.0,
) -> ImageArrays:
    """Read one CIFAR-10 split (training: 50,000 images; test: 10,000) as uint8 arrays.

    ``root`` may hold the torchvision files (downloaded there on first use, waiting at
    most ``download_timeout`` seconds for the server each time) or the offline
    ``train/<class>/*`` and ``test/<class>/*`` folders, detected automatically.
    With ``smoke_test=True`` a small synthetic set stands in (``SMOKE_TRAIN_IMAGES``, ``SMOKE_TEST_IMAGES``).
    """
    if smoke_test:
        return make_synthetic_cifar10(SMOKE_TRAIN_IMAGES if train else SMOKE_TEST_IMAGES, seed=1 if train else 2)
    check_data_root(root)
    if uses_image_folders(root):
        return read_image_folder(Path(root) / ("train" if train else "test"))
    return read_torchvision_cifar10(root, train, download=download, download_timeout=download_timeout)


# ---------------------------------------------------------------------------
# 3. The lecture's train / validation split
# ---------------------------------------------------------------------------


def check_validation_fraction(validation_fraction: float | None) -> None:
    """Reject a validation fraction that is not a number in (0, 1) before any data is read."""
    if validation_fraction is None:
        return
    if isinstance(validation_fraction, bool) or not isinstance(validation_fraction, numbers.Real):
        raise ValueError(
            f"validation_fraction must be a number between 0 and 1, for example 0.1 (without quotes) for 10%; "
            f"got {validation_fraction!r} ({type(validation_fraction).__name__})."
        )
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            f"validation_fraction must be between 0 and 1 (for example 0.1 for 10%), got {validation_fraction!r}."
        )


def validation_size(num_images: int, validation_fraction: float) -> int:
    """How many of ``num_images`` validate (the lecture's ``int(fraction * n)``); an error when none would."""
    check_validation_fraction(validation_fraction)
    num_valid = int(validation_fraction * num_images)
    if num_valid == 0:
        raise ValueError(
            f"validation_fraction={validation_fraction!r} of {num_images:,} training images is less than one "
            f"image, so the validation set would be empty. Use at least 1/{num_images} (for example 0.1), "
            "or validation_fraction=None for no validation set."
        )
    return num_valid


def split_train_valid(data: ImageArrays, validation_fraction: float) -> tuple[ImageArrays, ImageArrays]:
    """Split off the *last* ``validation_fraction`` of the images for validation (45,000 / 5,000)."""
    num_valid = validation_size(len(data.labels), validation_fraction)
    num_train = len(data.labels) - num_valid
    train = ImageArrays(data.images[:num_train], data.labels[:num_train], f"{data.source}, first {num_train:,}")
    valid = ImageArrays(data.images[num_train:], data.labels[num_train:], f"{data.source}, last {num_valid:,}")
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


CLASSIC_PATH_FIX = ("Set FAST_DATA_PATH = False to use the classic DataLoader path, which applies every torchvision "
                    "transform.")


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


def resized_shape(size: int | Sequence[int], height: int, width: int, max_size: int | None = None) -> tuple[int, int]:
    """The (h, w) that torchvision's ``Resize(size, max_size=max_size)`` produces for an image of (height, width)."""
    if isinstance(size, int) or len(size) == 1:
        short = size if isinstance(size, int) else size[0]
        long = int(short * max(height, width) / min(height, width))
        if max_size is not None and long > max_size:  # torchvision caps the long side; the short one shrinks with it
            short, long = int(max_size * short / long), max_size
        return (short, long) if height <= width else (long, short)
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
    """Bilinear resize; before ToTensor the result is rounded back to uint8, as PIL does.

    Before ToTensor the classic path resizes PIL images, which are always antialiased when
    they shrink: torchvision ignores ``antialias=False`` there (with a warning), so we do too.
    """
    if transform.interpolation != transforms.InterpolationMode.BILINEAR:
        raise ValueError("The fast data path resizes with bilinear interpolation only, not "
                         f"{transform.interpolation.value}. {CLASSIC_PATH_FIX}")
    if transform.max_size is not None:  # refused as torchvision refuses them, but when the loader is built
        if not isinstance(transform.size, int) and len(transform.size) != 1:
            raise ValueError("Resize's max_size needs a single size (the shorter side's), as in torchvision.")
        short = transform.size if isinstance(transform.size, int) else transform.size[0]
        if transform.max_size <= short:
            raise ValueError(f"Resize's max_size ({transform.max_size}) must be larger than its size ({short}).")
    antialias = bool(transform.antialias) or not scaled

    def resize(batch, generator):
        shape = resized_shape(transform.size, batch.shape[2], batch.shape[3], transform.max_size)
        downscale = shape[0] < batch.shape[2] or shape[1] < batch.shape[3]
        out = F.interpolate(
            batch.float(), size=shape, mode="bilinear", align_corners=False, antialias=antialias and downscale,
        )
        return out if scaled else out.round_().clamp_(0, 255).to(torch.uint8)

    return BatchStep(resize, random=False)


def random_crop_step(transform: transforms.RandomCrop) -> BatchStep:
    """A crop at an independent random position for every image of the batch."""
    if transform.padding is not None or transform.pad_if_needed:
        raise ValueError(f"The fast data path supports RandomCrop without padding only. {CLASSIC_PATH_FIX}")

    def random_crop(batch, generator):
        size = pair(transform.size)
        if size[0] > batch.shape[2] or size[1] > batch.shape[3]:
            raise ValueError(
                f"A RandomCrop of {size[0]}x{size[1]} is larger than the {batch.shape[2]}x{batch.shape[3]} images it "
                "gets. Resize them first, larger than the crop (the lecture: Resize((70, 70)), then RandomCrop((64, "
                "64))), or crop a smaller size."
            )
        count = batch.shape[0]
        top = torch.randint(0, batch.shape[2] - size[0] + 1, (count,), generator=generator)
        left = torch.randint(0, batch.shape[3] - size[1] + 1, (count,), generator=generator)
        top, left = to_device_without_waiting(torch.stack([top, left]), batch.device)
        return crop_batch(batch, top, left, size)

    return BatchStep(random_crop, random=True)


def center_crop_step(transform: transforms.CenterCrop) -> BatchStep:
    """The same central crop for every image, positioned as torchvision positions it.

    A crop larger than the image is padded with zeros first, half on each side (the odd row
    or column after), as torchvision pads it.
    """

    def center_crop(batch, generator):
        height, width = pair(transform.size)
        pad_height, pad_width = max(height - batch.shape[2], 0), max(width - batch.shape[3], 0)
        if pad_height or pad_width:
            batch = F.pad(batch, (pad_width // 2, (pad_width + 1) // 2, pad_height // 2, (pad_height + 1) // 2))
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
        f"The fast data path cannot apply {type(transform).__name__}. Supported transforms: "
        f"{', '.join(SUPPORTED_BATCH_TRANSFORMS)}. {CLASSIC_PATH_FIX}"
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
    ``transform`` and ``source`` (where the images came from) are kept for ``describe_loader``.
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
        self.transform = transform if transform is not None else transforms.ToTensor()  # as the DataLoader path
        self.source = data.source
        steps = batched_steps(self.transform)
        fixed = count_fixed_leading_steps(steps)
        self.steps = steps[fixed:]
        self.device = torch.device(device)
        images = torch.as_tensor(data.images).to(self.device).permute(0, 3, 1, 2)
        self.images = torch.cat([self.apply(steps[:fixed], images[i : i + chunk_size], None)
                                 for i in range(0, len(images), chunk_size)]).contiguous()
        self.labels = torch.as_tensor(data.labels, dtype=torch.int64).to(self.device)
        self.try_steps(self.steps, self.images[:1])  # a crop larger than the images is refused now
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        if channels_last is None:  # the layout fast GPU convolutions want; the one rule shared with training
            channels_last = device_policy(self.device).channels_last
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    @staticmethod
    def apply(steps: list[BatchStep], batch: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Run ``batch`` through ``steps`` in order (used once for the fixed steps, per batch for the rest)."""
        for step in steps:
            batch = step.apply(batch, generator)
        return batch

    @staticmethod
    def try_steps(steps: list[BatchStep], image: torch.Tensor) -> None:
        """Run ``steps`` on one image, so that a step that cannot apply (a crop larger than the image) raises now.

        Its random crop and flip come from a generator of its own: torch's global RNG, which
        orders the epochs, is not touched.
        """
        DeviceBatchLoader.apply(steps, image, torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        count = len(self.labels) / self.batch_size
        return math.floor(count) if self.drop_last else math.ceil(count)

    def __iter__(self):
        # drawn for every epoch, shuffled or not (as DataLoader does): random crops differ between epochs either way
        generator = torch.Generator().manual_seed(seed_from_global_rng())
        count = len(self.labels)
        order = torch.randperm(count, generator=generator) if self.shuffle else torch.arange(count)
        order = order.to(self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            batch = self.apply(self.steps, self.images[index], generator)
            yield batch.contiguous(memory_format=self.memory_format), self.labels[index]


def check_batch_transforms(transform: Callable | None, image_shape: tuple[int, int, int] = (3, 32, 32)) -> None:
    """Refuse, before any image is read, transforms that the fast path cannot apply to CIFAR-10's 32x32 images.

    Translating them finds a transform it lacks; trying them on one blank image finds a crop
    larger than the images.
    """
    DeviceBatchLoader.try_steps(batched_steps(transform), torch.zeros((1, *image_shape), dtype=torch.uint8))


# ---------------------------------------------------------------------------
# 5. The lecture's entry point
# ---------------------------------------------------------------------------


def check_batch_size(batch_size: int, name: str = "batch_size") -> int:
    """Return ``batch_size`` as an int, or reject one that is not a positive whole number, before any work.

    Any integer type is accepted (``numpy.int64(256)`` from a NumPy calculation, say),
    but not ``True``, a float such as ``2.5`` or a string such as ``"256"``.
    """
    try:
        value = operator.index(batch_size)  # any integer type, NumPy's included; not floats or strings
    except TypeError:
        value = None
    if isinstance(batch_size, bool) or value is None or value <= 0:
        raise ValueError(f"{name} must be a positive whole number such as 256 (without quotes), got {batch_size!r}.")
    return value


def check_training_batches(num_images: int, validation_fraction: float | None, batch_size: int) -> None:
    """Refuse a split or batch size that leaves no validation image or no full training batch."""
    num_train = num_images - (0 if validation_fraction is None else validation_size(num_images, validation_fraction))
    if batch_size > num_train:
        raise ValueError(
            f"batch_size={batch_size} (the notebooks' BATCH_SIZE) is larger than the {num_train:,} training images, "
            "and the training loader drops its last incomplete batch, so it would have no batches at all. Use "
            f"batch_size <= {num_train}."
        )


def check_data_settings(root: str | os.PathLike, batch_size: int, validation_fraction: float | None, *,
                        smoke_test: bool = False) -> None:
    """Refuse a batch size, validation fraction or image folder that cannot work, before any image is decoded.

    Listing the files takes a moment; decoding 50,000 images takes seconds to minutes. The
    data cell (``get_dataloaders_cifar10``) makes these checks first, and so does the
    standardized notebook's statistics cell, which reads the training images before it.
    """
    check_validation_fraction(validation_fraction)
    check_training_batches(count_training_images(root, smoke_test=smoke_test), validation_fraction,
                           check_batch_size(batch_size))


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
    """Build one split's loader: a DeviceBatchLoader when ``device`` is given, else a DataLoader.

    The DataLoader's workers are not persistent, on purpose. Persistent workers draw
    their random seeds once, when the first epoch starts, and carry their RNG state
    from epoch to epoch; a run resumed from a checkpoint starts new workers, so it would
    draw different random crops than the run that was never interrupted. Without them,
    every epoch's iterator draws its worker seeds from torch's global RNG, which the
    checkpoint saves and restores, so a resumed run is bit-identical. The price is
    starting the workers again at each pass over the loader (three per epoch: training,
    training accuracy, validation). Measured for two workers over 45,000 images on our
    2-core machine: 0.16 s where they start by ``fork`` (Linux up to Python 3.13), but
    about 4.3 s by ``spawn`` (macOS, Windows) or ``forkserver`` (Linux from Python 3.14),
    where each worker imports torch anew. Persistent workers would pay that once, but
    there each keeps about 0.5 GB of its own (its torch and its copy of the images):
    3 to 4 GB for the notebooks' four loaders.
    """
    if device is not None:
        return DeviceBatchLoader(data, transform, batch_size, device, shuffle=shuffle, drop_last=drop_last)
    return DataLoader(
        ArrayDataset(data, transform or transforms.ToTensor()),
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
        persistent_workers=False,
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
    download_timeout: float = 60.0,
    eval_batch_size: int | None = None,
):
    """Return ``(train_loader, valid_loader, test_loader)``, or ``(train_loader, test_loader)``.

    As in the lecture: the training loader shuffles and drops its last incomplete batch,
    the validation images are the last ``validation_fraction`` of the training set (seen
    through ``test_transforms``, so without augmentation), and the test set is the
    official 10,000 images. ``device="cuda"`` switches to the fast on-device batches.
    ``eval_batch_size`` sets the validation and test batches (None: ``batch_size``, as
    in the lecture); evaluation keeps no gradients, so it can often use larger ones.
    The settings are checked against the number of training images before any image is
    read, so a mistake costs seconds, not a decode of 50,000 files.
    """
    check_device_chosen(device)  # "auto" from a parameters cell run again: say which cell to run, before any image
    batch_size = check_batch_size(batch_size)
    eval_batch_size = batch_size if eval_batch_size is None else check_batch_size(eval_batch_size, "eval_batch_size")
    check_data_settings(root, batch_size, validation_fraction, smoke_test=smoke_test)
    if device is not None:  # the fast path: a transform it lacks is named now, not after reading 60,000 images
        for transform in (train_transforms, test_transforms):
            check_batch_transforms(transform)
    reading = dict(download=download, smoke_test=smoke_test, download_timeout=download_timeout)
    train_data = read_cifar10(root, train=True, **reading)
    test_data = read_cifar10(root, train=False, **reading)
    options = dict(num_workers=num_workers, device=device)
    evaluation = dict(batch_size=eval_batch_size, shuffle=False, drop_last=False, **options)
    valid_loader = None
    if validation_fraction is not None:
        train_data, valid_data = split_train_valid(train_data, validation_fraction)
        valid_loader = make_loader(valid_data, test_transforms, **evaluation)
    train_loader = make_loader(train_data, train_transforms, batch_size, shuffle=True, drop_last=True, **options)
    test_loader = make_loader(test_data, test_transforms, **evaluation)
    if valid_loader is None:
        return train_loader, test_loader
    return train_loader, valid_loader, test_loader


def describe_loader(loader) -> dict:
    """What a loader serves, as plain values for a training run's identity.

    Returns ``batch_size``, ``transform`` (its repr), ``data`` (the ``ImageArrays.source``
    string), ``num_images``, ``num_classes`` (largest label + 1), ``shuffle`` and
    ``drop_last``, the same way for a DataLoader over ``ArrayDataset`` and for
    ``DeviceBatchLoader``. For any other loader (a student's own) it reports what it can
    find (a torchvision data set's ``targets`` too) and ``"unknown"`` for the rest; it never raises.
    """
    if isinstance(loader, DeviceBatchLoader):
        return {
            "batch_size": loader.batch_size,
            "transform": repr(loader.transform),
            "data": known(lambda: loader.source),
            "num_images": len(loader.labels),
            "num_classes": known(lambda: number_of_classes(loader.labels)),
            "shuffle": loader.shuffle,
            "drop_last": loader.drop_last,
        }
    dataset = getattr(loader, "dataset", None)
    return {
        "batch_size": known(lambda: loader.batch_size),
        "transform": known(lambda: repr(dataset.transform)),
        "data": known(lambda: dataset.data.source),
        "num_images": known(lambda: len(dataset)),
        "num_classes": known(lambda: number_of_classes(dataset_labels(dataset))),
        "shuffle": known(lambda: isinstance(loader.sampler, RandomSampler)),
        "drop_last": known(lambda: loader.drop_last),
    }


def dataset_labels(dataset):
    """The labels of an ``ArrayDataset`` (``data.labels``) or of a torchvision data set (``targets``)."""
    labels = getattr(getattr(dataset, "data", None), "labels", None)
    return labels if labels is not None else dataset.targets


def number_of_classes(labels) -> int:
    """The number of classes that integer labels 0, 1, ... imply: the largest label + 1."""
    return int(torch.as_tensor(labels).max()) + 1


def known(get: Callable[[], object]) -> object:
    """``get()``, or ``"unknown"`` when it fails or finds nothing (None or an empty string)."""
    try:
        value = get()
    except Exception:  # a student's loader may lack any of these attributes, or fail in len()
        return "unknown"
    return "unknown" if value is None or value == "" else value


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
