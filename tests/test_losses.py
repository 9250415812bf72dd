"""Tests for kdviz.losses: each loss against an independent numpy / loop computation,
pinned literal values, invariances and gradients."""
import math

import numpy as np
import pytest
import torch

from kdviz.losses import (
    angle_cosines,
    at_loss,
    attention_map,
    factor_loss,
    fsp_loss,
    fsp_matrix,
    gan_discriminator_loss,
    gan_generator_loss,
    gradient_penalty,
    hint_loss,
    kd_loss,
    logit_mse_loss,
    pairwise_distances,
    rkd_angle_loss,
    rkd_distance_loss,
    soften,
    wgan_critic_loss,
    wgan_generator_loss,
)


def randn(*shape, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


# ---------------------------------------------------------------- numpy references

def np_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_kd(s, t, T):
    p_s, p_t = np_softmax(s / T), np_softmax(t / T)
    total = 0.0
    for n in range(s.shape[0]):
        for c in range(s.shape[1]):
            total += p_t[n, c] * (math.log(p_t[n, c]) - math.log(p_s[n, c]))
    return T * T * total / s.shape[0]


def np_attention(a):
    n, c, h, w = a.shape
    out = np.zeros((n, h * w))
    for i in range(n):
        q = (a[i] ** 2).mean(axis=0).reshape(-1)
        out[i] = q / np.sqrt((q ** 2).sum())
    return out


def np_fsp(f1, f2):
    n, c1, h, w = f1.shape
    c2 = f2.shape[1]
    g = np.zeros((n, c1, c2))
    for b in range(n):
        for i in range(c1):
            for j in range(c2):
                g[b, i, j] = (f1[b, i] * f2[b, j]).sum() / (h * w)
    return g


def np_huber(x, y):
    d = np.abs(x - y)
    return np.where(d < 1, 0.5 * d ** 2, d - 0.5).mean()


def np_distances(x):
    n = len(x)
    return np.array([[np.linalg.norm(x[i] - x[j]) for j in range(n)] for i in range(n)])


def np_rkd_distance(s, t):
    n = len(s)
    ds, dt = np_distances(s), np_distances(t)
    ds /= ds.sum() / (n * (n - 1))
    dt /= dt.sum() / (n * (n - 1))
    return np_huber(ds, dt)


def np_angles(x):
    n = len(x)
    out = np.zeros((n, n, n))
    for i in range(n):
        for j in range(n):
            for k in range(n):
                if i == j or k == j:
                    continue  # degenerate: defined as 0
                a, b = x[i] - x[j], x[k] - x[j]
                out[i, j, k] = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return out


def np_bce_logits(z, label):
    p = 1 / (1 + np.exp(-z))
    return -np.mean(label * np.log(p) + (1 - label) * np.log(1 - p))


# ---------------------------------------------------------------- soften / kd

def test_soften_rows_sum_to_one_and_match_numpy():
    z = randn(3, 7, seed=0) * 3
    p = soften(z, 2.5)
    assert torch.allclose(p.sum(-1), torch.ones(3, dtype=z.dtype))
    np.testing.assert_allclose(p.numpy(), np_softmax(z.numpy() / 2.5), rtol=1e-12)


@pytest.mark.parametrize("T", [0, 0.0, -1.0])
def test_soften_rejects_non_positive_temperature(T):
    with pytest.raises(ValueError, match="temperature T must be > 0"):
        soften(torch.zeros(2, 3), T)
    with pytest.raises(ValueError, match="temperature T must be > 0"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), T)


def test_soften_high_temperature_is_near_uniform():
    z = randn(4, 10, seed=1) * 5
    assert soften(z, 1e6).sub(0.1).abs().max() < 1e-5
    assert soften(z, 1.0).sub(0.1).abs().max() > 0.1


