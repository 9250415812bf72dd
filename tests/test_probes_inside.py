"""kdviz.probes.inside: shapes, value ranges and known answers, on hand-made tensors and tiny nets."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdviz import preset_runs, presets
from kdviz.models import build_model, forward_features
from kdviz.probes import confusions, inside, temperatures, view_files
from kdviz.probes.confusions import row_normalised
from kdviz.recording import SoftTargetRecorder, frame_every, images_to_follow
from kdviz.train import EpochDone, PhaseStarted, StepDone


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_model("cnn5-small").eval()


# --------------------------------------------------------------------------- running a model
def test_forward_features_restores_mode_and_gives_cpu_floats(net):
    net.train()
    logits, feats = forward_features(net, torch.randn(3, 1, 28, 28))
    assert net.training
    assert logits.shape == (3, 10) and logits.dtype == torch.float32
    assert [tuple(s.shape[1:]) for s in feats.stages] == [(16, 28, 28), (32, 14, 14), (64, 7, 7)]
    net.eval()


def test_class_sorted_index_groups_classes_and_is_seeded():
    labels = torch.tensor([3, 1, 2, 1, 3, 2, 1, 3, 2, 2])
    index = view_files.class_sorted_index(labels, 2, seed=5)
    assert index.dtype == np.int64 and labels[index].tolist() == [1, 1, 2, 2, 3, 3]
    assert all(a < b for a, b in zip(index[::2], index[1::2]))  # in order within a class
    assert np.array_equal(index, view_files.class_sorted_index(labels.numpy(), 2, seed=5))  # tensor or numpy: the same
    others = {tuple(view_files.class_sorted_index(labels, 2, seed=s)) for s in range(20)}
    assert len(others) > 1  # the seed draws
    assert sorted(view_files.class_sorted_index(labels, 10)) == list(range(len(labels)))  # fewer than asked: all


# --------------------------------------------------------------------------- attention
def test_attention_map_of_a_single_hot_region_peaks_there():
    feature = torch.zeros(1, 4, 8, 8)
    feature[0, 2, 5, 1] = 3.0
    (q,) = inside.stage_attention([feature], p=2)
    assert q.shape == (1, 8, 8)
    assert torch.argmax(q[0]).item() == 5 * 8 + 1
    assert q[0].flatten().norm().item() == pytest.approx(1.0)


def test_attention_maps_are_unit_norm_and_rms_scaling_makes_flat_maps_one(net):
    _, feats = forward_features(net, torch.randn(2, 1, 28, 28))
    maps = inside.stage_attention(feats.stages, p=2)
    assert [tuple(m.shape) for m in maps] == [(2, 28, 28), (2, 14, 14), (2, 7, 7)]
    for m in maps:
        assert torch.allclose(m.flatten(1).norm(dim=1), torch.ones(2), atol=1e-5)
        assert (m >= 0).all()
    flat = inside.rms_scaled(inside.stage_attention([torch.ones(1, 3, 5, 5)]))[0]
    assert torch.allclose(flat, torch.ones(1, 5, 5))


def test_attention_refuses_vector_stages():
    with pytest.raises(ValueError, match="convolutional"):
        inside.stage_attention([torch.randn(2, 30)])


def test_at_distances_zero_for_self_bounded_and_pooled(net):
    _, feats = forward_features(net, torch.randn(4, 1, 28, 28))
    same = inside.at_distances(feats.stages, feats.stages)
    assert same.shape == (3, 4) and np.allclose(same, 0, atol=1e-6)
    # disjoint hot spots: orthogonal unit maps are √2 apart
    a, b = torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 4, 4)
    a[0, :, 0, 0], b[0, :, 3, 3] = 1.0, 1.0
    assert inside.at_distances([a], [b])[0, 0] == pytest.approx(math.sqrt(2))
    # a larger student map is pooled to the teacher's size, as in at_loss
    big = torch.rand(2, 5, 8, 8)
    pooled = torch.nn.functional.adaptive_avg_pool2d(big, (4, 4))
    assert np.allclose(inside.at_distances([big], [pooled]), 0, atol=1e-6)
    with pytest.raises(ValueError):
        inside.at_distances(feats.stages, feats.stages[:2])


def test_at_distance_squared_matches_at_loss(net):
    from kdviz.losses import at_loss

    torch.manual_seed(1)
    s, t = torch.rand(3, 4, 6, 6), torch.rand(3, 7, 6, 6)
    d = inside.at_distances([s], [t])[0]
    assert float((d**2).mean() / 36) == pytest.approx(at_loss(s, t).item(), rel=1e-5)


# --------------------------------------------------------------------------- FSP
def test_fsp_of_identical_inputs_is_symmetric_and_shapes():
    x = torch.randn(3, 5, 6, 6)
    (g,) = inside.fsp_matrices([x, x])
    assert g.shape == (5, 5)
    assert torch.allclose(g, g.T, atol=1e-6)
    mats = inside.fsp_matrices([torch.randn(2, 4, 8, 8), torch.randn(2, 6, 4, 4), torch.randn(2, 3, 2, 2)])
    assert [tuple(m.shape) for m in mats] == [(4, 6), (6, 3)]


def test_fsp_distances_zero_for_self_none_for_mismatch_and_adapters(net):
    _, feats = forward_features(net, torch.randn(2, 1, 28, 28))
    assert inside.fsp_distances(feats.stages, feats.stages) == [0.0, 0.0]
    other = [torch.randn(2, c, s, s) for c, s in ((8, 28), (32, 14), (64, 7))]
    d = inside.fsp_distances(other, feats.stages)
    assert d[0] is None and d[1] > 0
    adapters = [torch.nn.Conv2d(8, 16, 1, bias=False), torch.nn.Identity(), torch.nn.Identity()]
    assert all(v is not None for v in inside.fsp_distances(other, feats.stages, adapters))
    assert [tuple(m.shape) for m in inside.fsp_matrices(other, adapters)] == [(16, 32), (32, 64)]


# --------------------------------------------------------------------------- factors and t-SNE
def test_factor_embeddings_from_an_ft_method():
    from kdviz.methods import build_method

    torch.manual_seed(0)
    teacher, student = build_model("cnn5").eval(), build_model("cnn5-small")
    method = build_method("ft", student, teacher)
    out = inside.factor_embeddings(method, student, teacher, torch.randn(5, 1, 28, 28))
    assert out["teacher"].shape == out["student"].shape and out["teacher"].shape[0] == 5
    assert torch.allclose(out["teacher"].norm(dim=1), torch.ones(5), atol=1e-5)


def test_tsne_shape_and_determinism():
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0, 1, (30, 8)), rng.normal(8, 1, (30, 8))])
    a = inside.tsne(points, perplexity=50, seed=3, max_iter=250)  # perplexity capped below N/3
    assert a.shape == (60, 2) and np.isfinite(a).all()
    assert np.allclose(a, inside.tsne(points, perplexity=50, seed=3, max_iter=250))
    # the two blobs stay apart: every point's nearest neighbour is in its own blob
    d = np.linalg.norm(a[:, None] - a[None], axis=-1) + np.eye(60) * 1e9
    assert ((d.argmin(1) < 30) == (np.arange(60) < 30)).all()
    with pytest.raises(ValueError):
        inside.tsne(points[:3])


# --------------------------------------------------------------------------- relations
def test_normalised_distances_of_points_on_a_line():
    emb = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    d = inside.normalised_distances(emb)
    raw = torch.tensor([[0, 1, 2, 3], [1, 0, 1, 2], [2, 1, 0, 1], [3, 2, 1, 0]], dtype=torch.float32)
    mean = raw.sum() / 12  # 20 / 12
    assert torch.allclose(d, raw / mean, atol=1e-5)
    off = ~torch.eye(4, dtype=torch.bool)
    assert d[off].mean().item() == pytest.approx(1.0)
    assert torch.allclose(torch.diagonal(d), torch.zeros(4))
    # scale-free
    assert torch.allclose(inside.normalised_distances(emb * 7 + 2), d, atol=1e-5)


def test_distance_correlation_known_values():
    torch.manual_seed(0)
    e = torch.randn(20, 6)
    assert inside.distance_correlation(e, e) == pytest.approx(1.0)
    assert inside.distance_correlation(3 * e, e) == pytest.approx(1.0)  # scale does not matter
    q, _ = torch.linalg.qr(torch.randn(6, 6))
    assert inside.distance_correlation(e @ q + 1, e) == pytest.approx(1.0, abs=1e-6)  # nor rotation or shift
    r = inside.distance_correlation(torch.randn(20, 6), e)
    assert -1 <= r < 0.6


def test_angles_and_histogram():
    square = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    a = inside.angles(square)
    assert a.numel() == 4 * 3 * 2  # ordered triplets of distinct points
    # a square's triplet angles are 90° (at a corner between its two sides) and 45° (diagonal and side)
    assert sorted(set(np.round(a.numpy(), 3).tolist())) == [45.0, 90.0]
    shares, edges = inside.angle_histogram(square, bins=3)  # bins of 60°: the 45° angles, then the 90° ones
    assert len(edges) == 4
    assert shares.tolist() == pytest.approx([2 / 3, 1 / 3, 0.0])
    torch.manual_seed(0)
    e = torch.randn(12, 5)
    assert inside.angle_correlation(e, e) == pytest.approx(1.0)
    assert inside.angle_correlation(2 * e + 1, e) == pytest.approx(1.0)


# --------------------------------------------------------------------------- confusion
def test_row_normalised_and_per_class_accuracy():
    c = np.array([[8, 2, 0], [1, 9, 0], [0, 0, 0]])
    r = row_normalised(c)
    assert np.allclose(r[:2].sum(1), 1) and np.allclose(r[2], 0)
    acc = confusions.per_class_accuracy(c)
    assert acc[:2].tolist() == [0.8, 0.9] and math.isnan(acc[2])


def test_confusion_change_on_a_hand_made_case():
    before = np.array([[90, 10, 0], [5, 95, 0], [0, 3, 97]])
    after = np.array([[96, 4, 0], [7, 93, 0], [0, 4, 96]])
    change = confusions.confusion_change(before, after)
    improved = {tuple(map(int, ij)) for ij in zip(*np.nonzero(change["improved"]))}
    worsened = {tuple(map(int, ij)) for ij in zip(*np.nonzero(change["worsened"]))}
    assert improved == {(0, 0), (0, 1)}                   # more 0s right, fewer 0s taken for 1s
    assert worsened == {(1, 0), (1, 1), (2, 1), (2, 2)}   # more 1s taken for 0s, fewer 1s right, ...
    assert change["delta"][0, 0] == pytest.approx(0.06)
    strict = confusions.confusion_change(before, after, min_count=2)
    assert {tuple(map(int, ij)) for ij in zip(*np.nonzero(strict["worsened"]))} == {(1, 0), (1, 1)}
    with pytest.raises(ValueError):
        confusions.confusion_change(before, after[:2])


# --------------------------------------------------------------------------- soft targets during training
def test_soft_target_recorder_records_frames_at_start_steps_and_epochs(net):
    x = torch.randn(3, 1, 28, 28)
    rec = SoftTargetRecorder(x, every_steps=2)
    rec(PhaseStarted("paraphraser", 1, 4), net)  # another phase: ignored
    rec(PhaseStarted("train", 1, 4), net)
    for step in range(1, 5):
        rec(StepDone("train", 1, step, 4, {"total": 1.0}, 100.0, 0.1), net)
    rec(EpochDone("train", 1, 1, {}, 0.5, 0.6, 100.0, 1.0), net)
    snaps = rec.frames
    assert [s["epoch"] for s in snaps] == [0.0, 0.5, 1.0]  # step 4 is the epoch's end: one frame, not two
    assert snaps[-1]["test_acc"] == 0.6
    probs = temperatures.frame_probs(snaps, T=4.0)
    assert probs.shape == (3, 3, 10)
    assert np.allclose(probs.sum(-1), 1)
    direct = inside.soft_targets(net, x, 4.0).numpy()
    assert np.allclose(probs[-1], direct, atol=1e-5)
    gap = temperatures.soft_target_gap(probs, direct)
    assert gap.shape == (3, 3) and np.allclose(gap[-1], 0, atol=1e-6) and (gap >= -1e-6).all()


def test_frame_helpers():
    assert frame_every(60000, 128, 10) == 47
    assert frame_every(100, 128, 10) == 1
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    kinds = np.array([1, 0, 2, 0, 2, 2])
    assert images_to_follow(labels, kinds) == [2, 1, 4, 3]  # per class: typical, then ambiguous
    assert images_to_follow(labels, kinds, order=(1,)) == [0]  # class 1 has no clear image
    assert images_to_follow(labels, None, order=(0,)) == [0, 3]


# --------------------------------------------------------------------------- the two students
def test_pair_configs_share_one_budget():
    preset = presets.PRESETS["mnist"]
    base, at = preset_runs.pair_configs(preset, "at")
    assert base.method == "baseline" and base.teacher is None
    assert at.method == "at" and at.teacher == preset.teacher
    assert base.student == at.student == preset.student_for("at")
    assert base.train == at.train and base.fraction == at.fraction
    _, fsp = preset_runs.pair_configs(preset, "fsp")
    assert fsp.params == {"stages": 1, "weight": 100.0}
    _, kd = preset_runs.pair_configs(preset, "kd", {"T": 8.0})
    assert kd.params == {"T": 8.0, "alpha": 0.9}


def test_accuracy_table_rows():
    table = confusions.accuracy_table({"a": np.array([[8, 2], [1, 9]])})
    assert table["a"] == pytest.approx([80.0, 90.0, 85.0])


def test_distances_match_the_loss_helper_and_stay_small_in_memory():
    from kdviz.losses import pairwise_distances

    torch.manual_seed(0)
    e = torch.randn(30, 7)
    assert torch.allclose(inside.distances(e), pairwise_distances(e), atol=1e-5)
    big = torch.randn(800, 3136)  # 800 FT factor maps of cnn5-small: the (N, N, D) way would need 8 GB
    d = inside.distances(big)
    assert d.shape == (800, 800) and torch.all(torch.diagonal(d) == 0)


def test_matrix_correlation():
    a = torch.arange(12.0).view(3, 4)
    assert inside.matrix_correlation(a, 5 * a + 1) == pytest.approx(1.0)
    assert inside.matrix_correlation(a, -a) == pytest.approx(-1.0)
    assert math.isnan(inside.matrix_correlation(a, a.T))


def test_presets_offer_their_pages():
    assert presets.PRESETS["cifar10"].offers("at") and not presets.PRESETS["cifar10"].offers("rkd")
    assert all(presets.PRESETS["mnist"].offers(m) for m in presets.PAGE_METHODS)
    assert presets.PRESETS["mnist"].student_for("fsp") == "cnn5"  # FSP keeps the teacher's channel counts
