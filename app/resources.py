"""The networks and data sets every page shares, loaded once per server (``st.cache_resource``, read-only):
teachers (shipped, or trained here) with their probe images and logits, data sets, the device.

Unlike :mod:`common`, this module imports torch: a page imports it for what its first view cannot draw
from shipped numbers alone.
"""
from __future__ import annotations

import streamlit as st
import torch

from kdviz import data as datasets
from kdviz import pretrained
from kdviz.evaluation import resolve_device
from kdviz.probes import softening
from kdviz.probes.temperatures import T_GRID
from kdviz.runs import default_runs_dir
from kdviz.teacher_cache import teacher_logits
from kdviz.teachers import PRETRAINED, RUN, TeacherRef

from common import shared


@st.cache_resource(show_spinner="Loading the teacher…")
def teacher(name: str):
    return pretrained.load(name)


@st.cache_resource(show_spinner=False)
def probe_set(name: str):
    return pretrained.probe_set(name)


@st.cache_resource(show_spinner="Loading the data set…")
def dataset(name: str):
    return datasets.load(name)


def available_datasets() -> dict[str, str]:
    """Data sets whose files are on this machine, with where they are, for the controls that offer them.
    Found by locating their files, not by decoding them: decoding every data set (CIFAR-10's 60,000
    JPEG files among them) took 15-45 s of a fresh server's CPU before Home, Train or Compare could
    finish. Shared by the whole server and looked at again after a minute. A data set whose files
    turn out to be broken is still offered; the page that loads it says what is wrong."""
    return dict(_available_datasets(str(datasets.data_dir())))


@st.cache_resource(show_spinner=False, ttl=60)
def _available_datasets(data_dir: str) -> tuple[tuple[str, str], ...]:
    found = []
    for name in datasets.dataset_names():
        try:
            found.append((name, datasets.DATASETS[name].locate().description))
        except Exception:  # noqa: BLE001 - absent data is simply not offered
            continue
    return tuple(found)


def device_label() -> str:
    device = resolve_device("auto")
    if device.type == "cuda":
        return f"GPU ({torch.cuda.get_device_name(0)})"
    return "CPU"


# --------------------------------------------------------------------------- teachers
# A teacher is chosen by its link (kdviz.teachers.TeacherRef.link: a shipped name, or run:<id>),
# so results cache by value and a link can name it; common.teacher_choices lists them.
def teacher_ref(link: str) -> TeacherRef:
    return TeacherRef.parse(link, default_runs_dir())


@st.cache_resource(show_spinner="Loading the teacher…")
def load_teacher(link: str):
    return teacher_ref(link).load(default_runs_dir())


@st.cache_resource(show_spinner="Running the teacher over its images…")
def teacher_outputs(link: str) -> dict:
    """A teacher with its images and their logits, shared read-only by all sessions:
    ``gallery`` is the shipped probe set (or, for a teacher trained here, 600 test images),
    ``gallery_logits`` the teacher's logits on it (cached on disk by :mod:`kdviz.teacher_cache`,
    so a fresh server reads them instead of running the teacher)."""
    ref = teacher_ref(link)
    model = load_teacher(link)
    name = ref.dataset(default_runs_dir())
    if ref.kind == RUN:
        test = dataset(name).test
        gallery = test.subset(torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:600])
    else:
        gallery = probe_set(ref.name)
    return {"model": model, "dataset": name, "classes": list(gallery.classes), "gallery": gallery,
            "gallery_logits": teacher_logits(model, gallery, device="cpu")}  # on disk after the first server


def teacher_gallery(link: str) -> dict:
    """What the Temperature page and Home draw of any teacher, as :func:`common.shipped_gallery` gives it for
    a shipped one without torch: ``name``, ``dataset``, ``classes``, and its gallery's ``pixels``, ``labels``
    and ``logits`` as numpy arrays (from :func:`teacher_outputs`)."""
    def build():
        out = teacher_outputs(link)
        return {"name": link, "dataset": out["dataset"], "classes": out["classes"], "pixels": out["gallery"].pixels.numpy(),
                "labels": out["gallery"].labels.numpy(), "logits": out["gallery_logits"].numpy()}
    return shared("teacher_gallery", (link,), build)


