"""helper_evaluation: reading every run's history.json and printing the runs side by side."""

import json
import math
import re

import pytest

from helper_evaluation import load_run_histories, print_run_table


def make_history(run_name, valid_acc, *, test_acc=None, epoch_seconds=None, learning_rate=None):
    """A history.json as train_model writes it (the fields this module reads, plus the rest)."""
    return {
        "run_name": run_name,
        "settings": {"learning_rate": 0.01, "batch_size": 256},
        "minibatch_loss": [2.3, 2.1],
        "train_acc": [acc + 2.0 for acc in valid_acc],
        "valid_acc": valid_acc,
        "iter_per_epoch": 1,
        "epoch_seconds": epoch_seconds if epoch_seconds is not None else [30.0] * len(valid_acc),
        "learning_rate": learning_rate if learning_rate is not None else [0.01] * len(valid_acc),
        "test_acc": test_acc,
        "device": "cpu",
        "precision": "float32",
    }


def write_run(results_dir, folder, history):
    """Write ``history`` to results_dir/folder/history.json."""
    path = results_dir / folder / "history.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(history))


def test_no_runs_is_an_empty_dict(tmp_path):
    assert load_run_histories(tmp_path) == {}
    assert load_run_histories(tmp_path / "results not made yet") == {}


def test_one_run_is_read_with_everything_it_holds(tmp_path):
    history = make_history("lr=0.01", [40.0, 50.0], test_acc=49.5)
    write_run(tmp_path, "lr=0.01", history)
    assert load_run_histories(tmp_path) == {"lr=0.01": history}


def test_runs_are_keyed_by_run_name_and_sorted_by_it(tmp_path):
    write_run(tmp_path, "a-folder", make_history("zeta", [10.0]))
    write_run(tmp_path, "z-folder", make_history("alpha", [20.0]))
    no_name = make_history(None, [30.0])
    del no_name["run_name"]
    write_run(tmp_path, "middle", no_name)
    (tmp_path / "history.json").write_text(json.dumps(make_history("not in a run folder", [1.0])))
    histories = load_run_histories(tmp_path)
    assert list(histories) == ["alpha", "middle", "zeta"]
    assert histories["alpha"]["valid_acc"] == [20.0] and histories["middle"]["valid_acc"] == [30.0]


def test_two_folders_with_one_run_name_are_both_kept(tmp_path):
    write_run(tmp_path, "baseline", make_history("baseline", [10.0]))
    write_run(tmp_path, "baseline-copy", make_history("baseline", [20.0]))
    assert load_run_histories(tmp_path) == {"baseline": make_history("baseline", [10.0]),
                                            "baseline (baseline-copy)": make_history("baseline", [20.0])}


@pytest.mark.parametrize(
    "content",
    [b'{"run_name": "cut off", "valid_acc": [40.0, 5', b"[1, 2, 3]", b'{"run_name": "no accuracies"}', b"\xff\xfe\x00",
     b'{"run_name": "edited by hand", "valid_acc": null}'],
    ids=["truncated", "not an object", "no valid_acc", "not text", "valid_acc not a list"],
)
def test_a_file_that_cannot_be_read_is_skipped_with_a_line_naming_it(tmp_path, capsys, content):
    write_run(tmp_path, "good", make_history("good", [40.0]))
    bad = tmp_path / "broken" / "history.json"
    bad.parent.mkdir()
    bad.write_bytes(content)
    assert list(load_run_histories(tmp_path)) == ["good"]
    assert f"Skipped {bad}" in capsys.readouterr().out