def test_kd_loss_matches_loops_and_pinned_value():
    s, t = randn(4, 5, seed=2), randn(4, 5, seed=3) * 2
    for T in (1.0, 4.0, 20.0):
        assert kd_loss(s, t, T).item() == pytest.approx(np_kd(s.numpy(), t.numpy(), T), rel=1e-10)
    assert kd_loss(s, t, 4.0).item() == pytest.approx(1.450435993, rel=1e-5)
    # literal-tensor case: float32 path too
    s32 = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    t32 = torch.tensor([[3.0, 2.0, 1.0], [1.0, -1.0, 0.0]])
    assert kd_loss(s32, t32, 2.0).item() == pytest.approx(0.7971552395, rel=1e-5)


def test_kd_loss_zero_when_equal_and_teacher_detached():
    s = randn(6, 10, seed=4)
    assert kd_loss(s, s.clone(), 3.0).item() == pytest.approx(0.0, abs=1e-12)
    t = randn(6, 10, seed=5).requires_grad_(True)
    kd_loss(s.clone().requires_grad_(True), t, 3.0).backward()
    assert t.grad is None


@pytest.mark.parametrize("T", [1.0, 2.0, 7.5])
def test_kd_loss_gradient_closed_form(T):
    n = 5
    s = randn(n, 6, seed=6).requires_grad_(True)
    t = randn(n, 6, seed=7)
    kd_loss(s, t, T).backward()
    expected = (torch.softmax(s.detach() / T, -1) - torch.softmax(t / T, -1)) * T / n
    assert torch.allclose(s.grad, expected, atol=1e-6, rtol=0)
    assert (s.grad - expected).abs().max() < 1e-12  # float64: exact up to rounding


def test_kd_gradient_tends_to_logit_matching_at_high_temperature():
    # softmax(z/T) ≈ (1 + z/T)/C for zero-mean z, so T·(p_s − p_t) → (z_s − z_t)/C and
    # the kd gradient T·(p_s − p_t)/N → (z_s − z_t)/(C·N) = ½ · grad of logit_mse_loss.
    n, c = 4, 5
    s, t = randn(n, c, seed=8) * 0.5, randn(n, c, seed=9) * 0.5
    s, t = s - s.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
    limit = (s - t) / (c * n)
    errors = []
    for T in (1.0, 10.0, 100.0, 1000.0):
        x = s.clone().requires_grad_(True)
        kd_loss(x, t, T).backward()
        errors.append(((x.grad - limit).norm() / limit.norm()).item())
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert errors[0] > 0.1 and errors[-1] < 1e-3

    x = s.clone().requires_grad_(True)
    logit_mse_loss(x, t).backward()
    assert torch.allclose(x.grad, 2 * (s - t) / (n * c))
    assert torch.allclose(x.grad / 2, limit)


# ---------------------------------------------------------------- logits / hint

def test_logit_mse_loss():
    s, t = randn(3, 4, seed=10), randn(3, 4, seed=11)
    ref = sum((s[i, j] - t[i, j]).item() ** 2 for i in range(3) for j in range(4)) / 12
    assert logit_mse_loss(s, t).item() == pytest.approx(ref, rel=1e-12)
    assert logit_mse_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]])).item() == pytest.approx(2.5)
    assert logit_mse_loss(s, s.clone()).item() == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        logit_mse_loss(s, t[:, :3])


def test_hint_loss():
    s, t = randn(2, 3, 4, 4, seed=12), randn(2, 3, 4, 4, seed=13)
    ref = ((s.numpy() - t.numpy()) ** 2).mean()
    assert hint_loss(s, t).item() == pytest.approx(ref, rel=1e-12)
    assert hint_loss(s, t).item() == pytest.approx(1.706664143, rel=1e-5)
    assert hint_loss(s, s.clone()).item() == 0.0
    with pytest.raises(ValueError, match="regressor"):
        hint_loss(s, t[:, :2])


# ---------------------------------------------------------------- attention

def test_attention_map_unit_norm_and_matches_numpy():
    a = randn(3, 4, 5, 6, seed=14)
    q = attention_map(a)
    assert q.shape == (3, 30)
    assert torch.allclose(q.norm(dim=1), torch.ones(3, dtype=a.dtype))
    np.testing.assert_allclose(q.numpy(), np_attention(a.numpy()), rtol=1e-12)


