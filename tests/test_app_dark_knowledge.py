"""Streamlit AppTest for the Home, Temperature, Train and Compare pages.

Each page file is run on its own (AppTest.from_file("app/views/x.py")). The teacher is a
tiny one trained here on scikit-learn's digits (always offline), so the tests do not
depend on the shipped checkpoints; KDVIZ_PRETRAINED points at an empty folder.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from kdviz.probes import softening, temperatures
from kdviz.runs import list_runs, save_record

REPO = Path(__file__).resolve().parent.parent
PAGES = REPO / "app" / "views"
TIMEOUT = 120


@pytest.fixture(scope="session")
def teacher_runs(tmp_path_factory):
    """A runs folder holding one small teacher trained on digits (labels only)."""
    from kdviz.experiment import Experiment, RunConfig
    from kdviz.train import TrainSettings

    folder = tmp_path_factory.mktemp("teacher-runs")
    config = RunConfig("digits", "mlp-30", train=TrainSettings(epochs=3, batch_size=64, lr=0.1, device="cpu"))
    record = Experiment(config, runs_dir=folder).run()
    return folder, record


@pytest.fixture
def env(teacher_runs, tmp_path, monkeypatch):
    """Each test gets its own copy of the runs folder and no shipped teachers."""
    folder, record = teacher_runs
    runs = tmp_path / "runs"
    shutil.copytree(folder, runs)
    monkeypatch.setenv("KDVIZ_RUNS", str(runs))
    (tmp_path / "pretrained").mkdir()
    monkeypatch.setenv("KDVIZ_PRETRAINED", str(tmp_path / "pretrained"))
    return {"runs": runs, "teacher": f"run:{record['id']}", "teacher_id": record["id"]}


def page(name: str, **query) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    return at.run()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def chart(at: AppTest, key: str) -> dict:
    specs = [json.loads(e.proto.spec) for e in at.get("plotly_chart") if key in e.proto.id]
    assert specs, f"no chart {key!r}"
    return specs[0]


def warnings(at: AppTest) -> str:
    return " ".join(w.value for w in at.warning)


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


# --------------------------------------------------------------------------- home
def test_home_renders_picture_and_machine(env):
    at = ok(page("home"))
    picture = chart(at, "home_picture")
    assert [t["type"] for t in picture["data"]] == ["bar"] * 3
    onehot, p1, p4 = (np.array(t["y"]) for t in picture["data"])
    assert onehot.sum() == 1 and p1.sum() == pytest.approx(1, abs=1e-4) and p4.sum() == pytest.approx(1, abs=1e-4)
    assert p4.max() < p1.max()  # T = 4 is softer
    text = " ".join(m.value for m in at.markdown)
    assert "dark knowledge" in text and "digits" in text and "Device:" in text


# --------------------------------------------------------------------------- temperature
def bar_probs(at: AppTest) -> np.ndarray:
    return np.array(chart(at, "bars")["data"][1]["y"])


def test_temperature_slider_changes_the_distribution(env):
    at = ok(page("temperature"))
    slider = at.select_slider(key="T")
    assert slider.value == 1.0
    spec = chart(at, "bars")
    assert spec["layout"]["yaxis2"]["range"] == [0, 1.08]  # fixed probability axis
    cold = bar_probs(at)
    hot = bar_probs(ok(slider.set_value(10.0).run()))
    assert cold.sum() == pytest.approx(1, abs=1e-4) and hot.sum() == pytest.approx(1, abs=1e-4)
    assert temperatures.entropy(hot) > temperatures.entropy(cold) and hot.max() < cold.max()
    assert at.query_params["T"] in ("10", ["10"])  # the page mirrors its state into the URL
    entropy = chart(at, "entropy")
    assert entropy["layout"]["xaxis"]["type"] == "log"
    assert chart(at, "matrix")["data"][0]["type"] == "heatmap"


def test_temperature_url_sets_controls(env):
    at = ok(page("temperature", T="4", img="5", teacher=env["teacher"]))
    assert at.select_slider(key="T").value == 4.0
    assert at.selectbox(key="img").value == 5
    assert "T = 4" in json.dumps(chart(at, "bars")["layout"]["annotations"])
    assert not warnings(at)
    matrix = chart(at, "matrix")["data"][0]["z"]
    rows = [sum(v for v in row if v is not None) for row in matrix]
    assert rows == pytest.approx([1.0] * 10, abs=1e-4)  # each row: a distribution over the other classes
    # between grid points a link's T snaps to the nearest one
    assert ok(page("temperature", T="3.7")).select_slider(key="T").value == 4.0


@pytest.mark.parametrize("query", [{"T": "hot"}, {"T": "500"}, {"img": "99999"}, {"img": "x"},
                                   {"teacher": "../../etc/passwd"}, {"src": "camera"}, {"present": "maybe"}])
def test_temperature_refuses_bad_links_with_a_message(env, query):
    at = ok(page("temperature", **query))
    assert "Ignored the link's value" in warnings(at)
    assert at.select_slider(key="T").value in temperatures.T_GRID


def test_temperature_predict_then_reveal(env):
    at = ok(page("temperature"))
    reveal = button(at, "Reveal at T = 10")
    assert reveal.disabled
    at.multiselect[0].select(at.multiselect[0].options[0]).run()
    ok(button(at, "Reveal at T = 10").click().run())
    message = at.success[0].value
    assert "the teacher ranks" in message and "You picked" in message
    key = message.split("**")[1].split(", ")
    bars = chart(at, "reveal_bars")["data"][1]
    p10 = dict(zip(bars["x"], bars["y"]))
    answer = max(p10, key=p10.get)
    # the key is what the revealed chart shows highest after the teacher's answer
    assert key == sorted((c for c in p10 if c != answer), key=lambda c: -p10[c])[:3]


def test_temperature_upload_image_and_bad_file(env):
    import io

    from PIL import Image

    at = ok(page("temperature", src="upload"))
    assert any("Upload an image" in i.value for i in at.info)
    assert at.radio(key="src").value == "upload"
    if not hasattr(at, "file_uploader") or not at.file_uploader:
        pytest.skip("this Streamlit's AppTest cannot drive st.file_uploader")
    image = Image.fromarray(np.pad(np.full((20, 6), 255, np.uint8), 10))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    uploader = at.file_uploader[0]
    if not hasattr(uploader, "upload"):
        pytest.skip("this Streamlit's AppTest cannot upload files")
    ok(uploader.upload("one.png", buffer.getvalue(), "image/png").run())
    assert bar_probs(at).sum() == pytest.approx(1, abs=1e-4)
    at = page("temperature", src="upload")
    at.file_uploader[0].upload("bad.png", b"not an image", "image/png").run()
    message = at.warning[0].value
    assert not at.exception and "Could not use 'bad.png': this file is not an image kdviz can read" in message
    assert "UploadedFile" not in message and "http" not in message  # no internal object, no upload URL
    # a few KB on disk that would decode to 24 megapixels: refused from the header, never decoded
    buffer = io.BytesIO()
    Image.new("L", (6000, 4000)).save(buffer, format="PNG")
    at = page("temperature", src="upload")
    at.file_uploader[0].upload("huge.png", buffer.getvalue(), "image/png").run()
    assert not at.exception and "is 6000x4000 pixels; kdviz reads images up to 9 megapixels" in at.warning[0].value


# --------------------------------------------------------------------------- train
def wait_done(at: AppTest, seconds: float = 300) -> AppTest:
    deadline = time.time() + seconds
    while time.time() < deadline:
        run = at.session_state["train_run"]
        if run.done:
            return at.run()
        time.sleep(0.5)
        at.run()
    raise AssertionError("the run did not finish")


def test_train_url_sets_controls_and_formula(env):
    at = ok(page("train", dataset="digits", method="kd", T="2", alpha="0.5", epochs="3", student="mlp-30",
                 teacher=env["teacher"]))
    assert at.selectbox(key="dataset").value == "digits"
    assert at.selectbox(key="method").value == "kd"
    assert at.select_slider(key="hp_kd_T").value == 2.0
    assert at.slider(key="hp_kd_alpha").value == 0.5
    assert at.number_input(key="epochs").value == 3
    assert at.selectbox(key="teacher").value == env["teacher"]
    assert "\\alpha" in at.latex[0].value and "T^2" in at.latex[0].value


def test_train_demo_preset_sets_the_controls(env):
    at = ok(page("train", dataset="digits", epochs="7"))
    ok(button(at, "Load the 5-minute demo settings").click().run())
    assert at.selectbox(key="dataset").value == "mnist" and at.selectbox(key="student").value == "mlp-800"
    from kdviz.presets import DEMO

    assert at.selectbox(key="precision").value == "auto" and at.number_input(key="epochs").value == DEMO["epochs"]
    assert at.selectbox(key="batch").value == DEMO["batch_size"]
    assert "precision" not in at.query_params  # back at its default


@pytest.mark.parametrize("query", [{"epochs": "-3"}, {"epochs": "many"}, {"method": "magic"}, {"T": "0"},
                                   {"alpha": "2"}, {"dataset": "imagenet"}, {"lr": "nan"}, {"lr": "inf"},
                                   {"T": "nan"}, {"alpha": "nan"}, {"fraction": "-inf"}, {"seed": "1e99"},
                                   {"batch": "0"}, {"teacher": "../../etc/passwd"}, {"student": "<script>"}])
def test_train_refuses_bad_links_with_a_message(env, query):
    at = ok(page("train", **{"dataset": "digits", **query}))
    assert "Ignored the link's value" in warnings(at)


def test_train_live_run_survives_reruns_pauses_and_saves(env):
    at = ok(page("train", dataset="digits", student="mlp-30", teacher=env["teacher"], method="kd",
                 epochs="20", batch="32"))
    assert at.selectbox(key="batch").value == 32
    at.number_input(key="seed").set_value(3)  # changed and Start clicked in one request: the run takes seed 3
    ok(button(at, "Start").click().run())
    run = at.session_state["train_run"]
    assert button(at, "Start").disabled and not button(at, "Stop").disabled and run.config.train.seed == 3
    # a widget change (and the rerun it causes) neither restarts nor loses the run
    at.number_input(key="seed").set_value(7).run()
    assert at.session_state["train_run"] is run and run.config.train.seed == 3
    ok(button(at, "Pause").click().run())
    assert run.progress.state in ("paused", "starting")
    steps = run.progress.snapshot()["steps_done"]
    time.sleep(1.0)
    assert run.progress.snapshot()["steps_done"] <= steps + 1
    ok(button(at, "Resume").click().run())
    assert run.progress.state != "paused"
    ok(wait_done(at))
    record = run.progress.record
    assert record["method"] == "kd" and record["config"]["teacher"] == env["teacher_id"]
    assert (env["runs"] / record["id"] / "record.json").is_file()
    assert any("finished" in s.value for s in at.success)
    assert chart(at, "final_confusion")["data"][0]["type"] == "heatmap"
    live = chart(at, "live_curves")
    names = {t["name"] for t in live["data"]}
    assert {"kd", "ce", "total", "test accuracy"} <= names


def test_train_teacher_mode_and_stop(env):
    at = ok(page("train", mode="teacher", dataset="digits", student="mlp-30", epochs="50", batch="32"))
    assert not at.latex or "CE" in at.latex[0].value
    ok(button(at, "Start").click().run())
    run = at.session_state["train_run"]
    deadline = time.time() + 120
    while run.progress.snapshot()["steps_done"] < 3 and time.time() < deadline:
        time.sleep(0.2)
    ok(button(at, "Stop").click().run())
    run.join(60)
    ok(at.run())
    assert run.progress.state == "stopped" and run.progress.record["stopped"]
    assert any("stopped early" in s.value for s in at.success)


# --------------------------------------------------------------------------- compare
def fake_record(runs: Path, method: str, seed: int, acc: float, params=None, confusion=None):
    from kdviz.runs import save_record

    record = {"id": f"2026-{method}-{seed}-{int(acc * 1e4)}", "created": f"2026-01-01T00:00:{seed:02d}",
              "method": method, "method_params": params or {}, "seed": seed, "test_acc": acc,
              "params": 636010 if method != "teacher" else 1_200_000, "latency_ms": 0.05, "train_time_s": 4.0,
              "config": {"dataset": "mnist", "teacher": None if method == "baseline" else "mnist-cnn",
                         "train": {"epochs": 2}},
              "student": {"name": "mlp-800"}, "teacher": None if method == "baseline" else "pretrained:mnist-cnn",
              "dataset": {"name": "mnist", "classes": [str(i) for i in range(10)]},
              "history": [{"epoch": 1, "test_acc": acc - 0.01}, {"epoch": 2, "test_acc": acc}],
              "confusion": confusion or np.diag([100] * 10).tolist(), "stopped": False}
    save_record(record, runs)
    return record


def test_compare_bars_table_grid_confusion_and_downloads(env):
    runs = env["runs"]
    base_cm = np.diag([100] * 10)
    base_cm[4, 9], base_cm[4, 4] = 20, 80
    fake_record(runs, "baseline", 0, 0.97, confusion=base_cm.tolist())
    fake_record(runs, "baseline", 1, 0.98, confusion=base_cm.tolist())
    fake_record(runs, "kd", 0, 0.99, {"T": 4.0, "alpha": 0.9})
    fake_record(runs, "kd", 1, 0.99, {"T": 4.0, "alpha": 0.9})
    fake_record(runs, "kd", 0, 0.95, {"T": 1.0, "alpha": 0.5})
    at = ok(page("compare"))
    assert at.selectbox(key="dataset").value == "mnist"
    bars = chart(at, "bars")["data"][0]
    assert bars["x"] == pytest.approx([1.0, 2.5, 5.0])  # test error, bars from zero
    assert chart(at, "bars")["layout"]["xaxis"]["range"][0] == 0
    assert bars["error_x"]["array"] == pytest.approx([0.0, 100 * np.std([0.97, 0.98], ddof=1), 0.0])
    assert "1 seed" in bars["y"][2]  # one seed: said, not drawn as a whisker of 0
    table = next(frame.value for frame in at.dataframe if "accuracy %" in frame.value.columns)  # the reference tables come first
    assert list(table["accuracy %"]) == [99.0, 97.5, 95.0] and list(table["seeds"]) == [2, 2, 1]
    grid = chart(at, "alphaT")["data"][0]
    assert grid["x"] == ["1", "4"] and grid["y"] == ["0.5", "0.9"]
    assert grid["z"][1][1] == pytest.approx(99.0) and grid["z"][0][1] is None
    confusion = chart(at, "confusion")
    diff = np.array(confusion["data"][2]["z"], dtype=float)
    assert diff[4, 9] == pytest.approx(-20)  # the 4→9 mistakes KD fixed, in points
    assert "4→9" in " ".join(m.value for m in at.markdown)
    assert chart(at, "tradeoff")["layout"]["xaxis"]["type"] == "log"
    assert [d.proto.label for d in at.get("download_button")] == ["Table as CSV", "Records as JSON"]
    # the runs picker changes what is computed
    gains = chart(at, "gains")["data"][0]  # each KD setting over the baseline, in points
    assert gains["x"] == pytest.approx([1.5, -2.5])
    assert " to " in gains["y"][0] and "1 seed: no interval" in gains["y"][1]
    picker = run_picker(at)
    picker.unselect(picker.value[0]).run()
    assert len(chart(at, "bars")["data"][0]["x"]) == 3


def run_picker(at: AppTest):
    return next(m for m in at.multiselect if m.label.startswith("Runs to compare"))


def test_compare_lists_refresh_after_a_sweep_finishes(env):
    """Issue 16, point 2: after a sweep ends, the run picker and the before/after pickers offer the
    new runs from their defaults (all runs; a baseline before, another method after), not a stale choice."""
    kd = fake_record(env["runs"], "kd", 0, 0.9, {"T": 4.0, "alpha": 0.9})
    kd["config"]["dataset"], kd["student"]["name"] = "digits", "mlp-30"
    save_record(kd, env["runs"])
    at = ok(page("compare", dataset="digits", sw_dataset="digits", sw_student="mlp-30", sw_teacher=env["teacher"],
                 sw_methods="baseline,kd", sw_seeds="1", sw_epochs="1"))
    before_ids = set(run_picker(at).options)
    run_picker(at).unselect(run_picker(at).value[0]).run()  # the lecturer narrowed the choice
    ok(button(at, "Start the sweep (2 runs)").click().run())
    queue = at.session_state["compare_sweep"]
    queue.join(300)
    ok(at.run())  # what the sweep fragment does when the queue is done
    new_ids = {r["id"] for r in queue.records}
    assert queue.done and len(new_ids) == 2
    picker = run_picker(at)
    assert len(picker.options) == len(before_ids) + 2  # the new runs are offered...
    assert len(picker.value) == len(picker.options) and new_ids <= set(picker.value)  # ...and all shown again
    assert len(chart(at, "bars")["data"][0]["x"]) == len(softening.accuracy_summary(
        [r for r in softening.usable_records(list_runs(env["runs"])) if r["config"]["dataset"] == "digits"]))
    a, b = (next(s for s in at.selectbox if s.label.startswith(p)) for p in ("Before", "After"))
    assert len(a.options) == len(picker.options) and a.value != b.value
    records = {r["id"]: r for r in list_runs(env["runs"])}
    assert records[a.value]["method"] == "baseline" and records[b.value]["method"] == "kd"


def test_compare_bad_links_and_empty(env):
    shutil.rmtree(env["runs"])
    at = ok(page("compare", sw_methods="kd,magic", sw_seeds="0"))
    assert "Ignored the link's value sw_methods" in warnings(at) and "sw_seeds" in warnings(at)
    assert any("No finished runs" in i.value for i in at.info)
    fake_record(env["runs"], "kd", 0, 0.99, {"T": 4.0, "alpha": 0.9})
    at = ok(page("compare", dataset="nope"))
    assert "Ignored the link's value dataset" in warnings(at)


def test_compare_runs_a_sweep_in_the_background(env):
    at = ok(page("compare", sw_dataset="digits", sw_student="mlp-30", sw_teacher=env["teacher"],
                 sw_methods="baseline,kd", sw_seeds="1", sw_epochs="1"))
    assert at.multiselect(key="sw_methods").value == ["baseline", "kd"]
    ok(button(at, "Start the sweep (2 runs)").click().run())
    queue = at.session_state["compare_sweep"]
    assert len(queue.runs) == 2
    queue.join(300)
    ok(at.run())
    assert queue.done and [r["method"] for r in queue.records] == ["baseline", "kd"]
    assert any("2 of 2 runs done" in p.proto.text for p in at.get("progress"))
    at.selectbox(key="dataset").set_value("digits").run()
    assert len(chart(ok(at), "bars")["data"][0]["x"]) == 3  # teacher run + the two sweep runs


def test_temperature_play_moves_the_one_slider_and_every_chart_follows(env, monkeypatch):
    """Issue 16, point 9: one T control; playing moves the page's slider, the side charts follow.
    While it plays, the T fragment reruns on a timer and each of its own runs takes one grid step
    (AppTest runs whole pages: ``common.fragment_rerun`` says True as in those timer runs)."""
    import common

    at = ok(page("temperature"))
    ok(button(at, "play T").click().run())
    assert at.session_state["T_playing"] and button(at, "pause")
    monkeypatch.setattr(common, "fragment_rerun", lambda: True)
    for expected in (1.2, 1.5):  # what the fragment's timer does: one run, one grid step
        ok(at.run())
        assert at.select_slider(key="T").value == expected
        assert f"T = {expected:g}" in json.dumps(chart(at, "bars")["layout"]["annotations"])
        for side in ("entropy", "t2"):  # the dashed T line of both side charts
            assert [s["x0"] for s in chart(at, side)["layout"]["shapes"] if s["x0"] == s["x1"]] == [expected]
    monkeypatch.setattr(common, "fragment_rerun", lambda: False)
    ok(button(at, "pause").click().run())
    assert not at.session_state["T_playing"] and at.select_slider(key="T").value == 1.5
    # played to the end: the last step stops it
    ok(at.select_slider(key="T").set_value(20.0).run())
    ok(button(at, "play T").click().run())  # from the hottest, play starts again from the coldest
    assert at.select_slider(key="T").value == 0.5 and at.session_state["T_playing"]
    at.session_state["T_play_at"] = 20.0
    monkeypatch.setattr(common, "fragment_rerun", lambda: True)
    ok(at.run())
    assert not at.session_state["T_playing"] and at.select_slider(key="T").value == 20.0


def test_a_new_temperature_needs_no_model_pass(env, monkeypatch):
    """Softening at a new T works on the teacher's cached logits: with every network's forward
    made to fail, moving the slider still redraws the bars and the dark-knowledge matrix."""
    import torch

    at = ok(page("temperature"))
    before, matrix_before = bar_probs(at), chart(at, "matrix")["data"][0]["z"]

    def no_forward(self, *args, **kwargs):
        raise AssertionError(f"a forward pass of {type(self).__name__} at a new temperature")

    monkeypatch.setattr(torch.nn.Module, "__call__", no_forward)
    ok(at.select_slider(key="T").set_value(6.0).run())
    after = bar_probs(at)
    assert not np.allclose(after, before) and after.max() < before.max()  # softer at T = 6
    assert chart(at, "matrix")["data"][0]["z"] != matrix_before


def test_a_run_teachers_matrix_takes_the_test_split_of_the_data_set_it_loaded(env, monkeypatch):
    """A teacher trained here draws its gallery from its whole data set; its dark-knowledge matrix then takes
    that data set's test split rather than decoding the test split again (``resources.teacher_test_outputs``)."""
    import resources

    def no_second_read(*args, **kwargs):
        raise AssertionError("the test split was read again")

    for cached in (resources.teacher_test_outputs, resources.test_split):
        cached.clear()
    monkeypatch.setattr(resources.datasets, "load_test", no_second_read)
    try:
        out = resources.teacher_test_outputs(env["teacher"])
    finally:
        resources.teacher_test_outputs.clear()
    test = resources.dataset("digits").test
    assert out["labels"] is test.labels and out["source"] == f"all {len(test):,} test images"
    assert out["logits"].shape == (len(test), 10)


