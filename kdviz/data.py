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

Files are checked as they are read: a truncated or wrongly typed IDX file, a
non-image in an image folder, counts that disagree or classes that do not match
between splits are a :class:`DataError` naming the file. Decoded tensors are
cached in ``$KDVIZ_CACHE`` (default ``~/.cache/kdviz``), keyed by the identity of
the source files (path, size and modification time of each) and checked against
it on every read, so a changed or broken folder never reads another's tensors.
``digits`` (scikit-learn's 8x8 digits) is always available offline.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import stat as stat_module
import warnings
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch

from kdviz.files import read_json, write_atomic
from kdviz.idx import (  # noqa: F401 - the IDX readers and data errors (torch-free), under the names kdviz uses
    DEBIAN_FASHION_MNIST,
    IDX_DATASETS,
    IDX_FILES,
    MAX_IDX_BYTES,
    DataError,
    DataNotFound,
    data_dir,
    find_idx,
    idx_folders,
    parse_idx,
    read_idx,
    read_test,
)
from kdviz.idx import reason as _reason

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DIGIT_CLASSES = tuple(str(d) for d in range(10))


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
    """Per-channel mean and (unbiased) standard deviation of uint8 pixels in [0, 1] units, rounded
    to 4 decimals; exact, from a 256-bin histogram per channel (no float copy of the data:
    CIFAR-10's train split would need 1.2 GB as float64)."""
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(pixels.shape[1]):
        counts = torch.bincount(pixels[:, c].reshape(-1), minlength=256).double()
        n = counts.sum()
        mean = (counts * values).sum() / n
        var = (counts * (values - mean) ** 2).sum() / max(n - 1, 1)
        means.append(round(mean.item(), 4))
        stds.append(round(var.sqrt().item(), 4))
    return tuple(means), tuple(stds)


# --------------------------------------------------------------------------- raw readers
MAX_IMAGE_PIXELS = 4096 * 4096   # per image in a data folder (CIFAR: 32x32)
MAX_TRAIN_SIDE = 128             # images a data set trains on: at most this side (kdviz.models.MAX_IMAGE_SIDE,
                                 # checked here before a folder is decoded; tests/test_bad_inputs.py checks they agree)
MAX_FOLDER_BYTES = 8 << 30       # decoded pixels of a whole image folder
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")


def read_idx_folder(folder: Path, num_classes: int = 10) -> tuple:
    """The four MNIST-format files of ``folder`` as (x_train, y_train, x_test, y_test),
    checked: images (N,H,W), labels (N,) with the same N, labels below ``num_classes``."""
    found = {stem: find_idx(folder, stem) for stem in IDX_FILES}
    missing = [stem for stem, path in found.items() if path is None]
    if missing:
        raise DataError(f"{folder} lacks {', '.join(missing)} (gzipped or not)")
    out = []
    for prefix in ("train", "t10k"):
        images_path, labels_path = found[f"{prefix}-images-idx3-ubyte"], found[f"{prefix}-labels-idx1-ubyte"]
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or labels.ndim != 1:
            raise DataError(f"{images_path.parent}: expected images with 3 dimensions and labels with 1, found "
                            f"{images.ndim} ({images_path.name}) and {labels.ndim} ({labels_path.name})")
        if len(images) != len(labels):
            raise DataError(f"{images_path} holds {len(images):,} images but {labels_path.name} holds "
                            f"{len(labels):,} labels: the files do not belong together")
        if len(labels) and labels.max() >= num_classes:
            raise DataError(f"{labels_path}: label {int(labels.max())} found, this data set has {num_classes} classes")
        if len(labels) == 0:
            raise DataError(f"{labels_path}: no images")
        out += [torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))]
    if out[0].shape[1:] != out[2].shape[1:]:
        raise DataError(f"{folder}: train images are {tuple(out[0].shape[2:])}, test images {tuple(out[2].shape[2:])}")
    check_image_size(tuple(out[0].shape[2:]), folder)
    return tuple(out)


@dataclass(frozen=True)
class Source:
    """Where a data set's files are: a description (recorded as the data's source), the files
    whose identity keys the decoded cache, and how to decode them."""

    description: str
    # the files, or how to list them: a folder of 60,000 images takes most of a second to list, and
    # only the cache's identity needs the list (knowing where a data set is does not)
    files: tuple[Path, ...] | Callable[[], tuple[Path, ...]]
    decode: Callable[[], tuple]  # -> (x_train, y_train, x_test, y_test[, classes])
    extra: str = ""              # anything else the decoded tensors depend on (a library version)


