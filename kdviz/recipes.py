"""How every shipped network is made: its recipe, and ``kdviz pretrained make NAME``.

For every teacher named in :data:`RECIPES`, :func:`make` trains it with the project's
own loop (:class:`kdviz.experiment.Experiment`) and writes, in ``pretrained/`` (or
``--out DIR``), the weights, a probe set of test images and the model card that
:mod:`kdviz.pretrained` reads (the card last, so a teacher is listed only once all its
files exist).

For every student named in :data:`STUDENT_RECIPES` (the labels-only student and the method
student of each "inside the networks" page, from that page's shipped teacher, see
:data:`STUDENT_BUDGETS`), :func:`make` writes the same kind of card in
``pretrained/students/``; ``kdviz pretrained make-students [DATASET]`` makes all of them,
skipping those already made from the same recipe and teacher (:func:`make_students`).
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from kdviz import preset_runs, presets, pretrained, recording
from kdviz.data import ImageData
from kdviz.evaluation import accuracy, evaluate, predict_logits
from kdviz.experiment import Experiment, RunConfig
from kdviz.files import check_folder_writable, file_sha256, read_json, write_atomic, write_json_atomic
from kdviz.losses import entropy
from kdviz.models import MODELS, model_summary
from kdviz.pretrained import (
    PROBE_KINDS,
    PretrainedError,
    card_path,
    pretrained_dir,
    probe_path,
    students_dir,
    weights_path,
)
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
    # slower for ResNet-20 (BENCHMARKS.md, Speed). Made 2026-11-30 over two sittings (resumed once):
    # 88.08%, short of the 90% it aims at (its last epochs were flat: this schedule has converged);
    # about 150 s an epoch on a free thread of a 2-core Xeon (the card's 17,540 s also count the
    # times it was paused for other measurements); resumable: run the command again after a stop.
    "cifar10-resnet20-full": Recipe("cifar10", "resnet20", TrainSettings(epochs=50, lr=0.1, seed=0, device="cpu",
                                                                         precision="fp32", augment=True),
                                    "CIFAR-10 ResNet-20 at full budget (random crop + flip, 50 epochs; aims at >= 90%)"),
    # The second try at the >= 90% teacher: a Wide ResNet 16-2 (0.7 M weights, 2.6x ResNet-20's
    # weights and about 1.9x its step time), same augmentation and schedule, 40 epochs; resumable.
    # Made 2026-11-30 over two sittings (resumed once): 88.68%, again short of 90% (88.30, 88.56, 88.83,
    # 88.68 over epochs 37-40); about 300 s an epoch on a free thread of a 2-core Xeon without AMX.
    "cifar10-wrn-16-2-full": Recipe("cifar10", "wrn-16-2", TrainSettings(epochs=40, lr=0.1, seed=0, device="cpu",
                                                                         precision="fp32", augment=True),
                                    "CIFAR-10 Wide ResNet 16-2 at full budget (random crop + flip, 40 epochs; "
                                    "aims at >= 90%)"),
    # The >= 90% teacher takes a GPU (the CPU tries above stopped near 89% at what a 2-core machine
    # trains in a working day): the same augmentation and schedule, a wider net, more epochs, bf16
    # autocast and channels-last on the GPU, the data resident there (benchmarks/gpu_run.sh makes it;
    # the card names the GPU). Made 2026-12-01 on an NVIDIA H200: 91.32% after 60 epochs, 269 s of
    # training (4.5 s an epoch, beside a second run on the same GPU). A Wide ResNet 16-2 at 100 epochs,
    # trained beside it, had reached 89.77% at epoch 97 when its 400 s ran out (not shipped).
    "cifar10-wrn-16-4-gpu": Recipe("cifar10", "wrn-16-4", TrainSettings(epochs=60, lr=0.1, seed=0, device="cuda",
                                                                        precision="bf16", augment=True),
                                   "CIFAR-10 Wide ResNet 16-4, 60 epochs on a GPU (random crop + flip; aims at >= 90%)",
                                   threads=8),
    "cifar10-resnet20": Recipe("cifar10", "resnet20", _cpu(epochs=15, lr=0.1, seed=0, precision="bf16",
                                                           augment=True),
                               "CIFAR-10 ResNet-20 (random crop + flip)"),
}


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise PretrainedError(f"no recipe for {name!r}; recipes: {', '.join(RECIPES)}")
    return RECIPES[name]


# --------------------------------------------------------------------------- student recipes
@dataclass(frozen=True)
class StudentRecipe:
    """How one shipped student is made: a run config (data set, student, method with the page's
    parameters, the shipped teacher, budget, seed), trained with the project's loop on ``threads``
    torch threads; ``teacher``: the shipped teacher it is shown beside (for a method student, the
    one it learns from; a labels-only student never sees it); ``record_soft_targets``: also keep its
    outputs on the teacher's followed probe images during training (what the soft-target page replays)."""

    config: RunConfig
    teacher: str
    note: str = ""
    record_soft_targets: bool = False
    threads: int = 1

    @property
    def dataset(self) -> str:
        return self.config.dataset

    def budget(self, train_size: int | None = None) -> str:
        """The budget in words: "2 epochs on 50% of the mnist training set (30,000 images)"."""
        c = self.config
        size = f" ({train_size:,} images)" if train_size else ""
        return (f"{c.train.epochs} epoch{'s' if c.train.epochs > 1 else ''} on {c.fraction:.0%} of the {c.dataset} "
                f"training set{size}, batch {c.train.batch_size}, one-cycle to lr {c.train.lr:g}, seed {c.train.seed}")


