"""kdviz.data: named data sets, image folders, the decoded-tensor cache, transfer sets, augmentation."""
from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
from PIL import Image

from kdviz import data

from conftest import REAL_MNIST


def _no_download(*args, **kwargs):
    raise RuntimeError("offline (test)")


@pytest.fixture
def empty_data_dir(tmp_path, monkeypatch):
    """KDVIZ_DATA and KDVIZ_CACHE point at empty folders; torchvision downloads fail at once."""
    monkeypatch.setenv("KDVIZ_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("KDVIZ_CACHE", str(tmp_path / "cache"))
    for cls in (tvd.MNIST, tvd.FashionMNIST, tvd.CIFAR10):
        monkeypatch.setattr(cls, "download", _no_download)
    monkeypatch.setattr(data, "_MEMORY", {})
    return tmp_path / "data"


# --------------------------------------------------------------------------- named data sets
def test_mnist_shapes_storage_and_labels(mnist):
    train, test = mnist
    assert train.pixels.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.shape == (1, 28, 28) and test.shape == (1, 28, 28)
    assert train.classes == tuple("0123456789")
    counts = torch.bincount(train.labels, minlength=10)
    assert counts.sum() == len(train) and (counts > 0).all() and train.labels.max() == 9
    if REAL_MNIST:
        assert (len(train), len(test)) == (60000, 10000)
        assert counts[0] == 5923 and torch.bincount(test.labels)[0] == 980
        assert counts.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_train_normalisation_is_standard(mnist):
    x = mnist.train.images()
    assert x.dtype == torch.float32 and x.shape == (len(mnist.train), 1, 28, 28)
    assert abs(x.mean().item()) < 1e-3
    assert abs(x.std().item() - 1) < 1e-3
    assert mnist.test.mean == mnist.train.mean  # the test split is normalised with train statistics
    if REAL_MNIST:
        assert mnist.train.mean == pytest.approx((0.1307,), abs=1e-4)
        assert mnist.train.std == pytest.approx((0.3081,), abs=1e-4)


def test_digits_always_offline(empty_data_dir):
    train, test = data.load("digits")
    assert (len(train), len(test)) == (1437, 360)
    assert train.shape == (1, 8, 8) and train.pixels.dtype == torch.uint8
    assert train.pixels.max() == 255 and train.pixels.min() == 0
    # stratified split: every digit in both splits in about the same share
    assert torch.bincount(test.labels).min() >= 35
    assert "load_digits" in train.source


@pytest.mark.skipif(not data.DEBIAN_FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_found_in_debian_package(empty_data_dir):
    train, test = data.load("fashion-mnist")
    assert train.source == str(data.DEBIAN_FASHION_MNIST)
    assert (len(train), len(test)) == (60000, 10000) and train.shape == (1, 28, 28)
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"


def test_cifar10(cifar10):
    train, test = cifar10
    assert (len(train), len(test)) == (50000, 10000)
    assert train.shape == (3, 32, 32) and train.pixels.dtype == torch.uint8
    assert train.classes == data.CIFAR10_CLASSES
    assert torch.bincount(train.labels).tolist() == [5000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    # the published per-channel means, in R, G, B order (a channel mix-up would show here)
    assert train.mean == pytest.approx((0.4914, 0.4822, 0.4465), abs=2e-3)
    x = train.images(torch.arange(0, 50000, 7))
    assert x.mean(dim=(0, 2, 3)).abs().max() < 0.02 and (x.std(dim=(0, 2, 3)) - 1).abs().max() < 0.02


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_missing_data_names_what_was_tried(empty_data_dir, name):
    with pytest.raises(data.DataNotFound) as error:
        data.load(name)
    message = str(error.value)
    assert str(empty_data_dir) in message
    assert "torchvision download (RuntimeError)" in message
    assert "KDVIZ_DATA" in message


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*mnist, fashion-mnist, cifar10, digits"):
        data.load("nope")


def test_data_dir_default_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv("KDVIZ_DATA")
    assert str(data.data_dir()).endswith(".cache/kdviz/data")
    monkeypatch.setenv("KDVIZ_DATA", str(tmp_path))
    assert data.data_dir() == tmp_path


def test_memory_cache_follows_the_data_dir(empty_data_dir, monkeypatch, tmp_path):
    """A data set loaded from one data directory is not handed out for another."""
    monkeypatch.setenv("KDVIZ_DATA", str(tmp_path / "other"))
    first = data.load("digits")
    monkeypatch.setenv("KDVIZ_DATA", str(empty_data_dir))
    assert data.load("digits") is not first
    assert data.load("digits") is data.load("digits")


def test_decoded_cache_is_reused(empty_data_dir, monkeypatch):
    first = data.load("digits")
    cached = list((data.cache_dir() / "decoded").glob("digits-*.pt"))
    assert len(cached) == 1
    # a new process has no memory cache and must not decode again
    monkeypatch.setattr(data, "_MEMORY", {})
    entry = data.DATASETS["digits"]
    source = entry.locate()
    broken = data.Source(source.description, source.files, _no_download, source.extra)
    monkeypatch.setitem(data.DATASETS, "digits", data.DatasetEntry(lambda: broken, entry.classes, entry.description))
    second = data.load("digits")
    assert torch.equal(first.train.pixels, second.train.pixels) and torch.equal(first.test.labels, second.test.labels)



def test_decoded_cache_keeps_the_channel_stats(empty_data_dir, monkeypatch):
    """The train split's mean/std are counted once, at decode, and kept in the cache entry; an entry
    written before entries kept them gains them on its next read; either way they are channel_stats'."""
    first = data.load("digits")
    assert (first.train.mean, first.train.std) == data.channel_stats(first.train.pixels)
    [path] = (data.cache_dir() / "decoded").glob("digits-*.pt")
    entry = torch.load(path, weights_only=True)
    assert (tuple(entry["mean"]), tuple(entry["std"])) == (first.train.mean, first.train.std)
    del entry["mean"], entry["std"]  # as written before
    torch.save(entry, path)
    counted, real = [], data.channel_stats

    def counting(pixels):
        counted.append(len(pixels))
        return real(pixels)

    monkeypatch.setattr(data, "channel_stats", counting)
    for _ in range(2):  # a new process each time: no memory cache
        monkeypatch.setattr(data, "_MEMORY", {})
        again = data.load("digits")
        assert (again.train.mean, again.train.std) == (first.train.mean, first.train.std)
    assert len(counted) == 1  # counted on the first read of the old entry only
    assert "mean" in torch.load(path, weights_only=True)


def test_a_transfer_set_of_every_image_shares_the_tensors(mnist):
    whole = data.transfer_set(mnist.train, hide_labels=True)
    assert whole.pixels is mnist.train.pixels and whole.labels is mnist.train.labels and whole.labels_hidden
    assert data.transfer_set(mnist.train, omit_classes=(3,)).pixels.data_ptr() != mnist.train.pixels.data_ptr()


# --------------------------------------------------------------------------- image folders
def _write_images(root, sizes: dict, mode="L", per_class=3):
    """``root/<split>/<class>/i.png`` with class-dependent brightness; ``sizes[(split, class)]`` overrides 6x5."""
    rng = np.random.default_rng(0)
    for split, label in itertools.product(("train", "test"), ("cat", "dog")):
        folder = root / split / label
        folder.mkdir(parents=True)
        for i in range(per_class):
            w, h = sizes.get((split, label, i), (6, 5))
            shape = (h, w) if mode == "L" else (h, w, 3)
            base = 40 if label == "cat" else 200
            Image.fromarray((base + rng.integers(0, 20, shape)).astype(np.uint8), mode).save(folder / f"{i}.png")


@pytest.mark.parametrize("mode,channels", [("L", 1), ("RGB", 3)])
def test_image_folder(tmp_path, mode, channels):
    _write_images(tmp_path / "pets", {}, mode)
    train, test = data.load(str(tmp_path / "pets"))
    assert train.classes == ("cat", "dog")
    assert train.pixels.shape == (6, channels, 5, 6) and train.pixels.dtype == torch.uint8
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1] and len(test) == 6
    assert (train.pixels[:3] < 60).all() and (train.pixels[3:] >= 200).all()
    assert data.load(f"folder:{tmp_path / 'pets'}").train is train  # same data set, loaded once


def test_finding_a_data_set_lists_no_files_and_imports_nothing(empty_data_dir, monkeypatch):
    """Where a data set is (the app's list of data sets) is known without listing an image folder's
    files (CIFAR-10's 60,000 took 0.74 s) or importing scikit-learn (1.0 s); the files are listed once
    the decoded cache needs its identity, and a new file still changes it."""
    import sys

    _write_images(empty_data_dir / "cifar10", {}, "RGB")
    listed = []
    real = data._folder_files
    monkeypatch.setattr(data, "_folder_files", lambda folder: listed.append(folder) or real(folder))
    monkeypatch.delitem(sys.modules, "sklearn", raising=False)
    source = data.DATASETS["cifar10"].locate()
    digits = data.DATASETS["digits"].locate()
    assert listed == [] and "sklearn" not in sys.modules
    assert source.description == str(empty_data_dir / "cifar10") and digits.extra.startswith("sklearn 1.")
    before = data.source_identity(source)
    assert listed == [empty_data_dir / "cifar10"]
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(empty_data_dir / "cifar10" / "test" / "cat" / "9.png")
    assert data.source_identity(source) != before


def test_image_folder_with_mixed_sizes_is_a_clear_error(tmp_path):
    _write_images(tmp_path / "pets", {("train", "dog", 1): (7, 5)})
    with pytest.raises(ValueError, match=r"1\.png is \(5, 7\), other images are \(5, 6\): resize"):
        data.load(str(tmp_path / "pets"))


def _jpeg(array: np.ndarray, **options) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, "JPEG", **options)
    return out.getvalue()


def test_jpeg_frame_reads_the_size_from_the_header_alone():
    """The frame header (ITU-T T.81, B.2.2) after other segments (EXIF, fill bytes); None for what the batch
    decoder must not take: not a JPEG, a header cut short, a frame of another kind (here a lossless SOF3)."""
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    plain, gray = _jpeg(rgb), _jpeg(rgb[..., 0])
    assert data.jpeg_frame(plain) == (5, 7, 3) and data.jpeg_frame(gray) == (5, 7, 1)
    assert data.jpeg_frame(_jpeg(rgb, progressive=True)) == (5, 7, 3)
    exif = Image.Exif()
    exif[0x0112] = 6
    assert data.jpeg_frame(_jpeg(rgb, exif=exif.tobytes())) == (5, 7, 3)
    assert data.jpeg_frame(plain[:2] + b"\xff\xff" + plain[2:]) == (5, 7, 3)  # fill bytes before a marker
    png = io.BytesIO()
    Image.fromarray(rgb).save(png, "PNG")
    sof = plain.index(b"\xff\xc0")
    assert data.jpeg_frame(png.getvalue()) is None and data.jpeg_frame(plain[:sof + 6]) is None
    assert data.jpeg_frame(plain[:sof] + b"\xff\xc3" + plain[sof + 2:]) is None


def _jpeg_folder(root, images: dict) -> None:
    for (label, name), content in images.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / name).write_bytes(content)


