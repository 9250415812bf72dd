"""kdviz.live: a run in a worker thread (start, pause, resume, stop, finish), a queue of runs, and
the app's training jobs through the one sweep runner: at most N at once on the server, the rest in
line with their place shown; where they run (this process or a Ray cluster)."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import types

import pytest

from kdviz import runs
from kdviz.experiment import RunConfig
from kdviz.live import LiveRun, RunQueue
from kdviz.sweep import ChildExecutor, JobSlots, LocalExecutor, RayExecutor, job_executor
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


# --------------------------------------------------------------------------- the app's jobs
def test_jobs_beyond_the_limit_wait_in_line(live_runs):
    slots = JobSlots(1)
    here = lambda: LocalExecutor(1, cpus_per_run=None, slots=slots)  # noqa: E731
    first = LiveRun(config(epochs=100, batch_size=16), executor=here()).start()
    live_runs.append(first)
    wait_for(lambda: first.progress.snapshot()["steps_done"] >= 3, "the first job to train")
    second, third = (LiveRun(config(seed=s), executor=here()) for s in (1, 2))
    live_runs += [second.start(), third]
    wait_for(lambda: second.progress.snapshot()["queue_position"] == 1, "the second job to queue")
    third.start()
    wait_for(lambda: third.progress.snapshot()["queue_position"] == 2, "the third job to queue behind it")
    snap = second.progress.snapshot()
    assert snap["state"] == "queued" and snap["steps_done"] == 0 and slots.running == 1
    third.stop()  # a job that gives up waiting ends without a record
    third.join(30)
    assert third.progress.snapshot()["state"] == "stopped" and third.progress.record is None
    first.stop()
    first.join(60)
    wait_for(lambda: second.done, "the second job to run once the slot is free")
    snap = second.progress.snapshot()
    assert snap["state"] == "finished" and snap["queue_position"] == 0 and snap["record"]["seed"] == 1
    assert slots.running == 0 and slots.waiting == 0


def test_where_jobs_run(monkeypatch):
    monkeypatch.delenv("KDVIZ_RAY_ADDRESS", raising=False)
    local = job_executor()
    assert isinstance(local, ChildExecutor) and local.slots is not None and local.cpus_per_run is None
    assert local.nice == 10  # the server's pages before its training
    with pytest.raises(ValueError, match="command must be run, pause or stop, got 'jump'"):
        local.command("jump")
    monkeypatch.setenv("KDVIZ_JOB_NICE", "0")
    assert job_executor().nice == 0
    for bad in ("-1", "20", "low"):
        monkeypatch.setenv("KDVIZ_JOB_NICE", bad)
        with pytest.raises(ValueError, match="KDVIZ_JOB_NICE must be a whole number in"):
            job_executor()
    monkeypatch.delenv("KDVIZ_JOB_NICE")
    with socket.socket() as head:  # something listening where the cluster's head would be
        head.bind(("127.0.0.1", 0))
        head.listen()
        address = f"127.0.0.1:{head.getsockname()[1]}"
        monkeypatch.setenv("KDVIZ_RAY_ADDRESS", address)
        on_ray = job_executor()
    assert isinstance(on_ray, RayExecutor) and on_ray.stream and on_ray.address == address
    here = job_executor(in_process=True)  # a watched student trains in this process
    assert type(here) is LocalExecutor and here.slots is local.slots
    monkeypatch.setenv("KDVIZ_RAY_ADDRESS", "127.0.0.1:1")  # nobody there: a clear message at once
    with pytest.raises(ValueError, match="cannot reach Ray at 127.0.0.1:1"):
        job_executor()
    assert LiveRun(config()).executor is None and RunQueue([config()]).executor is None  # chosen when started


# --------------------------------------------------------------------------- a process per run
def _children():
    return [p for p in multiprocessing.active_children() if p.name.startswith("kdviz-run-")]


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _cpu_used(pid: int, seconds: float) -> float:
    """CPU seconds process ``pid`` used over the next ``seconds`` of wall time."""
    before = _cpu_seconds(pid)
    time.sleep(seconds)
    return _cpu_seconds(pid) - before


def test_a_live_run_trains_in_a_process_of_its_own(live_runs):
    run = LiveRun(config(epochs=2), executor=ChildExecutor(nice=3)).start()
    live_runs.append(run)
    wait_for(lambda: run.progress.snapshot()["steps_done"] >= 1 or run.done, "the first step")
    children = _children()
    assert os.getpriority(os.PRIO_PROCESS, children[0].pid) == os.getpriority(os.PRIO_PROCESS, 0) + 3
    run.join(120)
    snap = run.progress.snapshot()
    assert snap["state"] == "finished" and snap["steps_done"] == 2 * 45
    assert len(children) == 1 and children[0].pid != os.getpid()
    assert snap["record"]["runner"]["executor"] == "local-child" and "child process" in snap["where"]
    assert runs.load_run(snap["record"]["id"])["test_acc"] == snap["record"]["test_acc"]  # landed here
    assert _children() == []  # the process is gone with its run


def test_a_runs_process_does_not_rerun_the_parents_main_script(live_runs, tmp_path, monkeypatch):
    """In the app ``__main__`` is the page script Streamlit ran last; a child that multiprocessing starts
    re-runs its parent's ``__main__`` from its file unless kdviz hides it (it had re-run a page, without
    a session, before every live run trained). Here ``__main__`` is a script that leaves a mark when run."""
    mark = tmp_path / "main-was-run"
    script = tmp_path / "page.py"
    script.write_text(f"open({str(mark)!r}, 'w').write('ran')\n")
    page = types.ModuleType("__main__")
    page.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", page)
    run = LiveRun(config(epochs=1), executor=ChildExecutor()).start()
    live_runs.append(run)
    run.join(120)
    assert run.progress.snapshot()["state"] == "finished"
    assert not mark.exists()
    assert sys.modules["__main__"] is page  # the parent's own __main__ is back


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads a process's CPU time from /proc")
def test_a_paused_child_does_not_train(live_runs):
    run = LiveRun(config(epochs=200, batch_size=16)).start()
    live_runs.append(run)
    wait_for(lambda: run.progress.snapshot()["steps_done"] >= 5, "the first steps")
    child = _children()[0]
    run.pause()
    # the command reaches the child at its next hand-over (every 0.1 s; later on a loaded machine), then it
    # rests: a running child spends about 1 CPU second a second, a paused one next to nothing
    wait_for(lambda: _cpu_used(child.pid, 0.5) < 0.15, "the paused child to rest", timeout=60)
    held = run.progress.snapshot()["steps_done"]
    assert _cpu_used(child.pid, 1.0) < 0.3
    assert run.progress.snapshot()["steps_done"] == held  # and no step was taken meanwhile
    run.resume()
    held = run.progress.snapshot()["steps_done"]
    wait_for(lambda: run.progress.snapshot()["steps_done"] > held + 5, "training to go on")
    run.stop()
    run.join(60)
    assert run.progress.snapshot()["state"] == "stopped" and run.progress.record["stopped"]


def test_a_crashed_run_fails_alone(live_runs):
    run = LiveRun(config(epochs=200, batch_size=16)).start()
    live_runs.append(run)
    wait_for(lambda: run.progress.snapshot()["steps_done"] >= 5, "the first steps")
    os.kill(_children()[0].pid, signal.SIGKILL)  # as if the run's process crashed or ran out of memory
    run.join(60)
    snap = run.progress.snapshot()
    assert snap["state"] == "failed" and "ended without a result (exit code -9)" in snap["error"]
    assert runs.list_runs() == []  # nothing half-written
    again = LiveRun(config(epochs=1)).start()  # this process goes on serving runs
    live_runs.append(again)
    again.join(120)
    assert again.progress.snapshot()["state"] == "finished"
