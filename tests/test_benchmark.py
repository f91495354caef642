"""The speed benchmark (benchmarks/benchmark_epoch.py): its FLOP count, its profile summary, and a tiny CPU run.

The benchmark runs on a GPU machine that a session holds for minutes, so a crash there
costs scarce time: the whole script is run here first, on a few images.
"""

import itertools
import json
import statistics
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import TinyNet
from torch.autograd import DeviceType

from benchmarks import benchmark_epoch
from benchmarks.benchmark_epoch import (
    COMPILED,
    LADDER,
    build_loaders,
    build_model,
    epoch_flops,
    group_of,
    matrix_flops_per_image,
    profile_rung,
    random_cifar10,
    run_epoch,
    time_by_group,
    time_checkpoints,
    time_data_only,
    time_rung,
)
from benchmarks.notebook_code import cells_defining

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "vgg16-cifar10.ipynb"
CPU = torch.device("cpu")
RUNG = {rung.name: rung for rung in LADDER}
STAND_IN_FLOPS = {"train_conv": 3.0, "train_linear": 1.0, "eval_conv": 2.0, "eval_linear": 0.5}
"""Stand-in FLOPs per trained and evaluated image, small enough to add up by hand."""


def layer_arithmetic(model, image_size):
    """Forward FLOPs per image by hand: 2 x multiply-adds of every convolution and linear layer."""
    conv, linear, size = 0, 0, image_size
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            conv += 2 * module.in_channels * module.out_channels * 9 * size * size
        elif isinstance(module, torch.nn.MaxPool2d):
            size //= 2
        elif isinstance(module, torch.nn.Linear):
            linear += 2 * module.in_features * module.out_features
    return conv, linear


@pytest.mark.parametrize("image_size", [64, 32])
def test_flop_count_matches_the_layer_arithmetic_of_the_notebooks_vgg16(image_size):
    VGG16 = cells_defining(ROOT / "vgg16-cifar10.ipynb", "class VGG16(")["VGG16"]
    conv, linear = layer_arithmetic(VGG16(num_classes=10), image_size)
    flops = matrix_flops_per_image(VGG16, image_size)
    assert flops["eval_conv"] == conv and flops["eval_linear"] == linear
    # backward: the gradients of the inputs and of the weights, each as costly as the forward pass,
    # except the input gradient of the first convolution (the images need none)
    first_conv_input_gradient = 2 * 3 * 64 * 9 * image_size * image_size
    assert flops["train_conv"] == 3 * conv - first_conv_input_gradient
    assert flops["train_linear"] == 3 * linear
    if image_size == 64:  # the README's "about 480 TFLOP per epoch"
        assert 470e12 < epoch_flops(flops, 175 * 256, 175 * 256 + 5000) < 480e12


def test_epoch_flops_counts_training_steps_and_evaluated_images_at_their_own_cost():
    per_image = {"train_conv": 6.0, "train_linear": 3.0, "eval_conv": 2.0, "eval_linear": 1.0}
    assert epoch_flops(per_image, trained_images=10, evaluated_images=100) == 10 * 9 + 100 * 3


@pytest.mark.parametrize("operation, group", [
    ("aten::cudnn_convolution", "convolutions"), ("aten::convolution_backward", "convolutions"),
    ("aten::addmm", "linear layers"), ("aten::mm", "linear layers"),
    ("aten::relu_", "ReLU"), ("aten::clamp_min", "ReLU"), ("aten::threshold_backward", "ReLU"),
    ("aten::max_pool2d_with_indices_backward", "max pooling"), ("aten::_adaptive_avg_pool2d", "adaptive pooling"),
    ("aten::native_dropout", "dropout"), ("aten::_foreach_add_", "optimizer (SGD)"),
    ("aten::nll_loss_forward", "loss"), ("aten::_to_copy", "copies (layout, dtype)"),
    ("triton_poi_fused_convolution_relu_3", "fused by torch.compile"),
    ("aten::add_", "bias additions and sums (mostly the biases and their gradients)"),
    ("aten::sum", "bias additions and sums (mostly the biases and their gradients)"),
    ("aten::index", "everything else (data transforms, accuracy counting, ...)"),
    # autograd's and torch.compile's own rows name the operation in capitals
    ("autograd::engine::evaluate_function: ConvolutionBackward0", "convolutions"),
    ("CompiledFunction", "fused by torch.compile"),
])
def test_profiled_operations_fall_into_their_groups(operation, group):
    assert group_of(operation) == group


