"""helper_evaluation: accuracy, confusion matrix, seeds, determinism and atomic saving."""

import errno
import os
import random
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MovedTo, TinyNet, TinyNetOnGpu, batches_on_gpu, cpu_autocast_dtype

import helper_evaluation
from helper_evaluation import (
    DeterministicAdaptiveAvgPool2d,
    DevicePolicy,
    autocast_dtype,
    compute_accuracy,
    compute_confusion_matrix,
    make_pooling_deterministic,
    most_confused_pairs,
    per_class_accuracy,
    predict_batches,
    print_confusion_summary,
    print_layer_shapes,
    remove_stale_temporary_files,
    save_atomically,
    set_all_seeds,
    set_deterministic,
)


class FixedPredictions(torch.nn.Module):
    """Predicts the class stored in the first feature of each sample."""

    def __init__(self, num_classes=4):
        super().__init__()
        self.num_classes = num_classes
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.nn.functional.one_hot(x[:, 0].long(), self.num_classes).float() + self.dummy


def batches(predictions, targets, batch_size=3):
    features = torch.tensor(predictions, dtype=torch.float32)[:, None]
    labels = torch.tensor(targets)
    return [(features[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, len(labels), batch_size)]


def test_accuracy_against_hand_computed_value():
    loader = batches([0, 1, 2, 2, 1, 0, 3], [0, 1, 2, 1, 1, 3, 3])
    assert compute_accuracy(FixedPredictions(), loader, "cpu") == pytest.approx(100 * 5 / 7)
    assert isinstance(compute_accuracy(FixedPredictions(), loader, "cpu"), float)


def test_confusion_matrix_rows_are_true_labels_and_absent_classes_are_kept():
    # class 2 never occurs as a true label, class 3 is never predicted
    loader = batches([0, 1, 1, 0, 2], [0, 1, 0, 3, 3])
    expected = np.array([[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0]])
    np.testing.assert_array_equal(compute_confusion_matrix(FixedPredictions(), loader, "cpu"), expected)


def test_evaluation_restores_training_mode():
    model = FixedPredictions().train()
    compute_accuracy(model, batches([0], [0]), "cpu")
    assert model.training


class ModeRecorder(FixedPredictions):
    """FixedPredictions that records, at each forward pass, its mode, inference mode and the CPU autocast type."""

    def __init__(self):
        super().__init__()
        self.seen_in_forward = []

    def forward(self, x):
        autocast = cpu_autocast_dtype()
        self.seen_in_forward.append((self.training, torch.is_inference_mode_enabled(), autocast))
        return super().forward(x.flatten(1))  # the class is the first value of each image


@pytest.mark.parametrize("training", [True, False])
def test_prediction_loop_is_in_eval_and_inference_mode_only_during_the_forward_pass(training):
    model = ModeRecorder().train(training)
    seen_in_loop_body = []
    for _, logits, _ in predict_batches(model, batches([0, 1, 2, 3, 1], [0, 1, 2, 3, 0], batch_size=2), "cpu"):
        seen_in_loop_body.append((model.training, torch.is_inference_mode_enabled(), logits.is_inference()))
    assert model.seen_in_forward == [(False, True, None)] * 3
    assert seen_in_loop_body == [(training, False, False)] * 3  # the caller's mode, and plain tensors


def test_prediction_loop_gives_the_eval_mode_outputs(tiny_net):
    tiny_net.features.insert(2, torch.nn.Dropout(0.5))  # eval and train mode differ
    images = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        expected = tiny_net.eval()(images)
    tiny_net.train()
    loader = [(images[:3], torch.tensor([0, 1, 2])), (images[3:], torch.tensor([3, 4]))]
    features, logits, targets = zip(*predict_batches(tiny_net, loader, "cpu"), strict=True)
    assert torch.equal(torch.cat(features), images) and torch.equal(torch.cat(targets), torch.arange(5))
    assert torch.equal(torch.cat(logits), expected)


def test_prediction_loop_takes_layout_and_precision_from_the_device_policy(monkeypatch):
    monkeypatch.setattr(helper_evaluation, "device_policy", lambda *_: DevicePolicy(True, torch.bfloat16))
    model = ModeRecorder()
    [(features, logits, _)] = predict_batches(model, [(torch.zeros(2, 3, 4, 4), torch.tensor([0, 0]))], "cpu")
    assert features.is_contiguous(memory_format=torch.channels_last) and not features.is_contiguous()
    assert model.seen_in_forward == [(False, True, torch.bfloat16)] and logits.dtype == torch.float32


def test_empty_loader_is_a_clear_error():
    with pytest.raises(ValueError, match="^The data loader yielded no images, so there is no accuracy to compute.$"):
        compute_accuracy(FixedPredictions(), [], "cpu")


def test_confusion_matrix_of_an_empty_loader_is_a_clear_error():
    with pytest.raises(ValueError, match="^The data loader yielded no images, so there is no confusion matrix to"):
        compute_confusion_matrix(FixedPredictions(), [], "cpu")


def test_seeds_give_identical_weights_and_draws():
    set_all_seeds(7)
    first = [TinyNet().state_dict(), torch.rand(3), np.random.rand(3), random.random()]
    set_all_seeds(7)
    second = [TinyNet().state_dict(), torch.rand(3), np.random.rand(3), random.random()]
    assert all(torch.equal(first[0][name], second[0][name]) for name in first[0])
    assert torch.equal(first[1], second[1]) and np.array_equal(first[2], second[2]) and first[3] == second[3]


@pytest.mark.parametrize(
    "in_size, out_size",
    [((2, 2), 3), ((1, 1), 3), ((5, 7), 3), ((5, 7), (4, 2)), ((64, 64), 4),  # the notebook's 2x2 and 1x1 maps, odd
     ((5, 7), (None, 3)), ((5, 7), (2, None))],  # None keeps that side's input size, as AdaptiveAvgPool2d does
)
@pytest.mark.parametrize("batch", [(2,), ()], ids=["batch", "one image (C, H, W)"])
def test_deterministic_pooling_matches_adaptive_pooling_forward_and_backward(in_size, out_size, batch):
    """AdaptiveAvgPool2d also takes a single (C, H, W) image (planted: sizes read as x.shape[2] instead of
    x.shape[-2] passed every test, all of them on batches)."""
    torch.manual_seed(0)
    x = torch.randn(*batch, 3, *in_size, dtype=torch.float64, requires_grad=True)
    expected = torch.nn.AdaptiveAvgPool2d(out_size)(x)
    actual = DeterministicAdaptiveAvgPool2d(out_size)(x)
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-12)
    upstream = torch.randn_like(expected)  # gradients flowing back from the classifier
    (expected_grad,) = torch.autograd.grad(expected, x, upstream)
    (actual_grad,) = torch.autograd.grad(actual, x, upstream)
    torch.testing.assert_close(actual_grad, expected_grad, rtol=0, atol=1e-12)