@pytest.mark.parametrize("gray", [False, True])
def test_the_batch_jpeg_decoder_gives_pils_pixels(tmp_path, monkeypatch, gray):
    """JPEG files of every kind an encoder writes (4:4:4, 4:2:2 and 4:2:0 sampling, progressive, low
    quality, grayscale) come out of the batch decoder as PIL decodes them, PNG files beside them too;
    the batch decoder is really used (PIL opens only the first file and the PNG)."""
    rng = np.random.default_rng(1)
    kinds = [{"subsampling": 0}, {"subsampling": 1}, {"subsampling": 2}, {"progressive": True}, {"quality": 20}]
    images = {}
    for label, kind in itertools.product(("a", "b"), range(len(kinds))):
        pixels = rng.integers(0, 256, (9, 11) if gray else (9, 11, 3), dtype=np.uint8)
        images[label, f"{kind}.jpg"] = _jpeg(pixels, **kinds[kind])
    png = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (9, 11) if gray else (9, 11, 3), dtype=np.uint8)).save(png, "PNG")
    images["b", "png.png"] = png.getvalue()
    _jpeg_folder(tmp_path, images)
    pil = data.read_image_folder(tmp_path)
    opened = []
    real = data._open_image
    monkeypatch.setattr(data, "_open_image", lambda path, mode: opened.append(path.name) or real(path, mode))
    monkeypatch.setattr(data, "BATCH_DECODE_FROM", 1)
    batch = data.read_image_folder(tmp_path, None)
    assert sorted(opened) == ["0.jpg", "png.png"]  # the first file, which sets the mode, and the PNG
    assert batch[2] == pil[2] and torch.equal(batch[1], pil[1]) and torch.equal(batch[0], pil[0])
    assert batch[0].shape == (len(images), 1 if gray else 3, 9, 11)


