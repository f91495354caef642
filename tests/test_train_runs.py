"""A run has an identity: settings-aware checkpoints, one folder per configuration, divergence caught in time."""

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import InterruptAt, TinyNet, lecture_test_transforms, lecture_train_transforms
from torchvision import transforms

import helper_train
from helper_dataset import get_dataloaders_cifar10
from helper_evaluation import set_all_seeds
from helper_train import (
    BEST_MODEL_FILE,
    CHECKPOINT_FILE,
    HISTORY_FILE,
    LECTURE_SETTINGS,
    RunMismatchError,
    TrainingDivergedError,
    describe_run,
    run_name,
    train_model,
)


class TinyNetWithDropout2d(TinyNet):
    """TinyNet with the notebook's Dropout2d switch: Dropout2d(p) or Identity, both without parameters."""

    def __init__(self, dropout2d=0.0):
        super().__init__()
        self.feature_dropout = torch.nn.Dropout2d(dropout2d) if dropout2d > 0 else torch.nn.Identity()

    def forward(self, x):
        return self.classifier(torch.flatten(self.features[2](self.feature_dropout(self.features[1](
            self.features[0](x)))), 1))


def loaders(batch_size=32, train_transforms=None):
    return get_dataloaders_cifar10(
        batch_size, validation_fraction=0.1, train_transforms=train_transforms or lecture_train_transforms(),
        test_transforms=lecture_test_transforms(), smoke_test=True,
    )

CPU = torch.device("cpu")  # what the settings cell makes of DEVICE = "cpu": with run_settings, text is refused


def setup(lr=0.05, dropout2d=0.0, batch_size=32, seed=0, optimizer="sgd", train_transforms=None):
    """What the notebook builds before training: seeded model, optimizer, scheduler, loaders, settings."""
    set_all_seeds(seed)
    model = TinyNetWithDropout2d(dropout2d)
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, mode="max")
    settings = {"seed": seed, "batch_size": batch_size, "learning_rate": lr, "dropout2d": dropout2d}
    return model, opt, scheduler, loaders(batch_size, train_transforms), settings


def notebook_run(results_dir: Path, epochs=1, **kwargs):
    """The notebook's flow: name the run from its identity, train it in RESULTS_DIR/<run name>/."""
    model, optimizer, scheduler, data, settings = setup(**kwargs)
    identity = describe_run(model, optimizer, scheduler, data[0], data[1], device="cpu", settings=settings)
    folder = results_dir / run_name(identity, settings, defaults={**LECTURE_SETTINGS, "seed": 0, "batch_size": 32,
                                                                  "learning_rate": 0.05})
    history = train_model(model, epochs, *data, optimizer, CPU, logging_interval=5, scheduler=scheduler,
                          checkpoint_dir=folder, run_settings=settings)
    return folder, model, history