# The shipped students' budgets: data set -> page method -> the student and how much it trains. The
# student is each page's own (presets.PRESETS[d].student_for(method)); the budget a few times the
# page's "Train the students now" pair (one epoch on 20%), so the shipped pair shows each method's
# effect clearly, and the whole MNIST set stays within some 10 minutes of one CPU thread (measured
# on the shared 2-core Xeon, avx512_bf16, no AMX; fp32: bf16 is emulated slowly without AMX).
# CIFAR-10 (attention page only) at a reduced fraction: 3 epochs on 20% (10,000 images).
STUDENT_BUDGETS: dict[str, dict[str, presets.Budget]] = {
    "mnist": {"at": presets.Budget("cnn5-small", 0.5, 2), "ft": presets.Budget("cnn5-small", 0.5, 2),
              "rkd": presets.Budget("cnn5-small", 0.5, 2), "fsp": presets.Budget("cnn5", 0.5, 2),
              "kd": presets.Budget("mlp-800", 1.0, 2)},
    "cifar10": {"at": presets.Budget("resnet8", 0.2, 3)},
}
RECORDED_METHODS = ("kd",)  # the soft-target page replays the outputs of its KD pair during training


def student_name(dataset: str, student: str, method: str) -> str:
    """``mnist-cnn5-small-at``: data set, student architecture, method (``baseline``: labels only)."""
    return f"{dataset}-{student}-{method}"


def _student_recipes() -> dict[str, StudentRecipe]:
    out: dict[str, StudentRecipe] = {}
    for dataset, budgets in STUDENT_BUDGETS.items():
        preset = presets.PRESETS[dataset]
        for method, b in budgets.items():
            page_preset = replace(preset, budgets={**preset.budgets, method: b})
            for config in preset_runs.pair_configs(page_preset, method, precision="fp32"):
                config.train = replace(config.train, device="cpu")
                who = (f"labels only, shown beside {preset.teacher}" if config.method == "baseline"
                       else f"{config.method} from {preset.teacher}")
                made = StudentRecipe(config, preset.teacher, f"{dataset} {config.student} student ({who}) for "
                                     "the inside pages",
                                     record_soft_targets=method in RECORDED_METHODS)
                name = student_name(dataset, config.student, config.method)
                if out.get(name, made) != made:
                    raise ValueError(f"two different recipes for the shipped student {name}")
                out[name] = made
    return out


STUDENT_RECIPES: dict[str, StudentRecipe] = _student_recipes()


def student_recipe(name: str) -> StudentRecipe:
    if name not in STUDENT_RECIPES:
        raise PretrainedError(f"no student recipe for {name!r}; student recipes: {', '.join(STUDENT_RECIPES)}")
    return STUDENT_RECIPES[name]


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


def machine_description(device: str) -> str:
    """What a card says trained it: the CPU, its torch threads and, for a GPU run, the GPU."""
    text = f"{cpu_description()}, {torch.get_num_threads()} torch threads"
    if str(device).startswith("cuda") and torch.cuda.is_available():
        text += f"; GPU {torch.cuda.get_device_name(torch.device(device))}"
    return text


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
    """Train the teacher (or shipped student) ``name`` from its recipe and write its files and card
    (a student's in the ``students/`` folder of ``out_dir``).

    ``on_event`` receives every training event (for a progress display). Returns the card."""
    r = STUDENT_RECIPES[name] if name in STUDENT_RECIPES else recipe(name)
    out = Path(out_dir or pretrained_dir())
    check_folder_writable(students_dir(out) if isinstance(r, StudentRecipe) else out, "output folder",
                          "choose another with --out or KDVIZ_PRETRAINED")  # before the training, not after
    threads_before = torch.get_num_threads()
    torch.set_num_threads(r.threads)
    try:
        if isinstance(r, StudentRecipe):
            return _make_student(name, r, students_dir(out), on_event)
        return _make(name, r, out, on_event)
    finally:
        torch.set_num_threads(threads_before)


