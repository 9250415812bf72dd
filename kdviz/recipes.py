"""How every shipped teacher is made: its recipe, and ``kdviz pretrained make NAME``.

For every teacher named in :data:`RECIPES`, :func:`make` trains it with the project's
own loop (:class:`kdviz.experiment.Experiment`) and writes, in ``pretrained/`` (or
``--out DIR``), the weights, a probe set of test images and the model card that
:mod:`kdviz.pretrained` reads (the card last, so a teacher is listed only once all its
files exist).
"""
from __future__ import annotations

import os
import platform
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from kdviz.data import ImageData
from kdviz.evaluation import evaluate, predict_logits
from kdviz.experiment import Experiment, RunConfig
from kdviz.files import file_sha256, write_atomic, write_json_atomic
from kdviz.losses import entropy
from kdviz.models import MODELS, model_summary
from kdviz.pretrained import PROBE_KINDS, PretrainedError, card_path, pretrained_dir, probe_path, weights_path
from kdviz.runs import load_checkpoint, save_checkpoint, versions
from kdviz.train import TrainSettings

CARD_VERSION = 1
ACCURACY_NOTE = ("test accuracy measured by kdviz (kdviz.evaluation.evaluate, fp32, batch 1000, CPU) "
                 "on the {dataset} test split ({n} images), from the shipped weights")
CIFAR_NOTE = ("trained and tested on CIFAR-10 as JPEG files (../shared/data/cifar10-jpg.tar.gz): a JPEG "
              "re-encoding of the original CIFAR-10, so pixels differ slightly from torchvision's copy "
              "(class means agree to 1e-4); accuracy on the original images may differ a little")


# --------------------------------------------------------------------------- recipes
@dataclass(frozen=True)
class Recipe:
    """How one shipped teacher is made: data, architecture, optimisation budget, seed.

    ``settings`` is passed unchanged to the training loop. The device and the number of
    torch threads are pinned because the cards promise reproducibility on this project's
    CPU machines: on the CPU a seeded run is bit-for-bit repeatable only with the same
    thread count (the split of each reduction depends on it). One thread is also the
    fastest choice on a busy 2-core machine, where two threads wait on each other."""

    dataset: str
    model: str
    settings: TrainSettings
    note: str = ""
    probe_per_class: int = 30  # split evenly over ambiguous / clear / typical images
    threads: int = 1


def _cpu(**values) -> TrainSettings:
    # the shipped weights were trained before gradient clipping existed; 0 keeps them reproducible
    return TrainSettings(device="cpu", grad_clip=0.0, **values)


RECIPES: dict[str, Recipe] = {
    "mnist-cnn": Recipe("mnist", "cnn5", _cpu(epochs=6, lr=0.1, seed=0, precision="bf16"),
                        "MNIST CNN teacher (Hinton-style temperature and attention demos)"),
    "digits-cnn": Recipe("digits", "cnn5", _cpu(epochs=30, batch_size=64, lr=0.05, seed=0, precision="bf16"),
                         "scikit-learn's 8x8 digits (1,437 train / 360 test images, always offline)",
                         probe_per_class=18),
    "fashion-mnist-cnn": Recipe("fashion-mnist", "cnn5", _cpu(epochs=8, lr=0.1, seed=0, precision="bf16"),
                                "Fashion-MNIST (Debian's dataset-fashion-mnist)"),
    # Hinton et al. 2015 §3: dropout on inputs (0.2) and hidden units (0.5, in the model), inputs
    # jittered by up to 2 pixels, 40 epochs. fp32: bf16 autocast is slower for MLPs on a CPU without AMX.
    # Made 2026-11-30: 99.20% (80 errors; Hinton: 67), 12 s an epoch on one quiet thread.
    "mnist-mlp": Recipe("mnist", "mlp-1200", TrainSettings(epochs=40, batch_size=256, lr=0.1, seed=0, device="cpu",
                                                           precision="fp32", jitter=2),
                        "Hinton et al. 2015's MNIST teacher: MLP 784-1200-1200-10, dropout 0.2 on inputs and 0.5 on "
                        "hidden units, inputs jittered by up to 2 pixels"),
    # The full-budget CIFAR-10 teacher of the seeds' table. fp32: on a CPU without AMX bf16 autocast is
    # slower for ResNet-20 (BENCHMARKS.md, Speed). About 175 s an epoch on one thread of the 2-core
    # Xeon of 2026-11-30 (so some 2.5 hours); resumable: run the command again after a stop.
    "cifar10-resnet20-full": Recipe("cifar10", "resnet20", TrainSettings(epochs=50, lr=0.1, seed=0, device="cpu",
                                                                         precision="fp32", augment=True),
                                    "CIFAR-10 ResNet-20 at full budget (random crop + flip, 50 epochs; aims at >= 90%)"),
    "cifar10-resnet20": Recipe("cifar10", "resnet20", _cpu(epochs=15, lr=0.1, seed=0, precision="bf16",
                                                           augment=True),
                               "CIFAR-10 ResNet-20 (random crop + flip)"),
}


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise PretrainedError(f"no recipe for {name!r}; recipes: {', '.join(RECIPES)}")
    return RECIPES[name]


