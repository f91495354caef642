"""helper_evaluation.classify_image: the model's top guesses for a picture of your own, and loading that picture."""

import errno
import io
import os
import random
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TinyNet, lecture_test_transforms
from PIL import Image

import helper_dataset
import helper_evaluation
from helper_dataset import CIFAR10_CLASSES, load_image, to_rgb
from helper_evaluation import classify_image, predict_batches


class FixedScores(torch.nn.Module):
    """Outputs the same scores for every image; records its mode and whether gradients were on in each forward pass."""

    def __init__(self, scores):
        super().__init__()
        self.scores = torch.nn.Parameter(torch.tensor(scores))
        self.seen_in_forward = []

    def forward(self, x):
        self.seen_in_forward.append((self.training, torch.is_grad_enabled()))
        return self.scores.expand(len(x), -1)


def noise_picture(width=100, height=80, seed=0):
    """A picture full of fine detail, which shrinking to 32x32 changes a lot."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_a_red_picture_gives_k_predictions_most_probable_first_and_restores_train_mode():
    model = TinyNet().train()
    red = Image.new("RGB", (100, 80), (255, 0, 0))
    network_input, predictions = classify_image(model, red, lecture_test_transforms(), "cpu", CIFAR10_CLASSES)
    assert network_input.shape == (3, 64, 64)  # what the transforms make: Resize 70, CenterCrop 64
    assert len(predictions) == 3 and all(name in CIFAR10_CLASSES for name, _ in predictions)
    probabilities = [probability for _, probability in predictions]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0
    assert model.training


def test_predictions_are_the_softmax_of_the_scores_in_eval_mode_without_gradients():
    scores = [0.0, 3.0, 1.0, 2.0, -1.0, 0.5, 0.0, 0.0, 0.0, 0.0]
    model = FixedScores(scores).train()
    _, predictions = classify_image(model, noise_picture(), lecture_test_transforms(), "cpu", CIFAR10_CLASSES, k=4)
    expected = torch.tensor(scores).softmax(dim=0)
    assert [name for name, _ in predictions] == ["automobile", "cat", "bird", "dog"]
    assert [p for _, p in predictions] == pytest.approx([float(expected[i]) for i in (1, 3, 2, 5)])
    assert model.seen_in_forward == [(False, False)] and model.training


def test_the_picture_is_shrunk_to_32x32_like_cifar10_before_the_transforms():
    picture, transforms = noise_picture(), lecture_test_transforms()
    network_input, _ = classify_image(TinyNet(), picture, transforms, "cpu", CIFAR10_CLASSES)
    expected = transforms(picture.resize((32, 32), Image.Resampling.BILINEAR))
    torch.testing.assert_close(network_input, expected, rtol=0, atol=0)
    assert not torch.allclose(network_input, transforms(picture), atol=0.1)  # the 32x32 step matters here


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_pictures_in_other_colour_modes_become_rgb(mode):
    network_input, _ = classify_image(TinyNet(), noise_picture().convert(mode), lecture_test_transforms(), "cpu",
                                      CIFAR10_CLASSES)
    assert network_input.shape == (3, 64, 64)


def test_mistakes_in_the_arguments_are_explained():
    model, picture, transforms = TinyNet(), noise_picture(), lecture_test_transforms()
    with pytest.raises(ValueError, match="class_names has 3 names, but the model outputs 10"):
        classify_image(model, picture, transforms, "cpu", ["cat", "dog", "frog"])
    with pytest.raises(ValueError, match="k must be between 1 and the number of classes"):
        classify_image(model, picture, transforms, "cpu", CIFAR10_CLASSES, k=11)
    with pytest.raises(TypeError, match=r"PIL image, not str: load a file with helper_dataset.load_image\(path\)"):
        classify_image(model, "my_cat.jpg", transforms, "cpu", CIFAR10_CLASSES)


def test_k_may_be_anything_from_one_to_the_number_of_classes():
    model, picture, transforms = TinyNet(), noise_picture(), lecture_test_transforms()
    _, every_class = classify_image(model, picture, transforms, "cpu", CIFAR10_CLASSES, k=10)
    assert sorted(name for name, _ in every_class) == sorted(CIFAR10_CLASSES)
    assert sum(p for _, p in every_class) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k must be between 1 and the number of classes"):
        classify_image(model, picture, transforms, "cpu", CIFAR10_CLASSES, k=0)
    scores = [0.0, 3.0, 1.0, 2.0, -1.0, 0.5, 0.0, 0.0, 0.0, 0.0]
    _, [(top_class, _)] = classify_image(FixedScores(scores), picture, transforms, "cpu", CIFAR10_CLASSES, k=1)
    assert top_class == "automobile"  # planted: 2 <= k passed every test


def test_more_class_names_than_model_outputs_are_refused():
    """CIFAR-100's names for a CIFAR-10 model would put a wrong name on every prediction."""
    with pytest.raises(ValueError, match="class_names has 11 names, but the model outputs 10"):
        classify_image(TinyNet(), noise_picture(), lecture_test_transforms(), "cpu", [*CIFAR10_CLASSES, "tiger"])


