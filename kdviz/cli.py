"""The ``kdviz`` command line: train a teacher, distill a student, list runs.

Bad input ends with one line on stderr and exit code 2; ``--json`` prints the
final metrics as JSON on stdout.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import threading
from pathlib import Path

from tqdm import tqdm

from kdviz import experiments, pretrained, recipes
from kdviz.data import DATASETS, DataNotFound
from kdviz.data import load as load_data
from kdviz.experiment import Experiment, RunConfig, RunSaveError
from kdviz.files import check_file_writable
from kdviz.generations import born_again
from kdviz.methods import REGISTRY, method_names
from kdviz.models import MODELS
from kdviz.probes import views
from kdviz.runs import default_runs_dir, list_runs
from kdviz.sweep import (
    SYNONYMS,
    RunFailed,
    RunFinished,
    RunProgress,
    SweepFinished,
    SweepStarted,
    check_config,
    check_teachers,
    finished_runs,
    grid_from_spec,
    make_executor,
    run_key,
    run_sweep,
    sweep_file,
)
from kdviz.train import EpochDone, PhaseStarted, StepDone, TrainSettings


def _add_training_options(p: argparse.ArgumentParser, epochs: int, lr: float) -> None:
    p.add_argument("--dataset", default="mnist", help=f"{', '.join(DATASETS)}, or a folder with train/ and test/ (default mnist)")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=lr, help="peak learning rate")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    p.add_argument("--schedule", choices=("onecycle", "cosine", "constant"), default="onecycle")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--grad-clip", type=float, default=5.0, help="max gradient norm per step, 0 = off (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="auto (default): bf16 autocast where the hardware runs it natively, else fp32")
    p.add_argument("--bf16", action="store_true", help="shorthand for --precision bf16")
    p.add_argument("--augment", action="store_true", help="random crop and flip (CIFAR)")
    p.add_argument("--jitter", type=int, default=0, metavar="PIXELS",
                   help="shift each training image by up to PIXELS pixels (Hinton et al. 2015: 2 on MNIST)")
    p.add_argument("--runs-dir", default=None, help="where records go (default $KDVIZ_RUNS or ./runs)")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument ends with one line on stderr (no usage block) and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kdviz", description="Knowledge distillation you can see.")
    sub = parser.add_subparsers(dest="command", required=True)

    teacher = sub.add_parser("train-teacher", help="train a network on labels (a teacher)")
    teacher.add_argument("--model", default="cnn5", help=f"one of: {', '.join(MODELS)}")
    teacher.add_argument("--fraction", type=float, default=1.0, help="part of the training set used")
    _add_training_options(teacher, epochs=3, lr=0.1)

    distill = sub.add_parser("distill", help="train a student from a teacher")
    distill.add_argument("--teacher", default=None, help="pretrained name, run id, or checkpoint path (not with --generations)")
    distill.add_argument("--student", default="mlp-800", help=f"one of: {', '.join(MODELS)}")
    distill.add_argument("--method", default="kd", help=f"one of: {', '.join(method_names())}; combine with +")
    distill.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                         help="method hyperparameter, repeatable (e.g. --param T=4 --param alpha=0.9)")
    distill.add_argument("-T", "--temperature", type=float, default=None, help="shorthand for --param T=...")
    distill.add_argument("--alpha", type=float, default=None, help="shorthand for --param alpha=...")
    distill.add_argument("--fraction", type=float, default=1.0, help="part of the training set used (transfer set)")
    distill.add_argument("--omit-classes", default="", help="comma-separated class indices left out of the transfer set")
    distill.add_argument("--hide-labels", action="store_true", help="the student learns from the teacher only")
    distill.add_argument("--generations", type=int, default=None,
                         help="born-again networks (--method ban): generation 0 on labels, then this many generations "
                              "each taught by the previous one; reports their ensemble")
    _add_training_options(distill, epochs=5, lr=0.1)

    runs = sub.add_parser("runs", help="list saved runs")
    runs.add_argument("--runs-dir", default=None)
    runs.add_argument("--json", action="store_true")

    methods = sub.add_parser("methods", help="list distillation methods and their hyperparameters")
    methods.add_argument("--json", action="store_true")

    sweep = sub.add_parser("sweep", help="run a grid of runs (methods x seeds x any setting), here or on a Ray cluster",
                           description="Every combination of the given values, each an ordinary run record; runs "
                                       "already finished in the runs directory are skipped (resume by running again).")
    sweep.add_argument("--config", default=None, metavar="FILE",
                       help="a TOML or JSON file of settings (scalars) and axes (lists); flags override it")
    sweep.add_argument("--methods", nargs="+", default=None, help="methods to compare (default: baseline kd)")
    sweep.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: 0)")
    sweep.add_argument("--dataset", nargs="+", default=None, help=f"one or more of {', '.join(DATASETS)} (default mnist)")
    sweep.add_argument("--student", nargs="+", default=None, help="one or more models (default mlp-800)")
    sweep.add_argument("--teacher", default=None,
                       help="pretrained name, run id, or checkpoint path (default: the shipped teacher of the data set)")
    sweep.add_argument("--epochs", type=int, nargs="+", default=None, help="(default 5)")
    sweep.add_argument("--batch-size", type=int, default=None)
    sweep.add_argument("--lr", type=float, nargs="+", default=None)
    sweep.add_argument("-T", "--temperature", type=float, nargs="+", default=None, help="KD temperatures (an axis)")
    sweep.add_argument("--alpha", type=float, nargs="+", default=None, help="KD soft-target weights (an axis)")
    sweep.add_argument("--fraction", type=float, nargs="+", default=None, help="parts of the training set (an axis)")
    sweep.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=None, help="(default auto)")
    sweep.add_argument("--device", default=None, help="auto (CUDA when present), cpu or cuda")
    sweep.add_argument("--set", action="append", default=[], metavar="NAME=V1,V2",
                       help="any run setting, training setting or hyperparameter; several values make an axis "
                            "(repeatable, e.g. --set weight_decay=0,5e-4 --set at.beta=500,1000)")
    sweep.add_argument("--ray", default=None, metavar="ADDRESS",
                       help="run on a Ray cluster at ADDRESS (or 'local': a Ray instance here; default $KDVIZ_RAY_ADDRESS)")
    sweep.add_argument("--local", action="store_true", help="run here even when $KDVIZ_RAY_ADDRESS is set")
    sweep.add_argument("--workers", type=int, default=None,
                       help="local: runs at once, as processes (default: 1, in this process)")
    sweep.add_argument("--cpus-per-run", type=int, default=1,
                       help="CPU threads per run, locally and as each Ray task's num_cpus (default 1: the same "
                            "threads everywhere give the same numbers)")
    sweep.add_argument("--gpus-per-run", type=float, default=0.0, help="Ray: each task's num_gpus (0.25 = 4 runs a GPU)")
    sweep.add_argument("--runs-dir", default=None, help="where records go (default $KDVIZ_RUNS or ./runs)")
    sweep.add_argument("--no-resume", action="store_true", help="run again even what already finished")
    sweep.add_argument("--dry-run", action="store_true", help="list the runs (and which are done); train nothing")
    sweep.add_argument("--json", action="store_true", help="print every run and the per-setting means as JSON")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    exp = sub.add_parser("experiment", help="run one of the papers' experiments (missing-class, no-labels, ...)")
    exp.add_argument("name", help="the experiment (see kdviz.experiments.EXPERIMENTS)")
    exp.add_argument("--preset", choices=sorted({p for e in experiments.EXPERIMENTS.values() for p in e.presets}),
                     default="quick", help="quick: a minute on a laptop; full: the budget of the shipped results; "
                                           "full-X: the same on another data set (little-data: full-cifar10)")
    exp.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="overrides",
                     help="change one setting of the preset, repeatable (e.g. --set missing=5 --set seeds=0,1)")
    exp.add_argument("--out", default=None, help="also write the result file here (e.g. results/experiments/NAME.json)")
    exp.add_argument("--runs-dir", default=None, help="where the run records go (default $KDVIZ_RUNS or ./runs)")
    exp.add_argument("--json", action="store_true", help="print the summary as JSON")
    exp.add_argument("--quiet", action="store_true", help="no progress bars")

    pre = sub.add_parser("pretrained", help="the shipped teachers and students: list them, or make them from their recipes")
    pre.add_argument("action", choices=("list", "make", "make-students", "make-logits"))
    pre.add_argument("name", nargs="*", help="make: the teacher or student to train (see kdviz.recipes.RECIPES and "
                                             "STUDENT_RECIPES); make-students: the data sets (default: all); "
                                             "make-logits: the teachers whose test-set logits to ship (default: all)")
    pre.add_argument("--out", default=None, help="make: folder for the files (default $KDVIZ_PRETRAINED or pretrained/)")
    pre.add_argument("--json", action="store_true")
    return parser


def _settings(args):
    return TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                         weight_decay=args.weight_decay, schedule=args.schedule, seed=args.seed, device=args.device,
                         precision="bf16" if args.bf16 else args.precision, augment=args.augment,
                         jitter=args.jitter, grad_clip=args.grad_clip)


def _parse_params(args) -> dict:
    params = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--param needs NAME=VALUE, got {item!r}")
        name = name.strip()
        if name in params:
            raise ValueError(f"--param {name} given twice ({params[name]!r} and {value.strip()!r}); give it once")
        params[name] = value.strip()
    for flag, name, value in (("-T", "T", args.temperature), ("--alpha", "alpha", args.alpha)):
        if value is not None and name in params:
            raise ValueError(f"{flag} and --param {name}={params[name]} both given; give one")
    if args.temperature is not None:
        if args.temperature <= 0:
            raise ValueError(f"temperature T must be > 0, got {args.temperature}")
        params["T"] = args.temperature
    if args.alpha is not None:
        if not 0 <= args.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {args.alpha}")
        params["alpha"] = args.alpha
    return params


def _config(args):
    if args.command == "train-teacher":
        return RunConfig(dataset=args.dataset, student=args.model, method="baseline", train=_settings(args),
                         fraction=args.fraction)
    try:
        omit = tuple(int(c) for c in args.omit_classes.split(",") if c.strip())
    except ValueError:
        raise ValueError(f"--omit-classes needs comma-separated class indices, got {args.omit_classes!r}") from None
    return RunConfig(dataset=args.dataset, student=args.student, method=args.method, params=_parse_params(args),
                     teacher=args.teacher, train=_settings(args), fraction=args.fraction, omit_classes=omit,
                     hide_labels=args.hide_labels)


def _born_again(args) -> int:
    if args.teacher:
        raise ValueError("--teacher is not used with --generations: generation 0 learns from the labels and each "
                         "later one from the generation before")
    records = born_again(_config(args), args.generations, args.runs_dir)
    last = records[-1]
    summary = {"ids": last["generation_ids"], "generation_accs": last["generation_accs"],
               "ensemble_acc": last["ensemble_acc"], "method": last["method"], "seed": records[0]["seed"]}
    if args.json:
        print(json.dumps(summary))
    else:
        for record in records:
            print(f"generation {record['generation']}: {record['id']}  test accuracy {100 * record['test_acc']:.2f}%")
        print(f"ensemble of {len(records)} generations: test accuracy {100 * last['ensemble_acc']:.2f}%")
    return 0


def _train(args) -> int:
    if getattr(args, "generations", None) is not None:
        return _born_again(args)
    if args.command == "distill" and not args.teacher:
        raise ValueError("distill needs --teacher (a pretrained name, run id or checkpoint path)")
    experiment = Experiment(_config(args), runs_dir=args.runs_dir)
    bar = None
    for event in experiment.events():
        if args.quiet:
            continue
        if isinstance(event, PhaseStarted):
            if bar:
                bar.close()
            bar = tqdm(total=event.epochs * event.steps_per_epoch, desc=event.phase, unit="step", file=sys.stderr)
        elif isinstance(event, StepDone):
            bar.update(1)
            bar.set_postfix(epoch=event.epoch, loss=f"{event.losses['total']:.4f}", refresh=False)
        elif isinstance(event, EpochDone) and event.test_acc == event.test_acc:
            bar.write(f"epoch {event.epoch}/{event.epochs}  test acc {100 * event.test_acc:.2f}%  "
                      f"{event.images_per_s:,.0f} img/s", file=sys.stderr)
    if bar:
        bar.close()
    record = experiment.record
    if record.get("diverged"):
        print(f"kdviz: error: {record['diverged']['message']} Run {record['id']} was saved, marked diverged, "
              f"with test accuracy {100 * record['test_acc']:.2f}% from those weights.", file=sys.stderr)
        return 1
    summary = {k: record[k] for k in ("id", "test_acc", "params", "latency_ms", "train_time_s", "seed", "method")}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{record['id']}: test accuracy {100 * record['test_acc']:.2f}%  ({record['params']:,} parameters, "
              f"{record['latency_ms']:.3f} ms/image, {record['train_time_s']:.1f} s)")
    return 0


def _runs(args) -> int:
    if args.runs_dir and Path(args.runs_dir).exists() and not Path(args.runs_dir).is_dir():
        raise ValueError(f"runs directory {args.runs_dir} is a file, not a folder")
    records = list_runs(args.runs_dir)
    if args.json:
        print(json.dumps([{k: r.get(k) for k in ("id", "method", "test_acc", "seed", "error")} for r in records]))
        return 0
    if not records:
        print("no runs yet")
    for r in records:
        try:
            print(f"{r['id']:<60} {r['method']:<12} {100 * r['test_acc']:6.2f}%  seed {r['seed']}")
        except (KeyError, TypeError, ValueError):
            print(f"{r.get('id')}: {r.get('error') or 'incomplete record'}")
    return 0


def _methods(args) -> int:
    rows = {name: {"title": cls.title, "formula": cls.formula,
                   "hyperparams": {h.name: {"default": h.default, "low": h.low, "high": h.high, "help": h.help}
                                   for h in cls.hyperparams}}
            for name, cls in REGISTRY.items()}
    if args.json:
        print(json.dumps(rows))
        return 0
    for name, row in rows.items():
        params = ", ".join(f"{k}={v['default']}" for k, v in row["hyperparams"].items())
        print(f"{name:<12} {row['title']}" + (f"  [{params}]" if params else ""))
    return 0


def _pretrained_make(args) -> int:
    name = args.name[0] if len(args.name) == 1 else None
    if name not in recipes.RECIPES and name not in recipes.STUDENT_RECIPES:
        given = (f"no recipe for {name!r}" if name else "make needs one teacher or student name"
                 if not args.name else f"make takes one name, got {len(args.name)}")
        raise ValueError(f"{given}; recipes: {', '.join(recipes.RECIPES)}; "
                         f"student recipes: {', '.join(recipes.STUDENT_RECIPES)}")

    def report(event):
        if isinstance(event, EpochDone) and not args.json:
            print(f"epoch {event.epoch}/{event.epochs}  test acc {100 * event.test_acc:.2f}%  "
                  f"{event.images_per_s:,.0f} img/s  {event.elapsed:.0f} s", file=sys.stderr, flush=True)

    info = recipes.make(name, args.out, on_event=report)
    if args.json:
        print(json.dumps(info))
    else:
        _print_made(info)
    return 0


def _print_made(info: dict) -> None:
    files = [info["file"], *(f["file"] for f in info.get("extra_files", {}).values())]
    if "probe_file" in info:
        files.append(info["probe_file"])
    print(f"{info['name']}: test accuracy {100 * info['test_acc']:.2f}% after {info['epochs']} epochs "
          f"({info['wall_time_s']:.0f} s); wrote {', '.join(files)}, {info['name']}.json", flush=True)


def _pretrained_make_students(args) -> int:
    names = recipes.students_for(args.name)  # unknown data sets fail here, before any training

    def report(event):
        if isinstance(event, EpochDone) and not args.json:
            print(f"  epoch {event.epoch}/{event.epochs}  test acc {100 * event.test_acc:.2f}%  "
                  f"{event.images_per_s:,.0f} img/s  {event.elapsed:.0f} s", file=sys.stderr, flush=True)

    def announce(name, made):
        if not args.json:
            print(f"{name}: making ({names.index(name) + 1}/{len(names)})" if made else
                  f"{name}: already made from this recipe and teacher, skipped", file=sys.stderr, flush=True)

    written = recipes.make_students(args.name, args.out, on_event=report, on_student=announce)
    if args.out is None:  # the inside pages' default views of the shipped students, beside them
        for made in views.make_all_maps(args.name):
            if not args.json:
                print(f"{made['dataset']}: {'wrote' if made['made'] else 'kept (current)'} the factor page's "
                      f"t-SNE maps, {made['file']}", file=sys.stderr, flush=True)
        for made in views.make_all(args.name):
            if not args.json:
                print(f"{made['dataset']}: {'wrote' if made['made'] else 'kept (current)'} the {made['page']} page's "
                      f"default view ({', '.join(made['views'])}), {made['file']}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(written))
    for info in [] if args.json else written:
        _print_made(info)
    return 0


def _pretrained_make_logits(args) -> int:
    """Ship each named teacher's test-set logits (``pretrained/<name>.test_logits.npz``, sha256 in its card)."""
    names = args.name or pretrained.names()
    unknown = [name for name in names if name not in pretrained.names()]
    if unknown:
        raise ValueError(f"no shipped teacher {', '.join(map(repr, unknown))}; shipped: {', '.join(pretrained.names())}")
    tests = {name: load_data(pretrained.card(name)["dataset"]).test for name in names}  # missing data fails first
    for name in names:
        made = pretrained.make_test_logits(name, tests[name])
        size = pretrained.test_logits_path(name).stat().st_size
        print(json.dumps({"name": name, **made}) if args.json else
              f"{name}: wrote {made['test_logits_file']} ({made['test_logits_images']:,} test images, {size / 1e3:.0f} kB)",
              flush=True)
    return 0


