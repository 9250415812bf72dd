"""The app server's own settings, read from its environment and checked: how many training jobs
run at once (``KDVIZ_MAX_JOBS``), how far below the server they run (``KDVIZ_JOB_NICE``) and their
GPUs on a Ray cluster (``KDVIZ_RAY_GPUS_PER_JOB``). A bad value is a ``ValueError`` with one line.

This module imports nothing heavy (no torch): the app's entry script checks these settings before
a page runs, while a fresh server is still importing torch for the pages.
"""
from __future__ import annotations

import os

MAX_JOBS_ENV = "KDVIZ_MAX_JOBS"


def _env_number(name: str, kind: type, low: float, high: float, default, wanted: str):
    """The server setting ``$name`` read as ``kind`` in ``[low, high]``; ``default`` when unset or
    blank; otherwise a ``ValueError`` with one line saying what it must be."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = kind(value)
    except ValueError:
        number = None
    if number is None or not low <= number <= high:  # NaN fails this too
        raise ValueError(f"${name} must be {wanted}, got {value!r}")
    return number


def default_max_jobs() -> int:
    """Jobs at once on a server: ``$KDVIZ_MAX_JOBS``, else one per two cores (a training job keeps
    about two threads busy), at least one."""
    return _env_number(MAX_JOBS_ENV, int, 1, 2**31, max(1, (os.cpu_count() or 1) // 2), "a whole number >= 1")


JOB_NICE_ENV = "KDVIZ_JOB_NICE"


def default_job_nice() -> int:
    """How far below the server its training jobs run (Unix niceness, 0-19): ``$KDVIZ_JOB_NICE``,
    else 10. A slider answer then waits for no training: on 2 cores shared by a run and 30
    sessions, the pages' short reruns come first and training takes the CPU they leave
    (BENCHMARKS.md, load test); on an idle server a run trains as fast as at niceness 0."""
    return _env_number(JOB_NICE_ENV, int, 0, 19, 10, "a whole number in [0, 19]")


RAY_GPUS_ENV = "KDVIZ_RAY_GPUS_PER_JOB"


def default_ray_gpus_per_job() -> float:
    """Each app job's ``num_gpus`` on a Ray cluster: ``$KDVIZ_RAY_GPUS_PER_JOB``, else 0."""
    return _env_number(RAY_GPUS_ENV, float, 0, 1024, 0.0, "a number >= 0 (0.25: four jobs a GPU)")


def check_server_settings() -> None:
    """The app server's own ``KDVIZ_*`` settings (jobs at once, their niceness, their GPUs on
    Ray), each checked: a ``ValueError`` with one line, shown on every page instead of the
    first training run failing with it."""
    default_max_jobs()
    default_job_nice()
    default_ray_gpus_per_job()
