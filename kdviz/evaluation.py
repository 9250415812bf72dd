"""Running a trained model over a data set: logits, accuracy, confusion matrix."""
from __future__ import annotations

import contextlib
import functools
import time

import torch

from kdviz.data import ImageData, batches


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is CUDA when present, else CPU; anything else is passed to torch."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {str(device)!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {str(device)!r} is not supported; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but no CUDA GPU is available (use 'auto' or 'cpu')")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r} asked for, but there are {torch.cuda.device_count()} CUDA GPUs")
    return device


PRECISIONS = ("auto", "fp32", "bf16")


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.startswith("flags")), "")
    except OSError:  # not Linux: no way to tell, so no bf16 on the CPU
        return frozenset()
    return frozenset(line.partition(":")[2].split())


# bf16 autocast is taken on a CPU with AVX-512 BF16 but no AMX when a matmul measured there runs at least
# this many times faster in bf16 than in fp32 (the two such CPUs measured so far: 0.55x and 2.2-2.4x).
BF16_PAYS = 1.3


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast is faster than fp32 for kdviz's nets on ``device``.

    - A CPU with AMX tiles for bf16: yes (1.5-2x faster than fp32 there, see DESIGN.md).
    - A CPU with AVX-512 BF16 but no AMX: the flags do not tell, so it is measured once per process
      (:func:`bf16_matmul_speedup`, about 30 ms). The same flags went both ways: a 2-core Xeon VM that
      hides AMX ran a 512x784x800 matmul in 4.3 ms in fp32 against 7.8 ms in bf16 (one thread; mlp-800
      training steps 11,000 img/s against 7,300, cnn5 1,030 against 930), while a 2-core AMD EPYC
      (Zen 4) ran it in 7.8 ms in fp32 against 3.5 ms in bf16, and trained cnn5 at 2,249 img/s in bf16
      with channels-last against 1,487 in fp32, resnet20 527 against 295, mlp-800 16,171 against
      10,017 (one thread, ``benchmarks/speed.py --parts steps --threads 1``, 2026-12-02).
    - A CPU without either (AVX2 only): no, bf16 is emulated there (an AMD EPYC, one thread: mlp-800
      training steps 8,600 img/s in fp32 against 920 in bf16).
    - A GPU: no. An H200 at batch 128 trained cnn5 at 58,489 img/s in fp32 (TF32 convolutions) and
      channels-last against 47,144 in bf16, resnet20 20,804 against 19,590, mlp-800 99,377 against
      78,032 (BENCHMARKS.md, Speed, GPU): these nets are too small for the tensor cores to repay
      autocast's casts. Ask for bf16 by name on a GPU for a bigger net (the WRN-16-4 teacher's recipe does).
    """
    if device.type != "cpu":
        return False
    flags = _cpu_flags()
    if "amx_bf16" in flags:
        return True
    return "avx512_bf16" in flags and bf16_matmul_speedup() >= BF16_PAYS


@functools.cache
def bf16_matmul_speedup(repeats: int = 5) -> float:
    """How many times faster a matmul of an MLP-800 layer's shape (batch 256: 256x784 by 784x800)
    runs in bf16 than in fp32 on this CPU, with torch's threads as they are when first asked: the
    best of ``repeats`` timings each, after one untimed call that lets oneDNN build its kernel."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(256, 784, generator=g), torch.randn(784, 800, generator=g)

    def best(x: torch.Tensor, y: torch.Tensor) -> float:
        x @ y
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            x @ y
            times.append(time.perf_counter() - start)
        return min(times)

    return best(a, b) / best(a.bfloat16(), b.bfloat16())


def resolve_precision(precision: str, device: str | torch.device = "auto") -> str:
    """``"auto"`` is bf16 where the hardware runs it natively (:func:`fast_bf16`), else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if fast_bf16(resolve_device(device)) else "fp32"
    return precision


def autocast(device: torch.device, precision: str):
    """bf16 autocast when asked for, or when ``"auto"`` finds native bf16 (same accuracy in our runs)."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prefers_channels_last(model: torch.nn.Module, device: str | torch.device = "auto") -> bool:
    """Whether ``model`` runs faster with its weights and activations in the channels-last (NHWC)
    layout: conv nets on the CPU (oneDNN's native layout; training steps at batch 128, one thread,
    fp32, on a Xeon with AVX-512: cnn5 1.48x, cnn5-small 1.40x, resnet20 1.34x, mobilenet 1.55x; on an
    AVX2-only AMD EPYC: 1.41x, 1.67x, 1.27x, 1.70x; see benchmarks/speed.py),
    and on CUDA in fp32 (an H200 at batch 128: cnn5 1.05x, resnet20 1.16x) and bf16 (tensor cores
    read NHWC; the WRN-16-4 teacher trained so). Nets without 2-D convs (MLPs) stay as they are."""
    if not any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        return False
    return resolve_device(device).type in ("cpu", "cuda")


def fast_layout(model: torch.nn.Module, device: str | torch.device = "auto") -> bool:
    """Put ``model``'s conv weights in channels-last layout where that is faster
    (:func:`prefers_channels_last`), in place; returns whether it did. Values do not change:
    only the order of numbers in memory (a saved state dict loads into either layout)."""
    if not prefers_channels_last(model, device):
        return False
    model.to(memory_format=torch.channels_last)
    return True


def as_layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A batch of images in the layout its model uses (4-D inputs only; a no-op otherwise)."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


@torch.no_grad()
def predict_logits(model: torch.nn.Module, data: ImageData, batch_size: int = 128,
                   device: str | torch.device = "auto", precision: str = "fp32") -> torch.Tensor:
    """Logits for every image of ``data`` in order, as float32 on the CPU. (On CPU, conv nets run
    1.7-3.5x faster at batch 128 than at 1000: large batches spill the caches; see benchmarks/speed.py.)"""
    device = resolve_device(device)
    was_training = model.training
    model.eval().to(device)
    channels_last = fast_layout(model, device)
    out = []
    for batch in batches(data, batch_size, device=device):
        with autocast(device, precision):
            out.append(model(as_layout(batch.x, channels_last)).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, data.num_classes)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item() if len(labels) else float("nan")


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts ``[true, predicted]``."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def evaluate(model, data: ImageData, device="auto", precision="fp32") -> dict:
    """Test accuracy and confusion matrix of ``model`` on ``data``."""
    logits = predict_logits(model, data, device=device, precision=precision)
    labels = data.labels.cpu()  # (the logits come back to the CPU; the data may live on a GPU)
    return {
        "accuracy": accuracy(logits, labels),
        "confusion": confusion_matrix(labels, logits.argmax(1), data.num_classes).tolist(),
    }
