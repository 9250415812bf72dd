"""Training in the background, for the app (and anything else that must not block).

A :class:`LiveRun` runs one :class:`~kdviz.experiment.Experiment` in a worker
thread and writes what happens into a lock-protected :class:`Progress`; the
reader (a Streamlit fragment on a timer, a test) takes a consistent
:meth:`Progress.snapshot` whenever it likes. The worker makes no UI calls.
Pausing blocks the worker between two steps; stopping ends the run between two
steps and still saves its record (marked ``stopped``).

A :class:`RunQueue` runs a list of configs in one worker thread, with hooks: a
consumer per run sees every event and the student between two steps (e.g. a
:class:`~kdviz.recording.SoftTargetRecorder`), and ``on_finished`` runs in the worker
after each run, before the next one starts.

Both go through the one sweep runner (:func:`kdviz.sweep.run_sweep`) with the server's
executor (:func:`kdviz.sweep.job_executor`): on this machine, each run waiting for one of
the server's job slots (``$KDVIZ_MAX_JOBS``, default one per two cores; the progress says
the place in line while it waits), then training in a child process of its own with its
events streamed back, or, with ``$KDVIZ_RAY_ADDRESS`` set, on the Ray cluster, streamed
likewise. Runs whose student is watched by a consumer train in this process.
"""
from __future__ import annotations

import copy
import threading
import traceback
from dataclasses import dataclass, field
from typing import Callable

from kdviz.experiment import Experiment, RunConfig
from kdviz.sweep import Executor, RunFailed, RunFinished, RunProgress, RunStarted, RunWaiting, job_executor, run_key, run_sweep
from kdviz.train import EpochDone, Finished, PhaseStarted, StepDone


@dataclass
class Progress:
    """Everything a live view shows; mutate only under ``lock``."""

    state: str = "queued"
    phase: str = ""
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps_per_epoch: int = 0
    steps_done: int = 0
    steps_total: int = 0
    images_per_s: float = 0.0
    elapsed: float = 0.0
    step_losses: list[dict] = field(default_factory=list)   # {"step": global step, "phase":..., **terms}
    epochs_done: list[dict] = field(default_factory=list)   # EpochDone as dicts
    record: dict | None = None
    error: str | None = None
    queue_position: int = 0     # while queued: 1 = next to start (waiting for a free job slot)
    where: str = ""             # the executor that runs it
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def snapshot(self) -> dict:
        """A deep copy taken under the lock: safe to read while the worker writes."""
        with self.lock:
            data = {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "lock"}
        remaining = max(data["steps_total"] - data["steps_done"], 0)
        rate = data["steps_done"] / data["elapsed"] if data["elapsed"] > 0 else 0.0
        data["fraction"] = data["steps_done"] / data["steps_total"] if data["steps_total"] else 0.0
        data["seconds_left"] = remaining / rate if rate > 0 else None
        return data


class LiveRun:
    """One experiment in a worker thread, with pause / resume / stop.

    ``consumer(event, student)``, when given, is called in the worker with every training
    event and the student being trained, between two steps (such a run stays in this process).
    ``executor``: where it runs (default :func:`kdviz.sweep.job_executor`)."""

    MAX_STEP_POINTS = 2000  # keep the live loss curve light; older points are thinned

    def __init__(self, config: RunConfig, runs_dir=None, consumer: Callable | None = None,
                 executor: Executor | None = None):
        self.config = config
        self.runs_dir = runs_dir
        self.consumer = consumer
        self.executor = executor
        self.progress = Progress()
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._thread: threading.Thread | None = None
        self.experiment: Experiment | None = None

    # --------------------------------------------------------------- controls
    def start(self) -> "LiveRun":
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="kdviz-live-run", daemon=True)
            self._thread.start()
        return self

    def pause(self) -> None:
        self._running.clear()
        self._command("pause")
        self._set(state="paused")

    def resume(self) -> None:
        self._set(state="running")
        self._command("run")
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # a paused worker must wake up to see the stop

    def cancel(self) -> None:
        """Mark a run without a worker of its own that has not ended as stopped (a queue stopped
        before its turn, or while it waited for a job slot)."""
        if self._thread is None and not self.done:
            self._set(state="stopped", queue_position=0)

    def _command(self, command: str) -> None:
        if self.executor is not None:
            self.executor.command(command)  # a run in a child process or on the cluster pauses there

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def done(self) -> bool:
        return self.progress.state in ("finished", "stopped", "failed")

    # --------------------------------------------------------------- worker
    def _set(self, **values) -> None:
        with self.progress.lock:
            for key, value in values.items():
                setattr(self.progress, key, value)

    def _work(self) -> None:
        try:
            if self.executor is None:
                self.executor = job_executor(in_process=self.consumer is not None)
            self._set(where=self.executor.describe())
            for event in run_sweep([self.config], self.executor, self.runs_dir, resume=False, stop=self._stop,
                                   check=False):
                self.apply(event)
                if isinstance(event, RunProgress):
                    self._running.wait()
        except Exception as error:  # noqa: BLE001 - the reader shows the message; nothing may escape a thread
            self._set(state="failed", error=f"{type(error).__name__}: {error}")
            traceback.print_exc()
        with self.progress.lock:  # stopped before it started (e.g. while waiting for a job slot)
            if self.progress.state not in ("finished", "stopped", "failed"):
                self.progress.state, self.progress.queue_position = "stopped", 0

    def apply(self, event) -> None:
        """Show one event of the sweep runner (:mod:`kdviz.sweep`) in the progress."""
        if isinstance(event, RunWaiting):
            self._set(state="queued", queue_position=event.position)
        elif isinstance(event, RunStarted):
            # data, teacher, and its logits (cached) before step 1
            self._set(state="starting", phase="preparing", queue_position=0)
        elif isinstance(event, RunProgress):
            if event.experiment is not None:
                self.experiment = event.experiment
            with self.progress.lock:  # a pause that came in meanwhile keeps its label
                if self.progress.state == "starting" and not self._stop.is_set() and self._running.is_set():
                    self.progress.state = "running"
            self._record(event.event)
            if self.consumer is not None:
                self.consumer(event.event, event.student)
        elif isinstance(event, RunFinished):
            self._set(state="stopped" if event.record.get("stopped") else "finished", record=event.record)
        elif isinstance(event, RunFailed):
            self._set(state="failed", error=event.error)

    def _record(self, event) -> None:
        p = self.progress
        with p.lock:
            if isinstance(event, PhaseStarted):
                p.phase, p.epochs, p.steps_per_epoch = event.phase, event.epochs, event.steps_per_epoch
                p.steps_total += event.epochs * event.steps_per_epoch
            elif isinstance(event, StepDone):
                p.epoch, p.step, p.elapsed = event.epoch, event.step, event.elapsed
                p.steps_done += 1
                p.images_per_s = 0.8 * p.images_per_s + 0.2 * event.images_per_s if p.images_per_s else event.images_per_s
                p.step_losses.append({"step": p.steps_done, "phase": event.phase, **event.losses})
                if len(p.step_losses) > self.MAX_STEP_POINTS:
                    p.step_losses = p.step_losses[::2]
            elif isinstance(event, EpochDone):
                p.epochs_done.append({k: v for k, v in event.__dict__.items()})
            elif isinstance(event, Finished):
                p.elapsed = event.elapsed


