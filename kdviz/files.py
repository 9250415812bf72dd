"""Writing files so that a crash never leaves half of one: the one atomic write.

The content goes to a uniquely named temporary file in the target's folder
(``.<name>.<pid>.<random>.tmp``), is flushed to disk, and is renamed over the target
(``os.replace`` is atomic on POSIX and Windows), so a reader sees the old file or the
whole new one, never a mix. A failed write removes its temporary file; leftovers of
writers that were killed are cleaned by the next write in that folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

import numpy as np


def _plain_file_mode() -> int:
    """The permissions ``open()`` gives a new file under this process's umask (read once, at import:
    reading the umask means setting it for a moment, which must not race with other threads)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _plain_file_mode()


def write_atomic(path: Path | str, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(f)`` on a temporary binary file beside ``path``, then rename it to ``path``
    (with the permissions of a file written plainly: a temporary file is private to its owner)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_orphans(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), FILE_MODE)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_folder_writable(folder: Path | str, what: str, hint: str = "") -> Path:
    """``folder``, created if needed, after checking that a file can be written in it; else a
    ``ValueError`` with one line naming ``what`` it is, why, and ``hint`` (where to choose another).
    Called before long work whose result goes there, so the work is refused, not lost."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ValueError(f"{what} {folder} is not writable ({reason})" + (f"; {hint}" if hint else "")) from None
    return folder


def check_file_writable(path: Path | str, what: str, hint: str = "") -> Path:
    """:func:`check_folder_writable` for the folder of the file ``path``, which must not be a folder itself."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder, not a file" + (f"; {hint}" if hint else ""))
    check_folder_writable(path.parent, f"the folder of {what}", hint)
    return path


def read_json(path: Path | str):
    """The JSON value in the file ``path``: ``OSError`` when it cannot be read, ``ValueError`` when it
    is not JSON in UTF-8, also when it is nested too deeply for the parser (json's own RecursionError
    would escape every caller's ``except ValueError``)."""
    text = Path(path).read_text()
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None


def write_json_atomic(path: Path | str, obj) -> Path:
    """``obj`` as indented JSON (numpy numbers written as floats), atomically."""
    return write_atomic(path, lambda f: f.write(json.dumps(obj, indent=1, default=float).encode()))


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def clean_orphans(folder: Path, min_age_s: float = 60.0) -> list[Path]:
    """Remove temporary files ``.<name>.<pid>.<random>.tmp`` left in ``folder`` by writers that
    were killed (their process is gone) and older than ``min_age_s``; returns what was removed."""
    removed = []
    now = time.time()
    try:
        entries = list(Path(folder).glob(".*.tmp"))
    except OSError:
        return removed
    for tmp in entries:
        parts = tmp.name.split(".")  # ["", name..., pid, random, "tmp"]
        pid = int(parts[-3]) if len(parts) >= 5 and parts[-3].isdigit() else None
        try:
            if pid is not None and not pid_alive(pid) and now - tmp.stat().st_mtime >= min_age_s:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue
    return removed


def file_sha256(path: Path | str) -> str:
    """The sha256 of a file's bytes, read in 1 MiB chunks (cards, records and caches name files by it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def array_digest(arrays: Iterable) -> str:
    """The sha256 of arrays' bytes in C order, one after another (numpy arrays, or anything
    ``np.asarray`` reads: a CPU tensor gives the same digest as its numpy array)."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(np.asarray(array)).tobytes())
    return digest.hexdigest()
