"""The softened distributions and the dark-knowledge matrix (kdviz.probes.temperatures, numpy): the same
numbers as the training code's softmax, and a module a page can import before torch."""
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from kdviz.losses import soften
from kdviz.probes import temperatures as t


def test_softmax_at_is_the_training_softmax():
    z = torch.randn(7, 10, generator=torch.Generator().manual_seed(0)) * 6
    temps = [0.5, 1.0, 4.0, 20.0]
    ours = t.softmax_at(z.numpy(), temps)
    assert ours.shape == (4, 7, 10)
    for i, T in enumerate(temps):
        np.testing.assert_allclose(ours[i], soften(z.double(), T).numpy(), rtol=1e-12, atol=1e-15)


def test_softmax_at_limits_and_refusals():
    z = np.array([800.0, 2.0, 1.0, -3.0])  # large logits: no overflow
    p = t.softmax_at(z, [0.5, 1e9])
    assert np.isfinite(p).all() and p[0].argmax() == 0 and p[0, 0] == pytest.approx(1.0)
    np.testing.assert_allclose(p[1], 0.25, atol=1e-6)  # T → ∞: uniform
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError):
            t.softmax_at(z, [bad])
    with pytest.raises(ValueError):
        t.softmax_at(np.array([3.0]), [1.0])  # one class: nothing to soften


def test_showcase_example_picks_a_right_and_not_too_sure_answer():
    z = np.array([[10.0, 0, 0], [1.0, 1.0, 1.0], [0, 2.6, 0], [2.0, 2.1, 0], [0, 0, 12.0]])
    labels = np.array([0, 1, 1, 0, 2])
    # image 2: right, top probability 0.87, the closest to 0.9 among the right ones (0 and 4 are ~1.0)
    assert t.showcase_example(z, labels) == 2
    assert t.showcase_example(z[[1, 3]], labels[[1, 3]]) in (0, 1)  # only wrong answers: still one
    with pytest.raises(ValueError):
        t.showcase_example(np.zeros((0, 3)), np.zeros(0))


def test_log_grid_and_nearest():
    g = t.log_grid(0.5, 50)
    assert g[0] == 0.5 and g[-1] == 50 and g == sorted(g) and {1.0, 2.0, 4.0, 10.0, 20.0} <= set(g)
    assert t.log_grid(0.003, 0.003) == [0.003]
    assert t.nearest(t.T_GRID, 3.7) == 4.0 and t.nearest(t.T_GRID, 0.1) == 0.5
    with pytest.raises(ValueError):
        t.log_grid(0, 1)


