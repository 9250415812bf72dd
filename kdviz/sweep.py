"""One sweep runner: a grid of run configs, run here or on a Ray cluster.

A sweep is a list of :class:`~kdviz.experiment.RunConfig`. :func:`grid` builds one from
a base config and axes (methods × seeds × any config field); :func:`run_sweep` runs it
with an executor and yields :class:`SweepEvent` objects as things happen::

    from kdviz.sweep import grid, run_sweep, make_executor, RunFinished

    configs = grid({"dataset": "digits", "student": "mlp-30", "epochs": 1},
                   method=["baseline", "kd"], seed=[0, 1, 2], T=[2, 4])
    for event in run_sweep(configs, executor=make_executor(), runs_dir="runs"):
        if isinstance(event, RunFinished):
            print(event.config.method, event.record["test_acc"], "(resumed)" if event.skipped else "")

    records = sweep_records(configs)          # the same, blocking: one record per config, in order

Executors (one interface, :class:`Executor`):

- :class:`LocalExecutor` (the default): ``workers=1`` runs in this process (train events
  are forwarded as :class:`RunProgress`, a ``stop`` event ends the current run between two
  steps); ``workers > 1`` runs a small process pool on this machine.
- :class:`ChildExecutor`: this machine, each run in a child process of its own with its
  training events streamed back (what the app's live runs use: training then runs on a
  process's main thread at the CLI's speed, not on a web server's worker thread).
- :class:`RayExecutor`: each run is a Ray task that declares ``num_cpus`` (and
  ``num_gpus``); ``ray.init(address=...)`` with ``--ray ADDRESS``, ``$KDVIZ_RAY_ADDRESS``,
  or ``local`` for a Ray instance on this machine. Ray is an optional extra
  (``pip install kdviz[ray]``) and is imported only when this executor is made.

Whichever executor ran it, a finished run is an ordinary run record (with its checkpoint)
in the driver's runs directory: a pool process or a Ray worker trains into a scratch folder
and returns the record and the checkpoint bytes; the driver writes them. A teacher given as
a run id or a checkpoint path on the driver is shipped to Ray workers with the task.

Resuming: every config has a stable key (:func:`run_key`, a hash of its canonical JSON).
Before running, the runs directory is scanned (:func:`finished_runs`); a config whose key
matches a finished, not-stopped record is reported as :class:`RunFinished` with
``skipped=True`` and not run again. An interrupted sweep therefore resumes by running it
again. Duplicate configs in a sweep run once.

Determinism: every run trains with ``cpus_per_run`` torch threads (1 by default) in every
executor, because on CPU the number of threads changes the order of floating-point sums
(a 1-epoch cnn5-small on digits: 95.56% with 1 thread, 94.72% with 2). With the same
threads, the same seed gives the same record locally and on Ray.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import tomllib
import types
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from itertools import product
from pathlib import Path

import torch

from kdviz import teachers
from kdviz.experiment import Experiment, RunConfig
from kdviz.methods import check_method, method_class, method_parts, split_params
from kdviz.runs import CHECKPOINT, default_runs_dir, list_runs, run_checkpoint, save_record
from kdviz.settings import default_job_nice, default_max_jobs, default_ray_gpus_per_job
from kdviz.train import EpochDone, Finished, PhaseStarted, TrainSettings

RAY_ENV = "KDVIZ_RAY_ADDRESS"
RUN_FIELDS = {f.name for f in fields(RunConfig)} - {"train", "params"}
TRAIN_FIELDS = {f.name for f in fields(TrainSettings)}
SYNONYMS = {"methods": "method", "seeds": "seed", "datasets": "dataset", "students": "student",
            "teachers": "teacher", "temperature": "T"}


# --------------------------------------------------------------------------- keys
def _canonical(value):
    """Numbers as floats, strings that read as numbers too, tuples as lists, dict keys sorted."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return str(value)


def _resolved_params(method: str, params: dict) -> dict:
    """Every hyperparameter of every part with its default filled in (``{"kd.T": 4.0, ...}``);
    the params as given when they do not resolve (the run will fail with its own message)."""
    try:
        parts = _parts(method)
        return {f"{name}.{k}": v for name, p in zip(parts, split_params(parts, params))
                for k, v in method_class(name).resolve_params(p).items()}
    except ValueError:
        return dict(params)


