"""Scale-out: one 12-run sweep through every executor of :mod:`kdviz.sweep`, on this machine.

    OMP_NUM_THREADS=1 python benchmarks/scaleout.py            # writes the "Scale-out" section of BENCHMARKS.md
    python benchmarks/scaleout.py --epochs 1 --no-write         # a quicker look

The sweep: digits (scikit-learn's 8x8, always offline), cnn5-small students, labels only
(``baseline``) and Hinton KD from the shipped ``digits-cnn`` teacher, six seeds each: 12 runs,
each with one torch thread. It runs

1. ``local``, in this process, one run after another;
2. ``local`` with 2 worker processes;
3. ``ray`` on a simulated cluster: a Ray head (0 CPUs: it only schedules) and two worker
   nodes of 1 CPU each, separate raylet processes on 127.0.0.1 (``ray.cluster_utils.Cluster``);
   twice, the second time on warm worker processes.

Per-task overhead = (slots × wall time − Σ run time) / runs, where run time is each record's
``wall_time_s`` (teacher logits + training + evaluation, measured inside the run): what a run
costs beyond its own work (process or task start, imports, data and teacher loading, shipping
the record and checkpoint back, writing them). Records are compared seed for seed: test
accuracy and every epoch's losses and accuracies (timings left out).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
# Ray swaps a 127.0.0.1 address for the machine's network address when connecting; with this
# switch off it keeps to the loopback interface, so the simulated cluster never leaves 127.0.0.1
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from kdviz.sweep import LocalExecutor, RayExecutor, SweepFinished, grid, run_key, run_sweep  # noqa: E402

from sections import replace_section  # noqa: E402

START, END = "<!-- scaleout:start -->", "<!-- scaleout:end -->"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                flags = Path("/proc/cpuinfo").read_text()
                extra = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
                return line.split(":", 1)[1].strip() + (f" ({', '.join(extra)})" if extra else "")
    except OSError:
        pass
    return platform.processor() or platform.machine()


def learning(record: dict) -> list[dict]:
    return [{k: v for k, v in e.items() if k not in ("images_per_s", "elapsed")} for e in record["history"]]


def measure(name: str, plan, executor, slots: int) -> dict:
    runs_dir = Path(tempfile.mkdtemp(prefix=f"kdviz-scaleout-{name.split()[0]}-"))
    started = time.perf_counter()
    final = None
    events = run_sweep(plan, executor, runs_dir, resume=False)
    for event in events:
        if isinstance(event, SweepFinished):
            final = event
    wall = time.perf_counter() - started
    records = final.records
    if final.failed or any(r is None for r in records):
        raise SystemExit(f"{name}: {final.failed} runs failed")
    work = sum(r["wall_time_s"] for r in records)
    row = {"executor": name, "slots": slots, "wall_s": round(wall, 2), "run_s_sum": round(work, 2),
           "run_s_mean": round(work / len(records), 2),
           "overhead_per_task_s": round((slots * wall - work) / len(records), 2),
           "records": {run_key(c): {"test_acc": r["test_acc"], "learning": learning(r)}
                       for c, r in zip(plan, records)}}
    print(f"{name}: {wall:.1f} s wall, {work:.1f} s of runs, overhead {row['overhead_per_task_s']:.2f} s/task",
          flush=True)
    return row


def simulated_cluster(workers: int):
    """A Ray head with no CPUs and ``workers`` nodes of 1 CPU, each its own raylet on 127.0.0.1."""
    from ray.cluster_utils import Cluster

    common = {"node_ip_address": "127.0.0.1", "object_store_memory": 100 * 1024 * 1024}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False, **common})
    for _ in range(workers):
        cluster.add_node(num_cpus=1, **common)
    cluster.wait_for_nodes()
    return cluster


def section(rows: list[dict], command: str, setup: dict, identical: bool) -> str:
    lines = [START, "## Scale-out (`benchmarks/scaleout.py`)", "",
             f"Command: `{command}`", "",
             f"Measured {time.strftime('%Y-%m-%d')} on {setup['cpu']}, {os.cpu_count()} cores shared with other "
             f"jobs (times are indicative; compare within the table), torch {torch.__version__}, "
             f"ray {setup['ray']}. The sweep: {setup['runs']} runs on digits (1,437 training images), cnn5-small "
             f"students, `baseline` and `kd` (from the shipped `digits-cnn`) × seeds {setup['seeds']}, "
             f"{setup['epochs']} epochs each, one torch thread per run. The simulated cluster: a Ray head with 0 CPUs "
             "plus two worker nodes of 1 CPU each, separate raylet processes on 127.0.0.1 "
             f"(`ray.cluster_utils.Cluster`); starting it took {setup['cluster_start_s']:.1f} s and connecting "
             f"{setup['connect_s']:.1f} s (not in the wall times). Before timing, one untimed run filled the "
             "teacher-logit cache on disk and warmed this process; the pool's processes start cold in every sweep.",
             "",
             "| executor | runs at once | wall time s | Σ run time s | mean run s | overhead per task s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['executor']} | {r['slots']} | {r['wall_s']:.1f} | {r['run_s_sum']:.1f} | "
                     f"{r['run_s_mean']:.2f} | {r['overhead_per_task_s']:.2f} |")
    base = rows[0]["wall_s"]
    speedups = ", ".join(f"{r['executor']} {base / r['wall_s']:.2f}×" for r in rows[1:])
    lines += ["", f"Speed-up over one in-process run at a time: {speedups}.",
              "Overhead per task = (runs at once × wall time − Σ run time) / runs; run time is each record's "
              "`wall_time_s` (teacher logits, training, evaluation). A cold pool or Ray worker pays for "
              "starting a Python process and importing torch and kdviz, once per worker; warm Ray workers are "
              "reused across tasks, so what remains is scheduling, data loading and shipping the record and "
              "checkpoint back to the driver.", "",
              ("Records: **identical** for the same seeds across all executors (test accuracy and every epoch's "
               "losses and accuracies; only timings differ)." if identical else
               "Records: **not identical** across executors (see `.cache/bench/scaleout.json`)."),
              END]
    return "\n".join(lines)


def write_section(text: str, path: Path) -> None:
    replace_section(path, START, END, text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=6, help="seeds per method (2 methods)")
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    import ray

    torch.set_num_threads(1)
    configs = grid({"dataset": "digits", "student": "cnn5-small", "epochs": args.epochs, "device": "cpu",
                    "precision": "auto"}, method=["baseline", "kd"], seed=list(range(args.seeds)))
    # untimed: fills the teacher-logit cache on disk and warms this process (kernels, data in memory)
    warm_up = run_sweep(configs[-1:], LocalExecutor(1, cpus_per_run=1), tempfile.mkdtemp(), resume=False)
    list(warm_up)
    rows = [measure("local, in this process", configs, LocalExecutor(1, cpus_per_run=1), 1),
            measure("local, 2 processes", configs, LocalExecutor(2, cpus_per_run=1), 2)]
    started = time.perf_counter()
    cluster = simulated_cluster(2)
    cluster_start = time.perf_counter() - started
    try:
        executor = RayExecutor(cluster.address, cpus_per_run=1)
        started = time.perf_counter()
        executor.connect()
        connect = time.perf_counter() - started
        rows.append(measure("ray, head + 2 nodes (cold workers)", configs, executor, 2))
        rows.append(measure("ray, head + 2 nodes (warm workers)", configs, executor, 2))
    finally:
        ray.shutdown()
        cluster.shutdown()
    reference = rows[0]["records"]
    identical = all(r["records"] == reference for r in rows[1:])
    setup = {"cpu": cpu_name(), "ray": ray.__version__, "runs": len(configs), "epochs": args.epochs,
             "seeds": f"0–{args.seeds - 1}", "cluster_start_s": cluster_start, "connect_s": connect}
    out = ROOT / ".cache" / "bench" / "scaleout.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"setup": setup, "rows": rows, "identical": identical}, indent=1))
    command = "OMP_NUM_THREADS=1 python benchmarks/scaleout.py" + (f" --epochs {args.epochs}" if args.epochs != 3 else "") \
        + (f" --seeds {args.seeds}" if args.seeds != 6 else "")
    text = section(rows, command, setup, identical)
    print(text)
    if not args.no_write:
        write_section(text, ROOT / "BENCHMARKS.md")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
