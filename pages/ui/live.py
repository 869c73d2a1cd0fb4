"""Jobs as the pages see them: the one job manager, starting, joining and stopping a job, and the
view of a training: live while it runs, the full animation once it is done.

Shared heavy objects live in Streamlit's caches: the job manager and the prepared data in
`st.cache_resource` (one per server, shared by every session), and so are the projected
panels and the built figures, so a class looking at one preset projects and builds it once.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

import streamlit as st

from fatviz.errors import FatvizError
from fatviz.figures.embedding import PointLabels, embedding_figure
from fatviz.progress import Pace, left_text
from fatviz.projection import PROJECTION_LABELS, PanelFrames, panel_frames
from fatviz.serve.jobs import Budget, Job, JobManager
from fatviz.serve.paths import allowed_roots
from fatviz.settings import RunSettings
from pages.ui.live_chart import live_chart, unavailable
from pages.ui.look import plot_embedding, presentation, show_error
from pages.ui.uploads import upload_store

# Worker processes for training; 0 trains in a thread of the app (used by tests).
WORKERS = int(os.environ.get("FATVIZ_WORKERS", str(min(2, os.cpu_count() or 1))))
# Training workers run at a lower CPU priority than the app and the browser: on a two-core laptop
# the first epoch then reaches the screen without waiting for the trainers' time slices.
WORKER_NICENESS = 10
# While a job trains, its chart asks for new epochs this often; it is sent only those (pages/ui/live_chart.py).
LIVE_SECONDS = 0.5
FIRST_FRAME_WAIT = 3.0  # the click's own run waits this long for the first epoch, so it draws it at once
# Polling reruns would fade the live chart as "stale": keep it solid.
SOLID_WHILE_LIVE = "<style>[data-stale='true'] {opacity: 1 !important; transition: none !important;}</style>"


@st.cache_resource(show_spinner=False)
def job_manager() -> JobManager:
    """One manager per app process: identical requests from every session share one job."""
    # The budget keeps one visitor's link from taking the server down: it refuses a job that
    # would not fit (memory, time) or one too many, with one message, before anything starts.
    upload_store()  # first: the workers spawned next read uploads from its folder
    return JobManager(workers=WORKERS, runs_dir=allowed_roots("runs")[0].path, niceness=WORKER_NICENESS,
                      budget=Budget.for_machine(max(1, WORKERS)))


def viewer() -> str:
    """This browser session's id: the job manager counts who watches a job before stopping it."""
    return st.session_state.setdefault("_viewer", uuid.uuid4().hex)


def start_job(kind: str, settings: RunSettings, retrain: bool = False) -> Job | None:
    """Submit (or join) a job; `retrain` trains again even if a finished run exists. A user
    mistake (or a job the server cannot take) shows one error and returns None."""
    try:
        return job_manager().submit(kind, settings, viewer=viewer(), retrain=retrain)
    except FatvizError as exc:
        show_error(exc)
        return None


def stop_job(job: Job) -> None:
    """This visitor stops watching `job`; it stops when nobody else watches it."""
    if not job_manager().stop(job, viewer()):
        st.toast("Others are watching this training too: it goes on for them.", icon=":material/group:")


@st.fragment(run_every=1.0)
def follow(job: Job) -> None:
    """Progress (and Stop) while a job runs; the whole page reruns once it is done."""
    if job.done:
        st.rerun()
    job_status(job)
    if st.button("Stop", icon=":material/stop:"):
        stop_job(job)


def finished_job(kind: str, settings: RunSettings, label: str) -> Job:
    """The finished job for these settings. Until there is one, this draws a start button (or the
    progress of the job in flight, or why the last one ended) and stops the page run here."""
    from fatviz.serve.jobs import job_key

    job = job_manager().get(job_key(kind, settings))
    if job is None or job.status in ("error", "stopped"):
        if job is not None and job.status == "error":
            job_status(job)
        elif job is not None:
            st.caption("The last run was stopped.")
        if st.button(label, type="primary", icon=":material/play_arrow:") and start_job(
                kind, settings, retrain=job is not None) is not None:
            st.rerun()  # the next run finds the job: its progress, or its result loaded from disk
        st.stop()
    if not job.done:
        follow(job)
        st.stop()
    return job


def job_status(job: Job) -> None:
    """A progress bar while running; the error, if the job failed."""
    if job.status == "error":
        st.error(job.error, icon="⚠️")
    elif not job.done:
        frac, msg = job.progress
        # This session's view of the pace since it first saw the job move (the first epoch pays one-off costs).
        left = left_text(st.session_state.setdefault("_paces", {}).setdefault((job.key, job.started), Pace())(frac))
        st.progress(min(1.0, max(0.0, frac)), text=f"Training… {left + ', ' if left else ''}{msg}")


