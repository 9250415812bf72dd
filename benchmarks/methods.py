"""Every distillation method on the same budget: test accuracy, mean ± std over seeds.

    KDVIZ_DATA=... python benchmarks/methods.py --part mnist     # MNIST blocks, 3 seeds (writes BENCHMARKS.md)
    KDVIZ_DATA=... python benchmarks/methods.py --part cifar     # the CIFAR-10 block
    python benchmarks/methods.py --quick --no-write             # smoke run: 5% of the data, 1 epoch, 1 seed

Blocks (one table each, in the ``methods`` section of BENCHMARKS.md):

- MNIST, CNN teacher (pretrained ``mnist-cnn``) -> MLP 784-800-800: the issue's check (KD
  against labels only); the logit and embedding methods. FitNets needs two nets of one kind
  and the map methods (AT, FSP, FT, recasting) need conv maps: n/a for an MLP student.
- MNIST, MLP 784-1200-1200 teacher (pretrained ``mnist-mlp``) -> MLP 784-800-800: the
  seeds' table; FitNets with a linear regressor between hidden layers.
- MNIST, CNN teacher -> cnn5-small: the feature-map methods, where they apply.
- CIFAR-10, a ResNet teacher -> cnn5: all methods on a small budget (a fraction of the
  training set, few epochs: this machine has two shared CPU cores).

Every run is one :class:`kdviz.experiment.Experiment` (SGD Nesterov, one-cycle to lr 0.1,
batch 128, gradient norm capped at 5, bf16 autocast where the CPU has it natively (else fp32), methods at
their registry defaults unless a row says otherwise).
The labels-only baseline of each student is generation 0 of a born-again run
(:func:`kdviz.generations.born_again`), whose generation 1 is the ``ban`` row and whose
two-member ensemble is the ``ban ensemble`` row. Results of finished runs are kept in
``.cache/bench/methods.json`` so an interrupted benchmark resumes where it stopped.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kdviz import pretrained  # noqa: E402
from kdviz.evaluation import resolve_precision  # noqa: E402
from kdviz.experiment import Experiment, RunConfig  # noqa: E402
from kdviz.generations import born_again  # noqa: E402
from kdviz.sweep import Executor, LocalExecutor, RunFailed, RunFinished, make_executor, run_key, run_sweep  # noqa: E402
from kdviz.train import TrainSettings  # noqa: E402

from sections import replace_section  # noqa: E402

START, END = "<!-- methods:start -->", "<!-- methods:end -->"
CACHE = ROOT / ".cache" / "bench"
# bf16 where the CPU runs it natively (AMX / AVX-512 BF16), else fp32: emulated bf16 is ~10x slower
PRECISION = resolve_precision("auto", "cpu")
GRAD_CLIP = 5.0


@dataclass
class Row:
    label: str
    method: str
    params: dict = field(default_factory=dict)


@dataclass
class Block:
    key: str
    title: str
    dataset: str
    teacher: str            # pretrained name or checkpoint path
    student: str
    epochs: int
    rows: list[Row]
    fraction: float = 1.0
    augment: bool = False
    not_applicable: str = ""
    baseline_of: str = ""   # key of a block whose baseline runs are the same runs (same student, data, budget)


# RKD's losses come from the Gram matrix since the speed work (about 20 ms a step for MLP-800's 800-d
# embedding at batch 128, against about 1 s before), so it runs for the MLP students too.
PLAIN_GAN = {"form": "gan", "conditional": False}  # the rows measured before Xu et al.'s form became the default


def mnist_blocks(epochs_mlp: int, epochs_cnn: int, cnn_fraction: float) -> list[Block]:
    return [
        Block("mnist-cnn-mlp800", "MNIST: CNN teacher (mnist-cnn) → MLP 784-800-800 (the issue's check)", "mnist",
              "mnist-cnn", "mlp-800", epochs_mlp,
              [Row("kd (T=4, α=0.9)", "kd"), Row("logits (Ba & Caruana, w=0.2)", "logits"),
               Row("adversarial (GAN on logits)", "adversarial", PLAIN_GAN),
               Row("adversarial (WGAN-GP on softmax)", "adversarial", {"form": "wgan", "inputs": "softmax", "conditional": False}),
               Row("rkd (distance 25, angle 50)", "rkd")],
              not_applicable="fitnet: n/a (CNN teacher, MLP student: hint and guided layers are of different kinds); "
                             "at, fsp, ft, recast: n/a (an MLP student has no feature maps)"),
        Block("mnist-mlp1200-mlp800", "MNIST: MLP 784-1200-1200 teacher (mnist-mlp) → MLP 784-800-800 (the seeds' table)",
              "mnist", "mnist-mlp", "mlp-800", epochs_mlp,
              [Row("kd (T=4, α=0.9)", "kd"), Row("logits (Ba & Caruana, w=0.2)", "logits"),
               Row("fitnet (2-stage: +1 hint epoch, linear regressor)", "fitnet"),
               Row("adversarial (GAN on logits)", "adversarial", PLAIN_GAN), Row("rkd (distance 25, angle 50)", "rkd")],
              not_applicable="at, fsp, ft, recast: n/a (MLPs have no feature maps)",
              baseline_of="mnist-cnn-mlp800"),
        Block("mnist-cnn-cnn5small", "MNIST: CNN teacher (mnist-cnn, 32/64/128) → cnn5-small (16/32/64)", "mnist",
              "mnist-cnn", "cnn5-small", epochs_cnn,
              [Row("kd (T=4, α=0.9)", "kd"), Row("fitnet (2-stage: +1 hint epoch)", "fitnet"),
               Row("at (β=1000)", "at"), Row("at + kd", "at+kd"), Row("fsp (2-stage: +1 FSP epoch)", "fsp"),
               Row("ft (β=500: +1 paraphraser epoch)", "ft"), Row("recast (+1 epoch per block, then KD)", "recast"),
               Row("rkd (distance 25, angle 50)", "rkd"), Row("rkd + kd", "rkd+kd"),
               Row("rkd, distance term only", "rkd", {"angle_weight": 0})],
              fraction=cnn_fraction,
              not_applicable="Phases (hint, FSP, paraphraser, recasting) come on top of the main epochs, as written "
                             "in each row."),
    ]


def cifar_block(teacher: str, teacher_name: str, fraction: float, epochs: int) -> Block:
    return Block("cifar10-cnn5", f"CIFAR-10: {teacher_name} → cnn5 ({fraction:.0%} of the training set, {epochs} epochs, "
                 "random crop + flip)", "cifar10", teacher, "cnn5", epochs,
                 [Row("kd (T=4, α=0.9)", "kd"), Row("logits (Ba & Caruana, w=0.2)", "logits"), Row("fitnet (2-stage)", "fitnet"),
                  Row("at (β=1000)", "at"), Row("at + kd", "at+kd"), Row("fsp (2-stage)", "fsp"), Row("ft (β=500)", "ft"),
                  Row("rkd", "rkd"), Row("recast (KD)", "recast"), Row("adversarial (GAN on logits)", "adversarial", PLAIN_GAN)],
                 fraction=fraction, augment=True)


# --------------------------------------------------------------------------- runs
def load_results(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def save_results(results: dict, path: Path) -> None:
    """Merge ``results`` into the file, atomically and under a lock, so that the MNIST and the
    CIFAR parts can run at once (each on one core) without losing each other's runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        merged = load_results(path)
        for key, runs in results.items():
            merged.setdefault(key, {}).update(runs)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(merged, indent=1))
        tmp.replace(path)
    for key, runs in merged.items():
        results.setdefault(key, {}).update(runs)


