"""The app's training jobs through the one sweep runner: at most N at once on the server, the
rest in line with their place shown; where they run (this process or a Ray cluster)."""
from __future__ import annotations

import socket
import time

import pytest

from kdviz.experiment import RunConfig
from kdviz.live import LiveRun, RunQueue
from kdviz.sweep import JobSlots, LocalExecutor, RayExecutor, job_executor
from kdviz.train import TrainSettings


def config(epochs=2, seed=0, batch_size=32):
    return RunConfig("digits", "mlp-30", train=TrainSettings(epochs=epochs, batch_size=batch_size, device="cpu",
                                                             seed=seed))


def wait_for(condition, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def jobs():
    made = []
    yield made
    for item in made:
        item.stop()
        item.join(30)


def test_jobs_beyond_the_limit_wait_in_line(jobs):
    slots = JobSlots(1)
    here = lambda: LocalExecutor(1, cpus_per_run=None, slots=slots)  # noqa: E731
    first = LiveRun(config(epochs=100, batch_size=16), executor=here()).start()
    jobs.append(first)
    wait_for(lambda: first.progress.snapshot()["steps_done"] >= 3, "the first job to train")
    second, third = (LiveRun(config(seed=s), executor=here()) for s in (1, 2))
    jobs += [second.start(), third]
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
    assert isinstance(local, LocalExecutor) and local.slots is not None and local.cpus_per_run is None
    with socket.socket() as head:  # something listening where the cluster's head would be
        head.bind(("127.0.0.1", 0))
        head.listen()
        address = f"127.0.0.1:{head.getsockname()[1]}"
        monkeypatch.setenv("KDVIZ_RAY_ADDRESS", address)
        on_ray = job_executor()
    assert isinstance(on_ray, RayExecutor) and on_ray.stream and on_ray.address == address
    assert isinstance(job_executor(in_process=True), LocalExecutor)  # a watched student trains here
    monkeypatch.setenv("KDVIZ_RAY_ADDRESS", "127.0.0.1:1")  # nobody there: a clear message at once
    with pytest.raises(ValueError, match="cannot reach Ray at 127.0.0.1:1"):
        job_executor()
    assert LiveRun(config()).executor is None and RunQueue([config()]).executor is None  # chosen when started
