"""Data sets as in-memory tensors, decoded once.

``load("mnist")`` returns :class:`Splits` (train and test :class:`ImageData`).
Pixels stay ``uint8`` in memory and are normalised per batch, so an epoch never
decodes an image twice. Where files are looked for, in order:

1. the data directory: ``$KDVIZ_DATA`` or, unset, ``~/.cache/kdviz/data``
   (MNIST IDX files in ``MNIST/raw/`` gzipped or not; CIFAR-10 as torchvision's
   ``cifar-10-batches-py/`` or as image folders ``cifar10/{train,test}/<class>/``);
2. for Fashion-MNIST, Debian's ``dataset-fashion-mnist`` package
   (``/usr/share/datasets/fashion-mnist``);
3. torchvision's download into the data directory;
4. otherwise a :class:`DataNotFound` error naming what was tried.

Decoded tensors are cached in ``$KDVIZ_CACHE`` (default ``~/.cache/kdviz``).
``digits`` (scikit-learn's 8x8 digits) is always available offline.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DIGIT_CLASSES = tuple(str(d) for d in range(10))


class DataNotFound(RuntimeError):
    """A data set's files could not be found or downloaded."""


def data_dir() -> Path:
    return Path(os.environ.get("KDVIZ_DATA") or Path.home() / ".cache" / "kdviz" / "data")


def cache_dir() -> Path:
    return Path(os.environ.get("KDVIZ_CACHE") or Path.home() / ".cache" / "kdviz")


@dataclass(frozen=True)
class ImageData:
    """One split of a data set: uint8 pixels (N,C,H,W), int64 labels, and the
    per-channel mean/std (of the train split, in [0,1] units) used to normalise."""

    name: str
    split: str
    pixels: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str = ""
    labels_hidden: bool = False

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.pixels.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def images(self, index=None) -> torch.Tensor:
        """Normalised float images, all or ``index``."""
        pixels = self.pixels if index is None else self.pixels[index]
        return normalise(pixels, self.mean, self.std)

    def subset(self, index: torch.Tensor) -> "ImageData":
        return replace(self, pixels=self.pixels[index], labels=self.labels[index])


class Splits(NamedTuple):
    train: ImageData
    test: ImageData