def _gpu_of(card: dict) -> str:
    """" on <GPU>" for a network a card says was trained on a GPU (its seconds are a GPU's), else ""."""
    machine = card.get("machine", "")
    return f" on {machine.split('; GPU ', 1)[1]}" if "; GPU " in machine else ""


def _pretrained(args) -> int:
    if args.action == "make-logits":
        return _pretrained_make_logits(args)
    if args.action == "make":
        return _pretrained_make(args)
    if args.action == "make-students":
        return _pretrained_make_students(args)
    if args.name:
        raise ValueError(f"list takes no names, got {' '.join(args.name)}")
    cards, broken = pretrained.cards()
    for name, reason in broken.items():  # one broken card is reported, never hides the others
        print(f"kdviz: warning: skipped {name}: {reason}", file=sys.stderr)
    if args.json:
        print(json.dumps(cards + [{"name": name, "error": reason} for name, reason in broken.items()]))
        return 0
    if not cards:
        print("no pretrained teachers shipped" if not broken else "no usable pretrained teachers shipped")
    width = max((len(c["name"]) for c in cards), default=0)
    for c in cards:
        print(f"{c['name']:<{width}}  {c['dataset']:<14} {c['model']:<9} test accuracy {100 * c['test_acc']:.2f}%  "
              f"({c['epochs']} epochs, {c['wall_time_s']:.0f} s{_gpu_of(c)})")
    students, broken = pretrained.student_cards()
    for name, reason in broken.items():
        print(f"kdviz: warning: skipped student {name}: {reason}", file=sys.stderr)
    if students:
        print(f"\nstudents ({pretrained.students_dir()}; for the inside pages; `kdviz pretrained make-students`):")
    for c in students:
        source = f"{c['method']} from {c['teacher']}" if c.get("distilled") else f"labels only, beside {c['teacher']}"
        print(f"{c['name']:<26} {c['model']:<11} {source:<30} test accuracy {100 * c['test_acc']:.2f}%  "
              f"({c['epochs']} epochs on {c['config']['fraction']:.0%}, {c['wall_time_s']:.0f} s)")
    return 0