def folder_bytes(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --- identity ----------------------------------------------------------------------------------


def identity_of(**kwargs):
    model, optimizer, scheduler, data, settings = setup(**kwargs)
    return describe_run(model, optimizer, scheduler, data[0], data[1], device="cpu", settings=settings)


@pytest.mark.parametrize("change", [
    {"dropout2d": 0.2}, {"lr": 0.01}, {"batch_size": 16}, {"seed": 1}, {"optimizer": "adam"},
    {"train_transforms": transforms.Compose([transforms.Resize((70, 70)), transforms.CenterCrop((64, 64)),
                                             transforms.ToTensor()])},
])
def test_each_setting_that_defines_a_run_changes_its_identity_and_name(change):
    base, changed = identity_of(), identity_of(**change)
    assert base != changed
    assert run_name(base, {}) != run_name(changed, {})


def test_a_students_own_transform_gives_the_same_identity_in_every_session():
    """An object without a readable repr prints with its memory address, which changes every time the notebook runs."""

    class ScaleToMinusOneOne:  # a student's own transform, no __repr__
        def __call__(self, x):
            return x * 2 - 1

    def with_own_transform():
        return transforms.Compose([transforms.Resize((70, 70)), transforms.RandomCrop((64, 64)),
                                   transforms.ToTensor(), ScaleToMinusOneOne()])

    first = identity_of(train_transforms=with_own_transform())
    second = identity_of(train_transforms=with_own_transform())
    assert "ScaleToMinusOneOne object" in first["train_transform"] and first == second


def test_the_identity_holds_each_part_under_the_key_that_checkpoints_store():
    """Checkpoints store the identity: a key renamed would make every saved run another run's. Each key holds what it
    names (planted: a renamed key, the scheduler, batch size or data recorded as None, or "NoneType" for the model's
    or scheduler's class, passed every test; the batch size also appears among the notebook's settings)."""
    identity = identity_of()
    assert list(identity) == [
        "model", "model_code", "parameter_shapes", "optimizer", "scheduler", "batch_size", "train_transform",
        "eval_transform", "train_data", "valid_data", "precision", "deterministic",
        "setting: seed", "setting: batch_size", "setting: learning_rate", "setting: dropout2d"]
    assert identity["model"].startswith("TinyNetWithDropout2d: TinyNetWithDropout2d(\n  (features): Sequential(")
    assert identity["parameter_shapes"].startswith("features.0.weight (8, 3, 3, 3); features.0.bias (8,); ")
    assert identity["scheduler"].startswith("ReduceLROnPlateau(") and "factor=0.1, " in identity["scheduler"]
    assert identity["batch_size"] == "32"
    assert identity["train_data"] == "synthetic smoke-test data, seed 1, 640 images, first 576"
    assert identity["valid_data"] == "synthetic smoke-test data, seed 1, 640 images, last 64"
    assert helper_train.describe_scheduler(None) == "none"


def test_dropout2d_differs_in_the_identity_although_it_has_no_parameters():
    differences = helper_train.identity_differences(identity_of(), identity_of(dropout2d=0.2))
    assert any("Identity()" in line and "Dropout2d(p=0.2" in line for line in differences), differences


def test_identity_ignores_progress_so_rerunning_the_training_cell_resumes():
    """After training (lowered learning rate, scheduler counters, momentum) the identity is unchanged."""
    model, optimizer, scheduler, data, settings = setup()
    before = describe_run(model, optimizer, scheduler, data[0], data[1], device="cpu", settings=settings)
    train_model(model, 2, *data, optimizer, "cpu", scheduler=scheduler)
    for group in optimizer.param_groups:
        group["lr"] *= 0.1  # as ReduceLROnPlateau does
    scheduler.num_bad_epochs = 5
    assert describe_run(model, optimizer, scheduler, data[0], data[1], device="cpu", settings=settings) == before


def test_run_name_lists_the_settings_that_differ_and_marks_smoke_runs():
    identity = identity_of()
    assert run_name(identity, {"seed": 123, "learning_rate": 0.01}).startswith("lecture-")
    assert run_name(identity, {"dropout2d": 0.2}).startswith("dropout2d=0.2-")
    assert run_name(identity, {"dropout2d": 0.2}, smoke_test=True).startswith("smoke-dropout2d=0.2-")
    assert run_name(identity, {}) == run_name(dict(identity), {})  # stable


# --- one folder per configuration ------------------------------------------------------------------


def test_dropout2d_rerun_trains_a_new_run_in_a_new_folder_and_leaves_the_baseline_untouched(tmp_path, capsys):
    baseline, _, _ = notebook_run(tmp_path)
    before = folder_bytes(baseline)
    capsys.readouterr()
    exercise, _, (losses, _, valid_acc) = notebook_run(tmp_path, dropout2d=0.2)
    out = capsys.readouterr().out
    assert exercise != baseline and exercise.name.startswith("dropout2d=0.2-")
    assert "Resuming" not in out and "nothing left to train" not in out and "Batch 0000" in out
    assert len(valid_acc) == 1
    assert folder_bytes(baseline) == before
    assert {CHECKPOINT_FILE, BEST_MODEL_FILE, HISTORY_FILE} <= set(folder_bytes(exercise))


def test_same_settings_resume_in_the_same_folder(tmp_path, capsys):
    first, _, _ = notebook_run(tmp_path, epochs=1)
    second, _, (_, _, valid_acc) = notebook_run(tmp_path, epochs=2)
    assert first == second and len(valid_acc) == 2
    assert "Resuming from epoch 2" in capsys.readouterr().out


def test_changed_learning_rate_in_an_explicit_folder_is_refused_and_nothing_is_loaded(tmp_path):
    model, optimizer, scheduler, data, settings = setup(lr=0.05)
    train_model(model, 1, *data, optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    before = folder_bytes(tmp_path)

    model, optimizer, scheduler, data, settings = setup(lr=0.01)
    fresh_weights = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RunMismatchError) as refused:
        train_model(model, 2, *data, optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    message = str(refused.value)
    assert "lr=0.05" in message and "lr=0.01" in message and "->" in message
    assert "another folder" in message and "delete this folder's checkpoint" in message
    assert optimizer.param_groups[0]["lr"] == 0.01 and not optimizer.state
    assert all(torch.equal(v, fresh_weights[k]) for k, v in model.state_dict().items())
    assert folder_bytes(tmp_path) == before


@pytest.mark.parametrize("change", [{"optimizer": "adam"}, {"batch_size": 16}])
def test_other_optimizer_or_batch_size_is_refused_with_the_difference_named(tmp_path, change):
    model, optimizer, scheduler, data, _ = setup()
    train_model(model, 1, *data, optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    model, optimizer, scheduler, data, _ = setup(**change)
    with pytest.raises(RunMismatchError, match="optimizer: SGD.* -> Adam|batch_size: 32 -> 16"):
        train_model(model, 2, *data, optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)


def test_fewer_epochs_than_done_is_reported(tmp_path, capsys):
    """The history written then records the 2 epochs the run holds, not 1 beside 2 epochs' accuracies."""
    model, optimizer, scheduler, data, _ = setup()
    history_file = tmp_path / "history.json"
    train_model(model, 2, *data, optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path,
                history_file=history_file)
    model, optimizer, scheduler, data, _ = setup()
    _, _, valid_acc = train_model(model, 1, *data, optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path,
                                  history_file=history_file)
    assert len(valid_acc) == 2
    assert "holds 2 epochs, more than num_epochs=1: nothing to train. The model and the history are those after " \
           "epoch 2, not 1; to stop at 1 epoch, train this configuration from scratch in another folder (in the " \
           "notebooks: another RESULTS_DIR)." in capsys.readouterr().out
    history = json.loads(history_file.read_text())
    assert history["num_epochs"] == 2 and len(history["valid_acc"]) == 2


# --- divergence ------------------------------------------------------------------------------------


def test_finite_blow_up_stops_before_its_epoch_is_checkpointed_and_a_lower_rate_learns(tmp_path):
    """Epoch 1 trains at 0.05; from epoch 2 the rate is 20 times higher and the loss climbs past 230, still finite."""
    model, optimizer, _, data, settings = setup(lr=0.05)
    too_high = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0 if epoch == 0 else 20.0)
    folder = tmp_path / "too-high"
    with pytest.raises(TrainingDivergedError) as diverged:
        train_model(model, 3, *data, optimizer, CPU, scheduler=too_high, checkpoint_dir=folder,
                    run_settings={**settings, "learning_rate": "0.05, then 1.0"})
    message = str(diverged.value)
    assert re.search(r"The loss became [\d.e+]+ \(limit 230\) in epoch 2, batch \d+/18", message), message
    assert "lower the learning rate" in message and "last good epoch (1)" in message
    checkpoint = torch.load(folder / CHECKPOINT_FILE, weights_only=True)
    assert checkpoint["epochs_done"] == 1 and max(checkpoint["history"]["minibatch_loss"]) < 230
    assert checkpoint["history"]["valid_acc"][0] > 20.0  # the saved epoch is a good one
    assert all(t.abs().max() < 100 for t in checkpoint["model"].values())

    fixed, _, (_, _, valid_acc) = notebook_run(tmp_path, epochs=3, lr=0.05)  # following the advice
    assert fixed != folder and valid_acc[-1] >= 90.0


def test_nan_loss_is_caught_with_its_batch(tmp_path):
    """A NaN pixel in batch 2 of epoch 1 (a broken image, say) makes that batch's loss NaN."""

    class NaNInBatch2:
        def __init__(self, loader):
            self.loader = loader

        def __len__(self):
            return len(self.loader)

        def __iter__(self):
            for index, (features, targets) in enumerate(self.loader):
                if index == 2:
                    features = features.clone()
                    features[0, 0, 0, 0] = float("nan")
                yield features, targets

    model, optimizer, _, (train_loader, valid_loader, test_loader), _ = setup()
    with pytest.raises(TrainingDivergedError, match=r"The loss became nan in epoch 1, batch 2/18"):
        train_model(model, 1, NaNInBatch2(train_loader), valid_loader, test_loader, optimizer, "cpu",
                    checkpoint_dir=tmp_path)
    assert not (tmp_path / CHECKPOINT_FILE).exists()


def test_non_finite_weights_stop_the_run_before_the_checkpoint(tmp_path):
    """A weight that becomes infinite while the loss stays finite (the parameter feeds no loss)."""

    class Unused(TinyNetWithDropout2d):
        def __init__(self):
            super().__init__()
            self.spare = torch.nn.Parameter(torch.zeros(3))

    class PoisonAtEpoch2:
        def __init__(self, loader, model):
            self.loader, self.model, self.calls = loader, model, 0

        def __len__(self):
            return len(self.loader)

        def __iter__(self):
            self.calls += 1
            yield from self.loader
            if self.calls == 3:  # end of the second training pass
                with torch.no_grad():
                    self.model.spare.fill_(float("inf"))

    set_all_seeds(0)
    model = Unused()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    train_loader, valid_loader, test_loader = loaders()
    with pytest.raises(TrainingDivergedError, match="weights became NaN or infinite in epoch 2"):
        train_model(model, 3, PoisonAtEpoch2(train_loader, model), valid_loader, test_loader, optimizer, "cpu",
                    checkpoint_dir=tmp_path)
    assert torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["epochs_done"] == 1


def test_same_settings_written_differently_are_the_same_run():
    """papermill's -p DROPOUT2D 0 gives the integer 0; the lecture's default is 0.0; a NumPy batch size is a number."""
    import numpy as np

    model, optimizer, scheduler, data, _ = setup()
    settings_a = {"dropout2d": 0.0, "batch_size": 32, "seed": 0}
    settings_b = {"dropout2d": 0, "batch_size": np.int64(32), "seed": 0}
    a = describe_run(model, optimizer, scheduler, data[0], data[1], device="cpu", settings=settings_a)
    b = describe_run(model, optimizer, scheduler, data[0], data[1], device="cpu", settings=settings_b)
    assert a == b


def test_a_change_in_the_models_code_is_a_new_run():
    """Same layers, same printout, different forward (the dropout moved after the pooling): not the same run."""

    class DropoutAfterPooling(TinyNetWithDropout2d):
        def forward(self, x):
            return self.classifier(torch.flatten(self.feature_dropout(self.features(x)), 1))

    class SameAsBase(TinyNetWithDropout2d):
        pass

    model, optimizer, scheduler, data, settings = setup()
    identities = []
    for variant in (TinyNetWithDropout2d, DropoutAfterPooling, SameAsBase):
        variant.__name__ = "TinyNetWithDropout2d"  # the same printout for all three
        identities.append(describe_run(variant(), optimizer, scheduler, data[0], data[1], device="cpu",
                                       settings=settings))
    assert identities[0]["model"] == identities[1]["model"]
    assert identities[0]["model_code"] != identities[1]["model_code"]
    assert identities[2]["model_code"] == identities[0]["model_code"]  # inherits the same code: the same run


def test_a_recorded_run_never_starts_from_an_already_trained_model(tmp_path, capsys):
    """Interrupted in epoch 1 (nothing saved), then only the training cell is run again."""

    model, optimizer, scheduler, (train_loader, valid_loader, test_loader), _ = setup()
    train_model(model, 2, InterruptAt(train_loader, epoch=1, batch=3), valid_loader, test_loader, optimizer, "cpu",
                scheduler=scheduler, checkpoint_dir=tmp_path)
    assert not (tmp_path / CHECKPOINT_FILE).exists()
    with pytest.raises(RuntimeError) as error:
        train_model(model, 2, train_loader, valid_loader, test_loader, optimizer, "cpu", scheduler=scheduler,
                    checkpoint_dir=tmp_path)
    assert str(error.value) == (  # planted: each of its sentences changed passed every test, which matched two words
        "This optimizer has already taken steps (it holds momentum from an earlier training) and there is no "
        "checkpoint of this run to continue, so the run would start from an already-trained model. Build a fresh "
        "model and optimizer first: in the notebook, run it again from the top, or from the Reproducibility cell "
        "(the seeds) down.")
    model, optimizer, scheduler, data, _ = setup()  # a fresh model, as running the notebook from the top gives
    _, _, valid_acc = train_model(model, 2, *data, optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    assert len(valid_acc) == 2


def test_a_diverged_run_keeps_its_record_up_to_the_explosion(tmp_path):
    model, optimizer, _, data, _ = setup(lr=0.05)
    too_high = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0 if epoch == 0 else 20.0)
    with pytest.raises(TrainingDivergedError):
        train_model(model, 3, *data, optimizer, "cpu", scheduler=too_high, checkpoint_dir=tmp_path)
    history = json.loads((tmp_path / HISTORY_FILE).read_text())
    assert len(history["valid_acc"]) == 1 and len(history["minibatch_loss"]) > len(data[0])  # into epoch 2
    assert max(history["minibatch_loss"]) <= 230
    assert history["stopped"] == "diverged in epoch 2"  # so the run table says why it has no test accuracy


def test_a_run_without_checkpoints_that_diverges_records_why_it_stopped_with_its_settings(tmp_path, monkeypatch):
    """A smoke test (CHECKPOINTS = False) keeps only its history: the record of a run that explodes says so, and still
    names its run and settings, so the run table and the comparison list it as the run it was."""
    original, calls = helper_train.train_one_epoch, []

    def explodes_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise TrainingDivergedError("The loss became inf in epoch 2")
        return original(*args, **kwargs)

    monkeypatch.setattr(helper_train, "train_one_epoch", explodes_in_epoch_2)
    model, optimizer, _, data, settings = setup()
    history_file = tmp_path / "smoke-lecture-abcdef" / HISTORY_FILE
    with pytest.raises(TrainingDivergedError):
        train_model(model, 3, *data, optimizer, CPU, history_file=history_file, run_settings=settings)
    history = json.loads(history_file.read_text())
    assert history["stopped"] == "diverged in epoch 2" and len(history["valid_acc"]) == 1
    assert history["run_name"] == "smoke-lecture-abcdef" and history["settings"] == settings
    assert history["identity"]["setting: learning_rate"] == "0.05"


def test_checkpoints_off_in_a_folder_with_a_checkpoint_says_it_starts_over(tmp_path, capsys):
    (tmp_path / "lecture-000000").mkdir()
    identity = identity_of()
    folder = helper_train.choose_run_folder(tmp_path, identity, {}, checkpoints=False)
    (folder).mkdir(exist_ok=True)
    (folder / CHECKPOINT_FILE).write_bytes(b"")
    helper_train.choose_run_folder(tmp_path, identity, {}, checkpoints=False)
    assert "checkpoints are off: this run starts from scratch and replaces its history, figures and final weights " \
           "(its checkpoint and best weights stay)" in capsys.readouterr().out


@pytest.mark.parametrize("smoke_test, replaced", [(True, "history and figures\n"),
                                                  (False, "history, figures and final weights\n")])
def test_same_settings_run_again_without_checkpoints_say_they_replace_the_earlier_run(tmp_path, capsys, smoke_test,
                                                                                      replaced):
    """A smoke test run twice, or CHECKPOINTS = False: the folder holds the first run's history, which is replaced,
    and (not in a smoke test, which saves none) the final weights the notebook saved at its end."""
    identity = identity_of()
    folder = helper_train.choose_run_folder(tmp_path, identity, {}, checkpoints=False, smoke_test=smoke_test)
    assert "a configuration not trained before" in capsys.readouterr().out
    folder.mkdir()
    (folder / HISTORY_FILE).write_text("{}")
    helper_train.choose_run_folder(tmp_path, identity, {}, checkpoints=False, smoke_test=smoke_test)
    out = capsys.readouterr().out
    assert "ran here before without checkpoints: this run starts from scratch and replaces that run's " \
           + replaced in out  # says what is lost (not only that it "replaces")
    assert "not trained before" not in out


def test_a_checkpointed_run_of_the_same_settings_says_it_continues(tmp_path, capsys):
    """With checkpoints on, a folder holding a checkpoint (and the history beside it) is continued, and says so;
    "checkpoints are off" is said only when they are; a file that cannot be read is not said to be continued (a
    review: train_model refuses it a cell later)."""
    identity = identity_of()
    folder = helper_train.choose_run_folder(tmp_path, identity, {})
    folder.mkdir()
    (folder / CHECKPOINT_FILE).write_bytes(b"")  # cut short: train_model refuses it, with the fix
    (folder / HISTORY_FILE).write_text("{}")
    capsys.readouterr()
    helper_train.choose_run_folder(tmp_path, identity, {}, checkpoints=True)
    out = capsys.readouterr().out
    assert out.endswith("\n  a checkpoint file is there, but it cannot be read (cut short, damaged, or not this "
                        "tutorial's): the training cell stops before training and says how to go on\n")
    assert "checkpoints are off" not in out and "without checkpoints" not in out and "continues" not in out
    # a readable checkpoint says how far the run got: a finished run's "nothing to train" surprised a student (a review)
    torch.save({"epochs_done": 30}, folder / CHECKPOINT_FILE)
    helper_train.choose_run_folder(tmp_path, identity, {}, checkpoints=True)
    assert "the run continues where it stopped, after epoch 30\n" in capsys.readouterr().out
    helper_train.choose_run_folder(tmp_path, identity, {})  # train_model's default: checkpoints on (planted: off)
    assert "the run continues where it stopped, after epoch 30\n" in capsys.readouterr().out


@pytest.mark.parametrize("num_epochs, said", [
    (31, "the run continues where it stopped, after epoch 30\n"),
    (30, "a checkpoint of exactly these settings is there, after epoch 30: with NUM_EPOCHS = 30 nothing is left to "
         "train, so the training cell only loads it (NUM_EPOCHS above 30 trains on)\n"),
    (20, "after epoch 30: with NUM_EPOCHS = 20 nothing is left to train, so the training cell only loads it "
         "(NUM_EPOCHS above 30 trains on)\n"),  # train_model then says that it holds more epochs than asked
])
def test_a_finished_run_is_not_said_to_continue(tmp_path, capsys, num_epochs, said):
    """A run whose checkpoint holds NUM_EPOCHS epochs or more trains nothing: "the run continues where it stopped"
    followed by "nothing to train" confused a student (a review)."""
    identity = identity_of()
    folder = helper_train.choose_run_folder(tmp_path, identity, {})
    folder.mkdir()
    torch.save({"epochs_done": 30}, folder / CHECKPOINT_FILE)
    capsys.readouterr()
    helper_train.choose_run_folder(tmp_path, identity, {}, num_epochs=num_epochs)
    out = capsys.readouterr().out
    assert said in out and ("continues" in out) == (num_epochs > 30)


def test_an_empty_run_folder_counts_as_not_trained_before(tmp_path, capsys):
    """A folder without a history (a run stopped before its first epoch ended) has no earlier run to replace."""
    identity = identity_of()
    helper_train.choose_run_folder(tmp_path, identity, {}).mkdir()
    capsys.readouterr()
    helper_train.choose_run_folder(tmp_path, identity, {}, checkpoints=False)
    out = capsys.readouterr().out
    assert out.endswith("\n  a configuration not trained before: training starts from scratch, earlier runs keep "
                        "their folders\n")


# --- what the identity records (review 2: each test fails when its part of the identity is dropped or mixed up) ---


def test_a_changed_evaluation_transform_is_a_new_run():
    """The validation loader's transform is recorded as itself, not as the training loader's."""
    model, optimizer, scheduler, (train_loader, valid_loader, _), settings = setup()
    _, other_valid, _ = get_dataloaders_cifar10(
        32, validation_fraction=0.1, train_transforms=lecture_train_transforms(),
        test_transforms=transforms.Compose([transforms.Resize((64, 64)), transforms.ToTensor()]), smoke_test=True)
    base = describe_run(model, optimizer, scheduler, train_loader, valid_loader, device="cpu", settings=settings)
    changed = describe_run(model, optimizer, scheduler, train_loader, other_valid, device="cpu", settings=settings)
    assert "Resize(size=(64, 64)" in changed["eval_transform"] and "CenterCrop" in base["eval_transform"]
    assert run_name(base, {}) != run_name(changed, {})


def test_other_validation_images_are_a_new_run():
    """The validation loader's images are recorded as themselves, not as the training loader's."""
    model, optimizer, scheduler, (train_loader, valid_loader, _), settings = setup()
    _, larger_valid, _ = get_dataloaders_cifar10(
        32, validation_fraction=0.2, train_transforms=lecture_train_transforms(),
        test_transforms=lecture_test_transforms(), smoke_test=True)
    base = describe_run(model, optimizer, scheduler, train_loader, valid_loader, device="cpu", settings=settings)
    changed = describe_run(model, optimizer, scheduler, train_loader, larger_valid, device="cpu", settings=settings)
    assert base["valid_data"].endswith("last 64") and changed["valid_data"].endswith("last 128")
    assert run_name(base, {}) != run_name(changed, {})


def test_switching_deterministic_algorithms_on_is_a_new_run():
    before = identity_of()
    torch.use_deterministic_algorithms(True)
    try:
        deterministic = identity_of()
    finally:
        torch.use_deterministic_algorithms(False)
    assert (before["deterministic"], deterministic["deterministic"]) == ("False", "True")
    assert run_name(before, {}) != run_name(deterministic, {})


def test_a_numpy_float32_setting_is_the_same_run_as_the_python_float():
    """DROPOUT2D read from a float32 array (np.float32, unlike np.float64, is no Python float) is 0.25 all the same."""
    import numpy as np

    model, optimizer, scheduler, data, _ = setup()
    a = describe_run(model, optimizer, scheduler, data[0], data[1], device="cpu", settings={"dropout2d": 0.25})
    b = describe_run(model, optimizer, scheduler, data[0], data[1], device="cpu",
                     settings={"dropout2d": np.linspace(0.0, 0.5, 3, dtype=np.float32)[1]})
    assert a == b and a["setting: dropout2d"] == "0.25"


def test_run_folder_is_named_against_the_defaults_it_is_given(tmp_path, capsys):
    """The notebooks' smoke runs pass the smoke test's batch size and rate as defaults: those are not "changes"."""
    smoke_defaults = {**LECTURE_SETTINGS, "batch_size": 16, "learning_rate": 0.001}
    settings = {"seed": 123, "batch_size": 16, "learning_rate": 0.001, "dropout2d": 0.0}
    folder = helper_train.choose_run_folder(tmp_path, identity_of(), settings, smoke_test=True, defaults=smoke_defaults)
    assert folder.parent == tmp_path and folder.name.startswith("smoke-lecture-")
    assert "settings that differ from the smoke test's: none" in capsys.readouterr().out


def test_a_loss_exactly_at_the_divergence_limit_is_still_recorded():
    """Divergence is a loss above the limit; one at the limit is a (bad) loss like any other."""
    losses: list[float] = []
    helper_train.record_losses([torch.tensor(230.0), torch.tensor(2.0)], 0, losses, 230.0, 0, 18, 0)
    assert losses == [230.0, 2.0]


def test_the_losses_before_the_exploding_batch_are_kept_for_the_plots():
    losses: list[float] = [2.3]
    pending = [torch.tensor(2.0), torch.tensor(1.5), torch.tensor(float("nan")), torch.tensor(1.0)]
    with pytest.raises(TrainingDivergedError, match=r"The loss became nan in epoch 2, batch 7/18"):
        helper_train.record_losses(pending, 5, losses, 230.0, 1, 18, 1)
    assert losses == [2.3, 2.0, 1.5] and pending == []


def test_a_loss_that_explodes_in_the_first_batch_names_batch_0_and_no_checkpoint_yet():
    """Batch 0 is a batch like any other (not "no batch"), and before any epoch is saved there is no good checkpoint."""
    with pytest.raises(TrainingDivergedError) as diverged:
        helper_train.record_losses([torch.tensor(float("inf"))], 0, [], 230.0, 0, 18, 0)
    message = str(diverged.value)
    assert "The loss became inf in epoch 1, batch 0/18:" in message
    assert "checkpoint" not in message and "last good epoch" not in message


def test_a_loss_that_explodes_between_logging_points_names_its_own_batch():
    """Logged every 5 batches: the NaN of batch 3 is found at the logging point of batch 5, and named batch 3."""
    losses = iter([2.3, 2.2, 2.1, float("nan"), 2.0, 1.9, 1.8, 1.7])
    batches = [(torch.zeros(1, 3, 8, 8), torch.zeros(1, dtype=torch.long))] * 8
    with pytest.raises(TrainingDivergedError, match=r"The loss became nan in epoch 1, batch 3/8"):
        helper_train.train_one_epoch(lambda x, y: torch.tensor(next(losses)), TinyNet(), batches, 0, 1, 5, [], 230.0, 0)


class ScoresClassOneBy150(torch.nn.Module):
    """Two classes, every image scored as class 1 by a margin of 150: a loss of 150 on class-0 images."""

    def __init__(self):
        super().__init__()
        self.scores = torch.nn.Parameter(torch.tensor([0.0, 150.0]))

    def forward(self, x):
        return self.scores.expand(len(x), 2)


def test_the_divergence_limit_follows_the_number_of_classes():
    """With two classes the limit is 100 x ln(2) = 69, so a loss of 150 is divergence, although it is below the
    limit for CIFAR-10's ten classes, 230 (planted: the limit computed for 10 classes whatever the data)."""
    batches = [(torch.zeros(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))] * 3
    model = ScoresClassOneBy150()
    with pytest.raises(TrainingDivergedError, match=r"The loss became 150 \(limit 69\) in epoch 1, batch 0/3"):
        train_model(model, 1, batches, batches, batches, torch.optim.SGD(model.parameters(), lr=0.001), "cpu")


def test_one_nan_among_the_weights_is_enough_to_stop_the_run():
    """A diverging run breaks a few weights first, not whole tensors."""
    model = TinyNet()
    helper_train.check_finite_weights(model, 2, 2)  # all finite: nothing to say
    with torch.no_grad():
        model.classifier.weight[3, 7] = float("nan")
    with pytest.raises(TrainingDivergedError, match=r"NaN or infinite in epoch 3(.|\n)*last good epoch \(2\)"):
        helper_train.check_finite_weights(model, 2, 2)


def test_a_setting_recorded_only_in_the_checkpoint_is_a_difference():
    """A notebook run (seed and named settings recorded) is not silently continued by a call that names none."""
    saved = {"model": "TinyNet", "setting: seed": "0"}
    assert helper_train.identity_differences(saved, {"model": "TinyNet"}) == ["  setting: seed: 0 -> (not recorded)"]


# --- a notebook's cells run again out of order: objects of other settings are refused -----------------------------


@pytest.mark.parametrize(("setting", "value", "says"), [
    ("batch_size", 16, "the training loader's batch size is 32"),
    ("learning_rate", 0.01, "the optimizer was built with lr=0.05"),
    ("image_size", 32, "the data loaders give 64x64 images"),
    ("dropout2d", 0.2, "the model's Dropout2d rate is 0"),
])
def test_objects_built_with_other_settings_are_refused_before_training(tmp_path, setting, value, says):
    """A setting changed and only some cells run again: the stale object and the cells to run are named; no step."""
    model, optimizer, scheduler, data, settings = setup()
    settings.update({"image_size": 64, setting: value})
    with pytest.raises(RunMismatchError, match=re.escape(f"{setting} = {value!r} in the run's settings, but {says}\n")
                       + r"(.|\n)*Run All Above Selected Cell"):
        train_model(model, 1, *data, optimizer, CPU, scheduler=scheduler, checkpoint_dir=tmp_path,
                    run_settings=settings)
    assert not (tmp_path / HISTORY_FILE).exists() and not (tmp_path / CHECKPOINT_FILE).exists()
    assert not optimizer.state  # not one step was taken


def test_objects_that_match_their_settings_pass_and_unknown_settings_are_not_checked():
    model, optimizer, _, (train_loader, _, _), settings = setup(dropout2d=0.2, lr=0.01, batch_size=16)
    assert helper_train.settings_mismatches({**settings, "image_size": 64}, model, optimizer, train_loader, 64) == []
    assert helper_train.settings_mismatches({"seed": 5, "normalization": "x"}, model, optimizer, train_loader, 32) == []
    stale = {"learning_rate": 0.02, "dropout2d": 0.3}
    assert helper_train.settings_mismatches(stale, model, optimizer, train_loader, 64) == [
        "  learning_rate = 0.02 in the run's settings, but the optimizer was built with lr=0.01",
        "  dropout2d = 0.3 in the run's settings, but the model's Dropout2d rate is 0.2"]


def test_a_folder_chosen_for_other_objects_is_refused(tmp_path):
    """The model cell ran again (Dropout2d 0.2), the folder's cell did not: the run would be filed as the lecture's."""
    chosen = identity_of()
    model, optimizer, scheduler, data, settings = setup(dropout2d=0.2)
    settings["dropout2d"] = 0.0  # as the stale RUN_SETTINGS says; only the model changed
    with pytest.raises(RunMismatchError, match=r"chosen for other settings(.|\n)*  model: (.|\n)*Run All Above"):
        train_model(model, 1, *data, optimizer, CPU, scheduler=scheduler, history_file=tmp_path / HISTORY_FILE,
                    run_settings={"seed": 0}, run_identity=chosen)
    assert not (tmp_path / HISTORY_FILE).exists()
    model, optimizer, scheduler, data, settings = setup()  # the objects the folder was chosen for
    _, _, valid_acc = train_model(model, 1, *data, optimizer, CPU, scheduler=scheduler,
                                  history_file=tmp_path / HISTORY_FILE, run_settings=settings, run_identity=chosen)
    assert len(valid_acc) == 1


def test_device_auto_from_the_parameters_cell_names_the_settings_cell():
    """The parameters cell run again, then the training cell (or the run-folder cell): DEVICE is "auto" again."""
    model, optimizer, scheduler, data, settings = setup()
    with pytest.raises(ValueError, match="settings cell turns it into one(.|\n)*Run All Above Selected Cell"):
        train_model(model, 1, *data, optimizer, "auto", scheduler=scheduler)
    with pytest.raises(ValueError, match="settings cell turns it into one(.|\n)*Run All Above Selected Cell"):
        describe_run(model, optimizer, scheduler, data[0], data[1], device="auto", settings=settings)


def test_the_two_messages_for_the_parameters_cells_device_say_what_happened_and_what_to_run():
    """Each sentence in full (planted: a changed sentence passed, the other tests matching a few words)."""
    with pytest.raises(ValueError) as auto:
        helper_train.check_device_chosen(" Auto")
    assert str(auto.value) == ("device='auto' is a setting, not a device: the settings cell turns it into one "
                               "(choose_device), and it has not run since the parameters cell. "
                               + helper_train.RERUN_CELLS)
    with pytest.raises(ValueError) as named:
        helper_train.check_device_chosen("cuda:0", {"seed": 123})
    assert str(named.value) == (
        "device='cuda:0' is the parameters cell's DEVICE as text, not the torch.device that the settings cell makes "
        "of it (choose_device): the parameters cell has run again since the settings cell, so RUN_SETTINGS, the "
        "data, the model, the optimizer and the run's folder still have the settings of before, and a setting you "
        f"changed would be ignored. {helper_train.RERUN_CELLS} (Outside the notebooks: pass "
        "device=torch.device('cuda:0').)")
    helper_train.check_device_chosen(torch.device("cpu"), {"seed": 123})  # the settings cell's device passes
    helper_train.check_device_chosen("cpu")  # text without run settings: a script's choice
    with pytest.raises(ValueError, match="DEVICE as text"):
        helper_train.check_device_chosen("cpu", {})  # run settings, if empty


def test_a_named_device_as_text_next_to_the_run_settings_is_refused_before_training(tmp_path):
    """DEVICE = "cpu" (or "cuda:0"), a setting changed and the parameters cell run again, then the training cell: the
    text "cpu" next to the old RUN_SETTINGS means the cells between did not run, and training them would ignore the
    change without a word. Without run_settings (a script), or with the torch.device, training goes ahead."""
    model, optimizer, scheduler, data, settings = setup()
    train_model(model, 1, *data, optimizer, CPU, scheduler=scheduler, checkpoint_dir=tmp_path, run_settings=settings)
    history = (tmp_path / HISTORY_FILE).read_bytes()
    model, optimizer, scheduler, data, settings = setup()  # as the cells above the training cell last made them
    fresh_weights = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"device='cpu' is the parameters cell's DEVICE as text(.|\n)*a setting you "
                                         r"changed would be ignored(.|\n)*Run All Above Selected Cell(.|\n)*"
                                         r"pass device=torch.device\('cpu'\)"):
        train_model(model, 2, *data, optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path,
                    run_settings=settings)
    assert (tmp_path / HISTORY_FILE).read_bytes() == history and not optimizer.state  # nothing loaded or trained
    assert all(torch.equal(value, fresh_weights[name]) for name, value in model.state_dict().items())
    _, _, valid_acc = train_model(model, 2, *data, optimizer, CPU, scheduler=scheduler, checkpoint_dir=tmp_path,
                                  run_settings=settings)
    assert len(valid_acc) == 2  # the checkpoint's epoch and one more
    model, optimizer, scheduler, data, _ = setup()
    _, _, valid_acc = train_model(model, 1, *data, optimizer, "cpu", scheduler=scheduler)
    assert len(valid_acc) == 1


def test_a_model_trained_in_this_session_does_not_start_a_new_run(tmp_path):
    """A new learning rate, the optimizer and folder cells run again but not the model's: trained weights, new name."""
    model, optimizer, scheduler, data, _ = setup()
    train_model(model, 1, *data, optimizer, "cpu", scheduler=scheduler, history_file=tmp_path / "a" / HISTORY_FILE)
    new_optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)  # no momentum yet: looks fresh
    with pytest.raises(RuntimeError, match=r"already been trained(.|\n)*Reproducibility cell"):
        train_model(model, 1, *data, new_optimizer, "cpu", history_file=tmp_path / "b" / HISTORY_FILE)
    assert not (tmp_path / "b" / HISTORY_FILE).exists()


