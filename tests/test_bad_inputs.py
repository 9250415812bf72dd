"""Bad input a careless or hostile user might give, each answered with one clear line before any
training (CLI: exit code 2), never a traceback, a silent degenerate run or code run from a file.

Every case here once trained, crashed or ran on regardless (a red-team pass over issue 14); the
training loop is replaced by a failing stand-in, so a case that gets past validation fails the test
at once instead of training."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kdviz import data, experiment, models, runs
from kdviz.data import DataError
from kdviz.experiment import Experiment, RunConfig
from kdviz.models import build_model
from kdviz.train import TrainSettings

from conftest import REPO, kdviz, write_idx


@pytest.fixture(autouse=True)
def no_training(monkeypatch, tmp_path):
    """Training never starts in these tests, and runs go to a fresh folder."""
    def fit(*args, **kwargs):
        raise AssertionError("training started: the bad input was not refused up front")
        yield

    monkeypatch.setattr(experiment, "fit", fit)
    monkeypatch.setenv("KDVIZ_RUNS", str(tmp_path / "runs"))


def one_line(capsys, argv, message):
    code, out, err = kdviz(capsys, *argv)
    assert code == 2 and out == "", (code, out, err)
    assert err.count("\n") == 1 and err.startswith("kdviz") and ": error: " in err, err
    assert message in err, err


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


DIGITS = ["--dataset", "digits", "--student", "mlp-30", "--quiet"]
SWEEP = ["sweep", "--dry-run", "--quiet", "--dataset", "digits", "--student", "mlp-30", "--epochs", "1"]


@pytest.mark.parametrize("argv,message", [
    (["distill", *DIGITS, "--teacher", "digits-cnn", "--param", "T=4", "--param", "T=5"], "--param T given twice"),
    (["distill", *DIGITS, "--teacher", "digits-cnn", "-T", "4", "--param", "T=4"], "-T and --param T=4 both given"),
    (["distill", *DIGITS, "--teacher", "digits-cnn", "--method", "kd+"], "method 'kd+' has an empty part"),
    (["distill", *DIGITS, "--teacher", "digits-cnn", "--method", "kd+kd"], "names kd more than once"),
    (["distill", *DIGITS, "--teacher", "digits-cnn", "--method", "kd\n"], "unknown method 'kd\\n'"),
    (["distill", *DIGITS, "--teacher", "digits-cnn", "--method", " kd"], "unknown method ' kd'"),
    (["distill", *DIGITS, "--method", "ban", "--generations", "2", "--param", "T=0"], "T must be in"),
    (["distill", *DIGITS, "--method", "ban", "--generations", "2", "--param", "nope=1"], "has a hyperparameter 'nope'"),
    (["distill", *DIGITS, "--method", "at", "--generations", "1"], "needs convolutional feature maps"),
    (["distill", *DIGITS, "--method", "ban", "--generations", "100000"], "1 to 20 generations"),
    (["distill", *DIGITS, "--teacher", "digits-cnn", "--generations", "2"], "--teacher is not used with --generations"),
    ([*SWEEP, "--seeds", *range(100), "-T", *range(1, 51), "--lr", "0.1", "0.2", "0.3"], "at most 10,000 in one sweep"),
    ([*SWEEP, "--methods", "kd+"], "method 'kd+' has an empty part"),
    (["sweep", "--quiet", "--dataset", "digits", "--cpus-per-run", "100000"], "cpus per run must be in [1, "),
    (["experiment", "missing-class", "--set", "seeds=" + ",".join(map(str, range(200)))], "at most 100 seeds"),
    (["experiment", "missing-class", "--set", "seeds=1,1"], "seeds must differ"),
    (["experiment", "missing-class", "--set", "bias_max=1e308"], "bias_max must be in [0.0, 1000.0]"),
    (["experiment", "missing-class", "--set", "bias_step=1e-9"], "at least bias_max / 100000"),
    (["experiment", "data-free", "--set", "per_class=100000000"], "per_class must be in [1, 10000]"),
    (["experiment", "data-free", "--set", "dream_steps=1000000000"], "dream_steps must be in [1, 100000]"),
    (["experiment", "data-free", "--set", "T=0"], "T must be in [0.5, 50.0], got 0.0"),
    (["experiment", "temperature", "--set", "temperatures=" + ",".join(["2"] * 1000)], "needs 1 to 100 values"),
    (["pretrained", "list", "extra"], "list takes no names"),
])
def test_bad_arguments_are_refused_before_training(capsys, argv, message):
    one_line(capsys, argv, message)


@pytest.mark.parametrize("name,text,message", [
    ("deep.json", '{"a":' * 5000 + "0" + "}" * 5000, "nested too deeply"),
    ("deep.toml", "a = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("empty.toml", "\n", "is empty"),
    ("axis.json", '{"seed": []}', "sweep axis 'seed' has no values"),
    ("methods.json", '{"method": []}', "sweep axis 'method' has no values"),
    ("hide.json", '{"hide_labels": "yes", "method": "kd"}', "hide_labels must be true or false, got 'yes'"),
    ("save.json", '{"save_model": "no"}', "save_model must be true or false, got 'no'"),
    ("augment.json", '{"augment": "yes"}', "augment must be true or false"),
    ("omit.json", '{"omit_classes": [[3], [4, "x"]]}', "omit_classes needs class indices"),
    ("huge.json", '{"seed": [' + ",".join(map(str, range(200_000))) + "]}", "is over 1,000 kB"),
    ("grid.json", json.dumps({"seed": list(range(20)), "lr": [0.1] * 10, "T": list(range(1, 11)),
                              "alpha": [0.5] * 10}), "the sweep's axes make 40,000 runs"),
])
def test_bad_sweep_files_are_refused(capsys, tmp_path, name, text, message):
    one_line(capsys, [*SWEEP, "--config", write(tmp_path / name, text)], message)


def test_a_sweep_with_a_teacher_that_is_no_checkpoint_fails_before_its_first_run(capsys, tmp_path):
    """A file that exists but is no model used to pass the checks: the labels-only runs trained, the
    distillation runs failed one by one."""
    bogus = write(tmp_path / "teacher.pt", "not a model")
    one_line(capsys, ["sweep", *SWEEP[2:], "--methods", "baseline", "kd", "--teacher", bogus],
             "is not a valid kdviz checkpoint (not a PyTorch file)")


def test_outputs_that_cannot_be_written_are_refused_before_training(capsys, tmp_path):
    a_file = write(tmp_path / "file", "x")
    one_line(capsys, ["experiment", "missing-class", "--out", tmp_path], "is a folder, not a file")
    one_line(capsys, ["experiment", "missing-class", "--out", a_file / "result.json"], "is not writable")
    one_line(capsys, ["pretrained", "make", "digits-cnn", "--out", a_file], "output folder")


# --------------------------------------------------------------------------- data folders
def image_folder(root: Path, make, classes=("a", "b"), n=3) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                make(rng).save(root / split / c / f"{i}{make.suffix}")
    return root


def maker(suffix, build):
    build.suffix = suffix
    return build


def test_sixteen_bit_images_are_scaled_not_clipped_to_white(tmp_path):
    """Pillow's own conversion clips 16-bit pixels at 255: a 16-bit scan came out all white."""
    folder = image_folder(tmp_path / "d", maker(".png", lambda rng: Image.fromarray(
        rng.integers(0, 65536, (8, 8)).astype(np.uint16))))
    x, _, _ = data.read_image_folder(folder / "train")
    assert x.shape == (6, 1, 8, 8) and x.float().std() > 40 and x.max() > 200 and x.min() < 50
    first = np.asarray(Image.open(folder / "train" / "a" / "0.png")).astype(np.uint16)
    assert torch.equal(x[0, 0], torch.from_numpy((first >> 8).astype(np.uint8)))


