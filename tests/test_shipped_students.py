"""The students shipped in pretrained/students/ for the "inside the networks" pages.

Their cards verify (sha256 of every file, today's recipe, today's teacher), each loads into its
page's architecture and scores its card's accuracy on the first test images (when that data set is
here), ``kdviz pretrained make-students`` makes and then skips them, and every inside page shows
teacher, labels-only student and method student on a fresh runs folder without any training.
"""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from streamlit.testing.v1 import AppTest

from kdviz import cli, data, presets, pretrained, recipes
from kdviz.evaluation import evaluate
from kdviz.experiment import Experiment, RunConfig
from kdviz.students import available, load_method, load_soft_targets, load_student, shipped_name
from kdviz.train import TrainSettings

import resources
from conftest import APP, REAL_MNIST

STUDENTS = list(recipes.STUDENT_RECIPES)
TIMEOUT = 180


def _page_method(name: str) -> str:
    """The page method a shipped student serves (a baseline: the method of its pair)."""
    r = recipes.STUDENT_RECIPES[name]
    if r.config.method != "baseline":
        return r.config.method
    return next(m for m, b in recipes.STUDENT_BUDGETS[r.dataset].items() if b.student == r.config.student)


# --------------------------------------------------------------------------- the shipped files
def test_every_student_recipe_is_shipped_and_pretrained_stays_small():
    assert set(pretrained.student_names()) == set(STUDENTS)
    assert not set(pretrained.names()) & set(STUDENTS)  # students are never offered as teachers
    total = sum(p.stat().st_size for p in pretrained.pretrained_dir().rglob("*") if p.is_file())
    # teachers and students together (54 MB since the 11 MB WRN-16-4 teacher); with results/ (3 MB)
    # well under the project's 100 MB for shipped files
    assert total < 60 * 2**20


@pytest.mark.parametrize("name", STUDENTS)
def test_student_card_verifies_against_its_files_recipe_and_teacher(name):
    info = pretrained.student_card(name)
    r = recipes.STUDENT_RECIPES[name]
    assert recipes.student_is_current(name)  # every sha256, the recipe's config and the teacher's sha256
    assert info["sha256"] == pretrained.file_sha256(pretrained.weights_path(name, pretrained.students_dir()))
    assert info["teacher_sha256"] == pretrained.card(info["teacher"])["sha256"]
    assert info["command"] == f"kdviz pretrained make {name}"
    assert info["command_all"] == f"kdviz pretrained make-students {r.dataset}"
    assert (info["dataset"], info["model"], info["method"], info["seed"]) == (
        r.dataset, r.config.student, r.config.method, r.config.train.seed)
    assert info["torch_threads"] == 1 and "cores" in info["machine"] and info["created"]
    # the architecture is the page's own student, beside the page's own teacher
    preset = presets.PRESETS[r.dataset]
    assert info["model"] == preset.student_for(_page_method(name)) and info["teacher"] == preset.teacher
    assert info["distilled"] == (info["method"] != "baseline")
    assert sum(map(sum, info["confusion"])) == info["test_size"]
    assert sum(info["confusion"][i][i] for i in range(len(info["confusion"]))) == round(info["test_acc"] * info["test_size"])


@pytest.mark.parametrize("name", STUDENTS)
def test_student_loads_into_its_architecture_and_scores_its_card_accuracy(name, request):
    info = pretrained.student_card(name)
    student = pretrained.load_student(name)
    assert student.spec.to_dict() == info["spec"] and student.spec.name == info["model"]
    if info["dataset"] == "cifar10":
        test = request.getfixturevalue("cifar10").test
    elif not REAL_MNIST:
        pytest.skip("real MNIST not available (tests use made-up digits)")
    else:
        test = data.load(info["dataset"]).test
    n = info["slice_acc"]["images"]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        measured = evaluate(student, test.subset(torch.arange(n)), device="cpu", precision="fp32")["accuracy"]
    finally:
        torch.set_num_threads(before)
    assert abs(measured - info["slice_acc"]["accuracy"]) <= 2 / n  # at most two images apart (another CPU's rounding)
    assert info["test_acc"] >= {"mnist": 0.97, "cifar10": 0.35}[info["dataset"]]


