"""What each speed trick buys: the lecture's setup, then the fast path with one trick added at a time.

    python benchmarks/benchmark_epoch.py                 # full CIFAR-10-sized epochs on CUDA
    python benchmarks/benchmark_epoch.py --device cpu    # a subset on a CPU (says so), a few minutes

An "epoch" is what the notebook does each epoch: a training pass over the 45,000
training images, a second pass over them for the training accuracy, and a pass over
the 5,000 validation images. The rungs of the ladder, each adding one trick to the last:

1. classic        the lecture's setup: DataLoader + per-image PIL transforms, 2 workers, float32
2. +on-device     uint8 images stored on the device, the same transforms applied per batch there
3. +channels-last the NHWC memory layout that the GPU's convolution kernels prefer
4. +mixed         bf16 autocast (float16 with gradient scaling on GPUs without bf16)
5. +no-sync       the losses stay on the device, read every 100 batches instead of every step
6. +eval-1024     validation batches of 1,024 images (no gradients are kept, so they fit)
7. +compile       torch.compile of the model (--compile; also mode="reduce-overhead", CUDA graphs, with --cudagraphs)

Each rung prints images/s, seconds per full epoch, the arithmetic rate it reaches
(TFLOP/s: the convolutions' and linear layers' multiply-adds of the epoch, counted by
``torch.utils.flop_counter``, over the epoch's seconds; compare it with what the card can do),
the peak GPU memory (``torch.cuda.max_memory_allocated``, which matters on a 16 GB T4) and
the speed-up over the classic path. Rung 5 is what the notebooks do on CUDA (evaluation keeps the training batch size;
rung 7 where COMPILE turns it on). Then it times the data paths alone (no model), and the per-epoch checkpoint of
the fast path, directly: the seconds the training thread spends in ``CheckpointWriter.save``
(waiting for the previous write, copying the state to CPU memory) against the epoch's
seconds, and how long the background write itself takes.

The data are synthetic uint8 images of CIFAR-10's size (never zeros, which can time
faster); the model and the transforms are taken from vgg16-cifar10.ipynb itself.

``--profile`` answers "what limits the epoch?": it profiles a few training steps and
evaluation batches of the fast path (and of the compiled model, with ``--compile``) and
prints how busy the device was, where its time went (convolutions, linear layers, ReLU,
pooling, the optimizer, ...) and the TFLOP/s inside the convolutions and linear layers.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.notebook_code import cells_defining  # noqa: E402
from helper_dataset import ImageArrays, make_loader, split_train_valid  # noqa: E402
from helper_evaluation import autocast_dtype, make_pooling_deterministic, set_deterministic  # noqa: E402
from helper_train import CheckpointWriter, make_checkpoint, make_grad_scaler  # noqa: E402


class Rung(NamedTuple):
    """One configuration of the ladder."""

    name: str
    on_device: bool = False
    channels_last: bool = False
    mixed: bool = False
    no_sync: bool = False
    eval_batch: int | None = None
    compile_mode: str | None = None


LADDER = [
    Rung("classic"),
    Rung("+on-device", on_device=True),
    Rung("+channels-last", on_device=True, channels_last=True),
    Rung("+mixed", on_device=True, channels_last=True, mixed=True),
    Rung("+no-sync", on_device=True, channels_last=True, mixed=True, no_sync=True),
    Rung("+eval-1024", on_device=True, channels_last=True, mixed=True, no_sync=True, eval_batch=1024),
]
COMPILED = Rung("+compile", True, True, True, True, 1024, "default")
CUDA_GRAPHS = Rung("+compile (CUDA graphs)", True, True, True, True, 1024, "reduce-overhead")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_cifar10(num_images: int, seed: int = 0) -> ImageArrays:
    """uint8 images (N, 32, 32, 3) and labels with CIFAR-10's shapes; never zeros, which can time faster."""
    rng = np.random.default_rng(seed)
    return ImageArrays(rng.integers(0, 256, size=(num_images, 32, 32, 3), dtype=np.uint8),
                       rng.integers(0, 10, size=num_images).astype(np.int64))


