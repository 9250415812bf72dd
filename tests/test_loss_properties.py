"""Property-based tests (hypothesis) for every loss in :mod:`kdviz.losses`: for finite
inputs of any batch size >= 2, extreme logits included and temperatures from 0.05 to 100,
each loss and its gradient with respect to the student's inputs are finite. (A loss that
returns NaN for some finite batch would stop a run through the divergence guard; these
tests make sure the losses themselves never do.)"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kdviz import losses

EXAMPLES = settings(max_examples=60, deadline=None)
LOGIT = st.floats(-1e4, 1e4, allow_nan=False, width=32)   # softmax saturates long before 1e4
FEATURE = st.floats(-1e3, 1e3, allow_nan=False, width=32)
TEMPERATURE = st.floats(0.05, 100.0, allow_nan=False)


def tensor(draw, shape, elements, special=(0.0,)):
    """A float32 tensor of ``shape``: arbitrary values, or a constant one (all zeros, all equal)."""
    kind = draw(st.sampled_from(["any", "any", "constant"]))
    if kind == "constant":
        return torch.full(shape, draw(st.sampled_from(special)) if draw(st.booleans()) else draw(elements))
    return torch.from_numpy(draw(arrays(np.float32, shape, elements=elements)))


def finite_with_grad(loss_fn, *inputs):
    """The loss of ``inputs`` (the first requires a gradient) and that gradient, both checked finite."""
    student = inputs[0].clone().requires_grad_(True)
    value = loss_fn(student, *inputs[1:])
    assert value.dim() == 0 and torch.isfinite(value), f"loss {value}"
    value.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all(), "gradient not finite"
    return value.item(), student.grad


@st.composite
def logit_pairs(draw):
    n, c = draw(st.integers(2, 16)), draw(st.integers(2, 12))
    return tensor(draw, (n, c), LOGIT), tensor(draw, (n, c), LOGIT)


@EXAMPLES
@given(logit_pairs(), TEMPERATURE)
def test_kd_loss_finite_nonnegative_with_finite_gradient(pair, T):
    value, grad = finite_with_grad(lambda s, t: losses.kd_loss(s, t, T), *pair)
    assert value >= -1e-3 * T * T  # a KL divergence, up to float rounding
    # the gradient is T (p_s - p_t) / N: bounded by 2T/N per entry
    assert grad.abs().max() <= 2 * T / len(pair[0]) + 1e-4


@EXAMPLES
@given(logit_pairs(), TEMPERATURE)
def test_soften_is_a_distribution(pair, T):
    p = losses.soften(pair[0], T)
    assert torch.isfinite(p).all() and torch.allclose(p.sum(-1), torch.ones(len(p)), atol=1e-5)


@pytest.mark.parametrize("T", [float("nan"), 0.0, -1.0])
def test_temperature_must_be_positive(T):
    with pytest.raises(ValueError, match="temperature T must be > 0"):
        losses.kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), T)


@EXAMPLES
@given(logit_pairs())
def test_logit_mse_loss(pair):
    value, _ = finite_with_grad(losses.logit_mse_loss, *pair)
    assert value >= 0


@st.composite
def feature_maps(draw, same_size=False):
    n, c_s, c_t = draw(st.integers(2, 6)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    h_t, w_t = (h, w) if same_size else (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    return tensor(draw, (n, c_s, h, w), FEATURE), tensor(draw, (n, c_t, h_t, w_t), FEATURE)


@EXAMPLES
@given(feature_maps(), st.sampled_from([1, 2, 4]))
def test_at_loss(maps, p):
    value, _ = finite_with_grad(lambda s, t: losses.at_loss(s, t, p), *maps)
    assert 0 <= value <= 4  # squared differences of unit vectors' entries, averaged


@st.composite
def stage_lists(draw):
    n, stages = draw(st.integers(2, 4)), draw(st.integers(2, 3))
    sizes = [draw(st.integers(1, 5)) for _ in range(stages)]
    channels = [draw(st.integers(1, 3)) for _ in range(stages)]
    make = lambda: [tensor(draw, (n, c, s, s), FEATURE) for c, s in zip(channels, sizes)]  # noqa: E731
    return make(), make()


@EXAMPLES
@given(stage_lists())
def test_fsp_loss(pair):
    student, teacher = pair
    leaves = [s.clone().requires_grad_(True) for s in student]
    value = losses.fsp_loss(leaves, teacher)
    assert torch.isfinite(value) and value >= 0
    value.backward()
    assert all(leaf.grad is None or torch.isfinite(leaf.grad).all() for leaf in leaves)


@EXAMPLES
@given(st.data(), st.sampled_from([1, 2]))
def test_factor_loss(draw, p):
    n, d = draw.draw(st.integers(2, 8)), draw.draw(st.integers(1, 16))
    value, _ = finite_with_grad(lambda s, t: losses.factor_loss(s, t, p),
                                tensor(draw.draw, (n, d), FEATURE), tensor(draw.draw, (n, d), FEATURE))
    assert 0 <= value <= 2 * d ** (1 / p) + 1e-4


@EXAMPLES
@given(st.data())
def test_hint_loss(draw):
    shape = (draw.draw(st.integers(2, 4)), 2, 3, 3)
    value, _ = finite_with_grad(losses.hint_loss, tensor(draw.draw, shape, FEATURE), tensor(draw.draw, shape, FEATURE))
    assert value >= 0


@st.composite
def embeddings(draw):
    n = draw(st.integers(2, 12))
    d_s, d_t = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    student = tensor(draw, (n, d_s), FEATURE)
    if draw(st.booleans()):  # coincident points: the case that breaks a naive square root
        student[1] = student[0]
    return student, tensor(draw, (n, d_t), FEATURE)


@EXAMPLES
@given(embeddings())
def test_rkd_distance_loss(pair):
    value, _ = finite_with_grad(losses.rkd_distance_loss, *pair)
    assert value >= 0


@EXAMPLES
@given(embeddings())
def test_rkd_angle_loss(pair):
    value, _ = finite_with_grad(losses.rkd_angle_loss, *pair)
    assert 0 <= value <= 2  # Huber of differences of cosines, each in [-1, 1]


def test_rkd_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2 samples"):
        losses.rkd_distance_loss(torch.zeros(1, 3), torch.zeros(1, 3))


@EXAMPLES
@given(st.data())
def test_adversarial_losses(draw):
    n = draw.draw(st.integers(2, 16))
    scores_t, scores_s = tensor(draw.draw, (n,), LOGIT), tensor(draw.draw, (n,), LOGIT)
    for loss in (losses.gan_discriminator_loss, losses.wgan_critic_loss):
        finite_with_grad(lambda s, t, loss=loss: loss(t, s), scores_s, scores_t)
    finite_with_grad(losses.gan_generator_loss, scores_s)
    finite_with_grad(losses.wgan_generator_loss, scores_s)


@EXAMPLES
@given(st.data())
def test_gradient_penalty(draw):
    n, d = draw.draw(st.integers(2, 8)), draw.draw(st.integers(1, 6))
    critic = torch.nn.Sequential(torch.nn.Linear(d, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    real, fake = tensor(draw.draw, (n, d), LOGIT), tensor(draw.draw, (n, d), LOGIT)
    penalty = losses.gradient_penalty(lambda x: critic(x).squeeze(-1), real, fake, torch.Generator().manual_seed(0))
    assert torch.isfinite(penalty) and penalty >= 0
    penalty.backward()
    assert all(torch.isfinite(p.grad).all() for p in critic.parameters() if p.grad is not None)
