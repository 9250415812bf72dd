"""Faults on disk: a run killed mid-way or mid-save never damages earlier runs, never leaves a
half run that looks complete, and its leftovers are cleaned by the next save. Checkpoints
are checked against their records (sha256), so a swapped or orphaned ``model.pt`` is refused.

The kills are real: a training process (``python -m kdviz``) in a subprocess gets SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kdviz import runs
from kdviz.experiment import Experiment, RunConfig, resolve_teacher
from kdviz.models import build_model
from kdviz.train import TrainSettings

from conftest import REPO


def _env(runs_dir: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "KDVIZ_RUNS": str(runs_dir), "OMP_NUM_THREADS": "1"}


def _earlier_runs(runs_dir: Path, n: int = 2) -> list[dict]:
    records = []
    for seed in range(n):
        config = RunConfig(dataset="digits", student="mlp-30", train=TrainSettings(epochs=1, seed=seed, device="cpu"))
        records.append(Experiment(config, runs_dir=runs_dir).run())
    return records


def _everything_earlier_loads(runs_dir: Path, earlier: list[dict]) -> None:
    listed = {r["id"]: r for r in runs.list_runs(runs_dir)}
    for record in earlier:
        assert listed[record["id"]]["test_acc"] == record["test_acc"]
        model = runs.load_run_checkpoint(record["id"], runs_dir)  # checked against the record's sha256
        assert all(torch.isfinite(t).all() for t in model.state_dict().values())
    assert not any("error" in r for r in listed.values()), listed


def _wait_for(process, pattern: str, timeout: float = 180) -> str:
    """Read the process's stderr until a line holds ``pattern``."""
    deadline = time.time() + timeout
    seen = []
    while time.time() < deadline:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if pattern in line:
            return line
    process.kill()
    raise AssertionError(f"{pattern!r} never appeared: {''.join(seen)[-2000:]}")