@st.cache_resource(show_spinner=False, max_entries=8)
def _prepared(key: str, _settings: RunSettings):
    from fatviz.train import prepare_data

    return prepare_data(_settings)


def prepared_data(settings: RunSettings):
    """The dataset, noisy labels and visual subset for these settings, shared by all sessions (an upload's:
    kept in its own session, so it leaves memory with it)."""
    from fatviz.data import DATASETS
    from fatviz.train import data_settings_key, prepare_data

    key = data_settings_key(settings)
    try:
        if DATASETS.get(settings.dataset).private:
            mine = st.session_state.setdefault("_upload_prepared", {})
            if key not in mine:
                mine.clear()  # one upload's data at a time per session
                mine[key] = prepare_data(settings)
            return mine[key]
        return _prepared(key, settings)
    except FatvizError as exc:
        show_error(exc)
        return None


def job_runs(job: Job) -> dict[str, list]:
    """Snapshots per option that every option has reached (panels advance together)."""
    n = job.frames()
    return {o: list(job.snapshots.get(o, []))[:n] for o in job.options}


def job_labels(job: Job) -> PointLabels | None:
    """The visualisation subset's labels: from the results when done, else from the prepared data."""
    if job.results:
        return PointLabels.from_result(next(iter(job.results.values())))
    data = prepared_data(job.settings)
    return None if data is None else PointLabels.from_data(data)


# -- the panels animation, shared by Home, the Centroid explorer and the Classroom ---------------


@st.cache_resource(show_spinner=False, max_entries=32)
def _panels(source: str, frames: int, method: str, _runs: dict[str, list]) -> list[PanelFrames]:
    """Every option's projected panel for `frames` epochs of `source`, for all sessions; t-SNE and
    UMAP show a progress bar while they fit."""
    bar = st.progress(0.0, text=f"Fitting {method.upper()}…") if method != "pca" else None
    try:
        panels = []
        for i, (option, snaps) in enumerate(_runs.items()):
            def progress(f: float, msg: str, i: int = i, option: str = option) -> None:
                if bar is not None:
                    bar.progress(min(1.0, (i + f) / len(_runs)), text=f"{option}: {msg} (once; then cached)")
            panels.append(panel_frames(option, snaps, method, progress=progress))
        return panels
    finally:
        if bar is not None:
            bar.empty()


@st.cache_resource(show_spinner=False, max_entries=48)
def _figure(source: str, frames: int, method: str, view: tuple, _panels: list[PanelFrames], _labels: PointLabels):
    """The built figure of one view of `source`, for all sessions (`view` is embedding_figure's keywords)."""
    return embedding_figure(_panels, _labels, **dict(view))


def chart_panels(source: str, runs: dict[str, list], method: str = "pca", layout=None) -> list[PanelFrames] | None:
    """Every option's projected panel of `runs` (snapshots per option) from `source` (a job or a
    run folder), for all sessions. A t-SNE/UMAP `layout` (fatviz.serve.layouts) gives the epochs it has
    laid out so far. A user mistake shows one error and returns None."""
    if layout is not None:
        if layout.status == "error":
            show_error(FatvizError(layout.error))
            return None
        return layout.panels(runs) if layout.frames() else None
    n = min((len(v) for v in runs.values()), default=0)
    try:
        return _panels(source, n, method, {o: snaps[:n] for o, snaps in runs.items()})
    except FatvizError as exc:
        show_error(exc)
    except ImportError as exc:
        show_error(FatvizError(f"{method} is not installed here ({exc}); choose PCA."))
    return None


def _frame_of(panels: list[PanelFrames], runs: dict[str, list], frame: int | None) -> int | None:
    """The panels' frame nearest to epoch index `frame` of `runs` (a layout may not have reached it yet)."""
    if frame is None:
        return None
    full = next(iter(runs.values()))
    wanted = full[max(0, min(frame, len(full) - 1))].epoch
    epochs = panels[0].epochs
    return min(range(len(epochs)), key=lambda j: abs(epochs[j] - wanted))


def animation_figure(source: str, runs: dict[str, list], labels: PointLabels, *, method: str = "pca",
                     colour_by: str = "true", zoom: str = "follow", frame: int | None = None,
                     highlight: int | None = None, columns: int | None = None, layout=None):
    """The panels as one plotly figure with its own animation controls (an HTML export, or the
    chart where the live chart is not available), projected and built once for all sessions."""
    panels = chart_panels(source, runs, method, layout)
    if not panels:
        return None
    view = (("colour_by", colour_by), ("zoom", zoom), ("frame", _frame_of(panels, runs, frame)),
            ("highlight", highlight), ("columns", columns), ("presentation", presentation()))
    return _figure(source, len(panels[0].epochs), method, view, panels, labels)