@pytest.mark.parametrize(("content", "reason"), [
    (b"[1, 2, 3]", "(not a JSON object)"),
    (b'{"run_name": "no accuracies"}', "(no per-epoch validation accuracy ('valid_acc'))"),
    # edited by hand: each of these stopped the comparison cell with a TypeError or ValueError (a review)
    (b'{"valid_acc": [40.0, "45"]}', "('valid_acc' holds something other than numbers)"),
    (b'{"valid_acc": [40.0, true]}', "('valid_acc' holds something other than numbers)"),
    (b'{"valid_acc": [40.0], "test_acc": "51"}', "('test_acc' is neither a number nor null)"),
    (b'{"valid_acc": [40.0], "epoch_seconds": "60"}', "('epoch_seconds' is not a list of numbers)"),
    (b'{"valid_acc": [40.0], "epoch_seconds": [60, null]}', "('epoch_seconds' is not a list of numbers)"),
    (b'{"valid_acc": [40.0], "stopped": 3}', "('stopped' is not a text)"),
])
def test_the_skipped_line_says_what_the_file_lacks(tmp_path, capsys, content, reason):
    """The student opens the file to fix it: the line says what is wrong with it (planted: either reason replaced by
    None, which printed "(None)", passed every test)."""
    bad = tmp_path / "edited" / "history.json"
    bad.parent.mkdir()
    bad.write_bytes(content)
    load_run_histories(tmp_path)
    assert capsys.readouterr().out == f"Skipped {bad}: cannot read it as a run history {reason}.\n"


def table_rows(capsys):
    return [re.split(r"\s{2,}", line.strip()) for line in capsys.readouterr().out.splitlines()]


def test_run_table_has_one_row_per_run_with_final_best_test_and_minutes(capsys):
    print_run_table({
        "baseline": make_history("baseline", [40.0, 55.5, 50.25], test_acc=51.0, epoch_seconds=[60.0, 60.0, 60.0]),
        "lr=0.1 (running)": make_history("lr=0.1 (running)", [10.0], test_acc=None, epoch_seconds=[90.0]),
    })
    header, *rows = table_rows(capsys)
    assert header == ["run", "epochs", "final valid", "best valid (epoch)", "test", "training min", "lr changed after"]
    assert rows == [["baseline", "3", "50.25%", "55.50% (2)", "51.00%", "3.0", "-"],
                    ["lr=0.1 (running)", "1", "10.00%", "10.00% (1)", "-", "1.5", "-"]]


@pytest.mark.parametrize("extra, cell", [
    ({"num_epochs": 50}, "unfinished: 3 of 50 epochs"),  # ended without a word: a crash, a lost connection
    ({"num_epochs": 50, "test_acc": 51.0}, "51.00%"),
    ({"num_epochs": 50, "test_acc": 0.0}, "0.00%"),  # a diverged run's 0%, not "unfinished"
    ({"num_epochs": 2}, "unfinished: no test pass"),  # NUM_EPOCHS lowered, then a crash in the test pass
    ({"num_epochs": 3}, "unfinished: no test pass"),  # every epoch trained, the session ended in the test pass
    ({"num_epochs": 1}, "unfinished: no test pass"),  # NUM_EPOCHS = 1, a quick check, that ended the same way
    ({"num_epochs": "50"}, "-"),  # edited by hand
    ({"num_epochs": 50, "stopped": "interrupted after 3 of 50 epochs"}, "interrupted after 3 of 50 epochs"),
    ({}, "-"),  # a history written before train_model recorded num_epochs
])
def test_run_table_says_a_run_without_a_test_accuracy_is_unfinished_when_it_knows(capsys, extra, cell):
    print_run_table({"run": {**make_history("run", [40.0, 45.0, 50.0]), **extra}})
    assert table_rows(capsys)[1][4] == cell


def test_run_table_of_a_run_without_epochs_or_timings(capsys):
    history = make_history("just started", [], epoch_seconds=[])
    print_run_table({"just started": history})
    assert table_rows(capsys)[1] == ["just started", "0", "-", "-", "-", "-", "-"]


def test_run_table_says_why_a_diverged_run_has_no_test_accuracy(capsys):
    print_run_table({"learning_rate=10-abc123": {**make_history("learning_rate=10-abc123", []),
                                                 "stopped": "diverged in epoch 1"}})
    row = capsys.readouterr().out.splitlines()[1]
    assert row.split()[:5] == ["learning_rate=10-abc123", "0", "-", "-", "diverged"]