def test_sessions_share_the_slider_work(env, monkeypatch):
    """A classroom moving the same slider: the second session's charts at a temperature are the
    first session's, not built again (the server does each piece of work once); and after a first
    visit every other temperature of that image is built in the background, so a move builds nothing."""
    from kdviz.probes import softening as probes

    import common
    import figures

    built = {"bars": 0, "scale": 0}
    real_bars, real_scale = figures.softmax_bars, probes.kd_gradient_scale

    def bars(*args, **kwargs):
        built["bars"] += 1
        return real_bars(*args, **kwargs)

    def scale(*args, **kwargs):
        built["scale"] += 1
        return real_scale(*args, **kwargs)

    monkeypatch.setattr(figures, "softmax_bars", bars)
    monkeypatch.setattr(probes, "kd_gradient_scale", scale)
    first = ok(page("temperature", T="3"))
    common.wait_for_prebuilds()  # the background builds of the other temperatures
    after_first = dict(built)
    second = ok(page("temperature", T="3"))
    assert built == after_first  # nothing rebuilt for the second session
    assert np.array_equal(bar_probs(first), bar_probs(second))
    ok(second.select_slider(key="T").set_value(0.7).run())  # a temperature no session has shown
    assert built == after_first  # built in the background after the first visit
    assert "T = 0.7" in json.dumps(chart(second, "bars")["layout"]["annotations"])
    ok(page("temperature", T="0.7"))
    assert built == after_first