def test_class_names_may_be_a_dict_from_label_to_name():
    """The notebook's ``class_dict = dict(enumerate(CIFAR10_CLASSES))`` names the classes as well as the tuple."""
    scores = [0.0, 3.0, 1.0, 2.0, -1.0, 0.5, 0.0, 0.0, 0.0, 0.0]
    _, predictions = classify_image(FixedScores(scores), noise_picture(), lecture_test_transforms(), "cpu",
                                    dict(enumerate(CIFAR10_CLASSES)))
    assert [name for name, _ in predictions] == ["automobile", "cat", "bird"]


def test_classify_image_predicts_in_the_precision_it_is_given(monkeypatch):
    """The notebook passes USE_AMP, so the picture is classified as the test images were (False: float32)."""
    seen = []

    def spy(model, data_loader, device, *, use_amp=None):
        seen.append(use_amp)
        return predict_batches(model, data_loader, device, use_amp=use_amp)

    monkeypatch.setattr(helper_evaluation, "predict_batches", spy)
    classify_image(TinyNet(), noise_picture(), lecture_test_transforms(), "cpu", CIFAR10_CLASSES, use_amp=False)
    assert seen == [False]


def test_a_transparent_picture_is_loaded_on_white_as_a_viewer_shows_it(tmp_path):
    """An RGBA PNG keeps some colour under its transparent pixels (here red); convert("RGB") alone would show it."""
    pixels = np.zeros((10, 10, 4), dtype=np.uint8)
    pixels[..., 0] = 255  # red everywhere, fully transparent ...
    pixels[:5, :, 3] = 255  # ... except the top half: opaque red
    Image.fromarray(pixels, "RGBA").save(tmp_path / "logo.png")
    Image.fromarray(pixels, "RGBA").convert("LA").save(tmp_path / "grey-logo.png")
    loaded = np.asarray(load_image(tmp_path / "logo.png"))
    assert (loaded[:5] == (255, 0, 0)).all() and (loaded[5:] == 255).all()
    assert (np.asarray(load_image(tmp_path / "grey-logo.png"))[5:] == 255).all()


def test_a_16_bit_grey_picture_is_scaled_to_8_bits_not_clipped_to_white(tmp_path):
    grey = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(grey).save(tmp_path / "scan.png")  # a 16-bit PNG, mode "I;16"
    assert np.asarray(load_image(tmp_path / "scan.png"))[0, :, 0].tolist() == [0, 64, 128, 255]


def test_a_palette_png_with_a_transparent_colour_is_loaded_on_white(tmp_path):
    """A palette PNG (a sticker, a logo) marks transparency in its palette, not with an alpha channel (mode "P")."""
    palette = Image.new("P", (4, 2))
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # entry 0 black (hidden under transparency), 1 red
    palette.putdata([0, 0, 1, 1] * 2)
    palette.save(tmp_path / "sticker.png", transparency=0)
    palette.save(tmp_path / "half.png", transparency=bytes([0, 128]))  # entry 1 half transparent
    assert np.asarray(load_image(tmp_path / "sticker.png"))[0].tolist() == [[255, 255, 255]] * 2 + [[255, 0, 0]] * 2
    assert np.asarray(load_image(tmp_path / "half.png"))[0, 2].tolist() == [255, 127, 127]


def test_16_bit_grey_in_any_byte_order_and_32_bit_grey_are_scaled_not_clipped(tmp_path):
    """A scanner's TIFF is often big-endian ("I;16B"); a 32-bit grey image is mode "I"."""
    grey = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16)
    Image.frombytes("I;16B", (4, 1), grey.astype(">u2").tobytes()).save(tmp_path / "scan.tif")
    with Image.open(tmp_path / "scan.tif") as scan:
        assert scan.mode == "I;16B"
    assert np.asarray(load_image(tmp_path / "scan.tif"))[0, :, 0].tolist() == [0, 64, 128, 255]
    assert np.asarray(to_rgb(Image.fromarray(grey.astype(np.int32))))[0, :, 1].tolist() == [0, 64, 128, 255]


