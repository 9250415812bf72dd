"""Attention maps (AT): where each network looks, teacher / baseline student / AT student side by side."""
import numpy as np
import pandas as pd
import streamlit as st

from kdviz import shipped

import common
import figures_inside as figs
import inside_common as ic
import timings
from common import Param

PAGE, METHOD = "attention", "at"
URL = common.UrlState(
    Param("kind", str, "all"),              # all | ambiguous | clear | typical
    Param("img", int, 0, low=0),            # position among the images of that kind
    Param("p", int, 2),
    Param("alpha", float, 0.65, 0.0, 1.0),  # map opacity
    *ic.URL_PARAMS,                        # data, base, run
)

st.title("Attention maps: where the network looks")
st.markdown(
    "Attention transfer (Zagoruyko & Komodakis 2017) summarises a stage's feature maps A (C channels of H×W) "
    "in one spatial map, $Q = \\frac{1}{C}\\sum_c |A_c|^p$, normalised to unit length. The AT student is trained "
    "with an extra loss $\\beta\\,\\mathrm{mean}(Q_s - Q_t)^2$ per stage (β = 1000, the reference code's scaling), "
    "so it learns to look where the teacher looks. Compare it with a student that only saw the labels.")
presenter = URL.presenter_mode()
preset = ic.setup(URL, PAGE, METHOD)
base, run = ic.students(URL, PAGE, METHOD, preset)
have_students = ic.need_students(base, run, METHOD)


# Everything below depends only on the chosen students and the controls in it: moving a control
# reruns this part alone (a fragment), not the data set and students above.
def view() -> None:
    # --------------------------------------------------------------------------- controls
    probe = ic.probe_images(preset)
    kinds = ic.probe_kinds(preset)
    st.subheader("Attention maps on one image")
    c1, c2, c3, c4 = st.columns([2, 3, 2, 2])
    kind_options = ["all", *shipped.PROBE_KINDS]
    kind = URL.choice("Images", kind_options, "kind", key=f"{PAGE}_kind", container=c1,
                      help="ambiguous: the teacher hesitates; clear: textbook cases; typical: a random draw")
    pool = np.arange(len(probe)) if kind == "all" else np.nonzero(kinds == shipped.PROBE_KINDS.index(kind))[0]
    position = URL.widget(c2.slider, "Image", "img", key=f"{PAGE}_img", valid=lambda v: v < len(pool),
                          min_value=0, max_value=len(pool) - 1)
    index = int(pool[position])
    p = URL.choice("Power p", [1, 2, 3, 4], "p", key=f"{PAGE}_p", container=c3,
                   help="Q = mean over channels of |A|^p. Larger p weights the most active spots more.")
    opacity = URL.widget(c4.slider, "Map opacity", "alpha", key=f"{PAGE}_alpha", min_value=0.0, max_value=1.0, step=0.05)

    # --------------------------------------------------------------------------- figures
    model_refs = ic.refs(preset, base, run, METHOD)
    data = ic.attention(model_refs, preset.dataset, (index,), float(p))
    stage_names = [f"stage {i + 1} ({m.shape[-2]}×{m.shape[-1]})" for i, m in enumerate(data["teacher"]["maps"])]
    maps = {name: [m[0] for m in d["maps"]] for name, d in data.items()}
    zmax = max(float(m.max()) for series in maps.values() for m in series)
    label = probe.classes[int(probe.labels[index])]
    left, right = st.columns([3, 1])
    with left:
        common.show(figs.attention_overlay(probe.pixels[index], maps, stage_names, zmax, opacity,
                                           title=f"Probe image {index} (true class {label})"), presenter, key="att_maps")
    with right:
        st.markdown("**What to look at.** Each column is a network, each row a stage (early stages at the top). "
                    "Bright (yellow) means strong activation there, dark (black) weak. " + (
                        "The AT student's maps should look like the teacher's, more than the baseline student's do, at "
                        "every stage." if have_students else
                        "For now only the teacher is drawn; the students' columns appear once they are trained."))
        st.markdown("All panels share one colour scale: each map is multiplied by √(H·W), so a flat map is 1 "
                    "everywhere whatever its size.")
        if have_students:
            rows = [{"stage": s, **{name: float(d["distance"][i, 0]) for name, d in data.items() if name != "teacher"}}
                    for i, s in enumerate(stage_names)]
            st.markdown("**AT distance ‖Q_s − Q_t‖₂ on this image** (0 = the teacher's map, √2 = no overlap):")
            st.dataframe(pd.DataFrame(rows).set_index("stage").style.format("{:.3f}"), width="stretch")

    if have_students:
        n = len(probe)
        summary = ic.at_summary(model_refs, preset.dataset, float(p), n)
        a, b = st.columns([3, 2])
        with a:
            common.show(figs.at_distance_bars(summary, stage_names), presenter,
                        f"Mean distance between each student's attention maps and the teacher's, over all {n} probe "
                        "images. Lower is closer to the teacher: the AT student's bars should be well below the "
                        "baseline's at every stage, on images neither student trained on.",
                        key="att_bars")
        with b:
            st.markdown("**The same numbers**")
            table = pd.DataFrame(summary, index=stage_names)
            table["AT / baseline"] = table.iloc[:, 1] / table.iloc[:, 0]
            st.dataframe(table.style.format("{:.3f}"), width="stretch")
            st.caption(f"Test accuracy: baseline {100 * base['test_acc']:.2f}%, AT student {100 * run['test_acc']:.2f}%. "
                       "The AT loss is this distance squared, divided by H·W, averaged over a batch, times β.")


timings.fragment("attention.view")(view)()