def event(key, device_type, cpu_us=0.0, device_us=0.0, annotation=False):
    return SimpleNamespace(key=key, device_type=device_type, self_cpu_time_total=cpu_us,
                           self_device_time_total=device_us, is_user_annotation=annotation)


def test_device_time_counts_each_kernel_once_and_keeps_unclaimed_kernels():
    events = [
        event("aten::cudnn_convolution", DeviceType.CPU, cpu_us=50, device_us=3_000_000),
        event("aten::convolution_backward", DeviceType.CPU, cpu_us=70, device_us=5_000_000),
        event("aten::relu_", DeviceType.CPU, cpu_us=10, device_us=1_000_000),
        # the kernel rows: the same 9 s again, plus 0.5 s that no operation launched
        event("sm90_xmma_fprop_implicit_gemm", DeviceType.CUDA, device_us=3_000_000),
        event("sm90_xmma_dgrad_implicit_gemm", DeviceType.CUDA, device_us=5_000_000),
        event("vectorized_elementwise_kernel", DeviceType.CUDA, device_us=1_000_000),
        event("graph replay", DeviceType.CUDA, device_us=500_000),
        # record_function ranges, recorded on the device too: the kernels' time again, not more work
        event("## Call CompiledFxGraph fabc ##", DeviceType.CUDA, device_us=8_000_000, annotation=True),
        event("Optimizer.step#SGD.step", DeviceType.CUDA, device_us=1_000_000, annotation=True),
    ]
    assert time_by_group(events, on_cuda=True) == {"convolutions": 8.0, "ReLU": 1.0, "kernels of no operation": 0.5}
    # largest first: the order the profile prints
    assert list(time_by_group(events, on_cuda=True)) == ["convolutions", "ReLU", "kernels of no operation"]
    assert time_by_group(events, on_cuda=False) == pytest.approx({"convolutions": 120e-6, "ReLU": 10e-6})


def test_benchmark_runs_end_to_end_on_a_few_cpu_images(tmp_path):
    report = tmp_path / "benchmark.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "benchmark_epoch.py"), "--device", "cpu", "--epoch-images", "40",
         "--data-images", "32", "--batch-size", "8", "--rungs", "+on-device", "--profile", "--json", str(report)],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(report.read_text())
    assert list(results["rungs"]) == ["classic", "+on-device"]
    on_device = results["rungs"]["+on-device"]
    # 36 training images -> 4 full batches of 8 trained, 32 + 4 evaluated
    assert on_device["tflop_per_epoch"] == pytest.approx(epoch_flops(results["flops_per_image"], 32, 36) / 1e12)
    assert on_device["tflop_per_s"] == pytest.approx(on_device["tflop_per_epoch"] / on_device["seconds"])
    profile = results["profiles"][0]
    per_image = results["flops_per_image"]  # profiled: 4 training steps of 8 (of the 10 asked), 4 validation images
    assert profile["flops"]["conv"] == 32 * per_image["train_conv"] + 4 * per_image["eval_conv"]
    # which group takes longest is a timing, and on this CPU, with batches of 8, the linear layers sometimes do (CI
    # failed so once): the profile must time both groups; time_by_group's own test checks how events are grouped
    assert profile["rung"] == "+eval-1024" and {"convolutions", "linear layers"} <= set(profile["seconds_by_group"])
    assert all(seconds > 0 for seconds in profile["seconds_by_group"].values())
    assert "the CPU computed for" in done.stdout and "TFLOP/s" in done.stdout


