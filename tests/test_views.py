"""The inside pages' shipped default views (``kdviz.probes.views``): a view survives the trip through
its file unchanged, a foreign or broken file is never trusted, every shipped view is what the shipped
networks compute now, any other setting or student is computed live, and the Attention, FSP and
Relations pages draw their first view of the shipped networks without running a network."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdviz import data, pretrained
from kdviz import shipped as shipped_files
from kdviz.probes import view_files, views
from kdviz.students import load_method, load_student

from conftest import REAL_MNIST

PAIRS = [(dataset, method) for dataset in ("mnist", "cifar10") for method in views.VIEW_METHODS
         if views.shipped_pair(dataset, method) is not None]


# --------------------------------------------------------------------------- the file
def test_a_view_survives_pack_and_unpack():
    view = {"teacher": {"maps": [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones((1, 2, 2))],
                        "distance": np.array([[0.5, np.nan]]), "pattern": [1.0, float("nan"), np.float64(0.25)],
                        "shapes": [(32, 14, 14), (64, 7, 7)], "angles": (np.zeros(3), np.linspace(0, 1, 4))},
            "AT student": {"count": np.int64(3), "note": None, "ok": True}}
    text, arrays = views.pack(view)
    assert all(isinstance(a, np.ndarray) for a in arrays.values()) and len(arrays) == 5
    back = views.unpack(text, arrays)
    assert list(back) == list(view)
    assert back["teacher"]["maps"][0].dtype == np.float32 and np.array_equal(back["teacher"]["maps"][0], view["teacher"]["maps"][0])
    assert np.array_equal(back["teacher"]["distance"], view["teacher"]["distance"], equal_nan=True)
    assert back["teacher"]["pattern"][0] == 1.0 and math.isnan(back["teacher"]["pattern"][1])
    assert back["teacher"]["pattern"][2] == 0.25 and type(back["teacher"]["pattern"][2]) is float
    assert back["teacher"]["shapes"] == [(32, 14, 14), (64, 7, 7)]
    assert isinstance(back["teacher"]["angles"], tuple) and np.array_equal(back["teacher"]["angles"][1], np.linspace(0, 1, 4))
    assert back["AT student"] == {"count": 3, "note": None, "ok": True}
    with pytest.raises(TypeError):
        views.pack({"__array__": 1})  # a key the format uses itself
    with pytest.raises(TypeError):
        views.pack({"model": torch.nn.Linear(2, 2)})


def _write(path, keys, texts, arrays):
    np.savez(path, keys=np.array(keys), **{f"v{i}": np.array(t) for i, t in enumerate(texts)}, **arrays)


def test_read_view_takes_only_its_own_key_from_a_sound_file(tmp_path):
    text, arrays = views.pack({"a": np.arange(3.0)})
    path = tmp_path / "x.views.npz"
    _write(path, ["k1", "k2"], ['{"b": 2}', text], {f"v1_{k}": a for k, a in arrays.items()})
    assert np.array_equal(views.read_view(path, "k2")["a"], np.arange(3.0))
    assert views.read_view(path, "k1") == {"b": 2}
    assert views.read_view(path, "k3") is None and views.read_view(path, None) is None
    assert views.read_view(None, "k1") is None and views.read_view(tmp_path / "missing.npz", "k1") is None
    broken = tmp_path / "broken.npz"
    broken.write_bytes(path.read_bytes()[:200])
    assert views.read_view(broken, "k2") is None
    pickled = tmp_path / "pickled.npz"  # an object array would unpickle: never loaded
    np.savez(pickled, keys=np.array(["k"]), v0=np.array('{"a": {"__array__": 0}}'), v0_a0=np.array([{"x": 1}], dtype=object))
    assert views.read_view(pickled, "k") is None


# --------------------------------------------------------------------------- the shipped views
@pytest.fixture(scope="module", params=PAIRS, ids=[f"{d}-{m}" for d, m in PAIRS])
def shipped(request):
    dataset, method = request.param
    if method == "rkd" and not REAL_MNIST:
        pytest.skip("the Relations page's batch is drawn from the real MNIST test split")
    preset, base, run = views.shipped_pair(dataset, method)
    test = data.load(dataset).test if method == "rkd" else None
    return method, preset, base, run, views.default_views(method, pretrained.probe_set(preset.teacher), test)


def _assert_same(got, want, path="view"):
    if isinstance(want, dict):
        assert list(got) == list(want), path
        for k in want:
            _assert_same(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, (list, tuple)):
        assert type(got) is type(want) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_same(g, w, f"{path}[{i}]")
    elif isinstance(want, np.ndarray):
        assert got.shape == want.shape and got.dtype == want.dtype, path
        assert np.allclose(got, want, rtol=1e-4, atol=1e-5, equal_nan=True), path
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-4, abs=1e-5, nan_ok=True), path
    else:
        assert got == want, path


def test_every_shipped_view_is_what_the_shipped_networks_compute_now(shipped):
    """Recomputed from the shipped weights on this machine, through the same functions the pages use live;
    a change to those functions or to a network that leaves a stale file fails here."""
    method, preset, base, run, defaults = shipped
    path = pretrained.student_file(run["name"], views.KIND)  # sha256 checked against the method student's card
    assert path is not None and path.stat().st_size < 200_000
    teacher, student = pretrained.load(preset.teacher), load_student(run)
    nets = {"teacher": teacher, "baseline": load_student(base), views.METHOD_NAMES[method]: student}
    adapters = {views.METHOD_NAMES[method]: getattr(load_method(run, student, teacher), "adapters", None)}
    assert defaults
    for view, images, index, settings in defaults:
        got = views.shipped_view(view, preset.teacher, base, run, images, index, settings)
        assert got is not None, view
        _assert_same(got, views.compute(view, nets, images, index, settings, adapters), view)


def test_the_probe_read_without_torch_gives_the_same_key(shipped):
    """A page's first view looks its view up from kdviz.shipped.Probe (numpy); the views were made from
    kdviz.data.ImageData (torch tensors): the same images must give the same key, and other ones another."""
    method, preset, base, run, defaults = shipped
    probe, images = shipped_files.probe(preset.teacher), pretrained.probe_set(preset.teacher)
    for view, made_on, index, settings in defaults:  # the shipped files were made from tensors
        if made_on.split == "probe":
            assert view_files.shipped_view(view, preset.teacher, base, run, probe, index, settings) is not None, view
    for index in ([0], list(range(len(probe))), [3, 1, 2]):
        assert view_files.view_key("fsp", preset.teacher, base, run, probe, index, {}) == \
            views.view_key("fsp", preset.teacher, base, run, images, index, {})
    other = shipped_files.Probe(**{**probe.__dict__, "labels": (probe.labels + 1) % len(probe.classes)})
    assert view_files.view_key("fsp", preset.teacher, base, run, other, [0], {}) != \
        view_files.view_key("fsp", preset.teacher, base, run, probe, [0], {})


def test_any_other_setting_image_or_student_is_computed_live(shipped):
    method, preset, base, run, defaults = shipped
    view, images, index, settings = defaults[0]
    assert views.shipped_view(view, preset.teacher, base, run, images, index, settings) is not None
    other = {**settings, "p": 3.0} if "p" in settings else {"p": 2.0}
    assert views.shipped_view(view, preset.teacher, base, run, images, index, other) is None
    moved = [index[-1] + 1] if len(index) == 1 else index[1:] + index[:1]
    assert views.shipped_view(view, preset.teacher, base, run, images, moved, settings) is None
    own = run | {"id": "20260101-000000-abcd"}  # a student trained here
    assert views.shipped_view(view, preset.teacher, base, own, images, index, settings) is None
    assert views.shipped_view(view, preset.teacher, base | {"id": "20260101-000000-abcd"}, run, images, index,
                              settings) is None
    assert views.shipped_view(view, "another-teacher", base, run, images, index, settings) is None


def test_the_pages_take_the_shipped_view_and_load_no_network(shipped, monkeypatch):
    """The pages' cached functions (app/inside_common.py) read the shipped default view without loading or
    running a network (both made to fail), and compute a view at another setting from the networks."""
    import inside_common as ic
    import inside_models

    method, preset, base, run, defaults = shipped
    model_refs = ic.refs(preset, base, run, method)
    cached = (ic.attention, ic.at_summary, ic.fsp, ic.relations, inside_models.embeddings)

    def fail(*args, **kwargs):
        raise AssertionError("a network was loaded or run for the shipped default view")

    for function in cached:
        function.clear()
    try:
        with monkeypatch.context() as m:
            m.setattr(inside_models, "_net", fail)
            m.setattr(torch.nn.Module, "__call__", fail)
            for view, images, index, settings in defaults:
                want = views.shipped_view(view, preset.teacher, base, run, images, index, settings)
                if view == "attention":
                    got = ic.attention(model_refs, preset.dataset, tuple(index), settings["p"])
                elif view == "at_summary":
                    got = ic.at_summary(model_refs, preset.dataset, settings["p"], len(index))
                elif view == "fsp":
                    got = ic.fsp(model_refs, preset.dataset, len(index), run["id"], preset.teacher)
                else:
                    got = ic.relations(model_refs, preset.dataset, tuple(index))
                _assert_same(got, want, view)
            if method == "at":  # another power p needs the networks
                with pytest.raises(AssertionError, match="network was loaded"):
                    ic.attention(model_refs, preset.dataset, (0,), 4.0)
    finally:
        for function in cached:
            function.clear()
