"""The divergence guard and up-front validation.

A non-finite loss, gradient or weight stops a run with a message naming phase, epoch
and step; the weights left are the last good ones; the record says ``diverged``; the
CLI exits non-zero. Settings that cannot make sense are refused before any data or
teacher is loaded."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from kdviz import data, experiment
from kdviz.cli import main
from kdviz.experiment import Experiment, RunConfig
from kdviz.methods import Method, build_method
from kdviz.models import build_model
from kdviz.runs import list_runs, load_checkpoint
from kdviz.train import EpochDone, Finished, StepDone, TrainSettings, fit


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


class Faulty(Method):
    """Labels only, until a chosen step of a chosen epoch turns the loss, its gradient or a second
    player's loss (``auxiliary_step``, as adversarial distillation's discriminator) into NaN."""

    name = "faulty"
    needs_teacher = False

    def __init__(self, student, epoch: int, step: int, kind: str):
        super().__init__(student)
        self.at, self.kind, self.epoch, self.step = (epoch, step), kind, 1, 0

    def losses(self, step):
        self.step += 1
        if (self.epoch, self.step) != self.at or self.kind == "auxiliary loss":
            return {}
        z = step.student_logits
        if self.kind == "loss":
            return {"boom": z.sum() * float("nan")}
        # value 0, gradient inf * 0 = NaN: the loss is finite, its gradient is not
        return {"boom": ((z - z.detach()).pow(2).sum()).sqrt()}

    def auxiliary_step(self, step):
        return {"second player": float("nan")} if (self.epoch, self.step) == self.at and self.kind == "auxiliary loss" else {}

    def next_epoch(self):
        self.epoch, self.step = self.epoch + 1, 0


def _train(digits, kind, epoch, step, epochs=3):
    torch.manual_seed(0)
    net = build_model("mlp-30", 1, 8)
    method = Faulty(net, epoch, step, kind)
    settings = TrainSettings(epochs=epochs, batch_size=64, lr=0.05, device="cpu", precision="fp32")
    snapshots, events = {}, []
    for event in fit(net, method, digits.train, digits.test, settings):
        events.append(event)
        if isinstance(event, EpochDone):
            snapshots[event.epoch] = copy.deepcopy(net.state_dict())
            method.next_epoch()
    return net, events, snapshots


@pytest.mark.parametrize("kind", ["loss", "gradient", "auxiliary loss"])
def test_a_non_finite_value_stops_the_run_and_keeps_the_last_good_weights(digits, kind):
    net, events, snapshots = _train(digits, kind, epoch=2, step=5)
    done = events[-1]
    assert isinstance(done, Finished) and done.diverged is not None
    d = done.diverged
    assert (d["phase"], d["epoch"], d["step"], d["what"]) == ("train", 2, 5, kind)
    assert f"non-finite {kind} in phase 'train', epoch 2, step 5" in d["message"]
    assert "kept the weights from the end of epoch 1" in d["message"]
    # no step after the fault; the history holds the one finite epoch
    steps = [e for e in events if isinstance(e, StepDone)]
    assert (steps[-1].epoch, steps[-1].step) == (2, 4)
    assert [h["epoch"] for h in done.history] == [1]
    # the weights are exactly those at the end of epoch 1, and they are what was evaluated
    assert all(torch.equal(v, snapshots[1][k]) for k, v in net.state_dict().items())
    assert done.test_acc == pytest.approx(done.history[0]["test_acc"])


@pytest.mark.parametrize("kind", ["loss", "gradient", "auxiliary loss"])
def test_the_guard_names_the_same_step_when_steps_are_read_one_late(digits, kind, monkeypatch):
    """On a GPU a step's values are read after the next step is queued (kdviz.train.read_lag): the
    step after the fault has been taken by then, yet the record names the faulty step, no event
    follows it, and the weights are the last good ones."""
    import kdviz.train as loop

    monkeypatch.setattr(loop, "read_lag", lambda device: 1)
    net, events, snapshots = _train(digits, kind, epoch=2, step=5)
    d = events[-1].diverged
    assert (d["phase"], d["epoch"], d["step"], d["what"]) == ("train", 2, 5, kind)
    steps = [e for e in events if isinstance(e, StepDone)]
    assert (steps[-1].epoch, steps[-1].step) == (2, 4)
    assert all(torch.equal(v, snapshots[1][k]) for k, v in net.state_dict().items())


def test_a_fault_in_the_first_epoch_keeps_the_starting_weights(digits):
    torch.manual_seed(0)
    start = build_model("mlp-30", 1, 8).state_dict()
    net, events, _ = _train(digits, "loss", epoch=1, step=2)
    assert "kept the weights from before training" in events[-1].diverged["message"]
    assert all(torch.equal(v, start[k]) for k, v in net.state_dict().items())


def test_a_huge_learning_rate_is_stopped_by_the_guard_in_the_cli(capsys, tmp_path):
    runs_dir = tmp_path / "runs"
    code = main(["train-teacher", "--dataset", "digits", "--model", "mlp-30", "--epochs", "2", "--lr", "1e6",
                 "--grad-clip", "0", "--device", "cpu", "--precision", "fp32", "--quiet", "--runs-dir", str(runs_dir)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "training diverged: non-finite" in err and "phase 'train', epoch 1, step" in err
    (record,) = list_runs(runs_dir)
    assert record["status"] == "diverged" and record["diverged"]["epoch"] == 1
    assert math.isfinite(record["test_acc"])
    weights = load_checkpoint(runs_dir / record["id"] / "model.pt")
    assert all(torch.isfinite(t).all() for t in weights.state_dict().values())


@pytest.mark.parametrize("option,value,message", [
    ("--lr", "nan", "learning rate must be a finite number, got nan"),
    ("--lr", "inf", "learning rate must be a finite number, got inf"),
    ("--weight-decay", "nan", "weight decay must be a finite number, got nan"),
    ("--grad-clip", "nan", "grad clip must be a finite number, got nan"),
    ("--param", "alpha=nan", "alpha must be a finite number, got nan"),
    ("--param", "T=inf", "T must be a finite number, got inf"),
    ("-T", "nan", "T must be a finite number, got nan"),
    ("--epochs", "0", "epochs must be at least 1, got 0"),
    ("--batch-size", "0", "batch size must be in [1, 65536], got 0"),
    ("--fraction", "nan", "fraction must be a number in (0, 1], got nan"),
    ("--fraction", "0", "fraction must be a number in (0, 1], got 0.0"),
    ("--omit-classes", "0,1,2,3,4,5,6,7,8,9", "cannot leave out all 10 classes"),
    ("--omit-classes", "12", "cannot omit class 12: class indices are 0..9"),
    ("--omit-classes", "three", "--omit-classes needs comma-separated class indices"),
    ("--device", "bogus", "unknown device 'bogus'; use auto, cpu, cuda or cuda:N"),
    ("--device", "tpu", "unknown device 'tpu'"),
    ("--seed", "-3", "seed must be in [0, 2**31), got -3"),
])
def test_bad_settings_are_refused_before_data_or_teacher_is_loaded(capsys, monkeypatch, option, value, message):
    def never(*args, **kwargs):
        raise AssertionError("loaded something before validating")

    monkeypatch.setattr(data, "load", never)
    monkeypatch.setattr(experiment, "resolve_teacher", never)
    code = main(["distill", "--dataset", "digits", "--teacher", "digits-cnn", "--student", "mlp-30", option, value])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_a_method_that_needs_a_teacher_is_refused_without_one():
    with pytest.raises(ValueError, match="method 'kd' needs a teacher"):
        RunConfig(dataset="digits", student="mlp-30", method="kd").validate()


def test_an_unwritable_runs_directory_is_refused_before_training(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(data, "load", lambda *a: (_ for _ in ()).throw(AssertionError("data loaded")))
    with pytest.raises(ValueError, match=f"runs directory {blocker / 'runs'} is not writable"):
        Experiment(RunConfig(dataset="digits", student="mlp-30", train=TrainSettings(epochs=1)), runs_dir=blocker / "runs")


def test_a_save_failure_keeps_the_trained_model_where_the_message_says(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    real_write = Experiment._write

    def full_disk(self, record, runs_dir):
        if runs_dir == self.runs_dir:
            raise OSError(28, "No space left on device")
        return real_write(self, record, runs_dir)

    monkeypatch.setattr(Experiment, "_write", full_disk)
    code = main(["train-teacher", "--dataset", "digits", "--model", "mlp-30", "--epochs", "1", "--quiet",
                 "--device", "cpu", "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "No space left on device" in err
    rescued = tmp_path / "tmp" / "kdviz-rescued-runs"
    (folder,) = [p for p in rescued.iterdir() if p.is_dir()]
    assert f"saved in {folder} instead" in err
    record = json.loads((folder / "record.json").read_text())
    assert record["test_acc"] > 0.5 and load_checkpoint(folder / "model.pt") is not None


def test_nan_hyperparameters_are_refused_by_the_registry():
    net = build_model("mlp-30", 1, 8)
    for params in ({"alpha": float("nan")}, {"T": float("inf")}, {"T": "nan"}):
        with pytest.raises(ValueError, match="must be a finite number"):
            build_method("kd", net, net, params)