def test_mixed_precision_is_off_on_cpu():
    assert autocast_dtype("cpu") is None and autocast_dtype("cpu", use_amp=True) is None


@pytest.mark.parametrize(("capability", "expected"), [((7, 5), torch.float16), ((8, 0), torch.bfloat16),
                                                      ((9, 0), torch.bfloat16)], ids=["T4", "A100", "H100"])
def test_mixed_precision_is_bf16_from_ampere_on_and_float16_before(monkeypatch, capability, expected):
    """bf16 needs compute capability 8.0 (A100, the first bf16 GPU); Colab's T4 (7.5) gets float16."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert autocast_dtype("cuda") == expected
    assert autocast_dtype("cuda", use_amp=False) is None


@pytest.mark.parametrize(("device", "use_amp", "expected"), [
    ("cuda", None, DevicePolicy(True, torch.bfloat16)), ("cuda", False, DevicePolicy(True, None)),
    ("cpu", None, DevicePolicy(False, None)), ("mps", None, DevicePolicy(False, None))])
def test_device_policy_is_channels_last_on_cuda_only_and_passes_use_amp_on(monkeypatch, device, use_amp, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert helper_evaluation.device_policy(device, use_amp) == expected


def test_set_deterministic_turns_off_cudnn_benchmarking_and_turns_on_deterministic_algorithms(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)  # restored after the test, as is what follows
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        set_deterministic()
        assert torch.backends.cudnn.benchmark is False and torch.backends.cudnn.deterministic is True
        assert torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


def test_save_atomically_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "history.json"
    save_atomically(target, lambda path: open(path, "w").write("old"))

    def failing_write(path):
        open(path, "w").write("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        save_atomically(target, failing_write)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # the permissions of any file the user writes


def test_ctrl_c_in_the_middle_of_a_save_leaves_the_old_file_and_no_temporary_file(tmp_path):
    """Jupyter's stop button raises KeyboardInterrupt, which is not an Exception: a half-written
    600 MB checkpoint must not stay behind as a hidden temporary file."""
    target = tmp_path / "checkpoint.pt"
    save_atomically(target, lambda path: Path(path).write_text("old"))

    def interrupted_write(path):
        Path(path).write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_atomically(target, interrupted_write)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_save_atomically_creates_the_folders_it_saves_into(tmp_path):
    target = tmp_path / "results" / "run-1" / "history.json"
    save_atomically(target, lambda path: Path(path).write_text("new"))
    assert target.read_text() == "new"


def test_save_atomically_flushes_through_a_handle_open_for_writing_as_windows_requires(tmp_path, monkeypatch):
    fcntl = pytest.importorskip("fcntl")  # to tell a read-only descriptor from a writable one, as Windows does
    real_fsync, flushed = os.fsync, []

    def windows_fsync(descriptor):
        if fcntl.fcntl(descriptor, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, "Bad file descriptor (Windows refuses fsync on a read-only handle)")
        flushed.append(descriptor)
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", windows_fsync)
    target = tmp_path / "history.json"
    save_atomically(target, lambda path: Path(path).write_text("new"))
    assert target.read_text() == "new" and len(flushed) == 1


def test_remove_stale_temporary_files_removes_what_killed_saves_left_and_nothing_else(tmp_path):
    names_used = []

    def write(path):
        names_used.append(Path(path))
        Path(path).write_text("complete")

    save_atomically(tmp_path / "checkpoint.pt", write)
    killed_save = names_used[0]
    killed_save.write_text("half a checkpoint")  # what a save killed mid-write leaves, under the name it used
    other_process = tmp_path / ".best_model.pt.4242.0123abcd.tmp"
    other_process.write_text("half the best weights")
    kept = ["checkpoint.pt", ".checkpoint.pt.tmp", "notes.12.0123abcd.tmp", ".checkpoint.pt.12.0123abcd.tmp.bak",
            ".checkpoint.pt.12.0123ABCD.tmp", ".checkpoint.pt.x.0123abcd.tmp"]
    for name in kept[1:]:
        (tmp_path / name).write_text("not ours")
    (tmp_path / ".folder.12.0123abcd.tmp").mkdir()
    (tmp_path / "run" / ".history.json.12.0123abcd.tmp").parent.mkdir()
    (tmp_path / "run" / ".history.json.12.0123abcd.tmp").write_text("in a subfolder")

    assert remove_stale_temporary_files(tmp_path) == sorted([killed_save, other_process])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, ".folder.12.0123abcd.tmp", "run"])
    assert (tmp_path / "run" / ".history.json.12.0123abcd.tmp").exists()
    assert remove_stale_temporary_files(tmp_path) == []
    assert remove_stale_temporary_files(tmp_path / "no such folder") == []


# --- reading the confusion matrix -------------------------------------------------------------


def test_per_class_accuracy_of_a_class_with_a_single_image():
    """One image of a class is enough for its accuracy (planted: where=row_sums > 1 passed, giving NaN)."""
    np.testing.assert_allclose(per_class_accuracy(np.array([[1, 0], [1, 1]])), [100.0, 50.0])


def test_the_summary_and_the_shape_table_print_their_headers(tiny_net, capsys):
    """The column titles say what the numbers are (planted: each header line replaced passed every test)."""
    print_confusion_summary(np.array([[3, 1], [2, 4]]), ["cat", "dog"], k=1)
    assert capsys.readouterr().out.splitlines()[0] == "       class | accuracy"
    print_layer_shapes(tiny_net, (2, 3, 64, 64))
    assert capsys.readouterr().out.splitlines()[:2] == ["layer                    output shape             parameters",
                                                        "(input)                  (2, 3, 64, 64)                     "]


def test_layer_shapes_say_when_the_forward_pass_fails_outside_every_layer(capsys):
    """A reshape in forward() itself, between the layers, is the classic mistake of computing the flatten size by
    hand (planted: the "(outside any layer)" branch dropped, which ended in an IndexError, passed every test)."""

    class FlattensTooEarly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.classifier = torch.nn.Linear(12, 10)

        def forward(self, x):
            return self.classifier(x.view(-1, 13))

    with pytest.raises(RuntimeError, match=r"The forward pass failed in layer '\(outside any layer\)': "):
        print_layer_shapes(FlattensTooEarly(), (1, 3, 4, 4))


def test_per_class_accuracy_and_most_confused_pairs_on_a_hand_made_matrix():
    conf_mat = np.array([[8, 1, 1], [0, 5, 5], [0, 0, 0]])  # class 2 never occurs
    np.testing.assert_allclose(per_class_accuracy(conf_mat), [80.0, 50.0, np.nan])
    assert most_confused_pairs(conf_mat, k=2) == [(1, 2, 5), (0, 1, 1)]
    assert most_confused_pairs(conf_mat, k=10) == [(1, 2, 5), (0, 1, 1), (0, 2, 1)]  # zero cells left out


def test_confusion_summary_prints_names(capsys):
    print_confusion_summary(np.array([[3, 1], [2, 4]]), ["cat", "dog"], k=1)
    out = capsys.readouterr().out
    assert "cat |  75.00%" in out and "dog -> cat" in out and "2 images" in out


def test_confusion_summary_counts_every_image_not_only_the_correct_ones(capsys):
    print_confusion_summary(np.array([[3, 1], [2, 4]]), ["cat", "dog"], k=1)  # 7 correct, 10 in all
    assert "Most confused (true -> predicted), of 10 images:" in capsys.readouterr().out


def test_confusion_summary_prints_only_the_k_most_confused_pairs(capsys):
    conf_mat = np.array([[5, 3, 1], [2, 5, 4], [1, 1, 5]])  # six confused pairs
    print_confusion_summary(conf_mat, ["cat", "dog", "frog"], k=2)
    pairs = [line.split() for line in capsys.readouterr().out.splitlines() if "->" in line and "true" not in line]
    assert pairs == [["dog", "->", "frog", "4", "images"], ["cat", "->", "dog", "3", "images"]]


def test_confusion_summary_says_so_when_nothing_was_confused(capsys):
    print_confusion_summary(np.array([[3, 0], [0, 4]]), ["cat", "dog"], k=3)
    assert capsys.readouterr().out.endswith("of 7 images:\n        none: every image was classified correctly\n")
    print_confusion_summary(np.array([[3, 1], [0, 4]]), ["cat", "dog"], k=3)
    assert "none" not in capsys.readouterr().out


# --- the layer-shape table ---------------------------------------------------------------------


def hooks_left(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_layer_shapes_per_block_and_hooks_removed(tiny_net, capsys):
    rows = print_layer_shapes(tiny_net, (2, 3, 64, 64))
    assert rows == [("features", (2, 8, 4, 4), 224), ("classifier", (2, 10), 1290)]
    assert hooks_left(tiny_net) == 0
    assert "features" in capsys.readouterr().out
    all_rows = print_layer_shapes(tiny_net, (1, 3, 32, 32), all_layers=True)
    assert [name for name, _, _ in all_rows] == ["features.0", "features.1", "features.2", "features", "classifier"]


@pytest.mark.parametrize("training", [True, False])
def test_layer_shapes_leave_the_model_in_the_mode_it_was_in(tiny_net, training):
    """The notebook prints the shapes just before training: a model left in eval mode would train without dropout."""
    tiny_net.train(training)
    print_layer_shapes(tiny_net, (1, 3, 32, 32))
    assert tiny_net.training is training
    tiny_net.classifier = torch.nn.Linear(99, 10)  # and when the forward pass fails
    with pytest.raises(RuntimeError):
        print_layer_shapes(tiny_net, (1, 3, 32, 32))
    assert tiny_net.training is training


def test_layer_shapes_name_the_failing_layer_and_remove_hooks(tiny_net, capsys):
    tiny_net.classifier = torch.nn.Linear(99, 10)  # the flatten size computed wrongly by hand
    with pytest.raises(RuntimeError, match="failed in layer 'classifier'"):
        print_layer_shapes(tiny_net, (1, 3, 64, 64))
    assert hooks_left(tiny_net) == 0
    assert "features" in capsys.readouterr().out  # the table up to the failure


# --- review: mutation testing of helper_evaluation (each test below failed on a planted bug that passed before) --


def test_the_float32_prediction_loop_turns_autocast_off_without_a_warning():
    """Autocast switched on with float32 warns "In CPU autocast, but the target dtype is not supported" at every batch
    (planted: enabled=True passed every test, the float32 forward pass being the same)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(list(predict_batches(ModeRecorder(), batches([0, 1, 2], [0, 1, 2], batch_size=2), "cpu"))) == 2


