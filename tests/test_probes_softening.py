"""The numbers behind the Temperature, Train and Compare pages (kdviz.probes.softening)."""
import json
import math

import numpy as np
import pytest
import torch

from kdviz.probes import softening as s


def test_t_squared_and_gradient_scale():
    assert list(s.t_squared([1, 2, 10])) == [1, 4, 100]
    z = torch.randn(64, 10) * 4
    g = s.kd_gradient_scale(z, [1.0, 10.0, 100.0])
    # without T² the gradient vanishes like 1/T² at high T; with T² it stays in scale
    assert g["without_T2"][2] < g["without_T2"][0] / 100
    assert g["with_T2"][1] / g["with_T2"][2] == pytest.approx(1.0, rel=0.05)
    assert g["with_T2"][2] == pytest.approx(g["without_T2"][2] * 1e4)


def _record(method, seed, acc, params=None, confusion=None, **extra):
    return {"id": f"{method}-{seed}-{acc}", "method": method, "method_params": params or {}, "seed": seed,
            "test_acc": acc, "params": 1000, "latency_ms": 0.1, "train_time_s": 3.0,
            "config": {"dataset": "mnist", "train": {"epochs": 2}}, "student": {"name": "mlp-800"},
            "teacher": "pretrained:mnist-cnn" if method != "baseline" else None,
            "history": [{"epoch": 1, "test_acc": acc - 0.01}, {"epoch": 2, "test_acc": acc}],
            "confusion": confusion or [[9, 1], [0, 10]], **extra}


def test_accuracy_summary_mean_std_over_seeds():
    records = [_record("baseline", 0, 0.97), _record("baseline", 1, 0.98),
               _record("kd", 0, 0.99, {"T": 4.0, "alpha": 0.9}), _record("kd", 1, 0.99, {"T": 4.0, "alpha": 0.9}),
               {"id": "broken", "error": "unreadable record"}, _record("kd", 2, float("nan"))]
    rows = s.accuracy_summary(records)
    assert [r["method"] for r in rows] == ["kd (T=4, alpha=0.9)", "baseline"]
    kd, base = rows
    assert kd["seeds"] == 2 and kd["acc_mean"] == pytest.approx(0.99) and kd["acc_std"] == pytest.approx(0.0)
    assert base["acc_mean"] == pytest.approx(0.975) and base["acc_std"] == pytest.approx(np.std([0.97, 0.98], ddof=1))
    assert base["acc_min"] == 0.97 and base["acc_max"] == 0.98 and base["params"] == 1000
    csv = s.summary_csv(rows)
    assert csv.splitlines()[0].startswith("method,dataset") and "kd (T=4, alpha=0.9)" in csv
    assert len(json.loads(s.records_json(records))) == len(records)
    assert [c["test_acc"] for c in s.epoch_curves(records[:1])] == [[0.96, 0.97]]


def test_summary_counts_finished_runs_and_distinct_seeds():
    """Issue 16: a stopped run is not compared as finished; a repeat of seed 0 is not a second seed."""
    records = [_record("baseline", 0, 0.97, created="2026-01-01T00:00"), _record("baseline", 0, 0.975, created="2026-01-02T00:00"),
               _record("kd", 0, 0.99, {"T": 4.0, "alpha": 0.9}), _record("kd", 1, 0.30, {"T": 4.0, "alpha": 0.9}, stopped=True)]
    assert [r["seed"] for r in s.stopped_records(records)] == [1]
    rows = {r["method"]: r for r in s.accuracy_summary(records)}
    assert rows["baseline"]["seeds"] == 1 and rows["baseline"]["runs"] == 2
    assert rows["baseline"]["acc_mean"] == pytest.approx(0.975)  # the latest run of the seed
    assert rows["baseline"]["acc_std"] is None  # one seed: no spread, not "± 0"
    kd = rows["kd (T=4, alpha=0.9)"]
    assert kd["seeds"] == 1 and kd["acc_mean"] == pytest.approx(0.99)  # the stopped run is left out
    assert all(not r.get("stopped") for r in s.usable_records(records))