def _value(text: str):
    """A --set value: a JSON number, boolean or list when it reads as one, else the text."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def _sweep_spec(args) -> dict:
    spec = sweep_file(args.config) if args.config else {}
    spec = {SYNONYMS.get(k.replace("-", "_"), k.replace("-", "_")): v for k, v in spec.items()}
    flags = {"method": args.methods, "seed": args.seeds, "dataset": args.dataset, "student": args.student,
             "teacher": args.teacher, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
             "T": args.temperature, "alpha": args.alpha, "fraction": args.fraction, "precision": args.precision,
             "device": args.device}
    for name, value in flags.items():
        if value is not None:
            spec[name] = value
    for item in args.set:
        name, sep, values = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--set needs NAME=VALUE[,VALUE...], got {item!r}")
        parsed = [_value(v.strip()) for v in values.split(",")]
        name = name.strip()
        spec[SYNONYMS.get(name, name)] = parsed if len(parsed) > 1 else parsed[0]
    defaults = {"dataset": "mnist", "student": "mlp-800", "method": ["baseline", "kd"], "seed": [0], "epochs": 5,
                "precision": "auto"}
    return defaults | spec


def _group_rows(rows: list[dict]) -> list[dict]:
    """Mean and spread over seeds of the runs that differ only in their seed."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        if row["test_acc"] is not None:
            groups.setdefault(row["setting"], []).append(row)
    out = []
    for setting, members in groups.items():
        accs = [m["test_acc"] for m in members]
        out.append({"setting": setting, "runs": len(accs), "seeds": [m["seed"] for m in members],
                    "acc_mean": statistics.mean(accs), "acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0})
    return out


def _setting(config) -> str:
    params = ",".join(f"{k}={v}" for k, v in sorted(config.params.items()))
    parts = [config.method + (f"({params})" if params else ""), config.dataset, config.student,
             f"{config.train.epochs}ep"]
    if config.fraction != 1.0:
        parts.append(f"{config.fraction:g} of the data")
    return " ".join(parts)


def _sweep(args) -> int:
    configs = grid_from_spec(_sweep_spec(args))
    runs_dir = Path(args.runs_dir) if args.runs_dir else default_runs_dir()
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.dry_run:
        done = finished_runs(runs_dir)
        for config in configs:
            check_config(config, runs_dir)
        check_teachers(configs, runs_dir)
        for i, config in enumerate(configs):
            print(f"{i + 1:>4}  {'done' if run_key(config) in done else 'todo'}  {_setting(config)}  seed {config.train.seed}")
        return 0
    executor = make_executor(args.ray, args.workers, args.cpus_per_run, args.gpus_per_run, args.local)
    rows: list[dict] = [{}] * len(configs)
    bar, finished = None, None
    for event in run_sweep(configs, executor, runs_dir, resume=not args.no_resume, stop=threading.Event()):
        if isinstance(event, SweepStarted):
            if not args.quiet:
                print(f"sweep: {event.total} runs, {event.total - event.to_run} already finished; "
                      f"{event.executor}", file=sys.stderr, flush=True)
                bar = tqdm(total=event.total, initial=event.total - event.to_run, unit="run", file=sys.stderr)
        elif isinstance(event, (RunFinished, RunFailed)):
            record = getattr(event, "record", None) or {}
            rows[event.index] = {"key": event.key, "id": record.get("id"), "setting": _setting(event.config),
                                 "method": event.config.method, "params": event.config.params,
                                 "dataset": event.config.dataset, "student": event.config.student,
                                 "seed": event.config.train.seed, "test_acc": record.get("test_acc"),
                                 "train_time_s": record.get("train_time_s"),
                                 "skipped": bool(getattr(event, "skipped", False)),
                                 "error": getattr(event, "error", None)}
            if bar is not None and not rows[event.index]["skipped"]:
                bar.update(1)
                if isinstance(event, RunFailed):
                    bar.write(f"failed: {_setting(event.config)} seed {event.config.train.seed}: {event.error}",
                              file=sys.stderr)
                else:
                    bar.set_postfix(last=f"{100 * record['test_acc']:.2f}%", refresh=False)
        elif isinstance(event, RunProgress) and bar is not None and isinstance(event.event, EpochDone):
            bar.set_postfix(run=event.index + 1, epoch=f"{event.event.epoch}/{event.event.epochs}")
        elif isinstance(event, SweepFinished):
            finished = event
    if bar is not None:
        bar.close()
    groups = _group_rows(rows)
    failed = sum(1 for r in rows if r.get("error"))
    if args.json:
        print(json.dumps({"executor": executor.describe(), "wall_s": finished.wall_s if finished else None,
                          "runs": rows, "settings": groups}))
    else:
        print(f"{'setting':<44} {'seed':>4} {'test acc':>9} {'train s':>8}  run")
        for r in rows:
            acc = f"{100 * r['test_acc']:8.2f}%" if r.get("test_acc") is not None else "   failed"
            secs = f"{r['train_time_s']:8.1f}" if r.get("train_time_s") is not None else " " * 8
            note = r.get("error") or (f"{r['id']} (earlier)" if r.get("skipped") else r.get("id"))
            print(f"{r['setting']:<44} {r['seed']:>4} {acc} {secs}  {note}")
        if any(g["runs"] > 1 for g in groups):
            print()
            print(f"{'setting':<44} {'runs':>4} {'test acc % (mean ± std)':>24}")
            for g in groups:
                print(f"{g['setting']:<44} {g['runs']:>4} {100 * g['acc_mean']:>15.2f} ± {100 * g['acc_std']:.2f}")
    return 1 if failed else 0


def _fmt_cell(value) -> str:
    if isinstance(value, dict) and "mean" in value:
        spread = f" ± {100 * value['std']:.2f}" if value.get("n", 1) > 1 else ""
        return f"{100 * value['mean']:.2f}{spread}%"
    if isinstance(value, float):
        return f"{value:g}"
    return "-" if value is None else str(value)


def _experiment(args) -> int:
    overrides = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set needs NAME=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    experiments.settings_for(args.name, args.preset, overrides)  # bad input ends here, before any data is read
    if args.out:  # the result file is written after every run: a place it cannot go is refused now
        check_file_writable(args.out, "result file", "choose another with --out")
    bar = None

    def show(progress):
        nonlocal bar
        if args.quiet:
            return
        head = f"run {progress.index + 1}/{progress.total}"
        if progress.reused:
            tqdm.write(f"{head}: {progress.label}: finished earlier, reused", file=sys.stderr)
        elif isinstance(progress.event, PhaseStarted):
            if bar:
                bar.close()
            bar = tqdm(total=progress.event.epochs * progress.event.steps_per_epoch, unit="step", file=sys.stderr,
                       desc=f"{head} {progress.event.phase}: {progress.label}")
        elif isinstance(progress.event, StepDone) and bar is not None:
            bar.update(1)
        elif isinstance(progress.event, experiments.DreamStep):
            if progress.event.step == 1 or bar is None:
                if bar:
                    bar.close()
                bar = tqdm(total=progress.event.steps, unit="step", file=sys.stderr, desc=f"{head}: {progress.label}")
            bar.update(1)

    result = experiments.run(args.name, args.preset, overrides, args.runs_dir, on_event=show)
    if bar:
        bar.close()
    if args.out:
        experiments.save_result(result, args.out)
    if args.json:
        print(json.dumps({"name": result.name, "preset": result.preset, "summary": result.summary,
                          "settings": result.settings, "run_ids": [r["id"] for r in result.records],
                          "elapsed_s": result.elapsed_s, "machine": result.machine, "command": result.command},
                         default=float))
        return 0
    table = result.summary.get("table", [])
    if table:
        columns = list(table[0])
        cells = [[_fmt_cell(row.get(c)) for c in columns] for row in table]
        widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
        print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
        for row in cells:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    if "bias" in result.summary:
        print(f"bias added to class {result.summary['missing']}'s output: {_fmt_cell(result.summary['bias']['mean'])} "
              f"(chosen on {result.summary['validation_images']} held-out training images)")
    print(f"{result.name} ({result.preset}): {len(result.records)} runs, {result.elapsed_s:.0f} s on {result.machine}"
          + (f"; wrote {args.out}" if args.out else ""))
    return 0


COMMANDS = {"sweep": _sweep, "train-teacher": _train, "distill": _train, "runs": _runs, "methods": _methods,
            "pretrained": _pretrained, "experiment": _experiment}


def main(argv: list[str] | None = None) -> int:
    """Run the command in ``argv`` (default: the process's command line) and return its exit code.

    Without ``argv`` (the ``kdviz`` script, ``python -m kdviz``) the process is taken to end
    afterwards: the objects alive then are frozen (``gc.freeze``), so the interpreter's exit does
    not walk torch's million objects in a last collection (0.3 s of CPU)."""
    code = _main(argv)
    if argv is None:
        gc.freeze()
    return code


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, DataNotFound, FileNotFoundError) as error:
        print(f"kdviz: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except RunSaveError as error:
        print(f"kdviz: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kdviz: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`kdviz runs | head`): nothing is wrong, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 141  # as a shell reports a command ended by SIGPIPE
    except Exception as error:  # noqa: BLE001 - one line, never a traceback (KDVIZ_DEBUG=1 shows it)
        if os.environ.get("KDVIZ_DEBUG"):
            raise
        print(f"kdviz: error: {type(error).__name__}: {_one_line(error)} (KDVIZ_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 600 else text[:600] + "..."


if __name__ == "__main__":
    sys.exit(main())
