"""The two students an "inside the networks" page compares: saved runs, shipped students, or trained now.

:func:`available` lists a page's choices: the runs trained here first (newest first), then the
students shipped in ``pretrained/students/`` (:mod:`kdviz.pretrained`), so a fresh install shows
all three networks at once and the user's own students take precedence once there. A shipped
student is handed around as a run-like record (:func:`shipped_record`, id ``shipped:NAME``), and
:func:`load_student`, :func:`load_method` and :func:`load_soft_targets` read either kind.

A :class:`StudentPair` trains a page's configs (:func:`kdviz.presets.pair_configs`) one after
another on a :class:`~kdviz.live.RunQueue`, and keeps beside each run record what the page
needs later: the method's own trained modules (``method.pt``) and, when a recorder is given,
its frames of the student's outputs (``soft_targets.json``, :mod:`kdviz.recording`).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from kdviz import pretrained
from kdviz.experiment import RunConfig
from kdviz.files import write_json_atomic
from kdviz.live import LiveRun, RunQueue
from kdviz.methods import build_method
from kdviz.models import ZooModel
from kdviz.runs import default_runs_dir, find_runs, load_checkpoint, load_run, run_checkpoint
from kdviz.teachers import PRETRAINED, TeacherRef

METHOD_STATE = "method.pt"          # the method's own modules (adapters, paraphraser, translator)
SOFT_TARGETS = "soft_targets.json"  # a SoftTargetRecorder's frames, with the page's metadata
SHIPPED = "shipped"                 # a shipped student's record id: "shipped:NAME" (never a run id: no ':')


def same_budget(record: dict, config: RunConfig) -> bool:
    """Whether ``record`` is a run of exactly ``config`` (data, student, method, teacher, budget, seed)."""
    c = record.get("config", {})
    keys = ("epochs", "batch_size", "lr", "seed", "precision", "optimizer", "schedule")
    return (c.get("dataset") == config.dataset and c.get("student") == config.student
            and c.get("method") == config.method and c.get("teacher") == config.teacher
            and c.get("fraction") == config.fraction and not c.get("omit_classes") and not c.get("hide_labels")
            and all(c.get("train", {}).get(k) == getattr(config.train, k) for k in keys)
            and all(record.get("method_params", {}).get(k) == v for k, v in config.params.items()))


def saved_runs(dataset: str, student: str, method: str, teacher: str | None = None, runs_dir=None) -> list[dict]:
    """Finished runs with a saved student for this data set, student and method, newest first.
    ``teacher`` (a pretrained name) keeps only runs distilled from that teacher."""
    distilled_from = str(TeacherRef(PRETRAINED, teacher)) if teacher is not None and method != "baseline" else None
    query = {"teacher": distilled_from} if distilled_from else {}
    return find_runs(runs_dir, dataset=dataset, student=student, method=method, saved_model=True,
                     whole_classes=True, **query)


# --------------------------------------------------------------------------- shipped students
def shipped_name(record_or_id: dict | str) -> str | None:
    """The shipped student's name for a record (or id) ``shipped:NAME``; None for a run trained here."""
    run_id = record_or_id["id"] if isinstance(record_or_id, dict) else str(record_or_id)
    kind, sep, name = run_id.partition(":")
    return name if sep and kind == SHIPPED else None


def _as_record(info: dict) -> dict:
    """A shipped student's card in the shape the pages read a run record (``id``, ``test_acc``,
    ``config``, ``method``, ``method_params``, ``confusion``, ``created``), with ``shipped``,
    ``budget`` and the whole ``card``."""
    return {"id": f"{SHIPPED}:{info['name']}", "shipped": True, "name": info["name"], "test_acc": info["test_acc"],
            "config": info["config"], "method": info["method"], "method_params": info["method_params"],
            "confusion": info["confusion"], "created": info["created"], "budget": info.get("budget", ""),
            "teacher": str(TeacherRef(PRETRAINED, info["teacher"])) if info.get("distilled") else None,
            "card": info}


def shipped_record(name: str) -> dict:
    """The shipped student ``name`` as a run-like record (its card checked)."""
    return _as_record(pretrained.student_card(name) | {"name": name})


def shipped_students(dataset: str, student: str, method: str, teacher: str | None = None) -> list[dict]:
    """The shipped students (run-like records) of this data set, architecture and method, shown beside
    the shipped ``teacher`` (None: any). A broken card is left out (``kdviz pretrained list`` says why)."""
    cards, _ = pretrained.student_cards()
    return [_as_record(c) for c in cards
            if (c["dataset"], c["model"], c["method"]) == (dataset, student, method)
            and teacher in (None, c["teacher"])]


def available(dataset: str, student: str, method: str, teacher: str | None = None, runs_dir=None) -> list[dict]:
    """A page's choices for one student: the runs trained here (newest first), then the shipped ones.
    So the first choice is the user's own newest student when there is one, else the shipped one."""
    return saved_runs(dataset, student, method, teacher, runs_dir) + shipped_students(dataset, student, method, teacher)


def record_of(run_id: str, runs_dir=None) -> dict:
    """The record of a run trained here, or of a shipped student (``shipped:NAME``)."""
    name = shipped_name(run_id)
    return shipped_record(name) if name is not None else load_run(run_id, runs_dir)


# --------------------------------------------------------------------------- reading either kind
def run_dir(record: dict, runs_dir=None) -> Path:
    return Path(runs_dir or default_runs_dir()) / record["id"]


def load_student(record: dict, runs_dir=None) -> ZooModel:
    """The student of a run trained here, or a shipped one (checked against its card)."""
    name = shipped_name(record)
    if name is not None:
        return pretrained.load_student(name)
    return load_checkpoint(run_checkpoint(record["id"], runs_dir))


def _extra_file(record: dict, shipped_kind: str, run_file: str, runs_dir=None) -> Path | None:
    name = shipped_name(record)
    if name is not None:
        return pretrained.student_file(name, shipped_kind)
    path = run_dir(record, runs_dir) / run_file
    return path if path.is_file() else None


def has_method_state(record: dict, runs_dir=None) -> bool:
    """Whether the run (or shipped student) kept its method's trained modules."""
    if shipped_name(record) is not None:
        return "method" in record["card"]["extra_files"]
    return (run_dir(record, runs_dir) / METHOD_STATE).is_file()


def has_soft_targets(record: dict, runs_dir=None) -> bool:
    """Whether the run (or shipped student) kept its outputs on followed images during training."""
    if shipped_name(record) is not None:
        return "soft_targets" in record["card"]["extra_files"]
    return (run_dir(record, runs_dir) / SOFT_TARGETS).is_file()


def load_method(record: dict, student: ZooModel, teacher: ZooModel, runs_dir=None):
    """The run's method with its own trained modules (None when the run saved none)."""
    path = _extra_file(record, "method", METHOD_STATE, runs_dir)
    if path is None:
        return None
    method = build_method(record["method"], student, teacher, record.get("method_params") or {})
    method.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return method.eval()


def load_soft_targets(record: dict, runs_dir=None) -> dict | None:
    """The run's recorded frames and metadata (``frames``, ``index``, ``probe``), None when it has none."""
    path = _extra_file(record, "soft_targets", SOFT_TARGETS, runs_dir)
    if path is None:
        return None
    saved = json.loads(path.read_text())
    if "frames" not in saved and "snapshots" in saved:  # written before the frames were named so
        saved["frames"] = saved.pop("snapshots")
    return saved


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