def test_mixed_precision_logits_come_back_as_float32(monkeypatch):
    """A Linear layer under bf16 autocast outputs bf16: the loop hands float32 to the accuracy and the softmax
    (planted: .float() dropped passed, the test model's own outputs being float32 already)."""
    monkeypatch.setattr(helper_evaluation, "device_policy", lambda *_: DevicePolicy(False, torch.bfloat16))
    [(_, logits, _)] = predict_batches(torch.nn.Linear(4, 3), [(torch.randn(2, 4), torch.tensor([0, 1]))], "cpu")
    assert logits.dtype == torch.float32


def test_the_targets_are_moved_to_the_device_as_the_features_are():
    """A DataLoader yields CPU labels: compared with a GPU's predictions they must be on the GPU too
    (planted: targets yielded as they came passed every test, the suite being CPU-only)."""
    moved = []

    class Labels:
        def to(self, device):
            moved.append(device)
            return torch.tensor([0])

    [(_, _, targets)] = predict_batches(FixedPredictions(), [(torch.zeros(1, 1), Labels())], "cpu")
    assert moved == [torch.device("cpu")] and torch.equal(targets, torch.tensor([0]))


@pytest.fixture
def amp_as_on_a_gpu(monkeypatch):
    """autocast_dtype as on a recent GPU, on this CPU: bfloat16 unless use_amp is False."""
    monkeypatch.setattr(helper_evaluation, "autocast_dtype",
                        lambda device, use_amp=None: None if use_amp is False else torch.bfloat16)


