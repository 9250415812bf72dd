"""Shared test set-up: data from ../shared/data when present, small made-up data otherwise.

Environment variables point kdviz at a test data folder and a test cache under
``.cache/tests`` (decoded tensors survive between local runs) and at a fresh
runs directory per test.
"""
from __future__ import annotations

import functools
import gzip
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "app"
if str(APP) not in sys.path:  # the app's pages import their shared modules (common, figures) by name
    sys.path.insert(0, str(APP))
SHARED_DATA = REPO.parent / "shared" / "data"
TEST_ROOT = REPO / ".cache" / "tests"
DATA = TEST_ROOT / "data"
os.environ["KDVIZ_DATA"] = str(DATA)
os.environ["KDVIZ_CACHE"] = str(TEST_ROOT / "cache")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import torch  # noqa: E402

torch.set_num_threads(2)

REAL_MNIST = (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists()
CIFAR_TAR = SHARED_DATA / "cifar10-jpg.tar.gz"


def kdviz(capsys, *argv) -> tuple[int, str, str]:
    """Run the CLI in this process (arguments as strings); returns (exit code, stdout, stderr)."""
    from kdviz import cli

    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a gzipped IDX file (the MNIST format) for made-up data."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_fake_mnist(folder: Path, n_train: int = 3000, n_test: int = 600, seed: int = 0) -> None:
    """Ten learnable classes: a bright 7x7 square whose position depends on the class, plus noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28))
        for i, label in enumerate(labels):
            r, c = 2 + 7 * (label // 4), 7 * (label % 4)
            images[i, r:r + 7, c:c + 7] = 255
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)


def _prepare_data() -> None:
    raw = DATA / "MNIST" / "raw"
    if not raw.exists():
        raw.parent.mkdir(parents=True, exist_ok=True)
        if REAL_MNIST:
            raw.symlink_to(SHARED_DATA / "MNIST" / "raw")
        else:
            make_fake_mnist(raw)


_prepare_data()


def cifar_folder() -> Path | None:
    """CIFAR-10 image folders, unpacked once from ../shared/data; None where absent."""
    target = DATA / "cifar10"
    if (target / "test").is_dir():
        return target
    if not CIFAR_TAR.exists():
        return None
    partial = DATA / "cifar10.partial"
    shutil.rmtree(partial, ignore_errors=True)  # what a killed run left
    partial.mkdir(parents=True)
    if shutil.which("tar"):  # GNU tar: 2.2-2.8 s for its 60,000 files on a 2-core EPYC, Python's tarfile 15-50 s
        subprocess.run(["tar", "-xzf", str(CIFAR_TAR), "-C", str(partial), "--no-same-owner", "--no-same-permissions"],
                       check=True)
    else:
        with tarfile.open(CIFAR_TAR) as tar:
            tar.extractall(partial, filter="data")
    partial.rename(target)
    return target


@pytest.fixture(autouse=True)
def _runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KDVIZ_RUNS", str(tmp_path / "runs"))


@pytest.fixture(autouse=True)
def _main_module(monkeypatch):
    """Streamlit's AppTest runs a page as ``__main__`` and leaves it in ``sys.modules``: a process the
    live runs' fork server starts later would run that page first and die (test_live failed after an
    app test, depending on the order). Each test gets the real ``__main__`` back."""
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])


@pytest.fixture(autouse=True, scope="session")
def _component_scan_once():
    """Every new AppTest scans the metadata of every installed package for Streamlit components
    (0.25 s on the 2-core EPYC; the server does it once, at its start). The installed packages do not
    change during a test session, so the scan runs once and each AppTest gets its result."""
    try:
        from streamlit.components.v2 import manifest_scanner
    except ImportError:  # a Streamlit without these components: nothing to scan
        yield
        return
    scan = functools.cache(manifest_scanner.scan_component_manifests)
    patch = pytest.MonkeyPatch()
    patch.setattr(manifest_scanner, "scan_component_manifests", lambda max_workers=None: list(scan(max_workers)))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def mnist():
    from kdviz import data

    return data.load("mnist")


@pytest.fixture(scope="session")
def cifar10():
    if cifar_folder() is None:
        pytest.skip("CIFAR-10 images not available (../shared/data/cifar10-jpg.tar.gz)")
    from kdviz import data

    return data.load("cifar10")
