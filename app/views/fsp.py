"""FSP matrices: the "flow" between consecutive stages, teacher / baseline student / FSP student."""
import pandas as pd
import streamlit as st

import common
import figures_inside as figs
import inside_common as ic
import timings
from common import Param

PAGE, METHOD = "fsp", "fsp"
URL = common.UrlState(
    Param("pair", str),                     # "stage i → i+1"; default: the first pair
    Param("ch", str, "all"),                # channels shown: all, 8, 16 or 32
    Param("scale", str, "the teacher's"),   # colour scale: the teacher's | each its own
    *ic.URL_PARAMS,                        # data, base, run
)

st.title("FSP matrices: how information flows between stages")
st.markdown(
    "Yim et al. (2017) describe what a network does between two stages by the Gram matrix of their feature maps, "
    "$G_{ij} = \\frac{1}{hw}\\sum_{s,t} F^1_{s,t,i}\\,F^2_{s,t,j}$: how strongly channel *i* of the first stage "
    "and channel *j* of the second fire at the same places (the larger map is average-pooled to the smaller). The "
    "FSP student is trained to reproduce the teacher's matrices, entry by entry, while it learns the labels.")
presenter = URL.presenter_mode()
preset = ic.setup(URL, PAGE, METHOD)
student_arch = preset.student_for(METHOD)
base, run = ic.students(URL, PAGE, METHOD, preset)
have_students = ic.need_students(base, run, METHOD)


# Everything below depends only on the chosen students and the controls in it: moving a control
# reruns this part alone (a fragment), not the data set and students above.
def view() -> None:
    st.caption(f"The matrices are compared channel by channel, so the students here (`{student_arch}`) have the "
               "teacher's channel counts at every stage: as in the paper, FSP is about *how* a network of that shape "
               "computes, not about making it smaller.")

    # --------------------------------------------------------------------------- data and controls
    model_refs = ic.refs(preset, base, run, METHOD)
    probe = ic.probe_images(preset)
    data = ic.fsp(model_refs, preset.dataset, len(probe), run["id"] if run else None, preset.teacher)
    shapes = data["teacher"]["shapes"]
    pairs = [f"stage {i + 1} → {i + 2}" for i in range(len(shapes) - 1)]
    c1, c2, c3 = st.columns([2, 2, 2])
    pair_name = URL.choice("Stage pair", pairs, "pair", key=f"{PAGE}_pair", container=c1)
    k = pairs.index(pair_name)
    first, second = f"stage {k + 1}", f"stage {k + 2}"
    rows_total, cols_total = data["teacher"]["matrices"][k].shape
    zoom = URL.choice("Channels shown (zoom)", ["all", 8, 16, 32], "ch", key=f"{PAGE}_ch", container=c2,
                      help="Show only the first channels of each stage, to see single entries.")
    limit = None if zoom == "all" else int(zoom)
    scale = URL.choice("Colour scale", ["the teacher's", "each its own"], "scale", key=f"{PAGE}_scale",
                       container=c3, help="The teacher's range compares sizes (larger values saturate); each panel "
                                             "its own range compares patterns.")

    matrices = {name: d["matrices"][k][:limit, :limit] for name, d in data.items()}
    same_shape = {name: m for name, m in matrices.items() if m.shape == matrices["teacher"].shape}

    # --------------------------------------------------------------------------- figures
    st.subheader(f"The FSP matrices of {pair_name} ({rows_total} × {cols_total} channels, mean over {len(probe)} images)")
    maps_caption = ("The teacher's matrix has a pattern of strong and weak channel pairs. The baseline student's matrix is "
                    "its own: other sizes, other channels strong. The FSP student was pushed toward the teacher's matrix "
                    "entry by entry: on the teacher's colour scale its values now have the teacher's size; switch to "
                    "'each its own' to judge how much of the pattern itself it copied (pattern r in the table further "
                    "down)." if have_students else
                    "The teacher's matrix: a pattern of strong and weak channel pairs, how its two stages work together. "
                    "Once the students are trained, their matrices appear beside it.")
    common.show(figs.fsp_heatmaps(matrices, first, second, shared=scale == "the teacher's"), presenter, maps_caption,
                key="fsp_maps")
    if have_students:
        diffs = {f"{name} − teacher": m - matrices["teacher"] for name, m in same_shape.items() if name != "teacher"}
        common.show(figs.fsp_differences(diffs), presenter,
                    "Student minus teacher, white where they agree. The FSP student's difference is much paler than "
                    "the baseline's: its FSP matrices are far closer to the teacher's.", key="fsp_diff")
        distances = {name: d["distance"] for name, d in data.items() if name != "teacher"}
        a, b = st.columns([3, 2])
        with a:
            common.show(figs.distance_bars(pairs, distances, "FSP distance to the teacher"), presenter,
                        "The FSP loss term for each stage pair: the mean squared difference between a student's and the "
                        "teacher's per-image FSP matrices over the probe images. Before FSP training (baseline) and after.",
                        key="fsp_bars")
        with b:
            students = [name for name in data if name != "teacher"]
            table = pd.DataFrame({**{f"distance: {n}": data[n]["distance"] for n in students},
                                  **{f"pattern r: {n}": data[n]["pattern"] for n in students}}, index=pairs).astype(float)
            st.markdown("**The same numbers, and the pattern**")
            st.dataframe(table.style.format("{:.4g}", na_rep="n/a"), width="stretch")
            st.caption("Pattern r: Pearson correlation between the entries of the student's mean FSP matrix and the "
                       "teacher's (1 = the same pattern, whatever the scale). The distance falls both when the pattern is "
                       "copied and when the values merely shrink to the teacher's size: r tells the two apart. "
                       f"Test accuracy: baseline {100 * base['test_acc']:.2f}%, FSP student {100 * run['test_acc']:.2f}%.")


timings.fragment("fsp.view")(view)()
