"""The experiments' torch-free catalogue and result files (kdviz.experiment_results), and the registry
(kdviz.experiments) built on them: one list of experiments, their titles and presets' names."""
from pathlib import Path

import pytest

from kdviz import experiment_results as xr
from kdviz import experiments


def test_the_registry_is_the_catalogue_with_runs_and_settings():
    assert list(experiments.EXPERIMENTS) == list(xr.CATALOGUE)
    for name, entry in experiments.EXPERIMENTS.items():
        info = xr.CATALOGUE[name]
        assert (entry.name, entry.title, entry.paper) == (info.name, info.title, info.paper)
        assert tuple(entry.presets) == info.presets  # same names, same order (full first among the shipped)
        assert xr.shipped_presets(name) == experiments.shipped_presets(name)


def test_a_registry_entry_whose_presets_are_not_the_catalogues_is_refused():
    with pytest.raises(ValueError, match="not the catalogue's"):
        experiments._spec("no-labels", experiments.no_labels, {"quick": experiments.NoLabelsSettings()})


def test_unknown_experiments_are_clear_errors_in_both_modules():
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        xr.shipped_presets("nope")
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        experiments.spec("nope")


def test_the_moved_names_are_still_reached_through_kdviz_experiments():
    for name in ("ExperimentResult", "cost_note", "results_dir", "result_path", "result_name", "shipped_presets",
                 "save_result", "load_result", "stats", "changes_from_first", "decode_images"):
        assert getattr(experiments, name) is getattr(xr, name), name


def test_a_result_survives_the_file_round_trip(tmp_path):
    result = xr.ExperimentResult("no-labels", "full", {"dataset": "mnist"}, {"acc": xr.stats([0.9, 0.92])},
                                 records=[{"id": "a", "checkpoint": "/here/only", "wall_time_s": 60.0}])
    path = xr.save_result(result, tmp_path / "no-labels.json")
    back = xr.load_result("no-labels", tmp_path)
    assert back.summary == result.summary and back.records == [{"id": "a", "wall_time_s": 60.0}]  # lean: no checkpoint
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a readable experiment result"):
        xr.load_result("no-labels", tmp_path)
    with pytest.raises(FileNotFoundError):
        xr.load_result("born-again", tmp_path)


def test_a_missing_result_file_still_gets_its_data_set_heading(tmp_path, monkeypatch):
    """Little data ships two results; with neither file the headings come from the presets' settings."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("KDVIZ_RESULTS", str(tmp_path))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app" / "views" / "experiments.py"),
                           default_timeout=60)
    at.query_params["exp"] = "little-data"
    at = at.run()
    assert not at.exception
    assert [s.value for s in at.subheader][:2] == ["mnist", "cifar10"]
    assert len(at.info) == 2