def shipped_test_logits(ref: TeacherRef):
    """A shipped teacher's test-set logits file (checked against its card), else None."""
    if ref.kind != PRETRAINED:
        return None
    try:
        return pretrained.test_logits_file(ref.name)
    except pretrained.PretrainedError:
        return None  # a changed or missing file: the teacher runs over the test set instead


def gradient_scale(link: str) -> dict:
    """The Temperature page's T² figure for a teacher: the soft term's gradient size at every T of the
    grid, measured on its first 256 probe images (:func:`kdviz.probes.softening.kd_gradient_scale`),
    once per teacher for the server. The warm-up computes the default teacher's: 6 ms in a quiet process,
    it took 0.4-0.8 s of the page's first run on a fresh server while the browser loaded the app (py-spy:
    waiting for Python's lock between its many small autograd calls)."""
    return shared("kd_gradient_scale", (link,), lambda: softening.kd_gradient_scale(
        teacher_outputs(link)["gallery_logits"][:256], T_GRID))


@st.cache_resource(show_spinner="Loading the test images…")
def test_split(name: str, mean: tuple, std: tuple):
    """A data set's test split alone, normalised with ``mean``/``std`` (a teacher's): :func:`kdviz.data.load_test`,
    the training files never opened. For CIFAR-10 that is its 10,000 test JPEG files decoded, 2.2-2.6 s on a 2-core
    AMD EPYC, against 14.4 s for a first load of all 60,000 (``benchmarks/data_speed.py``; 1.5-3.6 s from the disk
    cache once there, and 184 MB held instead of 31 MB). A data set without a test split of its own to read (an image
    folder) gives its whole set's test split."""
    try:
        return datasets.load_test(name, mean, std)
    except datasets.DataNotFound:
        return dataset(name).test


@st.cache_resource(show_spinner="Running the teacher over the test set (once; then cached on disk)…")
def teacher_test_outputs(link: str) -> dict:
    """The teacher's logits on the whole test split when the data set is here (cached on disk by
    :mod:`kdviz.teacher_cache`), otherwise on its gallery; for the dark-knowledge matrix of a teacher trained here,
    or of a shipped one whose logits file keeps no labels (:func:`common.shipped_test_outputs` reads the others'
    from their files, with no data set). A shipped teacher's test split is read alone (:func:`test_split`, with
    the gallery's normalisation, the teacher's own), so the key of its test logits matches and they are read
    rather than computed; a teacher trained here takes the one of the data set its gallery came from (not decoded
    twice: CIFAR-10's test split alone took 2.2-2.6 s)."""
    out = teacher_outputs(link)
    ref = teacher_ref(link)
    try:  # a teacher trained here drew its gallery from its whole data set, loaded already: its test split is there
        test = dataset(out["dataset"]).test if ref.kind == RUN else \
            test_split(out["dataset"], tuple(out["gallery"].mean), tuple(out["gallery"].std))
    except Exception:  # noqa: BLE001 - the shipped probe set is enough to draw the matrix
        return {"logits": out["gallery_logits"], "labels": out["gallery"].labels,
                "source": f"the {len(out['gallery'])} shipped probe images"}
    return {"logits": teacher_logits(out["model"], test, device="cpu", shipped=shipped_test_logits(ref)),
            "labels": test.labels,
            "source": f"all {len(test):,} test images"}


@st.cache_resource(show_spinner="Measuring the teacher…")
def teacher_summary(link: str) -> dict:
    """A teacher's test accuracy (from its card or record), parameter count and latency per image."""
    return teacher_ref(link).summary(default_runs_dir())
