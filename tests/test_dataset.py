"""helper_dataset: reading, splitting, both batch paths, UnNormalize and channel statistics."""

import functools
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    MEAN,
    STD,
    MovedTo,
    checksums_of,
    lecture_test_transforms,
    lecture_train_transforms,
    random_images,
    write_image_folder,
    write_pickled_cifar10,
)
from PIL import Image
from torchvision import transforms

import helper_dataset as hd
from helper_dataset import (
    CIFAR10_CLASSES,
    CLASSIC_PATH_FIX,
    ArrayDataset,
    DeviceBatchLoader,
    ImageArrays,
    UnNormalize,
    compute_channel_mean_std,
    get_dataloaders_cifar10,
    make_synthetic_cifar10,
    read_cifar10,
    split_train_valid,
)

# --- reading -------------------------------------------------------------------------------


def test_reads_torchvision_pickles_with_only_the_checksum_patched(tmp_path):
    expected = write_pickled_cifar10(tmp_path)
    with checksums_of(tmp_path / "cifar-10-batches-py"):
        train = read_cifar10(tmp_path, train=True, download=False)
        test = read_cifar10(tmp_path, train=False, download=False)
    assert train.images.shape == (100, 32, 32, 3) and train.images.dtype == np.uint8
    assert test.images.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(train.images, expected.images)
    np.testing.assert_array_equal(train.labels, expected.labels)


def test_pickled_files_feed_the_lecture_loaders(tmp_path):
    write_pickled_cifar10(tmp_path)
    with checksums_of(tmp_path / "cifar-10-batches-py"):
        train_loader, valid_loader, test_loader = get_dataloaders_cifar10(
            8, 0, 0.1, lecture_train_transforms(), lecture_test_transforms(), root=tmp_path, download=False
        )
    features, targets = next(iter(train_loader))
    assert features.shape == (8, 3, 64, 64) and targets.shape == (8,)
    assert len(train_loader.dataset) == 90 and len(valid_loader.dataset) == 10 and len(test_loader.dataset) == 20


def test_missing_data_without_internet_names_the_fix(tmp_path):
    """The whole message, as the student reads it on an offline machine (planted: any of its lines changed, or an
    empty "What is wrong:" section, passed while the test looked for three words)."""
    root = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as error:
        read_cifar10(root, train=True, download=False)
    assert str(error.value) == (
        f"CIFAR-10 could not be read from '{root}' and could not be downloaded (download=False).\n"
        "What is wrong:\n"
        f"  - there was no folder '{root}' before: if DATA_ROOT has a typo, correct it.\n"
        "Fix it in one of two ways:\n"
        f"  1. Put intact torchvision files in '{root}/cifar-10-batches-py': data_batch_1 ... data_batch_5, "
        f"test_batch and batches.meta (unpacked from cifar-10-python.tar.gz), or copy an intact "
        f"cifar-10-python.tar.gz into '{root}'.\n"
        f"  2. Put one image per file in '{root}/train/<class>/' and '{root}/test/<class>/' (PNG or JPEG), with the "
        "ten class folders airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck.\n"
        "Or set SMOKE_TEST = True to run the notebook on synthetic data."
    )


def test_the_missing_data_message_lists_each_problem_on_its_own_line_and_no_empty_section(tmp_path):
    """Two damaged files are two lines; with nothing found wrong there is no "What is wrong:" heading over nothing
    (planted: problems joined by another separator, an empty section shown, passed the suite)."""
    message = hd.missing_data_message(tmp_path, "offline", ["data_batch_1 is damaged", "test_batch is missing"])
    assert "What is wrong:\n  - data_batch_1 is damaged.\n  - test_batch is missing.\nFix it in one of two ways:\n" \
        in message
    without = hd.missing_data_message(tmp_path, "offline")
    assert without.startswith(f"CIFAR-10 could not be read from '{tmp_path}' and could not be downloaded (offline).\n"
                              "Fix it in one of two ways:\n")
    assert "What is wrong" not in without


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_reads_an_image_folder_in_label_order(tmp_path, suffix):
    write_image_folder(tmp_path, suffix=suffix)
    train = read_cifar10(tmp_path, train=True)
    assert train.images.shape == (30, 32, 32, 3)
    assert sorted(np.bincount(train.labels).tolist()) == [3] * 10
    # each image's colour encodes its folder, so labels must match folder names
    for image, label in zip(train.images, train.labels, strict=True):
        assert abs(int(image[0, 0, 0]) - 20 * label) <= 4


def test_image_folder_is_shuffled_so_validation_holds_every_class(tmp_path):
    write_image_folder(tmp_path, per_class=10)
    _, valid = split_train_valid(read_cifar10(tmp_path, train=True), 0.5)
    assert len(set(valid.labels.tolist())) == 10


def test_image_folder_is_shuffled_the_same_way_every_time(tmp_path):
    """The validation images must be the same in every session: a resumed or compared run is validated on them."""
    write_image_folder(tmp_path, per_class=10)
    first, second = read_cifar10(tmp_path, train=True), read_cifar10(tmp_path, train=True)
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.images, second.images)


@pytest.mark.parametrize("suffix", [".PNG", ".JPG", ".Jpeg"])
def test_image_folder_reads_files_whose_suffix_is_in_capitals(tmp_path, suffix):
    """Cameras and Windows tools often write IMG_0001.JPG."""
    write_image_folder(tmp_path, suffix=suffix)
    assert read_cifar10(tmp_path, train=True).images.shape == (30, 32, 32, 3)


def test_stray_files_beside_the_class_folders_are_ignored(tmp_path):
    """A README or macOS's .DS_Store beside the ten class folders is not an eleventh class."""
    write_image_folder(tmp_path, per_class=1)
    (tmp_path / "train" / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "train" / "README.txt").write_text("CIFAR-10 as PNG files")
    assert sorted(read_cifar10(tmp_path, train=True).labels.tolist()) == list(range(10))


def test_an_eleventh_class_folder_is_rejected(tmp_path):
    write_image_folder(tmp_path, per_class=1)
    (tmp_path / "train" / "unsorted").mkdir()
    with pytest.raises(ValueError, match="ten CIFAR-10 class folders"):
        read_cifar10(tmp_path, train=True)


def test_a_missing_class_folder_is_rejected_with_the_ten_names(tmp_path):
    """Nine class folders (truck/ forgotten in the copy) get the layout message, not a bare "No such file"."""
    write_image_folder(tmp_path, per_class=1, classes=CIFAR10_CLASSES[:9])
    with pytest.raises(ValueError, match="ten CIFAR-10 class folders"):
        read_cifar10(tmp_path, train=True)


def test_a_class_with_a_single_image_is_not_empty(tmp_path):
    write_image_folder(tmp_path, per_class=1)
    assert sorted(read_cifar10(tmp_path, train=True).labels.tolist()) == list(range(10))


def test_image_files_are_listed_in_name_order_whatever_order_the_file_system_gives(tmp_path, monkeypatch):
    """The fixed shuffle, and so the validation split, are the same on every machine only if the list is."""
    write_image_folder(tmp_path, per_class=3)
    real_iterdir = type(tmp_path).iterdir
    monkeypatch.setattr(type(tmp_path), "iterdir", lambda folder: reversed(sorted(real_iterdir(folder))))
    paths, labels = hd.list_image_folder(tmp_path / "train")
    assert [(path.parent.name, path.name) for path in paths] == [
        (name, f"{k:03d}.png") for name in CIFAR10_CLASSES for k in range(3)]
    assert labels == [label for label in range(10) for _ in range(3)]