@pytest.mark.parametrize(("use_amp", "expected"), [(None, torch.bfloat16), (False, None)])
def test_use_amp_reaches_the_prediction_loops_precision(amp_as_on_a_gpu, use_amp, expected):
    """USE_AMP = False must evaluate in float32 on a GPU too (planted: device_policy(device) without use_amp passed)."""
    model = ModeRecorder()
    list(predict_batches(model, batches([0], [0]), "cpu", use_amp=use_amp))
    assert model.seen_in_forward == [(False, True, expected)]


def test_the_prediction_loop_computes_in_the_mixed_precision_type_it_is_given(monkeypatch):
    """A T4 has no bfloat16: autocast must use float16 there, as device_policy says (planted: autocast's dtype left
    out, which gives each device's default type, passed every test: CPU's default is bfloat16, the type tested)."""
    monkeypatch.setattr(helper_evaluation, "autocast_dtype", lambda device, use_amp=None: torch.float16)
    model = ModeRecorder()
    list(predict_batches(model, batches([0], [0]), "cpu"))
    assert model.seen_in_forward == [(False, True, torch.float16)]


@pytest.mark.parametrize("evaluate", [compute_accuracy, compute_confusion_matrix])
@pytest.mark.parametrize(("use_amp", "expected"), [(None, torch.bfloat16), (False, None)])
def test_use_amp_reaches_the_accuracy_and_the_confusion_matrix(amp_as_on_a_gpu, evaluate, use_amp, expected):
    """The notebook's USE_AMP = False run must be tested in float32 too (planted: use_amp not passed on to
    predict_batches, in either function, passed every test)."""
    model = ModeRecorder()
    evaluate(model, batches([0], [0]), "cpu", use_amp=use_amp)
    assert model.seen_in_forward == [(False, True, expected)]