class RunQueue:
    """Runs configs as one sweep in a single worker thread (a sweep, a page's two students): one
    after another in this process, or all at once on a Ray cluster (see the module's note).

    ``consumers`` (one per config, or None) are handed to the runs (see :class:`LiveRun`);
    ``on_finished(index, run)`` is called in the worker after each run that ended (finished,
    stopped or failed), before the next starts. With ``stop_on_failure`` a failed run stops
    the rest of the queue."""

    def __init__(self, configs: list[RunConfig], runs_dir=None, consumers: list | None = None,
                 on_finished: Callable[[int, LiveRun], None] | None = None, stop_on_failure: bool = False,
                 executor: Executor | None = None):
        consumers = list(consumers or [None] * len(configs))
        self.runs_dir = runs_dir
        self.executor = executor
        self.runs = [LiveRun(c, runs_dir, consumer) for c, consumer in zip(configs, consumers)]
        self.on_finished = on_finished
        self.stop_on_failure = stop_on_failure
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "RunQueue":
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="kdviz-run-queue", daemon=True)
            self._thread.start()
        return self

    def _work(self) -> None:
        keys = [run_key(run.config) for run in self.runs]
        order = list(dict.fromkeys(keys))  # the runner runs each distinct config once, in this order
        positions = [[p for p, k in enumerate(keys) if k == key] for key in order]
        try:
            if self.executor is None:
                # runs whose student is watched (consumers, or a hook that reads the experiment) stay here
                watched = self.on_finished is not None or any(run.consumer is not None for run in self.runs)
                self.executor = job_executor(in_process=watched)
            for run in self.runs:
                run.executor = self.executor
                run._set(where=self.executor.describe())
            for event in run_sweep([run.config for run in self.runs], self.executor, self.runs_dir, resume=False,
                                   stop=self._stop, check=False):
                for p in positions[event.index] if hasattr(event, "index") else ():
                    run = self.runs[p]
                    run.apply(event)
                    if isinstance(event, RunProgress):
                        run._running.wait()
                    elif isinstance(event, (RunFinished, RunFailed)):
                        if self.on_finished is not None:
                            self.on_finished(p, run)
                        if isinstance(event, RunFailed) and self.stop_on_failure:
                            self._stop.set()
        except Exception as error:  # noqa: BLE001 - shown on every run left; nothing may escape a thread
            for run in self.runs:
                if not run.done:
                    run._set(state="failed", error=f"{type(error).__name__}: {error}")
            traceback.print_exc()
        finally:
            for run in self.runs:
                run.cancel()  # what the stop left unstarted
            self._finished.set()

    def stop(self) -> None:
        self._stop.set()
        for run in self.runs:
            if not run.done:  # also the next one, in case the worker is just starting it
                run.stop()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def done(self) -> bool:
        """Every run has ended (finished, stopped or failed) and the worker's hooks have run."""
        if self._thread is not None:
            return self._finished.is_set()
        return all(r.done for r in self.runs)

    def snapshots(self) -> list[dict]:
        """Each run's config and progress snapshot, in queue order (for a progress table)."""
        return [{"config": r.config, **r.progress.snapshot()} for r in self.runs]

    @property
    def current(self) -> int:
        """Index of the run in progress (len(runs) when all are done)."""
        for i, run in enumerate(self.runs):
            if not run.done:
                return i
        return len(self.runs)

    @property
    def records(self) -> list[dict]:
        return [r.progress.record for r in self.runs if r.progress.record]
