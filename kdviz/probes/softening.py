"""The T² factor's effect on the gradient, summaries of saved runs, and a user's own image.

What the Temperature, Train and Compare pages plot beyond the softened distributions themselves
(those, and the dark-knowledge matrix, are in :mod:`kdviz.probes.temperatures`, in numpy) is
computed here from logits, run records and images; the app only draws the results. Temperatures
follow Hinton, Vinyals & Dean (2015): ``p = softmax(z / T)`` (:func:`kdviz.losses.soften`).
"""
from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict

import numpy as np
import torch
from PIL import Image, ImageOps

from kdviz.data import normalise
from kdviz.losses import kd_loss
from kdviz.probes.confusions import row_normalised
from kdviz.probes.temperatures import logits_array


def _logits(logits) -> torch.Tensor:
    return torch.as_tensor(logits_array(logits), dtype=torch.float32)


# --------------------------------------------------------------------------- the T² factor
def t_squared(temperatures) -> np.ndarray:
    """The factor T² in Hinton's loss."""
    return np.asarray(temperatures, dtype=float) ** 2


def kd_gradient_scale(teacher_logits, temperatures, student_logits=None) -> dict[str, list[float]]:
    """Mean norm of ∂loss/∂(student logits) at each T, without and with the T² factor.

    Without T², the soft term's gradient shrinks like 1/T² as T grows (Hinton 2015, §2.1);
    with it, it stays in scale. The default student knows nothing yet (all-zero logits)."""
    z_t = _logits(teacher_logits).reshape(-1, _logits(teacher_logits).shape[-1])
    z_s0 = torch.zeros_like(z_t) if student_logits is None else _logits(student_logits).reshape(z_t.shape)
    plain, scaled = [], []
    for T in temperatures:
        z_s = z_s0.clone().requires_grad_(True)
        loss = kd_loss(z_s, z_t, float(T))  # includes T²
        (grad,) = torch.autograd.grad(loss, z_s)
        norm = grad.norm(dim=-1).mean().item() * len(z_t)  # per-example gradient, not divided by the batch
        scaled.append(norm)
        plain.append(norm / float(T) ** 2)
    return {"T": [float(T) for T in temperatures], "without_T2": plain, "with_T2": scaled}


# --------------------------------------------------------------------------- run records
def run_label(record: dict) -> str:
    """A short name for a run's method and its hyperparameters, e.g. ``kd (T=4, alpha=0.9)``."""
    params = record.get("method_params") or {}
    shown = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(params.items()))
    return f"{record.get('method', '?')} ({shown})" if shown else str(record.get("method", "?"))


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def usable_records(records) -> list[dict]:
    """Records that finished with a test accuracy (and their config): unreadable, failed, stopped and diverged runs left
    out (a run ended part-way has not had its budget, so it is not compared with finished ones)."""
    return [r for r in records if "error" not in r and isinstance(r.get("test_acc"), (int, float))
            and isinstance(r.get("config"), dict)
            and r.get("test_acc") == r.get("test_acc") and not r.get("stopped") and not r.get("diverged")]


def stopped_records(records) -> list[dict]:
    """Readable records of runs that ended before their budget did (stopped, or diverged)."""
    return [r for r in records if "error" not in r and (r.get("stopped") or r.get("diverged"))]


def _group_key(record: dict) -> tuple:
    cfg = record.get("config", {})
    return (run_label(record), cfg.get("dataset"), (record.get("student") or {}).get("name"),
            record.get("teacher"), (cfg.get("train") or {}).get("epochs"))


def one_run_per_seed(runs: list[dict]) -> list[dict]:
    """Of runs of one setting, one per seed (the latest made): a repeat of a seed is the same
    experiment again (deterministic on CPU), not another sample of the spread over seeds."""
    latest: dict = {}
    for r in sorted(runs, key=lambda r: str(r.get("created", ""))):
        latest[r.get("seed")] = r
    return list(latest.values())