def test_set_deterministic_keeps_a_cublas_workspace_the_student_chose(monkeypatch):
    """":16:8" (less memory) is the other setting cuBLAS accepts: it is kept (planted: an assignment instead of
    setdefault passed, the test deleting the variable first)."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", torch.backends.cudnn.deterministic)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        set_deterministic()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


def test_make_pooling_deterministic_replaces_nested_pooling_keeping_each_size_and_counts_them():
    """Pooling inside a block (as in a student's own model) is replaced too, each with its own output size (planted:
    only the top-level children searched, a fixed 3x3 output, and the count not incremented - each passed)."""
    model = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.AdaptiveAvgPool2d((5, 3))),
                                torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten())
    x = torch.randn(2, 3, 7, 6)
    expected = model(x)
    assert make_pooling_deterministic(model) == 2
    assert not any(isinstance(module, torch.nn.AdaptiveAvgPool2d) for module in model.modules())
    assert isinstance(model[0][1], DeterministicAdaptiveAvgPool2d) and model[0][1].output_size == (5, 3)
    torch.testing.assert_close(model(x), expected)
    assert make_pooling_deterministic(model) == 0


def test_most_confused_pairs_break_a_tie_by_the_true_label_first():
    """Equal counts are listed by true label, then predicted label (planted: ties by true label reversed passed:
    the only tie tested shared its true label)."""
    conf_mat = np.array([[5, 2, 0], [2, 5, 0], [0, 2, 5]])
    assert most_confused_pairs(conf_mat, k=3) == [(0, 1, 2), (1, 0, 2), (2, 1, 2)]


def test_confusion_summary_refuses_class_names_that_do_not_match_the_matrix():
    """Two names for three classes would silently drop a class's row (planted: zip without strict passed)."""
    with pytest.raises(ValueError):
        print_confusion_summary(np.eye(3, dtype=int), ["cat", "dog"])


@pytest.mark.parametrize(("all_layers", "failing"), [(True, "features.0"), (False, "features")])
def test_layer_shapes_name_the_innermost_failing_layer(tiny_net, all_layers, failing):
    """A convolution expecting 4 channels fails inside its block: with every layer listed, the error names the
    convolution itself (planted: the outermost entered layer named passed: only a top-level layer had failed)."""
    tiny_net.features[0] = torch.nn.Conv2d(4, 8, kernel_size=3, padding=1)
    with pytest.raises(RuntimeError, match=f"failed in layer '{failing}':"):
        print_layer_shapes(tiny_net, (1, 3, 32, 32), all_layers=all_layers)


def test_layer_shapes_leave_batch_norm_statistics_untouched():
    """The dummy batch runs in eval mode: in training mode it would move BatchNorm's running mean and variance
    towards a batch of zeros before training starts (planted: model.eval() dropped passed: TinyNet has no BatchNorm)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, kernel_size=3, padding=1), torch.nn.BatchNorm2d(4)).train()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    print_layer_shapes(model, (2, 3, 8, 8))
    after = model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before) and model.training


def test_layer_shapes_use_the_models_own_device(tiny_net):
    """A model on a GPU gets its dummy batch on the GPU; a 'meta' model stands in for it here (planted: the batch
    always made on the CPU passed, the suite being CPU-only)."""
    assert print_layer_shapes(tiny_net.to("meta"), (2, 3, 64, 64)) == [("features", (2, 8, 4, 4), 224),
                                                                     ("classifier", (2, 10), 1290)]


def test_remove_stale_temporary_files_returns_them_sorted_whatever_the_folders_order(tmp_path, monkeypatch):
    """The folder's listing order depends on the file system (planted: list() instead of sorted() passed: the two
    files of the other test happened to be listed in order)."""
    names = [f".checkpoint.pt.{pid}.0123abcd.tmp" for pid in (30, 10, 20)]
    for name in names:
        (tmp_path / name).write_text("half")
    real_iterdir = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda folder: reversed(sorted(real_iterdir(folder))))
    assert remove_stale_temporary_files(tmp_path) == sorted(tmp_path / name for name in names)


def test_a_model_that_gets_everything_wrong_has_0_percent_accuracy_not_an_error():
    """A diverged or untrained model can score 0%: only an empty loader is an error (planted: raising when nothing
    was correct passed every test here)."""
    assert compute_accuracy(FixedPredictions(), batches([1, 2, 3], [0, 0, 0]), "cpu") == 0.0


def test_per_class_accuracy_of_an_absent_class_is_nan_without_a_warning():
    """Dividing 0 by 0 would give NaN too, with NumPy's "invalid value encountered in divide" (planted:
    where=row_sums >= 0 passed, the NaN being the same)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(per_class_accuracy(np.array([[2, 0], [0, 0]])), [100.0, np.nan])


def test_confusion_matrix_of_many_classes_with_uint8_labels():
    """Labels stored as uint8 (a TensorDataset of bytes): true label x number of classes must not wrap around at 256
    (planted: targets.long() dropped passed: every tested label was int64)."""
    predictions, targets = [19, 0, 13], [19, 18, 13]
    features = torch.tensor(predictions, dtype=torch.float32)[:, None]
    loader = [(features, torch.tensor(targets, dtype=torch.uint8))]
    expected = np.zeros((20, 20), dtype=np.int64)
    for true, predicted in zip(targets, predictions, strict=True):
        expected[true, predicted] += 1
    np.testing.assert_array_equal(compute_confusion_matrix(FixedPredictions(num_classes=20), loader, "cpu"), expected)


def test_mixed_precision_follows_the_capability_of_the_gpu_named(monkeypatch):
    """On a machine with an old and a new GPU, "cuda:1" gets its own GPU's type (planted: the capability of the
    current GPU asked for passed: every tested machine had one kind of GPU)."""
    monkeypatch.setattr(torch.cuda, "get_device_capability",
                        lambda device=None: (8, 0) if torch.device(device or "cuda:0") == torch.device("cuda:1")
                        else (7, 5))
    assert autocast_dtype("cuda:1") == torch.bfloat16 and autocast_dtype("cuda:0") == torch.float16