def test_each_rung_builds_the_loaders_it_names():
    """classic: DataLoaders; +on-device: batches made on the device; +channels-last: NHWC batches; +eval-1024:
    validation batches of 1,024 (training batches keep the batch size)."""
    data = random_cifar10(40)
    classic = build_loaders(data, RUNG["classic"], CPU, 8, 0, NOTEBOOK)
    assert all(isinstance(loader, torch.utils.data.DataLoader) for loader in classic)
    on_device = build_loaders(data, RUNG["+on-device"], CPU, 8, 0, NOTEBOOK)
    assert not any(isinstance(loader, torch.utils.data.DataLoader) for loader in on_device)
    assert [loader.batch_size for loader in on_device] == [8, 8]
    assert next(iter(on_device[0]))[0].is_contiguous()
    channels_last = build_loaders(data, RUNG["+channels-last"], CPU, 8, 0, NOTEBOOK)
    assert all(next(iter(loader))[0].is_contiguous(memory_format=torch.channels_last) for loader in channels_last)
    assert [loader.batch_size for loader in build_loaders(data, RUNG["+eval-1024"], CPU, 8, 0, NOTEBOOK)] == [8, 1024]


def test_build_model_uses_the_rungs_layout_and_the_deterministic_pooling_when_asked():
    model, _ = build_model(TinyNet, CPU, RUNG["+on-device"])
    assert model.features[0].weight.is_contiguous()
    assert any(isinstance(module, torch.nn.AdaptiveAvgPool2d) for module in model.modules())
    model, _ = build_model(TinyNet, CPU, RUNG["+channels-last"], deterministic=True)
    assert model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(isinstance(module, torch.nn.AdaptiveAvgPool2d) for module in model.modules())


class RecordingNet(TinyNet):
    """TinyNet that records, for each forward pass, its mode, its output's dtype and its input's layout."""

    def __init__(self, num_classes=10):
        super().__init__(num_classes)
        self.calls = []

    def forward(self, x):
        logits = super().forward(x)
        self.calls.append((self.training, logits.dtype, x.is_contiguous(memory_format=torch.channels_last)))
        return logits


def batches(count, size=4):
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(size, 3, 16, 16, generator=generator), torch.randint(0, 10, (size,), generator=generator))
            for _ in range(count)]


def run_recorded(rung, max_batches=None):
    torch.manual_seed(0)
    model = RecordingNet()
    run_epoch(model, torch.optim.SGD(model.parameters(), lr=0.01), batches(3), batches(2), CPU, rung, max_batches)
    return model


def test_an_epoch_trains_then_evaluates_the_training_and_validation_batches_and_ends_in_training_mode():
    model = run_recorded(RUNG["+on-device"])
    assert [training for training, _, _ in model.calls] == [True] * 3 + [False] * (3 + 2)
    assert model.training


def test_an_epoch_cut_to_max_batches_trains_that_many_steps_and_evaluates_nothing():
    """profile_rung and time_checkpoints' warm-up ask for a few training steps: exactly that many, no evaluation."""
    assert [training for training, _, _ in run_recorded(RUNG["+on-device"], max_batches=2).calls] == [True, True]


def test_mixed_precision_and_channels_last_are_used_from_their_own_rungs_on(monkeypatch):
    """On a CPU autocast_dtype says float32; as on a GPU with bf16, the rungs before +mixed must stay float32."""
    monkeypatch.setattr(benchmark_epoch, "autocast_dtype", lambda device, use_amp=None: torch.bfloat16)
    assert {call[1:] for call in run_recorded(RUNG["+on-device"]).calls} == {(torch.float32, False)}
    assert {call[1:] for call in run_recorded(RUNG["+channels-last"]).calls} == {(torch.float32, True)}
    assert {call[1:] for call in run_recorded(RUNG["+mixed"]).calls} == {(torch.bfloat16, True)}


def test_only_the_no_sync_rung_leaves_the_losses_on_the_device(monkeypatch):
    """The rungs up to +mixed read each step's loss (loss.item(), the lecture's loop); +no-sync reads none."""
    items = []
    item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda tensor: items.append(tensor) or item(tensor))
    run_recorded(RUNG["+mixed"], max_batches=3)
    assert len(items) == 3
    items.clear()
    run_recorded(RUNG["+no-sync"], max_batches=3)
    assert items == []