def card_fields(name: str, note: str, experiment: Experiment, model, measured: dict, record: dict, started: float,
                path: Path) -> dict:
    """What every shipped network's card says (a teacher's and a student's alike): the data, the
    model, the accuracy measured from the shipped file, the training, the machine, the file's sha256."""
    config, test = experiment.config, experiment.test_data
    summary = model_summary(model)
    return {
        "card_version": CARD_VERSION,
        "name": name,
        "description": note,
        "dataset": config.dataset,
        "data_source": experiment.train_data.source,
        "data_note": CIFAR_NOTE if config.dataset == "cifar10" else "",
        "train_size": len(experiment.train_data),
        "test_size": len(test),
        "model": config.student,
        "model_description": MODELS[config.student].description,
        "spec": model.spec.to_dict(),
        "params": summary["params"],
        "classes": list(test.classes),
        "mean": list(test.mean),
        "std": list(test.std),
        "test_acc": measured["accuracy"],
        "test_acc_note": ACCURACY_NOTE.format(dataset=config.dataset, n=len(test)),
        "test_acc_during_training": record["test_acc"],
        "history_test_acc": [round(e["test_acc"], 4) if e["test_acc"] == e["test_acc"] else None  # NaN: no test
                             for e in record["history"]],  # (e.g. FT's paraphraser epoch)
        "epochs": config.train.epochs,
        "seed": config.train.seed,
        "train_settings": config.train.to_dict(),
        "train_time_s": round(record["train_time_s"], 1),
        "wall_time_s": round(max(time.time() - started, record["train_time_s"]), 1),
        "command": command_for(name),
        "machine": machine_description(config.train.device),
        "torch_threads": torch.get_num_threads(),
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "file": path.name,
        "sha256": file_sha256(path),
    }


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
    logits = predict_logits(teacher, test, device="cpu", precision="fp32")
    measured = {"accuracy": accuracy(logits, test.labels)}  # what evaluate() gives, from the same pass
    index, kind = choose_probe(logits, test.labels, r.probe_per_class, seed=r.settings.seed)
    write_probe(probe_path(name, out), test, index, kind)

    info = {
        **card_fields(name, r.note, experiment, teacher, measured, record, started, path),
        "equivalent_command": equivalent_train_command(r),
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
    return info


# --------------------------------------------------------------------------- making a student
SLICE = 1000  # the card also holds the accuracy on the first SLICE test images (a quick check)


def students_for(datasets: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """The student recipes of ``datasets`` (all when None or empty), in recipe order."""
    known = list(dict.fromkeys(r.dataset for r in STUDENT_RECIPES.values()))
    unknown = sorted(set(datasets or ()) - set(known))
    if unknown:
        raise PretrainedError(f"no shipped students for {', '.join(unknown)}; data sets: {', '.join(known)}")
    return [n for n, r in STUDENT_RECIPES.items() if not datasets or r.dataset in datasets]


def student_is_current(name: str, out_dir: Path | str | None = None) -> bool:
    """Whether the student's card in ``out_dir`` is usable, its files match their sha256, and it was
    made from today's recipe and today's shipped teacher (then :func:`make_students` skips it)."""
    folder = students_dir(Path(out_dir or pretrained_dir()))
    path = card_path(name, folder)
    try:
        info = read_json(path)
    except (OSError, ValueError):
        return False
    r = STUDENT_RECIPES[name]
    if pretrained.card_problems(info, pretrained.STUDENT_FIELDS) or not _same_config(info["config"], r.config):
        return False
    try:
        if info["teacher_sha256"] != pretrained.card(r.teacher)["sha256"]:
            return False
        files = [(weights_path(name, folder), info["sha256"])]
        files += [(folder / f["file"], f["sha256"]) for f in info["extra_files"].values()]
        for file, sha in files:
            pretrained.verified(file, sha)
    except PretrainedError:
        return False
    return True


def _same_config(written: dict, config: RunConfig) -> bool:
    """Whether a card's run config is ``config``; a setting added to RunConfig after the card was
    written (e.g. ``data_seed``) matches when the recipe keeps it at its default, which changes nothing."""
    defaults = {f.name: f.default for f in fields(RunConfig)}
    wanted = _plain(config.to_dict())
    added = {k: v for k, v in wanted.items() if k not in written}
    return all(k in defaults and v == _plain(defaults[k]) for k, v in added.items()) and written | added == wanted


def make_students(datasets: list[str] | tuple[str, ...] | None = None, out_dir: Path | str | None = None,
                  on_event: Callable | None = None, on_student: Callable | None = None) -> list[dict]:
    """Make every shipped student of ``datasets`` (all when None) that is not already current, one
    after another; each is resumable (a stopped make goes on from its last finished epoch).
    ``on_student(name, made)`` is told about each before it is made (``made`` False: skipped).
    Returns the cards written."""
    written = []
    for name in students_for(datasets):
        current = student_is_current(name, out_dir)
        if on_student:
            on_student(name, not current)
        if not current:
            written.append(make(name, out_dir, on_event))
    return written


def _plain(value):
    """``value`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def _make_student(name: str, r: StudentRecipe, out: Path, on_event: Callable | None = None) -> dict:
    started, started_cpu = time.time(), time.process_time()
    out.mkdir(parents=True, exist_ok=True)
    config = RunConfig.from_dict({**r.config.to_dict(), "save_model": False})
    teacher_card = pretrained.card(r.teacher)
    with tempfile.TemporaryDirectory(prefix="kdviz-students-") as runs_dir:
        # a recorded run starts over after a stop: its frames of the first epochs would be missing
        experiment = Experiment(config, runs_dir=Path(runs_dir),
                                resume=None if r.record_soft_targets else resume_path(name, out))
        recorder, meta = None, {}
        if r.record_soft_targets:
            factory, meta = recording.follow_probe(r.teacher, len(experiment.train_data), config.train.batch_size)
            recorder = factory()
        for event in experiment.events():
            if recorder is not None:
                recorder(event, experiment.student)
            if on_event:
                on_event(event)
        record = experiment.record
    if record is None or record.get("stopped") or record.get("diverged"):
        raise RuntimeError(f"training {name} did not finish")
    test = experiment.test_data

    # Ship exactly what was measured: save, reload the file, and evaluate what was reloaded.
    path = save_checkpoint(experiment.student.cpu(), weights_path(name, out))
    student = load_checkpoint(path)
    measured = evaluate(student, test, device="cpu", precision="fp32")
    n = min(SLICE, len(test))
    sliced = evaluate(student, test.subset(torch.arange(n)), device="cpu", precision="fp32")["accuracy"]
    extra = {}
    method = experiment.method.cpu()
    if any(True for _ in method.parameters()):  # the method's own trained modules (adapters, paraphraser, ...)
        state = {k: v.detach().cpu() for k, v in method.state_dict().items()}
        extra["method"] = write_atomic(out / f"{name}.method.pt", lambda f: torch.save(state, f))
    if recorder is not None:
        extra["soft_targets"] = write_json_atomic(out / f"{name}.soft_targets.json", {**meta, "frames": recorder.frames})

    info = {
        **card_fields(name, r.note, experiment, student, measured, record, started, path),
        "role": "student",
        "method": config.method,
        "method_params": record["method_params"],
        "teacher": r.teacher,
        "distilled": config.teacher is not None,
        "teacher_sha256": teacher_card["sha256"],
        "teacher_test_acc": teacher_card["test_acc"],
        "budget": r.budget(len(experiment.train_data)),
        "config": _plain(r.config.to_dict()),
        "confusion": measured["confusion"],
        "slice_acc": {"images": n, "accuracy": sliced,
                      "note": f"the same measurement on the first {n} images of the test split"},
        "cpu_time_s": round(time.process_time() - started_cpu, 1),  # this make's CPU time, all its threads
        "command_all": f"kdviz pretrained make-students {config.dataset}",
        "extra_files": {kind: {"file": p.name, "sha256": file_sha256(p)} for kind, p in extra.items()},
    }
    problems = pretrained.card_problems(info, pretrained.STUDENT_FIELDS)
    if problems:
        raise RuntimeError(f"the card made for {name} is not usable: {'; '.join(problems)}")
    write_json_atomic(card_path(name, out), info)
    resume_path(name, out).unlink(missing_ok=True)
    return info