def save_16_bit_grey_png(path: Path, values, **options) -> None:
    """A 16-bit grey PNG: today's Pillow writes it from mode "I;16", Pillow 9 (requirements.txt admits 9.1) from "I"."""
    try:
        Image.fromarray(np.array(values, dtype=np.uint16)).save(path, **options)
    except OSError:  # Pillow 9.1: "cannot use transparency for this mode"; today's Pillow cannot write mode "I"
        Image.fromarray(np.array(values, dtype=np.int32)).save(path, **options)


def test_a_dark_16_bit_picture_stays_dark_and_a_transparent_colour_in_rgb_or_grey_becomes_white(tmp_path):
    """16-bit values up to 255 are nearly black, not 8-bit ones; a PNG without alpha can name a transparent colour.

    Pillow 9.1 opens a 16-bit PNG as mode "I", which does not say its range: to_rgb then guesses it from the
    brightest pixel (its docstring), and values up to 255 read as 8-bit ones."""
    save_16_bit_grey_png(tmp_path / "dark.png", [[0, 200], [100, 255]])
    with Image.open(tmp_path / "dark.png") as opened:
        says_16_bits = opened.mode.startswith("I;16")
    expected = [[0, 1], [0, 1]] if says_16_bits else [[0, 200], [100, 255]]
    assert np.asarray(load_image(tmp_path / "dark.png"))[..., 0].tolist() == expected
    rgb = Image.fromarray(np.array([[[0, 0, 0], [9, 9, 9]]], dtype=np.uint8))
    rgb.save(tmp_path / "key.png", transparency=(0, 0, 0))
    rgb.convert("L").save(tmp_path / "grey-key.png", transparency=0)
    for name in ("key.png", "grey-key.png"):
        assert np.asarray(load_image(tmp_path / name))[0, :, 0].tolist() == [255, 9], name
    unit_floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))  # mode "F", 0..1
    assert np.asarray(to_rgb(unit_floats))[0, :, 0].tolist() == [0, 128, 255]


# --- each rule of to_rgb's range guess, and load_image's damaged-file errors ---------------------------


def grey_of(array):
    """The red channel of ``to_rgb`` of a grey image made from ``array`` (mode "I" for int32, "F" for float32)."""
    return np.asarray(to_rgb(Image.fromarray(array)))[..., 0].tolist()


def test_32_bit_grey_up_to_255_is_taken_as_8_bit():
    """Mode "I" (how older Pillow opens 8-bit and 16-bit PNGs alike) with 255 as its brightest pixel is 8-bit grey:
    255 stays white (read as 16 bits it would be nearly black)."""
    assert grey_of(np.array([[0, 128, 255]], dtype=np.int32)) == [[0, 128, 255]]


def test_integer_grey_up_to_1_is_not_taken_for_floats_in_0_to_1():
    """Only floats (mode "F") can mean 0..1: a 32-bit grey image of 0s and 1s is nearly black, not black and white."""
    assert grey_of(np.array([[0, 1]], dtype=np.int32)) == [[0, 1]]


def test_deep_grey_range_is_guessed_from_the_brightest_pixel_not_the_average():
    """A dark 32-bit scan with one bright spot is 16-bit: 1000 of 65535 is nearly black, not clipped to white."""
    grey = np.zeros((1, 302), dtype=np.int32)
    grey[0, -2:] = [1000, 65535]  # the average, 220, is below 255; the brightest pixel is not
    assert grey_of(grey)[0][-3:] == [0, 4, 255]


def test_every_16_bit_value_becomes_the_nearest_8_bit_value():
    """v -> round(v * 255 / 65535) for all 65536 values: 65535 is white, and no value is off by one."""
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    expected = np.round(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(values)))[..., 0], expected)


def test_negative_32_bit_grey_is_black_not_wrapped_around():
    """Mode "I" holds signed integers: below 0 is as dark as 0 (cast to 8 bits unclipped, -5 would be 251, white)."""
    assert grey_of(np.array([[-5, 0, 200]], dtype=np.int32)) == [[0, 0, 200]]


