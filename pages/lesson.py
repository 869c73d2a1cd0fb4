"""Lesson: FAT in a few steps, one screen each, with the instrument of each step already set up.

The step is in the address (`/lesson?step=K`), so a teacher can open any step directly; Back,
Next and the left/right arrow keys move through the steps. `?present=1` hides the presenter
notes (and, as on every page, the sidebar).
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from fatviz.bound_view import bound_terms, hardest_triplet, moved_triplet
from fatviz.figures.bound import whole_set_figure
from fatviz.figures.curves import metric_curves
from fatviz.figures.labels import gallery_rows, noise_kinds
from fatviz.figures.speed import speed_figure
from fatviz.figures.style import class_colour
from fatviz.lesson import (
    BOUND_BLOBS,
    BOUND_OPTION,
    DEMO,
    HARDER,
    NOISY,
    SPEED,
    STEPS,
    WHOLE_SET_OUTLIERS,
    centres_runs,
    step_from_query,
)
from pages.ui.benchmark import run_benchmark
from pages.ui.bound import blobs, drag_key, drag_view, set_bounds
from pages.ui.gallery import gallery
from pages.ui.live import follow, job_runs, job_status, prepared_data, show_job_animation, start_job
from pages.ui.look import crisp_images, presentation, start_page
from pages.ui.web import component

CHART_HEIGHT = 430  # px: a chart, the step's header and its buttons fit a 1280x720 projector together
FLAGGED_SHOWN = 6  # one row: with its captions and soft labels it fits under the scores
# One screen per step: less padding above the step, the bound's drawing and the charts kept
# within the projector's height, the arrow-key component taking no room.
LESSON_CSS = """<style>
.block-container {padding-top: 3rem !important; padding-bottom: 0 !important;}
.fvz-bound svg {max-height: 50vh;}
.fvz-bound .sides {line-height: 1.35; font-size: 0.95rem;}
.st-key-lesson_keys {display: none;}
.st-key-lesson_instrument [data-testid="stImageCaption"] {font-size: 1rem;}
</style>"""
# Presentation mode has no header above the step, and its text a size that leaves the
# instrument its room (the project's 1.35rem for the back row fills the text column twice over).
PRESENT_CSS = """<style>
.block-container {padding-top: 1.2rem !important;}
html, body, [class*="css"], .stMarkdown p, .stAlert p {font-size: 1.2rem !important;}
.fvz-bound.present {font-size: 1.05rem;}
.fvz-bound svg {max-height: 46vh;}
</style>"""


def go(step: int) -> None:
    """Show that step (Back, Next, an arrow key): the address keeps it, so a reload stays there."""
    st.query_params["step"] = str(min(max(step, 1), len(STEPS)))


def _arrow_key() -> None:
    went = (st.session_state.get("lesson_keys") or {}).get("go")
    if isinstance(went, int):
        go(went)


def demo(big: bool) -> None:
    """Home's demo: the four centroid options on digits, live while they train."""
    job = start_job("compare", DEMO)
    if job is not None:
        show_job_animation(job, key="lesson-demo", columns=4)


def bound(big: bool) -> None:
    """The draggable triplet on the teaching blobs, starting from the hardest one."""
    points, labels = blobs(*BOUND_BLOBS)
    names = [f"blob {k}" for k in range(int(labels.max()) + 1)]
    key = f"lesson-{drag_key(BOUND_BLOBS)}"
    moved = moved_triplet((st.session_state.get(key) or {}).get("moved"), labels)
    points, a, p, n = moved if moved is not None else (points, *hardest_triplet(points, labels, BOUND_OPTION))
    drag_view(key, points, labels, names, bound_terms(points, labels, a, p, n, BOUND_OPTION), BOUND_OPTION, big)


def whole_set(big: bool) -> None:
    """Exact loss against the bound over every triplet, per option, with the outliers as the lever."""
    st.session_state.setdefault("lesson_outliers", WHOLE_SET_OUTLIERS)
    outliers = st.slider("Outlier fraction", 0.0, 0.3, step=0.01, key="lesson_outliers",
                         help="Share of points moved far from their blob, keeping their label: radii grow.")
    classes, spread, _, seed = BOUND_BLOBS
    fig = whole_set_figure(set_bounds(classes, spread, float(outliers), seed, None), presentation=big)
    st.plotly_chart(fig.update_layout(height=CHART_HEIGHT - 70), theme=None, key="lesson-whole-set")


def options(big: bool) -> None:
    """The four centroid options on 2-D blobs with outliers, embedded straight into 2-D."""
    job = start_job("compare", HARDER)
    if job is not None:
        show_job_animation(job, key="lesson-options", columns=4)