def test_run_table_shows_an_accuracy_of_zero_as_0_percent_not_as_unknown(capsys):
    """A run that diverged has 0.00% accuracy; "-" would say that it has not been measured yet."""
    print_run_table({"diverged": make_history("diverged", [0.0], test_acc=0.0, epoch_seconds=[30.0])})
    assert table_rows(capsys)[1] == ["diverged", "1", "0.00%", "0.00% (1)", "0.00%", "0.5", "-"]


def test_run_table_columns_line_up_under_their_headers(capsys):
    """Run names are left-aligned and the numbers right-aligned under headers wider than themselves."""
    print_run_table({"baseline": make_history("baseline", [40.0, 55.5], test_acc=51.0),
                     "lr=0.1": make_history("lr=0.1", [10.0])})
    lines = capsys.readouterr().out.splitlines()
    assert len({len(line) for line in lines}) == 1, lines  # every column as wide as its widest cell or header
    assert [line.split()[0] for line in lines] == ["run", "baseline", "lr=0.1"]
    assert all(line[0] != " " for line in lines), lines
    header = lines[0]
    for title in ["epochs", "final valid", "test", "training min", "lr changed after"]:
        end = header.index(title) + len(title)
        assert all(line[end - 1] != " " for line in lines), (title, lines)  # each number ends under its header's end


def test_run_table_of_a_history_with_only_validation_accuracies(capsys):
    """read_history asks for nothing but valid_acc, so a hand-made or older history must print too."""
    print_run_table({"by hand": {"valid_acc": [30.0, 45.0]}})
    assert table_rows(capsys)[1] == ["by hand", "2", "45.00%", "45.00% (2)", "-", "-", "?"]


def test_run_table_without_runs_says_so(capsys):
    print_run_table({})
    expected = "No runs to compare yet: each training run writes RESULTS_DIR/<run name>/history.json.\n"
    assert capsys.readouterr().out == expected


# --- review: mutation testing (each test below failed on a planted bug that passed before) ------------------------


def test_a_run_whose_run_name_is_null_is_named_after_its_folder(tmp_path):
    """train_model writes "run_name": null for a history_file outside a run folder (planted: .get("run_name", folder)
    passed, which names such a run "None")."""
    write_run(tmp_path, "my-run", make_history(None, [30.0]))
    assert list(load_run_histories(tmp_path)) == ["my-run"]


def test_run_table_best_epoch_is_the_first_of_equal_bests(capsys):
    """Two epochs at the best accuracy: the earlier one is where the best weights were saved (an epoch is the best
    only when it beats every earlier one); planted: the last of the ties passed."""
    print_run_table({"plateau": make_history("plateau", [40.0, 55.5, 55.5, 50.0])})
    assert table_rows(capsys)[1][3] == "55.50% (2)"


def test_run_table_minutes_are_the_sum_of_unequal_epochs(capsys):
    """The first epoch is often slower (cuDNN benchmarking, compiling): minutes add up each epoch's own time
    (planted: epochs x the last epoch's time passed: every tested run had equal epochs)."""
    print_run_table({"compiled": make_history("compiled", [40.0, 50.0, 60.0], epoch_seconds=[420.0, 90.0, 90.0])})
    assert table_rows(capsys)[1][5] == "10.0"  # 600 s; and not 9.8, which dividing by 61 gave (3.0 did not tell)


def test_run_table_keeps_the_order_it_is_given(capsys):
    """load_run_histories sorts the runs by name; the table shows them in that order (planted: rows sorted by epochs,
    most first, passed: the run with more epochs always came first)."""
    print_run_table({"a short run": make_history("a short run", [10.0]),
                     "b long run": make_history("b long run", [10.0, 20.0, 30.0])})
    assert [row[0] for row in table_rows(capsys)[1:]] == ["a short run", "b long run"]


def test_a_run_name_edited_into_a_number_is_compared_as_text(tmp_path):
    """A hand-edited "run_name": 7 beside named runs: sorting a number with text would stop the comparison (planted:
    str() dropped passed every test)."""
    write_run(tmp_path, "a", make_history(7, [10.0]))
    write_run(tmp_path, "b", make_history("baseline", [20.0]))
    assert list(load_run_histories(tmp_path)) == ["7", "baseline"]