def normalise(pixels: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 pixels to float, standardised per channel."""
    mean = torch.tensor(mean, dtype=torch.float32, device=pixels.device).view(1, -1, 1, 1)
    std = torch.tensor(std, dtype=torch.float32, device=pixels.device).view(1, -1, 1, 1)
    return (pixels.float() / 255.0 - mean) / std


def channel_stats(pixels: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = pixels.double() / 255.0
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3))
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


# --------------------------------------------------------------------------- raw readers
def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    return None


def _unpack_idx_into(source: Path, raw_folder: Path) -> bool:
    """Make torchvision's expected unpacked IDX files exist in ``raw_folder``."""
    found = {stem: _find_idx(source, stem) for stem in IDX_FILES}
    if not all(found.values()):
        return False
    raw_folder.mkdir(parents=True, exist_ok=True)
    for stem, path in found.items():
        target = raw_folder / stem
        if target.exists():
            continue
        tmp = target.with_suffix(".tmp")
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.replace(target)
    return True


def _torchvision_mnist(cls_name: str, extra_sources: tuple[Path, ...] = ()) -> Callable[[], tuple]:
    """Loader for MNIST-format sets through torchvision's classes (``MNIST`` / ``FashionMNIST``)."""

    def load() -> tuple:
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        root = data_dir()
        tried = []
        # torchvision reads unpacked IDX files in <root>/<Class>/raw; our cache gets them
        # unpacked from any source that has them (gzipped ones included).
        unpacked_root = cache_dir() / "idx"
        for source in (root / cls_name / "raw", root / cls_name, *extra_sources):
            tried.append(str(source))
            if _unpack_idx_into(source, unpacked_root / cls_name / "raw"):
                return _from_torchvision(cls, unpacked_root, download=False), str(source)
        try:
            return _from_torchvision(cls, root, download=True), f"download into {root}"
        except Exception as error:  # noqa: BLE001 - any download failure means "not available"
            tried.append(f"torchvision download ({type(error).__name__})")
        raise DataNotFound(
            f"{cls_name} not found; tried {', '.join(tried)}. Put the four IDX files "
            f"(gzipped or not) in {root / cls_name / 'raw'} or set KDVIZ_DATA."
        )

    return load


def _from_torchvision(cls, root: Path, download: bool):
    train = cls(str(root), train=True, download=download)
    test = cls(str(root), train=False, download=download)
    to_pixels = lambda d: torch.as_tensor(np.asarray(d.data)).reshape(len(d.data), 1, 28, 28)  # noqa: E731
    return to_pixels(train), torch.as_tensor(train.targets), to_pixels(test), torch.as_tensor(test.targets)


def read_image_folder(folder: Path) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Decode every image under ``folder/<class>/`` (torchvision ImageFolder layout) into uint8 tensors.

    Grayscale folders give 1 channel, anything else RGB. All images must share one size."""
    from PIL import Image
    from torchvision.datasets import ImageFolder

    listing = ImageFolder(str(folder))
    if not listing.samples:
        raise DataNotFound(f"no images in {folder}")
    first_mode = Image.open(listing.samples[0][0]).mode
    mode = "L" if first_mode in ("L", "1") else "RGB"
    arrays = []
    for path, _ in listing.samples:
        with Image.open(path) as image:
            array = np.asarray(image.convert(mode))
        if arrays and array.shape != arrays[0].shape:
            raise ValueError(f"{path} is {array.shape[:2]}, other images are {arrays[0].shape[:2]}: resize them to one size")
        arrays.append(array)
    pixels = torch.from_numpy(np.stack(arrays))
    pixels = pixels.unsqueeze(1) if pixels.dim() == 3 else pixels.permute(0, 3, 1, 2)
    labels = torch.tensor([label for _, label in listing.samples], dtype=torch.int64)
    return pixels.contiguous(), labels, tuple(listing.classes)


def _load_cifar10() -> tuple:
    root = data_dir()
    folder = root / "cifar10"
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        train, test = (read_image_folder(folder / split) for split in ("train", "test"))
        return train[0], train[1], test[0], test[1], str(folder)
    import torchvision.datasets as tvd

    tried = [str(folder) + "/{train,test}", str(root / "cifar-10-batches-py")]
    for download in (False, True):
        try:
            train = tvd.CIFAR10(str(root), train=True, download=download)
            test = tvd.CIFAR10(str(root), train=False, download=download)
        except Exception as error:  # noqa: BLE001
            if download:
                tried.append(f"torchvision download ({type(error).__name__})")
            continue
        as_pixels = lambda d: torch.as_tensor(d.data).permute(0, 3, 1, 2).contiguous()  # noqa: E731
        return as_pixels(train), torch.as_tensor(train.targets), as_pixels(test), torch.as_tensor(test.targets), str(root)
    raise DataNotFound(
        f"cifar10 not found; tried {', '.join(tried)}. Put image folders in {folder}/train/<class>/ and "
        f"{folder}/test/<class>/, or torchvision's cifar-10-batches-py in {root}, or set KDVIZ_DATA."
    )


def _load_digits() -> tuple:
    """scikit-learn's 8x8 digits (values 0..16), split 80/20 stratified with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    x_tr, x_te, y_tr, y_te = train_test_split(pixels, digits.target, test_size=0.2, stratify=digits.target, random_state=0)
    to_t = torch.from_numpy
    return to_t(x_tr), to_t(y_tr).long(), to_t(x_te), to_t(y_te).long(), "scikit-learn load_digits"


def _mnist_like(cls_name: str, extra: tuple[Path, ...] = ()) -> Callable[[], tuple]:
    load = _torchvision_mnist(cls_name, extra)

    def loader():
        (x_tr, y_tr, x_te, y_te), source = load()
        return x_tr, y_tr.long(), x_te, y_te.long(), source

    return loader


@dataclass(frozen=True)
class DatasetEntry:
    load: Callable[[], tuple]
    classes: tuple[str, ...]
    description: str


DATASETS: dict[str, DatasetEntry] = {
    "mnist": DatasetEntry(_mnist_like("MNIST"), DIGIT_CLASSES, "MNIST handwritten digits, 28x28 grayscale"),
    "fashion-mnist": DatasetEntry(_mnist_like("FashionMNIST", (DEBIAN_FASHION_MNIST,)), FASHION_CLASSES,
                                  "Fashion-MNIST clothing, 28x28 grayscale"),
    "cifar10": DatasetEntry(_load_cifar10, CIFAR10_CLASSES, "CIFAR-10 objects, 32x32 colour"),
    "digits": DatasetEntry(_load_digits, DIGIT_CLASSES, "scikit-learn 8x8 digits (always offline)"),
}


def dataset_names() -> list[str]:
    return list(DATASETS)


def _cache_key(name: str) -> Path:
    tag = hashlib.sha256(f"{name}|{data_dir().resolve()}".encode()).hexdigest()[:12]
    return cache_dir() / "decoded" / f"{name.replace('/', '_').replace(':', '_')[-40:]}-{tag}.pt"


def _decoded(name: str, load_raw: Callable[[], tuple]) -> dict:
    """Decode a data set once; later calls (and later processes) read the tensor cache."""
    path = _cache_key(name)
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # noqa: BLE001 - a broken cache file is rebuilt
            path.unlink(missing_ok=True)
    x_tr, y_tr, x_te, y_te, source, *classes = load_raw()
    record = {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te, "source": source,
              "classes": list(classes[0]) if classes else None}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(record, tmp)
    tmp.replace(path)
    return record


_MEMORY: dict[tuple[str, str], Splits] = {}


def load(name: str) -> Splits:
    """Load a named data set (see :data:`DATASETS`) or an image folder given as a path
    (or ``folder:PATH``) holding ``train/<class>/`` and ``test/<class>/``."""
    if name in DATASETS:
        entry = DATASETS[name]
        raw, classes = entry.load, entry.classes
    else:
        folder = Path(name.removeprefix("folder:")).expanduser()
        if not (folder / "train").is_dir() or not (folder / "test").is_dir():
            raise ValueError(
                f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}, "
                "or give a folder with train/<class>/ and test/<class>/ images"
            )
        name = str(folder.resolve())

        def raw():
            (x_tr, y_tr, cls), (x_te, y_te, _) = (read_image_folder(folder / s) for s in ("train", "test"))
            return x_tr, y_tr, x_te, y_te, str(folder), cls

        classes = None
    key = (name, str(data_dir()))  # the same name in another data directory is another data set
    if key in _MEMORY:
        return _MEMORY[key]
    record = _decoded(name, raw)
    classes = tuple(record["classes"] or classes)
    mean, std = channel_stats(record["x_train"])
    make = lambda split, x, y: ImageData(name, split, x, y, classes, mean, std, record["source"])  # noqa: E731
    splits = Splits(make("train", record["x_train"], record["y_train"]), make("test", record["x_test"], record["y_test"]))
    _MEMORY[key] = splits
    return splits