def test_image_folder_with_wrong_class_names_is_rejected(tmp_path):
    write_image_folder(tmp_path, classes=[*CIFAR10_CLASSES[:9], "lorry"])
    with pytest.raises(ValueError) as error:
        read_cifar10(tmp_path, train=True)
    found = sorted([*CIFAR10_CLASSES[:9], "lorry"])  # in the order a student lists them, "lorry" among them
    assert str(error.value) == (f"'{tmp_path / 'train'}' must contain exactly the ten CIFAR-10 class folders "
                                f"{list(CIFAR10_CLASSES)}; found {found}. Rename the folders so that each label "
                                "matches CIFAR-10's label order.")


def test_synthetic_data_is_balanced_and_deterministic():
    a, b = make_synthetic_cifar10(100, seed=3), make_synthetic_cifar10(100, seed=3)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.images.dtype == np.uint8 and a.images.shape == (100, 32, 32, 3)
    assert np.bincount(a.labels).tolist() == [10] * 10


def test_the_smoke_tests_class_colours_are_far_apart():
    """Ten colours at least 127 apart in one channel: two classes of one colour could not be told apart, and the smoke
    test's accuracy would stop near 90% (planted: the deer as black as the horse passed every test)."""
    colours = np.asarray(hd.SMOKE_COLOURS, dtype=np.int64)
    assert colours.shape == (10, 3)
    distances = np.abs(colours[:, None] - colours[None, :]).max(axis=-1)
    assert distances[~np.eye(10, dtype=bool)].min() >= 127


def test_each_seed_gives_other_synthetic_images_and_the_smoke_tests_test_set_is_not_its_training_set():
    """The smoke test's training and test sets are drawn with seeds 1 and 2 (planted: the seed ignored, which made
    the test images copies of the first training images, passed every test)."""
    one, two = make_synthetic_cifar10(100, seed=1), make_synthetic_cifar10(100, seed=2)
    assert not np.array_equal(one.labels, two.labels) and not np.array_equal(one.images, two.images)
    train, test = read_cifar10(train=True, smoke_test=True), read_cifar10(train=False, smoke_test=True)
    assert not np.array_equal(train.images[: len(test.images)], test.images)


def test_each_synthetic_image_shows_its_class_colours():
    data = make_synthetic_cifar10(200, seed=4)
    colours = np.asarray(hd.SMOKE_COLOURS, dtype=np.float64)
    background = data.images[:, :8].reshape(200, -1, 3).mean(axis=1)  # the top rows, outside the square
    square = data.images[:, 8:24, 8:24].reshape(200, -1, 3).mean(axis=1)
    # averages of 256 noisy pixels or more; clipping the noise at 0 and 255 moves them by 8 (20 / sqrt(2 pi));
    # the nearest other colour is 127 away
    np.testing.assert_allclose(background, colours[data.labels], atol=16)
    np.testing.assert_allclose(square, colours[(data.labels + 5) % 10], atol=16)


def test_smoke_data_sizes():
    train, test = read_cifar10(smoke_test=True), read_cifar10(train=False, smoke_test=True)
    assert (len(train.labels), len(test.labels)) == (hd.SMOKE_TRAIN_IMAGES, hd.SMOKE_TEST_IMAGES) == (640, 100)
    assert np.bincount(train.labels).tolist() == [64] * 10 and np.bincount(test.labels).tolist() == [10] * 10


# --- splitting and loaders -----------------------------------------------------------------


def test_split_is_the_lecture_split_sizes_and_disjoint():
    data = ImageArrays(np.zeros((50000, 1, 1, 1), np.uint8), np.arange(50000))
    train, valid = split_train_valid(data, 0.1)
    assert len(train.labels) == 45000 and len(valid.labels) == 5000
    assert valid.labels[0] == 45000  # the *last* 5,000 images validate
    assert not set(train.labels.tolist()) & set(valid.labels.tolist())


def test_split_keeps_every_image_with_its_own_label():
    data = ImageArrays(np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1), np.arange(20))  # image i shows i
    for part in split_train_valid(data, 0.25):
        assert part.images[:, 0, 0, 0].tolist() == part.labels.tolist()


@pytest.mark.parametrize("fraction", [0, 1.5, -0.1])
def test_split_refuses_a_fraction_outside_0_to_1(fraction):
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_train_valid(make_synthetic_cifar10(20), fraction)


def test_smoke_loaders_return_three_loaders_with_the_right_shapes():
    train_loader, valid_loader, test_loader = get_dataloaders_cifar10(
        16, validation_fraction=0.1, train_transforms=lecture_train_transforms(),
        test_transforms=lecture_test_transforms(), smoke_test=True,
    )
    assert len(train_loader) == (640 - 64) // 16  # drop_last
    for loader in (train_loader, valid_loader, test_loader):
        features, targets = next(iter(loader))
        assert features.shape[1:] == (3, 64, 64) and features.dtype == torch.float32
        assert targets.dtype == torch.int64
        assert -1.0 <= features.min() and features.max() <= 1.0


@pytest.mark.parametrize("device", [None, "cpu"])
def test_test_loader_serves_the_test_set_in_order_through_the_test_transforms(device):
    """The test accuracy is measured on every test image, seen as validation images are: centre crop, no shuffle."""
    *_, test_loader = lecture_loaders(device)
    description = hd.describe_loader(test_loader)
    assert description["transform"] == repr(lecture_test_transforms())
    assert description["shuffle"] is False and description["drop_last"] is False
    served = torch.cat([targets for _, targets in test_loader]).tolist()
    assert served == read_cifar10(train=False, smoke_test=True).labels.tolist()


def test_a_batch_as_large_as_the_training_set_is_allowed():
    train_loader, _, _ = get_dataloaders_cifar10(576, validation_fraction=0.1, smoke_test=True)  # 640 - 64 = 576
    assert len(train_loader) == 1


def test_without_validation_fraction_two_loaders_are_returned():
    loaders = get_dataloaders_cifar10(16, smoke_test=True)
    assert len(loaders) == 2


def test_num_workers_reaches_all_three_data_loaders():
    """NUM_WORKERS=2 loads in two worker processes, not silently in the notebook's own (none is started here)."""
    loaders = get_dataloaders_cifar10(16, num_workers=2, validation_fraction=0.1, smoke_test=True)
    assert [loader.num_workers for loader in loaders] == [2, 2, 2]


def test_the_batch_size_is_checked_against_the_training_folder_not_the_test_folder(tmp_path):
    write_image_folder(tmp_path, per_class=3)  # 30 training images
    for path in (tmp_path / "test").rglob("00[12].png"):
        path.unlink()  # 10 test images
    train_loader, test_loader = get_dataloaders_cifar10(20, root=tmp_path)
    assert len(train_loader) == 1 and len(test_loader.dataset) == 10
    with pytest.raises(ValueError, match="larger than the 30 training images"):
        get_dataloaders_cifar10(31, root=tmp_path)


@pytest.mark.parametrize("fraction", [0, 1, 10, -0.1, 1.5])
def test_bad_validation_fraction_is_rejected(fraction):
    with pytest.raises(ValueError, match="between 0 and 1"):
        get_dataloaders_cifar10(16, validation_fraction=fraction, smoke_test=True)


@pytest.mark.parametrize("batch_size", [0, -5, 2.5, "256", True])
def test_bad_batch_size_is_rejected(batch_size):
    with pytest.raises(ValueError) as error:
        get_dataloaders_cifar10(batch_size, smoke_test=True)
    assert str(error.value) == f"batch_size must be a positive whole number such as 256 (without quotes), got " \
                               f"{batch_size!r}."