def build_loaders(data, rung: Rung, device, batch_size, workers, notebook):
    """The train and validation loaders of one rung, built as the notebook builds them."""
    namespace = cells_defining(notebook, "train_transforms = transforms.Compose(")
    train, valid = split_train_valid(data, 0.1)
    options = {"num_workers": workers, "device": device if rung.on_device else None}
    train_loader = make_loader(train, namespace["train_transforms"], batch_size, shuffle=True, drop_last=True,
                               **options)
    valid_loader = make_loader(valid, namespace["test_transforms"], rung.eval_batch or batch_size, shuffle=False,
                               drop_last=False, **options)
    if rung.on_device:  # the layout of the batches the loader hands out
        for loader in (train_loader, valid_loader):
            loader.memory_format = torch.channels_last if rung.channels_last else torch.contiguous_format
    return train_loader, valid_loader


def count_correct(model, loader, device, rung: Rung, amp_dtype) -> torch.Tensor:
    """The evaluation pass: correct predictions counted on the device, read once at the end."""
    memory_format = torch.channels_last if rung.channels_last else torch.contiguous_format
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with torch.inference_mode():
        for features, targets in loader:
            features = features.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                logits = model(features)
            correct += (logits.argmax(1) == targets.to(device, non_blocking=True)).sum()
    model.train()
    return correct


