"""The kdviz command line: help, one-line errors with a non-zero exit, --json output, run listing."""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys

import pytest
import torchvision.datasets as tvd

from kdviz import data, runs
from kdviz.models import build_model

from conftest import kdviz


@pytest.mark.parametrize("command", ["train-teacher", "distill", "runs", "methods", "pretrained"])
def test_help(capsys, command):
    code, out, _ = kdviz(capsys, command, "--help")
    assert code == 0 and out.startswith(f"usage: kdviz {command}")


def test_top_level_help_lists_the_commands(capsys):
    code, out, _ = kdviz(capsys, "--help")
    assert code == 0
    assert all(c in out for c in ("train-teacher", "distill", "runs", "methods", "pretrained"))


def test_main_called_with_arguments_leaves_the_garbage_collector_as_it_was(capsys):
    """Only a run from the command line (no argv) freezes the objects it leaves for the exit."""
    before = gc.get_freeze_count()
    code, out, _ = kdviz(capsys, "methods", "--json")
    assert code == 0 and "kd" in json.loads(out)
    assert gc.get_freeze_count() == before and gc.isenabled()


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """An empty data directory and torchvision downloads that fail at once."""
    monkeypatch.setenv("KDVIZ_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("KDVIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_MEMORY", {})
    for cls in (tvd.MNIST, tvd.CIFAR10):
        monkeypatch.setattr(cls, "download", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("offline")))


@pytest.mark.parametrize("argv,message", [
    (["train-teacher", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["train-teacher", "--dataset", "digits", "--model", "vgg"], "unknown model 'vgg'"),
    (["distill", "--dataset", "digits", "--teacher", "TEACHER", "-T", "0"], "temperature T must be > 0, got 0.0"),
    (["distill", "--dataset", "digits", "--teacher", "TEACHER", "-T", "-2"], "temperature T must be > 0"),
    (["distill", "--dataset", "digits", "--teacher", "TEACHER", "--alpha", "1.5"], "alpha must be in [0, 1], got 1.5"),
    (["distill", "--dataset", "digits", "--teacher", "TEACHER", "--alpha", "-0.1"], "alpha must be in [0, 1]"),
    (["distill", "--dataset", "digits", "--teacher", "TEACHER", "--param", "T=0"], "T must be in"),
    (["distill", "--dataset", "digits", "--teacher", "no-such-teacher"], "teacher 'no-such-teacher'"),
    (["distill", "--dataset", "digits", "--teacher", "TEACHER", "--method", "magic"], "unknown method 'magic'"),
    (["train-teacher", "--dataset", "mnist", "--epochs", "abc"], "invalid int value: 'abc'"),
    (["train-teacher", "--dataset", "mnist", "--epochs", "-1"], "epochs must be at least 1, got -1"),
    (["train-teacher", "--dataset", "mnist", "--no-such-option"], "unrecognized arguments"),
    (["teach"], "invalid choice: 'teach'"),
    (["train-teacher", "--dataset", "mnist"], "MNIST not found; tried"),
    (["train-teacher", "--dataset", "cifar10"], "cifar10 not found; tried"),
])
def test_bad_arguments_give_one_clear_line(capsys, no_data, tmp_path, argv, message):
    teacher = runs.save_checkpoint(build_model("mlp-30", 1, 8), tmp_path / "teacher.pt")  # a digits teacher
    code, out, err = kdviz(capsys, *(str(teacher) if a == "TEACHER" else a for a in argv))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("kdviz") and ": error: " in err, err
    assert message in err


def test_a_bad_argument_in_a_real_process_gives_no_traceback():
    result = subprocess.run([sys.executable, "-m", "kdviz", "train-teacher", "--dataset", "digits", "--model", "vgg"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("kdviz: error: unknown model 'vgg'") and result.stderr.count("\n") == 1


def test_output_cut_short_by_its_reader_is_no_error():
    """``kdviz pretrained list | head -1``: when the reader has gone, kdviz stops without an error
    line (it used to print 'kdviz: error: BrokenPipeError'). Here the pipe's reading end is closed
    before kdviz writes at all."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "kdviz", "pretrained", "list"], stdout=write_end,
                                stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert result.stderr == "" and result.returncode == 141


def test_train_distill_and_list_runs(capsys):
    code, out, err = kdviz(capsys, "train-teacher", "--dataset", "digits", "--model", "mlp-800", "--epochs", "2", "--json")
    assert code == 0, err
    teacher = json.loads(out)  # stdout holds only the JSON; the progress bar goes to stderr
    assert set(teacher) >= {"id", "test_acc", "params", "latency_ms", "train_time_s", "seed", "method"}
    assert teacher["test_acc"] > 0.8 and teacher["method"] == "baseline" and "test acc" in err

    code, out, err = kdviz(capsys, "distill", "--dataset", "digits", "--teacher", teacher["id"], "--student", "mlp-30",
                           "--epochs", "2", "-T", "3", "--alpha", "0.5", "--seed", "4", "--json", "--quiet")
    assert code == 0 and err == ""
    student = json.loads(out)
    assert student["seed"] == 4 and student["params"] == 64 * 30 + 30 + 310
    record = runs.load_run(student["id"])
    assert record["method_params"] == {"T": 3.0, "alpha": 0.5} and record["teacher"] == f"run:{teacher['id']}"
    assert record["test_acc"] == student["test_acc"] and len(record["history"]) == 2

    code, out, _ = kdviz(capsys, "runs")
    assert code == 0 and teacher["id"] in out and student["id"] in out and f"{100 * student['test_acc']:.2f}%" in out
    code, out, _ = kdviz(capsys, "runs", "--json")
    assert {r["id"] for r in json.loads(out)} == {teacher["id"], student["id"]}


def test_runs_with_a_broken_record(capsys, tmp_path):
    (tmp_path / "runs" / "broken").mkdir(parents=True)
    (tmp_path / "runs" / "broken" / "record.json").write_text("{")
    runs.save_record({"id": "partial", "created": "x"})
    code, out, _ = kdviz(capsys, "runs")
    assert code == 0 and "broken: unreadable record" in out and "partial: incomplete record" in out


def test_empty_runs(capsys, tmp_path):
    assert kdviz(capsys, "runs") == (0, "no runs yet\n", "")
    (tmp_path / "a-file").write_text("x")
    code, out, err = kdviz(capsys, "runs", "--runs-dir", str(tmp_path / "a-file"))
    assert code == 2 and out == "" and "a-file is a file, not a folder" in err and "Traceback" not in err


def test_methods(capsys):
    code, out, _ = kdviz(capsys, "methods")
    assert code == 0 and "kd " in out and "T=4.0" in out and "baseline" in out
    code, out, _ = kdviz(capsys, "methods", "--json")
    assert json.loads(out)["kd"]["hyperparams"]["alpha"]["high"] == 1.0


def test_pretrained_list(capsys, tmp_path, monkeypatch):
    code, out, _ = kdviz(capsys, "pretrained", "list", "--json")
    assert code == 0 and isinstance(json.loads(out), list)
    monkeypatch.setenv("KDVIZ_PRETRAINED", str(tmp_path))
    assert kdviz(capsys, "pretrained", "list") == (0, "no pretrained teachers shipped\n", "")
