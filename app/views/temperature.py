"""Temperature: a teacher's logits, softmax(z/T) as T grows, and the dark-knowledge matrix.

For a shipped teacher the page's first chart (the bars at T) is drawn from the teacher's shipped files
with numpy alone (:func:`common.shipped_gallery`, :mod:`kdviz.probes.temperatures`), and so is its
dark-knowledge matrix over the test set (:func:`common.shipped_test_outputs`); torch (:mod:`resources`: a
teacher trained here, an uploaded image, the T² figure) is imported where it is first needed, after those
bars: on a fresh server torch's import is most of a first view's wait (BENCHMARKS.md, app speed).
tests/test_app_first_view.py checks the order.
"""
import math

import streamlit as st

from kdviz.probes import temperatures as temps

import common
import figures
import timings
from common import Param

URL = common.UrlState(
    Param("teacher", str, "mnist-cnn"),              # a teacher link (kdviz.teachers.TeacherRef.link)
    Param("src", str, "gallery"),                    # gallery | upload
    Param("img", int, None, low=0),                  # a probe image (default: the most ambiguous one)
    Param("T", float, 1.0, low=temps.T_GRID[0], high=temps.T_GRID[-1]),
)

st.title("Temperature and dark knowledge")
st.markdown("A trained teacher is almost sure of its answer, so its ordinary softmax hides what it thinks of the "
            "*other* classes. Dividing the logits by a temperature **T** before the softmax lifts those small "
            "probabilities into view; that is what a student learns from in knowledge distillation.")
presenter = URL.presenter_mode()

teachers = common.teacher_choices()
if not teachers:
    st.info("No teacher on this machine yet. Train one on the **Train (live)** page (choose *a teacher, on labels*) "
            "or run `kdviz train-teacher --model cnn5 --epochs 3`, then come back.")
    st.stop()

teacher = URL.choice("Teacher", teachers, "teacher", key="teacher", format_func=teachers.get, container=st.sidebar)
try:
    gallery = common.shipped_gallery(teacher)
    if gallery is None:  # a teacher trained here: its gallery through the network (torch)
        import resources

        gallery = resources.teacher_gallery(teacher)
except Exception as error:  # noqa: BLE001
    common.error_box(error, f"load the teacher {teacher!r}")
    st.stop()
classes, logits_all = gallery["classes"], gallery["logits"]
labels = gallery["labels"].tolist()
picks = temps.example_gallery(logits_all, gallery["labels"], k=8)

# --------------------------------------------------------------------------- the image
st.subheader("1 · Pick an image")
source = URL.widget(st.radio, "Image from", "src", key="src", options=["gallery", "upload"], horizontal=True,
                    format_func={"gallery": "the teacher's probe images", "upload": "my own image (upload)"}.get)


def describe(i: int) -> str:
    pred = int(logits_all[i].argmax())
    p = temps.softmax_at(logits_all[i], [1.0])[0, pred]
    return f"#{i} · true {classes[labels[i]]} · teacher says {classes[pred]} ({100 * p:.0f}%)"


if source == "gallery":
    for title, group, note in (("Ambiguous: the teacher is unsure", picks["ambiguous"],
                                "highest entropy at T = 1; captions: true class → teacher's answer"),
                               ("Confident: the teacher is sure", picks["confident"], "lowest entropy per class")):
        st.markdown(f"**{title}** <span style='color:gray'>({note})</span>", unsafe_allow_html=True)
        st.image([figures.upscale(gallery["pixels"][i]) for i in group], width=120 if presenter else 84,
                 caption=[f"#{i}: {classes[labels[i]]}→{classes[int(logits_all[i].argmax())]}" for i in group])
    order = list(dict.fromkeys(picks["ambiguous"] + picks["misclassified"] + picks["confident"] + list(range(len(labels)))))
    index = URL.widget(st.selectbox, "Image", "img", key="img", default=order[0], options=order, format_func=describe)
    pixels, logits, true_label = gallery["pixels"][index], logits_all[index], labels[index]
    image_id = f"{teacher}-{index}"
else:
    st.caption("Drawing in the page is not available in this version: draw a digit on paper or in any paint "
               "program, take a photo or save it, and upload it. Light strokes on dark or dark ink on white both work.")
    upload = st.file_uploader("An image (PNG or JPEG)", type=["png", "jpg", "jpeg", "bmp", "gif", "webp"])
    if upload is None:
        st.info("Upload an image to see what the teacher makes of it.")
        st.stop()
    # an upload goes through the teacher's network: torch from here (see the docstring)
    from kdviz import data as datasets
    from kdviz.probes import softening

    import resources

    try:  # decoded with a pixel cap from the header and downscaled on load (kdviz.data.open_upload)
        image = datasets.open_upload(upload.getvalue())
    except datasets.DataError as error:
        st.warning(f"Could not use {upload.name!r}: {error}.")
        st.stop()
    out = resources.teacher_outputs(teacher)
    channels, size, _ = out["gallery"].shape
    pixels = softening.image_to_pixels(image, channels, size)
    logits = softening.logits_for_pixels(out["model"], pixels, out["gallery"].mean, out["gallery"].std)[0].numpy()
    pixels, true_label = pixels[0], None
    image_id = f"{teacher}-upload-{upload.file_id}"