def test_attention_map_peaks_at_hot_region():
    a = torch.rand(2, 8, 6, 6, generator=torch.Generator().manual_seed(15)) * 0.1
    a[:, :, 4, 1] = 5.0
    q = attention_map(a)
    assert (q.argmax(dim=1) == 4 * 6 + 1).all()


def test_attention_map_rejects_non_4d():
    with pytest.raises(ValueError, match="4-D"):
        attention_map(torch.zeros(2, 3, 4))


def test_at_loss_matches_numpy_and_pinned_value():
    s, t = randn(2, 3, 4, 4, seed=16), randn(2, 5, 4, 4, seed=17)  # channel counts may differ
    ref = ((np_attention(s.numpy()) - np_attention(t.numpy())) ** 2).mean()
    assert at_loss(s, t).item() == pytest.approx(ref, rel=1e-12)
    assert at_loss(s, t).item() == pytest.approx(0.05490895402, rel=1e-5)
    assert at_loss(s, s.clone()).item() == pytest.approx(0.0, abs=1e-15)


def test_at_loss_pools_larger_map():
    s, t = randn(2, 3, 8, 8, seed=18), randn(2, 5, 4, 4, seed=19)
    pooled = torch.nn.functional.avg_pool2d(s, 2)  # 8→4 exactly: 2x2 blocks
    expected = ((np_attention(pooled.numpy()) - np_attention(t.numpy())) ** 2).mean()
    assert at_loss(s, t).item() == pytest.approx(expected, rel=1e-12)
    assert at_loss(t, s).item() == pytest.approx(expected, rel=1e-12)  # symmetric in which is larger


# ---------------------------------------------------------------- FSP

def test_fsp_matrix_shape_values_symmetry():
    a, b = randn(2, 3, 4, 4, seed=20), randn(2, 5, 4, 4, seed=21)
    g = fsp_matrix(a, b)
    assert g.shape == (2, 3, 5)
    np.testing.assert_allclose(g.numpy(), np_fsp(a.numpy(), b.numpy()), rtol=1e-12)
    gaa = fsp_matrix(a, a)
    assert torch.allclose(gaa, gaa.transpose(1, 2))


def test_fsp_matrix_pools_larger_map():
    a, b = randn(2, 3, 8, 8, seed=22), randn(2, 5, 4, 4, seed=23)
    expected = np_fsp(torch.nn.functional.avg_pool2d(a, 2).numpy(), b.numpy())
    np.testing.assert_allclose(fsp_matrix(a, b).numpy(), expected, rtol=1e-12)
    assert fsp_matrix(b, a).shape == (2, 5, 3)


def stages(seed):
    return [randn(2, 2, 8, 8, seed=seed), randn(2, 3, 4, 4, seed=seed + 1), randn(2, 4, 2, 2, seed=seed + 2)]


def test_fsp_loss_matches_numpy_and_pinned_value():
    s, t = stages(30), stages(40)
    pairs = []
    for i in range(2):
        gs = np_fsp(torch.nn.functional.avg_pool2d(s[i], 2).numpy(), s[i + 1].numpy())
        gt = np_fsp(torch.nn.functional.avg_pool2d(t[i], 2).numpy(), t[i + 1].numpy())
        pairs.append(((gs - gt) ** 2).mean())
    assert fsp_loss(s, t).item() == pytest.approx(np.mean(pairs), rel=1e-12)
    assert fsp_loss(s, t).item() == pytest.approx(0.05461074725, rel=1e-5)
    assert fsp_loss(s, [x.clone() for x in s]).item() == 0.0


def test_fsp_loss_errors():
    s, t = stages(30), stages(40)
    t[2] = randn(2, 6, 2, 2, seed=50)  # teacher's last stage is wider
    with pytest.raises(ValueError, match=r"pair 1 .*\(2, 3, 4\).*\(2, 3, 6\)"):
        fsp_loss(s, t)
    with pytest.raises(ValueError, match="stages"):
        fsp_loss(s, t[:2])