def test_32_bit_grey_beyond_16_bits_is_white_not_wrapped_to_black():
    """Mode "I" can hold values above 65535: they are clipped to white (255), not cast past 255 back to black."""
    assert grey_of(np.array([[0, 65535, 70000]], dtype=np.int32)) == [[0, 255, 255]]


def test_deep_grey_keeps_its_rows_in_place():
    """A 16-bit picture brighter at the top stays brighter at the top (every other test image was one row high)."""
    top_bright = np.array([[65535, 65535], [0, 0]], dtype=np.uint16)
    assert np.asarray(to_rgb(Image.fromarray(top_bright)))[..., 0].tolist() == [[255, 255], [0, 0]]


def test_a_palette_image_with_an_alpha_channel_is_shown_on_white():
    """Mode "PA" (palette plus alpha): a transparent pixel is white, whatever its palette colour (here red)."""
    image = Image.new("PA", (2, 1))
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((0, 0), (1, 0))  # red, fully transparent
    image.putpixel((1, 0), (1, 255))  # red, opaque
    assert np.asarray(to_rgb(image))[0].tolist() == [[255, 255, 255], [255, 0, 0]]


@pytest.mark.parametrize("error", [SyntaxError("broken PNG file"), ValueError("tile cannot extend outside image")])
def test_damage_pil_reports_as_syntax_or_value_error_names_the_file(tmp_path, monkeypatch, error):
    """PIL reports some damaged files with SyntaxError or ValueError, not OSError: these name the file too."""
    Image.new("RGB", (4, 4)).save(tmp_path / "photo.png")

    def fails_to_decode(image):
        raise error

    monkeypatch.setattr(helper_dataset, "to_rgb", fails_to_decode)
    with pytest.raises(ValueError, match=r"photo.png' is damaged .*Delete or replace this file"):
        load_image(tmp_path / "photo.png")


def test_a_numpy_integer_seed_seeds_python_numpy_and_torch():
    """RANDOM_SEED computed with NumPy passes the settings check; Python's random.seed would refuse it."""
    helper_evaluation.set_all_seeds(np.int64(7))
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    helper_evaluation.set_all_seeds(7)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


@pytest.mark.parametrize("seed", [1.5, "7"])
def test_a_seed_that_is_not_a_whole_number_is_refused_before_anything_is_seeded(seed):
    """RANDOM_SEED = 1.5 or "7" is an error (int() would quietly make 1.5 the seed 1), raised before Python's,
    NumPy's or torch's generator is touched, so no generator is left seeded differently from the others."""
    random.seed(0)
    before = random.getstate()
    with pytest.raises(TypeError):
        helper_evaluation.set_all_seeds(seed)
    assert random.getstate() == before


def test_a_transparent_grey_value_in_a_16_bit_png_is_shown_on_white_as_in_an_8_bit_one(tmp_path):
    """A 16-bit grey PNG with a transparent value loaded that pixel as black, unlike the same 8-bit picture."""
    save_16_bit_grey_png(tmp_path / "k16.png", [[0, 65535, 30000]], transparency=30000)
    Image.fromarray(np.array([[0, 255, 117]], np.uint8)).save(tmp_path / "k8.png", transparency=117)
    assert np.asarray(load_image(tmp_path / "k16.png"))[0].tolist() == [[0] * 3, [255] * 3, [255] * 3]
    assert np.asarray(load_image(tmp_path / "k8.png"))[0].tolist() == [[0] * 3, [255] * 3, [255] * 3]


def test_a_dict_of_class_names_of_the_wrong_length_is_refused():
    """A dict of CIFAR-100's names is as wrong as a tuple of them (planted: the length check skipped for a dict
    passed every test)."""
    with pytest.raises(ValueError, match="class_names has 11 names, but the model outputs 10"):
        classify_image(TinyNet(), noise_picture(), lecture_test_transforms(), "cpu",
                       dict(enumerate([*CIFAR10_CLASSES, "tiger"])))