# --------------------------------------------------------------------------- the temperature
# Everything below depends on T and reruns on its own when the slider moves (a fragment): the page
# above (teacher, gallery, image) is not run again, and every T-dependent piece is built once per
# (teacher, image, T) for the whole server from logits computed once (no model pass at a new T).
# "Play" moves this same slider: while it plays, the fragment reruns itself on a timer and takes one
# grid step per run; pressing play or pause reruns the whole page once, to start or stop the timer.
PLAYING, PLAY_AT = "T_playing", "T_play_at"  # playing?, and where the play is (its own, see play_step)


def toggle_play() -> None:
    playing = not st.session_state.get(PLAYING, False)
    at = st.session_state.get(PLAY_AT, 1.0) if st.session_state.get(PLAYING) else st.session_state.get("T", 1.0)
    if playing and at >= temps.T_GRID[-1]:
        at = temps.T_GRID[0]  # play again from the coldest
    st.session_state[PLAYING], st.session_state[PLAY_AT], st.session_state["T"] = playing, at, at
    st.rerun()  # the whole page: the fragment's timer starts or stops with a full run


def play_step() -> None:
    """One grid step up per run of the fragment's timer, counted from the play's own position: the
    slider's value in a timer's request can be a step behind when the server is slower than the timer.
    Past the last step, stop."""
    later = [t for t in temps.T_GRID if t > st.session_state.get(PLAY_AT, 1.0)]
    if not later:
        st.session_state[PLAYING], st.session_state["T"] = False, st.session_state.get(PLAY_AT, 1.0)
        st.rerun()  # the whole page, so the timer stops
    st.session_state[PLAY_AT] = later[0]


def dark_knowledge(test_out: dict, T: float):
    """The dark-knowledge matrix at T and its most alike pairs, once per (teacher, T) for the server."""
    def build():
        matrix = temps.dark_knowledge_matrix(test_out["logits"], test_out["labels"], T, len(classes))
        return matrix, temps.similar_pairs(matrix, classes, k=5)
    return common.shared("dark_knowledge", (teacher, T), build)


def charts_at(temperatures, curves: dict, scale, test_out: dict) -> list[tuple]:
    """(kind, key, build) of every T-dependent chart of the gallery image on screen, at each of
    ``temperatures``, with the very keys the fragment asks for (see ``common.show_shared``)."""
    out = []
    for t in temperatures:
        out += [("bars", (*shown, t), lambda t=t: figures.softmax_bars(logits.tolist(), curves, classes, t, true_label,
                                                                        animate=False)),
                ("entropy", (*shown, t), lambda t=t: figures.entropy_curves(curves, t)),
                ("t2", (teacher, t), lambda t=t: figures.t_squared_figure(scale, t)),
                ("matrix", (teacher, t), lambda t=t: figures.dark_knowledge_heatmap(*_matrix_args(test_out, t)))]
    return out


def _matrix_args(test_out: dict, t: float) -> tuple:
    matrix, pairs = dark_knowledge(test_out, t)
    return matrix, classes, t, pairs


