"""Direct logit matching."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def logit_mse_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    r"""Mean squared difference between student and teacher logits.

    Ba & Caruana (2014), "Do Deep Nets Really Need to be Deep?":
    :math:`\mathcal{L} = \frac{1}{N C}\sum_{n,c} (z^s_{nc} - z^t_{nc})^2`
    (mean over batch and classes). Matching logits rather than probabilities keeps
    information that the softmax squashes; it is the high-temperature limit of
    :func:`kd_loss` (up to a factor ½ in the gradient). Teacher detached.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"logit shapes differ: student {tuple(student_logits.shape)}, "
                         f"teacher {tuple(teacher_logits.shape)}")
    return F.mse_loss(student_logits, teacher_logits.detach())