def test_a_broken_or_odd_sized_jpeg_in_a_batch_is_named(tmp_path, monkeypatch):
    """A file the batch decoder cannot read is handed to PIL, whose error names it; a JPEG whose header
    gives another size is never batch-decoded and is refused by name, as before, a huge one undecoded."""
    monkeypatch.setattr(data, "BATCH_DECODE_FROM", 1)
    rng = np.random.default_rng(2)
    images = {("a", f"{i}.jpg"): _jpeg(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for i in range(6)}
    _jpeg_folder(tmp_path / "cut", {**images, ("a", "3.jpg"): images["a", "3.jpg"][:300]})
    with pytest.raises(data.DataError, match=r"3\.jpg is not a readable image"):
        data.read_image_folder(tmp_path / "cut")
    _jpeg_folder(tmp_path / "sizes", {**images, ("a", "4.jpg"): _jpeg(np.zeros((8, 9, 3), np.uint8))})
    with pytest.raises(data.DataError, match=r"4\.jpg is \(8, 9\), other images are \(8, 8\): resize"):
        data.read_image_folder(tmp_path / "sizes")
    _jpeg_folder(tmp_path / "huge", {**images, ("a", "5.jpg"): _jpeg(np.zeros((4100, 4100), np.uint8))})
    with pytest.raises(data.DataError, match=r"5\.jpg is 4100x4100 pixels, more than the 16,777,216 kdviz decodes"):
        data.read_image_folder(tmp_path / "huge")  # refused from its header, never decoded


def test_cifar10s_files_decode_alike_in_batches_and_with_pil(cifar10, monkeypatch):
    """The real CIFAR-10 test files (10,000 JPEG): the batch decoder and PIL give the same tensors."""
    folder = data.data_dir() / "cifar10" / "test"
    monkeypatch.setattr(data, "BATCH_DECODE_FROM", 1)
    batch = data.read_image_folder(folder, data.CIFAR10_CLASSES)
    monkeypatch.setattr(data, "BATCH_DECODE_FROM", 10**9)
    pil = data.read_image_folder(folder, data.CIFAR10_CLASSES)
    assert torch.equal(batch[0], pil[0]) and torch.equal(batch[1], pil[1]) and len(batch[1]) == 10_000


def test_the_fast_listing_and_identity_match_rglob_and_resolve(tmp_path):
    """The files under a folder are the ones ``rglob`` finds (hidden files and links to files counted, links
    to folders and broken links not), and each resolves as ``Path.resolve`` resolves it, through a linked
    folder and a linked file too: the decoded cache's identity is unchanged by the faster way."""
    real = tmp_path / "real"
    (real / "cat" / "deep").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    for name in ("cat/1.png", "cat/.hidden.png", "cat/deep/2.png"):
        (real / name).write_bytes(b"x" * len(name))
    (tmp_path / "elsewhere" / "3.png").write_bytes(b"yyy")
    (real / "cat" / "linked.png").symlink_to(tmp_path / "elsewhere" / "3.png")
    (real / "cat" / "broken.png").symlink_to(tmp_path / "missing.png")
    (real / "dog").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    via_link = tmp_path / "via"
    via_link.symlink_to(real, target_is_directory=True)
    for top in (real, via_link):
        files = sorted(data._files_under(top))
        assert files == sorted(p for p in top.rglob("*") if p.is_file())
        assert {p.name for p in files} == {"1.png", ".hidden.png", "2.png", "linked.png"}
        resolved = [(name, (s.st_size, s.st_mtime_ns)) for name, s in data._resolved_files(files)]
        assert resolved == [(str(p.resolve()), (p.stat().st_size, p.stat().st_mtime_ns)) for p in files]


# --------------------------------------------------------------------------- transfer sets
def test_transfer_set_fraction(mnist):
    part = data.transfer_set(mnist.train, fraction=0.05, seed=1)
    assert len(part) == round(0.05 * len(mnist.train))
    assert torch.equal(part.pixels, data.transfer_set(mnist.train, fraction=0.05, seed=1).pixels)
    assert not torch.equal(part.labels, data.transfer_set(mnist.train, fraction=0.05, seed=2).labels)
    assert torch.bincount(part.labels, minlength=10).min() > 0
    assert data.transfer_set(mnist.train).pixels.shape == mnist.train.pixels.shape
    # every chosen image is one of the originals, with its own label
    for i in (0, len(part) // 2, len(part) - 1):
        matches = (mnist.train.pixels == part.pixels[i]).flatten(1).all(1).nonzero().flatten()
        assert len(matches) >= 1 and part.labels[i] in mnist.train.labels[matches]


def test_transfer_set_omits_classes_and_hides_labels(mnist):
    no_threes = data.transfer_set(mnist.train, omit_classes=(3,), hide_labels=True)
    assert 3 not in no_threes.labels
    assert len(no_threes) == len(mnist.train) - (mnist.train.labels == 3).sum()
    assert no_threes.labels_hidden and not mnist.train.labels_hidden
    assert no_threes.num_classes == 10  # the student still has ten outputs
    both = data.transfer_set(mnist.train, fraction=0.1, omit_classes=(0, 9))
    assert not torch.isin(both.labels, torch.tensor([0, 9])).any()
    assert len(both) == round(0.1 * (len(mnist.train) - torch.isin(mnist.train.labels, torch.tensor([0, 9])).sum().item()))


@pytest.mark.parametrize("kwargs", [{"fraction": 0}, {"fraction": 1.5}, {"omit_classes": (10,)}, {"omit_classes": (-1,)}])
def test_transfer_set_rejects_bad_options(mnist, kwargs):
    with pytest.raises(ValueError):
        data.transfer_set(mnist.train, **kwargs)


# --------------------------------------------------------------------------- batches and augmentation
def test_batches_cover_the_data_once(mnist):
    small = mnist.test.subset(torch.arange(300))
    seen = torch.cat([b.index for b in data.batches(small, 128, shuffle=True, generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(300))
    first = next(data.batches(small, 128))
    assert first.x.shape == (128, 1, 28, 28) and torch.equal(first.y, small.labels[:128])
    assert torch.allclose(first.x, small.images(torch.arange(128)))


def test_random_crop_flip_is_a_real_shift_and_flip():
    n, pad = 64, 4
    x = torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = data.random_crop_flip(x, torch.Generator().manual_seed(1), padding=pad)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (pad,) * 4)
    found = []
    for i in range(n):
        # which crop window of the padded image (maybe mirrored) is this output?
        hits = [(dy, dx, flip) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1) for flip in (False, True)
                if torch.equal(out[i], (lambda w: w.flip(-1) if flip else w)(padded[i, :, dy:dy + 8, dx:dx + 8]))]
        assert len(hits) == 1, f"sample {i} is no crop of its padded image"
        found.append(hits[0])
    flips = {f for _, _, f in found}
    shifts = {(dy, dx) for dy, dx, _ in found}
    assert flips == {False, True} and len(shifts) > 20
    again = data.random_crop_flip(x, torch.Generator().manual_seed(1), padding=pad)
    assert torch.equal(out, again)  # seeded: the same crops again


def test_random_shift_moves_whole_images_by_at_most_the_given_pixels():
    """Hinton et al.'s jitter: each image is a translate of itself by (dy, dx) in [-k, k]², zero-filled."""
    torch.manual_seed(0)
    pixels = torch.randint(1, 256, (64, 1, 28, 28), dtype=torch.uint8)
    shifted = data.random_shift(pixels, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == pixels.shape and shifted.dtype == torch.uint8
    seen = set()
    for original, moved in zip(pixels, shifted):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if torch.equal(moved[:, max(dy, 0):28 + min(dy, 0), max(dx, 0):28 + min(dx, 0)],
                                  original[:, max(-dy, 0):28 + min(-dy, 0), max(-dx, 0):28 + min(-dx, 0)])]
        assert len(matches) == 1
        dy, dx = matches[0]
        seen.add((dy, dx))
        # the uncovered border is background (0): as many zero pixels as the shift uncovered
        assert (moved == 0).sum().item() == 28 * 28 - (28 - abs(dy)) * (28 - abs(dx))
    assert len(seen) > 10  # many different shifts, including none at all in general


def test_jittered_batches_differ_between_epochs_and_keep_labels(mnist):
    subset = mnist.train.subset(torch.arange(256))
    generator = torch.Generator().manual_seed(0)
    plain = next(data.batches(subset, 256))
    one = next(data.batches(subset, 256, False, generator, jitter=2))
    two = next(data.batches(subset, 256, False, generator, jitter=2))
    assert torch.equal(one.y, plain.y) and not torch.equal(one.x, two.x) and not torch.equal(one.x, plain.x)
    # background stays background: the smallest value is the normalised black pixel
    assert one.x.min().item() == pytest.approx(plain.x.min().item())
