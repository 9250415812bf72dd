"""AppTest for the "inside the networks" pages (attention, FSP, factors, relations, confusion, soft targets).

A small made-up MNIST (conftest's learnable squares: 3,000 training and 500 test images, so every
evaluation is quick), a tiny teacher (cnn5-small, one epoch) shipped into a temporary
``pretrained/`` folder under its own name, and the page preset pointed at it with a
dozen-step budget, so the students train in seconds. Every page is run on its own
(``AppTest.from_file``), controls are changed and the Plotly specs read back; URL parameters
set the controls; one page trains its students through its button.
"""
from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest
import torch
from streamlit.testing.v1 import AppTest

from kdviz import preset_runs, presets, pretrained, recipes, recording
from kdviz.experiment import Experiment, RunConfig
from kdviz.models import forward_features
from kdviz.probes import inside, view_files
from kdviz.students import METHOD_STATE, StudentPair, load_soft_targets, load_student
from kdviz.train import TrainSettings

import resources  # the app's cached loaders (on the path by conftest): its data-set cache is cleared per test
from conftest import APP, make_fake_mnist

PAGES = APP / "views"

TEACHER = "test-inside-tiny"  # a name of its own: Streamlit's caches are per process
PRESET = presets.Preset("mnist", TEACHER, presets.Budget("cnn5-small", 0.5))
TIMEOUT = 120


# --------------------------------------------------------------------------- the tiny world
def _ship_teacher(checkpoint: Path, folder: Path, test) -> None:
    """A pretrained/ entry (weights, probe images, card) in the shipped format."""
    from kdviz.evaluation import predict_logits
    from kdviz.runs import load_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    weights = pretrained.weights_path(TEACHER, folder)
    shutil.copy(checkpoint, weights)
    teacher = load_checkpoint(weights)
    logits = predict_logits(teacher, test, device="cpu")
    index, kind = recipes.choose_probe(logits, test.labels, per_class=6)
    recipes.write_probe(pretrained.probe_path(TEACHER, folder), test, index, kind)
    card = {"name": TEACHER, "dataset": "mnist", "model": "cnn5-small", "classes": list(test.classes),
            "mean": list(test.mean), "std": list(test.std), "test_acc": 0.0,
            "spec": teacher.spec.to_dict(), "epochs": 1, "wall_time_s": 0.0,
            "sha256": pretrained.file_sha256(weights),
            "probe_sha256": pretrained.file_sha256(pretrained.probe_path(TEACHER, folder))}
    pretrained.card_path(TEACHER, folder).write_text(json.dumps(card))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Teacher and every page's two students, trained once for the module."""
    from kdviz import data

    root = tmp_path_factory.mktemp("inside")
    folders = {"pretrained": root / "pretrained", "runs": root / "runs", "data": root / "data",
               "cache": root / "cache"}
    make_fake_mnist(folders["data"] / "MNIST" / "raw", n_train=3000, n_test=500)
    with pytest.MonkeyPatch.context() as mp:
        for name in ("pretrained", "runs", "data", "cache"):
            mp.setenv(f"KDVIZ_{name.upper()}", str(folders[name]))
        splits = data.load("mnist")
        teacher = Experiment(RunConfig("mnist", "cnn5-small", "baseline",
                                       train=TrainSettings(epochs=1, precision="bf16", seed=0)),
                             runs_dir=root / "teacher").run()
        _ship_teacher(Path(teacher["checkpoint"]), folders["pretrained"], splits.test)
        records = {}
        for method in ("at", "fsp", "ft", "rkd"):
            pair = StudentPair(preset_runs.pair_configs(PRESET, method), folders["runs"]).start()
            pair.join()
            assert pair.error is None, pair.error
            records["baseline"], records[method] = pair.records
        probe = pretrained.probe_set(TEACHER)
        index = recording.images_to_follow(probe.labels, pretrained.probe_details(TEACHER)["kind"].numpy(), (2,))
        x = probe.images(torch.tensor(index))
        recorders = [recording.SoftTargetRecorder(x, every_steps=3), recording.SoftTargetRecorder(x, every_steps=3)]
        pair = StudentPair(preset_runs.pair_configs(PRESET, "kd"), folders["runs"], recorders,
                                  meta={"probe": TEACHER, "index": index}).start()
        pair.join()
        records["kd_baseline"], records["kd"] = pair.records
    return {**folders, "records": records}


@pytest.fixture
def env(world, monkeypatch):
    """Point kdviz and the page presets at the tiny world (after conftest's per-test runs dir).
    The app's data-set caches are emptied before and after, so no other test sees the made-up MNIST."""
    for name in ("pretrained", "runs", "data", "cache"):
        monkeypatch.setenv(f"KDVIZ_{name.upper()}", str(world[name]))
    monkeypatch.setattr(presets, "PRESETS", {"mnist": PRESET})
    resources.dataset.clear()
    resources.test_split.clear()
    yield world
    resources.dataset.clear()
    resources.test_split.clear()


