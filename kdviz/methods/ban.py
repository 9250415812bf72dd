"""Born-again networks: a net taught by an earlier generation of itself."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from kdviz.methods.base import Hyperparam, register
from kdviz.methods.kd import HintonKD


@register
class BornAgain(HintonKD):
    """Furlanello, Lipton, Tschannen, Itti & Anandkumar 2018, "Born-Again Neural Networks".

    Generation k+1 has the same architecture as generation k and learns from it:
    L = α·T²·KL(p_k^T ‖ p_{k+1}^T) + (1−α)·CE. The paper's BAN matches the teacher's
    outputs only (α = 1, T = 1: the default; KL and cross-entropy to the teacher have the
    same gradient); lower α adds the labels. As a single method it distils from the given
    teacher; :func:`born_again` runs the whole sequence of generations and evaluates their
    ensemble (the paper's BANE: mean of the generations' softmax outputs)."""

    name = "ban"
    title = "Born-again networks (Furlanello et al. 2018)"
    formula = (r"\mathcal{L}_{k+1} = \alpha\,T^2\,\mathrm{KL}\!\left(\mathrm{softmax}(z_k/T)\,\|\,"
               r"\mathrm{softmax}(z_{k+1}/T)\right) + (1-\alpha)\,\mathrm{CE};\quad "
               r"\hat p_{ens} = \frac{1}{K}\sum_k \mathrm{softmax}(z_k)")
    hyperparams = (
        Hyperparam("T", 1.0, 0.5, 50.0, "temperature (1 in the paper)", log=True),
        Hyperparam("alpha", 1.0, 0.0, 1.0, "weight of teacher matching; 1 − alpha goes to the labels (1 in the paper)"),
    )

    def losses(self, step):
        return {"ban": super().losses(step)["kd"]}


def ensemble_probabilities(logits: list[torch.Tensor]) -> torch.Tensor:
    """Mean of the members' softmax outputs (N, C)."""
    return torch.stack([torch.softmax(z.float(), dim=1) for z in logits]).mean(0)


def ensemble_accuracy(logits: list[torch.Tensor], labels: torch.Tensor) -> float:
    """Accuracy of the ensemble that averages its members' softmax outputs."""
    return (ensemble_probabilities(logits).argmax(1) == labels).float().mean().item()


def born_again(config, generations: int, runs_dir: Path | None = None,
               on_event: Callable[[int, object], None] | None = None) -> list[dict]:
    """Train generation 0 of ``config.student`` on the labels, then ``generations`` more,
    each with the previous generation's checkpoint as its teacher and ``config.method``
    (``ban`` unless another is given) as its loss. ``config.teacher`` is not used.

    Returns one run record per generation (all saved with their checkpoints). The last
    record also holds ``generation_accs`` and ``ensemble_acc``, the test accuracy of the
    mean softmax of all generations (0 included), and is saved again with them.
    Generation k uses seed ``config.train.seed + k``: a fresh initialisation, as in the paper.
    ``on_event(generation, event)`` sees every training event."""
    from kdviz.evaluation import predict_logits
    from kdviz.experiment import Experiment
    from kdviz.runs import load_checkpoint, save_record

    if generations < 1:
        raise ValueError(f"born-again training needs at least 1 generation after the first, got {generations}")
    method = config.method if config.method not in ("baseline", "") else "ban"
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
