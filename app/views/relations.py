"""Relations (RKD): the geometry of a batch, teacher / baseline student / RKD student."""
import numpy as np
import pandas as pd
import streamlit as st

import common
import figures_inside as figs
import inside_common as ic
import timings
from common import Param

PAGE, METHOD = "relations", "rkd"
URL = common.UrlState(
    Param("n", int, 10),                    # images per class
    Param("seed", int, 0, 0, 9999),         # which test images are drawn
    *ic.URL_PARAMS,                        # data, base, run
)

st.title("Relations: the shape of what a network knows")
st.markdown(
    "Relational KD (Park et al. 2019) does not ask the student to copy the teacher's outputs, only the "
    "*relations* between examples: for every pair of images in a batch, the distance between their penultimate "
    "embeddings divided by the batch's mean distance, and for every triplet, the angle they make. The student's "
    "embedding may even have another size; only its geometry has to match.")
presenter = URL.presenter_mode()
preset = ic.setup(URL, PAGE, METHOD)
base, run = ic.students(URL, PAGE, METHOD, preset)
have_students = ic.need_students(base, run, METHOD)


# Everything below depends only on the chosen students and the controls in it: moving a control
# reruns this part alone (a fragment), not the data set and students above.
def view() -> None:
    # --------------------------------------------------------------------------- controls and data
    st.subheader("One batch, sorted by class")
    c1, c2 = st.columns(2)
    per_class = URL.choice("Images per class", [5, 10, 20], "n", key=f"{PAGE}_n", container=c1,
                           help="The batch has this many test images of every class.")
    seed = URL.number("Batch seed", "seed", key=f"{PAGE}_seed", container=c2,
                       help="Which test images are drawn.")
    test = ic.test_images(preset)
    index = ic.class_sorted(preset, per_class, seed)
    labels = np.asarray(test.labels)[list(index)]
    model_refs = ic.refs(preset, base, run, METHOD)
    data = ic.relations(model_refs, preset.dataset, index)
    classes = list(test.classes)

    # --------------------------------------------------------------------------- figures
    # a projector gets one matrix a row, large enough to see the class blocks from the back
    common.show(figs.distance_heatmaps({name: d["distances"] for name, d in data.items()}, labels, classes,
                                       cols=1 if presenter else None), presenter,
                f"Each square is a pair among the {len(index)} images (class blocks along the axes); dark = close, "
                "1 = the batch's mean distance. The teacher's matrix has dark blocks on the diagonal (same class is "
                "close) and a finer pattern off it (which classes are near each other)." + (
                    " Look for that same pattern in the RKD student, and where the baseline student differs."
                    if have_students else " Once the students are trained, their matrices appear beside it."),
                key="rel_maps")
    if have_students:
        students = {name: d["distances"] for name, d in data.items() if name != "teacher"}
        corr = {name: d["distance_corr"] for name, d in data.items() if name != "teacher"}
        a, b = st.columns([3, 2])
        with a:
            common.show(figs.distance_scatter(data["teacher"]["distances"], students, corr), presenter,
                        "Every pair of images as a dot: its distance for the teacher (across) and for a student (up). "
                        "The closer the dots hug the dashed line, the more the student keeps the teacher's geometry; "
                        "r is the Pearson correlation over all pairs.", key="rel_scatter")
        with b:
            common.show(figs.correlation_bars(corr, "r with the teacher"), presenter,
                        "The one number to watch: r, the correlation of a student's pairwise distances with the "
                        "teacher's (1 = the same up to scale), on an axis from 0. RKD training raises it above the "
                        "baseline's.", key="rel_corr")
            table = pd.DataFrame({name: {"distance correlation": d["distance_corr"], "angle correlation": d["angle_corr"]}
                                  for name, d in data.items() if name != "teacher"}).T
            st.dataframe(table.style.format("{:.3f}"), width="stretch")
            st.caption(f"Test accuracy: baseline {100 * base['test_acc']:.2f}%, RKD student {100 * run['test_acc']:.2f}%.")
    common.show(figs.angle_histograms({name: d["angles"] for name, d in data.items()}), presenter,
                "How the angles formed by triplets of images are spread. RKD's angle loss makes the student's cosines "
                "match the teacher's triplet by triplet; this histogram shows the overall shape" + (
                    ": the RKD student's curve should sit closer to the teacher's than the baseline's does."
                    if have_students else " (the teacher's, for now)."), key="rel_angles")


timings.fragment("relations.view")(view)()