# ---------------------------------------------------------------- factor transfer

@pytest.mark.parametrize("p", [1, 2])
def test_factor_loss(p):
    s, t = randn(3, 2, 3, 3, seed=60), randn(3, 2, 3, 3, seed=61) * 4
    us = s.numpy().reshape(3, -1)
    ut = t.numpy().reshape(3, -1)
    us = us / np.linalg.norm(us, axis=1, keepdims=True)
    ut = ut / np.linalg.norm(ut, axis=1, keepdims=True)
    ref = np.mean([np.sum(np.abs(us[i] - ut[i]) ** p) ** (1 / p) for i in range(3)])
    assert factor_loss(s, t, p=p).item() == pytest.approx(ref, rel=1e-12)
    assert factor_loss(s, s.clone() * 2.0, p=p).item() == pytest.approx(0.0, abs=1e-12)  # scale-free


def test_factor_loss_pinned_value():
    s = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    t = torch.tensor([[4.0, 3.0], [0.0, 2.0]])
    # unit vectors: (.6,.8) vs (.8,.6) → L1 .4; (1,0) vs (0,1) → L1 2; mean 1.2
    assert factor_loss(s, t).item() == pytest.approx(1.2, rel=1e-6)
    assert factor_loss(s, t, p=2).item() == pytest.approx((math.sqrt(0.08) + math.sqrt(2)) / 2, rel=1e-6)


# ---------------------------------------------------------------- RKD

def test_pairwise_distances_on_a_line():
    xs = torch.tensor([0.0, 1.5, -2.0, 4.0], dtype=torch.float64)
    emb = torch.stack([xs, 2 * xs], dim=1) / math.sqrt(5)  # unit direction (1, 2)/√5
    expected = (xs[:, None] - xs[None, :]).abs()
    assert torch.allclose(pairwise_distances(emb), expected, atol=1e-12)
    assert (pairwise_distances(emb).diagonal() == 0).all()


def test_pairwise_distances_gradient_finite_with_duplicates():
    emb = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, -1.0]], requires_grad=True)
    d = pairwise_distances(emb)
    assert d[0, 1].item() < 1e-5
    d.sum().backward()
    assert torch.isfinite(emb.grad).all()
    emb.grad = None
    rkd_distance_loss(emb, randn(3, 4, seed=70).float()).backward()
    assert torch.isfinite(emb.grad).all()
    emb.grad = None
    rkd_angle_loss(emb, randn(3, 4, seed=70).float()).backward()
    assert torch.isfinite(emb.grad).all()


def test_rkd_distance_loss_matches_numpy_and_pinned_value():
    s, t = randn(5, 3, seed=71), randn(5, 6, seed=72) * 10  # dimensions may differ
    assert rkd_distance_loss(s, t).item() == pytest.approx(np_rkd_distance(s.numpy(), t.numpy()), rel=1e-10)
    assert rkd_distance_loss(s, t).item() == pytest.approx(0.06816586970, rel=1e-5)
    assert rkd_distance_loss(s, s.clone()).item() == 0.0


def test_angle_cosines_against_triple_loop():
    x = randn(5, 3, seed=73)
    np.testing.assert_allclose(angle_cosines(x).numpy(), np_angles(x.numpy()), atol=1e-12)
    # a right angle at vertex 1: points (1,0), (0,0), (0,1)
    right = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    assert angle_cosines(right)[0, 1, 2].item() == pytest.approx(0.0, abs=1e-7)
    assert angle_cosines(right)[1, 0, 2].item() == pytest.approx(1 / math.sqrt(2), rel=1e-6)


def test_rkd_angle_loss_matches_numpy_and_pinned_value():
    s, t = randn(5, 3, seed=74), randn(5, 4, seed=75)
    ref = np_huber(np_angles(s.numpy()), np_angles(t.numpy()))
    assert rkd_angle_loss(s, t).item() == pytest.approx(ref, rel=1e-10)
    assert rkd_angle_loss(s, t).item() == pytest.approx(0.03999872985, rel=1e-5)
    assert rkd_angle_loss(s, s.clone()).item() == pytest.approx(0.0, abs=1e-15)


