"""Soft targets and Hinton's distillation loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_temperature(T: float) -> None:
    if not T > 0:  # `not >` also rejects NaN
        raise ValueError(f"temperature T must be > 0, got {T}")


def soften(logits: torch.Tensor, T: float) -> torch.Tensor:
    r"""Temperature-softened probabilities, ``softmax(logits / T)`` over the last dim.

    Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network":
    :math:`p_i = \exp(z_i/T) / \sum_j \exp(z_j/T)`. T = 1 is the ordinary softmax;
    larger T spreads probability over the wrong classes, exposing how the teacher
    ranks them ("dark knowledge"); T → ∞ gives the uniform distribution.
    """
    _check_temperature(T)
    return F.softmax(logits / T, dim=-1)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    r"""Soft-target distillation loss.

    Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network":

    .. math:: \mathcal{L} = T^2 \cdot \frac{1}{N}\sum_n \sum_c p^t_{nc}
              \left(\log p^t_{nc} - \log p^s_{nc}\right),\quad p = \mathrm{softmax}(z/T)

    i.e. T²·KL(p_t ‖ p_s), summed over classes and averaged over the batch
    (PyTorch's ``reduction='batchmean'``, not the per-element ``'mean'``).
    Its gradient w.r.t. the student logits is T·(p_s − p_t)/N; the T² factor keeps
    that gradient's size roughly independent of T (paper §2.1). For large T and
    zero-mean logits it tends to (z_s − z_t)/(C·N): logit matching.
    The teacher is a constant target, so it is detached.
    """
    _check_temperature(T)
    log_p_s = F.log_softmax(student_logits / T, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach() / T, dim=-1)
    kl_per_sample = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1)
    return T * T * kl_per_sample.mean()


def entropy(probs) -> torch.Tensor:
    r"""Shannon entropy in nats over the last dim, :math:`H(p) = -\sum_c p_c \log p_c`, in float64
    (0·log 0 counts as 0): 0 for a one-hot distribution, log C for the uniform one. How "soft" a
    softened target is (Hinton, Vinyals & Dean 2015): it rises with the temperature."""
    p = torch.as_tensor(probs, dtype=torch.float64)
    return -(p * torch.log(p.clamp_min(1e-300))).sum(-1)
