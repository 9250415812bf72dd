"""The papers' experiments (kdviz.experiments): the bias correction's math, settings and presets,
resuming a list of runs, result files, and tiny real runs through the command line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from kdviz import cli, data, experiments
from kdviz.experiment import RunConfig
from kdviz.train import TrainSettings

from conftest import APP


def kdviz(capsys, *argv):
    try:
        code = cli.main(list(argv))
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- bias correction
def test_bias_curve_raises_the_missing_class_monotonically():
    torch.manual_seed(0)
    labels = torch.randint(0, 10, (500,))
    logits = torch.randn(500, 10) + 4 * torch.nn.functional.one_hot(labels, 10)
    logits[:, 3] -= 5  # a student that never saw a 3 keeps its bias low
    curve = experiments.bias_curve(logits, labels, 3, [0, 1, 2, 5, 10, 100])
    class_acc = curve["class_acc"]
    assert class_acc == sorted(class_acc)  # raising the bias can only turn more 3s right
    assert class_acc[-1] == 1.0
    assert curve["overall_acc"][-1] == pytest.approx((labels == 3).float().mean().item())  # everything is a 3
    assert class_acc[0] < 0.5 < max(curve["overall_acc"])
    best = experiments.best_bias(curve)
    assert best in (2, 5) and curve["overall_acc"][curve["bias"].index(best)] == max(curve["overall_acc"])


def test_holdout_is_the_same_slice_for_every_run_and_never_in_the_transfer_set():
    splits = data.load("digits")
    rest, held = data.holdout_split(splits.train, 100)
    assert len(rest) + len(held) == len(splits.train) and len(held) == 100
    again = data.holdout_split(splits.train, 100)[1]
    assert torch.equal(held.pixels, again.pixels)
    transfer = data.transfer_set(splits.train, 0.5, (3,), seed=7, holdout=100)
    rows = {bytes(p.numpy().tobytes()) for p in held.pixels}
    assert not any(bytes(p.numpy().tobytes()) in rows for p in transfer.pixels)
    assert 3 not in transfer.labels.tolist()
    with pytest.raises(ValueError, match="holdout"):
        data.holdout_split(splits.train, len(splits.train))


# --------------------------------------------------------------------------- settings and results
def test_settings_overrides_are_typed_and_checked():
    s = experiments.settings_for("missing-class", "quick", {"missing": "5", "seeds": "0,1", "T": "8"})
    assert (s.missing, s.seeds, s.T) == (5, (0, 1), 8.0)
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        experiments.settings_for("nope")
    with pytest.raises(ValueError, match="no setting 'colour'"):
        experiments.settings_for("no-labels", "quick", {"colour": "red"})
    with pytest.raises(ValueError, match="unknown preset"):
        experiments.settings_for("no-labels", "huge")
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        experiments.settings_for("temperature", "quick", {"epochs": "0"})
    with pytest.raises(ValueError, match="needs a value like"):
        experiments.settings_for("temperature", "quick", {"lr": "fast"})


def test_every_experiment_has_a_quick_and_a_full_preset():
    for name, entry in experiments.EXPERIMENTS.items():
        assert {"quick", "full"} <= set(entry.presets), name
        assert all(p in ("quick", "full") or p.startswith("full-") for p in entry.presets), name
        for preset in entry.presets:
            experiments.settings_for(name, preset)  # valid as shipped
        assert experiments.shipped_presets(name)[0] == "full"


def test_little_data_ships_cifar10_beside_mnist_with_augmentation():
    assert experiments.shipped_presets("little-data") == ["full", "full-cifar10"]
    assert experiments.result_name("little-data", "full-cifar10") == "little-data-cifar10"
    assert experiments.result_name("little-data", "full") == "little-data"
    cifar = experiments.settings_for("little-data", "full-cifar10")
    assert (cifar.dataset, cifar.teacher, cifar.student) == ("cifar10", "cifar10-resnet20", "cnn5")
    assert 0.05 in cifar.fractions and cifar.train(0).augment  # random crop + flip reach the training loop
    assert not experiments.settings_for("little-data", "full").train(0).augment
    assert experiments.settings_for("little-data", "quick", {"augment": "yes"}).train(3).augment


def test_a_variant_preset_is_refused_where_the_experiment_has_none(capsys):
    code, out, err = kdviz(capsys, "experiment", "no-labels", "--preset", "full-cifar10")
    assert code == 2 and "unknown preset 'full-cifar10'" in err and "Traceback" not in err


def test_images_survive_the_json_round_trip():
    pixels = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    encoded = json.loads(json.dumps(experiments.encode_images(pixels)))
    assert (experiments.decode_images(encoded) == pixels.numpy()).all()


def test_result_files_round_trip_without_checkpoint_paths(tmp_path):
    result = experiments.ExperimentResult("no-labels", "quick", {"epochs": 1}, {"table": []},
                                          [{"id": "r1", "test_acc": 0.9, "checkpoint": "/somewhere/model.pt"}])
    experiments.save_result(result, tmp_path / "no-labels.json")
    back = experiments.load_result("no-labels", tmp_path)
    assert back.records == [{"id": "r1", "test_acc": 0.9}] and back.preset == "quick"
    with pytest.raises(FileNotFoundError, match="no result file for experiment 'missing-class'"):
        experiments.load_result("missing-class", tmp_path)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable experiment result"):
        experiments.load_result("broken", tmp_path)


def test_cost_note_adds_up_the_runs_and_says_when_the_command_reused_them():
    runs = [{"id": "a", "wall_time_s": 240.0}, {"id": "b", "wall_time_s": 360.0}]
    fresh = experiments.ExperimentResult("x", "full", {}, {}, runs, elapsed_s=610.0)
    assert experiments.cost_note(fresh) == "2 runs, 10 min of training"
    reused = experiments.ExperimentResult("x", "full", {}, {}, runs, elapsed_s=120.0)
    assert experiments.cost_note(reused).endswith("(this command 2 min: it reused runs finished by an earlier one)")
    dreamed = experiments.ExperimentResult("x", "full", {}, {}, runs[:1], elapsed_s=3000.0)
    assert experiments.cost_note(dreamed) == "1 run, 4 min of training, 50 min in all"


# --------------------------------------------------------------------------- running
def test_run_configs_resumes_finished_runs(tmp_path):
    config = RunConfig(dataset="digits", student="mlp-30", train=TrainSettings(epochs=1, device="cpu"), save_model=False)
    seen = []
    first = experiments.run_configs([config], tmp_path, on_event=seen.append)
    assert not any(e.reused for e in seen)
    seen.clear()
    second = experiments.run_configs([config, RunConfig(**{**config.__dict__, "fraction": 0.5})], tmp_path,
                                     on_event=seen.append)
    assert second[0]["id"] == first[0]["id"]  # not trained again
    assert [e.reused for e in seen if e.reused or e.index == 1][:1] == [True]
    assert second[1]["id"] != first[0]["id"] and second[1]["config"]["fraction"] == 0.5


def test_missing_class_through_the_command_line(capsys, tmp_path):
    sets = ("dataset=digits", "teacher=digits-cnn", "student=mlp-30", "epochs=10", "holdout=200", "bias_step=0.5")
    code, out, err = kdviz(capsys, "experiment", "missing-class", *(a for s in sets for a in ("--set", s)),
                           "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "mc.json"), "--json", "--quiet")
    assert code == 0, err
    summary = json.loads(out)["summary"]
    rows = {row["student"]: row for row in summary["table"]}
    assert rows["labels only"]["missing_acc"]["mean"] == 0.0  # it never saw a 3, and never says 3
    assert rows["KD + bias"]["missing_acc"]["mean"] >= rows["KD"]["missing_acc"]["mean"]
    assert rows["KD + bias"]["missing_acc"]["mean"] > 0.5  # the teacher's soft targets taught it what a 3 is
    assert summary["validation_images"] == 200 and summary["bias"]["mean"] > 0
    saved = experiments.load_result("mc", tmp_path)
    assert saved.extras["gallery"]["of"] == summary["missing_test_images"]
    assert all("checkpoint" not in r for r in saved.records) and saved.command.startswith("kdviz experiment")
    assert len(saved.records) == 2 and all(r["config"]["omit_classes"] == [3] for r in saved.records)


@pytest.mark.parametrize("argv,message", [
    (["experiment", "nope"], "unknown experiment 'nope'"),
    (["experiment", "missing-class", "--set", "missing=12"], "missing class must be in 0..9"),
    (["experiment", "missing-class", "--set", "holdout=3"], "holdout must be >= 100"),
    (["experiment", "no-labels", "--set", "lr"], "--set needs NAME=VALUE"),
    (["experiment", "no-labels", "--preset", "huge"], "invalid choice: 'huge'"),
    (["experiment", "temperature", "--set", "temperatures=0,1"], "temperatures must be > 0"),
])
def test_experiment_bad_input_is_one_line(capsys, argv, message):
    code, out, err = kdviz(capsys, *argv)
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_the_test_split_alone_never_needs_the_training_files(tmp_path, monkeypatch):
    from tests.conftest import DATA

    only_test = tmp_path / "data" / "MNIST" / "raw"
    only_test.mkdir(parents=True)
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        source = next(p for p in (DATA / "MNIST" / "raw").iterdir() if p.name.startswith(stem))
        (only_test / source.name).symlink_to(source.resolve())
    monkeypatch.setenv("KDVIZ_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(data, "_MEMORY", {})
    with pytest.raises(data.DataError):
        data.load("mnist")  # the training files really are not there
    test = data.load_test("mnist", (0.1307,), (0.3081,))
    assert test.split == "test" and test.mean == (0.1307,) and len(test) == len(test.labels) > 0


def test_data_free_dreams_distils_and_scores_without_the_training_split(capsys, tmp_path, monkeypatch):
    """Loading any named data set whole is refused: only the teacher, its card and the test split
    alone may be read, and the dreamed folder."""
    real_load = data.load

    def only_folders(name):
        if name in data.DATASETS:
            raise AssertionError(f"the data-free experiment loaded {name!r} with its training split")
        return real_load(name)

    monkeypatch.setattr(data, "load", only_folders)
    sets = ("dataset=digits", "teacher=digits-cnn", "per_class=5", "dream_steps=80", "dream_batch=50", "jitter=1", "epochs=10",
            "gallery=2", "batch_size=16")
    code, out, err = kdviz(capsys, "experiment", "data-free", *(a for s in sets for a in ("--set", s)),
                           "--runs-dir", str(tmp_path / "runs"), "--json", "--quiet")
    assert code == 0, err
    summary, first_ids = json.loads(out)["summary"], json.loads(out)["run_ids"]
    assert summary["dreamed_images"] == 50
    assert summary["teacher_agrees_on_dreams"] > 0.7  # each dreamed image is the class it was dreamed as
    assert summary["student_acc"]["mean"] > 0.2  # above chance (10%) on real test digits it never saw
    assert len(json.loads(out)["run_ids"]) == 1
    assert summary["dreams_reused"] is False and summary["dream_seconds"] > 0
    # a second command with more seeds dreams nothing again, and still says how long the dreaming took
    code, out, err = kdviz(capsys, "experiment", "data-free", *(a for s in sets for a in ("--set", s)),
                           "--set", "seeds=0,1", "--runs-dir", str(tmp_path / "runs"), "--json", "--quiet")
    assert code == 0, err
    again = json.loads(out)
    assert again["summary"]["dreams_reused"] is True
    assert again["summary"]["dream_seconds"] == summary["dream_seconds"]
    assert again["run_ids"][0] == first_ids[0] and len(again["run_ids"]) == 2
    assert again["summary"]["student_acc"]["values"][0] == summary["student_acc"]["values"][0]  # seed 0 reused


# --------------------------------------------------------------------------- live, and the page
def test_live_experiment_runs_in_a_thread_and_reports_progress(tmp_path):
    job = experiments.LiveExperiment("no-labels", "quick", {"dataset": "digits", "teacher": "digits-cnn",
                                                            "student": "mlp-30", "epochs": "2"}, tmp_path)
    seen = []
    job.start()
    while not job.done:
        seen.append(job.snapshot())
        job.join(0.05)
    final = job.snapshot()
    assert final["state"] == "finished", final["error"]
    assert final["runs"] == 2 and len(final["result"].records) == 2 and final["elapsed"] > 0
    # every step of the last run reached the reader (polling alone can miss a run this short on a quiet machine)
    assert final["step"] == final["steps"] > 0
    assert all(s["step"] <= s["steps"] or s["steps"] == 0 for s in seen)
    with pytest.raises(ValueError, match="no setting"):
        experiments.LiveExperiment("no-labels", "quick", {"nope": "1"})


def _page(results_dir, monkeypatch, **query):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("KDVIZ_RESULTS", str(results_dir))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app" / "views" / "experiments.py"),
                           default_timeout=60)
    for key, value in {"exp": "all", **query}.items():  # every experiment, unless the test picks one
        if value is not None:
            at.query_params[key] = value
    return at.run()


def _expected_results() -> dict[str, tuple[str, str]]:
    """Every shipped preset's result file stem -> (experiment, preset)."""
    return {experiments.result_name(name, preset): (name, preset)
            for name in experiments.EXPERIMENTS for preset in experiments.shipped_presets(name)}