def test_rkd_losses_are_scale_invariant():
    s, t = randn(6, 4, seed=76), randn(6, 4, seed=77)
    assert rkd_distance_loss(3.7 * s, t).item() == pytest.approx(rkd_distance_loss(s, t).item(), rel=1e-10)
    assert rkd_angle_loss(3.7 * s, t).item() == pytest.approx(rkd_angle_loss(s, t).item(), rel=1e-10)
    assert rkd_distance_loss(s, t).item() > 0.01  # the invariance test is not trivially 0 == 0


def direct_rkd_distance(s, t):
    """The difference-tensor form kdviz used before the Gram-matrix one: (N, N, D) differences."""
    def psi(x):
        n = x.shape[0]
        d = (x.unsqueeze(1) - x.unsqueeze(0)).pow(2).sum(-1).clamp_min(1e-12).sqrt() * ~torch.eye(n, dtype=torch.bool)
        return d / (d.sum() / (n * (n - 1)))
    return torch.nn.functional.smooth_l1_loss(psi(s), psi(t.detach()), beta=1.0)


def direct_rkd_angle(s, t):
    """The difference-tensor form: unit difference vectors (N, N, D), cosines by einsum (N, N, N)."""
    def psi(x):
        unit = torch.nn.functional.normalize(x.unsqueeze(1) - x.unsqueeze(0), p=2, dim=-1)
        return torch.einsum("ijd,kjd->ijk", unit, unit)
    return torch.nn.functional.smooth_l1_loss(psi(s), psi(t.detach()), beta=1.0)


@pytest.mark.parametrize("dtype,rel", [(torch.float64, 1e-10), (torch.float32, 2e-4)])
@pytest.mark.parametrize("n,d_s,d_t", [(2, 3, 3), (9, 5, 11), (48, 200, 64)])
def test_rkd_gram_form_matches_the_difference_tensor_form(dtype, rel, n, d_s, d_t):
    """Values and gradients of the closed (Gram-matrix) forms against the direct formulas, on
    random embeddings of several sizes, including ReLU-like ones with a large common offset."""
    for seed in range(3):
        s = (randn(n, d_s, seed=100 + seed).relu() + 3.0 * seed).to(dtype)
        t = (randn(n, d_t, seed=200 + seed) * 5).to(dtype)
        for gram_form, direct in ((rkd_distance_loss, direct_rkd_distance), (rkd_angle_loss, direct_rkd_angle)):
            a, b = s.clone().requires_grad_(True), s.clone().requires_grad_(True)
            fast, slow = gram_form(a, t), direct(b, t)
            fast.backward()
            slow.backward()
            assert fast.item() == pytest.approx(slow.item(), rel=rel, abs=1e-12)
            assert torch.allclose(a.grad, b.grad, rtol=rel, atol=rel * (b.grad.abs().max().item() + 1e-6))
    cos = angle_cosines(s)  # the (i, j, k) layout of the public function, float32 or float64
    assert torch.allclose(cos.double(), angle_cosines(s.double()), atol=1e-5)


def test_rkd_angle_cosines_stay_cosines_for_nearly_coincident_points():
    """float32 Gram matrices cannot resolve a pair 1e-2 apart next to a point 91 away: such a pair
    counts as one point (cosine 0, as for coincident points), never as cosines far outside [-1, 1]."""
    emb = torch.tensor([[0.0, 0.0], [0.01, 0.0], [91.0, 3.0], [-40.0, 60.0]])
    cos = angle_cosines(emb)
    assert cos.abs().max() <= 1 + 1e-4
    assert cos[0, 1, 2] == 0 and cos[2, 1, 3] != 0
    assert torch.allclose(angle_cosines(emb.double())[2, 0, 3].float(), cos[2, 0, 3], atol=1e-4)