def page(name: str, **params) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=TIMEOUT)
    for key, value in params.items():
        at.query_params[key] = str(value)
    return at.run()


def figures(at: AppTest) -> list[dict]:
    assert not at.exception, [e.message for e in at.exception]
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def arr(value) -> np.ndarray:
    """A Plotly data field as an array (Plotly sends numpy data as base64 "typed arrays")."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        return flat.reshape([int(n) for n in str(shape).split(",")]) if shape else flat
    return np.asarray(value, dtype=float)


def traces(fig: dict, kind: str) -> list[dict]:
    return [t for t in fig["data"] if t["type"] == kind]


def widget(at: AppTest, key: str):
    for group in (at.selectbox, at.slider, at.select_slider, at.number_input, at.checkbox):
        for w in group:
            if w.key == key:
                return w
    raise KeyError(key)


# --------------------------------------------------------------------------- the students themselves
def test_students_move_toward_the_teacher(env):
    """The library measurement behind the pages: distillation brings each student's inside closer to
    the teacher's than the baseline's, even after a few steps."""
    records = env["records"]
    teacher = pretrained.load(TEACHER)
    test = pretrained.probe_set(TEACHER)
    x = test.images(torch.from_numpy(view_files.class_sorted_index(test.labels, 6)))
    _, t = forward_features(teacher, x)
    feats = {k: forward_features(load_student(r, env["runs"]), x)[1] for k, r in records.items()}
    at_base = inside.at_distances(feats["baseline"].stages, t.stages).mean()
    at_student = inside.at_distances(feats["at"].stages, t.stages).mean()
    assert at_student < 0.8 * at_base
    assert inside.distance_correlation(feats["rkd"].embedding, t.embedding) > \
        inside.distance_correlation(feats["baseline"].embedding, t.embedding)
    assert (env["runs"] / records["ft"]["id"] / METHOD_STATE).is_file()
    assert len(load_soft_targets(records["kd"], env["runs"])["frames"]) >= 3


# --------------------------------------------------------------------------- attention
def test_attention_page_controls_change_the_maps(env):
    at = page("attention")
    figs = figures(at)
    assert len(figs) == 2
    maps = traces(figs[0], "heatmap")
    assert len(maps) == 9  # 3 stages x (teacher, baseline, AT student)
    bars = traces(figs[1], "bar")
    assert [b["name"] for b in bars] == ["baseline", "AT student"]
    before = [arr(m["z"]) for m in maps]
    widget(at, "attention_p").set_value(4).run()
    after = [arr(t["z"]) for t in traces(figures(at)[0], "heatmap")]
    assert any(not np.allclose(a, b) for a, b in zip(before, after))
    widget(at, "attention_img").set_value(3).run()
    title = figures(at)[0]["layout"]["title"]["text"]
    assert title.startswith("Probe image 3")


def test_attention_page_reads_the_url_and_refuses_bad_values(env):
    at = page("attention", p=1, img=2, kind="clear")
    figures(at)
    assert widget(at, "attention_p").value == 1
    assert widget(at, "attention_img").value == 2
    assert widget(at, "attention_kind").value == "clear"
    bad = page("attention", p=7)
    figures(bad)
    assert widget(bad, "attention_p").value == 2
    assert any("p=" in w.value for w in bad.warning)


# --------------------------------------------------------------------------- FSP
def test_fsp_page_pair_and_zoom(env):
    at = page("fsp")
    figs = figures(at)
    assert len(figs) == 3
    shapes = [arr(t["z"]).shape for t in traces(figs[0], "heatmap")]
    assert shapes == [(16, 32)] * 3  # stage 1 -> 2 of cnn5-small: teacher and both students
    distances = traces(figs[2], "bar")
    assert [len(arr(b["y"])) for b in distances] == [2, 2]
    widget(at, "fsp_pair").set_value("stage 2 → 3").run()
    assert arr(traces(figures(at)[0], "heatmap")[0]["z"]).shape == (32, 64)
    widget(at, "fsp_ch").set_value(16).run()
    assert arr(traces(figures(at)[0], "heatmap")[0]["z"]).shape == (16, 16)
    widget(at, "fsp_pair").set_value("stage 1 → 2").run()
    assert arr(traces(figures(at)[0], "heatmap")[0]["z"]).shape == (16, 16)  # the zoom stays
    url = page("fsp", pair="stage 2 → 3", ch=8)
    assert arr(traces(figures(url)[0], "heatmap")[0]["z"]).shape == (8, 8)


# --------------------------------------------------------------------------- factors
def test_factors_page_tsne_per_perplexity(env):
    at = page("factors", n=20)
    figs = figures(at)
    scatter = traces(figs[0], "scattergl")
    assert len(scatter) == 4 * 10  # four maps, one trace per class
    assert sum(len(arr(t["x"])) for t in scatter) == 4 * 200  # 20 per class
    titles = [a["text"] for a in figs[0]["layout"]["annotations"]]
    assert titles == ["teacher factor (paraphraser)", "FT student factor (translator)",
                      "baseline: penultimate features", "FT student: penultimate features"]
    before = arr(scatter[0]["x"])
    widget(at, "factors_perp").set_value(5).run()
    after = arr(traces(figures(at)[0], "scattergl")[0]["x"])
    assert before.shape == after.shape and not np.allclose(before, after)
    assert widget(page("factors", n=25, perp=5), "factors_perp").value == 5


# --------------------------------------------------------------------------- relations
def test_relations_page_batch_size_and_correlations(env):
    at = page("relations", n=5)
    figs = figures(at)
    assert len(figs) == 4
    heat = traces(figs[0], "heatmap")
    assert [arr(h["z"]).shape for h in heat] == [(50, 50)] * 3
    correlations = arr(traces(figs[2], "bar")[0]["y"])
    assert all(-1 <= r <= 1 for r in correlations)
    widget(at, "relations_n").set_value(10).run()
    assert arr(traces(figures(at)[0], "heatmap")[0]["z"]).shape == (100, 100)
    widget(at, "relations_seed").set_value(3).run()
    assert not at.exception


def test_relations_page_trains_its_students_with_the_button(env, tmp_path, monkeypatch):
    runs = tmp_path / "fresh"
    base = env["records"]["baseline"]
    shutil.copytree(env["runs"] / base["id"], runs / base["id"])  # the baseline is reused, as on a real machine
    monkeypatch.setenv("KDVIZ_RUNS", str(runs))
    at = page("relations")
    assert len(figures(at)) == 2  # the teacher alone: its distance matrix and angle histogram
    assert any("Until both students exist" in i.value for i in at.info)
    at.button(key="relations_train").click().run()
    pair = at.session_state["inside_pair_relations_mnist"]
    pair.join(TIMEOUT)
    assert pair.done and pair.error is None
    assert pair.runs[0] is None  # baseline reused, not trained again
    at.run()
    figs = figures(at)
    assert len(figs) == 4
    assert widget(at, "relations_run").value == pair.records[1]["id"]


# --------------------------------------------------------------------------- confusion
def test_confusion_page_highlights_follow_the_threshold(env):
    at = page("confusion", min=1)
    figs = figures(at)
    assert len(figs) == 3
    panels = traces(figs[0], "heatmap")
    assert len(panels) == 3 and all(arr(p["z"]).shape == (10, 10) for p in panels)
    rows = arr(panels[1]["customdata"]).sum(1)
    assert np.allclose(rows[rows > 0], 100)
    loose = len(figs[0]["layout"].get("shapes", []))
    widget(at, "confusion_min").set_value(10).run()
    strict = len(figures(at)[0]["layout"].get("shapes", []))
    assert strict <= loose
    assert widget(at, "confusion_min").value == 10


def test_confusion_page_reads_the_teachers_shipped_test_logits(env, tmp_path, monkeypatch):
    """With the teacher's test-set logits shipped (``kdviz pretrained make-logits``), an empty disk cache
    and every network's forward made to fail, the page still draws the teacher's matrix, from the file."""
    from kdviz import data
    from kdviz.evaluation import confusion_matrix

    import inside_models

    folder = tmp_path / "pretrained"
    shutil.copytree(env["pretrained"], folder)
    monkeypatch.setenv("KDVIZ_PRETRAINED", str(folder))
    monkeypatch.setenv("KDVIZ_CACHE", str(tmp_path / "cache"))
    test = data.load("mnist").test
    pretrained.make_test_logits(TEACHER, test)
    with np.load(pretrained.test_logits_file(TEACHER), allow_pickle=False) as npz:
        expected = confusion_matrix(test.labels, torch.from_numpy(npz["logits"]).argmax(1), 10).numpy()

    def no_forward(self, *args, **kwargs):
        raise AssertionError(f"a forward pass of {type(self).__name__} on the confusion page")

    inside_models.teacher_confusion.clear()
    monkeypatch.setattr(torch.nn.Module, "__call__", no_forward)
    try:
        figs = figures(page("confusion", min=1))
    finally:
        inside_models.teacher_confusion.clear()
    teacher_panel = traces(figs[0], "heatmap")[0]
    shares = arr(teacher_panel["customdata"])
    assert np.allclose(shares, 100 * expected / expected.sum(1, keepdims=True), atol=0.01)
    assert not (tmp_path / "cache").exists()  # nothing was computed, so nothing was cached


# --------------------------------------------------------------------------- soft targets
def test_the_soft_targets_button_trains_a_pair_that_records_the_followed_images(env, monkeypatch):
    """What the Soft targets page's button starts (app/inside_models.py): the KD pair, each student with a
    recorder of the teacher's followed probe images, and the metadata kept with their frames."""
    import inside_models

    monkeypatch.setattr(StudentPair, "start", lambda self: self)  # built, not trained
    pair = inside_models.start_pair(presets.PRESETS["mnist"], "kd", record=True)
    assert [c.method for c in pair.configs] == ["baseline", "kd"]
    assert len(pair.recorders) == 2 and all(r is not None for r in pair.recorders)
    assert pair.recorders[0] is not pair.recorders[1]
    assert pair.meta["probe"] == presets.PRESETS["mnist"].teacher
    assert len(pair.meta["index"]) == len(set(pair.meta["index"])) > 0
    plain = inside_models.start_pair(presets.PRESETS["mnist"], "at")  # the other pages record nothing
    assert plain.recorders == [None, None] and plain.meta == {}