def test_a_model_that_only_loaded_a_finished_checkpoint_counts_as_trained(tmp_path):
    """After a kernel restart the training cell loads the finished run; a new run must not start from those weights."""
    model, optimizer, scheduler, data, _ = setup()
    train_model(model, 1, *data, optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path / "a")
    model, optimizer, scheduler, data, _ = setup()  # the restarted kernel: the cells above training, run again
    train_model(model, 1, *data, optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path / "a")  # loads only
    with pytest.raises(RuntimeError, match="already been trained"):
        train_model(model, 1, *data, torch.optim.SGD(model.parameters(), lr=0.01), "cpu",
                    checkpoint_dir=tmp_path / "b")


def test_a_model_stopped_before_its_first_step_may_start_again(tmp_path):
    """Interrupted at the first batch (or a loader error): the weights are still the seed's, so a retry is allowed."""
    model, optimizer, scheduler, (train_loader, valid_loader, test_loader), _ = setup()
    train_model(model, 1, InterruptAt(train_loader, epoch=1, batch=0), valid_loader, test_loader, optimizer, "cpu",
                scheduler=scheduler, history_file=tmp_path / HISTORY_FILE)
    _, _, valid_acc = train_model(model, 1, train_loader, valid_loader, test_loader, optimizer, "cpu",
                                  scheduler=scheduler, history_file=tmp_path / HISTORY_FILE)
    assert len(valid_acc) == 1


