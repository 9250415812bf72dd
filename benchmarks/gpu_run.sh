#!/bin/bash
# Everything kdviz measures on a GPU, in one sitting of a lent GPU machine (about 9 minutes of an
# H200), each step with its own deadline so that what finished comes back even if a later step runs
# out of time:
#   1. the GPU speed tables (benchmarks/speed.py --device cuda: training steps, the loop's overhead,
#      RKD, the classroom preset, a KD epoch with cached and live teacher), while CIFAR-10 decodes;
#   2. the CUDA tests (tests/test_cuda.py), beside
#   3. the >= 90% CIFAR-10 teacher (kdviz pretrained make cifar10-wrn-16-4-gpu: 60 epochs, about 270 s
#      of an H200);
#   4. the seeds' CIFAR-10 table from the 16-4 teacher (benchmarks/papers.py --table cifar-full-gpu),
#      until the deadline: on 2026-12-01 three of its 12 runs finished there; the other nine took a
#      second call of about 2 minutes (papers.py alone, --workers 8, the teacher's files carried in
#      and KDVIZ_PRETRAINED pointing at them; the sweep skipped the finished runs).
#
# Data: DATA_IN (default .gpu) holds cifar10-jpg.tar.gz (CIFAR-10 as JPEG folders) and MNIST/raw/*.gz.
# Results: OUT (default /tmp/kdviz-gpu) gets at most 8 files (what a lent machine's call brings back):
# the logs, BENCHMARKS.md (a copy with the GPU blocks of its speed section written in) and results.tgz
# (the teacher's files and card, the table's run records).
#
#   OUT=/tmp/x bash benchmarks/gpu_run.sh            # on the GPU machine, from the repository root
#   SECONDS_BUDGET=60 TEACHER_SECONDS=20 ...         # shorter deadlines (a dry run on a CPU machine)
set -u
cd "$(dirname "$0")/.."
START=$(date +%s)
BUDGET=${SECONDS_BUDGET:-540}            # the whole script ends by then (the call's limit is 600 s)
TEACHER_SECONDS=${TEACHER_SECONDS:-400}  # the teacher's own limit
DATA_IN=${DATA_IN:-.gpu}
OUT=${OUT:-/tmp/kdviz-gpu}
WORK=${WORK:-/tmp/kdviz-gpu-work}
PY=${PY:-python3}
TEACHER=cifar10-wrn-16-4-gpu
mkdir -p "$OUT" "$WORK/data" "$WORK/cache" "$WORK/runs"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 KDVIZ_DATA=$WORK/data KDVIZ_CACHE=$WORK/cache
left() { echo $((START + BUDGET - $(date +%s))); }
say() { echo "[gpu_run +$(($(date +%s) - START)) s] $*"; }
pack() {  # what exists so far, in one file (the call brings back at most 8 files)
  tar czf "$OUT/results.tgz.part" pretrained/$TEACHER.* pretrained/.$TEACHER.resume.pt \
    -C "$WORK" runs 2>/dev/null
  mv "$OUT/results.tgz.part" "$OUT/results.tgz"
}

say "machine: $(nproc) cores; $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)"
$PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
[ -d "$WORK/data/cifar10" ] || tar xzf "$DATA_IN/cifar10-jpg.tar.gz" -C "$WORK/data" --one-top-level=cifar10
[ -d "$WORK/data/MNIST" ] || cp -r "$DATA_IN/MNIST" "$WORK/data/MNIST"
$PY -c "from kdviz import data; data.load('mnist')" || exit 1
$PY -c "from kdviz import data; print(len(data.load('cifar10').train), 'CIFAR-10 images')" > "$WORK/decode.log" 2>&1 &
DECODE=$!

say "1. speed tables"
cp BENCHMARKS.md "$OUT/BENCHMARKS.md"
timeout 100 $PY benchmarks/speed.py --device cuda --parts steps loop rkd kd-cache preset \
  --output "$OUT/BENCHMARKS.md" > "$OUT/speed.log" 2>&1
say "speed: exit $? ($(tail -1 "$OUT/speed.log"))"
wait $DECODE; say "decode: $(tail -1 "$WORK/decode.log")"

say "2, 3. CUDA tests beside the teacher"
timeout 300 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py > "$OUT/test_cuda.log" 2>&1 &
TESTS=$!
timeout "$TEACHER_SECONDS" $PY -m kdviz pretrained make $TEACHER > "$OUT/$TEACHER.log" 2>&1 &
wait $TESTS; say "tests: $(tail -1 "$OUT/test_cuda.log")"
wait
say "$TEACHER: $($PY -c "import json; c = json.load(open('pretrained/$TEACHER.json')); print(f\"{100 * c['test_acc']:.2f}% in {c['train_time_s']} s\")" 2>&1 | tail -1)"
pack

say "4. the seeds' CIFAR-10 table from the 16-4 teacher, $(left) s left"
if [ "$(left)" -gt 30 ]; then
  timeout $(($(left) - 10)) $PY benchmarks/papers.py --table cifar-full-gpu --workers 6 --runs-dir "$WORK/runs" \
    > "$OUT/table.log" 2>&1
  say "table: exit $?; $(grep -c '%' "$OUT/table.log") runs finished"
fi
pack
nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu --format=csv,noheader 2>&1
say "done"