def test_set_deterministic_raises_rather_than_warns_on_a_nondeterministic_operation(monkeypatch):
    """warn_only=True would let a nondeterministic kernel through with a warning (planted: it passed every test)."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", torch.backends.cudnn.deterministic)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        set_deterministic()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)


def test_two_saves_of_one_file_use_different_temporary_files(tmp_path):
    """A checkpoint written in the background and one saved meanwhile must not write into one temporary file
    (planted: a fixed suffix instead of a random one passed: no test saved one file twice at once)."""
    target = tmp_path / "checkpoint.pt"
    inner_paths = []

    def outer_write(path):
        Path(path).write_text("outer")
        save_atomically(target, lambda inner: inner_paths.append(inner) or Path(inner).write_text("inner"))
        assert Path(path).read_text() == "outer"

    save_atomically(target, outer_write)
    assert target.read_text() == "outer" and len(inner_paths) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


class FailsInItsOwnCode(torch.nn.Module):
    """A block (a student's own) whose forward fails after its convolution has run, as a mismatched residual sum."""

    def __init__(self, error):
        super().__init__()
        self.conv, self.error = torch.nn.Conv2d(3, 3, kernel_size=1), error

    def forward(self, x):
        self.conv(x)
        raise self.error


@pytest.mark.parametrize("error", [RuntimeError("size mismatch"), ValueError("bad shape"), TypeError("bad argument")])
def test_layer_shapes_name_a_block_that_fails_in_its_own_code(capsys, error):
    """The block is named, not its last finished layer, whatever the exception's type (planted: entered.pop(0) for
    entered.remove(module), and only RuntimeError caught - both passed every test)."""
    model = torch.nn.Sequential(torch.nn.Identity(), FailsInItsOwnCode(error))
    with pytest.raises(RuntimeError, match=f"failed in layer '1': {error}"):
        print_layer_shapes(model, (1, 3, 4, 4), all_layers=True)
    assert "1.conv" in capsys.readouterr().out and hooks_left(model) == 0


def test_an_interrupted_evaluation_leaves_the_model_in_the_mode_it_was_in():
    """Jupyter's stop button during an evaluation, or a forward pass that fails: the model must not be left in eval
    mode, which would train on without dropout (planted: the mode restored only after a successful forward passed)."""

    class Interrupted(FixedPredictions):
        def forward(self, x):
            raise KeyboardInterrupt

    model = Interrupted().train()
    with pytest.raises(KeyboardInterrupt):
        compute_accuracy(model, batches([0], [0]), "cpu")
    assert model.training


def test_save_atomically_returns_the_path_of_the_finished_file(tmp_path):
    """train_model prints the path it returns for the weights saved at an interrupt (planted: returning the
    temporary file's path, deleted by then, passed every test)."""
    target = tmp_path / "interrupted_model.pt"
    assert save_atomically(str(target), lambda path: Path(path).write_text("weights")) == target


def test_remove_stale_temporary_files_of_a_path_that_is_a_file_is_nothing(tmp_path):
    """Not a folder, so nothing to clear (planted: exists() for is_dir() passed, and then iterdir raised)."""
    (tmp_path / "history.json").write_text("{}")
    assert remove_stale_temporary_files(tmp_path / "history.json") == []


def test_confusion_summary_and_shape_table_write_large_numbers_with_thousands_separators(tiny_net, capsys):
    """CIFAR-10's test set is "10,000 images" and VGG's layers have millions of parameters (planted: the ',' dropped
    from either format passed every test: 10 images and no printed parameter count were checked)."""
    print_confusion_summary(np.array([[6000, 0], [1000, 3000]]), ["cat", "dog"], k=1)
    assert "of 10,000 images:" in capsys.readouterr().out
    print_layer_shapes(tiny_net, (1, 3, 32, 32))
    assert re.search(r"^classifier +\(1, 10\) +1,290$", capsys.readouterr().out, flags=re.MULTILINE)


def test_remove_stale_temporary_files_keeps_a_name_with_more_than_eight_hex_digits(tmp_path):
    """Our temporary files end in exactly 8 hex digits; a longer one is someone else's (planted: [0-9a-f]+ passed)."""
    (tmp_path / ".notes.12.0123abcdef.tmp").write_text("not ours")
    assert remove_stale_temporary_files(tmp_path) == [] and (tmp_path / ".notes.12.0123abcdef.tmp").exists()


def test_the_confusion_summary_lists_five_pairs_unless_told_otherwise(capsys):
    """The documented default k=5 (planted: k=3 in either signature passed: every call tested gave k)."""
    conf_mat = np.arange(16).reshape(4, 4)  # twelve confused pairs
    assert len(most_confused_pairs(conf_mat)) == 5
    print_confusion_summary(conf_mat, ["cat", "dog", "frog", "ship"])
    assert sum(" -> " in line and "true" not in line for line in capsys.readouterr().out.splitlines()) == 5


def test_the_confusion_summary_takes_the_class_dict_and_checks_its_names_before_printing_a_line(capsys):
    """A dict printed its labels 0, 1, 2 in the accuracy table and its names in the pairs table; too few names printed
    half a table before failing in zip (planted: no conversion, no check up front)."""
    conf_mat = np.array([[5, 3, 0], [1, 4, 2], [0, 0, 6]])
    print_confusion_summary(conf_mat, {2: "ship", 0: "cat", 1: "dog"}, k=1)  # in label order, not the dict's
    assert capsys.readouterr().out.splitlines()[1:4] == ["         cat |  62.50%", "         dog |  57.14%",
                                                          "        ship | 100.00%"]
    with pytest.raises(ValueError, match="class_names has 2 names for 3 classes"):
        print_confusion_summary(conf_mat, ["cat", "dog"])
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_a_count_of_confused_pairs_below_one_is_refused_not_read_as_none(k, capsys):
    """k=0 printed "none: every image was classified correctly" for a matrix with 6 mistakes; k=-1 returned all
    pairs but the last (planted: no check, as it was)."""
    conf_mat = np.array([[5, 3, 0], [1, 4, 2], [0, 0, 6]])
    with pytest.raises(ValueError, match=f"k must be a whole number of at least 1, got {k!r}"):
        most_confused_pairs(conf_mat, k)
    with pytest.raises(ValueError, match="k must be a whole number"):
        print_confusion_summary(conf_mat, ["cat", "dog", "ship"], k=k)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("labels", [[1, 2, 4], [-1, 0, 1]])
def test_labels_outside_the_models_classes_are_refused_by_name_not_counted_elsewhere(labels):
    """Labels 1 to 10 for 10 outputs failed with "shape '[10, 10]' is invalid for input of size 108", and a label of
    -1 with bincount's "only supports 1-d non-negative integral inputs" (planted: no check, as it was)."""
    batch = [(torch.tensor([[0.0], [1.0], [2.0]]), torch.tensor(labels))]
    with pytest.raises(ValueError, match=f"labels must be 0 to 3, one for each of the model's 4 outputs, but this "
                                         f"batch has labels from {min(labels)} to {max(labels)}"):
        compute_confusion_matrix(FixedPredictions(4), batch, "cpu")
    with pytest.raises(ValueError, match="labels from 0 to 4"):  # a bad label in a later batch counts as much
        compute_confusion_matrix(FixedPredictions(4), [(torch.tensor([[0.0]]), torch.tensor([0]))] * 2
                                 + [(torch.tensor([[0.0], [1.0]]), torch.tensor([0, 4]))], "cpu")
    edge = [(torch.tensor([[0.0], [3.0]]), torch.tensor([0, 3]))]  # 0 and 3: the first and the last class
    assert compute_confusion_matrix(FixedPredictions(4), edge, "cpu").trace() == 2


# --- review 6: the GPU's branches, stood in for on this CPU-only machine --------------------------------------------


def test_the_prediction_loop_sends_each_batch_to_the_device_without_waiting():
    """As the training step does (planted: non_blocking dropped, passed every CPU test)."""
    cpu = torch.device("cpu")
    features, targets = MovedTo(torch.randn(4, 3, 8, 8)), MovedTo(torch.tensor([0, 1, 2, 3]))
    next(helper_evaluation.predict_batches(TinyNet(), [(features, targets)], cpu))
    assert features.calls == [((cpu,), {"non_blocking": True})]


def test_an_accuracy_is_read_from_the_device_once_not_once_per_batch(host_reads):
    """Every epoch computes two accuracies; a read per batch would make the CPU wait for the GPU at every batch
    (planted: the count turned into a Python int per batch passed every test)."""
    batches = [(torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])) for _ in range(5)]
    compute_accuracy(TinyNet(), batches, "cpu")
    assert len(host_reads) == 1