def test_a_model_whose_first_step_failed_may_start_again(tmp_path, monkeypatch):
    """Out of memory in the very first step (the batch size was too large): no weight changed, so a retry is allowed."""
    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    model, optimizer, scheduler, data, _ = setup()
    with monkeypatch.context() as patched:
        patched.setattr(helper_train, "training_step", out_of_memory)
        with pytest.raises(RuntimeError, match="out of memory"):
            train_model(model, 1, *data, optimizer, "cpu", history_file=tmp_path / HISTORY_FILE)
    _, _, valid_acc = train_model(model, 1, *data, optimizer, "cpu", history_file=tmp_path / HISTORY_FILE)
    assert len(valid_acc) == 1


def test_a_learning_rate_computed_in_float32_matches_the_optimizers_and_a_mismatch_names_both_ways_out():
    model, optimizer, _, (train_loader, _, _), _ = setup(lr=0.001)
    assert helper_train.settings_mismatches({"learning_rate": np.float32(0.001)}, model, optimizer, train_loader,
                                            64) == []
    assert helper_train.settings_mismatches({"learning_rate": 0.00105}, model, optimizer, train_loader, 64) == [
        "  learning_rate = 0.00105 in the run's settings, but the optimizer was built with lr=0.001"]  # not float32's
    assert len(helper_train.settings_mismatches({"learning_rate": 0.00100001}, model, optimizer, train_loader, 64)) == 1
    with pytest.raises(RunMismatchError, match=r"Run All Above Selected Cell(.|\n)*on purpose(.|\n)*parameters cell"):
        helper_train.check_objects_match_settings({"learning_rate": 0.002}, model, optimizer, train_loader, 64)