def noisy(big: bool) -> None:
    """A small distillation on 40% pairflip digits: the flag scores and the flagged gallery."""
    crisp_images()
    job = start_job("distill", NOISY)
    if job is None:
        return
    if not job.done:
        follow(job)
        return
    if job.status != "done":
        job_status(job)
        return
    result, data = job.result, prepared_data(NOISY)
    rep = result.report
    m = st.columns(3)
    m[0].metric("Flagged / flipped", f"{int(rep['n_flagged'])} / {int(rep['n_flipped'])}")
    m[1].metric("Precision", f"{rep['flag_precision']:.3f}", help="Of the flagged samples, the share really flipped.")
    m[2].metric("Recall", f"{rep['flag_recall']:.3f}", help="Of the flipped samples, the share flagged.")
    rows = gallery_rows(result.table, "correctly flagged")
    st.markdown("**Flagged and really flipped**, the teacher's least sure first")
    gallery(rows.head(FLAGGED_SHOWN), len(rows), None if data is None else data.dataset.images_train,
            list(result.student.class_names), getattr(result, "soft_labels", None), noise_kinds(result.table), data,
            per_row=FLAGGED_SHOWN)


def speed(big: bool) -> None:
    """One training step of FAT against two triplet losses, timed here on a log-log chart."""
    if st.button("Time the losses", type="primary", icon=":material/timer:", key="lesson_time"):
        st.session_state["lesson_timed"] = True
    if not st.session_state.get("lesson_timed"):
        return
    fig = speed_figure(run_benchmark(*SPEED), presentation=big)
    st.plotly_chart(fig.update_layout(height=CHART_HEIGHT - 40), theme=None, key="lesson-speed")


def centres(big: bool) -> None:
    """One FAT run per value of the `centres` setting: precision@1 and mAP over epochs, side by side."""
    if st.button("Train one run per choice", type="primary", icon=":material/model_training:", key="lesson_train"):
        st.session_state["lesson_trained"] = True
    if not st.session_state.get("lesson_trained"):
        st.caption("Choices: " + ", ".join(f"**{scope}**" for scope in centres_runs()))
        return
    jobs = {scope: start_job("train", s) for scope, s in centres_runs().items()}
    if any(job is None for job in jobs.values()):
        return
    waiting = [job for job in jobs.values() if not job.done]
    if waiting:
        follow(waiting[0])
        return
    for job in jobs.values():
        if job.status != "done":
            job_status(job)
            return
    runs = {f"centres={scope}": job_runs(job)[job.options[0]] for scope, job in jobs.items()}
    colours = {name: class_colour(i) for i, name in enumerate(runs)}  # the palette's first, most distinct colours
    fig = metric_curves(runs, ("precision_at_1", "map"), presentation=big, height=CHART_HEIGHT - 60, colours=colours)
    st.plotly_chart(fig, theme=None, key="lesson-centres")
    st.caption(" · ".join(f"{name}: precision@1 {snaps[-1].metrics['precision_at_1']:.3f}, "
                          f"mAP {snaps[-1].metrics['map']:.3f}" for name, snaps in runs.items()))


INSTRUMENTS: dict[str, Callable[[bool], None]] = {
    "demo": demo, "bound": bound, "whole_set": whole_set, "options": options, "noisy": noisy, "speed": speed,
    "centres": centres,
}

# The projector's width is the instrument's: the page list folds away (the arrow at the top left opens it).
st.set_page_config(initial_sidebar_state="collapsed")
start_page()
big = presentation()
st.markdown(LESSON_CSS + (PRESENT_CSS if big else ""), unsafe_allow_html=True)
count = len(STEPS)
number, fitted = step_from_query(st.query_params.get("step"))
if fitted:
    st.warning(fitted, icon=":material/info:")
    st.query_params["step"] = str(number)  # the address says what is shown
step = STEPS[number - 1]

head, back, forward = st.columns([7, 1.3, 1.3], vertical_alignment="center")
head.markdown(f"#### Step {number} of {count} · {step.title}")
back.button("◀ Back", key="lesson_back", on_click=go, args=(number - 1,), disabled=number == 1, width="stretch")
forward.button("Next ▶", key="lesson_next", on_click=go, args=(number + 1,), disabled=number == count,
               type="primary", width="stretch")
mount, _ = component("lesson_keys")
if mount is not None:  # without it the buttons still work
    mount(key="lesson_keys", data={"step": number, "count": count}, on_go_change=_arrow_key)

text, instrument = st.columns([1.7, 3], gap="large")
with text:
    st.markdown(step.text)
    st.info(step.try_this, icon=":material/touch_app:")
    if not big:
        with st.expander("Presenter notes"):
            st.markdown(step.notes)
with instrument, st.container(key="lesson_instrument"):  # its box is what the browser test measures
    INSTRUMENTS[step.key](big)
