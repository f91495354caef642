"""helper_dataset: bad input stops early with an error that names the file or setting and the fix."""

import io
import socket
import tarfile
import threading
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torchvision
from conftest import checksums_of, write_image_folder, write_pickled_cifar10
from PIL import Image
from torchvision import transforms

import helper_dataset as hd
from helper_dataset import get_dataloaders_cifar10, load_image, read_cifar10

# --- damaged image files -------------------------------------------------------------------


def image_bytes(suffix: str) -> bytes:
    """A valid 32x32 image with noisy pixels (so that its compressed data is long enough to cut)."""
    pixels = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG" if suffix == ".png" else "JPEG")
    return buffer.getvalue()


def damage(data: bytes, how: str) -> bytes:
    if how == "truncated":
        return data[: len(data) // 2]
    return data[:60] + bytes(200) + data[260:]  # "corrupt": zeros in the middle of the compressed data


@pytest.mark.parametrize(("suffix", "how"), [(".png", "truncated"), (".png", "corrupt"), (".jpg", "truncated")])
def test_a_damaged_image_in_the_folder_is_named(tmp_path, suffix, how):
    write_image_folder(tmp_path, suffix=suffix)
    bad = tmp_path / "train" / "dog" / f"001{suffix}"
    bad.write_bytes(damage(image_bytes(suffix), how))
    with pytest.raises(ValueError) as error:
        read_cifar10(tmp_path, train=True)
    message = str(error.value)
    assert message.startswith(f"'{bad}' is damaged (truncated or corrupt; PIL says: ")
    assert message.endswith("). Delete or replace this file (if it belongs to a data set folder, re-export or "
                            "re-copy the data set).")


@pytest.mark.parametrize(("max_pixels", "what"), [(100, "error"), (1000, "warning")])
def test_a_decompression_bomb_is_refused_by_name(tmp_path, monkeypatch, max_pixels, what):
    # 32x32 = 1,024 pixels: above 2 * 100, PIL raises; between 1,000 and 2,000 it only warns
    path = tmp_path / "bomb.png"
    path.write_bytes(image_bytes(".png"))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", max_pixels)
    with pytest.raises(ValueError, match="decompression bomb") as error:
        load_image(path)
    assert str(error.value).startswith(f"'{path}' is refused as a possible decompression bomb ("), what
    assert str(error.value).endswith("). The network sees 64x64 pixels: replace it with a smaller image, or delete it "
                                     "(re-export the data set if it came from one).")


def test_an_image_that_is_not_32x32_is_named_with_its_size(tmp_path):
    """A folder of photos, not CIFAR-10 images: the message gives the file and its width x height (planted: the
    refusal's text replaced, or height printed twice, passed every test)."""
    write_image_folder(tmp_path)
    path = tmp_path / "train" / "cat" / "001.png"
    Image.fromarray(np.zeros((20, 40, 3), dtype=np.uint8)).save(path)  # 40 wide, 20 high
    with pytest.raises(ValueError) as error:
        read_cifar10(tmp_path, train=True)
    assert str(error.value) == f"'{path}' is 40x20 pixels; CIFAR-10 images are 32x32."


def test_load_image_returns_a_decoded_rgb_image(tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(np.full((40, 50), 128, dtype=np.uint8)).save(path)  # greyscale, not 32x32: both fine here
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (50, 40)
    assert np.asarray(image)[0, 0].tolist() == [128, 128, 128]


def test_load_image_names_the_path_of_what_it_cannot_read(tmp_path):
    with pytest.raises(FileNotFoundError, match="No image file at '.*nowhere.png'"):
        load_image(tmp_path / "nowhere.png")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_image(tmp_path)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match="notes.png' is not an image file"):
        load_image(tmp_path / "notes.png")
    (tmp_path / "cut.png").write_bytes(damage(image_bytes(".png"), "truncated"))
    with pytest.raises(ValueError, match="cut.png' is damaged"):
        load_image(tmp_path / "cut.png")


# --- the image-folder layout ---------------------------------------------------------------


def test_an_empty_class_folder_is_named_before_any_image_is_decoded(tmp_path):
    write_image_folder(tmp_path)
    for path in (tmp_path / "test" / "cat").iterdir():
        path.unlink()
    with mock.patch.object(hd, "decode_image", side_effect=AssertionError("decoded an image first")):
        with pytest.raises(FileNotFoundError) as error:
            get_dataloaders_cifar10(2, validation_fraction=0.1, root=tmp_path)
    assert str(error.value) == (f"No PNG or JPEG images in {str(tmp_path / 'test' / 'cat')!r}. Every class needs its "
                                "images: copy them there (one image per file), or re-export the data set.")
    with pytest.raises(FileNotFoundError, match="No PNG or JPEG images in .*cat"):
        read_cifar10(tmp_path, train=False)


@pytest.mark.parametrize(("present", "missing"), [("train", "test"), ("test", "train")])
def test_one_image_folder_without_the_other_names_the_missing_one(tmp_path, present, missing):
    write_image_folder(tmp_path)
    for path in sorted((tmp_path / missing).rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (tmp_path / missing).rmdir()
    with pytest.raises(FileNotFoundError) as error:
        read_cifar10(tmp_path, train=True, download=False)
    assert str(error.value) == (
        f"'{tmp_path / present}' exists but '{tmp_path / missing}' does not. The image-folder layout needs both, "
        f"each with the ten class folders: add '{tmp_path / missing}', or remove '{tmp_path / present}' to use "
        "torchvision's CIFAR-10 files instead.")


def test_data_root_that_is_a_file_is_refused(tmp_path):
    root = tmp_path / "data"
    root.write_text("oops")
    with pytest.raises(NotADirectoryError) as error:
        get_dataloaders_cifar10(16, root=root)
    assert str(error.value) == (f"DATA_ROOT '{root}' is a file, not a folder. Set DATA_ROOT to the folder that holds "
                                "(or will hold) CIFAR-10, for example 'data'.")


# --- torchvision's files and archive -------------------------------------------------------


def test_a_truncated_torchvision_file_is_named(tmp_path):
    write_pickled_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    with checksums_of(folder):
        (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:100])
        (folder / "test_batch").unlink()
        with pytest.raises(FileNotFoundError) as error:
            read_cifar10(tmp_path, train=True, download=False)
    message = str(error.value)
    assert f"'{folder / 'data_batch_3'}' is damaged (its MD5 checksum is not torchvision's: truncated or changed)" \
        in message
    assert f"'{folder / 'test_batch'}' is missing" in message
    assert "data_batch_2'" not in message  # only the files that are wrong
    assert "Put intact torchvision files in" in message


def test_a_damaged_archive_is_named_with_its_fix(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"half a download")
    with pytest.raises(FileNotFoundError) as error:
        read_cifar10(tmp_path, train=True, download=False)
    message = str(error.value)
    assert f"'{tmp_path / 'cifar-10-python.tar.gz'}' is there but damaged" in message
    assert "Delete it and download it again" in message


def write_archive(root: Path) -> Path:
    """Pack a miniature cifar-10-batches-py into root/cifar-10-python.tar.gz and remove the folder."""
    write_pickled_cifar10(root / "source")
    archive = root / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root / "source" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive


def test_an_intact_archive_is_unpacked_without_the_network(tmp_path):
    archive = write_archive(tmp_path)
    md5 = torchvision.datasets.utils.calculate_md5(str(archive))
    nobody_listens = "http://127.0.0.1:9/cifar-10-python.tar.gz"  # port 9 (discard): refused at once
    with checksums_of(tmp_path / "source" / "cifar-10-batches-py"), \
            mock.patch.multiple(torchvision.datasets.CIFAR10, tgz_md5=md5, url=nobody_listens):
        with pytest.raises(FileNotFoundError, match="is intact but not unpacked: pass download=True"):
            read_cifar10(tmp_path, train=True, download=False)
        train = read_cifar10(tmp_path, train=True, download=True)
    assert train.images.shape == (100, 32, 32, 3)


@pytest.fixture
def silent_server():
    """A local TCP server that accepts connections (the kernel completes them) and never answers."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield f"http://127.0.0.1:{server.getsockname()[1]}/cifar-10-python.tar.gz"
    server.close()  # resets any connection still waiting, so a hung download thread ends too


def test_a_silent_server_gives_the_offline_message_within_the_timeout(tmp_path, monkeypatch, silent_server):
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", silent_server)
    outcome = {}

    def download():
        try:
            read_cifar10(tmp_path, train=True, download=True, download_timeout=1.0)
        except Exception as error:  # handed to the assertions below
            outcome["error"] = error

    start = time.monotonic()
    thread = threading.Thread(target=download, daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), "the download hung for 20 s despite download_timeout=1.0"
    assert time.monotonic() - start < 10
    error = outcome["error"]
    assert isinstance(error, FileNotFoundError)
    assert "could not be downloaded (the server did not answer within 1 s)" in str(error)
    assert error.__cause__ is None and error.__suppress_context__  # raised `from None`: the message comes first
    assert socket.getdefaulttimeout() is None  # the temporary timeout was restored


def test_the_download_checks_the_archive_and_restores_the_socket_timeout(tmp_path, monkeypatch):
    """The MD5 is what catches a half-finished download, and the timeout must not outlive the download: a
    notebook's later network calls keep the default they had (planted: md5 not passed, or the timeout reset to None
    instead of the one before, passed every test: the default was None in all of them)."""
    calls = []

    def unreachable(url, root, *, filename, md5):
        calls.append((url, root, filename, md5, socket.getdefaulttimeout()))
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(hd, "download_and_extract_archive", unreachable)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30.0)
    try:
        reason = hd.download_cifar10(tmp_path, 5.0)
        assert socket.getdefaulttimeout() == 30.0
    finally:
        socket.setdefaulttimeout(previous)
    cifar = torchvision.datasets.CIFAR10
    assert calls == [(cifar.url, str(tmp_path), "cifar-10-python.tar.gz", cifar.tgz_md5, 5.0)]
    assert reason == "ConnectionRefusedError: [Errno 111] Connection refused"


def test_get_dataloaders_with_download_false_does_not_download(tmp_path):
    """download=False is the promise of an offline machine: nothing is fetched, and the message says why."""
    with mock.patch.object(hd, "download_cifar10", side_effect=AssertionError("downloaded despite download=False")):
        with pytest.raises(FileNotFoundError, match=r"could not be downloaded \(download=False\)"):
            get_dataloaders_cifar10(16, root=tmp_path, download=False)


@pytest.mark.parametrize("download, made", [(True, " (the download made it)"), (False, "")])
def test_a_data_root_that_did_not_exist_is_said_to_be_new(tmp_path, download, made):
    """A typo in DATA_ROOT looked like missing data, and left an empty folder of the typo's name behind."""
    def offline(root, timeout):
        Path(root).mkdir(exist_ok=True)  # as torchvision's download does before it fails
        return "no network"

    typo = tmp_path / "dta"
    with mock.patch.object(hd, "download_cifar10", side_effect=offline):
        with pytest.raises(FileNotFoundError) as missing:
            get_dataloaders_cifar10(16, root=typo, download=download)
    assert f"What is wrong:\n  - there was no folder '{typo}' before{made}: if DATA_ROOT has a typo, correct it.\n" \
        in str(missing.value)
    with mock.patch.object(hd, "download_cifar10", side_effect=offline):
        with pytest.raises(FileNotFoundError) as missing:
            get_dataloaders_cifar10(16, root=tmp_path, download=download)  # it was there: no such line
    assert "before" not in str(missing.value)