def temperature_part() -> None:
    st.subheader("2 · Turn up the temperature")
    if st.session_state.get(PLAYING):
        if common.fragment_rerun():
            play_step()
        st.session_state["T"] = st.session_state[PLAY_AT]
    slider_col, play_col = st.columns([6, 1], vertical_alignment="bottom")
    T = URL.grid_slider("Temperature T (log scale)", temps.T_GRID, "T", key="T", container=slider_col,
                        help="softmax(z/T): T = 1 is the ordinary softmax; larger T softens it.")
    playing = st.session_state.get(PLAYING, False)
    play_col.button("pause" if playing else "play T", icon=":material/pause:" if playing else ":material/play_arrow:",
                    key="T_play", on_click=toggle_play, width="stretch",
                    help="Moves the slider one step at a time up to T = 20; every chart on the page follows.")
    curves = common.shared("softening_curves", shown, lambda: temps.softening_curves(logits))
    left, right = st.columns([1, 5])
    with left:
        st.image(figures.upscale(pixels, 5), caption="what the teacher sees", width=200 if presenter else 140)
        if true_label is not None:
            st.markdown(f"true class: **{classes[true_label]}**")
        st.markdown(f"teacher's answer: **{classes[curves['top_class']]}**")
    with right:
        common.show_shared("bars", (*shown, T), lambda: figures.softmax_bars(logits.tolist(), curves, classes, T,
                                                                             true_label, animate=False), presenter,
                    "Blue: the teacher's answer; grey: the other classes (red: the true class, when the teacher is "
                    "wrong). Move the slider or press *play T* beside it and watch the grey bars rise as T grows: their heights, "
                    "not the winner's, are the dark knowledge. The logits on the left never change; only how sharply "
                    "the softmax reads them. The page has one temperature: *play* moves the slider, so every chart "
                    "below follows it.", chart_key="bars")
    common.paint_first()  # the bars on their own, then the charts below them
    import resources  # the charts below need torch: imported once the bars are sent (see the docstring)

    c1, c2 = st.columns(2)
    with c1:
        common.show_shared("entropy", (*shown, T), lambda: figures.entropy_curves(curves, T), presenter,
                           "Entropy climbs from near 0 to log C (every class equally likely) and the top-class probability "
                           "falls toward 1/C: at very high T the answer carries no information at all, so useful T sit in "
                           "between.", chart_key="entropy")
    with c2:
        scale = resources.gradient_scale(teacher)
        common.show_shared("t2", (teacher, T), lambda: figures.t_squared_figure(scale, T), presenter,
                    "Without T² (grey), the soft term's gradient shrinks about like 1/T², so at a high T distillation "
                    "would silently fade next to the label term (which does not depend on T, and is not drawn); with "
                    "T² (blue) it stays about the same size at every T. Measured on this teacher's logits, for a student "
                    "that knows nothing yet.", chart_key="t2")

    # ----------------------------------------------------------------------- predict, then reveal
    st.subheader("3 · Predict, then reveal")
    answer_class = classes[curves["top_class"]]
    wrong = [c for c in range(len(classes)) if c != curves["top_class"]]
    guess = st.multiselect(f"Before you look: besides its answer ({answer_class}), which classes does the teacher think "
                           "this image resembles most? Pick up to 3.",
                           wrong, format_func=lambda c: classes[c], max_selections=3, key=f"guess_{image_id}")
    reveal_key = f"reveal_{image_id}"
    if st.button("Reveal at T = 10", disabled=not guess):
        st.session_state[reveal_key] = True
    if st.session_state.get(reveal_key):
        answer = temps.wrong_class_ranking(logits, k=3)
        hits = len(set(guess) & set(answer))
        st.success(f"After {answer_class}, the teacher ranks **{', '.join(classes[c] for c in answer)}** highest. "
                   f"You picked {hits} of these {len(answer)}.")
        common.show(figures.softmax_bars(logits.tolist(), temps.softening_curves(logits, [10.0]), classes, 10.0,
                                         true_label, animate=False), presenter,
                    "The same logits at T = 10. The key is the teacher's own ranking of the other classes, which no T "
                    "changes (dividing the logits by T keeps their order); T = 10 only lifts the small ones into view. "
                    "It is not 'which class rises most': the runner-up is often already high at T = 1 and falls as T "
                    "grows, yet it is what the teacher believes most.", key="reveal_bars")

    # ----------------------------------------------------------------------- the matrix
    st.subheader("4 · The dark-knowledge matrix")
    # a shipped teacher's from its files (no data set, no teacher pass), else once per teacher for the server
    test_out = common.shipped_test_outputs(teacher) or resources.teacher_test_outputs(teacher)

    matrix, pairs = dark_knowledge(test_out, T)
    c1, c2 = st.columns([3, 1])
    with c1:
        common.show_shared("matrix", (teacher, T), lambda: figures.dark_knowledge_heatmap(matrix, classes, T, pairs),
                           presenter,
                           f"Each row is a true class; it shows where the teacher puts the probability it does not give to "
                           f"that class, averaged over {test_out['source']} at T = {T:g} (rows sum to 1). Boxed cells are "
                           f"the most similar pairs: a student trained on these soft targets learns these resemblances, "
                           f"never spelled out in the labels.", chart_key="matrix")
    with c2:
        st.markdown("**Most alike, by the teacher**")
        for p in pairs:
            st.markdown(f"- **{p['names'][0]} ↔ {p['names'][1]}**: {p['a_to_b']:.2f} / {p['b_to_a']:.2f}")
        known = {"mnist": "4–9, 3–5–8, 7–1", "fashion-mnist": "shirt–T-shirt–pullover–coat",
                 "digits": "similar strokes: 1–7, 3–9, 8–9"}.get(gallery["dataset"])
        if known:
            st.caption(f"Usually found for {gallery['dataset']}: {known}. The two numbers are how much of row a's "
                       f"leftover probability goes to b, and of b's to a.")

    if source == "gallery":  # the next slider moves: every T for this image, built once in the background
        nearest_first = sorted(temps.T_GRID, key=lambda t: abs(math.log(t / T)))
        common.prebuild(("temperature", teacher, index, presenter), charts_at(nearest_first, curves, scale, test_out),
                        presenter)


# Gallery images are the same for every session: their charts are built once per (teacher, image, T)
# for the whole server; an upload is this session's own.
shown = ("gallery", teacher, index) if source == "gallery" else ("upload", image_id)


def temperature_part_playing() -> None:
    """The same part while it plays, under another name: Streamlit names a fragment by its function, so
    playing and paused are two fragments. The pause's full run drops the playing one, and a tick that the
    browser's timer still sends afterwards (a tick in flight as the pause's run began could keep the timer
    alive: seen in CI on a busy 2-core machine, 2 of 4 suites) finds no fragment and is ignored."""
    temperature_part()


if st.session_state.get(PLAYING):
    timings.fragment("temperature.T", run_every=0.9)(temperature_part_playing)()
else:
    timings.fragment("temperature.T")(temperature_part)()
