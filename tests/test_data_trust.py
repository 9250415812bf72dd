"""Damaged data files and folders: one clear error naming the file, never a traceback from
deep inside a reader, never a silently shortened set, never a cache entry that outlives
(or poisons) its source. Property-based tests (hypothesis) feed the IDX parser random
bytes, truncations and headers that disagree with their data."""
from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from kdviz import data, files

from conftest import REPO, make_fake_mnist, write_idx


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """Empty data and cache folders, no memory cache, no downloads."""
    monkeypatch.setenv("KDVIZ_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("KDVIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_MEMORY", {})
    import torchvision.datasets as tvd

    def offline(*args, **kwargs):
        raise RuntimeError("offline (test)")

    for cls in (tvd.MNIST, tvd.FashionMNIST, tvd.CIFAR10):
        monkeypatch.setattr(cls, "download", offline)
    return tmp_path


def _mnist(fresh: Path, n_train=200, n_test=50) -> Path:
    raw = fresh / "data" / "MNIST" / "raw"
    make_fake_mnist(raw, n_train, n_test)
    return raw


def _one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# --------------------------------------------------------------------------- IDX files
def test_truncated_gzip_idx_names_the_file(fresh):
    raw = _mnist(fresh)
    path = raw / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(data.DataError) as error:
        data.load("mnist")
    assert str(path) in _one_line(error)


def test_not_gzip_despite_the_name(fresh):
    raw = _mnist(fresh)
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(b"this is not gzip at all")
    with pytest.raises(data.DataError, match="not a readable gzip-compressed IDX file") as error:
        data.load("mnist")
    assert "t10k-labels-idx1-ubyte.gz" in _one_line(error)


def test_wrong_magic_number(fresh):
    raw = _mnist(fresh)
    path = raw / "train-labels-idx1-ubyte.gz"
    content = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(b"\x00\x00\x0d" + content[3:]))  # 0x0D: float data, not bytes
    with pytest.raises(data.DataError, match="wrong magic number 0x00000d01"):
        data.load("mnist")


def test_label_file_shorter_than_its_header(fresh):
    raw = _mnist(fresh)
    path = raw / "train-labels-idx1-ubyte.gz"
    content = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(content[:-10]))
    with pytest.raises(data.DataError, match=r"truncated: header announces \[200\] \(200 bytes of data\), the file holds 190"):
        data.load("mnist")


def test_label_and_image_counts_that_disagree_are_refused(fresh):
    raw = _mnist(fresh)
    write_idx(raw / "train-labels-idx1-ubyte.gz", np.zeros(150, dtype=np.uint8))  # a valid file, but 150 labels
    with pytest.raises(data.DataError, match="holds 200 images but train-labels-idx1-ubyte.gz holds 150 labels"):
        data.load("mnist")


def test_a_partial_idx_folder_says_what_is_missing(fresh):
    raw = _mnist(fresh)
    (raw / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(data.DataError, match="lacks t10k-images-idx3-ubyte"):
        data.load("mnist")


def test_labels_beyond_the_classes_are_refused(fresh):
    raw = _mnist(fresh)
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.full(50, 12, dtype=np.uint8))
    with pytest.raises(data.DataError, match="label 12 found, this data set has 10 classes"):
        data.load("mnist")


def _idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape) + array.tobytes()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_idx_parser_on_random_bytes(blob):
    """Any bytes: an array that matches its header exactly, or a DataError; nothing else."""
    try:
        array = data.parse_idx(blob)
    except data.DataError:
        return
    assert blob[:3] == b"\x00\x00\x08" and array.ndim == blob[3]
    assert 4 + 4 * array.ndim + array.size == len(blob)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=3), st.integers(-5, 5), st.data())
def test_idx_parser_header_and_count_mismatch(dims, delta, draw):
    array = np.arange(int(np.prod(dims)), dtype=np.int64).astype(np.uint8).reshape(dims)
    blob = _idx_bytes(array)
    if delta < 0:
        blob = blob[: max(len(blob) + delta, 0)]
    elif delta > 0:
        blob = blob + draw.draw(st.binary(min_size=delta, max_size=delta))
    if delta == 0:
        assert np.array_equal(data.parse_idx(blob), array)
    else:
        with pytest.raises(data.DataError):
            data.parse_idx(blob)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_read_idx_on_every_kind_of_truncation(tmp_path, draw):
    array = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    full = gzip.compress(_idx_bytes(array))
    cut = draw.draw(st.integers(0, len(full)))
    gz = draw.draw(st.booleans())
    path = tmp_path / ("cut.gz" if gz else "cut")
    path.write_bytes(full[:cut] if gz else _idx_bytes(array)[: cut % (len(_idx_bytes(array)) + 1)])
    whole = cut == len(full) if gz else cut % (len(_idx_bytes(array)) + 1) == len(_idx_bytes(array))
    if whole:
        assert np.array_equal(data.read_idx(path), array)
    else:
        with pytest.raises(data.DataError) as error:
            data.read_idx(path)
        assert str(path) in _one_line(error)