def test_page_shows_every_shipped_result_without_training(monkeypatch):
    expected = _expected_results()
    shipped = {p.stem for p in experiments.results_dir().glob("*.json")}
    assert shipped <= set(expected), "a result file the page would never show"
    at = _page(experiments.results_dir(), monkeypatch)
    assert not at.exception and not at.error
    assert [h.value for h in at.header] == [e.title for e in experiments.EXPERIMENTS.values()]
    assert len(at.info) == len(expected) - len(shipped)  # "not shipped" only where it is not
    text = " ".join(c.value for c in at.caption)
    for name in shipped:
        result = experiments.load_result(name)
        assert result.command in text and result.machine in text
        assert result.preset == expected[name][1]
    if "missing-class" in shipped:
        result = experiments.load_result("missing-class")
        kd_bias = next(r for r in result.summary["table"] if r["student"] == "KD + bias")
        assert any(m.label.endswith("KD + bias") and m.value.startswith(f"{100 * kd_bias['missing_acc']['mean']:.2f}")
                   for m in at.metric)


def test_page_without_results_says_how_to_make_them(tmp_path, monkeypatch):
    at = _page(tmp_path, monkeypatch, mc_bias="banana")
    assert not at.exception
    assert len(at.info) == len(_expected_results())
    assert all("--preset full" in i.value for i in at.info)
    assert any("--preset full-cifar10 --out results/experiments/little-data-cifar10.json" in i.value for i in at.info)


