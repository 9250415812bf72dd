"""kdviz.runs: atomic records, listing and loading, checkpoints that load with weights_only."""
from __future__ import annotations

import json
import os

import pytest
import torch

from kdviz import runs
from kdviz.models import build_model


def record(run_id, created="2026-01-01T00:00:00", **extra):
    return {"id": run_id, "created": created, "method": "kd", "test_acc": 0.9, "seed": 0, **extra}


def test_save_and_load(tmp_path):
    path = runs.save_record(record("a", history=[{"epoch": 1}]), tmp_path)
    assert path == tmp_path / "a" / "record.json"
    assert runs.load_run("a", tmp_path) == record("a", history=[{"epoch": 1}])
    assert os.listdir(tmp_path / "a") == ["record.json"]  # no temporary file left behind


def test_default_runs_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KDVIZ_RUNS", str(tmp_path / "elsewhere"))
    runs.save_record(record("b"))
    assert (tmp_path / "elsewhere" / "b" / "record.json").is_file()
    monkeypatch.delenv("KDVIZ_RUNS")
    assert runs.default_runs_dir() == runs.Path("runs")


def test_a_failing_write_leaves_the_earlier_record_intact(tmp_path, monkeypatch):
    runs.save_record(record("a", test_acc=0.5), tmp_path)
    with pytest.raises(TypeError):  # not JSON-serialisable: fails half way through the write
        runs.save_record(record("a", test_acc=0.7, bad=object()), tmp_path)

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)  # fails after the new file is written, before the rename
    with pytest.raises(OSError, match="disk full"):
        runs.save_record(record("a", test_acc=0.8), tmp_path)
    monkeypatch.undo()
    assert runs.load_run("a", tmp_path)["test_acc"] == 0.5
    assert os.listdir(tmp_path / "a") == ["record.json"]


def test_list_runs_newest_first_and_reports_corrupt_records(tmp_path):
    runs.save_record(record("old", created="2026-01-01T10:00:00"), tmp_path)
    runs.save_record(record("new", created="2026-01-02T10:00:00"), tmp_path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "record.json").write_text('{"id": "broken", "test_acc"')
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "record.json").write_text("[1, 2]")
    (tmp_path / "no-record").mkdir()
    listed = runs.list_runs(tmp_path)
    good = [r["id"] for r in listed if "error" not in r]
    bad = {r["id"]: r["error"] for r in listed if "error" in r}
    assert good == ["new", "old"]
    assert set(bad) == {"broken", "list"} and all("unreadable record" in e for e in bad.values())
    assert runs.list_runs(tmp_path / "missing") == []


def test_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run 'nope'"):
        runs.load_run("nope", tmp_path)


def test_run_ids_are_unique_and_path_safe():
    ids = {runs.new_run_id("at+kd", "data/pets", "mlp-30") for _ in range(20)}
    assert len(ids) == 20
    assert all("/" not in i and "+" not in i and i.endswith(tuple("0123456789abcdef")) for i in ids)


def test_versions():
    assert runs.versions()["torch"] == torch.__version__


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_model("cnn5-small", 3, 32, 5)
    for m in model.modules():  # batch-norm statistics are buffers, and must travel too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    model.eval()
    path = runs.save_checkpoint(model, tmp_path / "run" / "model.pt")
    payload = torch.load(path, weights_only=True)  # plain tensors and a spec dict: no pickled classes
    assert payload["spec"] == {"name": "cnn5-small", "in_channels": 3, "image_size": 32, "num_classes": 5}
    loaded = runs.load_checkpoint(path)
    assert not loaded.training and loaded.spec == model.spec
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


class NotATensor:
    pass


@pytest.mark.parametrize("content", ["text", "pickle", "other-model"])
def test_non_checkpoint_files_are_a_clear_error(tmp_path, content):
    path = tmp_path / "file.pt"
    if content == "text":
        path.write_text("hello")
    elif content == "pickle":
        torch.save({"spec": NotATensor()}, path)  # weights_only refuses to unpickle it
    else:
        good = {"spec": build_model("mlp-30").spec.to_dict(), "state_dict": build_model("mlp-800").state_dict()}
        torch.save(good, path)
    with pytest.raises(ValueError, match="is not a valid kdviz checkpoint") as refused:
        runs.load_checkpoint(path)
    if content == "text":
        assert "not a PyTorch file" in str(refused.value)  # said in words, not as a Python exception
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        runs.load_checkpoint(tmp_path / "missing.pt")


def test_records_hold_plain_json(tmp_path):
    runs.save_record(record("c", confusion=torch.tensor([[1, 2], [3, 4]]).tolist(), latency=torch.tensor(0.5).item()), tmp_path)
    assert json.loads((tmp_path / "c" / "record.json").read_text())["confusion"] == [[1, 2], [3, 4]]