def test_a_setting_that_the_objects_do_not_reveal_is_not_checked():
    """A plain list of batches has no batch size to read back, and a setting may be given as text: neither is compared
    (planted: a setting skipped only when both sides were unreadable crashed on float(None))."""
    model, optimizer, _, (train_loader, _, _), _ = setup()
    batches = [(torch.zeros(4, 3, 64, 64), torch.zeros(4, dtype=torch.long))]
    assert helper_train.settings_mismatches({"batch_size": 32}, model, optimizer, batches, 64) == []
    assert helper_train.settings_mismatches({"batch_size": "auto"}, model, optimizer, train_loader, 64) == []


# --- review 3: mutation testing of the run's identity ---------------------------------------------------------------


def test_a_model_class_without_source_code_is_a_new_run_when_a_constant_changes():
    """Where inspect finds no source (a class made with exec, as tools that run a notebook's cells without Jupyter
    do), the compiled code stands for it: a forward that multiplies by 3 instead of 2 (a changed dropout rate, say)
    differs only in a constant, and was the same run before the constants were hashed too."""

    def model_class(factor):
        namespace = {}  # the factor sits in a comprehension (code of its own on Python 3.11), beside a set constant
        exec(f"import torch\nclass Scaled(torch.nn.Module):\n    def forward(self, x):\n"
             f"        return [x * {factor} for _ in range(1)][0] if x.dim() in {{3, 4}} else x\n", namespace)
        return namespace["Scaled"]

    fingerprint = helper_train.model_code_fingerprint
    assert fingerprint(model_class(2)) != fingerprint(model_class(3))
    assert fingerprint(model_class(2)) == fingerprint(model_class(2))


def test_a_class_attribute_that_is_callable_but_not_a_function_is_left_out_of_the_fingerprint():
    """``conv = functools.partial(nn.Conv2d, kernel_size=3, padding=1)`` is a common shorthand in VGG code: callable,
    but without code of its own (planted: members skipped only when neither callable nor with code crashed on it)."""
    import functools

    class ShorthandNet(TinyNet):
        conv = functools.partial(torch.nn.Conv2d, kernel_size=3, padding=1)

    assert helper_train.model_code_fingerprint(ShorthandNet) == helper_train.model_code_fingerprint(TinyNet)


