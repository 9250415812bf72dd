"""Which teachers are here, read without torch: the shipped ones and the runs trained here on labels,
each by kind, name, the link pages and menus use, and a readable label.

:mod:`kdviz.teachers` (``TeacherRef``: parsing, loading the network) builds on this module, which stays
torch-free so that a page can offer its teachers before torch is imported (a first view drawn from
shipped numbers: BENCHMARKS.md, app speed).
"""
from __future__ import annotations

from pathlib import Path

from kdviz import shipped
from kdviz.records import find_runs

PRETRAINED, RUN, PATH = "pretrained", "run", "path"


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