def test_a_gzip_bomb_header_is_refused_before_decompressing(tmp_path):
    header = bytes([0, 0, 8, 3]) + (100_000).to_bytes(4, "big") * 3  # 10^15 bytes announced
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(header + bytes(1000)))
    with pytest.raises(data.DataError, match="more than kdviz reads"):
        data.read_idx(path)


# --------------------------------------------------------------------------- the decoded cache
def test_a_broken_folder_does_not_poison_the_cache_and_a_warm_cache_does_not_hide_a_broken_file(fresh, monkeypatch):
    raw = _mnist(fresh)
    good = data.load("mnist")
    assert good.train.source == str(raw) and len(list((fresh / "cache" / "decoded").glob("*.pt"))) == 1
    # the folder breaks: a new process must see it, not the tensors cached from the good files
    monkeypatch.setattr(data, "_MEMORY", {})
    labels = raw / "train-labels-idx1-ubyte.gz"
    write_idx(labels, np.zeros(120, dtype=np.uint8))
    with pytest.raises(data.DataError, match="holds 120 labels"):
        data.load("mnist")
    # another data directory with a broken copy, then a good one: the good one decodes its own files
    other = fresh / "other"
    make_fake_mnist(other / "MNIST" / "raw", 100, 40, seed=3)
    (other / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").write_bytes(b"junk")
    monkeypatch.setenv("KDVIZ_DATA", str(other))
    with pytest.raises(data.DataError, match="t10k-images"):
        data.load("mnist")
    make_fake_mnist(other / "MNIST" / "raw", 100, 40, seed=3)
    monkeypatch.setattr(data, "_MEMORY", {})
    fixed = data.load("mnist")
    assert len(fixed.train) == 100 and len(fixed.test) == 40


def test_a_cache_entry_is_checked_against_its_source_on_read(fresh, monkeypatch):
    _mnist(fresh)
    first = data.load("mnist")
    (entry,) = (fresh / "cache" / "decoded").glob("*.pt")
    record = torch.load(entry, weights_only=True)
    record["y_train"] = torch.zeros(7, dtype=torch.int64)  # inconsistent with the pixels
    torch.save(record, entry)
    monkeypatch.setattr(data, "_MEMORY", {})
    again = data.load("mnist")
    assert torch.equal(again.train.labels, first.train.labels)
    entry.write_bytes(b"not a torch file")
    monkeypatch.setattr(data, "_MEMORY", {})
    assert torch.equal(data.load("mnist").train.pixels, first.train.pixels)


def test_two_first_loads_at_once_both_succeed_and_leave_no_temporary_file(fresh):
    _mnist(fresh, 2000, 300)
    env = {**os.environ, "KDVIZ_DATA": str(fresh / "data"), "KDVIZ_CACHE": str(fresh / "cache"),
           "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    code = "from kdviz import data; s = data.load('mnist'); print(len(s.train), len(s.test))"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o[0].split() for o in outs] == [["2000", "300"]] * 2
    assert not list((fresh / "cache").rglob("*.tmp"))


def test_orphan_temporary_files_of_dead_writers_are_cleaned(fresh):
    folder = fresh / "cache" / "decoded"
    folder.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = folder / f".x.pt.{int(dead.stdout)}.abcd.tmp"
    orphan.write_bytes(b"half")
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    mine = folder / f".y.pt.{os.getpid()}.abcd.tmp"  # a live writer's file stays
    mine.write_bytes(b"busy")
    os.utime(mine, (old, old))
    files.write_atomic(folder / "z.pt", lambda f: f.write(b"ok"))
    assert not orphan.exists() and mine.exists() and (folder / "z.pt").read_bytes() == b"ok"


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    def broken(f):
        f.write(b"partial")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        files.write_atomic(tmp_path / "x.pt", broken)
    assert list(tmp_path.iterdir()) == []


def test_an_atomic_write_gives_the_permissions_of_a_plain_write(tmp_path):
    """A result file (a reference table, a card, a record) is readable as a plainly written file
    would be, not private like the temporary file it was written to."""
    (tmp_path / "plain.json").write_bytes(b"{}")
    files.write_atomic(tmp_path / "atomic.json", lambda f: f.write(b"{}"))
    mode = lambda name: (tmp_path / name).stat().st_mode & 0o777  # noqa: E731
    assert mode("atomic.json") == mode("plain.json") == files.FILE_MODE


# --------------------------------------------------------------------------- image folders
def _folder(root: Path, classes=("cat", "dog"), test_classes=None, n=3, size=(6, 5)) -> Path:
    rng = np.random.default_rng(0)
    for split, names in (("train", classes), ("test", test_classes or classes)):
        for label in names:
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, size[::-1]).astype(np.uint8), "L").save(folder / f"{i}.png")
    return root


