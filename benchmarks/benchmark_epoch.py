"""Time one training epoch of the lecture's setup against the fast path, side by side, on this machine.

    python benchmarks/benchmark_epoch.py                 # full CIFAR-10-sized epochs on CUDA
    python benchmarks/benchmark_epoch.py --device cpu    # a subset on a CPU (says so), a few minutes

An "epoch" is what the notebook does each epoch: a training pass over the 45,000
training images, a second pass over them for the training accuracy, and a pass over
the 5,000 validation images.

- classic: the lecture's setup: DataLoader with per-image PIL transforms, 2 workers, float32.
- fast:    the notebooks' default on CUDA: uint8 images on the device, the same transforms
           applied per batch there, mixed precision and channels-last.

It also times each data path alone (no model). The data are synthetic uint8 images of
CIFAR-10's size and shape, so no download is needed; the model and the transforms are
taken from vgg16-cifar10.ipynb itself. The last line is the full-epoch speed-up.

Options for finding out where the fast path's time goes (see --help): --deterministic
times what DETERMINISTIC = True costs, --compile times the fast path with the model
wrapped in torch.compile (not used by the notebooks), and --profile prints the GPU
kernels that take the most time in a few training steps and evaluation batches.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.notebook_code import cells_defining  # noqa: E402
from helper_dataset import ImageArrays, make_loader, split_train_valid  # noqa: E402
from helper_evaluation import (  # noqa: E402
    autocast_dtype,
    compute_accuracy,
    make_pooling_deterministic,
    set_deterministic,
)
from helper_train import make_grad_scaler, prepare_model, training_step  # noqa: E402


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_cifar10(num_images: int, seed: int = 0) -> ImageArrays:
    """uint8 images (N, 32, 32, 3) and labels with CIFAR-10's shapes; never zeros, which can time faster."""
    rng = np.random.default_rng(seed)
    return ImageArrays(rng.integers(0, 256, size=(num_images, 32, 32, 3), dtype=np.uint8),
                       rng.integers(0, 10, size=num_images).astype(np.int64))


def build_loaders(data, fast, device, batch_size, workers, notebook):
    """The train and validation loaders of one path, built exactly as the notebook builds them."""
    namespace = cells_defining(notebook, "train_transforms = transforms.Compose(")
    train, valid = split_train_valid(data, 0.1)
    options = {"batch_size": batch_size, "num_workers": workers, "device": device if fast else None}
    return (make_loader(train, namespace["train_transforms"], shuffle=True, drop_last=True, **options),
            make_loader(valid, namespace["test_transforms"], shuffle=False, drop_last=False, **options))


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


def time_epoch(model, optimizer, train_loader, valid_loader, device, use_amp, warmup_batches=0) -> float:
    """Seconds for one notebook epoch: train pass + train-accuracy pass + validation pass.

    With ``warmup_batches`` it only runs that many training steps (untimed preparation:
    cuDNN's algorithm search, memory allocation) and returns 0. A compiled model needs
    a whole untimed epoch instead: torch.compile builds separate code for training,
    evaluation and the smaller last validation batch, each the first time it is seen.
    """
    amp_dtype = autocast_dtype(device, use_amp)
    scaler = make_grad_scaler(device, amp_dtype)
    model.train()
    synchronize(device)
    start = time.perf_counter()
    for batch_index, (features, targets) in enumerate(train_loader):
        if warmup_batches and batch_index == warmup_batches:
            synchronize(device)
            return 0.0
        training_step(model, features, targets, optimizer, device, amp_dtype, scaler).item()  # as train_model
    compute_accuracy(model, train_loader, device, use_amp=use_amp)
    compute_accuracy(model, valid_loader, device, use_amp=use_amp)
    synchronize(device)
    return time.perf_counter() - start


