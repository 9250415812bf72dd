"""The one way a benchmark script writes its part of BENCHMARKS.md: the text between its two
markers is replaced (or the block is added at the end), every other section stays as it is."""
from __future__ import annotations

import os
from pathlib import Path


def replace_section(path: Path, start: str, end: str, block: str, after: str | None = None) -> None:
    """Put ``block`` (which begins with ``start`` and ends with ``end``) in place of the old one,
    written through a temporary file so a killed script never leaves half a file. A new block goes
    right after the marker ``after`` where the file has it, else at the end."""
    old = path.read_text() if path.exists() else "# kdviz benchmarks\n"
    if start in old and end in old:
        head, rest = old.split(start, 1)
        new = head + block + rest.split(end, 1)[1]
    elif after and after in old:
        head, rest = old.split(after, 1)
        new = head + after + "\n\n" + block + rest
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(new)
    tmp.replace(path)
