"""Logits and soft targets in training: a KD student's softened outputs on fixed images, epoch by epoch."""
import streamlit as st

from kdviz import presets, shipped
from kdviz.probes.temperatures import frame_probs, mean_over_kind, soft_target_gap

import common
import figures_inside as figs
import inside_common as ic
import timings
from common import Param

PAGE, METHOD = "soft_targets", "kd"
URL = common.UrlState(
    Param("img", int, 0),                   # which followed image
    Param("T", float),                      # the temperature shown; default: the one the KD student was trained at
    Param("log", common.bool_from_url, False, to_url=common.bool_to_url),  # log scale
    *ic.URL_PARAMS,                        # data, base, run
)
T_GRID = [1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 15.0, 20.0]

st.title("Soft targets in training: the student learning the dark knowledge")
st.markdown(
    "During a KD run (Hinton et al. 2015; T = 4, α = 0.9) the student is pulled toward the teacher's softened "
    "output softmax(z_t/T) on every training image. Here we follow a few fixed test images: about ten times "
    "per epoch the student's logits on them are recorded, for a KD student and for a baseline student trained "
    "on the labels alone. Play the animation and watch the KD student's small probabilities for the *wrong* "
    "classes take the teacher's shape.")
presenter = URL.presenter_mode()
preset = ic.setup(URL, PAGE, METHOD)
probe = ic.probe_images(preset)
kinds = ic.probe_kinds(preset)


def watch(pair) -> None:
    """While the students train: the latest frame of each on the first followed image."""
    first = pair.meta["index"][0]
    T = float(presets.PAGE_METHODS[METHOD]["T"])
    latest = {name: frame_probs(rec.frames[-1:], T)[0, 0]
              for name, rec in zip(("baseline", "KD student"), pair.recorders) if rec.frames}
    if latest:
        teacher = ic.teacher_soft_targets(preset.teacher, (first,), T)[0]
        epoch = pair.recorders[1].frames[-1]["epoch"] if pair.recorders[1].frames else 0.0
        common.show(figs.soft_target_frames(probe.classes, teacher, {n: [p] for n, p in latest.items()},
                                            [f"epoch {epoch:.1f}"], T), presenter,
                    f"Live, on one followed image (a {probe.classes[int(probe.labels[first])]}): the students' "
                    "softened outputs as they train (the baseline first, then the KD student), and the teacher's "
                    "target. The full replay appears when both are done.", key="st_live")


base, run = ic.students(URL, PAGE, METHOD, preset, record=True, needs=ic.has_soft_targets,
                        needs_baseline=ic.has_soft_targets, while_training=watch)
if not ic.need_students(base, run, METHOD, "there is nothing to draw here: this page replays the two "
                        "students' outputs recorded while they trained"):
    st.stop()

# --------------------------------------------------------------------------- data and controls
recorded = {"baseline": ic.soft_target_frames(base["id"]), "KD student": ic.soft_target_frames(run["id"])}
index = recorded["KD student"]["index"]
if recorded["baseline"]["index"] != index:
    st.warning("These two runs followed different images; pick runs trained together.")
    st.stop()
count = min(len(s["frames"]) for s in recorded.values())
run_T = float(run["method_params"]["T"])


def describe(i: int) -> str:
    j = index[i]
    return f"image {i + 1}: a {probe.classes[int(probe.labels[j])]} · {shipped.PROBE_KINDS[int(kinds[j])]}"


# Everything below depends only on the controls in it: moving one reruns this part alone (a fragment),
# not the students' selection above; a new T softens the recorded logits and the teacher's cached ones
# (no model pass).
def view() -> None:
    c1, c2, c3 = st.columns([3, 3, 1], vertical_alignment="bottom")
    image = URL.choice("Image", list(range(len(index))), "img", key=f"{PAGE}_img", container=c1, format_func=describe)
    T = URL.grid_slider("Temperature shown", sorted(set(T_GRID) | {run_T}), "T", key=f"{PAGE}_T", default=run_T,
                        container=c2,
                        help=f"The students were trained at T = {run_T:g}; any T can be used to look at their logits.")
    log_scale = URL.widget(c3.checkbox, "log scale", "log", key=f"{PAGE}_log")

    j = index[image]
    probs = {name: frame_probs(s["frames"][:count], T)[:, image] for name, s in recorded.items()}
    teacher = ic.teacher_soft_targets(preset.teacher, tuple(index), T)[image]
    epochs = [s["epoch"] for s in recorded["KD student"]["frames"][:count]]
    labels = [f"epoch {e:.1f}" for e in epochs]

    # --------------------------------------------------------------------------- figures
    left, right = st.columns([1, 4])
    with left:
        st.plotly_chart(figs.image_figure(probe.pixels[j], describe(image).split(": ")[1], size=200),
                        config=common.PLOTLY_CONFIG, key="st_image", theme=None)
        timings.chart_sent()
        gap = {name: soft_target_gap(p, teacher) for name, p in probs.items()}
        st.metric("KD student's gap at the end", f"{gap['KD student'][-1]:.3f}",
                  delta=f"{gap['KD student'][-1] - gap['baseline'][-1]:+.3f} vs baseline", delta_color="inverse")
        st.caption("KL(teacher ‖ student) at the temperature shown, on this image (0 = the teacher's distribution).")
    with right:
        common.show(figs.soft_target_frames(probe.classes, teacher, {n: list(p) for n, p in probs.items()}, labels, T,
                                            log_scale), presenter,
                    "Bars: each student's softmax(z/T) on this image after the training shown on the slider; black "
                    "ticks: the teacher's softened output, the KD student's target. At epoch 0 both students are close "
                    "to uniform. Press ▶ (it plays in the browser) and watch the red bars settle near the ticks, the "
                    "small wrong-class ones included; the grey baseline learns the true class too, but arranges the "
                    "wrong classes its own way. Try T = 1 to see how little of this the plain softmax shows.",
                    key="st_bars")
    summary = ic.soft_target_gaps(recorded, preset.teacher, T, kinds)
    kind = summary["kinds"][image]
    mean_gap = {name: mean_over_kind(g, summary["kinds"], kind) for name, g in summary["gaps"].items()}
    common.show(figs.gap_curves(epochs, gap, T, mean_gap), presenter,
                "How far each student's softened output is from the teacher's, along the run: on this image (solid) and "
                f"averaged over the followed {kind} images (dashed). Both fall as the students learn the classes. On typical images the "
                "KD student, pulled by its loss, ends far closer to the teacher than the baseline; on the teacher's "
                "ambiguous images neither gets close. Single images jump about while the learning rate is high "
                "(it peaks mid-run).", key="st_gap")
    finals = {k: {name: mean_over_kind(g, summary["kinds"], k)[-1] for name, g in summary["gaps"].items()}
              for k in dict.fromkeys(summary["kinds"])}
    parts = [f"on the {k} images {v['KD student']:.3f} for the KD student and {v['baseline']:.3f} for the baseline"
             for k, v in finals.items()]
    st.caption(f"Mean gap at the end of training, at T = {T:g}: " + "; ".join(parts) +
               f". Test accuracy: KD student {100 * run['test_acc']:.2f}%, baseline {100 * base['test_acc']:.2f}%.")


timings.fragment("soft_targets.view")(view)()
