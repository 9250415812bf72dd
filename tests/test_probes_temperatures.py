"""The torch-free temperature math (kdviz.probes.temperatures): the same numbers as the training code's
softmax, and a module a page can import before torch."""
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
    """What a page's first view reads and computes before torch is imported: kdviz.shipped, this module,
    and the app's common and figures modules."""
    code = ("import sys; sys.path[:0] = ['app']; import kdviz.shipped, kdviz.probes.temperatures, common, figures; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=__import__("pathlib").Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "False", out.stderr