def source_identity(source: Source) -> str:
    """sha256 over the source's description and each file's resolved path, size and mtime:
    a changed, added, removed or replaced file gives another identity (another cache entry).
    Every warm load of a data set computes it, so each folder is resolved once (:func:`_resolved_files`)."""
    digest = hashlib.sha256(f"{source.description}|{source.extra}".encode())
    for resolved, stat in _resolved_files(source.files() if callable(source.files) else source.files):
        digest.update(f"|{resolved}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _resolved_files(paths) -> Iterator[tuple[str, os.stat_result]]:
    """Each file's resolved path (as ``str(path.resolve())`` gives it) and its stat. A file that is not a
    link resolves to its resolved folder plus its name, so a folder is resolved once, not once per file
    (with :func:`_files_under`, CIFAR-10's identity in 1.7 s instead of 5.8 s: ``benchmarks/data_speed.py``)."""
    folders: dict[str, str] = {}
    for path in paths:
        text = os.fspath(path)
        stat = os.lstat(text)
        folder, name = os.path.split(text)
        if stat_module.S_ISLNK(stat.st_mode) or name in ("", ".", ".."):
            yield str(Path(text).resolve()), os.stat(text)
            continue
        if folder not in folders:
            folders[folder] = str(Path(folder or ".").resolve())
        yield os.path.join(folders[folder], name), stat


def _mnist_source(name: str, num_classes: int) -> Callable[[], Source]:
    """Locate an IDX data set's files (``mnist``, ``fashion-mnist``): :func:`kdviz.idx.idx_folders`, then
    torchvision's download."""
    cls_name = IDX_DATASETS[name][0]

    def locate() -> Source:
        root = data_dir()
        candidates = idx_folders(name)
        for folder in candidates:
            files = [p for stem in IDX_FILES if (p := find_idx(folder, stem))]
            if files:  # some files here: this is the source (a partial folder is an error, not skipped)
                return Source(str(folder), tuple(files), lambda folder=folder: read_idx_folder(folder, num_classes))
        tried = [str(c) for c in candidates]
        try:
            import torchvision.datasets as tvd  # late: only to try a download, once

            getattr(tvd, cls_name)(str(root), train=True, download=True)
            getattr(tvd, cls_name)(str(root), train=False, download=True)
        except Exception as error:  # noqa: BLE001 - any download failure means "not available"
            tried.append(f"torchvision download ({type(error).__name__})")
            raise DataNotFound(
                f"{cls_name} not found; tried {', '.join(tried)}. Put the four IDX files "
                f"(gzipped or not) in {root / cls_name / 'raw'} or set KDVIZ_DATA."
            ) from None
        folder = root / cls_name / "raw"
        files = tuple(p for stem in IDX_FILES if (p := find_idx(folder, stem)))
        return Source(f"download into {root}", files, lambda: read_idx_folder(folder, num_classes))

    return locate


def _image_listing(folder: Path) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """Class names (sub-folders, sorted) and (file, class index) pairs of an ImageFolder-layout
    split; hidden files are skipped, any other non-image file is an error."""
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder")
    classes = tuple(sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")))
    samples = []
    for index, name in enumerate(classes):
        files = sorted(p for p in _files_under(folder / name) if not p.name.startswith("."))
        for path in files:
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                raise DataError(f"{path} is not an image file (kdviz reads {', '.join(IMAGE_EXTENSIONS)}): "
                                "remove it from the data folder")
            samples.append((path, index))
    return classes, samples


def eight_bit(image, name: str | Path = "this image"):
    """``image`` (PIL) with 8 bits per channel: a 16-bit grayscale one scaled down (Pillow's own
    conversion clips it, which turns a 16-bit scan white), a 32-bit integer or float one refused,
    since its range cannot be told from the file (converted, it would come out flat)."""
    from PIL import Image  # late, as in _open_image

    if image.mode.startswith("I;16"):
        return Image.fromarray((np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8), "L")
    if image.mode in ("I", "F"):
        kind = "32-bit integer" if image.mode == "I" else "floating-point"
        raise DataError(f"{name} has {kind} pixels; kdviz reads 8- and 16-bit images: save it as an 8-bit PNG")
    return image


def check_image_size(shape: tuple[int, int], where) -> None:
    """Refuse images larger than any model is built for (:data:`MAX_TRAIN_SIDE` a side; ``shape``
    is height, width; ``where`` names the file or folder), before a whole folder of them is decoded."""
    height, width = shape
    if max(height, width) > MAX_TRAIN_SIDE:
        raise DataError(f"{where}: images are {width}x{height} pixels; kdviz trains on images of at most "
                        f"{MAX_TRAIN_SIDE}x{MAX_TRAIN_SIDE}: resize them")


def _open_image(path: Path, mode: str | None, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """One decoded image as an array, refusing non-images and images over ``max_pixels``
    (the size is read from the header, before any decoding)."""
    from PIL import Image  # late: only an image folder needs it, decoded once

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise DataError(f"{path} is {width}x{height} pixels, more than the {max_pixels:,} "
                                    "kdviz decodes per image: resize it")
                image = eight_bit(image, path)
                if mode is None:
                    mode = "L" if image.mode in ("L", "LA", "1") else "RGB"
                return np.asarray(image.convert(mode))
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as error:  # UnidentifiedImageError is an OSError
        raise DataError(f"{path} is not a readable image ({_reason(error)})") from None


MAX_UPLOAD_BYTES = 20 << 20      # an uploaded file
MAX_UPLOAD_PIXELS = 9_000_000    # decoded pixels of an upload (3000x3000): plenty for a digit or a CIFAR photo
UPLOAD_SIDE = 512                # uploads are downscaled to at most this side on load


def open_upload(content: bytes, max_pixels: int = MAX_UPLOAD_PIXELS, side: int = UPLOAD_SIDE):
    """An uploaded file as a small PIL image (at most ``side`` pixels a side, EXIF orientation
    applied), or a :class:`DataError` with a message meant for the person who uploaded it.

    The size is read from the header before decoding; JPEGs are decoded at a reduced scale
    when they are larger than needed, so a phone photo costs a fraction of its full size;
    anything still over ``max_pixels`` is refused rather than decoded."""
    from PIL import Image, ImageOps  # late: only an uploaded image needs it

    if len(content) > MAX_UPLOAD_BYTES:
        raise DataError(f"this file is {len(content) / 2**20:.0f} MB; upload an image under "
                        f"{MAX_UPLOAD_BYTES >> 20} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(content))
            if image.format == "JPEG":
                image.draft("RGB" if image.mode not in ("L", "1") else "L", (side, side))
            width, height = image.size
            if width * height > max_pixels:
                raise DataError(f"this image is {width}x{height} pixels; kdviz reads images up to "
                                f"{max_pixels / 1e6:.0f} megapixels: save a smaller copy and upload that")
            image = eight_bit(ImageOps.exif_transpose(image))
            image.thumbnail((side, side))
            image.load()
            return image
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"this image is far too large to decode; kdviz reads images up to "
                        f"{max_pixels / 1e6:.0f} megapixels: save a smaller copy and upload that") from None
    except (OSError, ValueError, SyntaxError, EOFError, TypeError):  # UnidentifiedImageError is an OSError
        raise DataError("this file is not an image kdviz can read: upload a PNG, JPEG, BMP, GIF or WebP "
                        "picture") from None


def read_image_folder(folder: Path, classes: tuple[str, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Decode every image under ``folder/<class>/`` (torchvision ImageFolder layout) into uint8 tensors.

    Grayscale folders give 1 channel, anything else RGB. All images must share one size.
    With ``classes`` (the training split's), labels follow those names and a class not
    among them is an error."""
    found, samples = _image_listing(Path(folder))
    if not samples:
        raise DataError(f"no images in {folder} (expected {folder}/<class>/<image files>)")
    if classes is not None:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise DataError(f"{folder} has classes the training split lacks: {', '.join(extra)}")
        samples = [(path, classes.index(found[i])) for path, i in samples]
    first = _open_image(samples[0][0], None)
    check_image_size(first.shape[:2], samples[0][0])  # before the other images are decoded
    if len(samples) * first.size > MAX_FOLDER_BYTES:
        raise DataError(f"{folder}: {len(samples):,} images of {first.shape} would take "
                        f"{len(samples) * first.size / 2**30:.1f} GiB decoded; kdviz holds at most "
                        f"{MAX_FOLDER_BYTES / 2**30:.0f} GiB")
    arrays = [first] + _decode_like([path for path, _ in samples[1:]], first)
    pixels = torch.from_numpy(np.stack(arrays))
    pixels = pixels.unsqueeze(1) if pixels.dim() == 3 else pixels.permute(0, 3, 1, 2)
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return pixels.contiguous(), labels, tuple(classes if classes is not None else found)


# Importing torchvision costs 1.6-2.0 s beyond torch on a 2-core AMD EPYC, what its decoder saves over PIL
# on about 10,000 small JPEG files (0.1 against 0.25 ms a file): below this many, PIL alone is as quick.
BATCH_DECODE_FROM = 20_000


def _decode_like(paths: list[Path], first: np.ndarray, batch: int = 4096) -> list[np.ndarray]:
    """Decode ``paths``, each of which must come out the shape of ``first`` (grayscale or RGB like it).

    In a folder of at least :data:`BATCH_DECODE_FROM` files, JPEG files whose header (:func:`jpeg_frame`)
    already gives that size and channel count are decoded a batch at a time by torchvision's libjpeg-turbo:
    the same pixels as PIL (tested), CIFAR-10's 60,000 files in 7.2 s instead of 15.4 s on a 2-core AMD
    EPYC (``benchmarks/data_speed.py``), where PIL's parsing of each file's header in Python is most of its time. Every other
    file, and every file of a batch that fails, goes through :func:`_open_image` (PIL) one at a time,
    which names the file that cannot be read."""
    mode = "L" if first.ndim == 2 else "RGB"
    frame = (*first.shape[:2], 1 if mode == "L" else 3)
    decode = _jpeg_batch_decoder(mode) if len(paths) >= BATCH_DECODE_FROM else None
    arrays: list[np.ndarray | None] = [None] * len(paths)
    pending: list[tuple[int, bytes]] = []

    def keep(i: int, array: np.ndarray) -> None:
        if array.shape != first.shape:
            raise DataError(f"{paths[i]} is {array.shape[:2]}, other images are {first.shape[:2]}: resize them to one size")
        arrays[i] = array

    def flush() -> None:
        decoded = decode([content for _, content in pending]) if decode and pending else None
        for (i, _), array in zip(pending, decoded or [None] * len(pending)):
            keep(i, array if array is not None else _open_image(paths[i], mode))
        pending.clear()

    for i, path in enumerate(paths):
        if decode and path.suffix.lower() in (".jpg", ".jpeg"):
            content = path.read_bytes()
            if jpeg_frame(content) == frame:
                pending.append((i, content))
                if len(pending) == batch:
                    flush()
                continue
        keep(i, _open_image(path, mode))
    flush()
    return arrays


def _jpeg_batch_decoder(mode: str) -> Callable[[list[bytes]], list[np.ndarray] | None] | None:
    """torchvision's batched JPEG decoder as a function from file contents to arrays (H, W[, 3]), or
    None for the whole batch when any file in it fails; None where this torchvision has none (it is
    deprecated in torchvision 0.29 in favour of TorchCodec, so a later release may drop it: PIL then
    decodes everything)."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg  # late: only an image folder needs it
    except ImportError:
        return None
    read_mode = ImageReadMode.GRAY if mode == "L" else ImageReadMode.RGB

    def decode(contents: list[bytes]) -> list[np.ndarray] | None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*image decoding and encoding capabilities of TorchVision")
            try:
                images = decode_jpeg([torch.frombuffer(bytearray(c), dtype=torch.uint8) for c in contents], mode=read_mode)
            except (RuntimeError, TypeError, ValueError):  # a broken file: PIL finds and names it
                return None
        return [image[0].numpy() if mode == "L" else image.permute(1, 2, 0).numpy() for image in images]
    return decode


_DECODABLE_FRAMES = (0xC0, 0xC1, 0xC2)  # SOF0-2: baseline, extended and progressive Huffman JPEG


def jpeg_frame(content: bytes) -> tuple[int, int, int] | None:
    """(height, width, components) from a JPEG file's frame header (ITU-T T.81, B.2.2), read without
    decoding; None for anything else, or for a frame other than 8-bit Huffman baseline, extended or
    progressive (lossless, arithmetic-coded, 12-bit), which PIL decodes instead."""
    if content[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(content):
        if content[i] != 0xFF:
            return None
        marker = content[i + 1]
        if marker == 0xFF:  # a fill byte before a marker
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # the image ends, or its scan starts, before any frame header
            return None
        length = int.from_bytes(content[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start-of-frame marker
            if marker not in _DECODABLE_FRAMES or length < 8 or i + 10 > len(content) or content[i + 4] != 8:
                return None
            return int.from_bytes(content[i + 5:i + 7], "big"), int.from_bytes(content[i + 7:i + 9], "big"), content[i + 9]
        i += 2 + length
    return None


def read_image_splits(folder: Path) -> tuple:
    """``folder/train`` and ``folder/test`` as (x_train, y_train, x_test, y_test, classes); the
    test split's classes must be among the training split's, and there must be at least two."""
    x_tr, y_tr, classes = read_image_folder(folder / "train")
    if len(classes) < 2:
        raise DataError(f"{folder / 'train'} has {len(classes)} class ({', '.join(classes)}): a classifier needs "
                        "at least two class folders")
    empty = [c for i, c in enumerate(classes) if not (y_tr == i).any()]
    if empty:
        raise DataError(f"{folder / 'train'}: class folder(s) without images: {', '.join(empty)}")
    x_te, y_te, _ = read_image_folder(folder / "test", classes)
    if x_te.shape[1:] != x_tr.shape[1:]:
        raise DataError(f"{folder}: test images are {tuple(x_te.shape[1:])}, train images {tuple(x_tr.shape[1:])}")
    return x_tr, y_tr, x_te, y_te, classes


def _folder_files(folder: Path) -> tuple[Path, ...]:
    return tuple(sorted(p for split in ("train", "test") for p in _files_under(folder / split)))


def _files_under(folder: Path) -> list[Path]:
    """The files under ``folder``, at any depth, as ``[p for p in folder.rglob("*") if p.is_file()]``
    finds them (links to files counted, links to folders not followed, unreadable folders skipped),
    with one scan of each folder and no stat of a file that is not a link (timed with :func:`_resolved_files`
    in the identity row of ``benchmarks/data_speed.py``)."""
    found, folders = [], [folder]
    while folders:
        directory = folders.pop()
        try:
            with os.scandir(directory) as scan:
                entries = list(scan)
        except PermissionError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                folders.append(directory / entry.name)
            elif _is_file(entry):
                found.append(directory / entry.name)
    return found


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:  # a link that cannot be followed
        return False


def _cifar10_source() -> Source:
    root = data_dir()
    folder = root / "cifar10"
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        return Source(str(folder), lambda: _folder_files(folder), lambda: read_image_splits(folder)[:4])
    import torchvision.datasets as tvd  # late: only torchvision's own CIFAR copy needs it

    tried = [str(folder) + "/{train,test}", str(root / "cifar-10-batches-py")]
    for download in (False, True):
        try:
            # torchvision checks each batch file's md5 before unpickling it
            train = tvd.CIFAR10(str(root), train=True, download=download)
            tvd.CIFAR10(str(root), train=False, download=download)
        except Exception as error:  # noqa: BLE001
            if download:
                tried.append(f"torchvision download ({type(error).__name__})")
            continue
        batches_dir = Path(train.root) / train.base_folder
        files = tuple(sorted(p for p in batches_dir.iterdir() if p.is_file()))

        def decode():
            as_pixels = lambda d: torch.as_tensor(d.data).permute(0, 3, 1, 2).contiguous()  # noqa: E731
            tr, te = (tvd.CIFAR10(str(root), train=t, download=False) for t in (True, False))
            return as_pixels(tr), torch.as_tensor(tr.targets), as_pixels(te), torch.as_tensor(te.targets)

        return Source(str(root), files, decode)
    raise DataNotFound(
        f"cifar10 not found; tried {', '.join(tried)}. Put image folders in {folder}/train/<class>/ and "
        f"{folder}/test/<class>/, or torchvision's cifar-10-batches-py in {root}, or set KDVIZ_DATA."
    )


def _load_digits() -> tuple:
    """scikit-learn's 8x8 digits (values 0..16), split 80/20 stratified with a fixed seed."""
    from sklearn.datasets import load_digits  # late: scikit-learn takes seconds to import
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    x_tr, x_te, y_tr, y_te = train_test_split(pixels, digits.target, test_size=0.2, stratify=digits.target, random_state=0)
    to_t = torch.from_numpy
    return to_t(x_tr), to_t(y_tr).long(), to_t(x_te), to_t(y_te).long()


def _digits_source() -> Source:
    """Always here; scikit-learn's version (read from its installed metadata, not by importing it: that
    takes a second) names the decoded copy."""
    return Source("scikit-learn load_digits", (), _load_digits, extra=f"sklearn {metadata.version('scikit-learn')}")


@dataclass(frozen=True)
class DatasetEntry:
    locate: Callable[[], Source]
    classes: tuple[str, ...]
    description: str


DATASETS: dict[str, DatasetEntry] = {
    "mnist": DatasetEntry(_mnist_source("mnist", 10), DIGIT_CLASSES, "MNIST handwritten digits, 28x28 grayscale"),
    "fashion-mnist": DatasetEntry(_mnist_source("fashion-mnist", 10), FASHION_CLASSES,
                                  "Fashion-MNIST clothing, 28x28 grayscale"),
    "cifar10": DatasetEntry(_cifar10_source, CIFAR10_CLASSES, "CIFAR-10 objects, 32x32 colour"),
    "digits": DatasetEntry(_digits_source, DIGIT_CLASSES, "scikit-learn 8x8 digits (always offline)"),
}


def dataset_names() -> list[str]:
    return list(DATASETS)


def _cache_path(name: str, identity: str) -> Path:
    return cache_dir() / "decoded" / f"{name.replace('/', '_').replace(':', '_')[-40:]}-{identity[:16]}.pt"


def _valid_record(record, identity: str) -> bool:
    """A decoded cache entry is used only if it names the same source identity and its
    tensors are consistent (uint8 images and int64 labels, one label per image)."""
    try:
        x_tr, y_tr, x_te, y_te = (record[k] for k in ("x_train", "y_train", "x_test", "y_test"))
        return (record.get("identity") == identity
                and all(isinstance(t, torch.Tensor) for t in (x_tr, y_tr, x_te, y_te))
                and x_tr.dtype == x_te.dtype == torch.uint8 and x_tr.dim() == x_te.dim() == 4
                and y_tr.dtype == y_te.dtype == torch.int64
                and len(x_tr) == len(y_tr) > 0 and len(x_te) == len(y_te) > 0)
    except (KeyError, TypeError, AttributeError):
        return False


def _decoded(name: str, source: Source) -> dict:
    """Decode a data set once; later calls (and later processes) read the tensor cache,
    whose entries are keyed by, and checked against, the source's identity."""
    identity = source_identity(source)
    path = _cache_path(name, identity)
    if path.exists():
        try:
            record = torch.load(path, weights_only=True)
            if _valid_record(record, identity):
                if not _has_stats(record):  # an entry written before entries kept them: add them, once
                    _save_decoded(path, _with_stats(record))
                return record
        except Exception:  # noqa: BLE001 - a broken cache file is rebuilt, never trusted
            pass
    x_tr, y_tr, x_te, y_te, *classes = source.decode()
    record = {"x_train": x_tr, "y_train": y_tr.long(), "x_test": x_te, "y_test": y_te.long(),
              "source": source.description, "identity": identity,
              "classes": list(classes[0]) if classes else None}
    _save_decoded(path, _with_stats(record))
    return record


def _save_decoded(path: Path, record: dict) -> None:
    try:
        write_atomic(path, lambda f: torch.save(record, f))
    except OSError:
        pass  # a cache that cannot be written costs the next process a decode, nothing else


def _with_stats(record: dict) -> dict:
    """``record`` with the train split's :func:`channel_stats` as ``mean`` and ``std``: kept in the
    cache entry, so a warm process does not count MNIST's 47 million pixels again (0.1-0.3 s)."""
    mean, std = channel_stats(record["x_train"])
    record.update(mean=list(mean), std=list(std))
    return record


def _has_stats(record: dict) -> bool:
    channels = record["x_train"].shape[1]
    return all(isinstance(record.get(k), list) and len(record[k]) == channels
               and all(isinstance(v, float) and math.isfinite(v) for v in record[k]) for k in ("mean", "std"))


_MEMORY: dict[tuple[str, str], Splits] = {}


def _folder_source(folder: Path) -> Source:
    # extra: 16-bit images are scaled, no longer clipped (entries decoded before are not reused)
    return Source(str(folder), lambda: _folder_files(folder), lambda: read_image_splits(folder), extra="16-bit scaled")


def load(name: str) -> Splits:
    """Load a named data set (see :data:`DATASETS`) or an image folder given as a path
    (or ``folder:PATH``) holding ``train/<class>/`` and ``test/<class>/``.

    Files that cannot be used (truncated, not images, counts that disagree) raise
    :class:`DataError` with one line naming the file."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset must be a name or a folder, got {name!r}")
    if name in DATASETS:
        entry = DATASETS[name]
        locate, classes = entry.locate, entry.classes
    else:
        folder = Path(name.removeprefix("folder:")).expanduser()
        if not (folder / "train").is_dir() or not (folder / "test").is_dir():
            raise ValueError(unknown_dataset(name))
        name = str(folder.resolve())
        locate, classes = (lambda folder=folder: _folder_source(folder)), None
    key = (name, str(data_dir()))  # the same name in another data directory is another data set
    if key in _MEMORY:
        return _MEMORY[key]
    record = _decoded(name, locate())
    classes = tuple(record["classes"] or classes)
    for split in ("train", "test"):
        labels = record[f"y_{split}"]
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise DataError(f"{record['source']}: {split} labels outside 0..{len(classes) - 1}")
    mean, std = tuple(record["mean"]), tuple(record["std"])  # channel_stats of the train split, cached
    if max(std) == 0:
        raise DataError(f"{record['source']}: every training image is one flat colour ({len(record['y_train']):,} "
                        "images, each pixel the same value): there is nothing to learn from")
    std = tuple(s if s > 0 else 1.0 for s in std)  # a channel that never varies: centred, not divided by 0
    if name not in DATASETS and (Path(name) / NORMALISATION).is_file():
        mean, std = read_normalisation(Path(name) / NORMALISATION, len(mean))
    make = lambda split, x, y: ImageData(name, split, x, y, classes, mean, std, record["source"])  # noqa: E731
    splits = Splits(make("train", record["x_train"], record["y_train"]), make("test", record["x_test"], record["y_test"]))
    _MEMORY[key] = splits
    return splits


NORMALISATION = "normalisation.json"  # an image folder may name the mean/std its inputs are normalised with


def read_normalisation(path: Path, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``{"mean": [...], "std": [...]}`` of a folder (e.g. images dreamed by a teacher, which must be
    normalised as the teacher's training data was, not by their own statistics)."""
    try:
        values = read_json(path)
        mean, std = tuple(float(v) for v in values["mean"]), tuple(float(v) for v in values["std"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path}: not a normalisation file ({_reason(error)})") from None
    if len(mean) != channels or len(std) != channels or not all(math.isfinite(v) for v in mean + std) \
            or min(std) <= 0:
        raise DataError(f"{path}: needs {channels} finite mean and {channels} positive, finite std values")
    return mean, std


def load_test(name: str, mean, std) -> ImageData:
    """The test split of a named data set alone, normalised with ``mean``/``std`` (e.g. a teacher's):
    the training files are never opened, for experiments that must not see the training data."""
    if name in IDX_DATASETS:
        pixels, labels, folder = read_test(name)
        return ImageData(name, "test", torch.from_numpy(pixels), torch.from_numpy(labels), DATASETS[name].classes,
                         tuple(mean), tuple(std), str(folder))
    if name == "digits":
        _, _, x_te, y_te = _load_digits()
        return ImageData(name, "test", x_te, y_te, DIGIT_CLASSES, tuple(mean), tuple(std), "scikit-learn load_digits")
    if name == "cifar10" and (data_dir() / "cifar10" / "test").is_dir():
        x_te, y_te, classes = read_image_folder(data_dir() / "cifar10" / "test", CIFAR10_CLASSES)
        return ImageData(name, "test", x_te, y_te, classes, tuple(mean), tuple(std), str(data_dir() / "cifar10"))
    raise DataNotFound(f"no test split alone for {name!r} (mnist, fashion-mnist, digits, cifar10 as image folders)")


def unknown_dataset(name: str) -> str:
    """The one line for a data set name that is neither a known data set nor a usable folder."""
    folder = Path(str(name).removeprefix("folder:")).expanduser()
    if str(name).strip() and folder.is_dir():
        lacking = " and ".join(s + "/" for s in ("train", "test") if not (folder / s).is_dir())
        return (f"data set folder {folder} has no {lacking} folder; it needs train/<class>/ and test/<class>/ "
                "folders of images")
    return (f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}, "
            "or give a folder with train/<class>/ and test/<class>/ images")


def num_classes_of(name: str) -> int | None:
    """The number of classes of a named data set or image folder, without loading it
    (None when it cannot be told cheaply)."""
    if name in DATASETS:
        return len(DATASETS[name].classes)
    train = Path(str(name).removeprefix("folder:")).expanduser() / "train"
    if train.is_dir() and train.with_name("test").is_dir():
        return sum(1 for d in train.iterdir() if d.is_dir() and not d.name.startswith("."))
    return None


# --------------------------------------------------------------------------- transfer sets
def check_transfer_options(fraction: float, omit_classes, num_classes: int | None) -> None:
    """Refuse transfer-set options that make no sense (before any data is loaded when
    ``num_classes`` is known): a fraction outside (0, 1] or not a number, class indices
    that do not exist, or leaving out every class."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not math.isfinite(fraction) \
            or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}")
    for c in omit_classes:
        if isinstance(c, bool) or not isinstance(c, int) or c < 0 or (num_classes is not None and c >= num_classes):
            top = f"0..{num_classes - 1}" if num_classes else "0 and up"
            raise ValueError(f"cannot omit class {c!r}: class indices are {top}")
    if num_classes is not None and len(set(omit_classes)) >= num_classes:
        raise ValueError(f"cannot leave out all {num_classes} classes: the student would have nothing to learn from")


HOLDOUT_SEED = 1234  # one validation slice per data set, whatever the run's seed


def holdout_split(data: ImageData, holdout: int) -> tuple[ImageData, ImageData]:
    """``(rest, held)``: ``holdout`` images drawn at random (a fixed seed, so every run of a
    data set holds out the same ones) kept apart from ``data`` as a validation slice."""
    if not 0 <= holdout < len(data):
        raise ValueError(f"holdout must be in [0, {len(data)}) images, got {holdout}")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(HOLDOUT_SEED))
    return data.subset(order[holdout:].sort().values), data.subset(order[:holdout].sort().values)


def transfer_set(
    data: ImageData,
    fraction: float = 1.0,
    omit_classes: tuple[int, ...] = (),
    hide_labels: bool = False,
    seed: int = 0,
    holdout: int = 0,
) -> ImageData:
    """The data a student learns from (Hinton et al. 2015, §3): a random ``fraction`` of
    ``data``, without the ``omit_classes`` (the "no 3s" experiment), and with
    ``hide_labels`` the student sees the teacher's outputs only. ``holdout`` images
    (:func:`holdout_split`) are kept out first, for choosing things on data no student saw."""
    check_transfer_options(fraction, omit_classes, data.num_classes)
    if holdout:
        data = holdout_split(data, holdout)[0]
    keep = ~torch.isin(data.labels, torch.tensor(list(omit_classes), dtype=torch.int64))
    index = torch.nonzero(keep).flatten()
    if len(index) == 0:
        raise ValueError(f"the transfer set is empty: leaving out classes {sorted(set(omit_classes))} "
                         f"leaves no images of {data.name}")
    if fraction < 1:
        generator = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(len(index), generator=generator)[: max(1, round(fraction * len(index)))]
        index = index[chosen.sort().values]
        if len(torch.unique(data.labels[index])) < 2:  # one image, or one class: nothing a classifier can learn
            raise ValueError(f"fraction {fraction:g} of {data.name}'s training images leaves {len(index):,} image(s) "
                             "of a single class: a classifier needs at least two classes; raise the fraction")
    if len(index) == len(data):  # every image, in order: the same tensors (a copy of MNIST costs 0.1-0.2 s)
        return replace(data, labels_hidden=hide_labels)
    return replace(data.subset(index), labels_hidden=hide_labels)


# --------------------------------------------------------------------------- batching
class Batch(NamedTuple):
    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor  # positions in the ImageData, to look up cached teacher outputs


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """The usual CIFAR augmentation: random crop from a zero-padded image, random horizontal flip.
    The draws come from ``generator`` (a CPU one) whatever device ``x`` is on, so a seeded run
    sees the same crops on the CPU and on a GPU."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    rows, cols = _windows(dy, dx, x.shape)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    cols = torch.where(flip.view(n, 1, 1, 1), cols.flip(-1), cols)
    return _pick(padded, rows, cols)


def _windows(dy: torch.Tensor, dx: torch.Tensor, shape) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices, per sample, of an h x w window at offset (dy, dx) in a padded image."""
    n, c, h, w = shape
    rows = (dy.view(n, 1) + torch.arange(h, device=dy.device)).view(n, 1, h, 1).expand(n, c, h, w)
    cols = (dx.view(n, 1) + torch.arange(w, device=dx.device)).view(n, 1, 1, w).expand(n, c, h, w)
    return rows, cols


def _pick(padded: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Advanced indexing: per sample and channel, the window that ``rows`` and ``cols`` name."""
    n, c = rows.shape[:2]
    return padded[torch.arange(n, device=padded.device).view(n, 1, 1, 1),
                  torch.arange(c, device=padded.device).view(1, c, 1, 1), rows, cols]


def random_shift(pixels: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Hinton et al. (2015, §3) jitter: each image moved by a random whole number of pixels in
    [−max_shift, max_shift] along each axis independently; the border it uncovers is filled with
    0 (MNIST's black background). Works on raw (uint8) pixels, before normalising, on any device
    (the draws come from the CPU ``generator``)."""
    k = max_shift
    padded = torch.nn.functional.pad(pixels, (k, k, k, k))
    dy = torch.randint(0, 2 * k + 1, (len(pixels),), generator=generator).to(pixels.device)
    dx = torch.randint(0, 2 * k + 1, (len(pixels),), generator=generator).to(pixels.device)
    return _pick(padded, *_windows(dy, dx, pixels.shape))


def on_device(data: ImageData, device: torch.device | str) -> ImageData:
    """``data`` with its pixels and labels resident on ``device`` (uint8: CIFAR-10's training set
    is 154 MB), so that a GPU run gathers, augments and normalises its batches there instead of
    copying each one from the host. The CPU keeps ``data`` as it is."""
    device = torch.device(device)
    if device.type == "cpu" or data.pixels.device == device:
        return data
    return replace(data, pixels=data.pixels.to(device), labels=data.labels.to(device))


def batches(
    data: ImageData,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    augment: bool = False,
    device: torch.device | str = "cpu",
    jitter: int = 0,
) -> Iterator[Batch]:
    """Normalised mini-batches from in-memory pixels; ``augment`` adds random crop and flip,
    ``jitter`` shifts every image by up to that many pixels (:func:`random_shift`)."""
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        index = order[start: start + batch_size]
        if jitter:
            pixels = random_shift(data.pixels[index.to(data.pixels.device)], jitter,
                                  generator or torch.Generator().manual_seed(0))
            x = normalise(pixels, data.mean, data.std)
        else:
            x = data.images(index.to(data.pixels.device))
        if augment:
            x = random_crop_flip(x, generator or torch.Generator().manual_seed(0))
        labels = data.labels[index.to(data.labels.device)]
        yield Batch(x.to(device, non_blocking=True), labels.to(device, non_blocking=True), index)