def test_time_rung_reports_the_median_epoch_and_counts_each_training_image_twice(monkeypatch):
    """Training images pass twice per epoch (training, then training accuracy), validation images once; a compiled
    rung's compile time is its first epoch's excess over the median."""
    seconds = iter([9.0, 4.0, 1.0, 2.0])  # the first epoch (warm-up or compiling), then three timed ones
    monkeypatch.setattr(benchmark_epoch, "run_epoch", lambda *args, **kwargs: next(seconds))
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: model)
    per_image = STAND_IN_FLOPS
    args = SimpleNamespace(batch_size=8, workers=0, repeats=3, flops_per_image=per_image)
    result = time_rung(TinyNet, random_cifar10(40), COMPILED, CPU, args, NOTEBOOK)
    assert result["all_seconds"] == [4.0, 1.0, 2.0] and result["seconds"] == 2.0
    assert result["compile_seconds"] == 7.0
    assert result["images_per_s"] == (2 * 32 + 4) / 2.0  # 36 training images: 4 full batches of 8; 4 validation
    assert result["tflop_per_epoch"] == pytest.approx(epoch_flops(per_image, 32, 36) / 1e12)


def test_time_data_only_counts_the_images_of_an_epochs_batches():
    seconds, images = time_data_only(batches(2, size=8), batches(1, size=4), CPU)
    assert images == 2 * 16 + 4 and seconds > 0


def test_time_checkpoints_saves_every_epoch_as_the_best_and_compares_the_medians(tmp_path, monkeypatch):
    """The worst case: checkpoint plus best weights, every epoch; the share is the training thread's save time."""
    saved = []

    class RecordingWriter(benchmark_epoch.CheckpointWriter):
        def save(self, checkpoint, is_best):
            saved.append(is_best)
            super().save(checkpoint, is_best)

    monkeypatch.setattr(benchmark_epoch, "CheckpointWriter", RecordingWriter)
    args = SimpleNamespace(batch_size=8, workers=0, checkpoint_dir=tmp_path)
    cost = time_checkpoints(TinyNet, random_cifar10(40), CPU, args, NOTEBOOK, epochs=2)
    assert saved == [True, True] and len(cost["epoch_seconds"]) == len(cost["write_seconds"]) == 2
    assert cost["save_percent_of_epoch"] == pytest.approx(
        100 * statistics.median(cost["save_seconds"]) / statistics.median(cost["epoch_seconds"]))
    assert list(tmp_path.iterdir()) == []  # written to a temporary folder in checkpoint_dir, removed afterwards


def test_the_profile_evaluates_as_many_validation_batches_as_training_steps():
    per_image = STAND_IN_FLOPS
    args = SimpleNamespace(batch_size=8, workers=0, flops_per_image=per_image)
    # 20 validation images in batches of 8 (+no-sync keeps the batch size): 2 steps evaluate 2 batches, 16 images
    result = profile_rung(TinyNet, random_cifar10(200), RUNG["+no-sync"], CPU, args, NOTEBOOK, steps=2)
    assert result["flops"] == {"conv": 16 * 3.0 + 16 * 2.0, "linear": 16 * 1.0 + 16 * 0.5}


