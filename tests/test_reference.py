"""kdviz.reference: the shipped reference results, their commands, and the table drawn from them."""
from __future__ import annotations

import json
import shlex

import pytest
import torch

from kdviz import cli, pretrained, reference
from kdviz.experiment import RunConfig
from kdviz.sweep import run_key

SHIPPED = reference.tables()


def test_reference_files_are_shipped_small_and_readable():
    assert SHIPPED, "results/reference/ holds no table"
    total = sum(t.path.stat().st_size for t in SHIPPED)
    assert total < 5 * 2**20
    keys = [t.key for t in SHIPPED]
    assert len(set(keys)) == len(keys)
    for table in SHIPPED:
        assert table.rows and table.budget
        for row in table.rows:
            for run in row.runs:
                assert 0 <= run["test_acc"] <= 1 and run["seed"] in row.seeds
                assert "checkpoint" not in run.get("record", {})  # records ship without checkpoints


def _same_run(a: dict, b: dict) -> bool:
    """Two configs train the same thing (whether the model is saved aside)."""
    return run_key({**a, "save_model": True}) == run_key({**b, "save_model": True})


@pytest.mark.parametrize("table", SHIPPED, ids=lambda t: t.key)
def test_every_row_command_parses_into_the_rows_config(table):
    """The command printed beside a row is a real kdviz command that trains that row's config."""
    for row in table.rows:
        assert row.command.startswith("OMP_NUM_THREADS=1 kdviz ")
        argv = shlex.split(row.command.removeprefix("OMP_NUM_THREADS=1 kdviz "))
        args = cli.build_parser().parse_args(argv)
        config = cli._config(args).to_dict()
        assert _same_run(config, row.config), row.label


def test_a_table_round_trips_and_draws_ours_beside_the_papers(tmp_path):
    config = RunConfig(dataset="digits", student="mlp-30", method="kd", teacher="digits-cnn").to_dict()
    table = {"key": "00-test", "title": "A test table", "budget": "1 epoch", "machine": "here", "measured": "today",
             "rows": [{"label": "kd", "config": config, "seeds": [0, 1], "command": reference.command_for(config),
                       "runs": [{"seed": 0, "test_acc": 0.99, "errors": 4, "train_time_s": 1.0},
                                {"seed": 1, "test_acc": 0.97, "errors": 11, "train_time_s": 3.0}],
                       "paper": {"value": 98.5, "what": "with KD", "source": "a paper"}},
                      {"label": "pending", "config": config, "seeds": [0], "command": "", "runs": [], "paper": None}]}
    path = reference.write_table(table, tmp_path)
    assert json.loads(path.read_text()) == json.loads(json.dumps(table))  # tuples become lists
    [read] = reference.tables(tmp_path)
    kd, pending = read.rows
    assert kd.mean == pytest.approx(98.0) and kd.std == pytest.approx(1.4142, abs=1e-4) and kd.errors == 7.5
    assert kd.ours() == "98.00 ± 1.41" and kd.papers() == "98.50 (with KD)"
    assert pending.ours() == "–" and pending.papers() == "–"
    text = reference.markdown(read)
    assert "| kd | 98.00 ± 1.41 | 99.00 / 97.00 | 8 | 98.50 (with KD) | 2 |" in text
    assert "| pending | – | – | – | – | – |" in text


def test_a_broken_file_is_one_clear_error(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not a reference result file"):
        reference.tables(tmp_path)


def test_a_row_says_why_it_cannot_be_re_run_here(monkeypatch):
    """The Compare page disables Re-run with this line: a teacher not shipped here, or a GPU row without a GPU."""
    gpu_table = next(t for t in reference.tables() if t.key == "41-cifar10-full-budget-gpu")
    kd = next(r for r in gpu_table.rows if r.config.get("teacher"))
    shipped = set(pretrained.names())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert reference.cannot_run(kd, shipped).startswith("trains on a CUDA GPU")
    assert reference.cannot_run(kd, shipped - {kd.config["teacher"]}) == (
        f"needs the teacher {kd.config['teacher']}: kdviz pretrained make {kd.config['teacher']}")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert reference.cannot_run(kd, shipped) is None
    cpu_row = next(t for t in reference.tables() if t.key == "40-cifar10-full-budget").rows[0]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert reference.cannot_run(cpu_row, shipped) is None