def test_unnormalize_inverts_normalize_without_modifying_its_input():
    image = torch.rand(3, 64, 64)
    normalized = transforms.Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))(image)
    before = normalized.clone()
    restored = UnNormalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))(normalized)
    torch.testing.assert_close(restored, image)
    assert torch.equal(normalized, before)
    assert UnNormalize(MEAN, STD)(normalized[None]).shape == (1, 3, 64, 64)


def test_unnormalize_works_on_the_device_of_the_images():
    """A batch straight from the GPU is un-normalized there; the "meta" device shows a mismatch without a GPU."""
    batch = torch.empty(2, 3, 4, 4, device="meta")
    assert UnNormalize(MEAN, STD)(batch).device == batch.device


def test_channel_statistics_are_exact_population_values():
    data = random_images(300, seed=4).images
    mean, std = compute_channel_mean_std(data, chunk_size=7)  # chunks that do not divide the data
    pixels = data.reshape(-1, 3).astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(std, pixels.std(axis=0), rtol=0, atol=1e-9)


def test_channel_statistics_of_images_that_are_not_square():
    data = np.random.default_rng(5).integers(0, 256, size=(7, 6, 10, 3), dtype=np.uint8)
    mean, std = compute_channel_mean_std(data, chunk_size=3)
    pixels = data.reshape(-1, 3).astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(std, pixels.std(axis=0), rtol=0, atol=1e-9)


# --- the fast on-device path equals the classic one -------------------------------------------


def per_image_batch(data: ImageArrays, transform) -> torch.Tensor:
    """The classic path's result: torchvision's transform applied to one PIL image at a time."""
    dataset = ArrayDataset(data, transform)
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


FLOAT_EPSILON = 1e-6  # float32 rounding of values in [0, 1] (measured: 1/255 + 3e-8)


def test_batched_eval_transforms_match_torchvision_per_image():
    # PIL rounds its bilinear resize to whole uint8 steps in its own way; ours may round the
    # other way, so a pixel may differ by one step (1/255), never more (measured: exactly 1/255)
    data = random_images(64, seed=5)
    no_normalize = transforms.Compose(lecture_test_transforms().transforms[:-1])
    expected = per_image_batch(data, no_normalize)
    loader = DeviceBatchLoader(data, no_normalize, 64, "cpu", channels_last=False)
    actual, targets = next(iter(loader))
    assert actual.shape == expected.shape == (64, 3, 64, 64)
    assert (actual - expected).abs().max() <= 1 / 255 + FLOAT_EPSILON
    assert torch.equal(targets, torch.as_tensor(data.labels))


def test_batched_normalization_matches_torchvision():
    data = random_images(16, seed=6)
    expected = per_image_batch(data, lecture_test_transforms())
    actual, _ = next(iter(DeviceBatchLoader(data, lecture_test_transforms(), 16, "cpu")))
    assert (actual - expected).abs().max() <= (1 / 255 + FLOAT_EPSILON) / STD[0]  # Normalize divides by std


def test_batched_normalization_with_each_channels_own_mean_and_std_matches_torchvision():
    """CIFAR-10's own statistics differ per channel, and mean differs from std (the fixtures' 0.5s do not)."""
    data = random_images(8, seed=6)
    normalize = transforms.Compose([transforms.ToTensor(),
                                    transforms.Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))])
    actual, _ = next(iter(DeviceBatchLoader(data, normalize, 8, "cpu")))
    torch.testing.assert_close(actual, per_image_batch(data, normalize))


@pytest.mark.parametrize("crop", [transforms.RandomCrop(32, padding=4), transforms.RandomCrop(40, pad_if_needed=True)],
                         ids=["padding", "pad_if_needed"])
def test_batched_random_crop_with_padding_is_refused(crop):
    """The usual CIFAR-10 augmentation pads by 4: cropping 32 of 32 without it would silently do nothing. The message
    names the setting that applies it (planted: the fix dropped, passed)."""
    with pytest.raises(ValueError) as error:
        DeviceBatchLoader(random_images(4), transforms.Compose([crop, transforms.ToTensor()]), 4, "cpu")
    assert str(error.value) == ("The fast data path supports RandomCrop without padding only. " + CLASSIC_PATH_FIX)


def test_batched_resize_with_another_interpolation_is_refused():
    """Resize(..., NEAREST) must not be served silently as bilinear."""
    nearest = transforms.Resize(70, interpolation=transforms.InterpolationMode.NEAREST)
    with pytest.raises(ValueError) as error:
        DeviceBatchLoader(random_images(4), transforms.Compose([nearest, transforms.ToTensor()]), 4, "cpu")
    assert str(error.value) == ("The fast data path resizes with bilinear interpolation only, not nearest. "
                                + CLASSIC_PATH_FIX)


def test_the_fix_for_a_transform_the_fast_path_lacks_is_the_classic_path():
    assert CLASSIC_PATH_FIX == ("Set FAST_DATA_PATH = False to use the classic DataLoader path, which applies every "
                                "torchvision transform.")


@pytest.mark.parametrize("crops, sizes", [([transforms.RandomCrop(64)], "64x64 is larger than the 32x32"),
                                          ([transforms.CenterCrop(40), transforms.RandomCrop((36, 48))],
                                           "36x48 is larger than the 40x40")])
def test_a_random_crop_larger_than_its_images_is_refused_when_the_loader_is_built(crops, sizes):
    """Without the Resize to 70x70 the crop of 64 is cut from 32x32 images: torch's own error ("random_ expects 'from'
    to be less than 'to', but got from=0 >= to=-31") came at the first training batch. The trial that finds it
    draws from a generator of its own, not from the global RNG that orders the epochs (planted: no trial; the trial
    with the global RNG; only the height checked; a crop of the whole image refused)."""
    with pytest.raises(ValueError) as error:
        DeviceBatchLoader(random_images(4), transforms.Compose([*crops, transforms.ToTensor()]), 2, "cpu")
    assert str(error.value) == (f"A RandomCrop of {sizes} images it gets. Resize them first, larger than the crop (the "
                                "lecture: Resize((70, 70)), then RandomCrop((64, 64))), or crop a smaller size.")
    fits = transforms.Compose([transforms.RandomCrop(32), transforms.RandomHorizontalFlip(), transforms.ToTensor()])
    torch.manual_seed(0)
    DeviceBatchLoader(random_images(4), fits, 2, "cpu")
    after_building = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after_building, torch.rand(3))


def test_transforms_without_to_tensor_are_refused():
    """Without ToTensor the batches would be uint8 0-255 on the fast path, PIL images on the classic one."""
    with pytest.raises(ValueError, match=r"must contain ToTensor\(\)"):
        DeviceBatchLoader(random_images(4), transforms.Compose([transforms.CenterCrop(30)]), 4, "cpu")


def test_batched_random_crop_of_images_that_are_not_square_reaches_every_position():
    height, width = 68, 66  # a 64x64 crop: 5 rows x 3 columns of positions
    rows = np.broadcast_to(np.arange(height, dtype=np.uint8)[:, None], (height, width))
    cols = np.broadcast_to(np.arange(width, dtype=np.uint8)[None, :], (height, width))
    image = np.stack([rows, cols, np.zeros_like(rows)], axis=-1)
    data = ImageArrays(np.broadcast_to(image, (300, height, width, 3)).copy(), np.arange(300))
    torch.manual_seed(0)
    crop = transforms.Compose([transforms.RandomCrop(64), transforms.ToTensor()])
    batch, _ = next(iter(DeviceBatchLoader(data, crop, 300, "cpu")))
    top, left = ((batch[:, channel, 0, 0] * 255).round().long() for channel in (0, 1))
    assert set(zip(top.tolist(), left.tolist(), strict=True)) == {(t, c) for t in range(5) for c in range(3)}
    offsets = torch.arange(64)
    assert torch.equal((batch[:, 0, :, 0] * 255).round().long(), top[:, None] + offsets)  # the crops are whole
    assert torch.equal((batch[:, 1, 0, :] * 255).round().long(), left[:, None] + offsets)