def test_soft_targets_page_frames_temperature_and_log_scale(env, monkeypatch):
    at = page("soft_targets")
    figs = figures(at)
    assert len(figs) == 3
    bars = figs[1]
    snapshots = len(load_soft_targets(env["records"]["kd"], env["runs"])["frames"])
    assert len(bars["frames"]) == snapshots
    assert [b["name"] for b in traces(bars, "bar")] == ["baseline", "KD student"]
    teacher_t4 = arr(traces(bars, "scatter")[0]["y"])
    assert teacher_t4.sum() == pytest.approx(1, abs=1e-4)

    def no_forward(self, *args, **kwargs):
        raise AssertionError(f"a forward pass of {type(self).__name__} at a new temperature")

    with monkeypatch.context() as patched:  # a new T softens cached logits: no network runs
        patched.setattr(torch.nn.Module, "__call__", no_forward)
        at.select_slider(key="soft_targets_T").set_value(10.0).run()
        assert not at.exception, [e.value for e in at.exception]
    teacher_t10 = arr(traces(figures(at)[1], "scatter")[0]["y"])
    assert teacher_t10.max() < teacher_t4.max()  # a higher temperature flattens the target
    widget(at, "soft_targets_log").check().run()
    assert figures(at)[1]["layout"]["yaxis"]["type"] == "log"
    url = page("soft_targets", T=10, img=1, log=1)
    figures(url)
    assert url.select_slider(key="soft_targets_T").value == 10.0
    assert widget(url, "soft_targets_img").value == 1


