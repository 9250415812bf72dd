"""Images as numpy arrays (:class:`Images`), MNIST-format IDX files read with numpy, and where kdviz looks
for data: no torch.

:mod:`kdviz.data` builds the data sets (tensors, the decoded cache) on these readers. They stay
torch-free so that a page's first view can read a test split's images and labels (:func:`read_test`)
before torch is imported (BENCHMARKS.md, app speed).
"""
from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# the data sets kept as IDX files: their folder name under the data directory, and other folders to look in
IDX_DATASETS = {"mnist": ("MNIST", ()), "fashion-mnist": ("FashionMNIST", (DEBIAN_FASHION_MNIST,))}
MAX_IDX_BYTES = 1 << 28          # 256 MiB, more than any IDX file kdviz reads (MNIST's largest: 47 MB); a header that
                                 # announces more (a small gzip bomb) is refused before anything is decompressed


@dataclass(frozen=True)
class Images:
    """Images as numpy arrays: the fields of :class:`kdviz.data.ImageData` that a page's first view reads
    (pictures, labels, and a shipped view's key), for images read without torch."""

    pixels: np.ndarray       # uint8, N×C×H×W
    labels: np.ndarray       # int64
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # the normalisation a network's inputs get
    std: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.labels)


class DataNotFound(RuntimeError):
    """A data set's files could not be found or downloaded."""


class DataError(ValueError):
    """A data file or folder was found but cannot be used (damaged, not an image, inconsistent)."""


def data_dir() -> Path:
    return Path(os.environ.get("KDVIZ_DATA") or Path.home() / ".cache" / "kdviz" / "data")


def reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Decode the bytes of an IDX file (unsigned-byte type, as MNIST uses), checking the
    magic number and that the data holds exactly what the header announces."""
    if len(data) < 4:
        raise DataError(f"{name}: {len(data)} bytes, too short for an IDX header")
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08 or not 1 <= data[3] <= 4:
        raise DataError(f"{name}: wrong magic number 0x{data[:4].hex()} (an IDX file of bytes starts "
                        "0x000008 then its number of dimensions, 1 to 4)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated header ({len(data)} of {header} bytes)")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = int(np.prod(dims, dtype=np.int64))
    if expected > MAX_IDX_BYTES:
        raise DataError(f"{name}: header announces {dims} = {expected:,} bytes, more than kdviz reads")
    if len(data) - header != expected:
        kind = "truncated" if len(data) - header < expected else "longer than its header says"
        raise DataError(f"{name}: {kind}: header announces {dims} ({expected:,} bytes of data), "
                        f"the file holds {len(data) - header:,}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), gzipped or not; a damaged file is a
    :class:`DataError` naming it (never more than the header's size is decompressed)."""
    path = Path(path)
    gzipped = path.suffix == ".gz"
    try:
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as f:
            head = f.read(4)
            ndim = head[3] if len(head) == 4 else 0
            head += f.read(4 * ndim) if ndim <= 4 else b""
            dims = [int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)] if ndim <= 4 else []
            size = int(np.prod(dims, dtype=np.int64)) if len(head) == 4 + 4 * ndim else 0
            # one byte more than announced tells a file that is too long from an exact one
            data = head + (f.read(size + 1) if size <= MAX_IDX_BYTES else b"")  # too big: refused unread
    except (OSError, EOFError, zlib.error) as error:
        what = "gzip-compressed IDX" if gzipped else "IDX"
        raise DataError(f"{path}: not a readable {what} file ({reason(error)})") from None
    return parse_idx(data, str(path))


def find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def idx_folders(name: str) -> tuple[Path, ...]:
    """Where an IDX data set's files are looked for, in order: ``<data dir>/<Name>/raw``, ``<data dir>/<Name>``,
    then the data set's other folders (Debian's Fashion-MNIST package)."""
    cls_name, extra = IDX_DATASETS[name]
    root = data_dir()
    return (root / cls_name / "raw", root / cls_name, *extra)


def read_test(name: str) -> tuple[np.ndarray, np.ndarray, Path]:
    """The test split of an IDX data set (``mnist``, ``fashion-mnist``) alone: uint8 images (N, 1, H, W),
    int64 labels (N,) and the folder they were read from; the training files are never opened."""
    for folder in idx_folders(name):
        images_path, labels_path = find_idx(folder, IDX_FILES[2]), find_idx(folder, IDX_FILES[3])
        if images_path and labels_path:
            images, labels = read_idx(images_path), read_idx(labels_path)
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise DataError(f"{images_path.parent}: test images and labels do not belong together")
            return images[:, None].copy(), labels.astype(np.int64), folder
    raise DataNotFound(f"{name} test files not found in {idx_folders(name)[0]}")
