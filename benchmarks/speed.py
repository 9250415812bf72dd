"""Speed of the training loop: what caching the teacher's logits saves, and what bf16 buys.

    python benchmarks/speed.py                  # measure, print, and write the speed section of BENCHMARKS.md
    python benchmarks/speed.py --no-write       # measure and print only

1. One epoch of Hinton KD on MNIST (cnn5 teacher -> mlp-800 student) with the teacher's
   logits cached (computed once before training, as kdviz does when the transfer set is not
   augmented), with the teacher run at every step, and a plain labels-only student epoch.
2. Training-step throughput in bf16 autocast against fp32 for cnn5 and mlp-800.
3. Inference throughput at batch 128 (what kdviz uses) against batch 1000.

All numbers of one run come from the same process, measurements interleaved and repeated
(the fastest repeat counts), so the ratios hold even when the machine is busy; the
absolute times do not. The teacher is freshly initialised: speed does not depend on weights.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

from kdviz import data
from kdviz.methods import build_method
from kdviz.methods.kd import HintonKD
from kdviz.models import build_model
from kdviz.train import PhaseStarted, StepDone, TrainSettings, fit

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- speed:start -->", "<!-- speed:end -->"


class LiveTeacherKD(HintonKD):
    """Hinton KD that asks the loop for features, so the teacher runs at every step (no cache)."""

    needs_features = True


CLOCK = time.perf_counter  # main() switches to CPU time when torch runs one thread


def timed_run(student, method, train, test, settings, teacher=None):
    """(seconds before the first step — the teacher pass when cached —, seconds of training steps,
    images per second over the steps after the first five)."""
    begin = CLOCK()
    setup = steps_from = None
    stamps, sizes = [], []
    for event in fit(student, method, train, test, settings, teacher):
        now = CLOCK()
        if isinstance(event, PhaseStarted):
            setup, steps_from = now - begin, now
        elif isinstance(event, StepDone):
            stamps.append(now)
            sizes.append(min(settings.batch_size, len(train) - (event.step - 1) * settings.batch_size))
    rate = sum(sizes[6:]) / (stamps[-1] - stamps[5]) if len(stamps) > 6 else float("nan")
    return setup, stamps[-1] - steps_from, rate


def kd_epochs(train, test, device, precision, repeats):
    settings = TrainSettings(epochs=1, device=device, precision=precision)
    best = {}
    for _ in range(repeats):
        torch.manual_seed(0)
        teacher = build_model("cnn5")
        for mode in ("plain", "cached", "live"):
            student = build_model("mlp-800")
            if mode == "plain":
                method = build_method("baseline", student)
            else:
                method = (HintonKD if mode == "cached" else LiveTeacherKD)(student, teacher)
            setup, seconds, _ = timed_run(student, method, train, test, settings, teacher if mode != "plain" else None)
            best[mode] = min(best.get(mode, float("inf")), seconds)
            if mode == "cached":
                best["teacher pass"] = min(best.get("teacher pass", float("inf")), setup)
    return best


def step_throughput(train, test, device, repeats):
    best: dict[tuple[str, str], float] = {}
    for _ in range(repeats):
        for name in ("cnn5", "mlp-800"):
            for precision in ("fp32", "bf16"):
                student = build_model(name)
                settings = TrainSettings(epochs=1, device=device, precision=precision)
                _, _, rate = timed_run(student, build_method("baseline", student), train, test, settings)
                best[(name, precision)] = max(best.get((name, precision), 0.0), rate)
    return best


@torch.no_grad()
def inference_throughput(device, repeats, n=2000):
    """Forward passes (eval mode) at the batch size kdviz uses for teacher passes and scoring, and at 1000."""
    from kdviz.evaluation import resolve_device

    device = resolve_device(device)
    out = {}
    for name, shape in (("cnn5", (1, 28, 28)), ("resnet20", (3, 32, 32))):
        model = build_model(name, shape[0], shape[1]).eval().to(device)
        x = torch.randn(n, *shape, device=device)
        for batch in (128, 1000):
            best = 0.0
            for _ in range(repeats + 1):  # the first pass warms up
                start = CLOCK()
                for i in range(0, n, batch):
                    model(x[i:i + batch])
                if device.type == "cuda":
                    torch.cuda.synchronize()
                best = max(best, n / (CLOCK() - start))
            out[(name, batch)] = best
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads; "
            f"load average {load:.1f} when the run started")


def section(args, n_train, kd, throughput, inference, device, about) -> str:
    plain = kd["plain"]
    rows = [("plain student epoch (labels only)", kd["plain"]),
            ("KD epoch, teacher logits cached", kd["cached"]),
            ("KD epoch, teacher run at every step", kd["live"]),
            ("the one-off teacher pass that fills the cache", kd["teacher pass"])]
    saved = 1 - kd["cached"] / kd["live"]
    lines = [
        START,
        "## Speed",
        "",
        f"Command: `python benchmarks/speed.py --fraction {args.fraction} --repeats {args.repeats}"
        f"{f' --threads {args.threads}' if args.threads else ''}` "
        f"(device {device}, {time.strftime('%Y-%m-%d')}). {about}.",
        f"Times are {'CPU time of the process (one torch thread)' if CLOCK is time.process_time else 'wall time'}. "
        "The CPU was shared with other work during this run: read the ratios, not the absolute times. "
        "Each number is the best of the repeats, measured interleaved in one process.",
        "",
        "### One distillation epoch: cached teacher logits against a live teacher",
        "",
        f"MNIST, {n_train:,} training images, batch 128, {args.precision}, cnn5 teacher → mlp-800 student.",
        "",
        "| epoch | seconds | × plain epoch |",
        "|---|---:|---:|",
        *(f"| {label} | {seconds:.2f} | {seconds / plain:.2f} |" for label, seconds in rows),
        "",
        f"Caching saves {100 * saved:.0f}% of a KD epoch; the cache is filled once per teacher and transfer set "
        "(and kept on disk by `kdviz.teacher_cache`), so every later epoch and run pays only the cached cost.",
        "",
        "### bf16 autocast against fp32: training steps",
        "",
        "MNIST, 7,680 training images, batch 128, labels only; images per second over the steps after the first five.",
        "",
        "| model | fp32 img/s | bf16 img/s | bf16 speed-up |",
        "|---|---:|---:|---:|",
    ]
    for name in ("cnn5", "mlp-800"):
        fp32, bf16 = throughput[(name, "fp32")], throughput[(name, "bf16")]
        lines.append(f"| {name} | {fp32:,.0f} | {bf16:,.0f} | {bf16 / fp32:.2f}× |")
    lines += [
        "",
        "### Inference batch size (teacher passes and test scoring)",
        "",
        "Forward passes in eval mode, fp32, best of the repeats. kdviz scores and fills the teacher cache at batch 128.",
        "",
        "| model | batch 128 img/s | batch 1000 img/s | 128 / 1000 |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {inference[(name, 128)]:,.0f} | {inference[(name, 1000)]:,.0f} | "
          f"{inference[(name, 128)] / inference[(name, 1000)]:.2f}× |" for name in ("cnn5", "resnet20")),
        "",
        END,
    ]
    return "\n".join(lines)


def write_section(text: str, path: Path) -> None:
    """Replace our section of BENCHMARKS.md (or add it); every other section stays as it is."""
    old = path.read_text() if path.exists() else "# kdviz benchmarks\n"
    if START in old and END in old:
        new = old[: old.index(START)] + text + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(new)
    tmp.replace(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fraction", type=float, default=0.5, help="part of MNIST's training set per epoch (default 0.5)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="for the KD epochs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    global CLOCK
    if args.threads:
        torch.set_num_threads(args.threads)
    if torch.get_num_threads() == 1 and args.device != "cuda" and not torch.cuda.is_available():
        CLOCK = time.process_time  # one thread: CPU time, which other work on the machine barely disturbs
    splits = data.load("mnist")
    train = data.transfer_set(splits.train, fraction=args.fraction, seed=0)
    test = splits.test.subset(torch.arange(256))  # scored once per epoch, outside the timed steps
    steps_train = data.transfer_set(splits.train, fraction=min(1.0, 128 * 60 / len(splits.train)), seed=1)
    about = machine()
    print(about, file=sys.stderr)
    kd = kd_epochs(train, test, args.device, args.precision, args.repeats)
    throughput = step_throughput(steps_train, test, args.device, args.repeats)
    inference = inference_throughput(args.device, args.repeats)
    from kdviz.evaluation import resolve_device

    text = section(args, len(train), kd, throughput, inference, resolve_device(args.device), about)
    print(text)
    if not args.no_write:
        write_section(text, args.output)
        print(f"wrote the speed section of {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