def test_a_file_that_is_not_an_image(fresh):
    root = _folder(fresh / "pets")
    (root / "train" / "dog" / "9.png").write_text("I am text, not a PNG")
    with pytest.raises(data.DataError, match=r"9\.png is not a readable image \(UnidentifiedImageError") as error:
        data.load(str(root))
    _one_line(error)


def test_a_non_image_file_in_a_class_folder(fresh):
    root = _folder(fresh / "pets")
    (root / "test" / "cat" / "notes.txt").write_text("hello")
    with pytest.raises(data.DataError, match=r"notes\.txt is not an image file"):
        data.load(str(root))


def test_an_image_too_large_is_refused_before_decoding(fresh):
    root = _folder(fresh / "pets")
    Image.new("L", (5000, 4000)).save(root / "train" / "cat" / "huge.png")  # a few KB on disk, 20 MP decoded
    with pytest.raises(data.DataError, match=r"huge\.png is 5000x4000 pixels, more than the 16,777,216"):
        data.load(str(root))


def test_a_truncated_image(fresh):
    root = _folder(fresh / "pets", size=(40, 40))
    path = root / "train" / "cat" / "1.png"
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(data.DataError, match=r"1\.png is not a readable image"):
        data.load(str(root))


def test_a_test_class_the_training_split_lacks(fresh):
    root = _folder(fresh / "pets", classes=("cat", "dog"), test_classes=("cat", "dog", "fox"))
    with pytest.raises(data.DataError, match="classes the training split lacks: fox"):
        data.load(str(root))


def test_a_test_split_missing_a_class_keeps_the_training_indices(fresh):
    root = _folder(fresh / "pets", classes=("ant", "cat", "dog"), test_classes=("dog",))
    train, test = data.load(str(root))
    assert train.classes == ("ant", "cat", "dog") and set(test.labels.tolist()) == {2}


def test_a_one_class_folder_is_refused(fresh):
    root = _folder(fresh / "pets", classes=("cat",))
    with pytest.raises(data.DataError, match="needs at least two class folders"):
        data.load(str(root))


def test_an_empty_class_folder_is_refused(fresh):
    root = _folder(fresh / "pets")
    (root / "train" / "eel").mkdir()
    with pytest.raises(data.DataError, match="class folder\\(s\\) without images: eel"):
        data.load(str(root))


# --------------------------------------------------------------------------- transfer sets
def test_leaving_out_every_class_is_refused(fresh):
    digits = data.load("digits")
    with pytest.raises(ValueError, match="cannot leave out all 10 classes"):
        data.transfer_set(digits.train, omit_classes=tuple(range(10)))
    for fraction in (float("nan"), float("inf"), 0.0, -1.0, 1.5):
        with pytest.raises(ValueError, match="fraction must be a number in \\(0, 1\\]"):
            data.transfer_set(digits.train, fraction=fraction)


# --------------------------------------------------------------------------- uploads
def _png(size, mode="L") -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, "PNG")
    return buffer.getvalue()


def test_an_upload_that_decodes_huge_is_refused_from_its_header():
    content = _png((5000, 4000))  # about 20 KB on disk, 20 MP decoded
    assert len(content) < 100_000
    with pytest.raises(data.DataError, match="this image is 5000x4000 pixels; kdviz reads images up to 9 megapixels"):
        data.open_upload(content)
    with pytest.raises(data.DataError, match="far too large to decode"):
        data.open_upload(_png((12000, 12000)))  # past Pillow's own bomb limit


def test_a_big_photo_is_downscaled_on_load():
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (2800, 2100), (200, 30, 30)).save(buffer, "JPEG")
    image = data.open_upload(buffer.getvalue())
    assert max(image.size) <= data.UPLOAD_SIDE and image.size[0] > image.size[1]


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=400))
def test_an_upload_that_is_not_an_image_gets_a_friendly_message(blob):
    try:
        image = data.open_upload(blob)
    except data.DataError as error:
        assert "\n" not in str(error) and "0x" not in str(error) and "UploadedFile" not in str(error)
        return
    assert max(image.size) <= data.UPLOAD_SIDE  # random bytes that happen to be an image (vanishingly rare)


def test_a_truncated_upload_gets_the_same_message():
    content = _png((300, 300), "RGB")
    with pytest.raises(data.DataError, match="not an image kdviz can read"):
        data.open_upload(content[: len(content) // 2])