def test_compare_shows_the_reference_results_before_any_run_and_reruns_a_row(env, tmp_path, monkeypatch):
    """A fresh server with no runs: the shipped reference tables (ours | paper | budget | command)
    are there at once; Re-run queues the row's seeds as a sweep whose runs are ordinary records."""
    from kdviz import reference

    shutil.rmtree(env["runs"])
    at = ok(page("compare"))
    assert any("Reference results" in h.value for h in at.subheader)
    shipped = reference.tables()
    frames = [f.value for f in at.dataframe]
    first = frames[0]
    assert list(first.columns[:5]) == ["row", "ours (mean ± std, %)", "paper", "budget", "command"]
    assert list(first["row"]) == [r.label for r in shipped[0].rows]
    every_row = [label for f in frames for label in f["row"]]
    assert "kd (T=4, α=0.9)" in every_row and any("Xu et al." in label for label in every_row)
    assert any("No finished runs" in i.value for i in at.info)

    # a small table of our own, re-run from the page
    from kdviz.experiment import RunConfig
    from kdviz.train import TrainSettings

    config = RunConfig("digits", "mlp-30", train=TrainSettings(epochs=1, batch_size=64, device="cpu"),
                       save_model=False).to_dict()
    reference.write_table({"key": "00-tiny", "title": "Tiny", "budget": "1 epoch", "rows": [
        {"label": "labels only", "config": config, "seeds": [0, 1], "command": reference.command_for(config),
         "runs": [], "paper": None}]}, tmp_path / "reference")
    monkeypatch.setenv("KDVIZ_REFERENCE", str(tmp_path / "reference"))
    at = ok(page("compare"))
    ok(at.button(key="ref_run_00-tiny").click().run())
    queue = at.session_state["compare_sweep"]
    assert [(r.config.method, r.config.train.seed) for r in queue.runs] == [("baseline", 0), ("baseline", 1)]
    queue.join(300)
    assert queue.done and all(r["test_acc"] > 0.5 for r in queue.records)
