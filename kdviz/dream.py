"""A teacher that dreams its data: images synthesised from a trained network alone.

Yin, Molchanov, Alvarez, Li, Mallya, Hoiem, Jha & Kautz 2020, "Dreaming to Distill:
Data-free Knowledge Transfer via DeepInversion". Start from noise x and minimise

    L(x) = CE(f(x), y) + w_bn · Σ_l ( ‖μ_l(x) − μ_l^BN‖₂ + ‖σ²_l(x) − σ²_l^BN‖₂ ) + w_tv · TV(x) + w_l2 · ‖x‖²

where μ_l(x), σ²_l(x) are the batch mean and variance of the input of the l-th batch-norm
layer on the batch being dreamed and μ_l^BN, σ²_l^BN the running statistics the teacher
stored while it trained: the teacher's batch-norm layers remember what its training data
looked like on average, and the cross-entropy makes each image one chosen class. (Lopes,
Fenu & Starner 2017 record activation statistics from the real data at training time
instead; the shipped CNN teachers have batch norm, so nothing needs recording.) Each step
shifts the batch by a random jitter of a few pixels, as Yin et al. do, so the images do not
overfit to one alignment; pixels are kept within the data's valid range.

No data set is read here: a batch-norm teacher and the per-channel mean and std it was
trained with are all :func:`dream` needs.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class DreamSettings:
    """The optimisation of one batch of dreamed images (defaults measured on the MNIST CNN)."""

    steps: int = 200
    lr: float = 0.1
    bn_weight: float = 1.0
    tv_weight: float = 1e-3
    l2_weight: float = 1e-4
    jitter: int = 2
    batch_size: int = 256

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("dreaming needs steps >= 1 and batch_size >= 1")
        if not all(math.isfinite(v) for v in (self.lr, self.bn_weight, self.tv_weight, self.l2_weight)):
            raise ValueError("dream lr and weights must be finite numbers")
        if self.lr <= 0 or min(self.bn_weight, self.tv_weight, self.l2_weight) < 0 or self.jitter < 0:
            raise ValueError("dream lr must be > 0, the weights and the jitter >= 0")


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch-norm layers that hold running statistics, in order."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
            and m.running_mean is not None]


def bn_statistics_loss(inputs: list[torch.Tensor], layers: list[nn.modules.batchnorm._BatchNorm]) -> torch.Tensor:
    """Yin et al. 2020, eq. 4: Σ_l ‖μ_l(x) − μ_l^BN‖₂ + ‖σ²_l(x) − σ²_l^BN‖₂ over the inputs of
    the batch-norm layers (biased batch variance, as batch norm normalises with)."""
    total = inputs[0].new_zeros(())
    for x, layer in zip(inputs, layers):
        dims = [0] + list(range(2, x.dim()))
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        total = total + torch.linalg.vector_norm(mean - layer.running_mean) + \
            torch.linalg.vector_norm(var - layer.running_var)
    return total


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (a smoothness prior on images)."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def dream(teacher: nn.Module, labels: torch.Tensor, mean, std, size: tuple[int, int, int],
          settings: DreamSettings | None = None, seed: int = 0,
          on_step: Callable[[int, int, dict], None] | None = None) -> torch.Tensor:
    """Images (uint8, (N, C, H, W)) that ``teacher`` takes for ``labels``, dreamed from noise in
    batches of ``settings.batch_size``. ``mean``/``std`` are the per-channel normalisation the
    teacher was trained with (pixels in [0, 1] units); ``size`` is (C, H, W).
    ``on_step(step, total_steps, losses)`` is told after every optimisation step."""
    settings = settings or DreamSettings()
    settings.validate()
    layers = batchnorm_layers(teacher)
    if not layers:
        raise ValueError("dreaming needs a teacher with batch-norm layers (their running statistics are the "
                         "only memory of the data it keeps); this teacher has none")
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    low, high = (0 - mean_t) / std_t, (1 - mean_t) / std_t
    captured: list[torch.Tensor] = []
    hooks = [layer.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0])) for layer in layers]
    generator = torch.Generator().manual_seed(seed)
    out = []
    batches = [labels[i: i + settings.batch_size] for i in range(0, len(labels), settings.batch_size)]
    total_steps, done = len(batches) * settings.steps, 0
    try:
        for y in batches:
            x = torch.randn((len(y), *size), generator=generator).requires_grad_(True)
            optimizer = torch.optim.Adam([x], lr=settings.lr)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.steps)
            for _ in range(settings.steps):
                dy, dx = (torch.randint(-settings.jitter, settings.jitter + 1, (2,), generator=generator).tolist()
                          if settings.jitter else (0, 0))
                captured.clear()
                logits = teacher(torch.roll(x, shifts=(dy, dx), dims=(2, 3)))
                terms = {"ce": F.cross_entropy(logits, y),
                         "bn": settings.bn_weight * bn_statistics_loss(captured, layers),
                         "tv": settings.tv_weight * total_variation(x),
                         "l2": settings.l2_weight * x.pow(2).mean()}
                loss = sum(terms.values())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                with torch.no_grad():
                    x.copy_(torch.maximum(torch.minimum(x, high), low))
                done += 1
                if on_step:
                    on_step(done, total_steps, {k: v.item() for k, v in terms.items()}
                            | {"acc": (logits.argmax(1) == y).float().mean().item()})
            pixels = ((x.detach() * std_t + mean_t).clamp(0, 1) * 255).round().to(torch.uint8)
            out.append(pixels)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.cat(out) if out else torch.zeros((0, *size), dtype=torch.uint8)


def balanced_labels(num_classes: int, per_class: int) -> torch.Tensor:
    """``per_class`` of every class, interleaved (0, 1, ..., C−1, 0, 1, ...), so each batch is balanced."""
    return torch.arange(num_classes).repeat(per_class)