def accuracy_summary(records) -> list[dict]:
    """One row per (method + hyperparameters, data set, student, teacher, epochs): test accuracy
    mean and standard deviation over distinct seeds (sample std; None for one seed, which has no
    spread to measure), its range, and the mean parameter count, latency and training time.
    ``runs`` counts the finished runs, ``seeds`` the distinct seeds used (repeats of a seed count
    once, the latest). Rows sorted by mean accuracy, best first."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in usable_records(records):
        groups[_group_key(r)].append(r)
    rows = []
    for (label, dataset, student, teacher, epochs), all_runs in groups.items():
        runs = one_run_per_seed(all_runs)
        acc = np.array([r["test_acc"] for r in runs], dtype=float)
        mean_of = lambda key: float(np.mean([r[key] for r in runs if isinstance(r.get(key), (int, float))] or [np.nan]))  # noqa: E731
        rows.append({
            "method": label, "dataset": dataset, "student": student, "teacher": teacher, "epochs": epochs,
            "base_method": runs[0].get("method"), "seeds": len(runs), "runs": len(all_runs),
            "accs": acc.tolist(), "acc_mean": float(acc.mean()),
            "acc_std": float(acc.std(ddof=1)) if len(acc) > 1 else None,
            "acc_min": float(acc.min()), "acc_max": float(acc.max()),
            "params": mean_of("params"), "latency_ms": mean_of("latency_ms"), "train_time_s": mean_of("train_time_s"),
            "run_ids": [r["id"] for r in runs],
        })
    return sorted(rows, key=lambda row: -row["acc_mean"])


def measured_wait(records, dataset: str, student: str, epochs: int, with_teacher: bool) -> dict | None:
    """How long a run like this took on this machine, from its saved records: the median, over
    finished runs with the same data set, student, epochs and use of a teacher, of the time from
    its start (loading data and teacher, caching the teacher's outputs) to its record
    (``prepare_time_s + wall_time_s``; older records without ``prepare_time_s`` count their
    training alone). None when no such run has finished here: then there is nothing honest to say."""
    times = [float(r.get("prepare_time_s") or 0.0) + float(r["wall_time_s"])
             for r in usable_records(records)
             if isinstance(r.get("wall_time_s"), (int, float))
             and (r.get("config") or {}).get("dataset") == dataset
             and (r.get("student") or {}).get("name") == student
             and ((r.get("config") or {}).get("train") or {}).get("epochs") == epochs
             and bool((r.get("config") or {}).get("teacher")) == with_teacher]
    if not times:
        return None
    return {"seconds": float(np.median(times)), "runs": len(times), "longest": float(max(times))}


def mean_difference_interval(a, b, level: float = 0.95) -> dict:
    """Difference of two means ``mean(b) − mean(a)`` with a Welch t confidence interval.

    Welch (1947): standard error √(s_a²/n_a + s_b²/n_b), degrees of freedom by the
    Welch-Satterthwaite formula. With fewer than two values on either side there is no spread to
    measure, and ``low``/``high`` are None."""
    from scipy import stats  # late: scipy takes seconds to import, and only this interval needs it

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(b.mean() - a.mean())
    if len(a) < 2 or len(b) < 2:
        return {"diff": diff, "low": None, "high": None, "n": (len(a), len(b))}
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return {"diff": diff, "low": diff, "high": diff, "n": (len(a), len(b))}
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + level / 2, dof)) * se
    return {"diff": diff, "low": diff - half, "high": diff + half, "n": (len(a), len(b))}


def gains_over_baseline(rows: list[dict], level: float = 0.95) -> list[dict]:
    """For each summary row that is not labels-only: its accuracy gain over the labels-only
    baseline row with the same data set, student and epochs, in percentage points, with a
    ``level`` confidence interval over seeds (:func:`mean_difference_interval`). Rows with no
    matching baseline are left out."""
    baselines = {(r["dataset"], r["student"], r["epochs"]): r for r in rows if r.get("base_method") == "baseline"}
    gains = []
    for r in rows:
        base = baselines.get((r["dataset"], r["student"], r["epochs"]))
        if base is None or r is base:
            continue
        d = mean_difference_interval(base["accs"], r["accs"], level)
        pts = lambda v: None if v is None else 100 * v  # noqa: E731
        gains.append({"method": r["method"], "student": r["student"], "epochs": r["epochs"],
                      "gain": pts(d["diff"]), "low": pts(d["low"]), "high": pts(d["high"]),
                      "seeds": r["seeds"], "baseline_seeds": base["seeds"], "level": level})
    return gains


def alpha_temperature_grid(records) -> dict:
    """Mean test accuracy of the KD runs on an α × T grid (NaN where no run), with run counts."""
    cells: dict[tuple[float, float], list[float]] = defaultdict(list)
    for r in usable_records(records):
        params = r.get("method_params") or {}
        if r.get("method") == "kd" and "alpha" in params and "T" in params:
            cells[(float(params["alpha"]), float(params["T"]))].append(r["test_acc"])
    alphas = sorted({a for a, _ in cells})
    temps = sorted({t for _, t in cells})
    acc = np.full((len(alphas), len(temps)), np.nan)
    count = np.zeros((len(alphas), len(temps)), dtype=int)
    for (a, t), values in cells.items():
        i, j = alphas.index(a), temps.index(t)
        acc[i, j], count[i, j] = float(np.mean(values)), len(values)
    return {"alpha": alphas, "T": temps, "acc": acc, "count": count}


def epoch_curves(records) -> list[dict]:
    """Test accuracy after each epoch of the main training, per run: {label, id, epoch, test_acc}."""
    curves = []
    for r in usable_records(records):
        history = [h for h in r.get("history", []) if h.get("test_acc") == h.get("test_acc")]
        curves.append({"label": run_label(r), "id": r["id"], "seed": r.get("seed"),
                       "epoch": [h["epoch"] for h in history], "test_acc": [h["test_acc"] for h in history]})
    return curves


def confusion_difference(before, after, classes=None, k: int = 5) -> dict:
    """Two confusion matrices (row-normalised), ``after − before``, and the off-diagonal cells
    that changed most: negative change = a mistake fixed, positive = a new mistake."""
    a, b = row_normalised(before), row_normalised(after)
    if a.shape != b.shape:
        raise ValueError(f"confusion matrices differ in shape: {a.shape} vs {b.shape}")
    diff = b - a
    C = len(diff)
    names = list(classes) if classes is not None else [str(i) for i in range(C)]
    cells = [(diff[i, j], i, j) for i in range(C) for j in range(C) if i != j and diff[i, j] != 0]
    cells.sort(key=lambda c: c[0])
    describe = lambda d, i, j: {"true": names[i], "predicted": names[j], "change": float(d)}  # noqa: E731
    return {
        "before": a, "after": b, "diff": diff,
        "accuracy_before": float(np.trace(np.asarray(before, dtype=float)) / max(np.sum(before), 1)),
        "accuracy_after": float(np.trace(np.asarray(after, dtype=float)) / max(np.sum(after), 1)),
        "fixed": [describe(*c) for c in cells if c[0] < 0][:k],
        "worsened": [describe(*c) for c in reversed(cells) if c[0] > 0][:k],
    }


def records_json(records) -> str:
    """Records as one JSON document (for a download)."""
    return json.dumps(list(records), indent=1, default=float)


def summary_csv(rows) -> str:
    """The accuracy summary as CSV text (percentages as numbers, run ids joined by spaces)."""
    out = io.StringIO()
    fields = ["method", "dataset", "student", "teacher", "epochs", "seeds", "runs", "acc_mean", "acc_std", "acc_min",
              "acc_max", "params", "latency_ms", "train_time_s", "run_ids"]
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    for row in rows:
        writer.writerow({**{k: row.get(k) for k in fields}, "run_ids": " ".join(row.get("run_ids", []))})
    return out.getvalue()


# --------------------------------------------------------------------------- a user's own image
def image_to_pixels(image, channels: int, size: int, invert: bool | None = None) -> torch.Tensor:
    """A PIL image (an upload) as uint8 pixels ``(1, channels, size, size)`` like the data set's.

    Grey-scale sets (MNIST) have light strokes on black; a photo of dark ink on white paper is
    inverted when ``invert`` is None and the image's border is lighter than its centre."""
    image = ImageOps.exif_transpose(image).convert("L" if channels == 1 else "RGB")
    image = image.resize((size, size), Image.Resampling.LANCZOS)
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8).copy())
    pixels = pixels.unsqueeze(0) if channels == 1 else pixels.permute(2, 0, 1)
    if channels == 1:
        if invert is None:
            border = torch.cat([pixels[0, 0], pixels[0, -1], pixels[0, :, 0], pixels[0, :, -1]]).float().mean()
            invert = bool(border > 127)
        if invert:
            pixels = 255 - pixels
    return pixels.unsqueeze(0)


@torch.no_grad()
def logits_for_pixels(model: torch.nn.Module, pixels: torch.Tensor, mean, std) -> torch.Tensor:
    """A model's logits for uint8 pixels ``(N, C, H, W)``, normalised with the data set's mean/std."""
    model.eval()
    device = next(model.parameters()).device
    return model(normalise(pixels, mean, std).to(device)).float().cpu()