def test_a_phone_photo_is_loaded_upright_as_a_viewer_shows_it(tmp_path):
    """A phone stores a portrait photo sideways and says so in its EXIF Orientation tag (6: turn 90 degrees clockwise).

    Without honouring the tag the picture is classified lying on its side, and the figure shows it sideways.
    """
    stored = np.zeros((20, 40, 3), dtype=np.uint8)  # 40 wide, 20 high as stored: left half red, right half black
    stored[:, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(stored).save(tmp_path / "portrait.jpg", exif=exif.tobytes(), quality=95)
    upright = load_image(tmp_path / "portrait.jpg")
    assert upright.size == (20, 40)  # 20 wide, 40 high: portrait, as every photo viewer shows it
    pixels = np.asarray(upright).astype(int)
    assert pixels[2, 10, 0] > 200 and pixels[-3, 10, 0] < 50  # the red half is on top once turned clockwise


def run_picture_cell(tmp_path, *, save_checkpoints=False, **settings):
    """Execute the main notebook's "your own picture" cell with a tiny trained-as-is model.

    ``settings`` replace the namespace's values (say ``MY_IMAGE=None``). Returns what it printed and its namespace.
    """
    import contextlib
    import io

    from benchmarks.notebook_code import code_cells
    from helper_dataset import UnNormalize
    from tests.test_notebooks import NOTEBOOKS, ROOT

    [cell] = [source for source, _ in code_cells(ROOT / NOTEBOOKS[0]) if "show_image_as_network_sees_it(" in source]
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(tmp_path / "cat.png")
    namespace = {"MY_IMAGE": str(tmp_path / "cat.png"), "SMOKE_TEST": False, "DATA_ROOT": str(tmp_path),
                 "RUN_DIR": tmp_path, "SAVE_CHECKPOINTS": save_checkpoints, "model": TinyNet(), "DEVICE": "cpu",
                 "USE_AMP": False, "test_transforms": lecture_test_transforms(), "CIFAR10_CLASSES": CIFAR10_CLASSES,
                 "unnormalizer": UnNormalize((0.5,) * 3, (0.5,) * 3), "FIGURE_SUBTITLE": None, **settings}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(cell, namespace)
    return printed.getvalue(), namespace


def test_the_picture_cell_says_why_there_are_no_best_weights(tmp_path):
    """CHECKPOINTS = True and Interrupt in epoch 1 (as the CPU's LongRunWarning advises): no best_model.pt yet.

    The cell said "checkpoints were off", which was not so."""
    assert "checkpoints were off" in run_picture_cell(tmp_path, save_checkpoints=False)[0]
    printed, _ = run_picture_cell(tmp_path, save_checkpoints=True)
    assert "checkpoints were off" not in printed
    assert "Weights: the model as trained above (no epoch of this run has finished, so there is no best_model.pt " \
           "yet)" in printed


def test_the_example_picture_is_never_left_half_written(tmp_path, monkeypatch):
    """MY_IMAGE = None: the cell writes the first test image, enlarged, as the picture to classify. A disk that fills
    up mid-write leaves the earlier picture whole and no temporary file (planted: the PNG saved in place, as it was:
    the next run would classify half a file)."""
    earlier = png_bytes("blue")
    (tmp_path / "example-picture.png").write_bytes(earlier)

    def half_a_save(self, fp, *args, **kwargs):  # only the example picture: the test's own cat.png is saved whole
        if "example-picture" not in str(fp):
            return save(self, fp, *args, **kwargs)
        Path(fp).write_bytes(b"\x89PNG half")
        raise OSError("No space left on device")

    save = Image.Image.save

    monkeypatch.setattr(Image.Image, "save", half_a_save)
    with pytest.raises(OSError, match="No space left"):
        run_picture_cell(tmp_path, MY_IMAGE=None, SMOKE_TEST=True)
    assert (tmp_path / "example-picture.png").read_bytes() == earlier
    assert not list(tmp_path.glob(".*.tmp"))


def png_bytes(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def colab_upload(monkeypatch, tmp_path):
    """A stand-in for Colab: ``google.colab.files.upload()`` returns what the test sets, saving as Colab does.

    Colab writes each chosen file next to the notebook, under "photo (1).png" when "photo.png" is taken, but
    returns the chosen name.
    """
    chosen = {}

    def upload():
        for name, data in chosen.items():
            stem, suffix = os.path.splitext(name)
            local = name if not os.path.lexists(name) else f"{stem} (1){suffix}"
            Path(local).write_bytes(data)
        return dict(chosen)

    colab = types.ModuleType("google.colab")
    colab.files = types.SimpleNamespace(upload=upload)
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    notebook_folder = tmp_path / "notebook"
    notebook_folder.mkdir()
    monkeypatch.chdir(notebook_folder)
    return chosen


def test_a_photo_uploaded_on_colab_is_the_one_classified_even_when_its_name_was_taken(tmp_path, colab_upload):
    """A second photo of the same name: Colab saves it as "photo (1).png" but returns "photo.png", and the cell
    opened that name, so it classified the first upload again."""
    run_dir = tmp_path / "run"
    Path("photo.png").write_bytes(png_bytes("blue"))  # an earlier upload
    colab_upload["photo.png"] = png_bytes("red")
    _, namespace = run_picture_cell(tmp_path, MY_IMAGE=None, RUN_DIR=run_dir)
    assert Path(namespace["MY_IMAGE"]) == run_dir / "uploaded-photo.png"
    assert namespace["picture"].getpixel((20, 20)) == (255, 0, 0)


def test_a_cancelled_upload_dialog_is_refused_with_the_ways_on(tmp_path, colab_upload):
    with pytest.raises(ValueError, match="No photo was chosen in the upload dialog. Run this cell again and choose "
                                         "one, or set MY_IMAGE in the parameters cell"):
        run_picture_cell(tmp_path, MY_IMAGE=None, RUN_DIR=tmp_path / "run")


def test_of_several_uploaded_files_the_first_is_saved_and_named(tmp_path, capsys):
    saved = helper_evaluation.save_uploaded_picture({"first.png": png_bytes("red"), "second.png": png_bytes("blue")},
                                                    tmp_path)
    assert saved == tmp_path / "uploaded-first.png" and saved.read_bytes() == png_bytes("red")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["uploaded-first.png"]
    assert "2 files were chosen: classifying the first, first.png." in capsys.readouterr().out


def test_a_single_uploaded_file_is_saved_without_a_word(tmp_path, capsys):
    """"1 files were chosen" would be wrong and needless (planted: len(uploaded) >= 1 passed every test)."""
    helper_evaluation.save_uploaded_picture({"photo.png": png_bytes("red")}, tmp_path)
    assert capsys.readouterr().out == ""


def test_an_uploaded_name_with_folders_is_saved_in_the_folder_under_its_last_part(tmp_path):
    """Only the file's own name counts: "../photo.png" or "a/photo.png" must not write outside the run folder."""
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("../photo.png", "a/photo.png"):
        saved = helper_evaluation.save_uploaded_picture({name: png_bytes("red")}, folder)
        assert saved == folder / "uploaded-photo.png"
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["run", "uploaded-photo.png"]


def test_a_photo_named_like_the_cells_figure_is_neither_replaced_nor_replaces_it(tmp_path, colab_upload):
    """A photo called my_picture.png was saved as RUN_DIR/my_picture.png, then the cell saved its figure there:
    the photo was gone, and the cell run again (MY_IMAGE now set) classified the figure instead."""
    run_dir = tmp_path / "run"
    colab_upload["my_picture.png"] = png_bytes("red")
    _, namespace = run_picture_cell(tmp_path, MY_IMAGE=None, RUN_DIR=run_dir)
    assert Path(namespace["MY_IMAGE"]).read_bytes() == png_bytes("red")
    assert (run_dir / "my_picture.png").exists()  # the figure, beside the photo


def test_an_uploaded_file_pil_cannot_read_is_refused_before_it_is_saved(tmp_path, colab_upload):
    """An iPhone's HEIC photo was saved and MY_IMAGE set to it before load_image refused it ("replace it"): the cell
    run again did not open the dialog, it refused the same file again."""
    colab_upload["IMG_0001.HEIC"] = b"\x00\x00\x00\x18ftypheic" + bytes(100)
    with pytest.raises(ValueError, match=re.escape("'IMG_0001.HEIC' is not a picture PIL can read (PNG or JPEG "
                                                   "expected; an iPhone's HEIC photo can be exported as JPEG). Run "
                                                   "this cell again and choose another.")):
        run_picture_cell(tmp_path, MY_IMAGE=None, RUN_DIR=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_an_upload_whose_write_fails_midway_leaves_no_half_picture(tmp_path, monkeypatch):
    """A full disk while the photo is written: no half photo is left for MY_IMAGE to name (planted: written in place,
    not through save_atomically, passed every test)."""
    data, write_bytes = png_bytes("red"), Path.write_bytes

    def half_then_disk_full(self, content):
        write_bytes(self, content[: len(content) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half_then_disk_full)
    with pytest.raises(OSError):
        helper_evaluation.save_uploaded_picture({"photo.png": data}, tmp_path)
    assert list(tmp_path.iterdir()) == []