def test_fsp_page_colour_scale(env):
    at = page("fsp", scale="each its own")
    layout = figures(at)[0]["layout"]
    assert {"coloraxis", "coloraxis2", "coloraxis3"} <= set(layout)
    widget(at, "fsp_scale").set_value("the teacher's").run()
    assert "coloraxis2" not in figures(at)[0]["layout"]


@pytest.mark.parametrize("name, charts", [("attention", 1), ("fsp", 1), ("factors", 1), ("relations", 2),
                                          ("confusion", 1), ("soft_targets", 0)])
def test_every_page_shows_the_teacher_before_any_student_exists(env, tmp_path, monkeypatch, name, charts):
    monkeypatch.setenv("KDVIZ_RUNS", str(tmp_path / "empty"))
    at = page(name, n=20) if name == "factors" else page(name)
    assert len(figures(at)) == charts
    assert any("Until both students exist" in i.value for i in at.info)
    assert at.button(key=f"{name}_train").label == "Train the students now"


def plotly_white() -> dict:
    """Plotly's plotly_white template as a figure's JSON carries it."""
    return json.loads(pio.to_json(go.Figure(layout={"template": "plotly_white"})))["layout"]["template"]


@pytest.mark.parametrize("name", ["soft_targets", "attention"])
def test_every_chart_is_drawn_in_the_apps_look(env, name):
    """app/figures.py sets plotly_white once, as Plotly's default template, instead of giving it to each
    figure (validated again for every figure, it was most of a figure's build): every chart still has it,
    the soft-targets page's image included, which its builder never styled."""
    figs = figures(page(name))
    assert len(figs) >= 2
    white = plotly_white()
    assert white["layout"]["plot_bgcolor"] == "white"
    assert [f["layout"]["template"] == white for f in figs] == [True] * len(figs)