def test_rkd_angle_backward_can_run_twice():
    """The hand-written backward leaves its saved tensors intact (retain_graph works)."""
    s, t = randn(6, 4, seed=80).requires_grad_(True), randn(6, 3, seed=81)
    loss = rkd_angle_loss(s, t)
    loss.backward(retain_graph=True)
    first = s.grad.clone()
    loss.backward()
    assert torch.allclose(s.grad, 2 * first)
    assert torch.autograd.gradcheck(lambda x: rkd_angle_loss(x, t), (randn(6, 3, seed=82).requires_grad_(True),))


def test_rkd_teacher_is_detached():
    s, t = randn(4, 3, seed=78).requires_grad_(True), randn(4, 3, seed=79).requires_grad_(True)
    (rkd_distance_loss(s, t) + rkd_angle_loss(s, t)).backward()
    assert t.grad is None and s.grad is not None


# ---------------------------------------------------------------- adversarial

D_TEACHER = torch.tensor([2.0, -0.5, 1.0])
D_STUDENT = torch.tensor([-1.0, 0.3, 0.0, 4.0])


def test_gan_losses_against_hand_computed():
    dt, ds = D_TEACHER.numpy(), D_STUDENT.numpy()
    expected_d = np_bce_logits(dt, 1.0) + np_bce_logits(ds, 0.0)
    assert gan_discriminator_loss(D_TEACHER, D_STUDENT).item() == pytest.approx(expected_d, rel=1e-6)
    assert gan_discriminator_loss(D_TEACHER, D_STUDENT).item() == pytest.approx(1.941150738, rel=1e-5)
    assert gan_generator_loss(D_STUDENT).item() == pytest.approx(np_bce_logits(ds, 1.0), rel=1e-6)
    # at D = 0 everywhere, each half is log 2
    assert gan_discriminator_loss(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(2 * math.log(2))
    assert gan_generator_loss(torch.zeros(3)).item() == pytest.approx(math.log(2))


def test_wgan_losses_against_hand_computed():
    # mean(D_STUDENT) = 0.825, mean(D_TEACHER) = 2.5/3
    assert wgan_critic_loss(D_TEACHER, D_STUDENT).item() == pytest.approx(0.825 - 2.5 / 3, rel=1e-5)
    assert wgan_generator_loss(D_STUDENT).item() == pytest.approx(-0.825, rel=1e-6)


def linear_critic(weight):
    return lambda x: x.flatten(start_dim=1) @ weight


def test_gradient_penalty_linear_critics():
    real, fake = randn(8, 6, seed=80), randn(8, 6, seed=81)
    w = randn(6, seed=82)
    unit = w / w.norm()
    g = torch.Generator().manual_seed(0)
    assert gradient_penalty(linear_critic(unit), real, fake, generator=g).item() == pytest.approx(0.0, abs=1e-12)
    assert gradient_penalty(linear_critic(3 * unit), real, fake).item() == pytest.approx(4.0, rel=1e-10)


def test_gradient_penalty_backpropagates_to_critic_parameters():
    real, fake = randn(8, 2, 3, seed=83), randn(8, 2, 3, seed=84)
    w = (2 * randn(6, seed=85)).requires_grad_(True)
    penalty = gradient_penalty(linear_critic(w), real, fake)
    penalty.backward()
    # penalty = (‖w‖ − 1)², so d/dw = 2(‖w‖ − 1) · w/‖w‖
    norm = w.detach().norm()
    assert torch.allclose(w.grad, 2 * (norm - 1) * w.detach() / norm)


def test_gradient_penalty_nonlinear_critic_uses_interpolates():
    # critic(x) = ½‖x‖² has gradient x̂, so the penalty depends on where x̂ lands;
    # with a fixed generator we can recompute it by hand.
    real, fake = randn(5, 3, seed=86), randn(5, 3, seed=87)
    critic = lambda x: 0.5 * x.pow(2).sum(dim=1)  # noqa: E731
    got = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(1))
    eps = torch.rand(5, 1, generator=torch.Generator().manual_seed(1), dtype=real.dtype)
    mixed = eps * real + (1 - eps) * fake
    assert got.item() == pytest.approx((mixed.norm(dim=1) - 1).pow(2).mean().item(), rel=1e-12)