def test_a_run_killed_mid_way_leaves_earlier_runs_intact_and_no_half_run(tmp_path):
    runs_dir = tmp_path / "runs"
    earlier = _earlier_runs(runs_dir)
    process = subprocess.Popen(
        [sys.executable, "-m", "kdviz", "train-teacher", "--dataset", "digits", "--model", "mlp-800",
         "--epochs", "200", "--batch-size", "16", "--device", "cpu", "--runs-dir", str(runs_dir), "--quiet"],
        env=_env(runs_dir), stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        while process.poll() is None and not any(runs_dir.glob("*")):
            time.sleep(0.2)
        time.sleep(3)  # training by now (the data loads in well under a second once cached)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    _everything_earlier_loads(runs_dir, earlier)
    assert len(runs.list_runs(runs_dir)) == len(earlier)


SLOW_SAVE = """
import sys, time, torch
from kdviz import cli
real_save = torch.save
def slow_save(obj, f, *args, **kwargs):
    real_save(obj, f, *args, **kwargs)
    f.flush()
    print("SAVING", flush=True, file=sys.stderr)
    time.sleep(120)  # the kill lands here, with the file written but not yet renamed
torch.save = slow_save
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_run_killed_mid_save_leaves_earlier_runs_intact_and_is_cleaned_later(tmp_path):
    runs_dir = tmp_path / "runs"
    earlier = _earlier_runs(runs_dir)
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_SAVE, "train-teacher", "--dataset", "digits", "--model", "mlp-30",
         "--epochs", "1", "--device", "cpu", "--runs-dir", str(runs_dir), "--quiet"],
        env=_env(runs_dir), stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(process, "SAVING")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    leftovers = [p for p in runs_dir.rglob("*") if p.name.startswith(".")]
    assert leftovers, "the kill should have left a temporary file behind"
    _everything_earlier_loads(runs_dir, earlier)
    assert len(runs.list_runs(runs_dir)) == len(earlier)  # the killed run is absent, not half there
    # the next save in this folder removes what the dead process left (once a minute old: a
    # folder shared between machines could hold a live writer whose pid means nothing here)
    old = time.time() - 120
    for leftover in leftovers:
        os.utime(leftover, (old, old))
    later = _earlier_runs(runs_dir, 1)
    assert not [p for p in runs_dir.rglob("*") if p.name.startswith(".") and p.exists()]
    _everything_earlier_loads(runs_dir, earlier + later)


def test_a_swapped_checkpoint_is_refused(tmp_path):
    runs_dir = tmp_path / "runs"
    first, second = _earlier_runs(runs_dir)
    # another model's weights copied over the first run's checkpoint
    (runs_dir / first["id"] / "model.pt").write_bytes((runs_dir / second["id"] / "model.pt").read_bytes())
    with pytest.raises(ValueError, match="does not match the sha256 in its record"):
        runs.load_run_checkpoint(first["id"], runs_dir)
    with pytest.raises(ValueError, match="does not match the sha256 in its record"):
        resolve_teacher(first["id"], runs_dir)
    with pytest.raises(ValueError, match="does not match the sha256 in its record"):
        resolve_teacher(str(runs_dir / first["id"] / "model.pt"), runs_dir)


def test_a_checkpoint_without_its_record_is_not_a_teacher(tmp_path):
    runs_dir = tmp_path / "runs"
    (record,) = _earlier_runs(runs_dir, 1)
    (runs_dir / record["id"] / "record.json").unlink()
    with pytest.raises(ValueError, match="has no record.json"):
        resolve_teacher(record["id"], runs_dir)
    with pytest.raises(ValueError, match="has no record.json"):
        resolve_teacher(str(runs_dir / record["id"] / "model.pt"), runs_dir)


def test_a_record_that_is_not_a_run_is_listed_as_an_error_not_a_crash(tmp_path):
    runs_dir = tmp_path / "runs"
    (record,) = _earlier_runs(runs_dir, 1)
    broken = runs_dir / "20990101-000000-broken"
    broken.mkdir()
    (broken / "record.json").write_text(json.dumps([1, 2, 3]))
    listed = {r["id"]: r for r in runs.list_runs(runs_dir)}
    assert "error" in listed["20990101-000000-broken"] and listed[record["id"]]["test_acc"] == record["test_acc"]


def test_a_checkpoint_holding_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pt"
    torch.save({"spec": build_model("mlp-30", 1, 8).spec.to_dict(), "state_dict": {}, "x": Evil()}, path)
    with pytest.raises(ValueError, match="is not a valid kdviz checkpoint"):
        resolve_teacher(str(path))
    assert not (tmp_path / "pwned").exists()


# --------------------------------------------------------------------------- model cards
@pytest.fixture
def shipped_copy(tmp_path, monkeypatch):
    """A copy of two shipped teachers in a folder of our own (KDVIZ_PRETRAINED)."""
    import shutil

    from kdviz import pretrained

    folder = tmp_path / "pretrained"
    folder.mkdir()
    for name in ("digits-cnn", "mnist-mlp"):
        for suffix in (".json", ".pt", ".probe.npz"):
            shutil.copy(pretrained.pretrained_dir() / f"{name}{suffix}", folder / f"{name}{suffix}")
    monkeypatch.setenv("KDVIZ_PRETRAINED", str(folder))
    return folder


def _cli(capsys, *argv):
    from kdviz.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_one_corrupt_card_does_not_hide_the_others(shipped_copy, capsys):
    (shipped_copy / "mnist-mlp.json").write_text("{ not json")
    code, out, err = _cli(capsys, "pretrained", "list")
    assert code == 0 and "digits-cnn" in out and "mnist-mlp" not in out
    assert err.count("\n") == 1 and err.startswith("kdviz: warning: skipped mnist-mlp:") and "JSONDecodeError" in err


def test_a_card_that_lacks_fields_is_named_with_what_it_lacks(shipped_copy, capsys):
    card = json.loads((shipped_copy / "digits-cnn.json").read_text())
    del card["test_acc"], card["dataset"]
    card["sha256"] = "not a hash"
    (shipped_copy / "digits-cnn.json").write_text(json.dumps(card))
    code, out, err = _cli(capsys, "pretrained", "list", "--json")
    listed = {c["name"]: c for c in json.loads(out)}
    assert code == 0 and listed["mnist-mlp"]["test_acc"] > 0.9
    assert "dataset missing" in listed["digits-cnn"]["error"] and "test_acc missing" in listed["digits-cnn"]["error"]
    assert "sha256 is not a sha256 in hex" in listed["digits-cnn"]["error"]
    code, _, err = _cli(capsys, "distill", "--dataset", "digits", "--teacher", "digits-cnn", "--student", "mlp-30",
                        "--epochs", "1")
    assert code == 2 and err.count("\n") == 1 and "is not a usable model card: dataset missing" in err


def test_a_card_that_is_not_an_object_or_has_inconsistent_fields(shipped_copy, capsys):
    (shipped_copy / "mnist-mlp.json").write_text("[1, 2]")
    card = json.loads((shipped_copy / "digits-cnn.json").read_text())
    card["classes"] = card["classes"][:5]
    (shipped_copy / "digits-cnn.json").write_text(json.dumps(card))
    code, out, err = _cli(capsys, "pretrained", "list")
    assert code == 0 and "no usable pretrained teachers shipped" in out
    assert "mnist-mlp: " in err and "not a JSON object" in err
    assert "spec has 10 classes, the class list 5" in err


@pytest.mark.parametrize("ref", ["run:../../etc", "run:.hidden", "../elsewhere/x"])
def test_a_run_id_cannot_walk_out_of_the_runs_directory(tmp_path, ref):
    with pytest.raises(ValueError):
        resolve_teacher(ref, tmp_path / "runs")
    with pytest.raises(ValueError, match="is not a run id"):
        runs.load_run(ref.removeprefix("run:"), tmp_path / "runs")