def test_shipped_method_modules_and_recordings_load():
    ft = next(n for n in STUDENTS if recipes.STUDENT_RECIPES[n].config.method == "ft")
    record = {"id": f"shipped:{ft}", "method": "ft", "method_params": pretrained.student_card(ft)["method_params"]}
    teacher = pretrained.load(pretrained.student_card(ft)["teacher"])
    method = load_method(record, load_student(record), teacher)
    assert method is not None and sum(p.numel() for p in method.paraphraser.parameters()) > 0
    kd_pair = [n for n in STUDENTS if recipes.STUDENT_RECIPES[n].record_soft_targets]
    assert len(kd_pair) == 2
    recorded = [load_soft_targets({"id": f"shipped:{n}"}) for n in kd_pair]
    assert recorded[0]["index"] == recorded[1]["index"]
    epochs = recipes.STUDENT_RECIPES[kd_pair[0]].config.train.epochs
    assert all(len(r["frames"]) >= 2 * epochs + 1 and r["frames"][-1]["epoch"] == epochs for r in recorded)


def test_a_changed_student_file_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "pretrained"
    shutil.copytree(pretrained.pretrained_dir(), folder)
    monkeypatch.setenv("KDVIZ_PRETRAINED", str(folder))
    name = STUDENTS[0]
    pretrained.load_student(name)
    path = pretrained.weights_path(name, pretrained.students_dir())
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(pretrained.PretrainedError, match=f"{name}.pt"):
        pretrained.load_student(name)
    assert not recipes.student_is_current(name)


def test_cli_lists_the_students_in_their_own_section(capsys):
    assert cli.main(["pretrained", "list"]) == 0
    out = capsys.readouterr().out
    teachers, _, students = out.partition("\nstudents (")
    assert "mnist-cnn " in teachers and not any(n in teachers for n in STUDENTS)
    for name in STUDENTS:
        assert name in students and f"{100 * pretrained.student_card(name)['test_acc']:.2f}%" in students


def test_cli_make_students_refuses_an_unknown_data_set(capsys):
    assert cli.main(["pretrained", "make-students", "no-such"]) == 2
    assert "mnist" in capsys.readouterr().err


# --------------------------------------------------------------------------- making them
def test_make_students_writes_verified_cards_then_skips_them(tmp_path, monkeypatch):
    """Two tiny students on scikit-learn's digits (always here) from the shipped digits teacher."""
    tiny = {f"tiny-digits-{m}": recipes.StudentRecipe(
        RunConfig("digits", "cnn5-small", m, teacher=None if m == "baseline" else "digits-cnn", fraction=0.5,
                  train=TrainSettings(epochs=1, batch_size=64, seed=1, device="cpu", precision="fp32")),
        "digits-cnn", "tiny", record_soft_targets=True) for m in ("baseline", "ft")}
    monkeypatch.setattr(recipes, "STUDENT_RECIPES", tiny)
    out = tmp_path / "made"
    seen = []
    cards = recipes.make_students(["digits"], out, on_student=lambda name, made: seen.append((name, made)))
    assert seen == [("tiny-digits-baseline", True), ("tiny-digits-ft", True)]
    folder = pretrained.students_dir(out)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["tiny-digits-baseline.json", "tiny-digits-baseline.pt", "tiny-digits-baseline.soft_targets.json",
         "tiny-digits-ft.json", "tiny-digits-ft.pt", "tiny-digits-ft.method.pt", "tiny-digits-ft.soft_targets.json"])
    for info in cards:
        assert json.loads(pretrained.card_path(info["name"], folder).read_text()) == info
        assert not pretrained.card_problems(info, pretrained.STUDENT_FIELDS)
        assert recipes.student_is_current(info["name"], out)
    # the second call makes nothing; a changed file makes that student again
    seen.clear()
    assert recipes.make_students(["digits"], out, on_student=lambda name, made: seen.append((name, made))) == []
    assert seen == [("tiny-digits-baseline", False), ("tiny-digits-ft", False)]
    (folder / "tiny-digits-ft.method.pt").write_bytes(b"changed")
    again = recipes.make_students(["digits"], out)
    assert [c["name"] for c in again] == ["tiny-digits-ft"]
    assert again[0]["sha256"] == cards[1]["sha256"]  # the same weights: seeded, one thread


# --------------------------------------------------------------------------- the pages at first visit
PAGES = {  # page: (method, the check that all three networks are drawn)
    "attention": ("at", lambda figs: len([t for t in figs[0]["data"] if t["type"] == "heatmap"]) == 9),
    "fsp": ("fsp", lambda figs: len([t for t in figs[0]["data"] if t["type"] == "heatmap"]) == 3),
    "factors": ("ft", lambda figs: [a["text"] for a in figs[0]["layout"]["annotations"]] == [
        "teacher factor (paraphraser)", "FT student factor (translator)",
        "baseline: penultimate features", "FT student: penultimate features"]),
    "relations": ("rkd", lambda figs: len([t for t in figs[0]["data"] if t["type"] == "heatmap"]) == 3),
    "confusion": ("kd", lambda figs: len([t for t in figs[0]["data"] if t["type"] == "heatmap"]) == 3),
    "soft_targets": ("kd", lambda figs: [t["name"] for t in figs[1]["data"] if t["type"] == "bar"] == [
        "baseline", "KD student"]),
}