def test_batched_random_crop_of_a_size_that_is_not_square_keeps_height_and_width_apart():
    """RandomCrop((60, 64)) cuts 60 rows and 64 columns: from 70x70, 11 top and 7 left positions."""
    crop = transforms.Compose([transforms.RandomCrop((60, 64)), transforms.ToTensor()])
    torch.manual_seed(0)
    features, targets = next(iter(DeviceBatchLoader(position_images(300), crop, 300, "cpu")))
    assert features.shape == (300, 3, 60, 64)
    top, left = (torch.tensor(offsets) for offsets in zip(*crop_offsets_by_label(features, targets), strict=True))
    assert set(top.tolist()) == set(range(11)) and set(left.tolist()) == set(range(7))
    rows, cols = (features[targets.argsort()] * 255).round().long()[:, :2, :, :].unbind(1)
    assert torch.equal(rows[:, :, 0], top[:, None] + torch.arange(60))
    assert torch.equal(cols[:, 0, :], left[:, None] + torch.arange(64))


@pytest.mark.parametrize("size", [31, 29])
def test_batched_centre_crop_with_an_odd_margin_is_placed_like_torchvision(size):
    """torchvision rounds half a pixel of margin as Python's round() does: 0.5 to 0, 1.5 to 2."""
    data = random_images(4, seed=3)
    crop = transforms.Compose([transforms.CenterCrop(size), transforms.ToTensor()])
    actual, _ = next(iter(DeviceBatchLoader(data, crop, 4, "cpu")))
    assert torch.equal(actual, per_image_batch(data, crop))


@pytest.mark.parametrize(("image_shape", "size"), [
    ((36, 28), 20), ((36, 28), (24, 16)),  # not square: the top margin from the height, the left one from the width
    ((32, 32), 40), ((32, 32), (40, 24)), ((32, 32), (33, 35)),  # larger than the image: zeros, the odd one after
    ((36, 28), (24, 32)),  # wider than a tall image: the width padded from the width (planted: from the height)
], ids=["tall-image", "tall-image-crop-not-square", "larger", "larger-in-height", "larger-by-odd-amounts",
        "wider-than-a-tall-image"])
def test_batched_centre_crop_matches_torchvision(image_shape, size):
    """Positioned as torchvision positions it; a crop larger than the image is padded with black as torchvision pads."""
    pixels = np.random.default_rng(3).integers(0, 256, size=(4, *image_shape, 3), dtype=np.uint8)
    data = ImageArrays(pixels, np.arange(4))
    crop = transforms.Compose([transforms.CenterCrop(size), transforms.ToTensor()])
    actual, _ = next(iter(DeviceBatchLoader(data, crop, 4, "cpu")))
    assert torch.equal(actual, per_image_batch(data, crop))


def test_batched_horizontal_flip_decides_for_each_image_on_its_own():
    data = random_images(64, seed=8)
    torch.manual_seed(0)
    flip = transforms.Compose([transforms.RandomHorizontalFlip(0.5), transforms.ToTensor()])
    batch, _ = next(iter(DeviceBatchLoader(data, flip, 64, "cpu")))
    original = per_image_batch(data, transforms.ToTensor())
    flipped = [bool(torch.equal(image, source.flip(-1))) for image, source in zip(batch, original, strict=True)]
    kept = [bool(torch.equal(image, source)) for image, source in zip(batch, original, strict=True)]
    assert all(a != b for a, b in zip(flipped, kept, strict=True))  # each image is either mirrored or left as it is
    assert 10 < sum(flipped) < 54  # about half of them (the chance of failing this by luck: below 1e-6)


def test_random_crop_offsets_cover_all_positions_uniformly():
    # image k's pixel (r, c) holds r; after Resize it is smooth, so crop at the uint8 level:
    # use 70x70 "images" directly by asking for RandomCrop only.
    count = 4900
    rows = np.broadcast_to(np.arange(70, dtype=np.uint8)[:, None, None], (70, 70, 3))
    cols = np.broadcast_to(np.arange(70, dtype=np.uint8)[None, :, None], (70, 70, 3))
    image = np.where(np.arange(3)[None, None, :] == 0, rows, cols).astype(np.uint8)
    data = ImageArrays(np.broadcast_to(image, (count, 70, 70, 3)).copy(), np.arange(count))
    crop = transforms.Compose([transforms.RandomCrop(64), transforms.ToTensor()])
    torch.manual_seed(0)
    batch, _ = next(iter(DeviceBatchLoader(data, crop, count, "cpu", shuffle=True)))
    top = (batch[:, 0, 0, 0] * 255).round().long()
    left = (batch[:, 1, 0, 0] * 255).round().long()
    counts = torch.bincount(top * 7 + left, minlength=49).double()
    assert counts.numel() == 49 and (counts > 0).all()
    expected = count / 49
    chi_square = float(((counts - expected) ** 2 / expected).sum())
    assert chi_square < 76.2  # 99.9th percentile of chi-square with 48 degrees of freedom
    assert len(set(zip(top[:64].tolist(), left[:64].tolist(), strict=True))) > 20  # differs within a batch


def position_images(count: int, size: int = 70) -> ImageArrays:
    """``count`` identical images whose red channel holds the row and green channel the column; label = index.

    After a crop without resizing, the first pixel of a crop tells where it was cut.
    """
    rows = np.broadcast_to(np.arange(size, dtype=np.uint8)[:, None], (size, size))
    cols = np.broadcast_to(np.arange(size, dtype=np.uint8)[None, :], (size, size))
    image = np.stack([rows, cols, np.zeros((size, size), np.uint8)], axis=-1)
    return ImageArrays(np.broadcast_to(image, (count, size, size, 3)).copy(), np.arange(count))


def crop_offsets_by_label(features: torch.Tensor, targets: torch.Tensor) -> list[tuple[int, int]]:
    """(top, left) of the crop of each image of ``position_images``, in label order."""
    top = (features[:, 0, 0, 0] * 255).round().long()
    left = (features[:, 1, 0, 0] * 255).round().long()
    order = targets.argsort()
    return list(zip(top[order].tolist(), left[order].tolist(), strict=True))


@pytest.mark.parametrize("shuffle", [True, False])
def test_device_loader_draws_new_crops_for_each_image_every_epoch(shuffle):
    """Random crops are augmentation only if they change: with one fixed crop per image, training sees 1 of 49.

    Unshuffled too, as DataLoader's workers do: the order stays, the crops change.
    """
    crop = transforms.Compose([transforms.RandomCrop(64), transforms.ToTensor()])
    loader = DeviceBatchLoader(position_images(64), crop, 64, "cpu", shuffle=shuffle)
    torch.manual_seed(0)
    first, second = (crop_offsets_by_label(*next(iter(loader))) for _ in range(2))
    same = sum(a == b for a, b in zip(first, second, strict=True))
    assert same <= 8, f"{same} of 64 images were cropped at the same place in both epochs (expected about 1.3)"


@pytest.mark.parametrize("device", [None, "cpu"])
def test_shuffled_loader_draws_a_new_order_every_epoch(device):
    data = numbered_images(64)
    loader = hd.make_loader(data, None, 64, shuffle=True, drop_last=False, num_workers=0, device=device)
    torch.manual_seed(0)
    first, second = (next(iter(loader))[1].tolist() for _ in range(2))
    assert sorted(first) == sorted(second) == list(range(64)) and first != second