def test_the_script_reports_speed_ups_over_the_classic_path_and_uses_the_sizes_it_is_given(tmp_path, monkeypatch):
    """vs classic = the classic epoch's seconds over the rung's; the data-path ratio = on-device images/s over
    classic's; --epoch-images and --data-images size the two synthetic data sets. (The timings are stand-ins.)"""
    sizes = []
    monkeypatch.setattr(benchmark_epoch, "random_cifar10",
                        lambda num_images, seed=0: sizes.append(num_images) or random_cifar10(num_images, seed))
    monkeypatch.setattr(benchmark_epoch, "matrix_flops_per_image", lambda VGG16, image_size: STAND_IN_FLOPS)
    epoch_seconds = {"classic": 4.0, "+on-device": 1.0}
    monkeypatch.setattr(benchmark_epoch, "time_rung", lambda VGG16, data, rung, *args: {
        "seconds": epoch_seconds[rung.name], "images_per_s": 1.0, "tflop_per_s": 1.0, "peak_gpu_gib": None})
    data_path = itertools.chain([(1.0, 36)], [(2.0, 36)], [(1.0, 36)], [(0.5, 36)])  # warm-up, then timed, per path
    monkeypatch.setattr(benchmark_epoch, "time_data_only", lambda *args: next(data_path))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)  # restored afterwards; the script turns it on
    monkeypatch.setattr(sys, "argv", ["benchmark_epoch.py", "--device", "cpu", "--epoch-images", "40", "--data-images",
                                      "24", "--batch-size", "8", "--workers", "0", "--rungs", "+on-device",
                                      "--json", str(tmp_path / "benchmark.json")])
    benchmark_epoch.main()
    results = json.loads((tmp_path / "benchmark.json").read_text())
    assert sizes == [40, 24]
    assert results["rungs"]["+on-device"]["ratio_to_classic"] == 4.0
    assert results["data_only_classic_images_per_s"] == 18.0 and results["data_only_+eval-1024_images_per_s"] == 72.0
    assert results["data_only_ratio"] == 4.0
    assert torch.backends.cudnn.benchmark is True  # as the notebooks: off, cuDNN's slower default convolutions


# --- review 6: the GPU's branches, stood in for on this CPU-only machine --------------------------------------------


def test_the_clock_waits_for_the_named_gpu_and_for_nothing_on_a_cpu(monkeypatch):
    """GPU work is queued: without waiting for it, a rung would be timed by how fast Python queues (planted: no
    synchronization passed every CPU test)."""
    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(device))
    benchmark_epoch.synchronize(torch.device("cuda", 1))
    benchmark_epoch.synchronize(CPU)
    assert waited == [torch.device("cuda", 1)]


def test_a_rung_in_float16_scales_its_gradients_as_the_notebooks_do(monkeypatch):
    """On a T4 the mixed rungs are float16, which the notebooks train with the gradient scaler (planted: the scaler
    made without the rung's precision passed every CPU test). A T4's precision is stood in for."""
    scalers, make_grad_scaler = [], benchmark_epoch.make_grad_scaler
    monkeypatch.setattr(benchmark_epoch, "autocast_dtype", lambda device, use_amp=None: torch.float16)
    monkeypatch.setattr(benchmark_epoch, "make_grad_scaler",
                        lambda device, amp_dtype: scalers.append(make_grad_scaler(device, amp_dtype)) or scalers[-1])
    for rung in ("+mixed", "+channels-last"):
        model = TinyNet()
        run_epoch(model, torch.optim.SGD(model.parameters(), lr=0.01), batches(2), batches(1), CPU, RUNG[rung], 2)
    assert [scaler.is_enabled() for scaler in scalers] == [True, False]


def test_the_evaluation_pass_counts_on_the_device_without_reading_it(host_reads):
    """The benchmark's evaluation, like the notebooks', reads its count once, after the pass (planted: a read per
    batch passed every CPU test)."""
    correct = benchmark_epoch.count_correct(TinyNet(), batches(4), CPU, RUNG["+no-sync"], None)
    assert host_reads == [] and isinstance(correct, torch.Tensor)


def test_a_rung_on_a_gpu_warms_up_for_a_whole_epoch_and_reports_its_own_peak_memory(monkeypatch):
    """cuDNN tries its algorithms for every new shape, evaluation's too: the warm-up is a whole epoch; the peak memory
    is the rung's own, counted from a reset (planted: a one-batch warm-up on the GPU, or no reset, so that every rung
    reported the largest peak before it: both passed every CPU test). The GPU's memory counters are stood in for."""
    calls, gpu = [], torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append(("reset", device)))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: calls.append(("peak", device)) or 2**31)
    monkeypatch.setattr(benchmark_epoch, "build_model", lambda VGG16, device, rung, deterministic=False: (TinyNet(),
                                                                                                          None))
    loaders = build_loaders(random_cifar10(40), RUNG["+on-device"], CPU, 8, 0, NOTEBOOK)
    monkeypatch.setattr(benchmark_epoch, "build_loaders", lambda *args: loaders)
    monkeypatch.setattr(benchmark_epoch, "run_epoch",
                        lambda *args, max_batches=None: calls.append(("epoch", max_batches)) or 1.0)
    args = SimpleNamespace(batch_size=8, workers=0, repeats=2, flops_per_image={
        "train_conv": 1.0, "train_linear": 1.0, "eval_conv": 1.0, "eval_linear": 1.0})
    result = time_rung(TinyNet, None, RUNG["+on-device"], gpu, args, NOTEBOOK)
    assert calls == ["empty_cache", ("reset", gpu), ("epoch", None), ("epoch", None), ("epoch", None), ("peak", gpu)]
    assert result["peak_gpu_gib"] == 2.0