def print_profile(model, optimizer, train_loader, valid_loader, device, steps: int = 10) -> None:
    """Print the operations that took the most time in ``steps`` training steps and evaluation batches."""
    from torch.profiler import ProfilerActivity, profile

    on_cuda = device.type == "cuda"
    amp_dtype = autocast_dtype(device)
    scaler = make_grad_scaler(device, amp_dtype)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    train_batches = [batch for batch, _ in zip(train_loader, range(steps), strict=False)]
    valid_batches = [batch for batch, _ in zip(valid_loader, range(steps), strict=False)]
    model.train()
    with profile(activities=activities) as profiler:
        for features, targets in train_batches:
            training_step(model, features, targets, optimizer, device, amp_dtype, scaler).item()
        compute_accuracy(model, valid_batches, device)
        synchronize(device)
    sort_by = "self_cuda_time_total" if on_cuda else "self_cpu_time_total"
    print(f"profile of {len(train_batches)} training steps and {len(valid_batches)} evaluation batches "
          f"(fast path, data preparation not included), sorted by {sort_by}:")
    print(profiler.key_averages().table(sort_by=sort_by, row_limit=20, max_name_column_width=60))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epoch-images", type=int, default=None,
                        help="images in the data set for the model epochs (default: 50,000 on CUDA, 640 on CPU)")
    parser.add_argument("--data-images", type=int, default=None,
                        help="images for the data-path-only timing (default: 50,000 on CUDA, 5,000 on CPU)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the classic path (lecture: 2)")
    parser.add_argument("--repeats", type=int, default=None, help="timed fast epochs (median; default 3 CUDA, 1 CPU)")
    parser.add_argument("--deterministic", action="store_true",
                        help="also time the fast path with set_deterministic() (what DETERMINISTIC = True costs)")
    parser.add_argument("--compile", action="store_true",
                        help="also time the fast path with torch.compile(model) (after one untimed epoch)")
    parser.add_argument("--profile", action="store_true",
                        help="also print the most expensive operations of the fast path (torch.profiler)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    args = parser.parse_args()

    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    epoch_images = args.epoch_images or (50_000 if on_cuda else 640)
    data_images = args.data_images or (50_000 if on_cuda else 5_000)
    repeats = args.repeats or (3 if on_cuda else 1)
    notebook = ROOT / "vgg16-cifar10.ipynb"
    VGG16 = cells_defining(notebook, "class VGG16(")["VGG16"]
    if on_cuda:
        torch.backends.cudnn.benchmark = True

    name = torch.cuda.get_device_name(device) if on_cuda else f"CPU ({platform.processor() or platform.machine()}, "\
        f"{torch.get_num_threads()} threads)"
    print(f"device: {name} | torch {torch.__version__} | batch size {args.batch_size} | classic workers {args.workers}")
    print(f"data: synthetic uint8 32x32 RGB; data-only timing on {data_images:,} images, model epochs on "
          f"{epoch_images:,} images (90% train / 10% validation)"
          + ("" if epoch_images == 50_000 else " - a SUBSET of CIFAR-10's 50,000, to finish in minutes"))
    results = {"device": name, "torch": torch.__version__, "epoch_images": epoch_images, "data_images": data_images}

    data = random_cifar10(data_images)
    for fast in (False, True):
        label = "fast" if fast else "classic"
        loaders = build_loaders(data, fast, device, args.batch_size, args.workers, notebook)
        time_data_only(*loaders, device)  # warm-up: worker start, first transfers
        seconds, images = time_data_only(*loaders, device)
        results[f"data_only_{label}_images_per_s"] = images / seconds
        print(f"data path only, {label:7s}: {images / seconds:12,.0f} images/s  ({images:,} images in {seconds:.2f} s)")
        del loaders
    data_ratio = results["data_only_fast_images_per_s"] / results["data_only_classic_images_per_s"]
    results["data_only_ratio"] = data_ratio
    print(f"data path only, ratio fast/classic: {data_ratio:.1f}x")

    data = random_cifar10(epoch_images, seed=1)
    variants = (["classic", "fast"] + (["fast+compile"] if args.compile else [])
                + (["fast+deterministic"] if args.deterministic else []))
    for label in variants:
        fast = label != "classic"
        if label == "fast+deterministic":
            set_deterministic()  # last: it cannot be switched off again cleanly in this process
        torch.manual_seed(0)
        model = VGG16(num_classes=10)
        if label == "fast+deterministic":
            make_pooling_deterministic(model)
        model = prepare_model(model, device) if fast else model.to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        if label == "fast+compile":
            model = torch.compile(model)
        loaders = build_loaders(data, fast, device, args.batch_size, args.workers, notebook)
        use_amp = None if fast else False
        warmup_batches = 0 if label == "fast+compile" else 5 if on_cuda else 1
        time_epoch(model, optimizer, *loaders, device, use_amp, warmup_batches=warmup_batches)
        timings = [time_epoch(model, optimizer, *loaders, device, use_amp) for _ in range(repeats if fast else 1)]
        seconds = statistics.median(timings)
        num_valid = int(0.1 * epoch_images)  # as split_train_valid
        images = 2 * len(loaders[0]) * args.batch_size + num_valid
        results[f"epoch_{label}_seconds"] = seconds
        results[f"epoch_{label}_all_seconds"] = timings
        print(f"epoch, {label:18s}: {seconds:8.2f} s per epoch ({images / seconds:9,.0f} images/s)"
              + (f", median of {len(timings)}" if len(timings) > 1 else ""))
        if args.profile and label == "fast":
            print_profile(model, optimizer, *loaders, device)  # after the timing: cuDNN's search is done
        del model, optimizer, loaders
    ratio = results["epoch_classic_seconds"] / results["epoch_fast_seconds"]
    results["epoch_ratio"] = ratio
    if args.compile:
        gain = results["epoch_fast_seconds"] / results["epoch_fast+compile_seconds"]
        results["compile_speedup"] = gain
        print(f"torch.compile: {gain:.2f}x the fast path's speed "
              f"({results['epoch_classic_seconds'] / results['epoch_fast+compile_seconds']:.1f}x the classic path's)")
    if args.deterministic:
        cost = results["epoch_fast+deterministic_seconds"] / results["epoch_fast_seconds"]
        results["deterministic_slowdown"] = cost
        print(f"DETERMINISTIC = True costs {cost:.2f}x the fast path's epoch time")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(f"full epoch (train + train accuracy + validation), fast vs classic: {ratio:.1f}x faster")


if __name__ == "__main__":
    main()