def test_a_confusion_matrix_of_predictions_on_a_gpu_is_counted_on_the_cpu():
    """np.bincount-style counting needs the pairs on the CPU (planted: .cpu() dropped, which fails on a GPU when the
    counts meet the CPU matrix, passed every CPU test)."""
    matrix = compute_confusion_matrix(TinyNetOnGpu(), batches_on_gpu(), "cpu")
    assert type(matrix) is np.ndarray and matrix.shape == (10, 10) and matrix.sum() == 18


# --- review 7: planted bugs in helper_evaluation that passed every test ---------------------------------------------


def test_an_accuracy_counts_exactly_in_a_batch_whose_share_of_correct_predictions_is_no_round_number():
    """7 of 23 correct is 30.43...%, not 6 of 23 (planted: the count taken as the batch's mean accuracy times its size,
    which rounds down, passed every test: their batches of 3 gave exact products)."""
    predictions = torch.tensor([0] * 7 + [1] * 16, dtype=torch.float32)[:, None]
    assert compute_accuracy(FixedPredictions(), [(predictions, torch.zeros(23, dtype=torch.long))], "cpu") \
        == 100.0 * 7 / 23


def test_an_empty_batch_adds_nothing_to_the_confusion_matrix():
    """A batch without images (a filtered loader) has no labels to check (planted: the check run on it, which stopped
    in torch's min() of an empty tensor, passed every test)."""
    loader = [(torch.zeros(0, 1), torch.zeros(0, dtype=torch.long)),
              (torch.tensor([[0.0], [1.0], [2.0]]), torch.tensor([0, 2, 2]))]
    np.testing.assert_array_equal(compute_confusion_matrix(FixedPredictions(3), loader, "cpu"),
                                  [[1, 0, 0], [0, 0, 0], [0, 1, 1]])


