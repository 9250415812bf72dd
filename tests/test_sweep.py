"""kdviz.sweep: grids of configs, stable run keys, resuming, the process pool, and `kdviz sweep`."""
from __future__ import annotations

import json
import shutil
import threading
import time

import pytest

from kdviz import runs
from kdviz.experiment import RunConfig
from kdviz.files import file_sha256
from kdviz.settings import default_max_jobs
from kdviz.sweep import (
    JobSlots,
    LocalExecutor,
    RunFailed,
    RunFinished,
    RunProgress,
    RunStarted,
    SweepFinished,
    SweepStarted,
    check_config,
    finished_runs,
    grid,
    grid_from_spec,
    run_key,
    run_sweep,
    sweep_file,
)
from kdviz.train import EpochDone, StepDone, TrainSettings

from conftest import kdviz

TINY = {"dataset": "digits", "student": "mlp-30", "epochs": 1, "batch_size": 64, "device": "cpu"}


# --------------------------------------------------------------------------- grids and keys
def test_grid_crosses_methods_settings_and_seeds():
    configs = grid(TINY, method=["baseline", "kd"], T=[2, 4], fraction=[0.5, 1.0], seeds=[0, 1])
    # baseline has no T: one baseline per fraction and seed, not one per T
    assert len(configs) == 2 * 2 + 2 * 2 * 2
    baseline = [c for c in configs if c.method == "baseline"]
    assert all(c.params == {} and c.teacher is None for c in baseline)
    kd = [c for c in configs if c.method == "kd"]
    assert {(c.params["T"], c.fraction, c.train.seed) for c in kd} == {(t, f, s) for t in (2, 4) for f in (0.5, 1.0)
                                                                         for s in (0, 1)}
    assert all(c.teacher == "digits-cnn" for c in kd)  # the shipped teacher of the data set
    assert [c.train.seed for c in configs[:4]] == [0, 1, 0, 1]  # seeds vary fastest
    assert all(c.train.epochs == 1 and c.train.batch_size == 64 and c.student == "mlp-30" for c in configs)
    assert len({run_key(c) for c in configs}) == len(configs)


def test_grid_names_any_field_and_refuses_unknown_ones():
    configs = grid(RunConfig("digits", "mlp-30", method="at+kd", teacher="digits-cnn"),
                   **{"at.beta": [100, 1000], "train.lr": 0.05, "dataset": ["digits"], "hide_labels": [False, True]})
    assert [(c.params["at.beta"], c.hide_labels) for c in configs] == [(100, False), (100, True), (1000, False),
                                                                      (1000, True)]
    assert all(c.train.lr == 0.05 and c.teacher == "digits-cnn" for c in configs)
    with pytest.raises(ValueError, match="sweep field 'temprature' is neither"):
        grid(TINY, method=["kd"], temprature=[2, 4])
    with pytest.raises(ValueError, match="unknown method 'kdd'"):
        grid(TINY, method=["kdd"])
    with pytest.raises(ValueError, match="needs a student"):
        grid({"dataset": "digits"}, seed=[0])


def test_run_key_is_stable_across_spellings_and_a_json_round_trip():
    a = RunConfig("digits", "mlp-30", "kd", {"T": 4, "alpha": 0.9}, "digits-cnn", TrainSettings(epochs=1),
                  omit_classes=(3,))
    b = RunConfig("digits", "mlp-30", "kd", {"alpha": 0.9, "T": 4.0}, "digits-cnn", TrainSettings(epochs=1.0),
                  omit_classes=[3])
    assert run_key(a) == run_key(b) == run_key(json.loads(json.dumps(a.to_dict())))
    assert run_key(a) != run_key(RunConfig("digits", "mlp-30", "kd", {"T": 4, "alpha": 0.9}, "digits-cnn",
                                           TrainSettings(epochs=1, seed=1), omit_classes=(3,)))
    assert len(grid(TINY, method=["baseline", "baseline"], seed=[0, 0])) == 1
    # a hyperparameter at its default is the same run as one left out
    assert run_key(RunConfig("digits", "mlp-30", "kd", {"T": 4.0}, "digits-cnn")) == \
        run_key(RunConfig("digits", "mlp-30", "kd", {}, "digits-cnn"))
    assert run_key(RunConfig("digits", "mlp-30", "at+kd", {"kd.T": 2.0}, "digits-cnn")) == \
        run_key(RunConfig("digits", "mlp-30", "at+kd", {"T": 2}, "digits-cnn"))