TRAINING_STEPS = [transforms.RandomCrop(28), transforms.RandomHorizontalFlip(), transforms.ToTensor()]
EVALUATION_STEPS = [transforms.CenterCrop(28), transforms.ToTensor()]


@pytest.mark.parametrize("device, steps, shuffle", [("cpu", TRAINING_STEPS, True), ("cpu", EVALUATION_STEPS, False),
                                                    (None, EVALUATION_STEPS, False)],
                         ids=["fast-training", "fast-evaluation", "classic-evaluation"])
def test_a_loader_epoch_takes_one_number_from_the_global_rng_whatever_its_augmentations(device, steps, shuffle):
    """Each epoch of the fast path draws one seed, as DataLoader's sampler does, and shuffles, crops and flips with a
    generator seeded with it: the dropout masks that follow do not change when a student adds or removes an
    augmentation (planted: the shuffle, the crops or the flips drawn from the global RNG directly passed every test).
    An evaluation pass, neither shuffled nor augmented, draws one number too, on either path, as DataLoader does for
    its workers' seeds (planted: a fast evaluation loader that drew none passed every test)."""
    loader = hd.make_loader(random_images(16), transforms.Compose(steps), 8, shuffle=shuffle, drop_last=shuffle,
                            num_workers=0, device=device)
    torch.manual_seed(0)
    list(loader)
    after_epoch = torch.rand(3)
    torch.manual_seed(0)
    hd.seed_from_global_rng()
    assert torch.equal(after_epoch, torch.rand(3))


def test_the_classic_loaders_workers_draw_new_crops_every_epoch_from_the_students_seed():
    """DataLoader seeds each worker's torch RNG from the global RNG at every epoch, so the random crops change from
    epoch to epoch and follow the seed. A worker_init_fn that seeds the workers itself (common advice, for NumPy)
    would repeat one epoch's crops forever and ignore RANDOM_SEED (planted: worker_init_fn=seed_worker with
    torch.manual_seed(1234 + worker_id) passed every test)."""
    crop = transforms.Compose([transforms.RandomCrop(64), transforms.ToTensor()])
    loader = hd.make_loader(position_images(64), crop, 16, shuffle=False, drop_last=False, num_workers=2, device=None)

    def one_epoch():
        features, targets = zip(*loader, strict=True)
        return crop_offsets_by_label(torch.cat(features), torch.cat(targets))

    torch.manual_seed(1)
    first, second = one_epoch(), one_epoch()
    same = sum(a == b for a, b in zip(first, second, strict=True))
    assert same <= 8, f"{same} of 64 images were cropped at the same place in both epochs (expected about 1.3)"
    torch.manual_seed(2)
    assert one_epoch() != first
    torch.manual_seed(1)
    assert one_epoch() == first


LECTURE_AUGMENTATION = transforms.Compose([transforms.Resize((70, 70)), transforms.RandomCrop((64, 64)),
                                           transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                                           transforms.Normalize((0.5,) * 3, (0.25,) * 3)])


def loader_on_meta_device(images: int = 20) -> DeviceBatchLoader:
    """The fast path on PyTorch's "meta" device, which computes shapes but no values: a stand-in for a GPU, where a
    tensor left on the CPU makes the batch fail (meta and CPU tensors do not mix either)."""
    return DeviceBatchLoader(random_images(images), LECTURE_AUGMENTATION, 8, "meta", shuffle=True, drop_last=True,
                             channels_last=False)


def test_the_fast_path_keeps_its_images_and_makes_every_batch_on_its_device():
    """Planted, each passed every CPU test: the images or the labels not moved to the device (every batch would
    copy them there, or fail to mix with the model's device); the epoch's generator made on the device (CUDA
    generators cannot feed the CPU draws, and differ from the CPU ones)."""
    loader = loader_on_meta_device()
    assert loader.images.device.type == loader.labels.device.type == "meta"
    batches = list(loader)
    assert len(batches) == 2
    assert all(x.device.type == y.device.type == "meta" and x.shape == (8, 3, 64, 64) for x, y in batches)


class RecordsTheDeviceOfItsIndex(torch.Tensor):
    """The stored images' stand-in: records on which device each epoch's order indexes them."""

    seen: list = []

    def __getitem__(self, index):
        RecordsTheDeviceOfItsIndex.seen.append(index.device.type)
        return super().__getitem__(index).as_subclass(torch.Tensor)


def test_the_fast_paths_epoch_order_indexes_the_images_on_their_device(monkeypatch):
    """The shuffled order is drawn on the CPU and moved to the device once per epoch (planted: not moved, which on a
    GPU copies every batch's indices there, waiting each time, passed every CPU test)."""
    loader = loader_on_meta_device()
    loader.images = loader.images.as_subclass(RecordsTheDeviceOfItsIndex)
    loader.labels = loader.labels.as_subclass(RecordsTheDeviceOfItsIndex)
    monkeypatch.setattr(RecordsTheDeviceOfItsIndex, "seen", [])
    list(loader)
    assert RecordsTheDeviceOfItsIndex.seen == ["meta"] * 4  # images and labels of two batches


def test_the_random_numbers_of_each_batch_go_to_the_batchs_device_without_waiting(monkeypatch):
    """Per batch, the crop offsets and the flip mask are drawn on the CPU (the same numbers on every device) and sent
    to the batch's device in one non-blocking copy each (planted: the flip mask left on the CPU, which fails in
    torch.where on a GPU; the offsets indexed from the CPU, a blocking copy per batch; both passed every CPU test)."""
    loader, sent, real = loader_on_meta_device(), [], hd.to_device_without_waiting
    monkeypatch.setattr(hd, "to_device_without_waiting",
                        lambda tensor, device: sent.append((tuple(tensor.shape), device)) or real(tensor, device))
    list(loader)
    assert sent == [((2, 8), torch.device("meta")), ((8,), torch.device("meta"))] * 2  # offsets, then the mask


def test_random_numbers_are_sent_to_the_device_without_waiting():
    """A plain .to("cuda") waits until the GPU has finished its queued work, once per batch (planted:
    non_blocking dropped, passed every CPU test)."""
    numbers = MovedTo(torch.zeros(2))
    hd.to_device_without_waiting(numbers, torch.device("cuda", 0))
    assert numbers.calls == [((torch.device("cuda", 0),), {"non_blocking": True})]


def test_device_loader_orders_do_not_repeat_over_many_epochs():
    """Each epoch's seed is one of 2**64 drawn from torch's global RNG: 30 epochs of 64 images never repeat an order."""
    loader = DeviceBatchLoader(numbered_images(64), None, 64, "cpu", shuffle=True)
    torch.manual_seed(0)
    orders = {tuple(next(iter(loader))[1].tolist()) for _ in range(30)}
    assert len(orders) == 30


def test_device_loader_draws_new_flips_every_epoch():
    """A flip decided once, when the loader is built, would mirror the same images in every epoch."""
    data = ImageArrays(random_images(64, seed=8).images, np.arange(64))
    loader = DeviceBatchLoader(data, transforms.Compose([transforms.RandomHorizontalFlip(), transforms.ToTensor()]),
                               64, "cpu")
    original = per_image_batch(data, transforms.ToTensor())

    def mirrored():
        features, targets = next(iter(loader))
        return [bool(torch.equal(features[k], original[targets[k]].flip(-1))) for k in range(64)]

    torch.manual_seed(0)
    first, second = mirrored(), mirrored()
    assert sum(a != b for a, b in zip(first, second, strict=True)) > 10  # about 32; below 10 by luck: p < 1e-5