def test_get_dataloaders_passes_its_download_timeout_on(tmp_path):
    waits = []

    def offline(root, timeout):
        waits.append(timeout)
        return "no network"

    with mock.patch.object(hd, "download_cifar10", side_effect=offline):
        with pytest.raises(FileNotFoundError, match=r"could not be downloaded \(no network\)"):
            get_dataloaders_cifar10(16, root=tmp_path, download_timeout=5.0)
    assert waits == [5.0]


# --- settings checked before any work ------------------------------------------------------


@pytest.fixture
def no_reading():
    """Fail the test if any image is read: these settings must be refused first."""
    with mock.patch.object(hd, "read_cifar10", side_effect=AssertionError("read the data first")):
        yield


COLOUR_JITTER = transforms.Compose([transforms.ColorJitter(), transforms.ToTensor()])
CROP_WITHOUT_RESIZE = transforms.Compose([transforms.RandomCrop(64), transforms.ToTensor()])


@pytest.mark.parametrize("train_transforms, test_transforms, refusal", [
    (COLOUR_JITTER, None, "The fast data path cannot apply ColorJitter."),
    (None, CROP_WITHOUT_RESIZE, "A RandomCrop of 64x64 is larger than the 32x32 images it gets.")])
def test_a_transform_the_fast_path_cannot_apply_is_refused_before_any_image_is_read(no_reading, train_transforms,
                                                                                     test_transforms, refusal):
    """Reading 60,000 images from folders takes a minute; the transforms are known before (planted: the check left
    to the loaders, after the reading; only the training transforms checked: both passed every test)."""
    with pytest.raises(ValueError) as error:
        get_dataloaders_cifar10(16, train_transforms=train_transforms, test_transforms=test_transforms,
                                smoke_test=True, device="cpu")
    assert str(error.value).startswith(refusal)