def test_sweep_files(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text('dataset = "digits"\nstudent = "mlp-30"\nepochs = 1\nmethods = ["baseline", "kd"]\n'
                    'seeds = [0, 1]\nalpha = [0.5, 0.9]\nomit_classes = [3]\n')
    configs = grid_from_spec(sweep_file(toml))
    assert len(configs) == 2 + 4 and all(c.omit_classes == (3,) for c in configs)
    (tmp_path / "s.json").write_text(json.dumps({"dataset": "digits", "student": "mlp-30", "seed": [3]}))
    assert [c.train.seed for c in grid_from_spec(sweep_file(tmp_path / "s.json"))] == [3]
    (tmp_path / "bad.toml").write_text("dataset = [")
    with pytest.raises(ValueError, match="is not valid TOML"):
        sweep_file(tmp_path / "bad.toml")
    (tmp_path / "binary.toml").write_bytes(bytes(range(128, 256)))
    with pytest.raises(ValueError, match="binary.toml is not a text file"):
        sweep_file(tmp_path / "binary.toml")


@pytest.mark.parametrize("change,message", [
    ({"dataset": "nope"}, "unknown dataset 'nope'"),
    ({"student": "vgg"}, "unknown model 'vgg'"),
    ({"method": "kd", "params": {"T": 0}}, "T must be in"),
    ({"method": "kd", "params": {"beta": 3}}, "no part of 'kd' has a hyperparameter 'beta'"),
    ({"method": "kd", "teacher": "no-such-teacher"}, "teacher 'no-such-teacher' is neither"),
    ({"method": "kd", "dataset": "digits", "teacher": None}, "needs a teacher"),
    ({"fraction": 0.0}, "fraction must be a number in (0, 1]"),
    ({"epochs": 0}, "epochs must be at least 1"),
])
def test_check_config_refuses_bad_runs_before_training(change, message):
    settings = {"dataset": "digits", "student": "mlp-30"} | change
    config = RunConfig(**{k: v for k, v in settings.items() if k != "epochs"},
                       train=TrainSettings(epochs=settings.get("epochs", 1)))
    with pytest.raises(ValueError) as error:
        check_config(config)
    assert message in str(error.value)


# --------------------------------------------------------------------------- running and resuming
def test_sweep_in_process_yields_events_and_records(tmp_path):
    configs = grid(TINY, method=["baseline"], seed=[0, 1])
    events = list(run_sweep(configs, LocalExecutor(), tmp_path / "runs"))
    assert isinstance(events[0], SweepStarted) and (events[0].total, events[0].to_run) == (2, 2)
    assert isinstance(events[-1], SweepFinished) and events[-1].failed == 0
    assert [type(e) for e in events if not isinstance(e, RunProgress)] == [SweepStarted, RunStarted, RunFinished,
                                                                           RunStarted, RunFinished, SweepFinished]
    assert sum(isinstance(e, RunProgress) and isinstance(e.event, EpochDone) for e in events) == 2
    records = events[-1].records
    assert [r["seed"] for r in records] == [0, 1] and records[0]["test_acc"] != records[1]["test_acc"]
    for record, config in zip(records, configs):
        saved = runs.load_run(record["id"], tmp_path / "runs")
        assert saved["runner"]["sweep_key"] == run_key(config) and saved["runner"]["executor"] == "local"
        assert run_key(saved["config"]) == run_key(config)
        assert runs.run_checkpoint(record["id"], tmp_path / "runs").is_file()


def test_an_interrupted_sweep_resumes_where_it_stopped(tmp_path):
    runs_dir = tmp_path / "runs"
    configs = grid(TINY, method=["baseline"], seed=[0, 1, 2])
    first = None
    for event in run_sweep(configs, LocalExecutor(), runs_dir):
        if isinstance(event, RunFinished):
            first = event.record
            break  # the sweep is interrupted after one run
    assert len(finished_runs(runs_dir)) == 1
    # a stopped run (ended early, record kept) is not finished: the resumed sweep runs it again
    stop = threading.Event()
    for event in run_sweep(configs[1:2], LocalExecutor(), runs_dir, stop=stop):
        if isinstance(event, RunProgress):
            stop.set()
    assert [r["stopped"] for r in runs.list_runs(runs_dir) if r["seed"] == 1] == [True]

    events = list(run_sweep(configs, LocalExecutor(), runs_dir))
    done = [e for e in events if isinstance(e, RunFinished)]
    assert [(e.index, e.skipped) for e in done] == [(0, True), (1, False), (2, False)]
    assert done[0].record["id"] == first["id"] and done[0].record["test_acc"] == first["test_acc"]
    assert sum(isinstance(e, RunStarted) for e in events) == 2
    again = list(run_sweep(configs, LocalExecutor(), runs_dir))
    assert again[0].to_run == 0 and all(e.skipped for e in again if isinstance(e, RunFinished))
    assert [r["id"] for r in again[-1].records] == [e.record["id"] for e in done]
    fresh = list(run_sweep(configs[:1], LocalExecutor(), runs_dir, resume=False))
    assert fresh[0].to_run == 1 and fresh[-1].records[0]["id"] != first["id"]
    assert fresh[-1].records[0]["test_acc"] == first["test_acc"]  # deterministic on CPU


def test_a_run_taught_by_a_replaced_teacher_is_not_taken_as_finished(tmp_path):
    """Resuming matches configs by key, and a config names its teacher only by name: the record
    keeps the sha256 of the teacher's weights, and a teacher file changed since is trained again."""
    runs_dir = tmp_path / "runs"
    teachers = list(run_sweep(grid(TINY, method=["baseline"], seed=[0, 1]), LocalExecutor(), runs_dir))[-1].records
    teacher = tmp_path / "teacher.pt"
    shutil.copyfile(teachers[0]["checkpoint"], teacher)
    kd = grid(TINY | {"teacher": str(teacher)}, method=["kd"], seed=[0])
    first = list(run_sweep(kd, LocalExecutor(), runs_dir))[-1].records[0]
    assert first["teacher_sha256"] == file_sha256(teacher) == teachers[0]["checkpoint_sha256"]
    assert list(run_sweep(kd, LocalExecutor(), runs_dir))[0].to_run == 0  # same weights: resumed

    shutil.copyfile(teachers[1]["checkpoint"], teacher)  # same name, other weights
    events = list(run_sweep(kd, LocalExecutor(), runs_dir))
    assert events[0].to_run == 1
    again = events[-1].records[0]
    assert again["id"] != first["id"] and again["teacher_sha256"] == teachers[1]["checkpoint_sha256"]
    assert again["teacher_sha256"] != first["teacher_sha256"]


def test_process_pool_gives_the_same_records_as_in_process(tmp_path):
    configs = grid(TINY, method=["baseline", "kd"], seed=[0])
    here = list(run_sweep(configs, LocalExecutor(1, cpus_per_run=1), tmp_path / "a"))[-1].records
    pooled = list(run_sweep(configs, LocalExecutor(2, cpus_per_run=1), tmp_path / "b"))[-1].records
    assert [r["test_acc"] for r in pooled] == [r["test_acc"] for r in here]
    assert [r["history"][-1]["losses"] for r in pooled] == [r["history"][-1]["losses"] for r in here]
    for record in pooled:  # written by the driver into its own runs directory
        assert record["checkpoint"] == str(runs.run_checkpoint(record["id"], tmp_path / "b"))
        assert runs.load_checkpoint(record["checkpoint"]) is not None
        assert record["runner"]["executor"] == "local" and record["runner"]["threads"] == 1
    assert pooled[1]["teacher"] == "pretrained:digits-cnn"


def test_a_failing_run_does_not_end_the_sweep(tmp_path):
    good = grid(TINY, seed=[0])[0]
    bad = RunConfig("digits", "mlp-30", train=TrainSettings(epochs=1, device="no-such-device"))
    events = list(run_sweep([bad, good], LocalExecutor(), tmp_path / "runs", check=False))
    failed = [e for e in events if isinstance(e, RunFailed)]
    assert len(failed) == 1 and failed[0].index == 0 and "device" in failed[0].error.lower()
    assert events[-1].failed == 1 and events[-1].records[0] is None and events[-1].records[1]["test_acc"] > 0


# --------------------------------------------------------------------------- the command line
def test_cli_sweep_table_json_and_resume(capsys, tmp_path):
    runs_dir = tmp_path / "runs"
    argv = ["sweep", "--dataset", "digits", "--student", "mlp-30", "--methods", "baseline", "kd", "--seeds", "0", "1",
            "--epochs", "1", "--batch-size", "64", "--runs-dir", runs_dir]
    code, out, err = kdviz(capsys, *argv)
    assert code == 0, err
    assert "4 runs, 0 already finished" in err and "4/4" in err  # the progress bar over runs
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["setting", "seed", "test", "acc"]
    assert sum(line.startswith("kd digits mlp-30 1ep") for line in lines) == 3  # 2 runs + their mean
    assert len(list(runs_dir.glob("*/record.json"))) == 4

    code, out, err = kdviz(capsys, *argv, "--json", "--quiet")
    assert code == 0 and err == ""
    result = json.loads(out)
    assert [r["skipped"] for r in result["runs"]] == [True] * 4
    by_id = {r["id"]: r for r in runs.list_runs(runs_dir)}
    assert all(by_id[r["id"]]["test_acc"] == r["test_acc"] for r in result["runs"])
    assert {g["setting"]: g["runs"] for g in result["settings"]} == {"baseline digits mlp-30 1ep": 2,
                                                                    "kd digits mlp-30 1ep": 2}

    spec = tmp_path / "sweep.toml"
    spec.write_text('dataset = "digits"\nstudent = "mlp-30"\nepochs = 1\nbatch_size = 64\nmethods = ["kd"]\n'
                    'seeds = [0]\nT = [2.0, 4.0]\n')
    code, out, err = kdviz(capsys, "sweep", "--config", spec, "--runs-dir", runs_dir, "--dry-run")
    assert code == 0 and out.count("todo") == 1 and out.count("done") == 1  # kd at T=4 (the default) ran above


@pytest.mark.parametrize("argv,message", [
    (["--methods", "magic"], "unknown method 'magic'"),
    (["--set", "temprature=2,4"], "sweep field 'temprature' is neither"),
    (["--set", "nonsense"], "--set needs NAME=VALUE"),
    (["--methods", "kd", "-T", "0"], "T must be in"),
    (["--dataset", "nope"], "unknown dataset 'nope'"),
    (["--config", "/no/such/file.toml"], "cannot read sweep file"),
    (["--workers", "0"], "--workers must be >= 1"),
    (["--seeds", "x"], "invalid int value: 'x'"),
])
def test_cli_sweep_bad_input_is_one_line(capsys, argv, message):
    code, out, err = kdviz(capsys, "sweep", "--dataset", "digits", "--student", "mlp-30", "--epochs", "1", *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("kdviz"), err
    assert message in err


# --------------------------------------------------------------------------- job slots (the app's server)
def test_job_slots_keep_a_line():
    slots = JobSlots(2)
    a, b, c, d = "a", "b", "c", "d"
    assert slots.try_acquire(a) and slots.try_acquire(b)
    assert not slots.try_acquire(c) and not slots.try_acquire(d)
    assert (slots.position(c), slots.position(d), slots.position(a)) == (1, 2, 0)
    assert not slots.try_acquire(d)  # d may not jump the line when a slot frees
    slots.release(a)
    assert not slots.try_acquire(d) and slots.try_acquire(c) and slots.position(d) == 1
    slots.release(d)  # d gives up waiting
    assert (slots.running, slots.waiting) == (2, 0)
    with pytest.raises(ValueError, match="at least 1 job slot"):
        JobSlots(0)


def test_default_max_jobs_is_a_setting(monkeypatch):
    monkeypatch.setenv("KDVIZ_MAX_JOBS", "3")
    assert default_max_jobs() == 3
    monkeypatch.setenv("KDVIZ_MAX_JOBS", "many")
    with pytest.raises(ValueError, match="KDVIZ_MAX_JOBS must be a whole number"):
        default_max_jobs()
    monkeypatch.delenv("KDVIZ_MAX_JOBS")
    assert default_max_jobs() >= 1


def test_in_process_jobs_wait_for_a_slot_in_line(tmp_path):
    """Two sweeps share one slot: the second waits (first in line) until the first has finished."""
    slots = JobSlots(1)
    first, second = grid(TINY, seed=[0]), grid(TINY, seed=[1])
    log = []

    def drive(name, configs):
        for event in run_sweep(configs, LocalExecutor(1, cpus_per_run=None, slots=slots), tmp_path / "runs"):
            log.append((name, type(event).__name__, getattr(event, "position", None)))

    gen = run_sweep(first, LocalExecutor(1, cpus_per_run=None, slots=slots), tmp_path / "runs")
    for event in gen:  # the first sweep holds the slot (paused after its first step: nothing pulls)
        if isinstance(event, RunProgress) and isinstance(event.event, StepDone):
            break
    other = threading.Thread(target=drive, args=("second", second))
    other.start()
    deadline = time.monotonic() + 60
    while ("second", "RunWaiting", 1) not in log and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ("second", "RunWaiting", 1) in log and ("second", "RunStarted", None) not in log
    rest = list(gen)  # the first sweep trains to its end and gives the slot back
    assert isinstance(rest[-1], SweepFinished) and rest[-1].records[0]["seed"] == 0
    other.join(120)
    assert ("second", "RunFinished", None) in log and slots.running == 0


def test_an_unreachable_ray_address_is_one_line_at_once(capsys):
    code, out, err = kdviz(capsys, "sweep", "--dataset", "digits", "--student", "mlp-30", "--epochs", "1",
                           "--ray", "127.0.0.1:1")
    assert code == 2 and out == "" and err == ("kdviz: error: cannot reach Ray at 127.0.0.1:1 (Connection refused); "
                                               "is `ray start --head` running there?\n")
    code, out, err = kdviz(capsys, "sweep", "--dataset", "digits", "--ray", "nonsense")
    assert code == 2 and "a Ray address is HOST:PORT, 'local' or 'auto'" in err


def test_a_long_run_goes_on_from_its_last_epoch(tmp_path):
    """With ``resume_dir`` a run keeps its state after each epoch: stopped after epoch 1, the
    sweep run again trains epochs 2 and 3 only and ends where an uninterrupted run ends."""
    configs = grid({**TINY, "epochs": 3}, method=["baseline"], seed=[0])
    straight = list(run_sweep(configs, LocalExecutor(), tmp_path / "a"))[-1].records[0]

    executor = LocalExecutor(resume_dir=tmp_path / "resume")
    stop = threading.Event()
    for event in run_sweep(configs, executor, tmp_path / "b", stop=stop):
        if isinstance(event, RunProgress) and isinstance(event.event, EpochDone):
            stop.set()
    assert (tmp_path / "resume" / f"{run_key(configs[0])}.pt").is_file()
    events = list(run_sweep(configs, executor, tmp_path / "b"))
    epochs = [e.event.epoch for e in events if isinstance(e, RunProgress) and isinstance(e.event, EpochDone)]
    assert epochs == [2, 3]
    resumed = events[-1].records[0]
    assert resumed["test_acc"] == straight["test_acc"] and len(resumed["history"]) == 3
    assert resumed["history"][-1]["losses"] == straight["history"][-1]["losses"]
    assert not (tmp_path / "resume" / f"{run_key(configs[0])}.pt").exists()