@pytest.mark.parametrize("name,make,message", [
    ("float", maker(".tif", lambda rng: Image.fromarray(rng.random((8, 8)).astype(np.float32))), "floating-point pixels"),
    ("int32", maker(".tif", lambda rng: Image.fromarray(rng.integers(0, 1 << 20, (8, 8)).astype(np.int32))),
     "32-bit integer pixels"),
    ("wide", maker(".png", lambda rng: Image.fromarray(rng.integers(0, 255, (8, 12, 3), dtype=np.uint8))),
     "images are 12x8 pixels; kdviz trains on square images: crop or resize them"),
    ("huge", maker(".png", lambda rng: Image.new("L", (600, 600))), "images are 600x600 pixels"),
    ("flat", maker(".png", lambda rng: Image.new("RGB", (8, 8), (10, 20, 30))), "every training image is one flat colour"),
])
def test_image_folders_a_model_cannot_learn_from_are_refused(capsys, tmp_path, name, make, message):
    folder = image_folder(tmp_path / name, make)
    one_line(capsys, ["train-teacher", "--dataset", folder, "--model", "mlp-30", "--quiet"], message)


def test_data_folders_without_classes_or_splits_get_a_line_that_says_so(capsys, tmp_path):
    hidden = image_folder(tmp_path / "hidden", maker(".png", lambda rng: Image.new("L", (8, 8))), classes=(".a", ".b"))
    one_line(capsys, ["train-teacher", "--dataset", hidden, "--quiet"], "has 0 class folder(s) in train/")
    (tmp_path / "only-train" / "train" / "a").mkdir(parents=True)
    one_line(capsys, ["train-teacher", "--dataset", tmp_path / "only-train", "--quiet"], "has no test/ folder")