# --------------------------------------------------------------------------- transfer sets
def transfer_set(
    data: ImageData,
    fraction: float = 1.0,
    omit_classes: tuple[int, ...] = (),
    hide_labels: bool = False,
    seed: int = 0,
) -> ImageData:
    """The data a student learns from (Hinton et al. 2015, §3): a random ``fraction`` of
    ``data``, without the ``omit_classes`` (the "no 3s" experiment), and with
    ``hide_labels`` the student sees the teacher's outputs only."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    for c in omit_classes:
        if not 0 <= c < data.num_classes:
            raise ValueError(f"cannot omit class {c}: {data.name} has classes 0..{data.num_classes - 1}")
    keep = ~torch.isin(data.labels, torch.tensor(list(omit_classes), dtype=torch.int64))
    index = torch.nonzero(keep).flatten()
    if fraction < 1:
        generator = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(len(index), generator=generator)[: max(1, round(fraction * len(index)))]
        index = index[chosen.sort().values]
    return replace(data.subset(index), labels_hidden=hide_labels)


# --------------------------------------------------------------------------- batching
class Batch(NamedTuple):
    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor  # positions in the ImageData, to look up cached teacher outputs


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """The usual CIFAR augmentation: random crop from a zero-padded image, random horizontal flip."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = (dy.view(n, 1) + torch.arange(h)).view(n, 1, h, 1).expand(n, x.shape[1], h, w)
    cols = (dx.view(n, 1) + torch.arange(w)).view(n, 1, 1, w).expand(n, x.shape[1], h, w)
    flip = torch.rand(n, generator=generator) < 0.5
    cols = torch.where(flip.view(n, 1, 1, 1), cols.flip(-1), cols)
    # advanced indexing picks, per sample, the shifted (and maybe mirrored) window
    return padded[torch.arange(n).view(n, 1, 1, 1), torch.arange(x.shape[1]).view(1, -1, 1, 1), rows, cols]


def batches(
    data: ImageData,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    augment: bool = False,
    device: torch.device | str = "cpu",
) -> Iterator[Batch]:
    """Normalised mini-batches from in-memory pixels; ``augment`` adds random crop and flip."""
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        index = order[start: start + batch_size]
        x = data.images(index)
        if augment:
            x = random_crop_flip(x, generator or torch.Generator().manual_seed(0))
        yield Batch(x.to(device, non_blocking=True), data.labels[index].to(device, non_blocking=True), index)
