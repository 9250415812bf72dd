"""The papers' experiments (kdviz.experiments): the bias correction's math, settings and presets,
resuming a list of runs, result files, and tiny real runs through the command line."""
from __future__ import annotations

import json

import pytest
import torch

from kdviz import cli, data, experiments
from kdviz.experiment import RunConfig
from kdviz.train import TrainSettings


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
        assert set(entry.presets) == {"quick", "full"}, name
        for preset in ("quick", "full"):
            experiments.settings_for(name, preset)  # valid as shipped


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