def test_idx_files_of_images_larger_than_any_model_takes_are_refused(tmp_path):
    for prefix, n in (("train", 4), ("t10k", 2)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", np.zeros((n, 200, 200)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    with pytest.raises(DataError, match="images are 200x200 pixels; kdviz trains on images of at most 128x128"):
        data.read_idx_folder(tmp_path)


def test_the_data_and_model_size_limits_agree():
    assert data.MAX_TRAIN_SIDE == models.MAX_IMAGE_SIDE


# --------------------------------------------------------------------------- checkpoints and records
def digits_teacher() -> models.ZooModel:
    return build_model("mlp-30", 1, 8, 10)


def checkpoint(tmp_path: Path, name: str, **change) -> Path:
    path = runs.save_checkpoint(digits_teacher(), tmp_path / "good.pt")
    payload = torch.load(path, weights_only=True)
    payload.update(change)
    torch.save(payload, tmp_path / name)
    return tmp_path / name


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("name,change,message", [
    ("ints.pt", lambda sd: {k: v.long() for k, v in sd.items()}, "holds int64 values, the model's float32"),
    ("complex.pt", lambda sd: {k: v.to(torch.complex64) for k, v in sd.items()}, "holds complex64 values"),
    ("inf.pt", lambda sd: {k: v * 1e30 for k, v in sd.items()}, "gives non-finite outputs"),
])
def test_teachers_with_unusable_weights_are_refused(capsys, tmp_path, name, change, message):
    path = checkpoint(tmp_path, name, state_dict=change(digits_teacher().state_dict()))
    one_line(capsys, ["distill", *DIGITS, "--teacher", path], message)


@pytest.mark.parametrize("name,payload,message", [
    ("tensor.pt", torch.zeros(3), "it needs a model spec and a state_dict of tensors"),
    ("strings.pt", {"spec": {"name": "mlp-30"}, "state_dict": {"w": "text"}}, "a state_dict of tensors"),
    ("huge-spec.pt", {"spec": {"name": "mlp-1200", "in_channels": 3, "image_size": 3000, "num_classes": 10},
                      "state_dict": {}}, "model image size must be a whole number in [1, 128], got 3000"),
])
def test_checkpoints_of_the_wrong_form_get_one_line(tmp_path, name, payload, message):
    torch.save(payload, tmp_path / name)
    with pytest.raises(ValueError, match=re.escape(message)):
        runs.load_checkpoint(tmp_path / name)


def test_a_checkpoint_with_pickled_code_is_refused_unread(capsys, tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"spec": digits_teacher().spec.to_dict(), "x": RunsCode(str(marker))}, tmp_path / "evil.pt")
    one_line(capsys, ["distill", *DIGITS, "--teacher", tmp_path / "evil.pt"], "refused unread (loading them could run code)")
    assert not marker.exists()