@pytest.fixture
def fresh_server(tmp_path, monkeypatch):
    """The shipped pretrained/ folder, an empty runs folder, the app's data-set cache emptied."""
    monkeypatch.delenv("KDVIZ_PRETRAINED", raising=False)
    monkeypatch.setenv("KDVIZ_RUNS", str(tmp_path / "runs"))
    resources.dataset.clear()
    yield tmp_path / "runs"
    resources.dataset.clear()


def _run(page: str, **params) -> AppTest:
    at = AppTest.from_file(str(APP / "views" / f"{page}.py"), default_timeout=TIMEOUT)
    for key, value in params.items():
        at.query_params[key] = str(value)
    return at.run()


def _figures(at: AppTest) -> list[dict]:
    assert not at.exception, [e.message for e in at.exception]
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


@pytest.mark.parametrize("page", list(PAGES))
def test_every_inside_page_shows_three_networks_on_a_fresh_server(fresh_server, page):
    method, three_networks = PAGES[page]
    at = _run(page, n=20) if page == "factors" else _run(page)
    figs = _figures(at)
    assert three_networks(figs)
    assert not any("Until both students exist" in i.value for i in at.info)
    assert at.selectbox(key=f"{page}_base").value.startswith("shipped:")
    assert at.selectbox(key=f"{page}_run").value.startswith("shipped:")
    note = next(c.value for c in at.caption if c.value.startswith("Shown: the shipped students"))
    for key in (f"{page}_base", f"{page}_run"):
        info = pretrained.student_card(shipped_name(at.selectbox(key=key).value))
        assert f"{100 * info['test_acc']:.2f}%" in note and info["budget"] in note
    assert at.button(key=f"{page}_train").label == "Train the students now"  # still there, for your own


@pytest.mark.skipif(not REAL_MNIST, reason="the Relations page's batch is drawn from the real MNIST test split")
def test_after_the_warm_up_the_inside_pages_first_views_run_no_network(fresh_server, monkeypatch):
    """The server's warm-up (app/warmup.py) computes the default views of the Attention, FSP, Relations and
    Confusion pages through their own cached functions, so their first visit then needs no forward pass
    (every one made to fail here) and still shows all three networks."""
    import inside_common
    import inside_models

    cached = (inside_common.attention, inside_common.at_summary, inside_common.fsp, inside_common.relations,
              inside_models.embeddings, inside_models.teacher_confusion)

    def fail(*args, **kwargs):
        raise AssertionError("a network ran at the first visit after the warm-up")

    for function in cached:
        function.clear()
    try:
        inside_common.warm_default_views()
        monkeypatch.setattr(torch.nn.Module, "__call__", fail)
        for page in ("attention", "fsp", "relations", "confusion"):
            assert PAGES[page][1](_figures(_run(page))), page
    finally:
        for function in cached:
            function.clear()


def test_students_trained_here_come_before_the_shipped_ones(fresh_server):
    """A run trained here (a few AT steps) is the page's first choice; the shipped baseline stays."""
    preset = presets.PRESETS["mnist"]
    student = preset.student_for("at")
    config = RunConfig("mnist", student, "at", teacher=preset.teacher, fraction=0.005,
                       train=TrainSettings(epochs=1, seed=3, device="cpu"))
    own = Experiment(config, runs_dir=fresh_server).run()
    choices = available("mnist", student, "at", preset.teacher, fresh_server)
    assert [r["id"] for r in choices][0] == own["id"] and shipped_name(choices[-1]) is not None
    at = _run("attention")
    _figures(at)
    assert at.selectbox(key="attention_run").value == own["id"]
    assert at.selectbox(key="attention_base").value.startswith("shipped:")
    assert [r["id"] for r in available("mnist", student, "baseline", preset.teacher, fresh_server)] == [
        f"shipped:{recipes.student_name('mnist', student, 'baseline')}"]


def test_a_setting_added_to_run_config_later_keeps_a_card_current_only_at_its_default():
    """A card written before RunConfig had ``data_seed`` still matches a recipe that keeps it at None
    (nothing changed), but not one that sets it, nor one whose other settings differ."""
    from dataclasses import replace

    from kdviz.recipes import STUDENT_RECIPES, _same_config

    config = next(iter(STUDENT_RECIPES.values())).config
    written = json.loads(json.dumps(config.to_dict()))
    del written["data_seed"]
    assert _same_config(written, config)
    assert not _same_config(written, replace(config, data_seed=3))
    assert not _same_config(written | {"fraction": 0.123}, config)