@pytest.mark.parametrize("make_scheduler, metrics", [
    (lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", patience=0, cooldown=3), [50.0, 40.0]),
    (lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5), [None, None]),
])
def test_identity_ignores_a_lowered_learning_rate_and_the_schedulers_counters(make_scheduler, metrics):
    """A rate lowered by the scheduler (its _last_lr), ReduceLROnPlateau's cooldown and StepLR's step count are
    progress: the lecture's run, lowered at epoch 20 and interrupted, must still continue (planted: each of the three
    left out of SCHEDULER_PROGRESS_KEYS passed every test)."""
    model, optimizer, _, data, settings = setup()
    scheduler = make_scheduler(optimizer)
    before = describe_run(model, optimizer, scheduler, data[0], data[1], device="cpu", settings=settings)
    for metric in metrics:
        optimizer.step()  # no gradients: changes nothing, but keeps the order PyTorch expects
        scheduler.step(*([metric] if metric is not None else []))
    assert optimizer.param_groups[0]["lr"] < 0.05
    assert describe_run(model, optimizer, scheduler, data[0], data[1], device="cpu", settings=settings) == before


def test_splitting_the_parameters_into_groups_is_a_new_run():
    """Same class and rate, two parameter groups instead of one: the saved optimizer state would not even load."""
    model, one_group, scheduler, data, settings = setup()
    two_groups = torch.optim.SGD([{"params": model.features.parameters()}, {"params": model.classifier.parameters()}],
                                 lr=0.05, momentum=0.9)
    one = describe_run(model, one_group, None, data[0], data[1], device="cpu", settings=settings)
    two = describe_run(model, two_groups, None, data[0], data[1], device="cpu", settings=settings)
    assert [line.split(":")[0] for line in helper_train.identity_differences(one, two)] == ["  optimizer"]
    assert "2 parameter group(s)" in two["optimizer"] and run_name(one, {}) != run_name(two, {})


def two_group_sgd(model, classifier_lr=0.005, classifier_weight_decay=0.0):
    """The features at the optimizer's rate, the classifier at its own rate and weight decay."""
    return torch.optim.SGD([{"params": model.features.parameters()},
                            {"params": model.classifier.parameters(), "lr": classifier_lr,
                             "weight_decay": classifier_weight_decay}], lr=0.05, momentum=0.9)


@pytest.mark.parametrize("change, named", [({"classifier_lr": 0.0005}, "group 2: lr x0.1 -> group 2: lr x0.01"),
                                           ({"classifier_weight_decay": 5e-4}, "weight_decay=0.0005")])
def test_a_parameter_group_set_apart_otherwise_is_a_new_run(tmp_path, change, named):
    """The classifier's own rate or weight decay changed: another run, refused in the old run's folder before
    its checkpoint would overwrite the new rate with the old one."""
    model, _, _, data, settings = setup()
    optimizer = two_group_sgd(model)
    train_model(model, 1, *data, optimizer, "cpu", checkpoint_dir=tmp_path)
    model, _, _, data, settings = setup()
    optimizer = two_group_sgd(model, **change)
    with pytest.raises(RunMismatchError, match=r"  optimizer: .*" + re.escape(named)):
        train_model(model, 2, *data, optimizer, "cpu", checkpoint_dir=tmp_path)
    assert optimizer.param_groups[1]["lr"] == change.get("classifier_lr", 0.005) and not optimizer.state


def test_parameter_groups_keep_their_identity_while_the_scheduler_lowers_every_rate():
    """The multiple of the first group's rate stays when the plateau scheduler divides both rates by 10 (twice):
    a finished run's training cell run again still continues the same run."""
    model, _, _, data, settings = setup()
    optimizer = two_group_sgd(model, classifier_lr=0.0035)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, mode="max", patience=0)
    before = describe_run(model, optimizer, scheduler, data[0], data[1], device="cpu", settings=settings)
    for _ in range(3):
        optimizer.step()
        scheduler.step(0.5)
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.0005, 0.000035])
    after = describe_run(model, optimizer, scheduler, data[0], data[1], device="cpu", settings=settings)
    assert after == before and "group 2: lr x0.07" in after["optimizer"]


def test_a_group_beside_a_frozen_first_group_is_described_by_its_rate():
    model, _, _, _, _ = setup()
    optimizer = torch.optim.SGD([{"params": model.features.parameters(), "lr": 0.0},
                                 {"params": model.classifier.parameters()}], lr=0.05)
    assert helper_train.describe_optimizer(optimizer).endswith("; 2 parameter group(s); group 2: lr=0.05)")


def test_a_long_setting_that_changed_is_named_instead_of_cut_off():
    """The optimizer's description is over 120 characters: the message names the items that changed (it used to
    show the first 60 characters of both, the same on each side when momentum changed)."""
    model = torch.nn.Linear(2, 2)
    sgd = [helper_train.describe_optimizer(torch.optim.SGD(model.parameters(), lr=0.1, **extra))
           for extra in ({"momentum": 0.9}, {"momentum": 0.8}, {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-4,
                                                                 "maximize": True})]
    assert helper_train.identity_differences({"optimizer": sgd[0]}, {"optimizer": sgd[1]}) == [
        "  optimizer: momentum=0.9 -> momentum=0.8"]
    assert helper_train.shorten_difference(sgd[0], sgd[2]) == (
        "maximize=False -> maximize=True | nesterov=False, weight_decay=0 -> nesterov=True, weight_decay=0.0001")
    steps = ["Resize(70)", "RandomCrop(64)", "ToTensor()", "Normalize(0.5, 0.5)", "x" * 100]
    with_flip = "\n".join([*steps[:2], "RandomHorizontalFlip(p=0.5)", *steps[2:]])
    assert helper_train.shorten_difference("\n".join(steps), with_flip) == "(nothing) -> RandomHorizontalFlip(p=0.5)"
    many = [f"item{n}={n}" for n in range(30)]
    changed = [f"item{n}={n + 1 if n % 2 else n}" for n in range(30)]
    shortened = helper_train.shorten_difference(", ".join(many), ", ".join(changed))
    assert shortened == "item1=1 -> item1=2 | item3=3 -> item3=4 | item5=5 -> item5=6 (and 12 more)"


def test_an_optimizer_setting_written_as_0_0_is_the_default_0():
    """weight_decay=0.0 trains exactly what the default 0 trains: the same run, as for the notebook's settings."""
    model = torch.nn.Linear(2, 2)
    written_as_floats = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.0, dampening=0.0)
    assert (helper_train.describe_optimizer(written_as_floats)
            == helper_train.describe_optimizer(torch.optim.SGD(model.parameters(), lr=0.1)))


def test_the_identity_records_whether_the_forward_pass_runs_in_mixed_precision(monkeypatch):
    """Mixed precision on a CUDA GPU unless use_amp=False; float32 on the CPU."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # a T4: float16
    model, optimizer, scheduler, data, settings = setup()
    precision = {(device, use_amp): describe_run(model, optimizer, scheduler, data[0], data[1], device=device,
                                                 use_amp=use_amp, settings=settings)["precision"]
                 for device, use_amp in [("cpu", None), ("cuda", None), ("cuda", False)]}
    assert precision == {("cpu", None): "float32", ("cuda", None): "mixed", ("cuda", False): "float32"}


def test_a_parameter_that_the_printout_does_not_show_is_part_of_the_identity():
    """A bare nn.Parameter does not appear in the model's printout; its shape is recorded all the same."""

    class Scaled(TinyNetWithDropout2d):
        def __init__(self, channels):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(channels))

    _, optimizer, scheduler, data, settings = setup()
    small, large = (describe_run(Scaled(channels), optimizer, scheduler, data[0], data[1], device="cpu",
                                 settings=settings) for channels in (8, 16))
    assert small["model"] == large["model"] and run_name(small, {}) != run_name(large, {})


def test_a_pytorch_update_does_not_make_a_new_run(monkeypatch):
    """Only the student's classes count: nn.Module's own code changes with every PyTorch release, and a run must
    continue after `pip install -U torch` (planted: PyTorch's classes hashed too, which passed every test)."""
    before = helper_train.model_code_fingerprint(TinyNetWithDropout2d)
    monkeypatch.setattr(torch.nn.Module, "added_in_a_new_release", lambda self: None, raising=False)
    assert helper_train.model_code_fingerprint(TinyNetWithDropout2d) == before


def test_a_change_in_a_static_method_of_the_model_is_a_new_run():
    """A helper the model calls, written as a @staticmethod, is part of its code like forward."""

    class Doubled(TinyNetWithDropout2d):
        @staticmethod
        def scale(x):
            return x * 2

    class Tripled(TinyNetWithDropout2d):
        @staticmethod
        def scale(x):
            return x * 3

    assert helper_train.model_code_fingerprint(Doubled) != helper_train.model_code_fingerprint(Tripled)