def test_a_run_record_of_the_wrong_form_is_named(capsys, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    runs.save_checkpoint(digits_teacher(), run / "model.pt")
    (run / "record.json").write_text(json.dumps({"student": [1]}))
    one_line(capsys, ["distill", *DIGITS, "--teacher", run / "model.pt"], "is not a usable run record")


def test_run_ids_are_folder_names_whatever_the_names_they_are_made_of():
    run_id = runs.new_run_id("kd\n", "a b/ü", "x" * 300)
    assert runs.check_run_id(run_id) == run_id and len(run_id) < 120


@pytest.mark.parametrize("config,message", [
    (RunConfig("digits", "mlp-30", hide_labels="no"), "hide_labels must be true or false"),
    (RunConfig("digits", "mlp-30", train=TrainSettings(epochs=1, augment=1)), "augment must be true or false"),
    (RunConfig("digits", "mlp-30", train={"epochs": 1}), "train must be TrainSettings"),
    (RunConfig("digits", "mlp-30", train=TrainSettings(device=5)), "device must be auto, cpu, cuda or cuda:N, got 5"),
    (RunConfig("digits", "mlp-30", "kd", {1: 2}, teacher="digits-cnn"), "method parameters must be a mapping"),
    (RunConfig("digits", "mlp-30", "kd", {"T": True}, teacher="digits-cnn"), "T must be a number, got True"),
    (RunConfig("digits", "mlp-30", "adversarial", {"d_steps": 2.5}, teacher="digits-cnn"),
     "d_steps must be a whole number, got 2.5"),
    (RunConfig("digits", "mlp-30", "adversarial", {"d_steps": True}, teacher="digits-cnn"), "d_steps must be a whole number"),
])
def test_the_python_api_refuses_values_of_the_wrong_kind(tmp_path, config, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Experiment(config, runs_dir=tmp_path)


def test_a_boolean_hyperparameter_is_true_false_or_refused():
    from kdviz.methods import method_class

    hyperparam = next(h for h in method_class("adversarial").hyperparams if h.kind == "bool")
    assert [hyperparam.validate(v) for v in ("on", "0", True, "False")] == [True, False, True, False]
    with pytest.raises(ValueError, match="must be true or false, got 'maybe'"):
        hyperparam.validate("maybe")  # was read as False


# --------------------------------------------------------------------------- the app server's settings
@pytest.mark.parametrize("name,value,message", [
    ("KDVIZ_JOB_NICE", "abc", "$KDVIZ_JOB_NICE must be a whole number in [0, 19], got 'abc'"),
    ("KDVIZ_MAX_JOBS", "0", "$KDVIZ_MAX_JOBS must be a whole number >= 1"),
    ("KDVIZ_RAY_GPUS_PER_JOB", "nan", "$KDVIZ_RAY_GPUS_PER_JOB must be a number >= 0"),
    ("KDVIZ_RAY_GPUS_PER_JOB", "lots", "$KDVIZ_RAY_GPUS_PER_JOB must be a number >= 0"),
])
def test_bad_server_settings_are_named(monkeypatch, name, value, message):
    from kdviz.settings import check_server_settings

    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as error:
        check_server_settings()
    assert message in str(error.value)


def test_the_settings_check_imports_no_torch():
    """The entry script checks the settings before a page runs; on a fresh server the warm-up is
    importing torch then, and a check that imported it too would hold back the page's menu."""
    script = "import sys, kdviz.settings, timings; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "app")])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_every_page_says_what_is_wrong_with_the_servers_settings(monkeypatch):
    """A bad setting was found only when a training run started, as that run's failure."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("KDVIZ_JOB_NICE", "-5")
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app" / "navigation.py"),
                           default_timeout=120).run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "This server's settings are wrong: $KDVIZ_JOB_NICE must be a whole number in [0, 19], got '-5'. "
        "Fix it in the environment the server starts in, then restart it."]


def test_a_record_or_card_nested_too_deeply_hides_nothing_else(capsys, tmp_path, monkeypatch):
    """json's RecursionError escaped every ``except ValueError``: one such file broke `kdviz runs`."""
    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "runs" / "deep").mkdir(parents=True)
    (tmp_path / "runs" / "deep" / "record.json").write_text(deep)
    (tmp_path / "runs" / "good").mkdir()
    (tmp_path / "runs" / "good" / "record.json").write_text(json.dumps(
        {"id": "good", "method": "kd", "test_acc": 0.5, "seed": 0}))
    code, out, _ = kdviz(capsys, "runs", "--runs-dir", tmp_path / "runs")
    assert code == 0 and "good" in out and "deep: unreadable record" in out and "nested too deeply" in out
    monkeypatch.setenv("KDVIZ_PRETRAINED", str(tmp_path / "pretrained"))
    (tmp_path / "pretrained").mkdir()
    (tmp_path / "pretrained" / "deep.json").write_text(deep)
    code, out, err = kdviz(capsys, "pretrained", "list")
    assert code == 0 and "skipped deep" in err and "nested too deeply" in err


def test_an_idx_header_announcing_hundreds_of_megabytes_is_refused_unread(tmp_path):
    """A gzip bomb: a small file whose header announces more than any data set kdviz reads (its body
    would have been decompressed, up to 2 GiB, before being judged)."""
    import gzip

    with gzip.open(tmp_path / "bomb-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (1000, 600, 600)) + bytes(1000))
    with pytest.raises(DataError, match=r"header announces \[1000, 600, 600\] = 360,000,000 bytes, more than kdviz reads"):
        data.read_idx(tmp_path / "bomb-idx3-ubyte.gz")


def test_a_card_that_does_not_describe_its_weights_is_refused(capsys, tmp_path, monkeypatch):
    """The weights matched the card's sha256, but the card's spec (what the app lists the teacher by) was not checked."""
    import shutil

    shipped = Path(__file__).resolve().parent.parent / "pretrained"
    shutil.copy(shipped / "digits-cnn.pt", tmp_path / "digits-cnn.pt")
    card = json.loads((shipped / "digits-cnn.json").read_text())
    card["spec"]["image_size"] = 9
    (tmp_path / "digits-cnn.json").write_text(json.dumps(card))
    monkeypatch.setenv("KDVIZ_PRETRAINED", str(tmp_path))
    one_line(capsys, ["distill", *DIGITS, "--teacher", "digits-cnn"], "refusing a card that does not match its file")


def test_an_unwritable_timings_file_never_breaks_a_page(capsys, tmp_path, monkeypatch):
    """``KDVIZ_APP_TIMINGS`` naming a folder that does not exist made every page run end in a traceback."""
    import timings

    monkeypatch.setenv("KDVIZ_APP_TIMINGS", str(tmp_path / "no-such-folder" / "timings.jsonl"))
    with timings.timed("page:test"):
        pass
    timings.record("again", 1.0)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot be written" in err


def test_labels_hidden_and_every_teacher_term_weighted_zero_is_refused_at_the_first_step(capsys, monkeypatch):
    """KD with alpha = 0 and the labels hidden trained on nothing and saved 10% as a finished run."""
    from kdviz import train

    monkeypatch.setattr(experiment, "fit", train.fit)  # this one trains: a single step
    one_line(capsys, ["distill", *DIGITS, "--teacher", "digits-cnn", "--hide-labels", "--alpha", "0", "--epochs", "1"],
             "with the labels hidden the student gets no gradient")
    assert not list(Path(os.environ["KDVIZ_RUNS"]).glob("*/record.json"))


# --------------------------------------------------------------------------- run records of the wrong form
GOOD_RECORD = {"id": "r", "created": "2026-01-01T00:00:00", "method": "baseline", "seed": 0, "test_acc": 0.5,
               "config": {"dataset": "digits", "student": "mlp-30", "params": {}, "train": {"epochs": 1, "lr": 0.1}},
               "student": {"name": "mlp-30"}, "history": [{"epoch": 1, "test_acc": 0.5}], "confusion": [[1, 0], [0, 1]]}


@pytest.mark.parametrize("change,problem", [
    ({"test_acc": "high"}, "test_acc 'high' is not a number in [0, 1]"),
    ({"test_acc": float("nan")}, "test_acc nan is not a number"),
    ({"test_acc": 5.0}, "test_acc 5.0 is not a number in [0, 1]"),
    ({"config": [1]}, "config is list, not dict"),
    ({"config": {**GOOD_RECORD["config"], "train": {"epochs": [1]}}}, "config.train.epochs [1] is not a whole number"),
    ({"id": "../../etc"}, "its id '../../etc' is not its folder's name"),
    ({"seed": "x"}, "seed is str, not int"),
    ({"student": "mlp-30"}, "student is str, not dict"),
    ({"history": [{"epoch": "a"}]}, "history is not a list of epochs"),
    ({"confusion": [[1, 2], [3]]}, "confusion is not a square table of counts"),
    ({"method": 5}, "method is int, not str"),
])
def test_a_run_record_of_the_wrong_form_is_listed_as_broken_and_breaks_nothing(capsys, tmp_path, change, problem):
    """Every page of the app, `kdviz runs` and `kdviz sweep` read the runs directory: one such record
    (a config that is a list, an accuracy that is text) ended each of them in a traceback."""
    runs_dir = tmp_path / "runs"
    for name, record in (("good", GOOD_RECORD), ("r", {**GOOD_RECORD, **change})):
        (runs_dir / name).mkdir(parents=True)
        (runs_dir / name / "record.json").write_text(json.dumps({**record, "id": name if record is GOOD_RECORD else
                                                                 record["id"]}))
    listed = {r["id"]: r for r in runs.list_runs(runs_dir)}
    assert "error" not in listed["good"] and problem in listed["r"]["error"]
    code, out, err = kdviz(capsys, *SWEEP, "--methods", "baseline", "--runs-dir", runs_dir)
    assert code == 0 and "todo" in out, err


def test_the_pages_open_beside_a_broken_run_record(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "record.json").write_text(json.dumps({**GOOD_RECORD, "id": "bad", "config": [1]}))
    monkeypatch.setenv("KDVIZ_RUNS", str(tmp_path))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app" / "views" / "home.py"),
                           default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]


def test_a_finished_record_without_its_config_is_not_compared():
    from kdviz.probes.softening import usable_records

    assert usable_records([GOOD_RECORD, {**GOOD_RECORD, "id": "x", "config": None}]) == [GOOD_RECORD]


def test_a_fraction_that_leaves_one_class_is_refused():
    """``--fraction 1e-9`` trained on a single image and saved 10% as a finished run."""
    digits = data.load("digits").train
    with pytest.raises(ValueError, match="leaves 1 image\\(s\\) of a single class"):
        data.transfer_set(digits, fraction=1e-9)
    assert len(data.transfer_set(digits, fraction=0.01)) == 14  # a few images of several classes still train