def settings_for(block: Block, seed: int) -> TrainSettings:
    return TrainSettings(epochs=block.epochs, batch_size=128, lr=0.1, seed=seed, device="cpu", precision=PRECISION,
                         augment=block.augment, grad_clip=GRAD_CLIP)


def summary(record: dict) -> dict:
    return {"test_acc": record["test_acc"], "train_time_s": record["train_time_s"]}


def budget_key(block: Block) -> str:
    """Where a block's runs are kept: its name and its budget, so other budgets never mix in."""
    return f"{block.key}@{block.epochs}ep,{block.fraction:g}"


def run_block(block: Block, seeds: list[int], results: dict, results_path: Path, runs_dir: Path,
              executor: Executor | None = None) -> None:
    done = results.setdefault(budget_key(block), {})
    wanted: dict[str, list[str]] = {}  # run key -> the table cells ("label/seed") it fills
    configs = []
    for seed in seeds:
        base = RunConfig(dataset=block.dataset, student=block.student, method="ban", teacher=None,
                         train=settings_for(block, seed), fraction=block.fraction, save_model=False)
        if block.baseline_of:
            pass  # its baseline is another block's (same student, data and budget)
        elif f"baseline/{seed}" not in done:
            started = time.time()
            # generation 0 of born_again is the labels-only baseline; generation 1 is BAN
            # (born_again itself moves generation k to seed + k)
            records = born_again(base, generations=1, runs_dir=runs_dir)
            done[f"baseline/{seed}"] = summary(records[0])
            done[f"ban/{seed}"] = summary(records[1])
            done[f"ban ensemble/{seed}"] = {"test_acc": records[1]["ensemble_acc"], "train_time_s": None}
            save_results(results, results_path)
            print(f"{block.key} seed {seed}: baseline {100 * records[0]['test_acc']:.2f}%  ban "
                  f"{100 * records[1]['test_acc']:.2f}%  ensemble {100 * records[1]['ensemble_acc']:.2f}%  "
                  f"({time.time() - started:.0f} s)", flush=True)
        for row in block.rows:
            if f"{row.label}/{seed}" not in done:
                config = replace(base, method=row.method, params=dict(row.params), teacher=block.teacher)
                wanted.setdefault(run_key(config), []).append(f"{row.label}/{seed}")
                configs.append(config)
    # the rows: one sweep through the one runner (kdviz.sweep); finished cells are kept in results_path
    events = run_sweep(configs, executor or LocalExecutor(1, cpus_per_run=None), runs_dir, resume=False)
    for event in events:
        if isinstance(event, RunFailed):
            print(f"{block.key}: {', '.join(wanted[event.key])} failed: {event.error}", flush=True)
        elif isinstance(event, RunFinished):
            for cell in wanted[event.key]:
                done[cell] = summary(event.record)
            save_results(results, results_path)
            print(f"{block.key} seed {event.config.train.seed}: {', '.join(c.split('/')[0] for c in wanted[event.key])} "
                  f"{100 * event.record['test_acc']:.2f}% ({event.record['wall_time_s']:.0f} s)", flush=True)