@pytest.mark.parametrize("device", [None, "cpu"])
def test_targets_are_int64_as_cross_entropy_needs(device):
    """cross_entropy refuses int32 targets ("expected target dtype to be Long"), whatever type the labels come in."""
    images = numbered_images(8)
    data = ImageArrays(images.images, images.labels.astype(np.int32))
    loader = hd.make_loader(data, None, 4, shuffle=True, drop_last=False, num_workers=0, device=device)
    assert [targets.dtype for _, targets in loader] == [torch.int64, torch.int64]


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_batched_horizontal_flip_mirrors_left_and_right_like_torchvision(p):
    data = random_images(8, seed=8)
    flip = transforms.Compose([transforms.RandomHorizontalFlip(p), transforms.ToTensor()])  # p 0 or 1: no chance
    batch, _ = next(iter(DeviceBatchLoader(data, flip, 8, "cpu")))
    assert torch.equal(batch, per_image_batch(data, flip))


@pytest.mark.parametrize(("transform", "stored_shape"), [(lecture_test_transforms(), (4, 3, 64, 64)),
                                                         (lecture_train_transforms(), (4, 3, 70, 70))],
                         ids=["test", "train"])
def test_device_loader_stores_the_fixed_leading_steps_as_uint8(transform, stored_shape):
    """The resize (and the test's centre crop) are done once; the images stay uint8, a quarter of float32's memory."""
    loader = DeviceBatchLoader(random_images(4), transform, 4, "cpu")
    assert loader.images.dtype == torch.uint8 and tuple(loader.images.shape) == stored_shape


def test_device_loader_applies_the_fixed_steps_to_every_chunk():
    """The stored resize runs 2,048 images at a time: 45,000 images are many chunks, the other tests' few only one."""
    data = random_images(10, seed=2)
    whole = DeviceBatchLoader(data, lecture_test_transforms(), 10, "cpu")
    chunked = DeviceBatchLoader(data, lecture_test_transforms(), 10, "cpu", chunk_size=3)  # 3 + 3 + 3 + 1
    assert torch.equal(chunked.images, whole.images)


@pytest.mark.parametrize("crop", [(20, 32), (32, 20), (30, 32)], ids=["wide", "tall", "long-side-not-whole"])
def test_resize_of_the_short_side_keeps_the_aspect_ratio_like_torchvision(crop):
    """``Resize(40)`` scales the shorter side to 40 pixels: a 20x32 picture becomes 40x64, not 64x40.

    A 30x32 one becomes 40x42: torchvision truncates the long side's 42.67, it does not round it.
    """
    data = random_images(4, seed=9)
    resize = transforms.Compose([transforms.CenterCrop(crop), transforms.Resize(40), transforms.ToTensor()])
    expected = per_image_batch(data, resize)
    actual, _ = next(iter(DeviceBatchLoader(data, resize, 4, "cpu")))
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max() <= 1 / 255 + FLOAT_EPSILON


@pytest.mark.parametrize("size", [(16, 16), (16, 48)], ids=["smaller", "smaller-in-height-only"])
def test_batched_downscaling_resize_antialiases_like_pil(size):
    """PIL always smooths when it shrinks; bilinear sampling without it skips pixels (measured: 72/255 off at 16x16)."""
    data = random_images(8, seed=10)
    resize = transforms.Compose([transforms.Resize(size), transforms.ToTensor()])
    actual, _ = next(iter(DeviceBatchLoader(data, resize, 8, "cpu")))
    assert (actual - per_image_batch(data, resize)).abs().max() <= 1 / 255 + FLOAT_EPSILON


def test_batched_resize_before_to_tensor_antialiases_even_when_told_not_to_like_pil():
    """On PIL images torchvision ignores antialias=False (with a warning): the classic path smooths, so must this."""
    data = random_images(8, seed=10)
    resize = transforms.Compose([transforms.Resize(16, antialias=False), transforms.ToTensor()])
    actual, _ = next(iter(DeviceBatchLoader(data, resize, 8, "cpu")))
    with pytest.warns(UserWarning, match="antialias is ignored"):
        expected = per_image_batch(data, resize)
    assert (actual - expected).abs().max() <= 1 / 255 + FLOAT_EPSILON


def test_batched_resize_after_to_tensor_keeps_antialias_false_like_torchvision():
    """On tensors torchvision honours antialias=False, so the batched path must too (planted: smoothing whenever
    the resize shrinks, antialias or not, passed every test)."""
    data = random_images(8, seed=10)
    resize = transforms.Compose([transforms.ToTensor(), transforms.Resize(16, antialias=False)])
    actual, _ = next(iter(DeviceBatchLoader(data, resize, 8, "cpu")))
    assert (actual - per_image_batch(data, resize)).abs().max() <= FLOAT_EPSILON


@pytest.mark.parametrize("max_size", [50, 60, 70])
def test_batched_resize_caps_the_long_side_at_max_size_like_torchvision(max_size):
    """Resize(40, max_size=50) of a 20x32 picture: 40x64 would exceed 50, so the long side is 50 and the short 31.

    With max_size=60 the short side is 37, the 37.5 truncated, as torchvision does.
    """
    data = random_images(4, seed=9)
    resize = transforms.Compose([transforms.CenterCrop((20, 32)), transforms.Resize(40, max_size=max_size),
                                 transforms.ToTensor()])
    expected = per_image_batch(data, resize)
    actual, _ = next(iter(DeviceBatchLoader(data, resize, 4, "cpu")))
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max() <= 1 / 255 + FLOAT_EPSILON


@pytest.mark.parametrize(("resize", "message"), [(transforms.Resize((70, 70), max_size=80), "needs a single size"),
                                                 (transforms.Resize(70, max_size=70), "must be larger than its size")],
                         ids=["two-sizes", "max-not-larger"])
def test_batched_resize_refuses_a_max_size_that_torchvision_refuses(resize, message):
    with pytest.raises(ValueError, match=message):
        DeviceBatchLoader(random_images(4), transforms.Compose([resize, transforms.ToTensor()]), 4, "cpu")
    with pytest.raises(ValueError, match="max_size"):
        per_image_batch(random_images(1), transforms.Compose([resize, transforms.ToTensor()]))


@pytest.mark.parametrize("size", [70, 20])
def test_batched_resize_after_to_tensor_is_not_rounded_to_256_levels(size):
    """After ToTensor torchvision resizes the float tensor itself; rounding to uint8 there would make it 0 or 1."""
    data = random_images(8, seed=11)
    resize = transforms.Compose([transforms.ToTensor(), transforms.Resize(size)])
    actual, _ = next(iter(DeviceBatchLoader(data, resize, 8, "cpu")))
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual, per_image_batch(data, resize), rtol=0, atol=1e-5)


