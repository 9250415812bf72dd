"""Adversarial distillation: a discriminator tells teacher outputs from student outputs.

Goodfellow et al. (2014), "Generative Adversarial Nets"; Arjovsky, Chintala & Bottou
(2017), "Wasserstein GAN"; Gulrajani, Ahmed, Arjovsky, Dumoulin & Courville (2017),
"Improved Training of Wasserstein GANs". Applied to distillation by Xu, Hsu & Huang
(2017), "Training Shallow and Thin Networks for Acceleration via Knowledge
Distillation with Conditional Adversarial Networks", and Wang, Zhang, Gong & Qi
(2018), "KDGAN: Knowledge Distillation with Generative Adversarial Networks".
The student plays the generator; the teacher's outputs are the "real" data. The
discriminator sees logits or softmax outputs (the caller decides) and returns one
score per sample, a logit for the GAN losses and an unbounded value for WGAN.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F


def gan_discriminator_loss(d_teacher: torch.Tensor, d_student: torch.Tensor) -> torch.Tensor:
    r"""Discriminator loss of the standard GAN (Goodfellow et al. 2014), teacher = real:

    :math:`\mathcal{L}_D = -\mathrm{mean}\,\log\sigma(D(t)) - \mathrm{mean}\,\log(1 - \sigma(D(s)))`,
    i.e. sigmoid cross-entropy with label 1 for teacher scores and 0 for student
    scores, each half averaged over the batch.
    """
    real = F.binary_cross_entropy_with_logits(d_teacher, torch.ones_like(d_teacher))
    fake = F.binary_cross_entropy_with_logits(d_student, torch.zeros_like(d_student))
    return real + fake


def gan_generator_loss(d_student: torch.Tensor) -> torch.Tensor:
    r"""Non-saturating generator (student) loss (Goodfellow et al. 2014, §3):
    :math:`\mathcal{L}_G = -\mathrm{mean}\,\log\sigma(D(s))`.
    Maximising log D(s) instead of minimising log(1 − D(s)) gives strong gradients
    early on, when the discriminator easily rejects the student.
    """
    return F.binary_cross_entropy_with_logits(d_student, torch.ones_like(d_student))


def wgan_critic_loss(d_teacher: torch.Tensor, d_student: torch.Tensor) -> torch.Tensor:
    r"""Wasserstein critic loss (Arjovsky et al. 2017):
    :math:`\mathcal{L}_D = \mathrm{mean}\,D(s) - \mathrm{mean}\,D(t)`,
    the negated estimate of the Wasserstein-1 distance (the critic must be kept
    1-Lipschitz, e.g. with :func:`gradient_penalty`).
    """
    return d_student.mean() - d_teacher.mean()


def wgan_generator_loss(d_student: torch.Tensor) -> torch.Tensor:
    r"""Wasserstein generator (student) loss (Arjovsky et al. 2017): :math:`-\mathrm{mean}\,D(s)`."""
    return -d_student.mean()


def logit_l1_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    r"""The student's sample-level term in Xu, Hsu & Huang (2017), §3: the L1 distance between
    the student's and the teacher's logits for the same image,
    :math:`\mathcal{L}_{L1} = \mathrm{mean}_{i,c}\,\lvert s_{ic} - t_{ic}\rvert` (mean over batch and
    classes). The adversarial term alone matches the *distribution* of logits; this term ties
    each student output to the teacher's output for the same input (as the L1 term of
    conditional GANs for images, Isola et al. 2017)."""
    return (student_logits - teacher_logits.detach()).abs().mean()


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    r"""WGAN-GP gradient penalty (Gulrajani et al. 2017):

    .. math:: \mathbb{E}_{\hat x}\big[(\lVert \nabla_{\hat x} D(\hat x)\rVert_2 - 1)^2\big],
              \quad \hat x = \epsilon\,x_{real} + (1 - \epsilon)\,x_{fake},\ \epsilon \sim U[0, 1]

    with one ε per sample (optionally drawn from ``generator``). The gradient is
    built with ``create_graph=True`` so the penalty can be backpropagated into the
    critic's parameters. ``real`` and ``fake`` are detached: the penalty constrains
    the critic only. Multiply by λ (10 in the paper) in the method.
    """
    real, fake = real.detach(), fake.detach()
    weight_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(weight_shape, generator=generator, dtype=real.dtype, device=real.device)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    scores = critic(mixed)
    # Scores of different samples are independent, so the gradient of their sum
    # gives every sample's own gradient in one backward pass.
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    grad_norm = grad.flatten(start_dim=1).norm(p=2, dim=1)
    return (grad_norm - 1).pow(2).mean()