def test_the_dropout2d_rate_is_the_largest_dropout2d_anywhere_in_the_model_not_the_classifiers_dropout():
    """The notebook's VGG-16 has Dropout(0.5) in its classifier: that is not the DROPOUT2D setting, and counting it
    would refuse every run of the lecture's model. Dropout2d layers count wherever they are nested."""
    blocks = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Dropout2d(0.1)),
                                 torch.nn.Sequential(torch.nn.Dropout2d(0.3)))
    assert helper_train.dropout2d_rate(torch.nn.Sequential(blocks, torch.nn.Dropout(0.5))) == 0.3
    assert helper_train.dropout2d_rate(torch.nn.Sequential(torch.nn.Identity(), torch.nn.Dropout(0.5))) == 0.0


def test_a_learning_rate_lowered_by_the_scheduler_still_matches_the_runs_setting():
    """The training cell run again to continue: ReduceLROnPlateau has lowered the optimizer's rate in this session,
    but the run's LEARNING_RATE is the rate the optimizer was built with."""
    model, optimizer, _, (train_loader, _, _), settings = setup(lr=0.05)
    for group in optimizer.param_groups:
        group["lr"] *= 0.1  # as ReduceLROnPlateau does
    assert helper_train.settings_mismatches(settings, model, optimizer, train_loader, 64) == []


def test_a_setting_recorded_only_now_is_a_difference():
    """The other way round from the test above: a checkpoint of a call without settings, continued by the notebook
    with its seed and named settings, is refused too, not silently continued."""
    current = {"model": "TinyNet", "setting: seed": "0"}
    assert helper_train.identity_differences({"model": "TinyNet"}, current) == ["  setting: seed: (not recorded) -> 0"]


def test_a_run_stopped_in_its_first_epoch_is_not_said_to_have_run_without_checkpoints(tmp_path, capsys):
    """CHECKPOINTS = True, Interrupt in epoch 1 (the CPU's LongRunWarning advises it): history.json says so, and
    no checkpoint exists yet. Running again used to print "ran here before without checkpoints", which was not so."""
    identity = identity_of()
    folder = helper_train.choose_run_folder(tmp_path, identity, {})
    folder.mkdir()
    (folder / HISTORY_FILE).write_text(json.dumps({"valid_acc": [], "stopped": "interrupted after 0 of 50 epochs"}))
    capsys.readouterr()
    helper_train.choose_run_folder(tmp_path, identity, {}, checkpoints=True)
    out = capsys.readouterr().out
    assert "without checkpoints" not in out
    assert "an earlier run of these settings stopped before its first epoch ended (interrupted after 0 of 50 " \
           "epochs): this run starts from scratch" in out


@pytest.mark.parametrize("content", ["{not json", "[]", '"text"'])
def test_a_history_that_cannot_be_read_does_not_stop_choosing_the_run_folder(tmp_path, capsys, content):
    """A history.json cut short or edited by hand (not JSON, or JSON but not a dict): choosing the folder says
    that run is replaced, instead of a traceback from the check for a run stopped in its first epoch."""
    identity = identity_of()
    folder = helper_train.choose_run_folder(tmp_path, identity, {})
    folder.mkdir()
    (folder / HISTORY_FILE).write_text(content)
    capsys.readouterr()
    helper_train.choose_run_folder(tmp_path, identity, {}, checkpoints=False)
    assert "these settings ran here before without checkpoints" in capsys.readouterr().out


@pytest.mark.parametrize(("changed_items", "more"), [((1, 3, 5, 7), " (and 1 more)"), ((1, 3, 5), "")])
def test_a_fourth_change_is_counted_not_dropped(changed_items, more):
    """Three changes are named; a fourth is said to be there, or the message hides that one more thing changed.
    Exactly three get no "(and 0 more)" (planted: counted from three changes on passed every test)."""
    many = [f"item{n}={n}" for n in range(30)]
    changed = [f"item{n}={n + 1 if n in changed_items else n}" for n in range(30)]
    assert helper_train.shorten_difference(", ".join(many), ", ".join(changed)) == (
        "item1=1 -> item1=2 | item3=3 -> item3=4 | item5=5 -> item5=6" + more)


def test_a_group_setting_written_as_0_0_is_the_same_run_and_identical_groups_add_nothing():
    """momentum=0.0 and momentum=0 train alike in a second group too (as for the optimizer's own settings), and a
    second group set like the first is not described at all (no empty "group 2: ")."""
    model = torch.nn.Linear(2, 2)
    described = [helper_train.describe_optimizer(torch.optim.SGD(
        [{"params": [model.weight]}, {"params": [model.bias], **extra}], lr=0.1, momentum=0.9))
        for extra in ({"momentum": 0.0}, {"momentum": 0}, {})]
    assert described[0] == described[1] and described[0].endswith("; group 2: momentum=0)")
    assert described[2].endswith("; 2 parameter group(s))")


def test_a_changed_setting_in_brackets_is_named_whole():
    """Adam's betas=(0.9, 0.999) is one setting: changing its second number was reported as "0.999) -> 0.99)",
    without the setting's name."""
    model = torch.nn.Linear(2, 2)
    adam = [helper_train.describe_optimizer(torch.optim.Adam(model.parameters(), lr=0.001, **extra))
            for extra in ({}, {"betas": (0.9, 0.99)})]
    assert helper_train.shorten_difference(*adam) == "betas=(0.9, 0.999) -> betas=(0.9, 0.99)"
    assert helper_train.description_parts("Name(a=[1, (2, 3)], b={'k': 1, 'l': 2}; c)") == [
        "Name", "a=[1, (2, 3)]", "b={'k': 1, 'l': 2}", "c"]


def test_a_run_with_nothing_left_to_train_is_not_compiled(tmp_path, monkeypatch):
    """COMPILE = True (or "auto" on an H200 at 50 epochs), a finished run run again to redraw its figures: it
    compiled first (20 s on an H200, minutes on a CPU) and then found nothing to train."""
    compiled = []
    monkeypatch.setattr(helper_train, "compile_for_training", lambda model, *args: compiled.append(1) or model)
    model, optimizer, scheduler, data, _ = setup()
    train_model(model, 1, *data, optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path)
    model, optimizer, scheduler, data, _ = setup()
    train_model(model, 1, *data, optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path, compile_model=True)
    assert compiled == []
    model, optimizer, scheduler, data, _ = setup()  # with an epoch left to train, it compiles as asked
    train_model(model, 2, *data, optimizer, "cpu", scheduler=scheduler, checkpoint_dir=tmp_path, compile_model=True)
    assert compiled == [1]


def test_a_run_stopped_after_its_first_epoch_is_not_said_to_have_stopped_before_it(tmp_path, capsys):
    """A smoke test interrupted in epoch 2 finished an epoch: it ran without checkpoints, and its history (one epoch)
    is what this run replaces."""
    identity = identity_of()
    folder = helper_train.choose_run_folder(tmp_path, identity, {})
    folder.mkdir()
    (folder / HISTORY_FILE).write_text(json.dumps({"valid_acc": [40.0], "stopped": "interrupted after 1 of 3 epochs"}))
    capsys.readouterr()
    helper_train.choose_run_folder(tmp_path, identity, {}, checkpoints=False)
    out = capsys.readouterr().out
    assert "these settings ran here before without checkpoints" in out and "before its first epoch" not in out


# --- review: mutmut on helper_train (each test below failed on a mutant that passed every test before) --------------


def test_the_run_folder_lines_name_the_folder_and_each_changed_setting(tmp_path, capsys):
    """The second line is how a student checks that a change took effect; settings outside the defaults (a name the
    lecture lacks) are not "changes" (planted: the list always empty, or its filter inverted, passed every test)."""
    settings = {"seed": 123, "batch_size": 256, "learning_rate": 0.1, "dropout2d": 0.2, "my_note": "x"}
    folder = helper_train.choose_run_folder(tmp_path, identity_of(), settings)
    assert capsys.readouterr().out.splitlines()[:2] == [
        f"This run's folder: {folder}",
        "  settings that differ from the lecture's: learning_rate=0.1, dropout2d=0.2 (the six characters at the end "
        "identify all settings)"]
    assert folder.name.startswith("learning_rate=0.1_dropout2d=0.2-")


def test_a_run_name_keeps_only_characters_that_are_safe_in_a_folder_name():
    """A setting's value may hold "/" or spaces (a path, a transform's text): the folder must stay one folder under
    RESULTS_DIR, and its name no longer than 80 characters before the hash (planted: every character kept, "/"
    included, passed every test)."""
    identity = {"anything": "x"}
    name = run_name(identity, {"normalization": "mean=(0.49, 0.48)/std x"})
    assert name == f"normalization=mean=-0.49--0.48--std-x-{helper_train.run_hash(identity)}"
    long = run_name(identity, {"normalization": "n" * 200})
    assert long == f"normalization={'n' * 66}-{helper_train.run_hash(identity)}" and len(long) == 80 + 7


