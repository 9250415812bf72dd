"""What loading CIFAR-10 from its image folders costs (not part of the test suite).

    KDVIZ_DATA=DIR .venv/bin/python benchmarks/data_speed.py            # prints the table
    KDVIZ_DATA=DIR .venv/bin/python benchmarks/data_speed.py --write    # and replaces its block in BENCHMARKS.md

``DIR/cifar10/{train,test}/<class>/`` must hold CIFAR-10 as JPEG files (60,000 of them). Two costs are
measured, each two ways in one process, alternately, best of ``--repeats``:

- *finding the files and their identity*: what every load of the data set pays, a warm one from the
  disk cache too, to key the decoded cache (:func:`kdviz.data.source_identity`): now, against the
  way before (``rglob`` with a ``stat`` of every file, then ``Path.resolve`` of each file);
- *decoding the folders*: what the first load on a machine pays (:func:`kdviz.data.read_image_splits`):
  now (JPEG files decoded in batches by torchvision, :data:`kdviz.data.BATCH_DECODE_FROM`), against PIL
  alone (the way before). Both give the same tensors (checked, or the script stops).

Then, once each: a warm load of the whole data set as a fresh process pays it (the decoded cache on disk,
read back), a first load into an empty cache, and importing ``torchvision.io`` in a fresh process that has
imported torch (the batch decoder's price, paid once per process).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from kdviz import data

from sections import replace_section
from speed import machine

REPO = Path(__file__).resolve().parent.parent
START, END = "<!-- data-speed:start -->", "<!-- data-speed:end -->"


def identity_before(folder: Path) -> str:
    """The decoded cache's identity as kdviz computed it before: the same digest, the slow way."""
    files = tuple(sorted(p for split in ("train", "test") for p in (folder / split).rglob("*") if p.is_file()))
    digest = hashlib.sha256(f"{folder}|".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def identity_now() -> str:
    return data.source_identity(data.DATASETS["cifar10"].locate())


def decode_with(batch_from: int):
    def decode():
        data.BATCH_DECODE_FROM = batch_from
        return data.read_image_splits(data.data_dir() / "cifar10")
    return decode


def timed(call) -> tuple[float, object]:
    start = time.perf_counter()
    out = call()
    return time.perf_counter() - start, out


def best_of(ways: dict, repeats: int) -> dict[str, float]:
    best = {}
    for _ in range(repeats):
        for name, call in ways.items():
            best[name] = min(best.get(name, float("inf")), timed(call)[0])
    return best


def in_fresh_process(code: str, env: dict) -> float:
    """Seconds a fresh interpreter reports for ``code`` (which prints them)."""
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(repeats: int) -> dict:
    folder = data.data_dir() / "cifar10"
    if identity_before(folder) != identity_now():
        raise SystemExit("the two ways give different identities")
    default = data.BATCH_DECODE_FROM
    now, before = decode_with(default), decode_with(10**12)
    a, b = now(), before()
    if not all(torch.equal(x, y) for x, y in zip(a[:4], b[:4])) or a[4] != b[4]:
        raise SystemExit("the batch decoder and PIL give different tensors")
    out = {"identity": best_of({"now": identity_now, "before": lambda: identity_before(folder)}, repeats),
           "decode": best_of({"now": now, "before": before}, repeats), "files": len(a[1]) + len(a[3])}
    data.BATCH_DECODE_FROM = default
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "KDVIZ_CACHE": cache}
        load = "import time; t = time.perf_counter(); from kdviz import data; data.load('cifar10'); print(time.perf_counter() - t)"
        out["first load"] = in_fresh_process(load, env)   # an empty cache: decoded and written
        out["warm load"] = in_fresh_process(load, env)    # read back
    out["import"] = in_fresh_process(
        "import time, torch; t = time.perf_counter(); import torchvision.io; print(time.perf_counter() - t)", dict(os.environ))
    return out


def markdown(out: dict, about: str, command: str) -> str:
    rows = [("finding the files and their identity (every load, warm ones too)", out["identity"]),
            ("decoding the folders (a first load)", out["decode"])]
    lines = [START, "## Loading CIFAR-10 from its image folders (`benchmarks/data_speed.py`)", "",
             f"Command: `{command}` ({time.strftime('%Y-%m-%d')}). Machine: {about}.", "",
             f"CIFAR-10 as {out['files']:,} JPEG files in `cifar10/{{train,test}}/<class>/`, each way in turn in one "
             "process, best of the passes. *Now*: one scan of each folder, each folder resolved once, JPEG files "
             "decoded in batches by torchvision (libjpeg-turbo); *before*: `rglob` and a `stat` of every file, "
             "`Path.resolve` of every file, PIL file by file. The same identity and the same tensors both ways "
             "(checked).", "",
             "| what | now (s) | before (s) | speed-up |", "|---|---:|---:|---:|"]
    lines += [f"| {what} | {best['now']:.2f} | {best['before']:.2f} | {best['before'] / best['now']:.1f}x |"
              for what, best in rows]
    lines += ["", f"A fresh process, now: the first load of the whole data set (empty cache: decoded and written) "
                  f"{out['first load']:.2f} s, a warm load (the decoded cache read back) {out['warm load']:.2f} s, "
                  "each with kdviz's import. Importing `torchvision.io` after torch, the batch decoder's price "
                  f"once a process: {out['import']:.2f} s, why a folder under {data.BATCH_DECODE_FROM:,} files "
                  "(CIFAR-10's test split alone, 10,000) is decoded by PIL alone.", END]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="replace this benchmark's block in BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    try:
        data.DATASETS["cifar10"].locate()
    except data.DataNotFound as error:
        parser.error(str(error))
    if not (data.data_dir() / "cifar10" / "train").is_dir():
        parser.error(f"needs CIFAR-10 as image folders in {data.data_dir() / 'cifar10'}/{{train,test}}/<class>/")
    about = machine(torch.device("cpu"))
    out = measure(args.repeats)
    command = "KDVIZ_DATA=DIR python benchmarks/data_speed.py" + (f" --repeats {args.repeats}" if args.repeats != 2 else "") + " --write"
    block = markdown(out, about, command)
    print(block)
    if args.write:
        replace_section(REPO / "BENCHMARKS.md", START, END, block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
