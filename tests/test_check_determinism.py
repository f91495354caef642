"""benchmarks/check_determinism.py: two seeded runs with set_deterministic() must give identical losses.

The script runs on a GPU machine, where a session's minutes are scarce; here it runs on a CPU with a
tiny model in place of the notebook's VGG16 (its code and its exit status are what is checked).
"""

import itertools
import sys

import pytest
import torch
from conftest import TinyNet, lecture_train_transforms

from benchmarks import check_determinism


@pytest.fixture
def tiny_script(monkeypatch):
    """check_determinism.main on a CPU with TinyNet; the global deterministic mode and pooling swaps recorded."""
    calls = []
    monkeypatch.setattr(check_determinism, "cells_defining", lambda notebook, *names: {
        "VGG16": TinyNet, "train_transforms": lecture_train_transforms()})
    # set_deterministic() switches torch.use_deterministic_algorithms on for the whole process: recorded only
    monkeypatch.setattr(check_determinism, "set_deterministic", lambda: calls.append("set_deterministic"))
    make_pooling_deterministic = check_determinism.make_pooling_deterministic
    monkeypatch.setattr(check_determinism, "make_pooling_deterministic",
                        lambda model: calls.append("pooling") or make_pooling_deterministic(model))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    monkeypatch.setattr(sys, "argv", ["check_determinism.py", "--device", "cpu", "--steps", "2"])
    return calls


def test_seeded_deterministic_runs_are_reported_identical_and_exit_0(tiny_script, capsys):
    """Both pairs of runs are seeded alike (on a CPU even the default settings repeat); the two deterministic runs
    swap the pooling, after set_deterministic(); the plain-pooling probe in between does not."""
    assert check_determinism.main() == 0
    out = capsys.readouterr().out
    assert "default settings: 0 of 2 losses differ" in out
    assert "losses IDENTICAL over 2 steps" in out
    assert tiny_script == ["set_deterministic", "pooling", "pooling"]


def test_runs_whose_losses_differ_are_reported_and_exit_1(tiny_script, monkeypatch, capsys):
    """The exit status is the check: a model that is not the same run to run must fail it."""
    runs = itertools.count()

    class DriftingNet(TinyNet):
        def __init__(self, num_classes=10):
            super().__init__(num_classes)
            self.drift = next(runs)

        def forward(self, x):  # each run favours the last classes a little more (a constant shift would not count)
            logits = super().forward(x)
            return logits + self.drift * torch.linspace(0, 1, logits.shape[1])

    monkeypatch.setattr(check_determinism, "cells_defining", lambda notebook, *names: {
        "VGG16": DriftingNet, "train_transforms": lecture_train_transforms()})
    assert check_determinism.main() == 1
    assert "losses DIFFER over 2 steps" in capsys.readouterr().out
