"""A training run in its own process, for the kill-and-resume test.

    python resume_worker.py CHECKPOINT_DIR OUTPUT [kill]

Trains TinyNet for 2 epochs on the smoke data with determinism on and the notebook's
default of two DataLoader worker processes, checkpointing into CHECKPOINT_DIR (resuming
from it if a checkpoint is there). The gradient scaler is switched on (as on a float16
GPU), so that its state must survive the resume too. With ``kill`` the process sends
itself SIGKILL in the middle of epoch 2, as a crashed machine or a killed Colab kernel
would. Otherwise it copies the final checkpoint to OUTPUT.
"""

import os
import shutil
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import TinyNet, lecture_test_transforms, lecture_train_transforms  # noqa: E402

import helper_train  # noqa: E402
from helper_dataset import get_dataloaders_cifar10  # noqa: E402
from helper_evaluation import set_all_seeds, set_deterministic  # noqa: E402
from helper_train import CHECKPOINT_FILE, train_model  # noqa: E402


class KillDuringSecondEpoch:
    """Wraps a loader; the 2nd epoch's 4th batch kills the process with SIGKILL."""

    def __init__(self, loader):
        self.loader, self.epochs = loader, 0

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):  # the wrapped loader's batch size, data and transforms: the same run
        return getattr(self.loader, name)

    def __iter__(self):
        self.epochs += 1
        for index, batch in enumerate(self.loader):
            if self.epochs == 3 and index == 3:  # iteration 1: epoch 1 train, 2: its accuracy pass, 3: epoch 2
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch


def main(checkpoint_dir, output, kill):
    set_deterministic()
    set_all_seeds(0)
    train_loader, valid_loader, test_loader = get_dataloaders_cifar10(
        32, 2, validation_fraction=0.1, train_transforms=lecture_train_transforms(),
        test_transforms=lecture_test_transforms(), smoke_test=True,
    )
    model = TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, mode="max", patience=0)
    helper_train.make_grad_scaler = lambda device, amp_dtype: torch.amp.GradScaler("cpu", enabled=True)
    if kill:
        train_loader = KillDuringSecondEpoch(train_loader)
    train_model(model, 2, train_loader, valid_loader, test_loader, optimizer, "cpu",
                scheduler=scheduler, checkpoint_dir=checkpoint_dir)
    shutil.copy(Path(checkpoint_dir) / CHECKPOINT_FILE, output)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], kill=len(sys.argv) > 3 and sys.argv[3] == "kill")
