"""Confusion: which mistakes distillation fixes, teacher / baseline student / KD student."""
import numpy as np
import pandas as pd
import streamlit as st

from kdviz.probes.confusions import accuracy_table, confusion_change, per_class_accuracy, row_normalised

import common
import figures_inside as figs
import inside_common as ic
import timings
from common import Param

PAGE, METHOD = "confusion", "kd"
URL = common.UrlState(
    Param("min", int, 2),                   # highlight changes of at least this many images
    *ic.URL_PARAMS,                        # data, base, run
)

st.title("Confusion: which mistakes distillation fixes")
st.markdown(
    "A confusion matrix counts, for every true class (row), what the network answered (column); each row is "
    "divided by its size here, so the diagonal is the per-class accuracy and everything off it is a mistake. "
    "The KD student (Hinton et al. 2015, T = 4, α = 0.9) learned from the teacher's softened outputs, which tell "
    "it which classes look alike; the baseline student learned from the labels alone.")
presenter = URL.presenter_mode()
preset = ic.setup(URL, PAGE, METHOD)
base, run = ic.students(URL, PAGE, METHOD, preset)
have_students = ic.need_students(base, run, METHOD)


# Everything below depends only on the chosen students and the controls in it: moving a control
# reruns this part alone (a fragment), not the data set and students above.
def view() -> None:
    classes = list(ic.probe_images(preset).classes)
    matrices = {"teacher": ic.teacher_confusion(preset)}
    if base is not None:
        matrices["baseline"] = np.asarray(base["confusion"])
    if run is not None:
        matrices["KD student"] = np.asarray(run["confusion"])

    st.subheader(f"Confusion matrices on the {int(matrices['teacher'].sum()):,} test images")
    min_count = URL.choice("Highlight changes of at least", [1, 2, 3, 5, 10], "min", key=f"{PAGE}_min",
                           format_func=lambda n: f"{n} image" + ("s" if n > 1 else ""),
                           help="A cell counts as improved or worsened by KD only if at least this many test images "
                                   "moved; one image either way is often chance.")
    change = confusion_change(matrices["baseline"], matrices["KD student"], min_count) if have_students else None
    normalised = {name: row_normalised(m) for name, m in matrices.items()}
    common.show(figs.confusion_panels(normalised, classes, change and change["improved"], change and change["worsened"],
                                      marked="KD student", cols=1 if presenter else None), presenter,
                "Colour grows with the square root of the share so that rare mistakes stay visible; numbers are "
                "percent of the row." + (" On the KD student's matrix, blue boxes are cells KD improved over the "
                "baseline (more right answers on the diagonal, fewer of that mistake off it) and orange boxes cells it "
                "made worse (a pair told apart by colour-blind students too)." if have_students else ""),
                key="conf_maps")
    if have_students:
        a, b = st.columns([3, 2])
        with a:
            common.show(figs.confusion_delta(change["delta"], classes, change["improved"], change["worsened"],
                                             "KD student − baseline"), presenter,
                        "The difference, in percentage points of each row: blue where the KD student does better than "
                        "the baseline, orange where it does worse. Off the diagonal, look for the pairs the teacher finds "
                        "alike (for MNIST 4–9, 3–5–8, 7–1): that is where its soft targets carry the most.",
                        key="conf_delta")
        with b:
            table = pd.DataFrame(accuracy_table(matrices), index=[*classes, "all"])
            table["KD − baseline"] = table["KD student"] - table["baseline"]
            st.markdown("**Per-class accuracy (%)**")
            st.dataframe(table.style.format("{:+.2f}", subset=["KD − baseline"]).format(
                "{:.2f}", subset=[c for c in table.columns if c != "KD − baseline"]), width="stretch")
            st.caption(f"{int(change['improved'].sum())} cells improved, {int(change['worsened'].sum())} worsened "
                       f"(changes of at least {min_count} image{'s' if min_count > 1 else ''}).")
        accuracy = {name: per_class_accuracy(m) for name, m in matrices.items()}
        common.show(figs.per_class_bars(accuracy, classes), presenter,
                    "Per-class test error of the three networks, bars from zero (a bar twice as long is twice as many "
                    "mistakes): the classes where the baseline errs most beyond the teacher are where distillation has "
                    "the most to give.", key="conf_bars")


timings.fragment("confusion.view")(view)()