def show_runs(key: str, source: str, runs: dict[str, list], labels: PointLabels, *, live: bool = False,
              method: str = "pca", colour_by: str = "true", zoom: str = "follow", frame: int | None = None,
              highlight: int | None = None, columns: int | None = None, selectable: bool = False,
              layout=None) -> dict | None:
    """The panels of `runs` in the live chart `key`, updated in place (or, where that chart is not
    available, as a plotly figure). `frame` is an epoch index to show; `layout` the t-SNE/UMAP
    layout being fitted (fatviz.serve.layouts). Returns a clicked point {panel, point} of this run, if any."""
    why = unavailable()
    if why:
        fig = animation_figure(source, runs, labels, method=method, colour_by=colour_by, zoom=zoom, frame=frame,
                               highlight=highlight, columns=columns, layout=layout)
        if fig is not None:
            plot_embedding(fig, key)
            st.caption(f"Plotly's own animation: {why}.")
        return None
    panels = chart_panels(source, runs, method, layout)
    if not panels:
        return None
    return live_chart(key, f"{source}:{method}", panels, labels, live=live, colour_by=colour_by, zoom=zoom,
                      presentation=presentation(), columns=columns, highlight=highlight,
                      show=_frame_of(panels, runs, frame), selectable=selectable)


def show_job_animation(job: Job, key: str, *, method: str = "pca", colour_by: str = "true", zoom: str = "follow",
                       frame: int | None = None, highlight: int | None = None, columns: int | None = None,
                       on_pick: Callable[[str, int], None] | None = None) -> None:
    """A compare job's panels in one chart that stays in place from its first epoch to the end.

    While training (or while a t-SNE/UMAP layout is still being fitted in the background), a
    fragment polls every LIVE_SECONDS and sends the chart each new epoch; once both end the
    fragment stops polling and reruns the page once, which draws what comes after a finished
    training. The chart is the same element throughout (same place, same key), so the browser
    keeps it, its zoom and its frames. `on_pick(option, point)` is called for a click on a
    point, before the page reruns.
    """
    if job.status == "error":
        st.error(job.error, icon="⚠️")
        return
    if not job.done:
        job.wait_frames(1, timeout=FIRST_FRAME_WAIT)  # the click's own run draws the first epoch
    layout = None if method == "pca" else job_manager().layouts.layout(job, method)
    if layout is not None and layout.frames() == 0:
        layout.wait_frames(1, timeout=FIRST_FRAME_WAIT)
    st.markdown(SOLID_WHILE_LIVE, unsafe_allow_html=True)
    live = not job.done or (layout is not None and not layout.done)

    @st.fragment(run_every=LIVE_SECONDS if live else None)
    def chart() -> None:
        seen = st.session_state.setdefault("_live_jobs", {})
        now_live = not job.done or (layout is not None and not layout.done)
        if not now_live and seen.get(key) == (job.key, job.started, method, "live"):
            seen[key] = (job.key, job.started, method, "done")
            st.rerun()  # the whole page, once: it draws what follows a finished training
        seen[key] = (job.key, job.started, method, "live" if now_live else "done")
        labels = job_labels(job)
        if job.frames() == 0 or labels is None:
            st.caption("The first epoch appears here in a moment…")
        elif layout is not None and layout.frames() == 0 and layout.status != "error":
            st.caption(f"Laying out the first epoch with {PROJECTION_LABELS[method]}…")
        else:
            picked = show_runs(key, f"{job.key}:{job.started}", job_runs(job), labels, live=now_live,
                               method=method, colour_by=colour_by, zoom=zoom, frame=frame, highlight=highlight,
                               columns=columns, selectable=on_pick is not None, layout=layout)
            if picked is not None and on_pick is not None and 0 <= picked.get("panel", -1) < len(job.options):
                on_pick(job.options[picked["panel"]], int(picked["point"]))
                st.rerun()
        if job.status == "stopped":
            st.info(f"Stopped after epoch {max(0, job.frames() - 1)}: showing the epochs trained so far.")
        elif not job.done:
            job_status(job)
        if layout is not None and not layout.done:
            label, n, total = PROJECTION_LABELS[method], layout.frames(), max(1, job.frames())
            st.progress(min(1.0, n / total), text=f"{label}: {n} of {total} epochs laid out so far, each from the "
                                                  "one before (in the background; saved with the run)")

    chart()