# --------------------------------------------------------------------------- table
def mean_std(values: list[float]) -> str:
    mean = 100 * statistics.mean(values)
    std = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {std:.2f}"


def teacher_accuracy(teacher: str) -> str:
    if teacher in pretrained.names():
        return f"{100 * pretrained.card(teacher)['test_acc']:.2f}%"
    meta = Path(teacher).with_suffix(".json")
    return f"{100 * json.loads(meta.read_text())['test_acc']:.2f}%" if meta.exists() else "?"


def block_table(block: Block, seeds: list[int], results: dict) -> str:
    done = dict(results.get(budget_key(block), {}))
    if block.baseline_of:
        shared = results.get(budget_key(replace(block, key=block.baseline_of)), {})
        done.update({k: v for k, v in shared.items() if k.startswith("baseline/")})
        labels, keys = ["baseline (labels only; the runs of the table above)"], ["baseline"]
    else:
        labels = ["baseline (labels only)", "ban (generation 1)", "ban ensemble (generations 0 + 1)"]
        keys = ["baseline", "ban", "ban ensemble"]
    labels, keys = [*labels, *[r.label for r in block.rows]], [*keys, *[r.label for r in block.rows]]
    lines = [f"### {block.title}", "",
             f"Teacher `{Path(block.teacher).name}`: {teacher_accuracy(block.teacher)} test accuracy. Budget per run: {block.epochs} "
             f"epochs on {block.fraction:.0%} of the training set; seeds {', '.join(map(str, seeds))}.", "",
             "| method | test accuracy % (mean ± std) | per seed | train s / run |", "|---|---|---|---|"]
    for label, key in zip(labels, keys):
        runs = [done.get(f"{key}/{s}") for s in seeds]
        if not any(runs):
            lines.append(f"| {label} | pending | | |")
            continue
        accs = [r["test_acc"] for r in runs if r]
        times = [r["train_time_s"] for r in runs if r and r["train_time_s"] is not None]
        per_seed = " / ".join(f"{100 * a:.2f}" for a in accs) + ("" if len(accs) == len(seeds) else " (incomplete)")
        lines.append(f"| {label} | {mean_std(accs)} | {per_seed} | {statistics.mean(times):.0f} |" if times else
                     f"| {label} | {mean_std(accs)} | {per_seed} | – |")
    if block.not_applicable:
        lines += ["", block.not_applicable]
    return "\n".join(lines)


