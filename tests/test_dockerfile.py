"""The Docker image holds everything the app reads at run time from the repository (no engine here to build it)."""
from __future__ import annotations

import re

from kdviz import experiments, pretrained, reference

from conftest import REPO


def _copied() -> set[str]:
    lines = (REPO / "Dockerfile").read_text().splitlines()
    return {m.group(1).rstrip("/") for line in lines if (m := re.match(r"COPY\s+(\S+)\s+\./", line))}


def test_the_image_copies_the_package_the_app_its_files_and_the_servers_settings(monkeypatch):
    for name in ("KDVIZ_PRETRAINED", "KDVIZ_REFERENCE", "KDVIZ_RESULTS"):  # the folders beside the package
        monkeypatch.delenv(name, raising=False)
    copied = _copied()
    read_at_run_time = {
        "kdviz", "app", ".streamlit",  # .streamlit/config.toml: upload cap, no file watcher, no GC after each run
        pretrained.pretrained_dir().relative_to(REPO).parts[0],
        reference.reference_dir().relative_to(REPO).parts[0],
        experiments.results_dir().relative_to(REPO).parts[0],
    }
    assert read_at_run_time <= copied, sorted(read_at_run_time - copied)
    for folder in read_at_run_time:
        assert (REPO / folder).is_dir(), folder
