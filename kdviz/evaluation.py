"""Running a trained model over a data set: logits, accuracy, confusion matrix."""
from __future__ import annotations

import contextlib
import functools

import numpy as np
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


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast is native on ``device``: a CUDA GPU that supports it, or a CPU
    with AVX-512 BF16 or AMX instructions. Elsewhere bf16 is emulated and much slower than
    fp32 (measured on an AVX2-only AMD EPYC, one thread: mlp-800 training steps 8,600 img/s
    in fp32 against 920 in bf16; on a CPU with AMX bf16 was 1.5-2x faster than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


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


@torch.no_grad()
def predict_logits(model: torch.nn.Module, data: ImageData, batch_size: int = 128,
                   device: str | torch.device = "auto", precision: str = "fp32") -> torch.Tensor:
    """Logits for every image of ``data`` in order, as float32 on the CPU. (On CPU, conv nets run
    1.7-3.5x faster at batch 128 than at 1000: large batches spill the caches; see benchmarks/speed.py.)"""
    device = resolve_device(device)
    was_training = model.training
    model.eval().to(device)
    out = []
    for batch in batches(data, batch_size, device=device):
        with autocast(device, precision):
            out.append(model(batch.x).float().cpu())
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
    return {
        "accuracy": accuracy(logits, data.labels),
        "confusion": confusion_matrix(data.labels, logits.argmax(1), data.num_classes).tolist(),
    }


def row_normalised(confusion) -> np.ndarray:
    """Each row of a ``[true, predicted]`` count matrix divided by its sum (rows with no images stay 0)."""
    c = np.asarray(confusion, dtype=np.float64)
    totals = c.sum(axis=1, keepdims=True)
    return np.divide(c, totals, out=np.zeros_like(c), where=totals > 0)
