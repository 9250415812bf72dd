"""Small pieces several methods share: probing a net's stage shapes, finding which
parameters compute which stage, 1x1 adapters (resizing maps to a common size is :func:`kdviz.losses.pool_to_common_size`).

Everything here works on any :class:`~kdviz.models.ZooModel` through its public
``model(x, with_features=True)`` convention, so no method needs to know the
architecture it is given.
"""
from __future__ import annotations

import torch
from torch import nn

from kdviz.methods.base import MethodError
from kdviz.models import ZooModel


def _dummy_input(model: ZooModel) -> torch.Tensor:
    spec = model.spec
    device = next(model.parameters()).device
    # a fixed generator: probing a net must not move the global random state (runs stay reproducible)
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, spec.in_channels, spec.image_size, spec.image_size, generator=generator).to(device)


def stage_shapes(model: ZooModel) -> list[tuple[int, ...]]:
    """Per-sample shape of every stage output: (C, H, W) for maps, (D,) for vectors."""
    was_training = model.training
    model.eval()  # eval: no batch-norm statistics are touched by the probe
    with torch.no_grad():
        _, features = model(_dummy_input(model), with_features=True)
    model.train(was_training)
    return [tuple(stage.shape[1:]) for stage in features.stages]


def stage_parameter_groups(model: ZooModel) -> list[list[nn.Parameter]]:
    """The parameters that compute each stage and no earlier one (group i feeds stage i
    but not stages < i). Found by autograd on one probe batch, so it holds for any
    architecture; parameters after the last stage (the classifier head) are in no group."""
    was_training = model.training
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.enable_grad():
        _, features = model(_dummy_input(model), with_features=True)
        groups, seen = [], set()
        for stage in features.stages:
            grads = torch.autograd.grad(stage.sum(), params, retain_graph=True, allow_unused=True)
            reaching = {i for i, g in enumerate(grads) if g is not None}
            groups.append([params[i] for i in sorted(reaching - seen)])
            seen |= reaching
    model.train(was_training)
    return groups


def parameters_up_to(model: ZooModel, stage: int) -> list[nn.Parameter]:
    """Every parameter that computes stages 0..``stage`` (FitNets' "layers up to the guided layer")."""
    return [p for group in stage_parameter_groups(model)[: stage + 1] for p in group]


def require_same_stage_count(method: str, student_shapes: list, teacher_shapes: list) -> None:
    if len(student_shapes) != len(teacher_shapes):
        raise MethodError(
            f"method {method!r} pairs student and teacher stages in order, but the student has "
            f"{len(student_shapes)} stages and the teacher {len(teacher_shapes)}; choose nets with as many stages"
        )


def resolve_stage(method: str, role: str, index: int, count: int) -> int:
    """A stage index from a hyperparameter: -1 means the middle stage (FitNets' choice)."""
    if index == -1:
        return (count - 1) // 2
    if not 0 <= index < count:
        raise MethodError(f"method {method!r}: the {role} has stages 0..{count - 1}, not {index}")
    return index


def channel_adapter(in_channels: int, out_channels: int) -> nn.Module:
    """A learned 1x1 convolution where channel counts differ, otherwise nothing."""
    if in_channels == out_channels:
        return nn.Identity()
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)


def stage_adapters(method: str, student: ZooModel, teacher: ZooModel) -> nn.ModuleList:
    """One :func:`channel_adapter` per stage, from the student's channels to the teacher's
    (FSP and recasting pair the stages in order, so both nets need as many)."""
    s_shapes, t_shapes = stage_shapes(student), stage_shapes(teacher)
    require_same_stage_count(method, s_shapes, t_shapes)
    return nn.ModuleList(channel_adapter(s[0], t[0]) for s, t in zip(s_shapes, t_shapes))
