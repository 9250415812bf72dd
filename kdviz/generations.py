"""Born-again networks: a sequence of generations, each taught by the one before, and their ensemble.

Furlanello, Lipton, Tschannen, Itti & Anandkumar 2018, "Born-Again Neural Networks".
The loss of one generation is the ``ban`` method (:mod:`kdviz.methods.ban`); this module
runs the sequence of :class:`~kdviz.experiment.Experiment` s and evaluates the paper's
BANE ensemble (the mean of the generations' softmax outputs).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from kdviz.evaluation import predict_logits
from kdviz.experiment import Experiment, RunConfig
from kdviz.runs import load_checkpoint, save_record


def ensemble_probabilities(logits: list[torch.Tensor]) -> torch.Tensor:
    """Mean of the members' softmax outputs (N, C)."""
    return torch.stack([torch.softmax(z.float(), dim=1) for z in logits]).mean(0)


def ensemble_accuracy(logits: list[torch.Tensor], labels: torch.Tensor) -> float:
    """Accuracy of the ensemble that averages its members' softmax outputs."""
    return (ensemble_probabilities(logits).argmax(1) == labels).float().mean().item()


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
    ``on_event(generation, event)`` sees every training event."""
    if generations < 1:
        raise ValueError(f"born-again training needs at least 1 generation after the first, got {generations}")
    method = config.method if config.method not in ("baseline", "") else "ban"
    config = replace(config, data_seed=config.subset_seed)  # one transfer set for every generation
    records: list[dict] = []
    test_logits: list[torch.Tensor] = []
    experiment = None
    for k in range(generations + 1):
        settings = replace(config.train, seed=config.train.seed + k)
        if k == 0:
            cfg = replace(config, method="baseline", params={}, teacher=None, hide_labels=False,
                          save_model=True, train=settings)
        else:
            cfg = replace(config, method=method, teacher=records[-1]["checkpoint"], save_model=True, train=settings)
        experiment = Experiment(cfg, runs_dir=runs_dir)
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