def test_the_script_names_the_gpu_it_was_given(tmp_path, monkeypatch):
    """--device cuda:1 prints and records GPU 1's name, not GPU 0's (planted: get_device_name() without the device)."""
    names = {0: "GPU zero", 1: "GPU one"}
    monkeypatch.setattr(torch.cuda, "get_device_name",
                        lambda device=None: names[0 if device is None else torch.device(device).index or 0])
    monkeypatch.setattr(benchmark_epoch, "matrix_flops_per_image", lambda VGG16, image_size: STAND_IN_FLOPS)
    monkeypatch.setattr(benchmark_epoch, "time_rung", lambda *args: {
        "seconds": 1.0, "images_per_s": 1.0, "tflop_per_s": 1.0, "peak_gpu_gib": 1.0})
    monkeypatch.setattr(benchmark_epoch, "build_loaders", lambda *args: (None, None))
    monkeypatch.setattr(benchmark_epoch, "time_data_only", lambda *args: (1.0, 36))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)  # restored afterwards; the script turns it on
    monkeypatch.setattr(sys, "argv", ["benchmark_epoch.py", "--device", "cuda:1", "--epoch-images", "40",
                                      "--data-images", "24", "--rungs", "classic", "--json", str(tmp_path / "b.json")])
    benchmark_epoch.main()
    assert json.loads((tmp_path / "b.json").read_text())["device"] == "GPU one"


def test_the_profile_records_the_gpus_kernels_on_a_gpu(monkeypatch):
    """On CUDA the profiler records CUDA activity and sorts by it: the device's times are what the profile reports.

    Planted: the CPU's activity alone, and the table sorted by CPU time on a GPU; both caught.
    """
    from torch.profiler import ProfilerActivity

    recorded = {}

    class RecordingProfile:
        def __init__(self, activities):
            recorded["activities"] = activities

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def key_averages(self):
            return SimpleNamespace(table=lambda sort_by, **kwargs: recorded.setdefault("sort_by", sort_by) and "")

    monkeypatch.setattr(torch.profiler, "profile", RecordingProfile)
    monkeypatch.setattr(benchmark_epoch, "build_model", lambda *args, **kwargs: (TinyNet(), None))
    monkeypatch.setattr(benchmark_epoch, "build_loaders", lambda *args: ([1, 2], [(torch.zeros(4, 3, 8, 8), None)] * 2))
    monkeypatch.setattr(benchmark_epoch, "run_epoch", lambda *args, **kwargs: 0.0)
    monkeypatch.setattr(benchmark_epoch, "count_correct", lambda *args: None)
    monkeypatch.setattr(benchmark_epoch, "autocast_dtype", lambda device, use_amp=None: torch.bfloat16)
    monkeypatch.setattr(benchmark_epoch, "synchronize", lambda device: None)
    monkeypatch.setattr(benchmark_epoch, "time_by_group",
                        lambda events, on_cuda: recorded.setdefault("on_cuda", on_cuda) and {"convolutions": 0.1})
    args = SimpleNamespace(batch_size=4, workers=0, flops_per_image=STAND_IN_FLOPS)
    profile_rung(TinyNet, None, RUNG["+no-sync"], torch.device("cuda"), args, NOTEBOOK, steps=2)
    assert ProfilerActivity.CUDA in recorded["activities"] and ProfilerActivity.CPU in recorded["activities"]
    assert recorded["sort_by"] == "self_cuda_time_total" and recorded["on_cuda"] is True
