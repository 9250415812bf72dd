"""The shipped teachers' test-set logits (``pretrained/<name>.test_logits.npz``): they match their
card's sha256, hold the key of the teacher's own weights, equal what the teacher computes (on a
slice, where the data set is on this machine), and ``teacher_logits`` reads them instead of a pass."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from kdviz import data, presets, pretrained, shipped, teacher_cache
from kdviz.evaluation import confusion_matrix, predict_logits
from kdviz.models import build_model

import resources  # the app's cached loaders (the app folder is on the path by conftest)
import warmup
from conftest import APP

SHIPPED = [name for name in pretrained.names() if "test_logits_sha256" in pretrained.card(name)]


def _test_split(name: str):
    """The teacher's test split when it is on this machine and is the real one (its key matches), else None."""
    info = pretrained.card(name)
    try:
        test = data.load(info["dataset"]).test
    except Exception:  # noqa: BLE001 - a data set that is not here: the checks that need it are skipped
        return None
    return test if len(test) == info["test_logits_images"] else None


def test_every_shipped_teacher_ships_its_test_logits_within_the_size_budget():
    assert set(SHIPPED) == set(pretrained.names())
    total = sum(pretrained.test_logits_path(name).stat().st_size for name in SHIPPED)
    assert total < 3 * 2**20


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_logits_match_the_card_and_the_weights(name):
    info = pretrained.card(name)
    path = pretrained.test_logits_file(name)  # sha256 checked against the card
    assert path == pretrained.test_logits_path(name)
    with np.load(path, allow_pickle=False) as npz:
        logits, key = npz["logits"], str(npz["key"])
    assert logits.dtype == np.float32 and logits.shape == (info["test_logits_images"], len(info["classes"]))
    assert np.isfinite(logits).all()
    # the key names the shipped weights (their digest), the data set's test split and fp32
    teacher = pretrained.load(name)
    assert key == info["test_logits_key"]
    assert key.startswith(teacher_cache.model_digest(teacher)[:16] + f"-{info['dataset']}-test-")
    assert key.endswith("-fp32")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_logits_equal_the_teachers_own_and_replace_its_pass(name, monkeypatch):
    test = _test_split(name)
    if test is None:
        pytest.skip(f"the {pretrained.card(name)['dataset']} test split is not on this machine")
    teacher = pretrained.load(name)
    assert teacher_cache.cache_path(teacher, test).stem == pretrained.card(name)["test_logits_key"]
    shipped = teacher_cache.read_shipped(pretrained.test_logits_file(name), teacher, test)
    assert shipped is not None
    some = torch.arange(0, len(test), max(1, len(test) // 300))  # ~300 images spread over the split
    computed = predict_logits(teacher, test.subset(some), device="cpu")
    assert torch.allclose(shipped[some], computed, atol=1e-4, rtol=1e-4)
    assert torch.equal(shipped[some].argmax(1), computed.argmax(1))
    # with every forward made to fail and an empty disk cache, teacher_logits reads the shipped file

    def no_forward(self, *args, **kwargs):
        raise AssertionError(f"a forward pass of {type(self).__name__}")

    monkeypatch.setenv("KDVIZ_CACHE", str(pretrained.pretrained_dir() / "no-such-cache"))
    monkeypatch.setattr(torch.nn.Module, "__call__", no_forward)
    got = teacher_cache.teacher_logits(teacher, test, device="cpu", shipped=pretrained.test_logits_file(name))
    assert torch.equal(got, shipped)
    assert not (pretrained.pretrained_dir() / "no-such-cache").exists()


def test_logits_made_for_another_teacher_or_changed_are_refused(tmp_path, monkeypatch):
    """A file whose key is another teacher's is ignored (the teacher runs); a changed file fails its sha256."""
    monkeypatch.setenv("KDVIZ_CACHE", str(tmp_path / "cache"))
    test = data.load("digits").test
    torch.manual_seed(0)
    a, b = build_model("mlp-30", 1, 8, 10).eval(), build_model("mlp-30", 1, 8, 10).eval()  # two random inits
    path = tmp_path / "a.test_logits.npz"
    made = teacher_cache.write_shipped(path, a, test)
    assert made["key"] == teacher_cache.cache_path(a, test).stem
    assert torch.equal(teacher_cache.read_shipped(path, a, test), predict_logits(a, test, device="cpu"))
    assert teacher_cache.read_shipped(path, b, test) is None
    assert teacher_cache.read_shipped(path, a, test.subset(torch.arange(10))) is None
    assert torch.equal(teacher_cache.teacher_logits(b, test, device="cpu", shipped=path), predict_logits(b, test, device="cpu"))
    # a shipped teacher whose logits file was changed: refused by its card's sha256
    folder = tmp_path / "pretrained"
    shutil.copytree(pretrained.pretrained_dir(), folder, ignore=shutil.ignore_patterns("students"))
    monkeypatch.setenv("KDVIZ_PRETRAINED", str(folder))
    name = SHIPPED[0]
    with open(pretrained.test_logits_path(name), "ab") as f:
        f.write(b"\0")
    with pytest.raises(pretrained.PretrainedError, match="sha256"):
        pretrained.test_logits_file(name)


@pytest.mark.parametrize("name", SHIPPED)
def test_the_torch_free_gallery_is_the_teachers_own_pass(name):
    """kdviz.shipped.teacher_gallery's logits (numpy, read from the test-set logits at each probe image's test
    index) gives what the teacher computes on its probe set, and what the pages read through torch."""
    gallery = shipped.teacher_gallery(name)
    probe = pretrained.probe_set(name)
    np.testing.assert_array_equal(gallery["pixels"], probe.pixels.numpy())
    np.testing.assert_array_equal(gallery["labels"], probe.labels.numpy())
    assert gallery["classes"] == list(probe.classes)
    computed = teacher_cache.teacher_logits(pretrained.load(name), probe, device="cpu").numpy()
    np.testing.assert_allclose(gallery["logits"], computed, atol=1e-4, rtol=0)


def test_a_changed_logits_file_is_refused_by_the_torch_free_reader(tmp_path, monkeypatch):
    name = SHIPPED[0]
    for path in (pretrained.card_path(name), pretrained.probe_path(name), pretrained.test_logits_path(name)):
        shutil.copy(path, tmp_path / path.name)
    monkeypatch.setenv("KDVIZ_PRETRAINED", str(tmp_path))
    assert shipped.teacher_gallery(name)["logits"].shape[0] == len(shipped.probe_arrays(name)["labels"])
    logits = tmp_path / pretrained.test_logits_path(name).name
    logits.write_bytes(logits.read_bytes()[:-10])
    with pytest.raises(shipped.PretrainedError, match="does not match the sha256"):
        shipped.teacher_gallery(name)


@pytest.mark.parametrize("name", SHIPPED)
def test_the_cards_test_confusion_is_the_shipped_logits_on_the_test_labels(name):
    """The Confusion page draws the teacher's matrix from its card (kdviz.shipped.teacher_confusion, no torch):
    it must be what the shipped logits give on the test split's labels."""
    matrix = shipped.teacher_confusion(name)
    assert matrix is not None, f"{name}'s card holds no test_confusion: `kdviz pretrained make-logits {name}`"
    assert np.trace(matrix) / matrix.sum() == pytest.approx(pretrained.card(name)["test_acc"], abs=1e-6)
    labels, logits = shipped.test_labels(name), shipped.test_logits(name)  # the labels shipped beside the logits
    assert labels is not None, f"{name}'s test logits keep no labels: `kdviz pretrained make-logits {name}`"
    counted = confusion_matrix(torch.from_numpy(labels), torch.from_numpy(logits).argmax(1), len(matrix)).numpy()
    np.testing.assert_array_equal(counted, matrix)
    test = _test_split(name)
    if test is None:
        pytest.skip(f"the {pretrained.card(name)['dataset']} test split is not on this machine")
    np.testing.assert_array_equal(labels, test.labels.numpy())  # the data set's own test labels, in order
    expected = confusion_matrix(test.labels, torch.from_numpy(logits).argmax(1), test.num_classes).numpy()
    np.testing.assert_array_equal(matrix, expected)
    assert np.trace(matrix) / matrix.sum() == pytest.approx(float((logits.argmax(1) == test.labels.numpy()).mean()))


def test_every_confusion_page_teacher_has_its_confusion_in_its_card():
    """The Confusion page draws its teacher's matrix from its card alone, whichever data set it shows."""
    assert all(shipped.teacher_confusion(preset.teacher) is not None for preset in presets.PRESETS.values())


def test_a_malformed_test_confusion_is_refused(tmp_path, monkeypatch):
    name = "mnist-cnn"
    shutil.copy(pretrained.card_path(name), tmp_path / pretrained.card_path(name).name)
    monkeypatch.setenv("KDVIZ_PRETRAINED", str(tmp_path))
    card = json.loads((tmp_path / f"{name}.json").read_text())
    for bad in (card["test_confusion"][:-1], [[-1] * 10] * 10, [[0.5] * 10] * 10, [[1, 2], [3]], "many"):
        (tmp_path / f"{name}.json").write_text(json.dumps({**card, "test_confusion": bad}))
        with pytest.raises(shipped.PretrainedError, match="test_confusion"):
            shipped.teacher_confusion(name)


def test_the_confusion_page_counts_a_damaged_card_matrix_from_the_logits(tmp_path, monkeypatch):
    """app/inside_common.teacher_confusion: the card's matrix when sound, else the shipped logits counted on the
    test labels (through torch), never the damaged numbers."""
    from kdviz import presets

    import inside_common
    import inside_models

    name = "mnist-cnn"
    for path in (pretrained.card_path(name), pretrained.weights_path(name), pretrained.probe_path(name),
                 pretrained.test_logits_path(name)):
        shutil.copy(path, tmp_path / path.name)
    monkeypatch.setenv("KDVIZ_PRETRAINED", str(tmp_path))
    preset = presets.PRESETS["mnist"]
    np.testing.assert_array_equal(inside_common.teacher_confusion(preset), shipped.teacher_confusion(name))
    card = json.loads((tmp_path / f"{name}.json").read_text())
    (tmp_path / f"{name}.json").write_text(json.dumps({**card, "test_confusion": [[1, 2], [3]]}))
    inside_models.teacher_confusion.clear()
    try:
        got = inside_common.teacher_confusion(preset)
    finally:
        inside_models.teacher_confusion.clear()
    test = data.load("mnist").test
    expected = confusion_matrix(test.labels, torch.from_numpy(shipped.test_logits(name)).argmax(1), 10).numpy()
    np.testing.assert_array_equal(got, expected)


@pytest.fixture
def matrix_caches():
    """The app's caches behind the Temperature page's matrix, empty before the test and after it (what a test
    computes under its patches is not for the tests after it)."""
    for cached in (resources.teacher_test_outputs, resources.test_split):
        cached.clear()
    yield
    for cached in (resources.teacher_test_outputs, resources.test_split):
        cached.clear()


def _refused(what: str):
    def fail(*args, **kwargs):
        raise AssertionError(what)
    return fail


def _whole_matrix_inputs(out: dict, name: str, test) -> None:
    """``out`` (``resources.teacher_test_outputs``) holds the whole test split and the shipped test logits."""
    assert out["source"] == f"all {len(test):,} test images"
    assert torch.equal(out["labels"], test.labels)
    with np.load(pretrained.test_logits_file(name), allow_pickle=False) as npz:
        assert torch.equal(out["logits"], torch.from_numpy(npz["logits"]))


def test_the_dark_knowledge_matrix_reads_the_test_split_alone_and_the_shipped_logits(matrix_caches, monkeypatch):
    """The Temperature page's matrix for the default teacher (the app's ``resources.teacher_test_outputs``): its
    data set's test split read alone, never the whole data set, and the teacher's shipped test logits read rather
    than computed (a CIFAR-10 teacher's, through the warm-up: the test below)."""
    name = "mnist-cnn"
    test = _test_split(name)
    if test is None:
        pytest.skip(f"the {pretrained.card(name)['dataset']} test split is not on this machine")
    resources.teacher_outputs(name)  # its probe images and their logits: not what is checked here
    monkeypatch.setattr(resources.datasets, "load", _refused("the whole data set was loaded"))
    monkeypatch.setattr(teacher_cache, "predict_logits", _refused("the teacher ran over the test set"))
    _whole_matrix_inputs(resources.teacher_test_outputs(name), name, test)


def test_the_warm_up_and_every_shipped_teachers_matrix_need_no_data_set_and_no_pass(matrix_caches, monkeypatch):
    """The Temperature page's dark-knowledge matrix of a shipped teacher (``common.shipped_test_outputs``) is its
    shipped test logits and labels: the server's warm-up (app/warmup.py ``warm_teachers``) opens no data set for
    it (it decoded CIFAR-10's 10,000 test JPEG files for it before the labels were shipped, 2.2-2.6 s), and a
    visit opens no data files and runs no teacher (each made to fail there)."""
    import common

    opened = []
    for what in ("load", "load_test"):
        real = getattr(resources.datasets, what)
        monkeypatch.setattr(resources.datasets, what, lambda *a, real=real, what=what, **k: opened.append(what) or real(*a, **k))
    common.shared.clear()
    try:
        warmup.warm_teachers(default=False)
        assert opened == []
        for where, what in ((resources.datasets, "load"), (resources.datasets, "load_test"),
                            (teacher_cache, "predict_logits"), (torch.nn.Module, "__call__")):
            monkeypatch.setattr(where, what, _refused("computed at the visit"))
        for name in SHIPPED:
            out = common.shipped_test_outputs(name)
            assert out["source"] == f"all {pretrained.card(name)['test_logits_images']:,} test images"
            np.testing.assert_array_equal(out["logits"], shipped.test_logits(name))
            np.testing.assert_array_equal(out["labels"], shipped.test_labels(name))
    finally:
        common.shared.clear()


def test_the_temperature_pages_matrix_of_a_shipped_teacher_needs_no_data_set(tmp_path, monkeypatch):
    """On a machine with no data set at all, the Temperature page averages a shipped CIFAR-10 teacher's
    dark-knowledge matrix over its whole test split, from its shipped logits and labels (before the labels were
    shipped: over its 200 probe images, the page's fallback), and never asks for the test split."""
    import json as json_module

    from streamlit.testing.v1 import AppTest

    from kdviz.probes import temperatures

    import common

    monkeypatch.setenv("KDVIZ_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("KDVIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(resources, "teacher_test_outputs", _refused("the page read the test split"))
    name, T = "cifar10-resnet20", 4.0
    common.shared.clear()
    try:
        at = AppTest.from_file(str(APP / "views" / "temperature.py"), default_timeout=120)
        at.query_params["teacher"], at.query_params["T"] = name, str(T)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        spec = next(json_module.loads(e.proto.spec) for e in at.get("plotly_chart") if "matrix" in e.proto.id)
        shown = np.array(spec["data"][0]["z"], dtype=float)  # the diagonal is None in the JSON: NaN here
        expected = temperatures.dark_knowledge_matrix(shipped.test_logits(name), shipped.test_labels(name), T)
        np.testing.assert_allclose(shown, expected, rtol=1e-6, atol=1e-9)
        assert any("averaged over all 10,000 test images at T = 4" in c.value for c in at.caption)
    finally:
        common.shared.clear()


def test_a_logits_file_without_labels_falls_back_and_bad_labels_are_refused(tmp_path, monkeypatch):
    """Logits shipped before their file kept the labels: no labels (the page then reads the test split through
    ``resources.teacher_test_outputs``); labels out of range, one too few or not integers: refused, never drawn
    (the page takes that checked way too)."""
    import common

    name = "mnist-cnn"
    for path in (pretrained.card_path(name), pretrained.probe_path(name)):
        shutil.copy(path, tmp_path / path.name)
    with np.load(pretrained.test_logits_path(name), allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    card = json.loads(pretrained.card_path(name).read_text())
    monkeypatch.setenv("KDVIZ_PRETRAINED", str(tmp_path))

    def ship(**changed):
        path = tmp_path / pretrained.test_logits_path(name).name
        np.savez_compressed(path, **{k: v for k, v in {**arrays, **changed}.items() if v is not None})
        (tmp_path / f"{name}.json").write_text(json.dumps({**card, "test_logits_sha256": pretrained.file_sha256(path)}))
        common.shared.clear()

    try:
        ship(labels=None)
        assert shipped.test_labels(name) is None and common.shipped_test_outputs(name) is None
        assert shipped.test_logits(name) is not None  # the logits themselves are still read
        for bad in (np.full(len(arrays["labels"]), 10), arrays["labels"][:-1], arrays["labels"].astype(np.float32)):
            ship(labels=bad)
            with pytest.raises(shipped.PretrainedError, match="label"):
                shipped.test_labels(name)
            assert common.shipped_test_outputs(name) is None  # the page takes the checked way instead
    finally:
        common.shared.clear()
