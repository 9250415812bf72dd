"""The two students an "inside the networks" page compares, as networks: saved runs, shipped students,
or trained now.

Which students there are, and their records, come from :mod:`kdviz.catalogue` (torch-free; its names
are re-exported here). :func:`load_student` and :func:`load_method` load either kind of record.

A :class:`StudentPair` trains a page's configs (:func:`kdviz.preset_runs.pair_configs`) one after
another on a :class:`~kdviz.live.RunQueue`, and keeps beside each run record what the page
needs later: the method's own trained modules (``method.pt``) and, when a recorder is given,
its frames of the student's outputs (``soft_targets.json``, :mod:`kdviz.recording`).
"""
from __future__ import annotations

import torch

from kdviz import pretrained
from kdviz.catalogue import (  # noqa: F401 - the students listed and read without torch, under the names kdviz uses
    METHOD_STATE,
    SHIPPED,
    SOFT_TARGETS,
    available,
    extra_file,
    has_method_state,
    has_soft_targets,
    load_soft_targets,
    record_of,
    run_dir,
    same_budget,
    saved_runs,
    shipped_name,
    shipped_record,
    shipped_students,
)
from kdviz.experiment import RunConfig
from kdviz.files import write_json_atomic
from kdviz.live import LiveRun, RunQueue
from kdviz.methods import build_method
from kdviz.models import ZooModel
from kdviz.runs import load_checkpoint, run_checkpoint


# --------------------------------------------------------------------------- reading either kind
def load_student(record: dict, runs_dir=None) -> ZooModel:
    """The student of a run trained here, or a shipped one (checked against its card)."""
    name = shipped_name(record)
    if name is not None:
        return pretrained.load_student(name)
    return load_checkpoint(run_checkpoint(record["id"], runs_dir))


def load_method(record: dict, student: ZooModel, teacher: ZooModel, runs_dir=None):
    """The run's method with its own trained modules (None when the run saved none)."""
    path = extra_file(record, "method", METHOD_STATE, runs_dir)
    if path is None:
        return None
    method = build_method(record["method"], student, teacher, record.get("method_params") or {})
    method.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return method.eval()


class StudentPair:
    """Train the configs one after another on a :class:`~kdviz.live.RunQueue` (each a live run), and
    save what a page needs beside each record: the method's modules (``method.pt``) and, when a
    recorder is given, its frames (``soft_targets.json``).

    With ``reuse=True`` a baseline config whose exact budget already has a saved run (and that
    needs no recorder) is not trained again (training is deterministic for a seed on the CPU):
    one baseline student serves the AT, RKD and FT pages."""

    def __init__(self, configs: list[RunConfig], runs_dir=None, recorders: list | None = None, reuse: bool = True,
                 meta: dict | None = None):
        self.configs, self.runs_dir, self.meta = list(configs), runs_dir, meta or {}
        self.recorders = list(recorders or [None] * len(self.configs))
        self.records: list[dict | None] = []
        for config, recorder in zip(self.configs, self.recorders):
            reused = None
            if reuse and recorder is None and config.method == "baseline":
                reused = next((r for r in saved_runs(config.dataset, config.student, config.method, None, runs_dir)
                               if same_budget(r, config)), None)
            self.records.append(reused)
        self._trained = [i for i, record in enumerate(self.records) if record is None]  # queue position -> config
        self.queue = RunQueue([self.configs[i] for i in self._trained], runs_dir,
                              consumers=[self.recorders[i] for i in self._trained],
                              on_finished=self._keep, stop_on_failure=True)

    def start(self) -> "StudentPair":
        self.queue.start()
        return self

    def _keep(self, position: int, run: LiveRun) -> None:
        """The queue's hook, in its worker after each run: save the extras, then publish the record."""
        i = self._trained[position]
        record = run.progress.record
        if record is None or record.get("stopped"):
            return
        folder = run_dir(record, self.runs_dir)
        method = run.experiment.method
        if any(True for _ in method.parameters()):
            torch.save({k: v.detach().cpu() for k, v in method.state_dict().items()}, folder / METHOD_STATE)
        if self.recorders[i] is not None:
            write_json_atomic(folder / SOFT_TARGETS, {**self.meta, "frames": self.recorders[i].frames})
        self.records[i] = record

    @property
    def error(self) -> str | None:
        """The first failed run's error message (training stops there)."""
        return next((run.progress.error for run in self.queue.runs if run.progress.state == "failed"), None)

    def stop(self) -> None:
        self.queue.stop()

    def join(self, timeout: float | None = None) -> None:
        self.queue.join(timeout)

    @property
    def done(self) -> bool:
        return self.queue.done

    @property
    def runs(self) -> list[LiveRun | None]:
        """Each config's live run, in config order (None for a reused run)."""
        trained = dict(zip(self._trained, self.queue.runs))
        return [trained.get(i) for i in range(len(self.configs))]

    def snapshots(self) -> list[dict | None]:
        """Each config's progress snapshot (None for a reused run)."""
        return [None if run is None else run.progress.snapshot() for run in self.runs]
