"""Teacher logits for a whole training set, computed once and kept on disk.

The first distillation run from a teacher pays for one pass over the transfer
set; every later run (in this session or the next) reads the file instead.

The file name is the cache key. It holds everything the logits depend on:
the teacher (sha256 of its architecture spec and of every tensor in its state
dict), the data set's name and split, a hash of the exact pixels, labels and
normalisation (so a transfer-set fraction, omitted classes or another data
set never reads a stale file), and the precision of the forward pass (bf16
logits differ slightly from fp32 ones). Logits, not probabilities, are
stored: every temperature can be applied later.

A shipped teacher also ships its test-set logits (``pretrained/<name>.test_logits.npz``,
written by :func:`write_shipped`): ``teacher_logits(..., shipped=path)`` reads them when
the file holds the very key this cache would use (same weights, same pixels, same
precision) and logits that match their digest, so a fresh server needs no test-set pass.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from kdviz.data import ImageData, cache_dir
from kdviz.evaluation import predict_logits
from kdviz.files import array_digest, write_atomic


def tensor_digest(tensors) -> str:
    """:func:`kdviz.files.array_digest` of tensors (detached, on the CPU)."""
    return array_digest(tensor.detach().cpu().numpy() for tensor in tensors)


def model_digest(model: torch.nn.Module) -> str:
    """sha256 over the model's spec (when it has one), parameter names and tensors."""
    digest = hashlib.sha256()
    spec = getattr(model, "spec", None)
    digest.update(json.dumps(spec.to_dict() if spec is not None else type(model).__name__, sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor_digest([tensor]).encode())
    return digest.hexdigest()


def data_digest(data: ImageData) -> str:
    """sha256 over pixels, labels and the normalisation that turns pixels into inputs."""
    digest = hashlib.sha256(tensor_digest([data.pixels, data.labels]).encode())
    digest.update(repr((tuple(data.mean), tuple(data.std))).encode())
    return digest.hexdigest()


def cache_path(teacher: torch.nn.Module, data: ImageData, precision: str = "fp32") -> Path:
    name = Path(data.name).name or "data"
    key = f"{model_digest(teacher)[:16]}-{name}-{data.split}-{data_digest(data)[:16]}-{precision}"
    return cache_dir() / "teacher-logits" / f"{key}.pt"


def _read(path: Path, data: ImageData) -> torch.Tensor | None:
    """The cached logits, or None when the file is absent, unreadable, written for another key
    (the file holds its key and a digest of the logits, both checked), the wrong shape or not finite."""
    if not path.exists():
        return None
    try:
        entry = torch.load(path, weights_only=True)
        if not isinstance(entry, dict):  # e.g. a file written before entries held their key
            return None
        logits = entry["logits"]
        ok = _ok(entry["key"], path.stem, logits, entry["digest"], data)
    except Exception:  # noqa: BLE001 - a broken or foreign cache file is recomputed, never trusted
        return None
    return logits if ok else None


def _ok(key: str, expected: str, logits, digest: str, data: ImageData) -> bool:
    return (key == expected and isinstance(logits, torch.Tensor) and logits.dtype == torch.float32
            and logits.shape == (len(data), data.num_classes) and digest == tensor_digest([logits])
            and bool(torch.isfinite(logits).all()))


def write_shipped(path: Path, teacher: torch.nn.Module, data: ImageData, precision: str = "fp32",
                  device="cpu") -> dict:
    """Compute the teacher's logits on ``data`` and write them as a small npz (float32 logits, the
    cache key, their digest, and ``data``'s labels, so that what depends on logits and labels alone needs
    no data set: :func:`kdviz.shipped.test_labels`) that :func:`teacher_logits` accepts as ``shipped``.
    Returns the key, the digest, the number of images and the logits."""
    key = cache_path(teacher, data, precision).stem
    logits = predict_logits(teacher, data, device=device, precision=precision).float().contiguous()
    digest = tensor_digest([logits])
    write_atomic(path, lambda f: np.savez_compressed(f, logits=logits.numpy(), key=np.array(key),
                                                      digest=np.array(digest), labels=data.labels.numpy().astype(np.int64)))
    return {"key": key, "digest": digest, "images": len(data), "logits": logits}


def read_shipped(path: Path, teacher: torch.nn.Module, data: ImageData, precision: str = "fp32") -> torch.Tensor | None:
    """The logits of a file written by :func:`write_shipped`, or None when it is absent, unreadable or
    made for another teacher, data or precision (its key is not this cache's key)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            key, digest, logits = str(npz["key"]), str(npz["digest"]), torch.from_numpy(npz["logits"].copy())
    except Exception:  # noqa: BLE001 - a missing or foreign file is never trusted
        return None
    return logits if _ok(key, cache_path(teacher, data, precision).stem, logits, digest, data) else None


def teacher_logits(teacher: torch.nn.Module, data: ImageData, device="auto", precision="fp32",
                   shipped: Path | None = None) -> torch.Tensor:
    """Teacher logits (float32, CPU) for every image of ``data`` in order: from ``shipped`` (a file of
    :func:`write_shipped`) when it holds this teacher's logits on this data, else from the disk cache
    when present, else computed (and cached)."""
    if shipped is not None:
        given = read_shipped(shipped, teacher, data, precision)
        if given is not None:
            return given
    path = cache_path(teacher, data, precision)
    cached = _read(path, data)
    if cached is not None:
        return cached
    logits = predict_logits(teacher, data, device=device, precision=precision)
    entry = {"key": path.stem, "digest": tensor_digest([logits]), "logits": logits}
    try:  # a concurrent reader sees no file or the whole file, never half of it
        write_atomic(path, lambda f: torch.save(entry, f))
    except OSError:
        pass  # a cache that cannot be written costs the next run one teacher pass, nothing else
    return logits
