"""Born-again networks: a sequence of generations, each taught by the one before, and their ensemble.

Furlanello, Lipton, Tschannen, Itti & Anandkumar 2018, "Born-Again Neural Networks".
The loss of one generation is the ``ban`` method (:mod:`kdviz.methods.ban`); this module
runs the sequence of :class:`~kdviz.experiment.Experiment` s and evaluates the paper's
BANE ensemble (the mean of the generations' softmax outputs).
"""
from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from kdviz.evaluation import predict_logits
from kdviz.experiment import Experiment, RunConfig
from kdviz.methods import build_method
from kdviz.runs import load_checkpoint, save_record


def ensemble_probabilities(logits: list[torch.Tensor]) -> torch.Tensor:
    """Mean of the members' softmax outputs (N, C)."""
    return torch.stack([torch.softmax(z.float(), dim=1) for z in logits]).mean(0)


def ensemble_accuracy(logits: list[torch.Tensor], labels: torch.Tensor) -> float:
    """Accuracy of the ensemble that averages its members' softmax outputs."""
    return (ensemble_probabilities(logits).argmax(1) == labels).float().mean().item()


MAX_GENERATIONS = 20  # the paper trains a handful; more is a typo, refused before anything trains


def _generation_config(config: RunConfig, method: str, k: int, teacher: str | None) -> RunConfig:
    """Generation ``k``'s run: 0 on the labels alone, the others taught by ``teacher`` with ``method``."""
    settings = replace(config.train, seed=config.train.seed + k)
    if k == 0:
        return replace(config, method="baseline", params={}, teacher=None, hide_labels=False, save_model=True,
                       train=settings)
    return replace(config, method=method, teacher=teacher, save_model=True, train=settings)


def _check_generation_method(method: str, student: torch.nn.Module, params: dict) -> None:
    """Refuse, before generation 0 trains, a method that could not teach one generation from the
    one before (``student``, generation 0's fresh network, stands in for both)."""
    if not build_method(method, copy.deepcopy(student), copy.deepcopy(student), params).needs_teacher:
        raise ValueError(f"born-again generations learn from the one before: method {method!r} has no teacher term")


def born_again(config: RunConfig, generations: int, runs_dir: Path | None = None,
               on_event: Callable[[int, object], None] | None = None) -> list[dict]:
    """Train generation 0 of ``config.student`` on the labels, then ``generations`` more,
    each with the previous generation's checkpoint as its teacher and ``config.method``
    (``ban`` unless another is given) as its loss. ``config.teacher`` is not used.

    Returns one run record per generation (all saved with their checkpoints). The last
    record also holds ``generation_accs`` and ``ensemble_acc``, the test accuracy of the
    mean softmax of all generations (0 included), and is saved again with them.
    Generation k uses seed ``config.train.seed + k``: a fresh initialisation, as in the paper; every
    generation learns from the same transfer set (with ``fraction`` < 1, the images generation 0 was
    given: ``data_seed``), since a teacher's outputs on images it never saw carry its test errors.
    Every generation's settings, and that its method can teach one from the one before, are checked
    before generation 0 trains. ``on_event(generation, event)`` sees every training event."""
    if isinstance(generations, bool) or not isinstance(generations, int) or not 1 <= generations <= MAX_GENERATIONS:
        raise ValueError(f"born-again training needs 1 to {MAX_GENERATIONS} generations after the first, "
                         f"got {generations!r}")
    method = config.method if config.method not in ("baseline", "") else "ban"
    config = replace(config, data_seed=config.subset_seed)  # one transfer set for every generation
    _generation_config(config, method, 1, "generation-0").validate()  # bad settings cost nothing
    records: list[dict] = []
    test_logits: list[torch.Tensor] = []
    experiment = None
    for k in range(generations + 1):
        cfg = _generation_config(config, method, k, records[-1]["checkpoint"] if records else None)
        experiment = Experiment(cfg, runs_dir=runs_dir)
        if k == 0:
            _check_generation_method(method, experiment.student, config.params)
        for event in experiment.events():
            if on_event is not None:
                on_event(k, event)
        record = experiment.record
        record["generation"] = k
        save_record(record, experiment.runs_dir)
        records.append(record)
        member = load_checkpoint(record["checkpoint"])
        test_logits.append(predict_logits(member, experiment.test_data, device=config.train.device,
                                          precision=config.train.precision))
    last = records[-1]
    last["generation_accs"] = [r["test_acc"] for r in records]
    last["generation_ids"] = [r["id"] for r in records]
    last["ensemble_acc"] = ensemble_accuracy(test_logits, experiment.test_data.labels)
    save_record(last, experiment.runs_dir)
    return records
