"""kdviz.live: a run in a worker thread (start, pause, resume, stop, finish) and a queue of runs."""
from __future__ import annotations

import json
import sys
import threading
import time

import pytest

from kdviz import runs
from kdviz.experiment import RunConfig
from kdviz.live import LiveRun, RunQueue
from kdviz.train import TrainSettings

ACTIVE = ("starting", "running", "paused")


def config(epochs=2, seed=0, batch_size=32, dataset="digits"):
    return RunConfig(dataset, "mlp-30", train=TrainSettings(epochs=epochs, batch_size=batch_size, device="cpu", seed=seed))


def wait_for(condition, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def live_runs():
    """Every LiveRun/RunQueue made in a test is stopped at its end, pass or fail."""
    made = []
    yield made
    for item in made:
        item.stop()
        item.join(30)


def test_run_to_the_end(live_runs):
    run = LiveRun(config(epochs=2)).start()
    live_runs.append(run)
    run.join(120)
    snap = run.progress.snapshot()
    assert snap["state"] == "finished" and run.done and snap["error"] is None
    assert snap["steps_done"] == snap["steps_total"] == 2 * 45 and snap["fraction"] == 1.0  # 1,437 images / 32
    assert [e["epoch"] for e in snap["epochs_done"]] == [1, 2]
    assert json.loads(json.dumps(snap["record"])) == runs.load_run(snap["record"]["id"])
    assert not snap["record"]["stopped"]
    assert snap["record"]["test_acc"] > 0.5


def _blocked(run) -> bool:
    """Is the worker thread parked in its pause (Event.wait -> Condition.wait, called from _work)?"""
    frame = sys._current_frames().get(run._thread.ident)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    i = names.index("_work") if "_work" in names else -1
    return i >= 2 and names[i - 1] == names[i - 2] == "wait"


def test_pause_resume_and_stop(live_runs):
    run = LiveRun(config(epochs=100, batch_size=16)).start()
    live_runs.append(run)
    wait_for(lambda: run.progress.snapshot()["steps_done"] >= 5, "the first steps")
    run.pause()
    assert run.progress.snapshot()["state"] == "paused"
    wait_for(lambda: _blocked(run), "the pause to take hold")
    held = run.progress.snapshot()["steps_done"]
    time.sleep(0.3)
    assert run.progress.snapshot()["steps_done"] == held  # paused: no step is taken
    run.resume()
    assert run.progress.snapshot()["state"] == "running"
    wait_for(lambda: run.progress.snapshot()["steps_done"] > held + 5, "training to go on")
    run.pause()
    run.stop()  # stopping a paused run wakes it up to stop
    run.join(60)
    snap = run.progress.snapshot()
    assert snap["state"] == "stopped" and run.done
    record = snap["record"]
    assert record["stopped"] and runs.load_run(record["id"])["stopped"]
    assert len(record["history"]) < 100 and snap["steps_done"] < snap["steps_total"]


def test_a_second_reader_sees_consistent_snapshots(live_runs):
    run = LiveRun(config(epochs=10, batch_size=32)).start()  # 450 steps
    live_runs.append(run)
    wait_for(lambda: run.progress.snapshot()["steps_done"] >= 10, "the run to be going")
    problems, seen = [], []

    def read():
        last = 0
        while True:
            snap = run.progress.snapshot()
            n = snap["steps_done"]
            steps = [row["step"] for row in snap["step_losses"]]
            if steps != list(range(1, n + 1)):
                problems.append(f"loss curve {steps[:3]}...{steps[-3:]} for {n} steps")
            if n and n != (snap["epoch"] - 1) * snap["steps_per_epoch"] + snap["step"]:
                problems.append(f"step {n} is not epoch {snap['epoch']} step {snap['step']}")
            if n and len(snap["epochs_done"]) not in (snap["epoch"] - 1, snap["epoch"]):
                problems.append(f"{len(snap['epochs_done'])} epochs done during epoch {snap['epoch']}")
            if n < last:
                problems.append(f"went back from {last} to {n}")
            snap["step_losses"].clear()  # a reader's copy is its own
            last = n
            seen.append(n)
            time.sleep(0.002)  # a reader on a timer, not a busy loop that starves the worker of the GIL
            if snap["state"] in ("finished", "stopped", "failed"):
                return

    readers = [threading.Thread(target=read) for _ in range(2)]
    for r in readers:
        r.start()
    for r in readers:
        r.join(120)
    assert problems == []
    assert len(set(seen)) > 2 and max(seen) == 450
    assert run.progress.snapshot()["state"] == "finished"


def test_a_failing_run_reports_its_error(live_runs):
    run = LiveRun(config(dataset="no-such-data")).start()
    live_runs.append(run)
    run.join(60)
    snap = run.progress.snapshot()
    assert snap["state"] == "failed" and snap["error"].startswith("ValueError: unknown dataset 'no-such-data'")


def test_queue_runs_configs_in_order(live_runs):
    queue = RunQueue([config(epochs=2, seed=s) for s in (5, 6, 7)]).start()
    live_runs.append(queue)
    looks, deadline = [], time.monotonic() + 120
    while queue.current < 3 and time.monotonic() < deadline:
        states = [r.progress.snapshot()["state"] for r in queue.runs]
        looks.append((queue.current, states))
        time.sleep(0.005)
    queue.join(60)
    for current, states in looks:
        assert sum(s in ACTIVE for s in states) <= 1, states  # one at a time
        assert all(s == "queued" for s in states[current + 1:]), states  # the later ones wait
    assert [c for c, _ in looks] == sorted(c for c, _ in looks)
    assert [r["seed"] for r in queue.records] == [5, 6, 7]
    assert all(r.progress.snapshot()["state"] == "finished" for r in queue.runs)
    assert {r["id"] for r in runs.list_runs()} == {r["id"] for r in queue.records}


def test_queue_stop_ends_the_sweep(live_runs):
    queue = RunQueue([config(epochs=100, seed=s, batch_size=16) for s in (0, 1, 2)]).start()
    live_runs.append(queue)
    wait_for(lambda: queue.runs[0].progress.snapshot()["steps_done"] >= 3, "the first run to be going")
    queue.stop()
    queue.join(60)
    states = [r.progress.snapshot()["state"] for r in queue.runs]
    assert states == ["stopped"] * 3 and queue.current == 3
    assert queue.runs[0].progress.record["stopped"]
    assert [r.progress.record for r in queue.runs[1:]] == [None, None]  # never started
    assert [r["id"] for r in runs.list_runs()] == [queue.runs[0].progress.record["id"]]
