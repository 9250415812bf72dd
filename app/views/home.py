"""Home: what dark knowledge is, a guided path through the pages, and what this machine has."""
import streamlit as st

from kdviz import pretrained
from kdviz.data import DATASETS
from kdviz.evaluation import fast_bf16, resolve_device
from kdviz.probes import softening
from kdviz.runs import default_runs_dir
from kdviz.teachers import RUN
from kdviz.teachers import choices as teacher_catalogue

import common
import figures

URL = common.UrlState()  # no parameters of its own (presenter mode only)

st.title("kdviz: see knowledge distillation")
presenter = URL.presenter_mode()

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
with picture:
    teachers = common.teacher_choices()
    if teachers:
        name = "mnist-cnn" if "mnist-cnn" in teachers else next(iter(teachers))
        try:
            out = common.teacher_outputs(name)
            i = softening.showcase_example(out["gallery_logits"], out["gallery"].labels)
            z, label = out["gallery_logits"][i], int(out["gallery"].labels[i])
            probs = softening.softened(z, [1.0, 4.0])
            a, b = st.columns([1, 5])
            a.image(figures.upscale(out["gallery"].pixels[i], 4), caption=f"a {out['classes'][label]}", width=100)
            with b:
                common.show(figures.hard_vs_soft(out["classes"], label, probs[0].tolist(), probs[1].tolist(), 4.0),
                            presenter, f"The label says only '{out['classes'][label]}'. The teacher ({name}) agrees, "
                            "but at T = 4 (red) it also shows which other classes this image resembles: that "
                            "is what the student is taught.", key="home_picture")
        except Exception as error:  # noqa: BLE001 - the home page must always open
            common.error_box(error, f"show the teacher {name!r}")
    else:
        st.info("No teacher on this machine yet: the picture appears once one is trained "
                "(`kdviz pretrained make mnist-cnn`, or the Train page).")

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
    st.markdown(f"**Device:** {common.device_label()}")
    st.caption("Training uses the GPU when there is one. Precision `auto` uses bf16 where it makes kdviz's small "
               "nets train faster (CPUs with AMX, and those with AVX-512 BF16 where a quick matmul runs faster in "
               f"bf16: {'yes' if fast_bf16(resolve_device('auto')) else 'not'} on this machine), and fp32 elsewhere.")
with c2:
    st.markdown("**Data sets**")
    with st.spinner("Looking for data sets…"):
        found = common.available_datasets()
    for ds, entry in DATASETS.items():
        st.markdown(f"- {':material/check_circle:' if ds in found else ':material/cancel:'} **{ds}**: {entry.description}"
                    + (f"  \n  <span style='color:gray;font-size:0.8em'>{found[ds]}</span>" if ds in found else
                       " (not found: set KDVIZ_DATA, see the README)"), unsafe_allow_html=True)
with c3:
    st.markdown("**Teachers**")
    shipped = pretrained.names()
    if not shipped:
        st.markdown("none shipped yet")
    for t in shipped:
        try:
            card = pretrained.card(t)
            acc = card.get("test_acc")
            st.markdown(f"- **{t}**: {card.get('model', '?')} on {card.get('dataset', '?')}"
                        + (f", {100 * acc:.2f}% test accuracy" if isinstance(acc, float) else ""))
        except Exception as error:  # noqa: BLE001
            st.markdown(f"- **{t}**: unreadable card ({error})")
    here = [ref for ref in teacher_catalogue(runs_dir=default_runs_dir()) if ref.kind == RUN]
    if here:
        st.caption(f"and {len(here)} teacher(s) trained here (on the Train page)")
