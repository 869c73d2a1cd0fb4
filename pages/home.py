"""Home: what FAT is, in one screen, and a button that trains the default demo and animates it.

The text and the button are drawn before anything heavy is imported: the first visitor after
the server starts sees them at once, while torch, the training workers and the demo's data
load behind them (`_demo`).
"""

import streamlit as st

from pages.ui.look import start_page

# The demo the button trains: RunSettings()'s defaults, written out so that drawing the button
# needs no import of the training stack (tests/test_app_pages.py keeps them equal).
DEMO = {"dataset": "digits", "epochs": 30, "seed": 0}
READY, STARTING = "Training workers ready.", "Starting the training workers (a few seconds)…"


@st.cache_resource(show_spinner=False)
def warm_up(_settings):
    """Start the training workers and load the demo's data (with the engine's imports) in this
    process while the visitor reads, so the first epoch is drawn the moment it is trained."""
    import threading

    from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

    from pages.ui.live import job_manager, prepared_data

    job_manager()
    thread = threading.Thread(target=prepared_data, args=(_settings,), daemon=True, name="fatviz-warm-up")
    add_script_run_ctx(thread, get_script_run_ctx())  # st.cache_resource needs the run's context
    thread.start()
    return thread


def _workers_line() -> None:
    """"Starting…" until the workers are up, then "ready", by itself (a fragment polling once a second)."""
    from pages.ui.live import job_manager

    if job_manager().pool.ready(0):
        st.caption(READY)
        return

    @st.fragment(run_every=1.0)
    def poll() -> None:
        if job_manager().pool.ready(0):
            st.rerun()  # the whole page again: it draws "ready" and stops polling
        st.caption(STARTING)
    poll()


def _demo(clicked: bool) -> None:
    """Everything that needs the training stack: warm-up, the workers line, the demo or its placeholder."""
    from fatviz.centroids import CENTROIDS
    from fatviz.figures.embedding import placeholder_figure
    from fatviz.settings import RunSettings
    from pages.ui.live import show_job_animation, start_job
    from pages.ui.live_chart import still_chart
    from pages.ui.look import presentation

    settings = RunSettings()
    warm_up(settings)
    if clicked:
        st.session_state["home_demo"] = True
    if not st.session_state.get("home_demo"):
        # Workers start (and warm up) when the app opens; a click before then waits for them.
        _workers_line()
        still_chart("home_placeholder", placeholder_figure(
            CENTROIDS.names(), "Press <b>Run the demo</b>: the four runs appear here, epoch by epoch", columns=4,
            presentation=presentation()))
        return
    job = start_job("compare", settings)
    if job is None:
        return
    show_job_animation(job, key="home_animation", columns=4)
    if job.done and job.status == "done":
        if job.from_cache:
            how = "loaded from the saved run"
        else:
            how = (f"first epochs on screen after {job.first_frame_seconds:.1f} s, "
                   f"all {settings.epochs} epochs trained in {job.seconds:.1f} s")
        st.caption(f"Four runs, same data and seed, {how}. Each panel is one centroid option "
                   "(PCA of the epochs so far: the axes settle while the points move). Press ▶ Play to watch "
                   "training again; open the **Centroid explorer** for metrics, the bound, and single samples.")


start_page()
st.title("FAT: the Fast Approximated Triplet loss")
story, maths = st.columns([1, 1.1], gap="large")
with story:
    st.markdown(
        "A **triplet loss** teaches a network to put an *anchor* closer to a *positive* (same class) "
        "than to a *negative* (another class), by a margin *m*. With *N* samples there are about "
        "*N*³ triplets, and mining the hard ones favours outliers and **mislabelled** samples.\n\n"
        "**FAT** replaces every positive and negative by its **class centre** *c* and the class "
        "**radius** *R* (the farthest member from the centre). The triangle inequality turns the "
        "loss of every triplet into a bound that needs only each anchor's distance to the *K* "
        "centres: *O(N·K)* instead of *O(N³)*.\n\n"
        "Press **Run the demo** to train the same network four times, once per way of computing "
        "the centre, on handwritten digits, and watch the classes pull apart."
    )
    # In the text's column, before the formulas: it reaches the page (and is usable) first.
    clicked = st.button("Run the demo", type="primary", icon=":material/play_arrow:",
                        help=f"{DEMO['dataset']}, the four centroid options, {DEMO['epochs']} epochs, "
                             f"seed {DEMO['seed']}")
with maths:
    st.markdown("**The bound**: for any centre point, by the triangle inequality")
    # Three short lines each: the column is about 400 px wide on a 1280 px projector.
    st.latex(r"""\begin{aligned}&\max\bigl(0,\ d(a,p) - d(a,n) + m\bigr)\\
             \le\ &\max\bigl(0,\ d(a,c_a) - d(a,c_k) + m\bigr)\\ &+ R_a + R_k\end{aligned}""")
    st.markdown("**The FAT loss** minimises it: a point-to-set term plus a compactness term")
    st.latex(r"""\begin{aligned}L_{\mathrm{FAT}} = &\frac{1}{N(K-1)} \sum_{a} \sum_{k \ne y(a)}\\
             &\max\bigl(0,\ d(a,c_a) - d(a,c_k) + m\bigr)\\ &+ \lambda\, \mathrm{compactness}\end{aligned}""")
    # c_a rather than c_{y_a}: a subscript of a subscript is 9.7 px on a projector.
    st.caption("d: Euclidean distance in the anchor space · c_k: centre of class k, recomputed from the "
               "whole training set every epoch · R_k: radius of class k · c_a, R_a: those of a's class y(a) · "
               "m: margin · λ: compactness weight")

_demo(clicked)
