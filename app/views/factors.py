"""Factor space (FT): t-SNE maps of the teacher's paraphrased factors and the students' features."""
import numpy as np
import pandas as pd
import streamlit as st

from kdviz.probes.maps import PANELS, shipped_maps  # the panels, by the names the maps are shipped under

import common
import figures_inside as figs
import inside_common as ic
import timings
from common import Param

PAGE, METHOD = "factors", "ft"
URL = common.UrlState(
    Param("n", int, 40),                    # points per class
    Param("perp", int, 30),                 # t-SNE perplexity
    Param("seed", int, 0, 0, 9999),         # t-SNE seed
    *ic.URL_PARAMS,                        # data, base, run
)

st.title("Factor space: the teacher's knowledge, paraphrased")
st.markdown(
    "Factor transfer (Kim, Park & Kwak 2018) first trains a *paraphraser*, a small convolutional autoencoder, "
    "to reconstruct the teacher's last feature map; its code is the **teacher factor**, a compressed restatement "
    "of what the teacher computes. The student gets a *translator* of its own last feature map, and is trained "
    "so that its **student factor** matches the teacher factor (both normalised, L1 distance) while it learns "
    "the labels. Below, each factor and each student's penultimate features on the same test images are "
    "drawn as a t-SNE map.")
presenter = URL.presenter_mode()
preset = ic.setup(URL, PAGE, METHOD)
base, run = ic.students(URL, PAGE, METHOD, preset)
have_students = ic.need_students(base, run, METHOD)


# Everything below depends only on the chosen students and the controls in it: moving a control
# reruns this part alone (a fragment), not the data set and students above.
def view() -> None:
    # --------------------------------------------------------------------------- controls and data
    c1, c2, c3 = st.columns(3)
    per_class = URL.choice("Points per class", [20, 40, 60], "n", key=f"{PAGE}_n", container=c1,
                           help="Test images per class (so 10 × this many points per map).")
    perplexity = URL.choice("Perplexity", [5, 10, 20, 30, 50], "perp", key=f"{PAGE}_perp", container=c2,
                             help="Roughly how many neighbours each point tries to keep close.")
    seed = URL.number("t-SNE seed", "seed", key=f"{PAGE}_seed", container=c3,
                       help="Another seed gives another, equally valid, layout.")
    test = ic.test_images(preset)
    index = ic.class_sorted(preset, per_class, 0)
    labels = np.asarray(test.labels)[list(index)]
    model_refs = ic.refs(preset, base, run, METHOD)
    method_run = run["id"] if run is not None and ic.has_method_state(run) else None
    if run is not None and method_run is None:
        st.warning("This FT run did not save its paraphraser and translator (it was trained elsewhere), so only the "
                   "penultimate features can be shown. Train the students here to see the factors.")

    # the shipped students at these settings: their maps were made and shipped with them (kdviz.probes.maps),
    # so the chart is drawn from them at once and the points (for the numbers below) are computed after it;
    # a run without its paraphraser and translator has no factor panels to draw
    maps = shipped_maps(preset.dataset, base, run, test, index, perplexity, seed) if have_students else None
    space = None
    if maps is None or (method_run is None and PANELS[0] in maps):
        space = ic.live().factor_space(model_refs, method_run, preset.teacher, preset.dataset, index)
        shown = [name for name in PANELS if name in space["points"]] or ["teacher: penultimate features"]
        if maps is None or list(maps) != shown:
            maps = dict(zip(shown, ic.live().tsne_maps(tuple(shown), [space["points"][name] for name in shown],
                                                float(perplexity), int(seed))))
    shown = list(maps)

    # --------------------------------------------------------------------------- figures
    st.subheader(f"t-SNE of {len(index)} test images (perplexity {perplexity}, seed {seed})")
    common.show(figs.tsne_panels(maps, labels, test.classes), presenter,
                "Each dot is a test image, coloured by its true class; click a class in the legend to hide it everywhere. "
                + ("Top: the teacher factor and the FT student's factor, which was trained to match it: look for the same "
                   "classes grouped and the same ones touching. Bottom: what each student's classifier sees, with and "
                   "without factor transfer. The table below says, in numbers, how close each is to the teacher."
                   if PANELS[1] in shown else
                   "Each panel is what a network's classifier sees (its penultimate features), with and without factor "
                   "transfer; this FT run saved no factors to draw." if len(shown) > 1 else
                   "For now, the teacher's own penultimate features: which classes form their own group, which touch. "
                   "Once the students are trained here, their factors and features join it."),
                key="ft_tsne")
    st.info("**Reading t-SNE.** t-SNE keeps each point's near neighbours near; it does not keep distances. The size "
            "of a cluster, the gap between two clusters and where a cluster sits mean little, and another seed or "
            "perplexity moves them. Compare which classes form their own group, which are mixed, and which images "
            "stray into another class's group.")
    if space is None:  # the networks (torch) only now, after the chart
        space = ic.live().factor_space(model_refs, method_run, preset.teacher, preset.dataset, index)
    if space["numbers"]:
        st.markdown("**How close each student is to the teacher, measured on the original points (not on the maps):**")
        table = pd.DataFrame(space["numbers"]).T.astype(float)
        st.dataframe(table.style.format("{:.3f}", na_rep="–"), width="stretch")
        st.caption("Distance correlation: Pearson correlation between all pairwise distances of the student's points and "
                   "of the teacher's (1 = the same geometry up to scale). FT acts on the last stage's maps (the "
                   "translator's input): compare the two students there. Mean L1 distance: the FT student's factor loss "
                   "before β and before dividing by the factor size, per image (0 = identical normalised factors).")


timings.fragment("factors.view")(view)()