def numbered_images(count: int) -> ImageArrays:
    """Flat images whose colour spells their index (red = index % 256, green = index // 256); label = index."""
    index = np.arange(count)
    images = np.zeros((count, 32, 32, 3), np.uint8)
    images[..., 0] = (index % 256)[:, None, None]
    images[..., 1] = (index // 256)[:, None, None]
    return ImageArrays(images, index.astype(np.int64))


def index_shown_in(features: torch.Tensor) -> torch.Tensor:
    """Read back the index that ``numbered_images`` painted, from the centre pixel of each image."""
    pixels = (features[:, :2, features.shape[2] // 2, features.shape[3] // 2] * 255).round().long()
    return pixels[:, 0] + 256 * pixels[:, 1]


@pytest.mark.parametrize("device", [None, "cpu"])
def test_every_shuffled_image_arrives_with_its_own_label(device):
    data = numbered_images(300)
    resize_and_crop = transforms.Compose(lecture_train_transforms().transforms[:-1])  # flat colours survive exactly
    loader = hd.make_loader(data, resize_and_crop, 32, shuffle=True, drop_last=False, num_workers=0, device=device)
    torch.manual_seed(3)
    batches = list(loader)
    for features, targets in batches:
        assert torch.equal(index_shown_in(features), targets)
    assert torch.cat([t for _, t in batches]).tolist() != list(range(300))  # really shuffled


@pytest.mark.parametrize("device", [None, "cpu"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_drop_last_drops_only_the_incomplete_last_batch(device, shuffle):
    data = numbered_images(103)  # 10 full batches of 10, and 3 images left over
    build = functools.partial(hd.make_loader, data, None, 10, shuffle=shuffle, num_workers=0, device=device)
    dropping, keeping = build(drop_last=True), build(drop_last=False)
    assert len(dropping) == 10 and len(keeping) == 11
    dropped = [targets for _, targets in dropping]
    assert [len(t) for t in dropped] == [10] * 10
    seen = torch.cat(dropped).tolist()
    assert len(set(seen)) == 100 and set(seen) <= set(range(103))  # every image at most once
    if not shuffle:
        assert seen == list(range(100))  # the remainder, images 100-102, is what is dropped
    kept = [targets for _, targets in keeping]
    assert [len(t) for t in kept] == [10] * 10 + [3]
    assert sorted(torch.cat(kept).tolist()) == list(range(103))  # every image exactly once


def test_device_loader_order_follows_the_global_seed():
    """The same seed gives the same order and crops, another seed another order (a fixed seed of its own fails)."""
    data = ImageArrays(np.zeros((50, 32, 32, 3), np.uint8), np.arange(50))
    loader = DeviceBatchLoader(data, lecture_train_transforms(), 50, "cpu", shuffle=True)
    torch.manual_seed(1)
    first = next(iter(loader))
    torch.manual_seed(1)
    second = next(iter(loader))
    torch.manual_seed(2)
    other = next(iter(loader))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[1], other[1])


def test_unsupported_transform_names_the_supported_ones():
    data = random_images(4)
    with pytest.raises(ValueError) as error:
        DeviceBatchLoader(data, transforms.Compose([transforms.ColorJitter(), transforms.ToTensor()]), 2, "cpu")
    assert str(error.value) == (
        "The fast data path cannot apply ColorJitter. Supported transforms: Resize (bilinear), RandomCrop (no "
        "padding), CenterCrop, RandomHorizontalFlip, ToTensor, Normalize. " + CLASSIC_PATH_FIX)


def test_loaders_built_with_a_device_are_device_loaders():
    train_loader, valid_loader, test_loader = get_dataloaders_cifar10(
        32, validation_fraction=0.1, train_transforms=lecture_train_transforms(),
        test_transforms=lecture_test_transforms(), smoke_test=True, device="cpu",
    )
    assert all(isinstance(loader, DeviceBatchLoader) for loader in (train_loader, valid_loader, test_loader))
    assert len(train_loader) == 576 // 32 and len(valid_loader) == 2 and len(test_loader) == 4  # 100 = 3 * 32 + 4


# --- where the data came from, and what a loader serves (a run's identity) -------------------


def test_sources_name_the_data_and_split_without_absolute_paths(tmp_path):
    write_pickled_cifar10(tmp_path / "pickles")
    with checksums_of(tmp_path / "pickles" / "cifar-10-batches-py"):
        pickled = read_cifar10(tmp_path / "pickles", train=True, download=False)
        pickled_test = read_cifar10(tmp_path / "pickles", train=False, download=False)
    assert pickled.source == "CIFAR-10 torchvision files, training split, 100 images"
    assert pickled_test.source == "CIFAR-10 torchvision files, test split, 20 images"
    write_image_folder(tmp_path / "folders")
    assert re.fullmatch(r"image folder test/, 30 images, content [0-9a-f]{8}", read_cifar10(tmp_path / "folders",
                                                                                            train=False).source)
    assert make_synthetic_cifar10(640, seed=1).source == "synthetic smoke-test data, seed 1, 640 images"
    train, valid = split_train_valid(ImageArrays(np.zeros((50000, 1, 1, 1), np.uint8), np.arange(50000), "X"), 0.1)
    assert (train.source, valid.source) == ("X, first 45,000", "X, last 5,000")


def test_moving_the_data_folder_keeps_the_source(tmp_path):
    write_image_folder(tmp_path / "here")
    (tmp_path / "here").rename(tmp_path / "there")
    write_image_folder(tmp_path / "here")
    assert read_cifar10(tmp_path / "here").source == read_cifar10(tmp_path / "there").source


def test_two_image_folders_of_one_name_and_size_are_different_data(tmp_path):
    """A JPEG and a PNG export of CIFAR-10, or two subsets of one size: a run of one must not continue on the other.
    One pixel changed by one grey level, or one image moved to another class, is other data."""
    write_image_folder(tmp_path / "png")
    write_image_folder(tmp_path / "one_pixel")
    image = tmp_path / "one_pixel" / "train" / "cat" / "001.png"
    pixels = np.asarray(Image.open(image)).copy()
    pixels[5, 7, 2] += 1
    Image.fromarray(pixels).save(image)
    write_image_folder(tmp_path / "relabelled")
    cat, deer = tmp_path / "relabelled" / "train" / "cat", tmp_path / "relabelled" / "train" / "deer"  # labels 3, 4
    (cat / "002.png").rename(deer / "0.png")  # cat's last image, now deer's first: the same pixels in the same order
    sources = [read_cifar10(tmp_path / name).source for name in ("png", "one_pixel", "relabelled")]
    assert all(source.startswith("image folder train/, 30 images, content ") for source in sources)
    assert len(set(sources)) == 3


def test_the_content_digest_is_of_the_values_not_of_how_numpy_stores_them():
    """The same folder gives the same digest on every machine: labels built from Python ints are int32 on Windows
    with NumPy 1.x and int64 elsewhere (planted: either dtype dropped, so the stored type was hashed)."""
    images, labels = np.arange(2 * 2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 2, 3), np.array([3, 4], dtype=np.int64)
    expected = hashlib.sha256(images.tobytes() + labels.astype("<i8").tobytes()).hexdigest()[:8]
    assert hd.content_digest(images, labels) == expected
    assert hd.content_digest(images, labels.astype(np.int32)) == expected
    assert hd.content_digest(images.astype(np.int64), labels) == expected


def lecture_loaders(device=None, **options):
    return get_dataloaders_cifar10(
        32, 0, 0.1, lecture_train_transforms(), lecture_test_transforms(), smoke_test=True, device=device, **options
    )


@pytest.mark.parametrize("device", [None, "cpu"])
def test_describe_loader_says_what_each_loader_serves(device):
    train_loader, valid_loader, test_loader = lecture_loaders(device, eval_batch_size=100)
    train, valid, test = (hd.describe_loader(loader) for loader in (train_loader, valid_loader, test_loader))
    assert train == {
        "batch_size": 32, "transform": repr(lecture_train_transforms()), "num_images": 576, "num_classes": 10,
        "shuffle": True, "drop_last": True, "data": "synthetic smoke-test data, seed 1, 640 images, first 576",
    }
    assert valid == {
        "batch_size": 100, "transform": repr(lecture_test_transforms()), "num_images": 64, "num_classes": 10,
        "shuffle": False, "drop_last": False, "data": "synthetic smoke-test data, seed 1, 640 images, last 64",
    }
    assert test["data"] == "synthetic smoke-test data, seed 2, 100 images" and test["num_images"] == 100


def test_both_paths_describe_the_same_run_alike():
    for classic, fast in zip(lecture_loaders(), lecture_loaders("cpu"), strict=True):
        assert hd.describe_loader(classic) == hd.describe_loader(fast)
    data = random_images(10)
    no_transform = [hd.make_loader(data, None, 4, shuffle=False, drop_last=False, num_workers=0, device=device)
                    for device in (None, "cpu")]
    assert hd.describe_loader(no_transform[0]) == hd.describe_loader(no_transform[1])
    assert hd.describe_loader(no_transform[0])["transform"] == "ToTensor()"
    # arrays made without a source (random_images): "unknown" in the identity, as for a student's own loader, not ""
    # (planted: only None counted as unknown passed every test)
    assert hd.describe_loader(no_transform[0])["data"] == hd.describe_loader(no_transform[1])["data"] == "unknown"


def test_describe_loader_never_fails_on_a_students_own_loader():
    class Broken:
        def __len__(self):
            raise RuntimeError("no length")

    tensors = torch.utils.data.TensorDataset(torch.zeros(10, 3), torch.zeros(10))
    own = torch.utils.data.DataLoader(tensors, batch_size=4, shuffle=True)
    assert hd.describe_loader(own) == {"batch_size": 4, "transform": "unknown", "data": "unknown",
                                       "num_images": 10, "num_classes": "unknown", "shuffle": True,
                                       "drop_last": False}
    for loader in ([(torch.zeros(2, 3), torch.zeros(2))], Broken(), None):
        description = hd.describe_loader(loader)
        assert set(description) == {"batch_size", "transform", "data", "num_images", "num_classes", "shuffle",
                                    "drop_last"}
        assert description["data"] == "unknown" and description["batch_size"] == "unknown"


def test_eval_batch_size_sets_validation_and_test_batches_only():
    train_loader, valid_loader, test_loader = lecture_loaders(eval_batch_size=64)
    assert (train_loader.batch_size, valid_loader.batch_size, test_loader.batch_size) == (32, 64, 64)
    assert [len(t) for _, t in test_loader] == [64, 36]
    assert [loader.batch_size for loader in lecture_loaders()] == [32, 32, 32]  # None: the lecture's one size
    with pytest.raises(ValueError, match="eval_batch_size must be a positive whole number"):
        lecture_loaders(eval_batch_size=0)


def test_restoring_the_rng_state_replays_a_later_epoch_with_worker_processes():
    """What a resumed run relies on: the global RNG state alone fixes an epoch's order and crops."""
    data = random_images(24, seed=7)

    def build():
        return hd.make_loader(data, lecture_train_transforms(), 8, shuffle=True, drop_last=True, num_workers=2,
                              device=None)

    torch.manual_seed(0)
    uninterrupted = build()
    list(uninterrupted)  # epoch 1
    state = torch.get_rng_state()  # what the checkpoint after epoch 1 saves
    epoch_2 = list(uninterrupted)
    resumed = build()  # a new process builds its loaders again
    torch.set_rng_state(state)
    replayed = list(resumed)
    assert len(replayed) == len(epoch_2) == 3
    for (features, targets), (features_again, targets_again) in zip(epoch_2, replayed, strict=True):
        assert torch.equal(targets, targets_again) and torch.equal(features, features_again)


def test_device_loader_layout_comes_from_the_device_policy(monkeypatch):
    data = random_images(4)
    batch, _ = next(iter(DeviceBatchLoader(data, None, 4, "cpu")))
    assert batch.is_contiguous()  # the CPU's policy: no channels-last
    policy = hd.device_policy("cpu")._replace(channels_last=True)
    monkeypatch.setattr(hd, "device_policy", lambda device: policy)
    batch, _ = next(iter(DeviceBatchLoader(data, None, 4, "cpu")))
    assert batch.is_contiguous(memory_format=torch.channels_last) and not batch.is_contiguous()


def test_describe_loader_counts_the_classes_of_a_torchvision_style_data_set():
    """torchvision's CIFAR10 keeps its labels in ``targets`` and its images (not labels) in ``data``."""

    class LikeTorchvision(torch.utils.data.Dataset):
        data = np.zeros((6, 32, 32, 3), dtype=np.uint8)
        targets = [0, 3, 1, 4, 2, 1]

        def __len__(self):
            return 6

        def __getitem__(self, index):
            return torch.zeros(3), self.targets[index]

    assert hd.describe_loader(torch.utils.data.DataLoader(LikeTorchvision(), batch_size=2))["num_classes"] == 5


@pytest.mark.parametrize("device", [None, "cpu"])
def test_the_number_of_classes_is_the_largest_label_plus_one_even_when_one_is_missing(device):
    """A small split may lack a class; the network still needs an output for every label up to the largest."""
    data = ImageArrays(np.zeros((3, 32, 32, 3), np.uint8), np.array([0, 2, 2]))
    loader = hd.make_loader(data, None, 3, shuffle=False, drop_last=False, num_workers=0, device=device)
    assert hd.describe_loader(loader)["num_classes"] == 3


SPAWNED_EPOCH = """
import multiprocessing, sys, torch
sys.path[:0] = [{root!r}, {tests!r}]
from conftest import lecture_train_transforms
import helper_dataset as hd

if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1], force=True)
    torch.manual_seed(123)
    data = hd.make_synthetic_cifar10(24)
    loader = hd.make_loader(data, lecture_train_transforms(), 8, shuffle=True, drop_last=True, num_workers=2,
                            device=None)
    print(sum(float(features.double().sum()) * (i + 1) + targets.tolist()[0] for i, (features, targets)
              in enumerate(loader)))
"""


def test_the_classic_loaders_workers_also_start_by_spawning_with_the_same_batches(tmp_path):
    """macOS starts worker processes by "spawn" (Python 3.14 on Linux by "forkserver"): everything the workers get must
    pickle (planted: a lambda as transform), and the seed must give the same batches as with "fork"."""
    script = tmp_path / "epoch.py"
    script.write_text(SPAWNED_EPOCH.format(root=str(Path(__file__).parents[1]), tests=str(Path(__file__).parent)))
    results = [subprocess.run([sys.executable, str(script), method], capture_output=True, text=True, timeout=120)
               for method in ("fork", "spawn")]
    assert [result.returncode for result in results] == [0, 0], results[1].stderr[-2000:]
    assert results[0].stdout == results[1].stdout != ""


# --- review 9: planted bugs in the recently changed helpers that passed every test ----------------------------------


def test_a_random_crop_of_oblong_images_is_checked_height_against_height_and_width_against_width():
    """Images 40 high and 48 wide take a crop 36 high and 44 wide; images 48 high and 40 wide do not, and say so when
    the loader is built. Planted: the crop's width compared with the images' height, caught (the square images of
    the other tests cannot tell the two apart)."""
    crop = transforms.RandomCrop((36, 44))
    wide = DeviceBatchLoader(random_images(4), transforms.Compose([transforms.CenterCrop((40, 48)), crop,
                                                                    transforms.ToTensor()]), 2, "cpu")
    assert next(iter(wide))[0].shape == (2, 3, 36, 44)
    with pytest.raises(ValueError, match=r"^A RandomCrop of 36x44 is larger than the 48x40 images it gets\."):
        DeviceBatchLoader(random_images(4), transforms.Compose([transforms.CenterCrop((48, 40)), crop,
                                                                transforms.ToTensor()]), 2, "cpu")