def test_the_classic_path_takes_the_transforms_the_fast_path_refuses():
    train_loader = get_dataloaders_cifar10(16, train_transforms=COLOUR_JITTER, smoke_test=True, num_workers=0)[0]
    assert next(iter(train_loader))[0].shape == (16, 3, 32, 32)


def test_a_validation_fraction_too_small_for_one_image_is_refused(no_reading):
    with pytest.raises(ValueError) as error:
        get_dataloaders_cifar10(16, validation_fraction=0.001, smoke_test=True)
    assert str(error.value) == ("validation_fraction=0.001 of 640 training images is less than one image, so the "
                                "validation set would be empty. Use at least 1/640 (for example 0.1), or "
                                "validation_fraction=None for no validation set.")


def test_a_validation_fraction_too_small_is_refused_by_the_split_too():
    with pytest.raises(ValueError, match="validation set would be empty"):
        hd.split_train_valid(hd.make_synthetic_cifar10(20), 0.01)


def test_a_batch_larger_than_the_training_set_is_refused(no_reading):
    with pytest.raises(ValueError, match=r"^batch_size=577 \(the notebooks' BATCH_SIZE\) is larger than the 576 "
                                         r"training images.*Use batch_size <= 576\.$"):
        get_dataloaders_cifar10(577, validation_fraction=0.1, smoke_test=True)
    with pytest.raises(ValueError, match="larger than the 640 training images"):
        get_dataloaders_cifar10(641, smoke_test=True)


