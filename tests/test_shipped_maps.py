"""The Factor space page's shipped t-SNE maps (``kdviz.probes.maps``): the file matches the FT student's
card, holds the key of the shipped networks at the page's default view, is a faithful map of the points
those networks compute now, and the page draws it with t-SNE made to fail."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch
from sklearn.manifold import trustworthiness
from streamlit.testing.v1 import AppTest

from kdviz import data, pretrained
from kdviz.probes import inside, maps, view_files, views
from kdviz.students import load_method, load_student

from conftest import APP, REAL_MNIST

pytestmark = pytest.mark.skipif(not REAL_MNIST or maps.shipped_pair("mnist") is None,
                                reason="needs the real MNIST test split (../shared/data) and the shipped mnist students")


@pytest.fixture(scope="module")
def default_view():
    preset, base, run = maps.shipped_pair("mnist")
    test = data.load("mnist").test
    index = view_files.class_sorted_index(test.labels, maps.DEFAULTS["per_class"], 0).tolist()
    return preset, base, run, test, index


def test_the_shipped_maps_match_the_card_and_the_default_view(default_view):
    preset, base, run, test, index = default_view
    path = pretrained.student_file(run["name"], maps.KIND)  # sha256 checked against the FT student's card
    assert path is not None and path.stat().st_size < 100_000
    got = maps.shipped_maps("mnist", base, run, test, index, maps.DEFAULTS["perplexity"], maps.DEFAULTS["seed"])
    assert got is not None and list(got) == list(maps.PANELS)
    assert all(m.shape == (len(index), 2) for m in got.values())
    # another perplexity, seed or image choice is computed live, never read from the file
    assert maps.shipped_maps("mnist", base, run, test, index, 20.0, 0) is None
    assert maps.shipped_maps("mnist", base, run, test, index, 30.0, 1) is None
    assert maps.shipped_maps("mnist", base, run, test, index[1:] + index[:1], 30.0, 0) is None
    # a student trained here (not a shipped one) has no shipped maps
    assert maps.shipped_maps("mnist", base, run | {"id": "20260101-000000-abcd"}, test, index, 30.0, 0) is None


def test_the_shipped_maps_are_faithful_maps_of_what_the_networks_compute(default_view):
    """Each shipped map keeps the near neighbours of the points the shipped networks compute now (on this
    machine): trustworthiness well above a map with its points shuffled."""
    preset, base, run, test, index = default_view
    got = maps.shipped_maps("mnist", base, run, test, index, 30.0, 0)
    teacher = pretrained.load(preset.teacher)
    student = load_student(run)
    points = views.factor_points(teacher, load_student(base), student, load_method(run, student, teacher),
                                test.images(torch.tensor(index)))
    shuffled = np.random.default_rng(0).permutation(len(index))
    for name, xy in got.items():
        kept = trustworthiness(points[name], xy, n_neighbors=10)
        assert kept > 0.9, (name, kept)
        assert kept > trustworthiness(points[name], xy[shuffled], n_neighbors=10) + 0.2, name


def _x_values(spec: dict) -> np.ndarray:
    out = []
    for trace in spec["data"]:
        x = trace["x"]
        if isinstance(x, dict) and "bdata" in x:
            x = np.frombuffer(base64.b64decode(x["bdata"]), dtype=np.dtype(x["dtype"]))
        out.append(np.asarray(x, dtype=float))
    return np.sort(np.concatenate(out))


def test_the_factor_page_draws_the_shipped_maps_with_no_tsne(default_view, monkeypatch):
    import inside_models

    preset, base, run, test, index = default_view
    expected = maps.shipped_maps("mnist", base, run, test, index, 30.0, 0)

    def no_tsne(*args, **kwargs):
        raise AssertionError("t-SNE ran for the shipped students at the default view")

    inside_models.tsne_maps.clear()
    monkeypatch.setattr(inside, "tsne", no_tsne)
    at = AppTest.from_file(str(APP / "views" / "factors.py"), default_timeout=180).run()
    assert not at.exception, [e.message for e in at.exception]
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if "ft_tsne" in c.proto.id]
    assert specs
    shipped_x = np.sort(np.concatenate([m[:, 0] for m in expected.values()]))
    assert np.allclose(_x_values(specs[0]), shipped_x, atol=1e-4)


def test_after_the_warm_up_the_factor_page_runs_no_network_and_no_tsne(default_view, monkeypatch):
    """The server's warm-up computes the default view's points through the page's cached function, so the
    first visit then needs neither a forward pass (every one made to fail here) nor t-SNE."""
    import inside_common
    import inside_models

    def fail(*args, **kwargs):
        raise AssertionError("computed at the first visit after the warm-up")

    for cached in (inside_models.factor_space, inside_models.embeddings, inside_models.tsne_maps):
        cached.clear()
    inside_common.warm_factor_space("mnist")
    monkeypatch.setattr(inside, "tsne", fail)
    monkeypatch.setattr(torch.nn.Module, "__call__", fail)
    try:
        at = AppTest.from_file(str(APP / "views" / "factors.py"), default_timeout=180).run()
    finally:
        inside_models.factor_space.clear()
    assert not at.exception, [e.message for e in at.exception]
    assert [c for c in at.get("plotly_chart") if "ft_tsne" in c.proto.id]
    assert len(at.dataframe) == 1  # the distances to the teacher, from the warmed-up numbers


def test_the_factor_page_sends_the_shipped_maps_before_computing_its_numbers(default_view, monkeypatch):
    """With shipped maps the chart needs no network: it goes out first, and the points behind the numbers
    table (forward passes of three networks, seconds on a fresh server) are computed after it."""
    import common
    import inside_models

    order = []
    real_show, real_space = common.show, inside_models.factor_space
    monkeypatch.setattr(common, "show", lambda *a, **k: order.append("chart") or real_show(*a, **k))
    monkeypatch.setattr(inside_models, "factor_space", lambda *a, **k: order.append("points") or real_space(*a, **k))
    at = AppTest.from_file(str(APP / "views" / "factors.py"), default_timeout=180).run()
    assert not at.exception, [e.message for e in at.exception]
    assert order == ["chart", "points"] and len(at.dataframe) == 1
