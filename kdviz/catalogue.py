"""Which networks are here, read without torch.

- Teachers: the shipped ones and the runs trained here on labels, each by kind, name, the link pages
  and menus use, and a readable label. :mod:`kdviz.teachers` (``TeacherRef``: parsing, loading the
  network) builds on this.
- Students of the "inside the networks" pages: :func:`available` lists a page's choices, the runs
  trained here first (newest first), then the students shipped in ``pretrained/students/``, so a fresh
  install shows all three networks at once and the user's own students take precedence once there. A
  shipped student is handed around as a run-like record (:func:`shipped_record`, id ``shipped:NAME``).
  :mod:`kdviz.students` (loading the networks, training a pair) builds on this.

The module stays torch-free so that a page can offer its networks before torch is imported (a first
view drawn from shipped numbers: BENCHMARKS.md, app speed).
"""
from __future__ import annotations

import json
from pathlib import Path

from kdviz import shipped
from kdviz.records import default_runs_dir, find_runs, load_run

PRETRAINED, RUN, PATH = "pretrained", "run", "path"
METHOD_STATE = "method.pt"          # a run's method modules (adapters, paraphraser, translator), beside its record
SOFT_TARGETS = "soft_targets.json"  # a SoftTargetRecorder's frames, with the page's metadata
SHIPPED = "shipped"                 # a shipped student's record id: "shipped:NAME" (never a run id: no ':')


# --------------------------------------------------------------------------- teachers
def recorded(kind: str, name: str) -> str:
    """``pretrained:NAME``, ``run:ID`` or the path: what a run record keeps as its teacher."""
    return name if kind == PATH else f"{kind}:{name}"


def link(kind: str, name: str) -> str:
    """The short form for links and menus: a shipped teacher by its bare name, a checkpoint file by its
    path, a run as ``run:ID``."""
    return name if kind in (PRETRAINED, PATH) else f"{kind}:{name}"


def entries(dataset: str | None = None, runs_dir: Path | None = None) -> list[tuple[str, str, str]]:
    """Teachers for ``dataset`` (all when None) as (kind, name, label): the shipped ones, then the runs
    trained here on labels that saved their model."""
    found = []
    for name in shipped.names():
        try:
            info = shipped.card(name)
        except shipped.PretrainedError:  # a broken card is not offered
            continue
        if dataset in (None, info.get("dataset")):
            acc = info.get("test_acc")
            found.append((PRETRAINED, name, f"{name} (shipped" + (f", {100 * acc:.2f}%)" if isinstance(acc, float) else ")")))
    for r in find_runs(runs_dir, dataset=dataset, method="baseline", teacher=None, saved_model=True):
        found.append((RUN, r["id"], f"{r['student']['name']} trained here ({100 * r['test_acc']:.2f}%, {r['id'][-4:]})"))
    return found


def menu(dataset: str | None = None, runs_dir: Path | None = None) -> dict[str, str]:
    """:func:`entries` as {link: label}, what a page's teacher menu offers."""
    return {link(kind, name): label for kind, name, label in entries(dataset, runs_dir)}


# --------------------------------------------------------------------------- students of the inside pages
def same_budget(record: dict, config) -> bool:
    """Whether ``record`` is a run of exactly ``config`` (a RunConfig: data, student, method, teacher,
    budget, seed)."""
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
    distilled_from = recorded(PRETRAINED, teacher) if teacher is not None and method != "baseline" else None
    query = {"teacher": distilled_from} if distilled_from else {}
    return find_runs(runs_dir, dataset=dataset, student=student, method=method, saved_model=True,
                     whole_classes=True, **query)


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
            "teacher": recorded(PRETRAINED, info["teacher"]) if info.get("distilled") else None,
            "card": info}


def shipped_record(name: str) -> dict:
    """The shipped student ``name`` as a run-like record (its card checked)."""
    return _as_record(shipped.student_card(name) | {"name": name})


def shipped_students(dataset: str, student: str, method: str, teacher: str | None = None) -> list[dict]:
    """The shipped students (run-like records) of this data set, architecture and method, shown beside
    the shipped ``teacher`` (None: any). A broken card is left out (``kdviz pretrained list`` says why)."""
    cards, _ = shipped.student_cards()
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


def run_dir(record: dict, runs_dir=None) -> Path:
    return Path(runs_dir or default_runs_dir()) / record["id"]


def extra_file(record: dict, shipped_kind: str, run_file: str, runs_dir=None) -> Path | None:
    """A student's extra file: the shipped student's file of kind ``shipped_kind`` (checked against its
    card), or ``run_file`` beside a run's record; None when there is none."""
    name = shipped_name(record)
    if name is not None:
        return shipped.student_file(name, shipped_kind)
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


def load_soft_targets(record: dict, runs_dir=None) -> dict | None:
    """The run's recorded frames and metadata (``frames``, ``index``, ``probe``), None when it has none."""
    path = extra_file(record, "soft_targets", SOFT_TARGETS, runs_dir)
    if path is None:
        return None
    saved = json.loads(path.read_text())
    if "frames" not in saved and "snapshots" in saved:  # written before the frames were named so
        saved["frames"] = saved.pop("snapshots")
    return saved