def test_other_json_files_in_a_run_folder_are_not_histories(tmp_path, capsys):
    """Only history.json is a run's history: another JSON file beside it is neither read nor reported (planted: every
    */*.json read passed every test)."""
    write_run(tmp_path, "baseline", make_history("baseline", [20.0]))
    (tmp_path / "baseline" / "notes.json").write_text(json.dumps({"note": "tried a higher rate"}))
    assert list(load_run_histories(tmp_path)) == ["baseline"]
    assert capsys.readouterr().out == ""


def test_a_history_edited_by_hand_in_utf8_keeps_its_run_name(tmp_path):
    """An editor saves UTF-8: a run named "lr=0.1 – café" must not come back as mojibake (planted: read as latin-1
    passed every test: train_model writes JSON in plain ASCII)."""
    path = tmp_path / "cafe" / "history.json"
    path.parent.mkdir()
    path.write_text(json.dumps(make_history("lr=0.1 – café", [30.0]), ensure_ascii=False), encoding="utf-8")
    assert list(load_run_histories(tmp_path)) == ["lr=0.1 – café"]


def test_a_history_that_cannot_be_opened_is_skipped_with_a_line_naming_it(tmp_path, capsys):
    """An OSError (here a folder named history.json) is skipped like a damaged file (planted: only ValueError caught
    passed every test: every unreadable history tested could be opened)."""
    write_run(tmp_path, "good", make_history("good", [40.0]))
    (tmp_path / "odd" / "history.json").mkdir(parents=True)
    assert list(load_run_histories(tmp_path)) == ["good"]
    assert f"Skipped {tmp_path / 'odd' / 'history.json'}" in capsys.readouterr().out


@pytest.mark.parametrize("rates, shown", [
    ([0.01] * 39 + [0.001] * 11, "39"),  # the Dropout2d reference run's plateau, replayed
    ([0.01] * 28 + [0.001] * 11 + [0.0001] * 11, "28, 39"),
    ([0.01] * 50, "-"),
    ([0.001, 0.002, 0.002] + [0.002] * 47, "1"),  # raised (a warm-up) counts as a change too
    ([0.01] * 20, "?"),  # continued from a checkpoint written before rates were recorded: one per epoch or none
    ([0.01 * (1 + math.cos(math.pi * epoch / 50)) / 2 for epoch in range(50)], "1-49"),  # cosine: not 49 numbers
    ([0.001, 0.002, 0.003, 0.004] + [0.004] * 26 + [0.0004] * 20, "1-3, 30"),  # warm-up, then a plateau
    (None, "?"),
])
def test_run_table_says_after_which_epochs_the_learning_rate_changed(capsys, rates, shown):
    """Dropout2d's 83.6% against 81.4% came with a rate lowered after epoch 39, which the table did not show."""
    history = make_history("run", [50.0 + epoch / 10 for epoch in range(50)], learning_rate=rates)
    if rates is None:
        del history["learning_rate"]
    print_run_table({"run": history})
    assert table_rows(capsys)[1][-1] == shown


# --- review 7: planted bugs in helper_evaluation that passed every test ---------------------------------------------


def test_two_consecutive_changes_of_the_learning_rate_are_both_shown(capsys):
    """Epochs 1 and 2 are "1-2", not one of them (planted: ranges merged only from three epochs on passed every test,
    none of which had a range of exactly two)."""
    print_run_table({"warm-up": {"valid_acc": [50.0] * 6,
                                 "learning_rate": [0.001, 0.002, 0.004, 0.004, 0.004, 0.004]}})
    assert capsys.readouterr().out.splitlines()[1].split()[-1] == "1-2"


@pytest.mark.parametrize("history", [{"valid_acc": [], "num_epochs": 0, "test_acc": None},
                                     {"valid_acc": [40.0], "num_epochs": -5, "test_acc": None}])
def test_an_impossible_number_of_planned_epochs_is_shown_as_unknown(history):
    """train_model refuses fewer than one epoch; a history edited by hand says nothing about the run's outcome
    (planted: the guard removed passed every test)."""
    from helper_evaluation import outcome_cell

    assert outcome_cell(history) == "-"