def test_a_run_name_with_many_changed_settings_names_whole_settings_and_counts_the_rest():
    """Six changed settings are 108 characters: the name keeps the first ones whole and counts the others (planted:
    the name cut at 80 characters mid-value, "..._normalization=per-chan", as it used to be)."""
    identity = {"anything": "x"}
    settings = {"seed": 7, "batch_size": 128, "learning_rate": 0.005, "dropout2d": 0.2,
                "normalization": "per-channel mean and std", "image_size": 32}
    assert run_name(identity, settings) == (
        f"seed=7_batch_size=128_learning_rate=0.005_dropout2d=0.2_and-2-more-{helper_train.run_hash(identity)}")
    fits = {name: settings[name] for name in ("seed", "batch_size", "learning_rate", "image_size")}
    assert run_name(identity, fits) == (
        f"seed=7_batch_size=128_learning_rate=0.005_image_size=32-{helper_train.run_hash(identity)}")
    exactly_80 = {"seed": 7, "normalization": "n" * 59}  # "seed=7_normalization=nnn...": 80 characters, kept whole
    assert run_name(identity, exactly_80) == f"seed=7_normalization={'n' * 59}-{helper_train.run_hash(identity)}"
    assert run_name(identity, {"seed": 7, "normalization": "n" * 60}) == (  # 81: counted instead
        f"seed=7_and-1-more-{helper_train.run_hash(identity)}")


def test_a_set_in_the_model_code_gives_the_same_fingerprint_in_every_session(tmp_path):
    """Python orders a set of strings differently in each session (hash randomization): a model whose forward() tests
    `mode in {"a", "b", "c"}` would get a new identity, and a new folder, every time the notebook runs (planted: the
    set's order kept, or every set written as None, passed every test)."""
    code = ("import helper_train\n"
            "def forward(x, mode='a'):\n"
            "    return x if mode in {'relu', 'gelu', 'silu', 'tanh', 'elu'} else -x\n"
            "print(helper_train.bytecode_summary(forward.__code__))\n")
    root = Path(__file__).resolve().parents[1]
    summaries = {subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
                                env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2, 3)}
    assert len(summaries) == 1 and "'elu', 'gelu', 'relu', 'silu', 'tanh'" in summaries.pop()


def test_a_checkpoint_of_other_settings_is_refused_with_every_difference_and_the_ways_on(tmp_path):
    """The whole message (planted: any of its sentences changed, or the differences not on their own lines, passed)."""
    path = tmp_path / CHECKPOINT_FILE
    with pytest.raises(helper_train.RunMismatchError) as error:
        helper_train.check_same_run(path, {"lr": "0.01", "seed": "1"}, {"lr": "0.1", "seed": "2"})
    assert str(error.value) == (
        f"The checkpoint '{path}' belongs to a run with other settings, so continuing it would mix two different "
        "runs:\n  lr: 0.01 -> 0.1\n  seed: 1 -> 2\nEither train the new settings in another folder (the notebooks "
        "do this by themselves: each configuration gets its own folder under RESULTS_DIR), or delete this folder's "
        "checkpoint to start this folder over.")


def test_objects_built_with_other_settings_are_refused_with_each_mismatch_on_its_own_line():
    """The whole message (planted: its first sentences changed, or the mismatches run together on one line, passed:
    the test above looks only at its end)."""
    model, optimizer, _, (train_loader, _, _), _ = setup(lr=0.001, batch_size=32)
    with pytest.raises(RunMismatchError) as error:
        helper_train.check_objects_match_settings({"learning_rate": 0.002, "batch_size": 256}, model, optimizer,
                                                  train_loader, 64)
    assert str(error.value).startswith(
        "The model, optimizer or data were not built with the run's settings:\n"
        "  batch_size = 256 in the run's settings, but the training loader's batch size is 32\n"
        "  learning_rate = 0.002 in the run's settings, but the optimizer was built with lr=0.001\n"
        "A setting was probably changed and only some of the cells below it were run again. In the notebook, run ")


def test_a_group_that_differs_in_two_ways_names_both_apart():
    """Planted: the group's differences joined by anything but ", " passed every test, all with one difference."""
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD([{"params": [model.weight]}, {"params": [model.bias], "lr": 0.01, "momentum": 0.5}],
                                lr=0.1, momentum=0.9)
    assert helper_train.describe_optimizer(optimizer).endswith("; group 2: lr x0.1, momentum=0.5)")


def test_the_history_records_the_gpu_and_the_precision_it_trained_in(tmp_path):
    """The run table and the README's results read these from history.json (planted: the device written as "cpu",
    which every CPU test records anyway, passed every test)."""
    info = helper_train.make_run_info(tmp_path / "lecture-abc123" / HISTORY_FILE, {"seed": 123}, {"model": "m"},
                                      torch.device("cuda", 0), torch.bfloat16, 175, 50)
    assert info == {"run_name": "lecture-abc123", "settings": {"seed": 123}, "identity": {"model": "m"},
                    "device": "cuda:0", "precision": "bfloat16", "iter_per_epoch": 175, "num_epochs": 50,
                    "test_acc": None}


# --- found by a review's planted bugs (each passed every test before) ------------------------------------------------


def test_a_third_parameter_group_set_apart_is_described_too():
    """Every group after the first is compared with the first, not only the second: a third group's own rate
    or weight decay is another run (planted: param_groups[:2])."""
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    optimizer = torch.optim.SGD([{"params": model[0].parameters()}, {"params": model[1].parameters()},
                                 {"params": model[2].parameters(), "lr": 0.005, "weight_decay": 5e-4}],
                                lr=0.05, momentum=0.9)
    assert helper_train.describe_optimizer(optimizer).endswith(
        "; 3 parameter group(s); group 3: lr x0.1, weight_decay=0.0005)")


def test_close_but_different_group_rates_are_different_runs():
    """The rate multiple keeps six significant digits: a classifier at 1.21x the rate is not the run at 1.22x
    (planted: two digits)."""
    first = {"lr": 0.01}
    assert helper_train.describe_group({"lr": 0.0121}, first) == "lr x1.21"
    assert helper_train.describe_group({"lr": 0.0122}, first) == "lr x1.22"
    assert helper_train.describe_group({"lr": 0.0123456}, first) == "lr x1.23456"


def test_the_batch_size_recorded_is_the_training_loaders():
    """Only the training loader's batch size defines the run, not the validation loader's (planted: read from the
    validation loader)."""
    model, optimizer, scheduler, (train_loader, valid_loader, _), _ = setup()
    small_train, _, _ = loaders(batch_size=16)
    base = describe_run(model, optimizer, scheduler, train_loader, valid_loader, device="cpu")
    smaller = describe_run(model, optimizer, scheduler, small_train, valid_loader, device="cpu")
    assert (base["batch_size"], smaller["batch_size"]) == ("32", "16")
    assert run_name(base, {}) != run_name(smaller, {})


def test_a_setting_written_as_another_type_of_the_same_number_is_no_change():
    """DROPOUT2D = 0 is the lecture's 0.0, and LEARNING_RATE = np.float64(0.01) its 0.01: neither is named in the
    run's folder (planted: the settings compared as text)."""
    settings = {**LECTURE_SETTINGS, "dropout2d": 0, "learning_rate": np.float64(0.01), "batch_size": 256.0}
    assert helper_train.changed_settings(settings, LECTURE_SETTINGS) == {}
    assert run_name({"model": "x"}, settings).startswith("lecture-")


def test_a_difference_of_two_values_of_120_characters_is_shown_whole():
    """Up to 120 characters on each side, the two values are shown as they are (planted: < 120)."""
    old, new = "a" * 119 + "1", "a" * 119 + "2"
    assert helper_train.shorten_difference(old, new) == f"{old} -> {new}"


def test_a_long_value_beside_a_short_one_is_shortened():
    """A setting not recorded in the old run, long in the new one (a model's printout): the message names what is
    new, cut to 100 characters, instead of printing the whole printout (planted: 'or' for 'and')."""
    printout = "\n".join(f"  (layer{n}): Conv2d(64, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"
                         for n in range(20))
    shortened = helper_train.shorten_difference("(not recorded)", printout)
    assert shortened.startswith("(not recorded) -> (layer0): Conv2d(64, 64") and len(shortened) <= 120


def test_long_values_that_differ_only_in_spacing_show_their_beginnings():
    """Nothing but spacing differs: the difference cannot be named item by item, so both beginnings are shown
    (planted: an empty difference)."""
    items = [f"item{n}={n}" for n in range(30)]
    old, new = ", ".join(items), ",  ".join(items)
    assert helper_train.shorten_difference(old, new) == f"{old[:60]}... -> {new[:60]}..."