def test_page_runs_a_quick_preset_live_to_the_end(tmp_path, monkeypatch):
    """The page's button starts the quick preset in a worker thread and shows its result and time
    (the preset made tiny here: digits, a 30-unit MLP)."""
    import time

    tiny = experiments.NoLabelsSettings(dataset="digits", teacher="digits-cnn", student="mlp-30", epochs=2)
    monkeypatch.setitem(experiments.EXPERIMENTS["no-labels"].presets, "quick", tiny)
    monkeypatch.setenv("KDVIZ_RUNS", str(tmp_path / "runs"))
    at = _page(tmp_path / "no-results", monkeypatch)
    start = next(b for b in at.button if b.key == "start_no-labels")
    at = start.click().run()
    deadline = time.time() + 240
    while time.time() < deadline and not any("Quick preset finished" in s.value for s in at.success):
        assert not at.exception and not any("failed" in e.value for e in at.error)
        time.sleep(1)
        at = at.run()
    done = next(s.value for s in at.success if "Quick preset finished" in s.value)
    assert "2 runs" in done and " s on " in done
    assert any(m.label == "teacher's outputs only, no label" for m in at.metric)


def test_fast_optimisation_also_trains_both_students_on_a_third_of_the_budget(tmp_path):
    """Yim et al. compared an FSP student trained for a third of the iterations with a scratch student
    trained for all of them: the experiment trains both again with their own short schedule."""
    result = experiments.run("fast-optimisation", "quick", {"dataset": "digits", "teacher": "digits-cnn", "epochs": "3",
                                                            "fraction": "1.0"}, runs_dir=tmp_path)
    s = result.summary
    assert len(result.records) == 4 and s["third"]["epochs"] == 1
    full, short = result.records[:2], result.records[2:]
    assert [r["config"]["train"]["epochs"] for r in full] == [3, 3]
    assert [r["config"]["train"]["epochs"] for r in short] == [1, 1]
    assert [r["method"] for r in short] == ["baseline", "fsp"]
    assert any(h["phase"] == "fsp" for h in short[1]["history"])  # the FSP stage runs before the short label run too
    assert [h["epoch"] for h in short[0]["history"] if h["phase"] == "train"] == [1]
    assert s["third"]["fsp"]["values"] == [short[1]["test_acc"]]
    assert s["third"]["fsp_matches_full_scratch"] == (short[1]["test_acc"] >= s["target_acc"])
    assert len(s["scratch"]["acc"]) == 3 and s["target_acc"] == full[0]["history"][-1]["test_acc"]


