"""Check that set_deterministic() makes two training runs identical on this machine (CPU or CUDA).

    python benchmarks/check_determinism.py [--steps 20]

1. Shows the obstacle: in deterministic mode, the CUDA backward of AdaptiveAvgPool2d is refused.
2. Trains the notebook's VGG16 twice from the same seed with the default (fast) settings
   and reports whether the losses differ (on a GPU they usually do, in the last digits).
3. Does the same with set_deterministic() and make_pooling_deterministic(): the losses
   must be identical, bit for bit. Exits with 1 if they are not.
The model and transforms come from vgg16-cifar10.ipynb; the data are synthetic.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.benchmark_epoch import random_cifar10  # noqa: E402
from benchmarks.notebook_code import cells_defining  # noqa: E402
from helper_dataset import make_loader  # noqa: E402
from helper_evaluation import (  # noqa: E402
    autocast_dtype,
    device_policy,
    make_pooling_deterministic,
    set_all_seeds,
    set_deterministic,
)
from helper_train import make_grad_scaler, prepare_model, training_step  # noqa: E402


def losses_of_one_run(namespace, device, steps, deterministic_pooling) -> list[float]:
    set_all_seeds(123)
    model = namespace["VGG16"](num_classes=10)
    if deterministic_pooling:
        make_pooling_deterministic(model)
    model = prepare_model(model, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    data = random_cifar10(64 * steps, seed=3)
    loader = make_loader(data, namespace["train_transforms"], 64, shuffle=True, drop_last=True, num_workers=0,
                         device=device)
    policy = device_policy(device)
    scaler = make_grad_scaler(device, policy.amp_dtype)
    return [training_step(model, x, y, optimizer, device, policy, scaler).item() for x, y in loader]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    device = torch.device(args.device)
    namespace = cells_defining(ROOT / "vgg16-cifar10.ipynb", "class VGG16(", "train_transforms = transforms.Compose(")
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}, "
          f"torch {torch.__version__}, {args.steps} steps of batch 64, mixed precision: {autocast_dtype(device)}")

    torch.backends.cudnn.benchmark = True
    first = losses_of_one_run(namespace, device, args.steps, deterministic_pooling=False)
    second = losses_of_one_run(namespace, device, args.steps, deterministic_pooling=False)
    differing = sum(a != b for a, b in zip(first, second, strict=True))
    print(f"default settings: {differing} of {len(first)} losses differ between two seeded runs "
          f"(largest difference {max(abs(a - b) for a, b in zip(first, second, strict=True)):.3g})")

    set_deterministic()
    try:
        losses_of_one_run(namespace, device, 1, deterministic_pooling=False)
        print("deterministic mode, plain AdaptiveAvgPool2d: ran (no error on this device)")
    except RuntimeError as error:
        print(f"deterministic mode, plain AdaptiveAvgPool2d: refused ({str(error).splitlines()[0][:150]})")

    first = losses_of_one_run(namespace, device, args.steps, deterministic_pooling=True)
    second = losses_of_one_run(namespace, device, args.steps, deterministic_pooling=True)
    identical = first == second
    print(f"set_deterministic() + make_pooling_deterministic(): losses "
          f"{'IDENTICAL' if identical else 'DIFFER'} over {len(first)} steps (last loss {first[-1]:.6f})")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