def run_epoch(model, optimizer, train_loader, valid_loader, device, rung: Rung, max_batches=None) -> float:
    """Seconds for one notebook epoch (train pass + train-accuracy pass + validation pass) of ``rung``."""
    amp_dtype = autocast_dtype(device, None) if rung.mixed else None
    scaler = make_grad_scaler(device, amp_dtype)
    memory_format = torch.channels_last if rung.channels_last else torch.contiguous_format
    model.train()
    synchronize(device)
    start = time.perf_counter()
    pending = []
    for batch_index, (features, targets) in enumerate(train_loader):
        if max_batches is not None and batch_index == max_batches:
            break
        features = features.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        targets = targets.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            loss = F.cross_entropy(model(features), targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if not rung.no_sync:
            loss.item()  # the lecture's loop: the CPU waits for the GPU after every step
        else:
            pending.append(loss.detach())
            if batch_index % 100 == 0:
                torch.stack(pending).tolist()
                pending.clear()
    if pending:
        torch.stack(pending).tolist()
    if max_batches is None:
        int(count_correct(model, train_loader, device, rung, amp_dtype))
        int(count_correct(model, valid_loader, device, rung, amp_dtype))
    synchronize(device)
    return time.perf_counter() - start


def build_model(VGG16, device, rung: Rung, deterministic=False):
    torch.manual_seed(0)
    model = VGG16(num_classes=10)
    if deterministic:
        make_pooling_deterministic(model)
    model = model.to(device, memory_format=torch.channels_last if rung.channels_last else torch.contiguous_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return model, optimizer


def matrix_flops_per_image(VGG16, image_size: int = 64) -> dict[str, float]:
    """Floating-point operations per image in the convolutions and linear layers (the rest is tiny).

    Keys: ``train_conv``, ``train_linear`` for a training step (forward and backward) and
    ``eval_conv``, ``eval_linear`` for an evaluation forward pass. Counted by
    ``torch.utils.flop_counter`` on a CPU batch of two and halved: the count grows linearly
    with the batch, and does not depend on the device or the precision.
    """
    from torch.utils.flop_counter import FlopCounterMode

    model, images = VGG16(num_classes=10), torch.zeros(2, 3, image_size, image_size)
    counts = {}
    for mode in ("train", "eval"):
        model.train(mode == "train")
        with FlopCounterMode(display=False) as counter, torch.set_grad_enabled(mode == "train"):
            logits = model(images)
            if mode == "train":
                F.cross_entropy(logits, torch.zeros(2, dtype=torch.long)).backward()
        for operation, flops in counter.get_flop_counts()["Global"].items():
            kind = "conv" if "convolution" in str(operation) else "linear"
            counts[f"{mode}_{kind}"] = counts.get(f"{mode}_{kind}", 0) + flops / 2
    return counts


def epoch_flops(flops_per_image: dict[str, float], trained_images: int, evaluated_images: int) -> float:
    """The matrix FLOPs of one notebook epoch: training steps, plus the evaluation passes."""
    train = flops_per_image["train_conv"] + flops_per_image["train_linear"]
    evaluate = flops_per_image["eval_conv"] + flops_per_image["eval_linear"]
    return trained_images * train + evaluated_images * evaluate


def time_rung(VGG16, data, rung: Rung, device, args, notebook, deterministic=False) -> dict:
    """Warm up, then time ``rung`` (median of the repeats); for compiled rungs also the compile time."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    model, optimizer = build_model(VGG16, device, rung, deterministic)
    loaders = build_loaders(data, rung, device, args.batch_size, args.workers, notebook)
    forward = torch.compile(model, mode=rung.compile_mode) if rung.compile_mode else model
    result = {}
    if rung.compile_mode:  # the first epoch compiles training, evaluation and the last smaller batch
        first = run_epoch(forward, optimizer, *loaders, device, rung)
        result["first_epoch_seconds"] = first
    elif device.type == "cuda":  # a whole epoch: cuDNN times its algorithms for every new shape (eval batches too)
        run_epoch(forward, optimizer, *loaders, device, rung)
    else:
        run_epoch(forward, optimizer, *loaders, device, rung, max_batches=1)
    repeats = 1 if rung.name == "classic" else args.repeats
    timings = [run_epoch(forward, optimizer, *loaders, device, rung) for _ in range(repeats)]
    seconds = statistics.median(timings)
    if rung.compile_mode:
        result["compile_seconds"] = result["first_epoch_seconds"] - seconds
    trained = len(loaders[0]) * args.batch_size  # drop_last: full batches only
    validated = len(loaders[1].dataset if hasattr(loaders[1], "dataset") else loaders[1].labels)
    images = 2 * trained + validated
    flops = epoch_flops(args.flops_per_image, trained, trained + validated)
    result.update(seconds=seconds, all_seconds=timings, images_per_s=images / seconds,
                  tflop_per_epoch=flops / 1e12, tflop_per_s=flops / 1e12 / seconds,
                  peak_gpu_gib=torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None)
    del model, optimizer, loaders, forward
    return result


def time_data_only(train_loader, valid_loader, device) -> tuple[float, int]:
    """Seconds and images for an epoch's worth of batches (train, train again, valid) moved to the device."""
    synchronize(device)
    start, images = time.perf_counter(), 0
    for loader in (train_loader, train_loader, valid_loader):
        for features, _ in loader:
            features = features.to(device, non_blocking=True)
            images += len(features)
    synchronize(device)
    return time.perf_counter() - start, images


def time_checkpoints(VGG16, data, device, args, notebook, epochs: int = 3) -> dict:
    """The per-epoch checkpoint's cost on the training thread, measured directly, plus the write's own duration.

    Every epoch is saved as if it were the best (checkpoint + best weights, about 600 MB):
    the worst case. The training thread pays for ``CheckpointWriter.save`` (waiting for the
    previous write, copying the state to pinned CPU memory); the disk work happens in the
    background thread while the next epoch trains.
    """
    rung = LADDER[-1]
    model, optimizer = build_model(VGG16, device, rung)
    loaders = build_loaders(data, rung, device, args.batch_size, args.workers, notebook)
    scaler = make_grad_scaler(device, autocast_dtype(device, None))
    run_epoch(model, optimizer, *loaders, device, rung, max_batches=5)
    epoch_seconds, save_seconds, write_seconds = [], [], []
    with tempfile.TemporaryDirectory(dir=args.checkpoint_dir) as folder:
        writer = CheckpointWriter(Path(folder), device)
        for epoch in range(epochs):
            epoch_seconds.append(run_epoch(model, optimizer, *loaders, device, rung))
            start = time.perf_counter()
            writer.save(make_checkpoint(model, optimizer, None, scaler, epoch + 1, {"valid_acc": [0.0]}, {}),
                        is_best=True)
            save_seconds.append(time.perf_counter() - start)
            writer.thread.join()  # only to time the write itself; training would go on meanwhile
            write_seconds.append(time.perf_counter() - start)
        size = sum(p.stat().st_size for p in Path(folder).iterdir()) / 1e6
    return {"epoch_seconds": epoch_seconds, "save_seconds": save_seconds, "write_seconds": write_seconds,
            "megabytes_written": size,
            "save_percent_of_epoch": 100 * statistics.median(save_seconds) / statistics.median(epoch_seconds)}


OPERATION_GROUPS = (  # (group, parts of the profiled operations' names); the first match wins
    ("fused by torch.compile", ("triton", "compiled")),
    ("convolutions", ("conv",)),
    ("linear layers", ("addmm", "aten::mm", "matmul", "linear")),
    ("ReLU", ("relu", "clamp_min", "threshold_backward")),
    ("max pooling", ("max_pool",)),
    ("adaptive pooling", ("adaptive",)),
    ("dropout", ("dropout", "bernoulli")),
    ("loss", ("cross_entropy", "log_softmax", "nll_loss")),
    ("optimizer (SGD)", ("foreach", "sgd")),
    ("copies (layout, dtype)", ("copy_", "_to_copy", "clone", "contiguous")),
    # cuDNN's convolution leaves out the bias: torch adds it in a kernel of its own (aten::add_, one per
    # convolution and batch: 18% of the device's time on the H100), and each bias's gradient is a sum
    ("bias additions and sums (mostly the biases and their gradients)", ("aten::add_", "aten::sum")),
)


def group_of(operation: str) -> str:
    """The group of a profiled operation (``aten::cudnn_convolution`` -> "convolutions")."""
    name = operation.lower()
    for group, parts in OPERATION_GROUPS:
        if any(part in name for part in parts):
            return group
    return "everything else (data transforms, accuracy counting, ...)"


def time_by_group(events, on_cuda: bool) -> dict[str, float]:
    """Seconds of the profiled device's time per group of operations, largest first.

    Each operation's *self* time counts once, in its own group: on CUDA the kernels it launched
    itself, on a CPU its own computing time. Kernels that no operation claims (the kernel rows
    hold the same time again, so they are not added twice) form a group of their own.
    """
    from torch.autograd import DeviceType

    def seconds(event) -> float:
        return (event.self_device_time_total if on_cuda else event.self_cpu_time_total) / 1e6

    # record_function ranges (Optimizer.step, torch.compile's "Call CompiledFxGraph") are also recorded as
    # device rows; they are no kernels, and their time is the kernels' again (torch's own table skips them too)
    events = [event for event in events if not getattr(event, "is_user_annotation", False)]
    totals: dict[str, float] = {}
    for event in events:
        if event.device_type == DeviceType.CPU:
            totals[group_of(event.key)] = totals.get(group_of(event.key), 0.0) + seconds(event)
    if on_cuda:
        kernels = sum(seconds(event) for event in events if event.device_type != DeviceType.CPU)
        if kernels > sum(totals.values()) * 1.001:
            totals["kernels of no operation"] = kernels - sum(totals.values())
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def profile_rung(VGG16, data, rung: Rung, device, args, notebook, steps: int = 10) -> dict:
    """Profile ``steps`` training steps and evaluation batches of ``rung``; print and return what limits it."""
    from torch.profiler import ProfilerActivity, profile

    model, optimizer = build_model(VGG16, device, rung)
    loaders = build_loaders(data, rung, device, args.batch_size, args.workers, notebook)
    forward = torch.compile(model, mode=rung.compile_mode) if rung.compile_mode else model
    amp_dtype = autocast_dtype(device, None) if rung.mixed else None
    valid_batches = [batch for batch, _ in zip(loaders[1], range(steps), strict=False)]
    for _ in range(2):  # warm-up: cuDNN's algorithm search, compilation
        run_epoch(forward, optimizer, *loaders, device, rung, max_batches=5)
        count_correct(forward, valid_batches, device, rung, amp_dtype)
    on_cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    with profile(activities=activities) as profiler:
        synchronize(device)
        start = time.perf_counter()
        run_epoch(forward, optimizer, *loaders, device, rung, max_batches=steps)
        count_correct(forward, valid_batches, device, rung, amp_dtype)
        synchronize(device)
        wall = time.perf_counter() - start
    events = profiler.key_averages()
    sort_by = "self_cuda_time_total" if on_cuda else "self_cpu_time_total"
    print(f"\nprofile of {min(steps, len(loaders[0]))} training steps and {len(valid_batches)} evaluation batches "
          f"({rung.name}):")
    print(events.table(sort_by=sort_by, row_limit=15, max_name_column_width=60))

    groups = time_by_group(events, on_cuda)
    busy = sum(groups.values())
    trained = min(steps, len(loaders[0])) * args.batch_size
    evaluated = sum(len(features) for features, _ in valid_batches)
    flops = {kind: trained * args.flops_per_image[f"train_{kind}"] + evaluated * args.flops_per_image[f"eval_{kind}"]
             for kind in ("conv", "linear")}
    where = "device" if on_cuda else "CPU"
    print(f"{rung.name}: the {where} computed for {busy:.3f} s of the {wall:.3f} s profiled ({100 * busy / wall:.0f}%"
          f"{'; under 100% means the device waited for the CPU' if on_cuda else ''}); its time by operation:")
    for group, seconds in groups.items():
        rate = {"convolutions": flops["conv"], "linear layers": flops["linear"]}.get(group)
        rate_text = f"  {rate / seconds / 1e12:8.2f} TFLOP/s" if rate and seconds > 0 else ""
        print(f"  {group:58s} {seconds:8.4f} s {100 * seconds / busy:5.1f}%{rate_text}")
    return {"rung": rung.name, "wall_seconds": wall, "busy_seconds": busy, "seconds_by_group": groups,
            "flops": flops}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epoch-images", type=int, default=None,
                        help="images in the data set for the model epochs (default: 50,000 on CUDA, 640 on CPU)")
    parser.add_argument("--data-images", type=int, default=None,
                        help="images for the data-path-only timing (default: 50,000 on CUDA, 5,000 on CPU)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the classic path (lecture: 2)")
    parser.add_argument("--repeats", type=int, default=None, help="timed epochs per rung (median; 3 CUDA, 1 CPU)")
    parser.add_argument("--rungs", default="all", help="'all', or the last rung to run, e.g. '+mixed'")
    parser.add_argument("--compile", action="store_true", help="add the torch.compile rung")
    parser.add_argument("--cudagraphs", action="store_true", help="add torch.compile(mode='reduce-overhead')")
    parser.add_argument("--deterministic", action="store_true",
                        help="also time the notebook's fast path with DETERMINISTIC = True")
    parser.add_argument("--checkpoints", action="store_true", help="time the per-epoch checkpoint directly")
    parser.add_argument("--checkpoint-dir", default=None, help="where --checkpoints writes (default: the temp dir)")
    parser.add_argument("--profile", action="store_true", help="print the most expensive operations")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    args = parser.parse_args()

    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    epoch_images = args.epoch_images or (50_000 if on_cuda else 640)
    data_images = args.data_images or (50_000 if on_cuda else 5_000)
    args.repeats = args.repeats or (3 if on_cuda else 1)
    notebook = ROOT / "vgg16-cifar10.ipynb"
    namespace = cells_defining(notebook, "class VGG16(")
    VGG16 = namespace["VGG16"]
    args.flops_per_image = matrix_flops_per_image(VGG16, namespace["IMAGE_SIZE"])
    torch.backends.cudnn.benchmark = True  # as the notebooks (does nothing on a CPU)

    name = torch.cuda.get_device_name(device) if on_cuda else f"CPU ({platform.processor() or platform.machine()}, "\
        f"{torch.get_num_threads()} threads)"
    print(f"device: {name} | torch {torch.__version__} | batch size {args.batch_size} | classic workers {args.workers}")
    print(f"data: synthetic uint8 32x32 RGB; model epochs on {epoch_images:,} images (90% train / 10% validation)"
          + ("" if epoch_images == 50_000 else " - a SUBSET of CIFAR-10's 50,000, to finish in minutes"))
    results = {"device": name, "torch": torch.__version__, "epoch_images": epoch_images,
               "flops_per_image": args.flops_per_image, "rungs": {}}

    def save():
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))

    data = random_cifar10(epoch_images, seed=1)
    ladder = LADDER if args.rungs == "all" else LADDER[: [r.name for r in LADDER].index(args.rungs) + 1]

    def time_and_print(rung):
        with contextlib.redirect_stdout(io.StringIO()):
            timing = time_rung(VGG16, data, rung, device, args, notebook)
        results["rungs"][rung.name] = timing
        ratio = results["rungs"]["classic"]["seconds"] / timing["seconds"]
        timing["ratio_to_classic"] = ratio
        memory = f"{timing['peak_gpu_gib']:.1f} GiB" if timing["peak_gpu_gib"] is not None else "-"
        extra = f"  (compiling took {timing['compile_seconds']:.0f} s)" if "compile_seconds" in timing else ""
        print(f"{rung.name:24s} {timing['images_per_s']:10,.0f} {timing['seconds']:8.2f} "
              f"{timing['tflop_per_s']:8.1f} {memory:>9s} {ratio:9.1f}x{extra}", flush=True)
        save()

    print(f"{'rung':24s} {'images/s':>10s} {'s/epoch':>8s} {'TFLOP/s':>8s} {'peak GPU':>9s} {'vs classic':>10s}")
    print(f"(an epoch's convolutions and linear layers: {epoch_flops(args.flops_per_image, 1, 0) / 1e9:.2f} GFLOP per "
          f"trained image, {epoch_flops(args.flops_per_image, 0, 1) / 1e9:.2f} per evaluated one)")
    for rung in ladder:
        time_and_print(rung)

    if args.checkpoints:
        cost = time_checkpoints(VGG16, data, device, args, notebook)
        results["checkpoints"] = cost
        print(f"checkpoint every epoch ({cost['megabytes_written']:.0f} MB as checkpoint + best weights): the "
              f"training thread spends {statistics.median(cost['save_seconds']):.3f} s in save() per "
              f"{statistics.median(cost['epoch_seconds']):.2f} s epoch = {cost['save_percent_of_epoch']:.1f}%; "
              f"the background write itself takes {statistics.median(cost['write_seconds']):.2f} s")
        save()

    data_only = random_cifar10(data_images)
    for rung in (LADDER[0], LADDER[-1]):
        loaders = build_loaders(data_only, rung, device, args.batch_size, args.workers, notebook)
        time_data_only(*loaders, device)  # warm-up: worker start, first transfers
        seconds, images = time_data_only(*loaders, device)
        results[f"data_only_{rung.name}_images_per_s"] = images / seconds
        print(f"data path alone, {rung.name:11s}: {images / seconds:12,.0f} images/s")
        del loaders
    results["data_only_ratio"] = (results[f"data_only_{LADDER[-1].name}_images_per_s"]
                                  / results["data_only_classic_images_per_s"])
    print(f"data path alone, ratio on-device/classic: {results['data_only_ratio']:.1f}x")
    save()

    for rung in [COMPILED] * args.compile + [CUDA_GRAPHS] * args.cudagraphs:  # last: compiling takes minutes
        time_and_print(rung)

    if args.deterministic:
        set_deterministic()  # last: it cannot be switched off again cleanly in this process
        timing = time_rung(VGG16, data, LADDER[-1], device, args, notebook, deterministic=True)
        results["deterministic"] = timing
        print(f"DETERMINISTIC = True: {timing['seconds']:.2f} s per epoch, "
              f"{timing['seconds'] / results['rungs'][LADDER[-1].name]['seconds']:.2f}x the fast path's time")
        save()

    if args.profile:  # what limits the epoch: the fast path, and the compiled model if it was timed
        for rung in [LADDER[-1]] + [COMPILED] * args.compile:
            results.setdefault("profiles", []).append(profile_rung(VGG16, data, rung, device, args, notebook))
            save()


if __name__ == "__main__":
    main()
