"""Factor transfer."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def factor_loss(student_factor: torch.Tensor, teacher_factor: torch.Tensor, p: float = 1) -> torch.Tensor:
    r"""Distance between L2-normalised student and teacher factors.

    Kim, Park & Kwak (2018), "Paraphrasing Complex Network: Network Compression via
    Factor Transfer":
    :math:`\mathcal{L} = \frac{1}{N}\sum_n \left\lVert \frac{F^s_n}{\lVert F^s_n\rVert_2}
    - \frac{F^t_n}{\lVert F^t_n\rVert_2}\right\rVert_p` with the factors flattened
    per sample; p = 1 as in the paper. (The authors' code averages |·| over elements
    instead of summing per sample, which only divides by the factor size.)
    The factors come from the paraphraser (teacher) and translator (student); the
    teacher's is detached.
    """
    if student_factor.shape != teacher_factor.shape:
        raise ValueError(f"factor shapes differ: student {tuple(student_factor.shape)}, "
                         f"teacher {tuple(teacher_factor.shape)}")
    u_s = F.normalize(student_factor.flatten(start_dim=1), dim=1)
    u_t = F.normalize(teacher_factor.detach().flatten(start_dim=1), dim=1)
    return torch.linalg.vector_norm(u_s - u_t, ord=p, dim=1).mean()