def test_mean_difference_interval_and_gains_over_baseline():
    d = s.mean_difference_interval([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    # se = √(1/3 + 1/3), Welch dof = 4, t(0.975, 4) = 2.7764
    assert d["diff"] == pytest.approx(3.0) and d["high"] - d["diff"] == pytest.approx(2.7764 * math.sqrt(2 / 3), rel=1e-3)
    assert s.mean_difference_interval([1.0], [2.0, 3.0])["low"] is None
    records = [_record("baseline", 0, 0.980), _record("baseline", 1, 0.982), _record("baseline", 2, 0.984),
               _record("kd", 0, 0.990, {"T": 4.0}), _record("kd", 1, 0.991, {"T": 4.0}), _record("kd", 2, 0.992, {"T": 4.0})]
    (gain,) = s.gains_over_baseline(s.accuracy_summary(records))
    assert gain["method"] == "kd (T=4)" and gain["gain"] == pytest.approx(0.9)
    assert 0 < gain["low"] < 0.9 < gain["high"] and gain["seeds"] == gain["baseline_seeds"] == 3

def test_alpha_temperature_grid():
    records = [_record("kd", 0, 0.98, {"T": 4.0, "alpha": 0.9}), _record("kd", 1, 0.96, {"T": 4.0, "alpha": 0.9}),
               _record("kd", 0, 0.95, {"T": 1.0, "alpha": 0.5}), _record("baseline", 0, 0.9)]
    g = s.alpha_temperature_grid(records)
    assert g["alpha"] == [0.5, 0.9] and g["T"] == [1.0, 4.0]
    assert g["acc"][1, 1] == pytest.approx(0.97) and g["count"][1, 1] == 2
    assert g["acc"][0, 0] == pytest.approx(0.95) and np.isnan(g["acc"][0, 1])


def test_confusion_difference():
    before = [[8, 2, 0], [0, 10, 0], [5, 0, 5]]
    after = [[10, 0, 0], [1, 9, 0], [1, 0, 9]]
    d = s.confusion_difference(before, after, classes=["a", "b", "c"])
    assert np.allclose(d["before"].sum(1), 1) and np.allclose(d["after"].sum(1), 1)
    assert d["diff"][2, 0] == pytest.approx(-0.4)
    assert d["fixed"][0] == {"true": "c", "predicted": "a", "change": pytest.approx(-0.4)}
    assert d["worsened"][0]["true"] == "b" and d["worsened"][0]["predicted"] == "a"
    assert d["accuracy_before"] == pytest.approx(23 / 30) and d["accuracy_after"] == pytest.approx(28 / 30)
    assert np.allclose(s.row_normalised([[0, 0], [1, 3]]), [[0, 0], [0.25, 0.75]])
    with pytest.raises(ValueError):
        s.confusion_difference([[1]], before)


def test_run_label():
    assert s.run_label({"method": "baseline", "method_params": {}}) == "baseline"
    assert s.run_label({"method": "kd", "method_params": {"alpha": 0.9, "T": 4.0}}) == "kd (T=4, alpha=0.9)"


def test_uploaded_image_to_pixels():
    from PIL import Image

    # dark ink on white paper, bigger than 28x28: inverted and resized like MNIST
    a = np.full((100, 80), 255, dtype=np.uint8)
    a[30:70, 35:45] = 0
    px = s.image_to_pixels(Image.fromarray(a), 1, 28)
    assert px.shape == (1, 1, 28, 28) and px.dtype == torch.uint8
    assert px[0, 0, 0, 0] < 30 and px[0, 0, 14, 14] > 200
    rgb = s.image_to_pixels(Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)), 3, 32)
    assert rgb.shape == (1, 3, 32, 32)

    from kdviz.models import build_model

    logits = s.logits_for_pixels(build_model("mlp-30"), px, (0.13,), (0.31,))
    assert logits.shape == (1, 10)


def test_measured_wait_is_the_median_of_runs_like_this_one():
    def timed(method, seed, prepare, wall, epochs=2, **extra):
        r = _record(method, seed, 0.98, wall_time_s=wall, prepare_time_s=prepare, **extra)
        r["config"] = {"dataset": "mnist", "teacher": None if method == "baseline" else "mnist-cnn",
                       "train": {"epochs": epochs}}
        return r

    records = [timed("kd", 0, 20.0, 24.0), timed("kd", 1, 1.0, 20.0), timed("kd", 2, 1.0, 22.0),
               timed("kd", 3, 1.0, 900.0, epochs=20), timed("kd", 4, 1.0, 5.0, stopped=True), timed("baseline", 0, 1.0, 9.0)]
    wait = s.measured_wait(records, "mnist", "mlp-800", 2, with_teacher=True)
    assert wait == {"seconds": 23.0, "runs": 3, "longest": 44.0}  # median of 44, 21, 23 s; not the 20-epoch or stopped runs
    assert s.measured_wait(records, "mnist", "mlp-800", 2, with_teacher=False)["seconds"] == 10.0
    assert s.measured_wait(records, "cifar10", "mlp-800", 2, with_teacher=True) is None