def run_key(config: RunConfig | dict) -> str:
    """A stable 16-hex key for what a config trains: equal configs (``T=4`` or ``4.0``, a
    tuple or a list, a hyperparameter left at its default or given) give equal keys, in any
    process and on any machine."""
    if isinstance(config, dict):
        config = RunConfig.from_dict(config)
    data = config.to_dict()
    data["params"] = _resolved_params(config.method, config.params)
    if data.get("data_seed") is None:  # the default (the training seed picks the images): keys made before it existed
        data.pop("data_seed", None)
    text = json.dumps(_canonical(data), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def finished_runs(runs_dir: Path | str | None = None) -> dict[str, dict]:
    """Finished records in ``runs_dir`` by :func:`run_key` of their config; of several, the
    newest. A diverged run counts as finished (it would diverge again: training is
    deterministic); a stopped, failed or unreadable one does not."""
    done: dict[str, dict] = {}
    for record in list_runs(Path(runs_dir) if runs_dir else None):  # newest first
        status = record.get("status") or ("stopped" if record.get("stopped") else "finished")
        if record.get("error") or status not in ("finished", "diverged") or record.get("test_acc") is None:
            continue
        try:
            key = run_key(record["config"])
        except (KeyError, TypeError, ValueError):
            continue
        done.setdefault(key, record)
    return done


# --------------------------------------------------------------------------- grids
def _parts(method: str) -> list[str]:
    return [n.strip() for n in str(method).split("+") if n.strip()]


def _has_param(method: str, name: str) -> bool:
    try:
        split_params(_parts(method), {name: 0})
        return True
    except ValueError:
        return False


def needs_teacher(method: str) -> bool:
    return check_method(method)


def default_teacher(dataset: str) -> str | None:
    """The shipped teacher made for ``dataset`` (``<dataset>-cnn`` first), or None."""
    names = [ref.name for ref in teachers.choices(dataset) if ref.kind == teachers.PRETRAINED]
    names.sort(key=lambda n: n != f"{dataset}-cnn")
    return names[0] if names else None


def _where(name: str, methods: list[str]) -> tuple[str, str]:
    """(place, field) of a grid name: ("run" | "train" | "params", name)."""
    name = SYNONYMS.get(name, name)
    head, dot, tail = name.partition(".")
    if dot and head == "train":
        if tail not in TRAIN_FIELDS:
            raise ValueError(f"unknown training setting {tail!r}; known: {', '.join(sorted(TRAIN_FIELDS))}")
        return "train", tail
    if dot and head == "params":
        return "params", tail
    if name in RUN_FIELDS:
        return "run", name
    if name in TRAIN_FIELDS:
        return "train", name
    if any(_has_param(m, name) for m in methods):
        return "params", name
    raise ValueError(f"sweep field {name!r} is neither a run setting ({', '.join(sorted(RUN_FIELDS))}), a training "
                     f"setting ({', '.join(sorted(TRAIN_FIELDS))}), nor a hyperparameter of "
                     f"{', '.join(methods) or 'the methods'}")


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _class_indices(value) -> tuple[int, ...]:
    """``omit_classes`` as given in a sweep (``3``, ``"3"``, ``[3, 5]``) as a tuple of ints."""
    out = []
    for c in _as_list(value):
        try:
            if isinstance(c, (bool, float)):
                raise TypeError
            out.append(int(c))
        except (TypeError, ValueError):
            raise ValueError(f"omit_classes needs class indices (e.g. 3 or [3, 5]), got {value!r}") from None
    return tuple(out)


MAX_SWEEP_RUNS = 10_000  # more is a typo or a runaway grid, refused before any config is built


def grid(base: RunConfig | dict | None = None, /, **axes) -> list[RunConfig]:
    """Every combination of the ``axes`` over ``base``, methods outermost, seeds innermost.

    ``base`` is a :class:`RunConfig` or a dict of settings by name (``dataset``, ``student``,
    ``epochs``, ``T``, ...). Each axis is a name and a list of values (a single value is a
    one-item axis). A name is a :class:`RunConfig` field (``dataset``, ``student``,
    ``teacher``, ``fraction``, ``hide_labels``, ``omit_classes``), a
    :class:`~kdviz.train.TrainSettings` field (``seed``, ``epochs``, ``lr``, ...; or
    ``train.NAME``), or a method hyperparameter (``T``, ``alpha``, ``at.beta``; or
    ``params.NAME``). ``methods``/``seeds``/``datasets`` are accepted for ``method``/...

    A hyperparameter is set only on the methods that have it (so ``method=[baseline, kd],
    T=[2, 4]`` gives one baseline and two KD runs per seed), and a method that needs no
    teacher gets none. A method that needs a teacher and has none gets the shipped teacher
    of its data set (:func:`default_teacher`). Duplicates are dropped; order is kept. An empty
    axis, or a grid of more than :data:`MAX_SWEEP_RUNS` runs, is refused before anything is built."""
    settings = base.to_dict() if isinstance(base, RunConfig) else {}
    loose = dict(base) if isinstance(base, dict) else {}
    axes = {SYNONYMS.get(k, k): _as_list(v) for k, v in axes.items()}
    size = 1
    for name, values in axes.items():
        if not values:
            raise ValueError(f"sweep axis {name!r} has no values: the sweep would run nothing")
        size *= len(values)
    if size > MAX_SWEEP_RUNS:
        raise ValueError(f"the sweep's axes make {size:,} runs ({' x '.join(f'{len(v)} {k}' for k, v in axes.items())}); "
                         f"at most {MAX_SWEEP_RUNS:,} in one sweep")
    methods = [str(m) for m in axes.get("method", [loose.get("method", settings.get("method", "baseline"))])]
    for m in methods:
        method_parts(m)  # an unknown or malformed method: a clear error now
    flat = {SYNONYMS.get(k, k): v for k, v in loose.items()}
    run = {k: v for k, v in settings.items() if k not in ("train", "params")}
    train = dict(settings.get("train", {}))
    params = dict(settings.get("params", {}))
    for name, value in flat.items():
        place, key = _where(name, methods)
        {"run": run, "train": train, "params": params}[place][key] = value
    for required in ("dataset", "student"):
        if required not in run and required not in axes:
            raise ValueError(f"a sweep needs a {required}")
    names = [k for k in axes if k != "method"]
    names.sort(key=lambda k: SYNONYMS.get(k, k) == "seed")  # seeds innermost
    places = {k: _where(k, methods) for k in names}
    configs, seen = [], set()
    for method in methods:
        for values in product(*(axes[k] for k in names)):
            r, t, p = dict(run, method=method), dict(train), dict(params)
            for name, value in zip(names, values):
                place, key = places[name]
                if place == "params" and not _has_param(method, key):
                    continue
                {"run": r, "train": t, "params": p}[place][key] = value
            p = {k: v for k, v in p.items() if _has_param(method, k)}
            if needs_teacher(method):
                r["teacher"] = r.get("teacher") or default_teacher(r["dataset"])
            else:
                r["teacher"] = None
            r["omit_classes"] = _class_indices(r.get("omit_classes", ()))
            config = RunConfig(**r, params=p, train=TrainSettings(**t))
            key = run_key(config)
            if key not in seen:
                seen.add(key)
                configs.append(config)
    return configs


# --------------------------------------------------------------------------- checks
def check_config(config: RunConfig, runs_dir: Path | str | None = None) -> None:
    """Cheap checks before any data is loaded or any net trained (:meth:`RunConfig.validate`,
    and that the teacher can be found); a ``ValueError`` with one clear line."""
    config.validate()
    if config.teacher:
        teachers.TeacherRef.parse(str(config.teacher), Path(runs_dir) if runs_dir else None)  # a clear error if unknown


def check_teachers(configs: Iterable[RunConfig], runs_dir: Path | str | None = None) -> None:
    """Load each distinct teacher of ``configs`` once, so a file that is no teacher (or one damaged
    since it was made) is a ``ValueError`` before the first run, not a failure in the middle."""
    for name in dict.fromkeys(str(c.teacher) for c in configs if c.teacher):
        try:
            teachers.resolve(name, Path(runs_dir) if runs_dir else None)
        except (OSError, KeyError, RuntimeError) as error:
            raise ValueError(f"teacher {name!r} cannot be loaded: {error}") from None


# --------------------------------------------------------------------------- events
@dataclass
class SweepEvent:
    """Base of every event :func:`run_sweep` yields."""


@dataclass
class SweepStarted(SweepEvent):
    total: int            # distinct runs in the sweep
    to_run: int           # of which not finished before
    executor: str


@dataclass
class RunStarted(SweepEvent):
    index: int            # position in the sweep's (deduplicated) config list
    key: str
    config: RunConfig


@dataclass
class RunWaiting(SweepEvent):
    """A run waits for a free job slot (:class:`JobSlots`); ``position`` 1 is next in line."""

    index: int
    key: str
    position: int


@dataclass
class RunProgress(SweepEvent):
    """A training event (:mod:`kdviz.train`) of a run. From an in-process executor also the
    student being trained and its :class:`~kdviz.experiment.Experiment` (between two steps:
    safe to read); from a streaming Ray executor the event only."""

    index: int
    key: str
    event: object
    student: object = None
    experiment: object = None


@dataclass
class RunFinished(SweepEvent):
    index: int
    key: str
    config: RunConfig
    record: dict
    skipped: bool = False  # finished in an earlier sweep: not run again


@dataclass
class RunFailed(SweepEvent):
    index: int
    key: str
    config: RunConfig
    error: str


@dataclass
class SweepFinished(SweepEvent):
    records: list[dict | None]   # per config, in order; None where the run failed or was not run
    failed: int
    wall_s: float


@dataclass
class Job:
    index: int
    key: str
    config: RunConfig


# --------------------------------------------------------------------------- one run, anywhere
def _runner(executor: str, threads: int | None, key: str) -> dict:
    return {"executor": executor, "host": socket.gethostname(), "threads": threads or torch.get_num_threads(),
            "sweep_key": key}


def _train_streaming(experiment: Experiment, push: Callable[[list], str], every: float = 0.5) -> None:
    """Drive a run away from its driver, handing its training events to ``push`` every
    ``every`` seconds (and at every phase and epoch) and obeying the command ``push`` answers
    with: ``pause`` holds the run between two steps, ``stop`` ends it (its record is kept,
    marked stopped), ``run`` goes on."""
    buffer: list = []
    last = time.monotonic()
    for event in experiment.events():
        if not isinstance(event, Finished):  # the record carries everything Finished does
            buffer.append(event)
        if time.monotonic() - last > every or isinstance(event, (PhaseStarted, EpochDone)):
            command = push(buffer)
            buffer, last = [], time.monotonic()
            while command == "pause":
                time.sleep(0.1)
                command = push([])
            if command == "stop":
                experiment.stop.set()
    if buffer:
        push(buffer)


def _ray_push(channel, token: str) -> Callable[[list], str]:
    """``push`` for a Ray worker: the events to the driver's :class:`ProgressChannel`, its command back."""
    import ray  # only on a Ray worker

    return lambda events: ray.get(channel.push.remote(token, events))


def _pipe_push(conn) -> Callable[[list], str]:
    """``push`` for a child process (:class:`ChildExecutor`): the events down the pipe to the
    parent, answered by the last command the parent sent (``run`` until it sends one)."""
    last = ["run"]

    def push(events: list) -> str:
        if events:
            conn.send(("events", events))
        while conn.poll():
            last[0] = conn.recv()
        return last[0]

    return push


def run_remote(config: dict, key: str, threads: int, executor: str, teacher_bytes: bytes | None = None,
               channel=None, token: str | None = None, resume: str | None = None, conn=None) -> dict:
    """Train one config in a scratch folder and return ``{"record", "checkpoint"}`` (the
    checkpoint's bytes, or None) or ``{"error"}``; what a pool process, a child process or a Ray
    task runs. ``teacher_bytes``: the teacher's checkpoint, shipped from the driver. ``channel``
    (a :class:`ProgressChannel` actor) and ``token``, or ``conn`` (a pipe to the parent process):
    stream the training events back and take commands. ``resume``: a file on this machine for
    the state after each epoch (an interrupted run goes on from there)."""
    torch.set_num_threads(max(1, int(threads)))
    scratch = Path(tempfile.mkdtemp(prefix="kdviz-sweep-"))
    try:
        cfg = RunConfig.from_dict(config)
        if teacher_bytes is not None:
            (scratch / "teacher.pt").write_bytes(teacher_bytes)
            cfg = replace(cfg, teacher=str(scratch / "teacher.pt"))
        experiment = Experiment(cfg, runs_dir=scratch / "runs", resume=resume)
        if channel is not None:
            _train_streaming(experiment, _ray_push(channel, token))
        elif conn is not None:
            _train_streaming(experiment, _pipe_push(conn), every=0.1)
        else:
            experiment.run()
        record = experiment.record
        if resume and not record.get("stopped"):
            Path(resume).unlink(missing_ok=True)
        record["runner"] = _runner(executor, threads, key)
        checkpoint = run_checkpoint(record["id"], scratch / "runs")
        return {"record": record, "checkpoint": checkpoint.read_bytes() if checkpoint.is_file() else None}
    except Exception as error:  # noqa: BLE001 - the driver reports it as a failed run
        return {"error": f"{type(error).__name__}: {error}"}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class ProgressChannel:
    """Training events from Ray workers to the driver, and the driver's commands back (``run``,
    ``pause``, ``stop``), per run token; one small Ray actor per driver process."""

    def __init__(self):
        self.events: dict[str, list] = {}
        self.commands: dict[str, str] = {}

    def push(self, token: str, events: list) -> str:
        if events:
            self.events.setdefault(token, []).extend(events)
        return self.commands.get(token, "run")

    def take(self, tokens: list[str]) -> dict[str, list]:
        return {t: self.events.pop(t, []) for t in tokens}

    def command(self, token: str, command: str) -> None:
        self.commands[token] = command

    def forget(self, token: str) -> None:
        self.events.pop(token, None)
        self.commands.pop(token, None)


def land(result: dict, config: RunConfig, runs_dir: Path, teacher_source: str | None = None) -> dict:
    """Write a remote run's record and checkpoint into the driver's ``runs_dir`` (atomically);
    the record names the config and teacher as the driver gave them."""
    record = result["record"]
    record["config"] = config.to_dict()
    if teacher_source is not None:
        record["teacher"] = teacher_source
    if result.get("checkpoint") is not None:
        path = run_checkpoint(record["id"], runs_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{CHECKPOINT}.{os.getpid()}.tmp")
        tmp.write_bytes(result["checkpoint"])
        tmp.replace(path)
        record["checkpoint"] = str(path)
    else:
        record.pop("checkpoint", None)
    save_record(record, runs_dir)
    return record


def _ship_teacher(config: RunConfig, runs_dir: Path) -> tuple[bytes | None, str | None]:
    """A teacher that lives on the driver's disk (a run id or a path): its bytes and the name
    the record gives it. Pretrained names resolve on the worker (shipped with the package)."""
    if not config.teacher:
        return None, None
    try:
        ref = teachers.TeacherRef.parse(config.teacher, runs_dir)
    except ValueError:
        return None, None  # the worker reports it
    if ref.kind == teachers.PRETRAINED:
        return None, None
    path = Path(ref.name) if ref.kind == teachers.PATH else run_checkpoint(ref.name, runs_dir)
    return path.read_bytes(), str(ref)


# --------------------------------------------------------------------------- executors
def check_command(command: str) -> None:
    """What :meth:`Executor.command` takes: ``run`` (resume), ``pause`` or ``stop``."""
    if command not in ("run", "pause", "stop"):
        raise ValueError(f"command must be run, pause or stop, got {command!r}")


class Executor:
    """Runs jobs and yields :class:`RunStarted` / :class:`RunProgress` / :class:`RunFinished` /
    :class:`RunFailed` as they happen, in any order. ``stop`` ends the sweep early: no new run
    starts, and running ones end as soon as the executor can end them."""

    name = "executor"

    def execute(self, jobs: list[Job], runs_dir: Path, stop: threading.Event) -> Iterator[SweepEvent]:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def command(self, command: str) -> None:
        """``pause``, ``run`` (resume) or ``stop`` the runs in flight, where the executor can
        reach them between two steps (else nothing: an in-process run pauses when its events
        are not pulled)."""


class LocalExecutor(Executor):
    """This machine. ``workers=1``: in this process, one run after another (train events are
    forwarded, ``stop`` ends the current run between two steps and keeps its record, marked
    stopped; a consumer that stops pulling events pauses the run). ``workers>1``: that many
    processes (spawned), each run with ``cpus_per_run`` torch threads. ``cpus_per_run=None``
    (in-process only) leaves torch's thread count alone. ``slots`` (in-process only): each run
    first waits for a free slot there (:class:`RunWaiting` events tell its place in line).
    ``resume_dir``: each run keeps its state after every epoch in ``<resume_dir>/<key>.pt``, so a
    long run that was interrupted goes on from its last epoch when the sweep is run again
    (finished runs are skipped anyway); the file is removed when the run finishes."""

    name = "local"

    def __init__(self, workers: int = 1, cpus_per_run: int | None = 1, slots: JobSlots | None = None,
                 resume_dir: Path | str | None = None):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        cores = os.cpu_count() or 1
        if cpus_per_run is not None and not 1 <= cpus_per_run <= cores:
            raise ValueError(f"cpus per run must be in [1, {cores}] (this machine's cores), got {cpus_per_run}")
        if slots is not None and workers > 1:
            raise ValueError("job slots are for in-process runs (workers=1)")
        self.workers, self.cpus_per_run, self.slots = workers, cpus_per_run, slots
        self.resume_dir = Path(resume_dir) if resume_dir else None

    def resume_file(self, job: Job) -> Path | None:
        if self.resume_dir is None:
            return None
        self.resume_dir.mkdir(parents=True, exist_ok=True)
        return self.resume_dir / f"{job.key}.pt"

    def describe(self) -> str:
        where = "in this process" if self.workers == 1 else f"{self.workers} processes"
        return f"local ({where}, {self.cpus_per_run or torch.get_num_threads()} thread(s) per run)"

    def execute(self, jobs, runs_dir, stop):
        if self.workers == 1:
            yield from self._in_process(jobs, runs_dir, stop)
        else:
            yield from self._pool(jobs, runs_dir, stop)

    def _wait_for_slot(self, job, stop):
        """Yields :class:`RunWaiting` while ``job`` waits in line; ends holding a slot, or at a stop."""
        last = None
        while not self.slots.try_acquire(job):
            if stop.is_set():
                return
            position = self.slots.position(job)
            if position != last:
                last = position
                yield RunWaiting(job.index, job.key, position)
            time.sleep(0.1)

    def _in_process(self, jobs, runs_dir, stop):
        before = torch.get_num_threads()
        try:
            if self.cpus_per_run:
                torch.set_num_threads(self.cpus_per_run)
            for job in jobs:
                try:
                    if self.slots is not None:
                        yield from self._wait_for_slot(job, stop)
                    if stop.is_set():
                        return
                    yield from self._one(job, runs_dir, stop)
                finally:
                    if self.slots is not None:
                        self.slots.release(job)
        finally:
            torch.set_num_threads(before)

    def _one(self, job, runs_dir, stop):
        yield RunStarted(job.index, job.key, job.config)
        try:
            experiment = Experiment(job.config, runs_dir=runs_dir, stop=stop, resume=self.resume_file(job))
            for event in experiment.events():
                yield RunProgress(job.index, job.key, event, experiment.student, experiment)
            record = experiment.record
            if self.resume_dir and not record.get("stopped"):
                self.resume_file(job).unlink(missing_ok=True)
            record["runner"] = _runner(self.name, self.cpus_per_run, job.key)
            save_record(record, runs_dir)
        except Exception as error:  # noqa: BLE001 - one bad run does not end the sweep
            yield RunFailed(job.index, job.key, job.config, f"{type(error).__name__}: {error}")
            return
        yield RunFinished(job.index, job.key, job.config, record)

    def _pool(self, jobs, runs_dir, stop):
        threads = self.cpus_per_run or 1
        pending = list(jobs)
        running: dict[futures.Future, Job] = {}
        pool = futures.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            while pending or running:
                while pending and len(running) < self.workers and not stop.is_set():
                    job = pending.pop(0)
                    resume = self.resume_file(job)
                    with main_module_hidden():  # the pool starts its processes as jobs come
                        running[pool.submit(run_remote, job.config.to_dict(), job.key, threads, self.name,
                                            resume=str(resume) if resume else None)] = job
                    yield RunStarted(job.index, job.key, job.config)
                if not running:
                    return
                done, _ = futures.wait(running, timeout=0.5, return_when=futures.FIRST_COMPLETED)
                for future in done:
                    job = running.pop(future)
                    yield _outcome(future.result(), job, runs_dir)
        finally:
            pool.shutdown(wait=not running, cancel_futures=True)


_MAIN_LOCK = threading.Lock()


@contextmanager
def main_module_hidden():
    """While a run's process starts, ``__main__`` is an empty module of no file.

    A child that multiprocessing starts (fork server or spawn) first re-runs its parent's
    ``__main__`` from its file, so that functions defined there unpickle. In the app that is a page
    script: Streamlit installs each script run as ``__main__`` (``app/navigation.py``, or the page
    itself under ``AppTest``), so every live run re-ran a page without a session before it trained
    (the Home page: 0.4 s of a run's start; the Compare page under AppTest: the run crashed in it).
    A run's child needs nothing from ``__main__``: what it runs lives in kdviz's modules. The swap
    is serialised, and a ``__main__`` that another thread installed meanwhile is left in place."""
    with _MAIN_LOCK:
        saved, hidden = sys.modules.get("__main__"), types.ModuleType("__main__")
        sys.modules["__main__"] = hidden
        try:
            yield
        finally:
            if sys.modules.get("__main__") is hidden and saved is not None:
                sys.modules["__main__"] = saved


def child_context():
    """The multiprocessing context for :class:`ChildExecutor`: a fork server that has imported
    torch and kdviz once (where the platform has one; else fresh interpreters)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["kdviz.sweep"])  # no effect once the server runs
    return context


def start_child_server() -> None:
    """Start :func:`child_context`'s fork server now (seconds: it imports torch), so that a
    first run later starts at once; the app calls it while it warms up."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        from multiprocessing import forkserver

        child_context()
        forkserver.ensure_running()


def run_child(conn, config: dict, key: str, threads: int, teacher_bytes: bytes | None, env: dict[str, str],
              cwd: str, nice: int = 0) -> None:
    """A :class:`ChildExecutor` run's process: the parent's ``KDVIZ_*`` settings and folder
    (the fork server may have started under others), ``nice`` steps below the parent's
    priority, the run, its result sent last."""
    for name in [n for n in os.environ if n.startswith("KDVIZ_")]:
        del os.environ[name]
    os.environ.update(env)
    os.chdir(cwd)
    if nice and hasattr(os, "nice"):
        os.nice(nice)
    try:
        conn.send(("result", run_remote(config, key, threads, ChildExecutor.name, teacher_bytes, conn=conn)))
    except (BrokenPipeError, EOFError, OSError):
        pass  # the parent is gone: nobody to tell
    finally:
        conn.close()


class ChildExecutor(LocalExecutor):
    """This machine, one run after another (each first waiting for one of ``slots``, as a
    :class:`LocalExecutor` does), every run in a child process of its own, its training events
    streamed back through a pipe as :class:`RunProgress` (without the student).

    What the app's live runs use (:func:`job_executor`): the run's torch threads are then the
    main threads of a process of their own. In the web server's worker thread the same run
    trained 1.27x slower (its OpenMP team competing with the server's, BENCHMARKS.md, Speed),
    and a crash in a run cannot take the server down. Children fork from a server process
    that imported torch and kdviz once (:func:`child_context`), so a run starts without a new
    interpreter's seconds of imports. :meth:`command` pauses, resumes or stops the run in
    progress between two steps; a sweep's ``stop`` stops it, its record kept, marked stopped.
    ``nice``: the child runs that many steps below this process's priority (Unix niceness), so
    that a server's answers to its pages come before training, which takes the CPU they leave."""

    name = "local-child"

    def __init__(self, cpus_per_run: int | None = None, slots: JobSlots | None = None, nice: int = 0):
        super().__init__(1, cpus_per_run, slots)
        if isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= 19:
            raise ValueError(f"nice must be a whole number in [0, 19], got {nice!r}")
        self.nice = nice
        self._conn = None
        self._send_lock = threading.Lock()

    def describe(self) -> str:
        nice = f", nice {self.nice}" if self.nice else ""
        return f"local (a child process per run, {self.cpus_per_run or torch.get_num_threads()} thread(s){nice})"

    def command(self, command: str) -> None:
        check_command(command)
        with self._send_lock:
            if self._conn is not None:
                try:
                    self._conn.send(command)
                except OSError:
                    pass  # the run has just ended

    def _one(self, job, runs_dir, stop):
        yield RunStarted(job.index, job.key, job.config)
        teacher, source = _ship_teacher(job.config, runs_dir)
        threads = self.cpus_per_run or torch.get_num_threads()
        env = {name: value for name, value in os.environ.items() if name.startswith("KDVIZ_")}
        context = child_context()
        conn, child_end = context.Pipe()
        process = context.Process(target=run_child, name=f"kdviz-run-{job.key[:8]}", daemon=True,
                                  args=(child_end, job.config.to_dict(), job.key, threads, teacher, env, os.getcwd(),
                                        self.nice))
        result, stopping = None, False
        try:
            with main_module_hidden():
                process.start()
            child_end.close()
            self._conn = conn
            while result is None:
                if stop.is_set() and not stopping:
                    stopping = True
                    self.command("stop")  # ends between two steps; the record is kept
                if conn.poll(0.1):
                    try:
                        kind, payload = conn.recv()
                    except EOFError:
                        break
                    if kind == "events":
                        for event in payload:
                            yield RunProgress(job.index, job.key, event)
                    else:
                        result = payload
                elif not process.is_alive() and not conn.poll(0):
                    # ended, and nothing left in the pipe: a result sent just before it ended (after the
                    # poll above gave up) is still there to read, and the next turn reads it
                    break
        finally:
            with self._send_lock:
                self._conn = None
            if result is None and process.is_alive():
                process.terminate()  # the sweep was abandoned mid-run
            process.join(10)
            conn.close()
        if result is None:
            result = {"error": f"RuntimeError: the run's process ended without a result (exit code {process.exitcode})"}
        yield _outcome(result, job, runs_dir, source)


_CHANNEL = None


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A ``host:port`` Ray address must accept a connection (``auto`` and ``ray://`` are Ray's to resolve)."""
    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"a Ray address is HOST:PORT, 'local' or 'auto', got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        raise ValueError(f"cannot reach Ray at {address} ({error.strerror or error}); is `ray start --head` "
                         "running there?") from None


class RayExecutor(Executor):
    """A Ray cluster (or a Ray instance on this machine: ``address="local"``). Each run is one
    task declaring ``num_cpus=cpus_per_run`` and ``num_gpus=gpus_per_run`` (a fraction shares a
    GPU), so Ray places runs where resources are free and queues the rest.

    ``stream=True`` sends each run's training events back as :class:`RunProgress` (through a
    :class:`ProgressChannel` actor), lets :meth:`command` pause, resume or stop the runs, and
    makes a sweep's ``stop`` end the runs between two steps with their records kept; without
    it, a stop cancels the tasks."""

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_run: int = 1, gpus_per_run: float = 0.0,
                 init_kwargs: dict | None = None, stream: bool = False):
        try:
            import ray  # an optional dependency (kdviz[ray])
        except ImportError:
            raise ValueError("the Ray executor needs Ray: pip install 'kdviz[ray]'") from None
        if cpus_per_run < 1 or gpus_per_run < 0:
            raise ValueError(f"cpus per run must be >= 1 and gpus per run >= 0, got {cpus_per_run}, {gpus_per_run}")
        self.ray = ray
        self.address = address or os.environ.get(RAY_ENV) or "local"
        if self.address != "local" and not ray.is_initialized():
            _check_reachable(self.address)  # Ray itself retries an unreachable address for minutes
        self.cpus_per_run, self.gpus_per_run = cpus_per_run, gpus_per_run
        self.init_kwargs = dict(init_kwargs or {})
        self.stream = stream
        self._tokens: dict[str, int] = {}  # streamed runs in flight: token -> job index

    def describe(self) -> str:
        gpus = f", {self.gpus_per_run:g} GPU" if self.gpus_per_run else ""
        return f"ray ({self.address}, {self.cpus_per_run} CPU{gpus} per run)"

    def connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        kwargs = {"logging_level": "WARNING", "log_to_driver": False, **self.init_kwargs}
        if self.address == "local":  # a Ray instance for this machine only: on the loopback interface
            kwargs.setdefault("include_dashboard", False)
            kwargs.setdefault("_node_ip_address", "127.0.0.1")
        try:
            ray.init(address=self.address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ValueError(f"cannot connect to Ray at {self.address!r}: {str(error).splitlines()[0]}") from None

    def channel(self):
        """This driver's :class:`ProgressChannel` actor (made on first use)."""
        global _CHANNEL
        if _CHANNEL is None:
            _CHANNEL = self.ray.remote(num_cpus=0)(ProgressChannel).remote()
        return _CHANNEL

    def command(self, command: str) -> None:
        """``pause``, ``run`` (resume) or ``stop`` every streamed run of this executor in flight."""
        check_command(command)
        for token in list(self._tokens):
            self.channel().command.remote(token, command)

    def _progress(self, tokens: list[str]):
        batches = self.ray.get(self.channel().take.remote(tokens))
        for token, events in batches.items():
            for event in events:
                yield token, event

    def execute(self, jobs, runs_dir, stop):
        ray = self.ray
        self.connect()
        task = ray.remote(run_remote).options(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run,
                                               max_retries=1)
        shipped: dict[str, tuple] = {}
        running: dict = {}
        sources: dict[int, str | None] = {}
        token_of: dict[int, str] = {}
        channel = self.channel() if self.stream else None
        by_index = {job.index: job for job in jobs}
        stopping = False
        try:
            for job in jobs:
                ref = job.config.teacher
                if ref and ref not in shipped:
                    blob, source = _ship_teacher(job.config, runs_dir)
                    shipped[ref] = (ray.put(blob) if blob is not None else None, source)
                teacher, sources[job.index] = shipped.get(ref, (None, None)) if ref else (None, None)
                token = f"{job.key}-{uuid.uuid4().hex[:8]}"
                if channel is not None:
                    token_of[job.index] = token
                    self._tokens[token] = job.index
                running[task.remote(job.config.to_dict(), job.key, self.cpus_per_run, self.name, teacher,
                                    channel, token)] = job
                yield RunStarted(job.index, job.key, job.config)  # submitted; Ray queues what does not fit
            while running:
                if stop.is_set() and not stopping:
                    if channel is None:
                        return  # the finally cancels the tasks
                    stopping = True
                    self.command("stop")  # streamed runs end between two steps and keep their records
                done, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
                if channel is not None:
                    for token, event in self._progress([token_of[j.index] for j in running.values()]):
                        index = self._tokens[token]
                        yield RunProgress(index, by_index[index].key, event)
                for ref in done:
                    job = running.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as error:  # noqa: BLE001 - a lost worker or node: report the run as failed
                        result = {"error": f"{type(error).__name__}: {str(error).splitlines()[0]}"}
                    if channel is not None:
                        token = token_of[job.index]
                        channel.forget.remote(token)
                        self._tokens.pop(token, None)
                    yield _outcome(result, job, runs_dir, sources.get(job.index))
        finally:
            for ref, job in running.items():
                ray.cancel(ref, force=True)
                if channel is not None:
                    channel.forget.remote(token_of[job.index])
                    self._tokens.pop(token_of[job.index], None)


def _outcome(result: dict, job: Job, runs_dir: Path, teacher_source: str | None = None) -> SweepEvent:
    if "error" in result:
        return RunFailed(job.index, job.key, job.config, result["error"])
    return RunFinished(job.index, job.key, job.config, land(result, job.config, runs_dir, teacher_source))


def make_executor(ray: str | None = None, workers: int | None = None, cpus_per_run: int | None = 1,
                  gpus_per_run: float = 0.0, local: bool = False) -> Executor:
    """The executor the CLI and the app use: Ray when ``ray`` (an address or ``local``) or
    ``$KDVIZ_RAY_ADDRESS`` is given (unless ``local``), else a :class:`LocalExecutor` with
    ``workers`` processes (default 1: in this process)."""
    address = None if local else (ray or os.environ.get(RAY_ENV) or None)
    if address:
        return RayExecutor(address, cpus_per_run or 1, gpus_per_run)
    if gpus_per_run:
        raise ValueError("--gpus-per-run needs the Ray executor (--ray ADDRESS); locally, runs use the GPU "
                         "that --device picks")
    return LocalExecutor(workers or 1, cpus_per_run)


def job_executor(in_process: bool = False) -> Executor:
    """The executor for the app's training jobs: the Ray cluster at ``$KDVIZ_RAY_ADDRESS`` when
    set (and the job need not run here: ``in_process`` is for jobs whose model is watched while
    it trains), else this machine, each job waiting for one of the :func:`server_slots`: in a
    child process of its own (:class:`ChildExecutor`), or, with ``in_process``, in this process."""
    if in_process:
        return LocalExecutor(1, cpus_per_run=None, slots=server_slots())
    if os.environ.get(RAY_ENV):
        return RayExecutor(os.environ[RAY_ENV], cpus_per_run=1, stream=True, gpus_per_run=default_ray_gpus_per_job())
    return ChildExecutor(cpus_per_run=None, slots=server_slots(), nice=default_job_nice())


def local_workers(cpus_per_run: int = 1) -> int:
    """Runs that fit on this machine's cores at once."""
    return max(1, (os.cpu_count() or 1) // max(1, cpus_per_run))


# --------------------------------------------------------------------------- the sweep
def same_teacher(record: dict, config: RunConfig, runs_dir: Path, digests: dict[str, str | None]) -> bool:
    """Whether a finished ``record`` was taught by the weights ``config``'s teacher names today
    (its ``teacher_sha256`` against :meth:`kdviz.teachers.TeacherRef.sha256`; ``digests`` memoises those).
    A record from before teachers were fingerprinted, or one without a teacher, counts as the same."""
    taught_by = record.get("teacher_sha256")
    if not config.teacher or not taught_by:
        return True
    if config.teacher not in digests:
        try:
            digests[config.teacher] = teachers.TeacherRef.parse(config.teacher, runs_dir).sha256(runs_dir)
        except (OSError, ValueError, KeyError):
            digests[config.teacher] = None  # the run itself will say what is wrong with the teacher
    return digests[config.teacher] == taught_by


def run_sweep(configs: Iterable[RunConfig], executor: Executor | None = None, runs_dir: Path | str | None = None,
              resume: bool = True, stop: threading.Event | None = None, check: bool = True) -> Iterator[SweepEvent]:
    """Run every config (each distinct config once) and yield events as they come:
    :class:`SweepStarted`, then per run :class:`RunStarted` (not for resumed runs),
    :class:`RunProgress` (in-process only), :class:`RunFinished` or :class:`RunFailed`, and
    last :class:`SweepFinished`. ``resume`` (default) reports runs already finished in
    ``runs_dir`` as ``RunFinished(skipped=True)`` instead of running them again. ``check``
    validates every config before the first run starts (a ``ValueError`` names the first
    bad one)."""
    started = time.time()
    executor = executor or LocalExecutor()
    runs_dir = Path(runs_dir) if runs_dir else default_runs_dir()
    stop = stop or threading.Event()
    unique, seen = [], set()
    for config in configs:
        key = run_key(config)
        if key not in seen:
            seen.add(key)
            unique.append(Job(len(unique), key, config))
    if check:
        for job in unique:
            try:
                check_config(job.config, runs_dir)
            except ValueError as error:
                raise ValueError(f"run {job.index + 1} ({job.config.method}, seed {job.config.train.seed}): {error}") from None
        check_teachers((job.config for job in unique), runs_dir)
    done = finished_runs(runs_dir) if resume else {}
    digests: dict[str, str | None] = {}
    done = {job.key: done[job.key] for job in unique
            if job.key in done and same_teacher(done[job.key], job.config, runs_dir, digests)}
    records: list[dict | None] = [None] * len(unique)
    todo = [job for job in unique if job.key not in done]
    yield SweepStarted(len(unique), len(todo), executor.describe())
    for job in unique:
        if job.key in done:
            records[job.index] = done[job.key]
            yield RunFinished(job.index, job.key, job.config, done[job.key], skipped=True)
    failed = 0
    if todo:
        runs_dir.mkdir(parents=True, exist_ok=True)
        for event in executor.execute(todo, runs_dir, stop):
            if isinstance(event, RunFinished):
                records[event.index] = event.record
            elif isinstance(event, RunFailed):
                failed += 1
            yield event
    yield SweepFinished(records, failed, round(time.time() - started, 3))


def sweep_records(configs: Iterable[RunConfig], executor: Executor | None = None,
                  runs_dir: Path | str | None = None, resume: bool = True) -> list[dict | None]:
    """:func:`run_sweep` to the end; one record per distinct config, in order (None: failed)."""
    for event in run_sweep(configs, executor, runs_dir, resume):
        if isinstance(event, SweepFinished):
            return event.records
    return []


MAX_SWEEP_FILE = 1_000_000  # bytes


def sweep_file(path: Path | str) -> dict:
    """A sweep written as TOML or JSON: scalars are the base settings, lists are axes, e.g.::

        dataset = "digits"
        student = "mlp-30"
        epochs = 1
        methods = ["baseline", "kd"]
        seeds = [0, 1, 2]
        T = [2, 4]
    """
    path = Path(path)
    kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_SWEEP_FILE + 1)  # at most this much, whatever the file (even /dev/zero)
    except OSError as error:
        raise ValueError(f"cannot read sweep file {path}: {error.strerror or error}") from None
    if len(raw) > MAX_SWEEP_FILE:
        raise ValueError(f"{path} is over {MAX_SWEEP_FILE // 1000:,} kB; a sweep file is a short table of settings and axes")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text file (a sweep file is TOML or JSON in UTF-8)") from None
    if not text.strip():
        raise ValueError(f"{path} is empty; a sweep file holds a table of settings and axes")
    try:
        spec = tomllib.loads(text) if kind == "TOML" else json.loads(text)
    except ValueError as error:  # tomllib.TOMLDecodeError and json.JSONDecodeError are ValueErrors
        raise ValueError(f"{path} is not valid {kind}: {error}") from None
    except RecursionError:
        raise ValueError(f"{path} is not a usable {kind} file: nested too deeply") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{path} must hold a table of settings and axes")
    return spec


def grid_from_spec(spec: dict) -> list[RunConfig]:
    """:func:`grid` from one flat dict: list values are axes, the rest the base (``omit_classes``
    is a setting even as a list; a list of lists is an axis of it)."""
    base, axes = {}, {}
    for name, value in spec.items():
        is_axis = isinstance(value, list) and not (name == "omit_classes" and not any(isinstance(v, list) for v in value))
        (axes if is_axis else base)[name] = value
    return grid(base, **axes)


# --------------------------------------------------------------------------- server jobs
class JobSlots:
    """At most ``limit`` jobs at once; the others wait in line, first come first served.

    A job takes a slot with :meth:`try_acquire` (polled, so a waiting job can report its
    place and be stopped) and gives it back with :meth:`release`. :meth:`position` is 0 for
    a job that is not waiting, k for the k-th in line."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"a server needs at least 1 job slot, got {limit}")
        self.limit = limit
        self._lock = threading.Lock()
        self._line: list[object] = []
        self._running: set[int] = set()

    def try_acquire(self, job: object) -> bool:
        with self._lock:
            if id(job) in self._running:
                return True
            if job not in self._line:
                self._line.append(job)
            if self._line[0] is job and len(self._running) < self.limit:
                self._line.pop(0)
                self._running.add(id(job))
                return True
            return False

    def release(self, job: object) -> None:
        with self._lock:
            self._running.discard(id(job))
            if job in self._line:
                self._line.remove(job)

    def position(self, job: object) -> int:
        with self._lock:
            return self._line.index(job) + 1 if job in self._line else 0

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._running)

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._line)


_SERVER_SLOTS: JobSlots | None = None
_SERVER_LOCK = threading.Lock()


def server_slots() -> JobSlots:
    """The slots every in-process job of this process (the app's training jobs) shares;
    ``$KDVIZ_MAX_JOBS`` or :func:`default_max_jobs`."""
    global _SERVER_SLOTS
    with _SERVER_LOCK:
        if _SERVER_SLOTS is None:
            _SERVER_SLOTS = JobSlots(default_max_jobs())
        return _SERVER_SLOTS


__all__ = ["ChildExecutor", "Executor", "Job", "LocalExecutor", "RayExecutor", "RunFailed", "RunFinished", "RunProgress",
           "RunStarted", "RunWaiting", "SweepEvent", "JobSlots", "server_slots", "SweepFinished",
           "SweepStarted", "check_config", "check_teachers", "default_teacher",
           "finished_runs", "grid", "grid_from_spec", "land", "local_workers", "make_executor", "run_key",
           "job_executor",
           "run_child", "run_remote", "run_sweep", "start_child_server", "sweep_file", "sweep_records"]