def test_page_shows_the_posters_cifar10_figures_beside_ours(monkeypatch):
    """Little data is shipped for MNIST and CIFAR-10; the CIFAR-10 section puts the poster's 5% figures
    (5-layer CNN: 65.86% -> 66.71% with KD) beside the shipped result's own 5% numbers."""
    result = experiments.load_result("little-data-cifar10")
    assert result.settings["dataset"] == "cifar10" and result.settings["augment"]
    at5 = next(row for row in result.summary["table"] if row["fraction"] == 0.05)
    at = _page(experiments.results_dir(), monkeypatch)
    assert not at.exception and not at.error
    assert [s.value for s in at.subheader][:2] == ["mnist", "cifar10"]
    metrics = {m.label: m for m in at.metric}
    assert metrics["the poster at 5% (5-layer CNN)"].value == "65.86% → 66.71%"
    assert metrics["cifar10 at 5%: labels only"].value == f"{100 * at5['labels_only']['mean']:.2f}%"
    assert metrics["cifar10 at 5%: KD"].value == f"{100 * at5['kd']['mean']:.2f}%"
    assert "mnist at 5%: KD" in metrics  # both data sets, one above the other
    assert len([t for t in at.toggle if t.label == "Fraction on a log scale"]) == 1  # one toggle for both charts