def command_for(name: str) -> str:
    """The command that rebuilds a teacher from its recipe (what the card records)."""
    return f"kdviz pretrained make {name}"


def equivalent_train_command(r: Recipe) -> str:
    """The same training spelled with ``kdviz train-teacher``: the same run config, so the same
    weights on the same CPU with the same thread count (it prints a bf16-measured accuracy,
    which can differ from the card's fp32 one in the last digit)."""
    s = r.settings
    parts = [f"OMP_NUM_THREADS={r.threads} kdviz train-teacher --dataset {r.dataset} --model {r.model} --epochs {s.epochs}",
             f"--batch-size {s.batch_size} --lr {s.lr} --optimizer {s.optimizer} --schedule {s.schedule}",
             f"--weight-decay {s.weight_decay} --seed {s.seed} --device {s.device}"]
    parts.append("--bf16" if s.precision == "bf16" else f"--precision {s.precision}")
    if s.augment:
        parts.append("--augment")
    if s.jitter:
        parts.append(f"--jitter {s.jitter}")
    if s.grad_clip != 5.0:
        parts.append(f"--grad-clip {s.grad_clip:g}")
    return " ".join(parts)


def resume_path(name: str, out: Path) -> Path:
    """Where ``make`` keeps the state after each epoch, so an interrupted make goes on where it
    stopped (run the same command again); removed once the teacher is written."""
    return Path(out) / f".{name}.resume.pt"


def cpu_description() -> str:
    """The CPU model and its bf16 flags, as the cards and benchmark tables name the machine."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    native = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    return f"{model} ({', '.join(native) or 'no native bf16'}; {os.cpu_count()} cores)"


# --------------------------------------------------------------------------- probe selection
def choose_probe(logits: torch.Tensor, labels: torch.Tensor, per_class: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Test-set positions for a probe set, and each one's kind (see :data:`PROBE_KINDS`).

    Per true class, a third each: the highest-entropy images (where the teacher hesitates,
    mistakes included: where dark knowledge is most visible), the lowest-entropy images the
    teacher gets right (textbook cases), and a seeded random draw of the rest (what the
    data is usually like)."""
    h = entropy(torch.softmax(logits.double(), dim=-1))
    correct = logits.argmax(1) == labels
    generator = torch.Generator().manual_seed(seed)
    k = per_class // 3
    chosen, kinds = [], []
    for c in labels.unique(sorted=True).tolist():
        members = torch.nonzero(labels == c).flatten()
        by_entropy = members[torch.argsort(h[members], descending=True, stable=True)]
        ambiguous = by_entropy[:k]
        right = by_entropy[correct[by_entropy]]
        clear = right.flip(0)[:k]
        rest = members[~torch.isin(members, torch.cat([ambiguous, clear]))]
        typical = rest[torch.randperm(len(rest), generator=generator)[: per_class - 2 * k]]
        for kind, group in enumerate((ambiguous, clear, typical)):
            chosen.append(group.sort().values)
            kinds.append(torch.full((len(group),), kind, dtype=torch.int64))
    return torch.cat(chosen), torch.cat(kinds)