def test_the_most_confused_pairs_take_a_numpy_integer_for_k():
    """k computed with NumPy (np.int64) is a whole number (planted: only Python ints accepted passed every test)."""
    conf = np.array([[5, 2, 1], [0, 4, 3], [1, 0, 6]])
    assert most_confused_pairs(conf, k=np.int64(2)) == [(1, 2, 3), (0, 1, 2)]


def test_class_names_of_the_wrong_count_are_refused_with_the_names_to_pass():
    """Planted: each message's fix dropped, passed every test (only the count was checked)."""
    conf = np.eye(3, dtype=int)
    with pytest.raises(ValueError, match=re.escape("pass one name for each of the 3 classes, e.g. CIFAR10_CLASSES or "
                                                   "dict(enumerate(CIFAR10_CLASSES)).")):
        print_confusion_summary(conf, {0: "a", 1: "b"})
    with pytest.raises(ValueError, match=re.escape("pass one name for each, e.g. CIFAR10_CLASSES.")):
        print_confusion_summary(conf, ["a", "b"])


def test_the_layer_shape_table_runs_its_example_without_gradients():
    """The example pass builds no autograd graph (planted: no_grad dropped passed every test)."""
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 2)

        def forward(self, x):
            seen.append(torch.is_grad_enabled())
            return self.linear(x)

    print_layer_shapes(Probe(), (1, 2))
    assert seen == [False]


def test_the_layer_shape_tables_input_row_shows_the_size_as_a_tuple(capsys):
    """Planted: torch.Size printed for a size given as a list passed every test."""
    print_layer_shapes(torch.nn.Sequential(torch.nn.Linear(2, 3)), [1, 2])
    assert re.fullmatch(r"\(input\)\s+\(1, 2\)\s*", capsys.readouterr().out.splitlines()[1])


def test_the_deterministic_pooling_matrix_is_made_on_the_inputs_device_in_its_dtype():
    """On a GPU a matrix made on the CPU cannot multiply the feature map (planted: the device dropped passed every
    CPU test; the meta device stands in)."""
    like = torch.zeros(1, device="meta", dtype=torch.float64)
    matrix = DeterministicAdaptiveAvgPool2d.pooling_matrix(4, 3, like)
    assert matrix.device.type == "meta" and matrix.dtype == torch.float64


@pytest.mark.parametrize("device, deterministic, needed", [(torch.device("cuda", 0), True, True),
                                                           (torch.device("mps", 0), False, True),
                                                           (torch.device("cuda", 0), False, False)])
def test_the_pooling_is_replaced_on_an_indexed_device_too(device, deterministic, needed):
    """DEVICE = "cuda:0" is a CUDA device (planted: its name compared with "cuda" passed every test)."""
    assert helper_evaluation.needs_deterministic_pooling(device, deterministic) is needed


def test_a_reader_of_the_old_file_keeps_reading_the_old_contents(tmp_path):
    """The new file is renamed into place: a reader of the old one (the run table reading history.json while training
    writes it) never sees half of each (planted: copied over the old file, then deleted, passed every test)."""
    path = tmp_path / "history.json"
    path.write_text("old")
    with open(path) as reader:
        save_atomically(path, lambda temporary: Path(temporary).write_text("new contents"))
        assert reader.read() == "old"
    assert path.read_text() == "new contents"


def test_the_temporary_file_is_on_the_disk_before_it_replaces_the_target(tmp_path, monkeypatch):
    """Flushed first, so that a power cut cannot leave an empty file in the target's place (planted: the target flushed
    after the rename passed every test)."""
    target, flushed, flush_to_disk = tmp_path / "model.pt", [], helper_evaluation.flush_to_disk
    target.write_text("old")

    def recording(path):
        flushed.append((Path(path).name, target.read_text()))
        flush_to_disk(path)

    monkeypatch.setattr(helper_evaluation, "flush_to_disk", recording)
    save_atomically(target, lambda path: Path(path).write_text("new"))
    assert len(flushed) == 1 and flushed[0][0] != "model.pt" and flushed[0][1] == "old"


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files through Linux's /proc")
def test_saving_leaves_no_file_open(tmp_path):
    """Every save opens the temporary file to flush it (planted: the handle never closed, which on Windows also makes
    the rename fail, passed every test)."""
    before = len(os.listdir("/proc/self/fd"))
    for index in range(5):
        save_atomically(tmp_path / f"file{index}", lambda path: Path(path).write_text("x"))
    assert len(os.listdir("/proc/self/fd")) == before


# --- review 9: planted bugs in the recently changed helpers that passed every test ----------------------------------


def test_a_read_only_mapping_of_names_is_read_by_label_as_a_dict_is(capsys):
    """class_names may be any {label: name} mapping, as its annotation says, e.g. a read-only MappingProxyType of a
    module's constant: its iteration gives the labels too, so the table must look the names up, not print 0 and 1.
    Planted: isinstance(class_names, dict) in class_names_in_order, caught."""
    from types import MappingProxyType

    print_confusion_summary(np.array([[3, 1], [2, 4]]), MappingProxyType({0: "cat", 1: "dog"}), k=1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["cat", "|", "75.00%"] and lines[-1].split() == ["dog", "->", "cat", "2", "images"]
