"""Teacher logits for a whole training set, computed once and kept on disk.

The key is the teacher's weights (sha256 of its tensors), the data set's name and
split, and a hash of its pixels, so a different teacher, transfer set or data
set never reads a stale file. Logits, not probabilities, are stored: every
temperature can be applied later.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from kdviz.data import ImageData, cache_dir
from kdviz.evaluation import predict_logits


def tensor_digest(tensors) -> str:
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def model_digest(model: torch.nn.Module) -> str:
    return tensor_digest(model.state_dict().values())


def cache_path(teacher: torch.nn.Module, data: ImageData) -> Path:
    data_tag = tensor_digest([data.pixels, data.labels])[:16]
    name = Path(data.name).name or "data"
    return cache_dir() / "teacher-logits" / f"{model_digest(teacher)[:16]}-{name}-{data.split}-{data_tag}.pt"


def teacher_logits(teacher: torch.nn.Module, data: ImageData, device="auto", precision="fp32") -> torch.Tensor:
    """Teacher logits for every image of ``data``, read from the disk cache when present."""
    path = cache_path(teacher, data)
    if path.exists():
        try:
            logits = torch.load(path, weights_only=True)
            if logits.shape == (len(data), data.num_classes):
                return logits
        except Exception:  # noqa: BLE001 - a broken cache file is recomputed
            pass
    logits = predict_logits(teacher, data, device=device, precision=precision)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(logits, tmp)
    tmp.replace(path)
    return logits
