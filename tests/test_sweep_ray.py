"""kdviz.sweep on Ray: a local Ray instance with 2 CPUs runs a tiny sweep; the records land in the
driver's runs directory and match a local sweep of the same grid seed for seed."""
from __future__ import annotations

import json
import threading

import pytest

from kdviz import cli, runs
from kdviz.sweep import LocalExecutor, RayExecutor, RunFinished, RunProgress, RunStarted, SweepFinished, grid, run_key, run_sweep
from kdviz.train import EpochDone, StepDone

ray = pytest.importorskip("ray")

TINY = {"dataset": "digits", "student": "mlp-30", "epochs": 1, "batch_size": 64, "device": "cpu"}


def learning(record: dict) -> list[dict]:
    """A record's per-epoch history without its timings."""
    return [{k: v for k, v in e.items() if k not in ("images_per_s", "elapsed")} for e in record["history"]]


@pytest.fixture(scope="module")
def ray_instance():
    """One Ray instance for the module (starting one costs about 10 s), shut down at its end."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


def test_a_ray_sweep_lands_the_same_records_as_a_local_one(ray_instance, tmp_path):
    configs = grid(TINY, method=["baseline", "kd"], seed=[0, 1])
    events = list(run_sweep(configs, RayExecutor(cpus_per_run=1), tmp_path / "ray"))
    assert sum(isinstance(e, RunStarted) for e in events) == 4
    on_ray = events[-1].records
    assert events[-1].failed == 0 and [r["seed"] for r in on_ray] == [0, 1, 0, 1]
    for record, config in zip(on_ray, configs):
        saved = runs.load_run(record["id"], tmp_path / "ray")  # written by the driver
        assert saved == json.loads(json.dumps(record))
        assert saved["runner"]["executor"] == "ray" and saved["runner"]["threads"] == 1
        assert run_key(saved["config"]) == run_key(config) and saved["test_acc"] > 0.3
        assert runs.load_checkpoint(runs.run_checkpoint(record["id"], tmp_path / "ray")) is not None
    assert on_ray[2]["teacher"] == "pretrained:digits-cnn"

    here = list(run_sweep(configs, LocalExecutor(1, cpus_per_run=1), tmp_path / "local"))[-1].records
    assert [r["test_acc"] for r in on_ray] == [r["test_acc"] for r in here]  # deterministic on CPU
    assert [learning(r) for r in on_ray] == [learning(r) for r in here]

    # resumed: nothing runs again on the cluster
    again = list(run_sweep(configs, RayExecutor(), tmp_path / "ray"))
    assert again[0].to_run == 0 and all(e.skipped for e in again if isinstance(e, RunFinished))


def test_a_teacher_on_the_driver_is_shipped_to_the_workers(ray_instance, tmp_path):
    runs_dir = tmp_path / "runs"
    teacher = list(run_sweep(grid(TINY | {"student": "mlp-800"}, seed=[0]), LocalExecutor(), runs_dir))[-1].records[0]
    configs = grid(TINY | {"teacher": teacher["id"]}, method=["kd"], T=[2.0], seed=[0])
    record = list(run_sweep(configs, RayExecutor(), runs_dir))[-1].records[0]
    assert record["teacher"] == f"run:{teacher['id']}" and record["config"]["teacher"] == teacher["id"]
    assert record["test_acc"] > 0.3


def test_cli_sweep_on_ray(ray_instance, tmp_path, capsys):
    argv = ["sweep", "--dataset", "digits", "--student", "mlp-30", "--methods", "baseline", "--seeds", "3",
            "--epochs", "1", "--runs-dir", str(tmp_path / "runs"), "--json", "--quiet"]
    assert cli.main(argv + ["--ray", "local"]) == 0  # Ray already up in this process: it is used as it is
    on_ray = json.loads(capsys.readouterr().out)
    assert on_ray["executor"].startswith("ray") and on_ray["runs"][0]["test_acc"] > 0.3
    assert cli.main(argv + ["--no-resume"]) == 0
    here = json.loads(capsys.readouterr().out)
    assert here["executor"].startswith("local") and here["runs"][0]["test_acc"] == on_ray["runs"][0]["test_acc"]


def test_streamed_runs_send_their_training_events_and_stop_between_steps(ray_instance, tmp_path):
    """With stream=True a Ray run reports its steps and epochs as it trains (what the app's live
    view draws), and a stop ends it between two steps with its record kept."""
    executor = RayExecutor(stream=True)
    config = grid(TINY | {"epochs": 2}, seed=[0])
    events = list(run_sweep(config, executor, tmp_path / "runs"))
    progress = [e.event for e in events if isinstance(e, RunProgress)]
    assert [type(e).__name__ for e in progress].count("EpochDone") == 2
    assert sum(isinstance(e, StepDone) for e in progress) == 2 * 23  # 1,437 images / 64 a batch
    record = events[-1].records[0]
    assert not record["stopped"] and [e.test_acc for e in progress if isinstance(e, EpochDone)][-1] == \
        record["test_acc"]

    stop = threading.Event()
    long = grid(TINY | {"epochs": 50, "batch_size": 16}, seed=[1])
    ended = None
    for event in run_sweep(long, executor, tmp_path / "runs", stop=stop):
        if isinstance(event, RunProgress) and isinstance(event.event, StepDone):
            stop.set()
        if isinstance(event, SweepFinished):
            ended = event
    record = ended.records[0]
    assert record["stopped"] and len(record["history"]) < 50
    assert runs.load_run(record["id"], tmp_path / "runs")["stopped"]


def test_an_app_queue_runs_on_the_cluster_with_live_progress(ray_instance, tmp_path):
    """The Compare page's queue with a Ray executor: its runs train on the cluster at once, and
    each run's progress (steps, epochs) arrives as it trains."""
    from kdviz.live import RunQueue

    queue = RunQueue(grid(TINY | {"epochs": 2}, seed=[0, 1]), tmp_path / "runs",
                     executor=RayExecutor(stream=True)).start()
    queue.join(120)
    snaps = queue.snapshots()
    assert queue.done and [s["state"] for s in snaps] == ["finished", "finished"]
    assert all(s["steps_done"] == s["steps_total"] == 2 * 23 and len(s["epochs_done"]) == 2 for s in snaps)
    assert all(s["where"].startswith("ray") for s in snaps)
    assert [r["seed"] for r in queue.records] == [0, 1]
    assert {r["id"] for r in runs.list_runs(tmp_path / "runs")} == {r["id"] for r in queue.records}