def write_probe(path: Path, test: ImageData, index: torch.Tensor, kind: torch.Tensor) -> None:
    """The chosen test images as a compressed ``.npz`` of plain arrays (no pickles), atomically."""
    write_atomic(path, lambda f: np.savez_compressed(
        f, pixels=test.pixels[index].numpy().astype(np.uint8), labels=test.labels[index].numpy().astype(np.int64),
        kind=kind.numpy().astype(np.uint8), test_index=index.numpy().astype(np.int64)))


# --------------------------------------------------------------------------- making a teacher
def make(name: str, out_dir: Path | str | None = None, on_event: Callable | None = None) -> dict:
    """Train the teacher ``name`` from its recipe and write its weights, probe set and card.

    ``on_event`` receives every training event (for a progress display). Returns the card."""
    r = recipe(name)
    out = Path(out_dir or pretrained_dir())
    threads_before = torch.get_num_threads()
    torch.set_num_threads(r.threads)
    try:
        return _make(name, r, out, on_event)
    finally:
        torch.set_num_threads(threads_before)


def _make(name: str, r: Recipe, out: Path, on_event: Callable | None = None) -> dict:
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kdviz-pretrained-") as runs_dir:
        config = RunConfig(dataset=r.dataset, student=r.model, method="baseline",
                           train=replace(r.settings), save_model=False)
        experiment = Experiment(config, runs_dir=Path(runs_dir), resume=resume_path(name, out))
        for event in experiment.events():
            if on_event:
                on_event(event)
        record = experiment.record
    if record is None or record.get("stopped"):
        raise RuntimeError(f"training {name} did not finish")
    test = experiment.test_data

    # Ship exactly what was measured: save, reload the file, and evaluate what was reloaded.
    path = save_checkpoint(experiment.student.cpu(), weights_path(name, out))
    teacher = load_checkpoint(path)
    measured = evaluate(teacher, test, device="cpu", precision="fp32")
    logits = predict_logits(teacher, test, device="cpu", precision="fp32")
    index, kind = choose_probe(logits, test.labels, r.probe_per_class, seed=r.settings.seed)
    write_probe(probe_path(name, out), test, index, kind)

    summary = model_summary(teacher)
    info = {
        "card_version": CARD_VERSION,
        "name": name,
        "description": r.note,
        "dataset": r.dataset,
        "data_source": experiment.train_data.source,
        "data_note": CIFAR_NOTE if r.dataset == "cifar10" else "",
        "train_size": len(experiment.train_data),
        "test_size": len(test),
        "model": r.model,
        "model_description": MODELS[r.model].description,
        "spec": teacher.spec.to_dict(),
        "params": summary["params"],
        "classes": list(test.classes),
        "mean": list(test.mean),
        "std": list(test.std),
        "test_acc": measured["accuracy"],
        "test_acc_note": ACCURACY_NOTE.format(dataset=r.dataset, n=len(test)),
        "test_acc_during_training": record["test_acc"],
        "history_test_acc": [round(e["test_acc"], 4) for e in record["history"]],
        "epochs": r.settings.epochs,
        "seed": r.settings.seed,
        "train_settings": r.settings.to_dict(),
        "train_time_s": round(record["train_time_s"], 1),
        "wall_time_s": round(max(time.time() - started, record["train_time_s"]), 1),
        "command": command_for(name),
        "equivalent_command": equivalent_train_command(r),
        "machine": f"{cpu_description()}, {torch.get_num_threads()} torch threads",
        "torch_threads": torch.get_num_threads(),
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "file": path.name,
        "sha256": file_sha256(path),
        "probe_file": probe_path(name, out).name,
        "probe_sha256": file_sha256(probe_path(name, out)),
        "probe_size": len(index),
        "probe_kinds": list(PROBE_KINDS),
        "probe_note": ("test images: per class the highest-entropy ones (ambiguous), the lowest-entropy correctly "
                       "classified ones (clear) and a seeded random draw (typical); logits are not stored, "
                       "compute them with the teacher"),
    }
    write_json_atomic(card_path(name, out), info)
    resume_path(name, out).unlink(missing_ok=True)
    for written in (path, probe_path(name, out), card_path(name, out)):
        written.chmod(0o644)  # temporary files are created private; shipped files are for everyone
    return info
