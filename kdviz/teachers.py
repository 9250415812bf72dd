"""The one catalogue of teachers: shipped ones, runs trained here, and checkpoint files.

A teacher is named three ways, and :class:`TeacherRef` is the only code that reads or
writes those names:

- ``pretrained:NAME``: a teacher shipped in ``pretrained/`` (:mod:`kdviz.pretrained`);
- ``run:ID``: the student saved by a finished run (e.g. a teacher trained on the Train page);
- a path: any kdviz checkpoint file.

``TeacherRef.parse`` also takes a bare shipped name or run id (what the CLI's ``--teacher``
and saved run configs hold). :func:`choices` lists what can teach a data set here (from
:mod:`kdviz.catalogue`, which lists them without torch).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from kdviz import catalogue, pretrained
from kdviz.catalogue import PATH, PRETRAINED, RUN
from kdviz.files import file_sha256
from kdviz.models import model_summary
from kdviz.runs import check_run_id, load_checkpoint, load_run, load_run_checkpoint, run_checkpoint, verified_checkpoint


@dataclass(frozen=True)
class TeacherRef:
    """A teacher by kind (``pretrained``, ``run`` or ``path``) and name (teacher name, run id or file path)."""

    kind: str
    name: str

    @classmethod
    def parse(cls, text: str, runs_dir: Path | None = None) -> "TeacherRef":
        """``pretrained:NAME``, ``run:ID``, a checkpoint path, or a bare shipped name or run id
        (looked up in that order: a file, a shipped teacher, a run with a saved model)."""
        text = str(text).strip()
        kind, sep, name = text.partition(":")
        if sep and kind == PRETRAINED:
            pretrained.card(name)  # unknown names fail here, with the list of shipped ones
            return cls(PRETRAINED, name)
        if sep and kind == RUN:
            if not run_checkpoint(name, runs_dir).is_file():
                raise ValueError(f"teacher {text!r}: no run {name!r} with a saved model")
            return cls(RUN, name)
        path = Path(text).expanduser()
        if text and path.is_file():
            return cls(PATH, str(path))
        if text in pretrained.names():
            return cls(PRETRAINED, text)
        if text and _is_run_id(text) and run_checkpoint(text, runs_dir).is_file():
            return cls(RUN, text)
        raise ValueError(f"teacher {text!r} is neither a pretrained teacher ({', '.join(pretrained.names()) or 'none shipped'}), "
                         f"a run with a saved model, nor a checkpoint file")

    def __str__(self) -> str:
        """``pretrained:NAME``, ``run:ID`` or the path: what a run record keeps as its teacher."""
        return catalogue.recorded(self.kind, self.name)

    @property
    def link(self) -> str:
        """The short form for links and menus: a shipped teacher by its bare name, the others as printed."""
        return catalogue.link(self.kind, self.name)

    @property
    def config_value(self) -> str:
        """What :class:`~kdviz.experiment.RunConfig` keeps as ``teacher``: the bare name, run id or path."""
        return self.name

    def load(self, runs_dir: Path | None = None) -> torch.nn.Module:
        """The teacher network in eval mode on the CPU (a shipped one checked against its card)."""
        if self.kind == PRETRAINED:
            return pretrained.load(self.name).eval()
        if self.kind == RUN:
            return load_run_checkpoint(self.name, runs_dir).eval()
        return load_checkpoint(verified_checkpoint(self.name)).eval()  # a run's model.pt: checked against its record

    def sha256(self, runs_dir: Path | None = None) -> str:
        """The sha256 of the teacher's weights file: which network taught a run, so that a run
        taught by a teacher since replaced (a re-made shipped teacher, an edited file) is not
        taken for a finished run of today's config (:func:`kdviz.sweep.run_sweep`)."""
        if self.kind == PRETRAINED:
            return pretrained.card(self.name)["sha256"]
        if self.kind == RUN:
            return load_run(self.name, runs_dir).get("checkpoint_sha256") or file_sha256(run_checkpoint(self.name, runs_dir))
        return file_sha256(self.name)

    def dataset(self, runs_dir: Path | None = None) -> str | None:
        """The data set the teacher was trained on (None for a bare checkpoint file)."""
        if self.kind == PRETRAINED:
            return pretrained.card(self.name)["dataset"]
        if self.kind == RUN:
            return load_run(self.name, runs_dir)["config"]["dataset"]
        return None

    def accuracy(self, runs_dir: Path | None = None) -> float | None:
        """Test accuracy from the card or the run record (None for a bare checkpoint file)."""
        if self.kind == PRETRAINED:
            return pretrained.card(self.name)["test_acc"]
        if self.kind == RUN:
            return load_run(self.name, runs_dir)["test_acc"]
        return None

    def summary(self, runs_dir: Path | None = None) -> dict:
        """Name, test accuracy, parameter count and latency per image (what a trade-off chart marks)."""
        return {"name": self.name, "acc": self.accuracy(runs_dir), **model_summary(self.load(runs_dir))}


def _is_run_id(text: str) -> bool:
    try:
        check_run_id(text)
    except ValueError:
        return False
    return True


def resolve(text: str, runs_dir: Path | None = None) -> tuple[torch.nn.Module, str]:
    """The teacher named by ``text`` and its printed reference (a run record's ``teacher``)."""
    ref = TeacherRef.parse(text, runs_dir)
    return ref.load(runs_dir), str(ref)


def choices(dataset: str | None = None, runs_dir: Path | None = None) -> dict[TeacherRef, str]:
    """Teachers for ``dataset`` (all when None), each with a readable label: the shipped ones,
    then the runs trained here on labels that saved their model (:func:`kdviz.catalogue.entries`)."""
    return {TeacherRef(kind, name): label for kind, name, label in catalogue.entries(dataset, runs_dir)}