def test_a_validation_fraction_in_quotes_gets_a_clear_message(no_reading):
    expected = r"a number between 0 and 1, for example 0.1 \(without quotes\).*'0.1' \(str\)"
    with pytest.raises(ValueError, match=expected):
        get_dataloaders_cifar10(16, validation_fraction="0.1", smoke_test=True)


def test_a_batch_of_one_image_is_accepted():
    """The smallest batch is a batch (planted: value <= 1 refused passed every test)."""
    assert hd.check_batch_size(1) == 1


def test_a_numpy_integer_batch_size_is_accepted():
    train_loader, test_loader = get_dataloaders_cifar10(np.int64(32), smoke_test=True)
    assert train_loader.batch_size == 32 and type(train_loader.batch_size) is int
    assert len(next(iter(train_loader))[1]) == 32


# --- review 9: planted bugs in the recently changed helpers that passed every test ----------------------------------


def test_a_crop_larger_than_the_resized_images_is_refused_before_any_image_is_read(no_reading):
    """The lecture's Resize((70, 70)) then RandomCrop((64, 64)), with the resize mistyped as 60: the crop comes second,
    and the trial before the reading must run every step, not only the first. Planted: only the first step tried in
    DeviceBatchLoader.try_steps, caught (the refusal came from the loaders, after the reading)."""
    mistyped = transforms.Compose([transforms.Resize((60, 60)), transforms.RandomCrop((64, 64)), transforms.ToTensor()])
    with pytest.raises(ValueError, match=r"^A RandomCrop of 64x64 is larger than the 60x60 images it gets\."):
        get_dataloaders_cifar10(16, train_transforms=mistyped, smoke_test=True, device="cpu")
