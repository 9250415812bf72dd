"""Home: what dark knowledge is, a guided path through the pages, and what this machine has.

The picture at the top is drawn from a shipped teacher's files with numpy alone (:func:`common.shipped_gallery`,
:mod:`kdviz.probes.temperatures`); what needs torch (a teacher trained here when none is shipped, the
device, the data sets) is imported below it, so that on a fresh server the picture is sent before
torch's import, most of a first view's wait there (BENCHMARKS.md, app speed).
"""
import streamlit as st

from kdviz import catalogue, shipped
from kdviz.probes.temperatures import showcase_example, softmax_at

import common
import figures

URL = common.UrlState()  # no parameters of its own (presenter mode only)
SHOWN_T = 4.0  # the softened distribution beside T = 1
FIRST = "mnist-cnn"  # the teacher the picture shows when it is shipped

st.title("kdviz: see knowledge distillation")
presenter = URL.presenter_mode()


def draw_picture(gallery: dict) -> None:
    i = showcase_example(gallery["logits"], gallery["labels"])
    label, classes = int(gallery["labels"][i]), gallery["classes"]
    probs = softmax_at(gallery["logits"][i], [1.0, SHOWN_T])
    a, b = st.columns([1, 5])
    a.image(figures.upscale(gallery["pixels"][i], 4), caption=f"a {classes[label]}", width=100)
    with b:
        common.show(figures.hard_vs_soft(classes, label, probs[0].tolist(), probs[1].tolist(), SHOWN_T),
                    presenter, f"The label says only '{classes[label]}'. The teacher ({gallery['name']}) agrees, "
                    f"but at T = {SHOWN_T:g} (red) it also shows which other classes this image resembles: that "
                    "is what the student is taught.", key="home_picture")


text, picture = st.columns([2, 3])
with text:
    st.markdown(
        "A trained network's answer is more than its top guess: it also gives every *wrong* class a small "
        "probability, and those small numbers say which classes it finds alike (a 4 that could be a 9, a shirt "
        "that could be a coat). Hinton, Vinyals & Dean (2015) called this **dark knowledge**. Dividing the logits "
        "by a **temperature** T > 1 before the softmax makes those probabilities large enough to learn from. "
        "**Knowledge distillation** trains a small *student* to match these softened outputs of a big *teacher*, "
        "usually together with the true labels. The student learns faster and generalises better than from the "
        "labels alone, because every image now tells it how the classes relate.")
teachers = common.teacher_choices()  # the shipped ones and those trained here, listed without torch
name = FIRST if FIRST in teachers else next(iter(teachers), None)
first, failed = None, False
with picture:
    try:
        first = None if name is None else common.shipped_gallery(name)
        if first is not None:
            draw_picture(first)
    except Exception as error:  # noqa: BLE001 - the home page must always open
        failed = True
        common.error_box(error, f"show the teacher {name!r}")

# --------------------------------------------------------------------------- below the picture: torch
# Imported here, after the picture is sent (see the docstring): the machine, the data sets, and the
# picture of a teacher trained here.
from kdviz.data import DATASETS  # noqa: E402
from kdviz.evaluation import fast_bf16, resolve_device  # noqa: E402

import resources  # noqa: E402

with picture:
    if name is None:
        st.info("No teacher on this machine yet: the picture appears once one is trained "
                "(`kdviz pretrained make mnist-cnn`, or the Train page).")
    elif first is None and not failed:  # a teacher trained here: its gallery through the network
        try:
            draw_picture(resources.teacher_gallery(name))
        except Exception as error:  # noqa: BLE001 - the home page must always open
            common.error_box(error, f"show the teacher {name!r}")

st.subheader("A path through the app")
PATH = [
    ("views/temperature.py", "1. Temperature", "move T and watch a teacher's answer soften; the dark-knowledge matrix."),
    ("views/train.py", "2. Train (live)", "distil a student while you watch its losses and accuracy."),
    ("views/compare.py", "3. Compare", "KD against labels only over seeds; the 5-minute demo; which mistakes KD fixed."),
    ("views/confusion.py", "4. Confusion", "teacher, baseline and KD student, cell by cell."),
    ("views/soft_targets.py", "5. Soft targets in training", "a student learning the teacher's dark knowledge."),
    ("views/attention.py", "6. Inside the networks", "attention maps, FSP matrices, factors and relations."),
]
for page, label, what in PATH:
    try:
        st.page_link(page, label=f"**{label}**: {what}")
    except Exception:  # noqa: BLE001 - run on its own (no navigation), the links are plain text
        st.markdown(f"**{label}**: {what}")

st.subheader("On this machine")
c1, c2, c3 = st.columns(3)
with c1:
    st.markdown(f"**Device:** {resources.device_label()}")
    st.caption("Training uses the GPU when there is one. Precision `auto` uses bf16 where it makes kdviz's small "
               "nets train faster (CPUs with AMX, and those with AVX-512 BF16 where a quick matmul runs faster in "
               f"bf16: {'yes' if fast_bf16(resolve_device('auto')) else 'not'} on this machine), and fp32 elsewhere.")
with c2:
    st.markdown("**Data sets**")
    with st.spinner("Looking for data sets…"):
        found = resources.available_datasets()
    for ds, entry in DATASETS.items():
        st.markdown(f"- {':material/check_circle:' if ds in found else ':material/cancel:'} **{ds}**: {entry.description}"
                    + (f"  \n  <span style='color:gray;font-size:0.8em'>{found[ds]}</span>" if ds in found else
                       " (not found: set KDVIZ_DATA, see the README)"), unsafe_allow_html=True)
with c3:
    st.markdown("**Teachers**")
    listed = shipped.names()
    if not listed:
        st.markdown("none shipped yet")
    for t in listed:
        try:
            card = shipped.card(t)
            acc = card.get("test_acc")
            st.markdown(f"- **{t}**: {card.get('model', '?')} on {card.get('dataset', '?')}"
                        + (f", {100 * acc:.2f}% test accuracy" if isinstance(acc, float) else ""))
        except Exception as error:  # noqa: BLE001
            st.markdown(f"- **{t}**: unreadable card ({error})")
    here = [link for link in teachers if link.startswith(f"{catalogue.RUN}:")]
    if here:
        st.caption(f"and {len(here)} teacher(s) trained here (on the Train page)")