def section(blocks: list[Block], seeds: list[int], results: dict, command: str, cifar_note: str) -> str:
    return "\n".join([
        START,
        "## Distillation methods (`benchmarks/methods.py`)",
        "",
        f"Command: `{command}`",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()} CPU, {torch.get_num_threads()} threads "
        f"(cores shared with other work: times are indicative only), torch {torch.__version__}. Every run: SGD "
        f"Nesterov momentum 0.9, weight decay 5e-4, one-cycle to lr 0.1, batch 128, gradient norm capped at {GRAD_CLIP:g}, {PRECISION}, "
        "method defaults "
        "from the registry. The baseline is generation 0 of a born-again run (seed s), `ban` its generation 1 "
        "(seed s + 1, taught by generation 0), `ban ensemble` the mean softmax of both.",
        "",
        *[block_table(b, seeds, results) + "\n" for b in blocks],
        cifar_note,
        END,
    ])


def write_section(text: str, path: Path) -> None:
    replace_section(path, START, END, text)


# --------------------------------------------------------------------------- CIFAR teacher
def cifar_teacher(epochs: int, runs_dir: Path) -> tuple[str, str]:
    """The pretrained ResNet-20 when shipped; otherwise a ResNet-8 trained here once and cached."""
    if "cifar10-resnet20" in pretrained.names():
        return "cifar10-resnet20", "ResNet-20 teacher (pretrained cifar10-resnet20)"
    path = CACHE / f"cifar10-resnet8-{epochs}ep.pt"
    if not path.exists():
        print(f"training a ResNet-8 CIFAR-10 teacher for {epochs} epochs (cached in {path})", flush=True)
        config = RunConfig(dataset="cifar10", student="resnet8", method="baseline",
                           train=TrainSettings(epochs=epochs, batch_size=128, lr=0.1, device="cpu", precision=PRECISION,
                                               augment=True))
        record = Experiment(config, runs_dir=runs_dir).run()
        path.parent.mkdir(parents=True, exist_ok=True)
        Path(record["checkpoint"]).replace(path)
        path.with_suffix(".json").write_text(json.dumps({"test_acc": record["test_acc"], "epochs": epochs}))
    return str(path), f"ResNet-8 teacher trained here for {epochs} epochs (no pretrained ResNet was shipped yet)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("mnist", "cifar", "all"), default="mnist")
    parser.add_argument("--only", default="", help="run only the MNIST block with this key (the table shows all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs-mlp", type=int, default=10, help="MNIST MLP students (10 as in the issue's check)")
    parser.add_argument("--epochs-cnn", type=int, default=2, help="MNIST cnn5-small students")
    parser.add_argument("--cnn-fraction", type=float, default=0.25, help="MNIST cnn5-small table: part of the training set")
    parser.add_argument("--cifar-fraction", type=float, default=0.2)
    parser.add_argument("--cifar-epochs", type=int, default=3)
    parser.add_argument("--cifar-teacher-epochs", type=int, default=10, help="only when no pretrained ResNet is shipped")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5%% of the data, 1 epoch, first seed only")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    parser.add_argument("--results", default=str(CACHE / "methods.json"), help="finished runs (resumable)")
    parser.add_argument("--workers", type=int, default=1,
                        help="runs of a table at once, as processes of --threads each (default 1: in this process)")
    parser.add_argument("--ray", default=None, metavar="ADDRESS",
                        help="run the tables' rows on a Ray cluster (or 'local'); default $KDVIZ_RAY_ADDRESS")
    args = parser.parse_args(argv)
    threads = int(os.environ.get("KDVIZ_THREADS", "2"))
    torch.set_num_threads(threads)
    executor = (LocalExecutor(1, cpus_per_run=None) if args.workers == 1 and not (args.ray or os.environ.get("KDVIZ_RAY_ADDRESS"))
                else make_executor(args.ray, args.workers, threads))

    results_path = Path(args.results)
    if args.quick:
        results_path = results_path.with_name("methods-quick.json")
        args.seeds, args.epochs_mlp, args.epochs_cnn, args.cifar_epochs = args.seeds[:1], 1, 1, 1
    results = load_results(results_path)
    runs_dir = Path(tempfile.mkdtemp(prefix="kdviz-bench-methods-"))
    blocks = mnist_blocks(args.epochs_mlp, args.epochs_cnn, args.cnn_fraction)
    if args.quick:
        blocks = [replace(b, fraction=0.05 * b.fraction) for b in blocks]
    cifar_note = "### CIFAR-10\n\nPending: run `python benchmarks/methods.py --part cifar`."
    if args.part in ("mnist", "all"):
        for block in blocks:
            if not args.only or block.key == args.only:
                run_block(block, args.seeds, results, results_path, runs_dir, executor)
    shown = list(blocks)
    if args.part in ("cifar", "all"):
        teacher, teacher_name = cifar_teacher(args.cifar_teacher_epochs, runs_dir)
        fraction = 0.02 if args.quick else args.cifar_fraction
        # what the CIFAR table was measured with, so a later --part mnist run can redraw it
        results.setdefault("meta", {})["cifar"] = {"teacher": teacher, "teacher_name": teacher_name,
                                                   "fraction": fraction, "epochs": args.cifar_epochs}
        save_results(results, results_path)
        run_block(cifar_block(teacher, teacher_name, fraction, args.cifar_epochs), args.seeds, results, results_path,
                  runs_dir, executor)
    results = load_results(results_path) if results_path.exists() else results  # runs another process added
    meta = results.get("meta", {}).get("cifar")
    if meta:
        shown.append(cifar_block(meta["teacher"], meta["teacher_name"], meta["fraction"], meta["epochs"]))
        cifar_note = ""
    command = (f"KDVIZ_DATA=<data dir> python benchmarks/methods.py --part mnist --seeds {' '.join(map(str, args.seeds))} "
               f"--epochs-mlp {args.epochs_mlp} --epochs-cnn {args.epochs_cnn} --cnn-fraction {args.cnn_fraction}")
    if meta:
        command += (f"` and `KDVIZ_DATA=<data dir> python benchmarks/methods.py --part cifar --seeds "
                    f"{' '.join(map(str, args.seeds))} --cifar-fraction {meta['fraction']} --cifar-epochs {meta['epochs']}")
    command += " --quick" if args.quick else ""
    text = section(shown, args.seeds, results, command, cifar_note)
    print(text)
    if not args.no_write:
        write_section(text, ROOT / "BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