def test_changes_from_first_pairs_each_seed_with_generation_0():
    ex = experiments
    table = [{"member": "generation 0", "acc": ex.stats([0.950, 0.960])},
             {"member": "generation 1", "acc": ex.stats([0.952, 0.959])},
             {"member": "ensemble of 2", "acc": ex.stats([0.955, 0.965])}]
    changes = ex.changes_from_first(table)
    assert [c["member"] for c in changes] == ["generation 1", "ensemble of 2"]
    assert changes[0]["values"] == pytest.approx([0.2, -0.1]) and changes[0]["mean"] == pytest.approx(0.05)
    # the same +0.5 on both seeds: no spread, although the seeds' accuracies differ by a point
    assert changes[1]["mean"] == pytest.approx(0.5) and changes[1]["std"] == pytest.approx(0.0, abs=1e-9)


def test_the_experiments_page_shows_every_shipped_result_without_training(tmp_path, monkeypatch):
    """Issue 11: a fresh server (no runs) draws every full result shipped in results/experiments at
    first visit: one "Shipped result" line per file, charts for each, and no "no full result" notice."""
    monkeypatch.setenv("KDVIZ_RUNS", str(tmp_path / "runs"))
    files = sorted((Path(__file__).resolve().parent.parent / "results" / "experiments").glob("*.json"))
    assert len(files) >= len(experiments.EXPERIMENTS)  # every experiment has at least one
    at = AppTest.from_file(str(APP / "views" / "experiments.py"), default_timeout=120)
    at.query_params["exp"] = "all"
    at = at.run()
    assert not at.exception, [e.message for e in at.exception]
    shipped = [c.value for c in at.caption if c.value.startswith("Shipped result")]
    assert len(shipped) == len(files)
    assert not [i.value for i in at.info if "No full result is shipped" in i.value]
    assert [h.value for h in at.header] == [e.title for e in experiments.EXPERIMENTS.values()]
    assert len(at.get("plotly_chart")) >= len(experiments.EXPERIMENTS)
    assert not list(tmp_path.glob("runs/*"))  # nothing trained


def test_the_page_shows_one_experiment_at_a_time_chosen_in_the_link(monkeypatch):
    """By default only the first experiment is drawn (its charts arrive at once on a projector); the link's
    ``exp`` picks another, ``all`` lists every one, and a name that is no experiment is refused with a warning."""
    names = list(experiments.EXPERIMENTS)
    first = _page(experiments.results_dir(), monkeypatch, exp=None)
    assert not first.exception
    assert [h.value for h in first.header] == [experiments.EXPERIMENTS[names[0]].title]
    picked = _page(experiments.results_dir(), monkeypatch, exp=names[1])
    assert [h.value for h in picked.header] == [experiments.EXPERIMENTS[names[1]].title]
    assert picked.query_params["exp"] == names[1]
    bad = _page(experiments.results_dir(), monkeypatch, exp="banana")
    assert [h.value for h in bad.header] == [experiments.EXPERIMENTS[names[0]].title]
    assert any("exp='banana'" in w.value for w in bad.warning)