def test_the_first_views_modules_import_without_torch():
    """What a page's first view reads and computes before torch is imported: the shipped files, the run
    records, the networks here (teachers and the inside pages' students), the presets, the shipped views and
    maps, a test split's IDX files, the experiments' results, this module, and the app's common, figures and
    inside pages' modules."""
    code = ("import sys; sys.path[:0] = ['app']; import kdviz.shipped, kdviz.records, kdviz.catalogue, kdviz.presets, "
            "kdviz.probes.temperatures, kdviz.probes.view_files, kdviz.probes.maps, kdviz.probes.confusions, kdviz.idx, "
            "kdviz.files, kdviz.settings, kdviz.experiment_results, common, figures, figures_inside, inside_common; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=__import__("pathlib").Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "False", out.stderr


def test_entropy_known_answers():
    assert t.entropy(torch.full((10,), 0.1)).item() == pytest.approx(math.log(10))
    assert t.entropy(torch.tensor([1.0, 0.0, 0.0])).item() == pytest.approx(0.0)
    assert t.entropy(torch.tensor([0.5, 0.5])).item() == pytest.approx(math.log(2))


def test_softened_shape_and_limits():
    z = torch.tensor([8.0, 2.0, 1.0, -3.0])
    p = t.softmax_at(z, [0.5, 1.0, 1e6])
    assert p.shape == (3, 4)
    assert np.allclose(p.sum(-1), np.ones(3))
    assert np.allclose(p[1], torch.softmax(z, -1).numpy())
    assert np.allclose(p[2], 0.25, atol=1e-5)  # T → ∞: uniform
    assert p[0, 0] > p[1, 0]  # T < 1 sharpens


def test_softening_curves_monotone_and_bounded():
    c = t.softening_curves(torch.tensor([5.0, 3.0, 1.0, 0.0, -2.0]))
    assert c["T"] == list(t.T_GRID)
    assert c["max_entropy"] == pytest.approx(math.log(5))
    assert all(a <= b + 1e-9 for a, b in zip(c["entropy"], c["entropy"][1:]))  # softer and softer
    assert all(a >= b - 1e-9 for a, b in zip(c["top_prob"], c["top_prob"][1:]))
    assert c["entropy"][-1] < c["max_entropy"] and c["top_prob"][-1] > 0.2
    assert c["top_class"] == 0


def test_wrong_class_ranking_is_the_teachers_order_at_every_T():
    z = torch.tensor([10.0, 6.0, 0.0, 5.0, -4.0])
    assert t.wrong_class_ranking(z, k=2) == [1, 3]
    assert 0 not in t.wrong_class_ranking(z, k=4) and len(t.wrong_class_ranking(z, k=4)) == 4
    # an image the teacher hesitates on: the runner-up falls from T = 1 to T = 10 while far-off
    # classes rise most, yet the runner-up is what the teacher believes and heads the key
    z = torch.tensor([10.0, 9.9, 5.0, 0.0, -4.0])
    p1, p10 = t.softmax_at(z, [1.0, 10.0])
    assert p10[1] < p1[1] and int((p10 - p1)[1:].argmax()) + 1 != 1
    assert t.wrong_class_ranking(z, k=2) == [1, 2]


def _shipped_teacher_logits():
    from kdviz import pretrained
    from kdviz.evaluation import predict_logits

    for name in pretrained.names():
        gallery = pretrained.probe_set(name)
        yield name, gallery, predict_logits(pretrained.load(name), gallery, device="cpu"), \
            pretrained.probe_details(name)["kind"]


def test_reveal_key_holds_the_top_wrong_class_on_every_ambiguous_probe_image_of_every_teacher():
    """Issue 16: the key of "predict, then reveal" must agree with what the teacher believet. On every
    ambiguous probe image (the shipped kind, and the page's gallery picks), the key holds the teacher's
    top wrong class, and the T = 10 bars the page reveals rank the key's classes highest after the answer."""
    from kdviz import pretrained

    teachers = list(_shipped_teacher_logits())
    assert teachers, "no shipped teacher in pretrained/"
    for name, gallery, logits, kinds in teachers:
        ambiguous = set(torch.nonzero(kinds == pretrained.PROBE_KINDS.index("ambiguous")).flatten().tolist())
        ambiguous |= set(t.example_gallery(logits, gallery.labels, k=8)["ambiguous"])
        assert len(ambiguous) >= 8, name
        for i in sorted(ambiguous):
            key = t.wrong_class_ranking(logits[i], k=3)
            p10 = t.softmax_at(logits[i], [10.0])[0]
            answer = int(p10.argmax())
            others = [c for c in range(len(p10)) if c != answer]
            top_wrong = max(others, key=lambda c: p10[c].item())
            assert top_wrong in key, (name, i, key)
            assert answer not in key and len(set(key)) == 3
            shown = sorted(others, key=lambda c: -p10[c].item())[:3]  # what the revealed chart shows highest
            assert [p10[c].item() for c in key] == [p10[c].item() for c in shown], (name, i)


def test_dark_knowledge_matrix_rows_sum_to_one_and_find_similar_pairs():
    torch.manual_seed(0)
    C, n = 5, 400
    labels = torch.arange(n) % C
    z = torch.randn(n, C)
    z[torch.arange(n), labels] += 8.0
    # classes 1 and 3 look alike: each gives the other a large logit
    z[labels == 1, 3] += 5.0
    z[labels == 3, 1] += 5.0
    for T in (0.5, 1.0, 4.0, 20.0):
        M = t.dark_knowledge_matrix(z, labels, T, C)
        assert M.shape == (C, C)
        assert np.all(np.isnan(np.diag(M)))
        assert np.allclose(np.nansum(M, 1), 1.0, atol=1e-5)
        assert np.nanmin(M) >= 0
    pairs = t.similar_pairs(t.dark_knowledge_matrix(z, labels, 4.0), classes="abcde", k=3)
    assert (pairs[0]["a"], pairs[0]["b"]) == (1, 3) and pairs[0]["names"] == ("b", "d")
    assert pairs[0]["similarity"] >= pairs[1]["similarity"] >= pairs[2]["similarity"]


def test_dark_knowledge_matrix_high_T_is_uniform_over_others_and_empty_class_is_nan():
    labels = torch.tensor([0, 0, 1])
    z = torch.tensor([[9.0, 1.0, 0.0], [7.0, 3.0, 2.0], [0.0, 9.0, 4.0]])
    M = t.dark_knowledge_matrix(z, labels, 1e6, 3)
    assert np.allclose(M[0, 1:], 0.5, atol=1e-4)
    assert np.all(np.isnan(M[2]))
    with pytest.raises(ValueError):
        t.dark_knowledge_matrix(z, labels, 0.0)


def test_example_gallery():
    z = torch.tensor([[10.0, 0, 0], [1.0, 1.0, 1.0], [0, 9, 0], [2.0, 2.1, 0], [0, 0, 12.0]])
    labels = torch.tensor([0, 1, 1, 0, 2])
    g = t.example_gallery(z, labels, k=2)
    assert g["ambiguous"] == [1, 3]
    assert set(g["confident"]) <= {0, 2, 4} and len(set(labels[g["confident"]].tolist())) == 2  # varied classes
    assert g["misclassified"] == [1, 3]  # argmax of [1,1,1] is 0 ≠ 1; [2,2.1,0] says 1 ≠ 0
