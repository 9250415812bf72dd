"""The ``kdviz`` command line: train a teacher, distill a student, list runs.

Bad input ends with one line on stderr and exit code 2; ``--json`` prints the
final metrics as JSON on stdout.
"""
from __future__ import annotations

import argparse
import json
import sys

from kdviz.data import DATASETS, DataNotFound
from kdviz.models import MODELS


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
    p.add_argument("--runs-dir", default=None, help="where records go (default $KDVIZ_RUNS or ./runs)")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument ends with one line on stderr (no usage block) and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from kdviz.methods import method_names

    parser = _Parser(prog="kdviz", description="Knowledge distillation you can see.")
    sub = parser.add_subparsers(dest="command", required=True)

    teacher = sub.add_parser("train-teacher", help="train a network on labels (a teacher)")
    teacher.add_argument("--model", default="cnn5", help=f"one of: {', '.join(MODELS)}")
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

    pre = sub.add_parser("pretrained", help="the shipped teachers: list them, or make one from its recipe")
    pre.add_argument("action", choices=("list", "make"))
    pre.add_argument("name", nargs="?", help="make: the teacher to train (see kdviz.pretrained.RECIPES)")
    pre.add_argument("--out", default=None, help="make: folder for the files (default $KDVIZ_PRETRAINED or pretrained/)")
    pre.add_argument("--json", action="store_true")
    return parser


def _settings(args):
    from kdviz.train import TrainSettings

    return TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                         weight_decay=args.weight_decay, schedule=args.schedule, seed=args.seed, device=args.device,
                         precision="bf16" if args.bf16 else args.precision, augment=args.augment,
                         grad_clip=args.grad_clip)


def _parse_params(args) -> dict:
    params = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--param needs NAME=VALUE, got {item!r}")
        params[name.strip()] = value.strip()
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
    from kdviz.experiment import RunConfig

    if args.command == "train-teacher":
        return RunConfig(dataset=args.dataset, student=args.model, method="baseline", train=_settings(args))
    omit = tuple(int(c) for c in args.omit_classes.split(",") if c.strip())
    return RunConfig(dataset=args.dataset, student=args.student, method=args.method, params=_parse_params(args),
                     teacher=args.teacher, train=_settings(args), fraction=args.fraction, omit_classes=omit,
                     hide_labels=args.hide_labels)


def _born_again(args) -> int:
    from kdviz.methods.ban import born_again

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
    from tqdm import tqdm

    from kdviz.experiment import Experiment
    from kdviz.train import EpochDone, PhaseStarted, StepDone

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
    summary = {k: record[k] for k in ("id", "test_acc", "params", "latency_ms", "train_time_s", "seed", "method")}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{record['id']}: test accuracy {100 * record['test_acc']:.2f}%  ({record['params']:,} parameters, "
              f"{record['latency_ms']:.3f} ms/image, {record['train_time_s']:.1f} s)")
    return 0


def _runs(args) -> int:
    from kdviz.runs import list_runs

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
    from kdviz.methods import REGISTRY

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
    from kdviz import pretrained
    from kdviz.train import EpochDone

    if args.name not in pretrained.RECIPES:
        given = f"no recipe for {args.name!r}" if args.name else "make needs a teacher name"
        raise ValueError(f"{given}; recipes: {', '.join(pretrained.RECIPES)}")

    def report(event):
        if isinstance(event, EpochDone) and not args.json:
            print(f"epoch {event.epoch}/{event.epochs}  test acc {100 * event.test_acc:.2f}%  "
                  f"{event.images_per_s:,.0f} img/s  {event.elapsed:.0f} s", file=sys.stderr, flush=True)

    info = pretrained.make(args.name, args.out, on_event=report)
    if args.json:
        print(json.dumps(info))
    else:
        print(f"{info['name']}: test accuracy {100 * info['test_acc']:.2f}% after {info['epochs']} epochs "
              f"({info['wall_time_s']:.0f} s); wrote {info['file']}, {info['probe_file']}, {info['name']}.json")
    return 0


def _pretrained(args) -> int:
    from kdviz import pretrained

    if args.action == "make":
        return _pretrained_make(args)
    cards = [pretrained.card(n) | {"name": n} for n in pretrained.names()]
    if args.json:
        print(json.dumps(cards))
        return 0
    if not cards:
        print("no pretrained teachers shipped")
    for c in cards:
        print(f"{c['name']:<20} {c['dataset']:<14} {c['model']:<9} test accuracy {100 * c['test_acc']:.2f}%  "
              f"({c['epochs']} epochs, {c['wall_time_s']:.0f} s)")
    return 0


COMMANDS = {"train-teacher": _train, "distill": _train, "runs": _runs, "methods": _methods, "pretrained": _pretrained}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, DataNotFound, FileNotFoundError) as error:
        print(f"kdviz: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kdviz: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
