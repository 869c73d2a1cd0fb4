"""Widgets and glue shared by the pages: settings sidebar <-> URL, the job manager, presentation mode.

This is the only place that turns widgets into a RunSettings; pages call `sidebar_settings()`.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import streamlit as st

from fatviz.centroids import CENTROID_OPTIONS
from fatviz.errors import FatvizError
from fatviz.jobs import Job, JobManager
from fatviz.losses import NEGATIVE_MODES, RADIUS_MODES
from fatviz.noise import NOISE_KINDS
from fatviz.presets import PRESETS
from fatviz.settings import DATASET_NAMES, LOSSES, RunSettings

RUNS_DIR = os.environ.get("FATVIZ_RUNS_DIR", "runs")
# Worker processes for training; 0 trains in a thread of the app (used by tests).
WORKERS = int(os.environ.get("FATVIZ_WORKERS", str(min(2, os.cpu_count() or 1))))
# Training workers run at a lower CPU priority than the app and the browser: on a two-core laptop
# the first epoch then reaches the screen without waiting for the trainers' time slices.
WORKER_NICENESS = 10


def _leave_pages_folder_mode() -> None:
    """Until app.py first calls st.navigation, Streamlit serves pages/ as an old-style page folder
    (with common.py as a page). A first visitor after a server start who opens a shared link such
    as /classroom would land there: switch to app.py's navigation and rerun, once per server."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


_leave_pages_folder_mode()


@st.cache_resource(show_spinner=False)
def job_manager() -> JobManager:
    """One manager per app process: identical requests from every session share one job."""
    return JobManager(workers=WORKERS, runs_dir=RUNS_DIR, niceness=WORKER_NICENESS)


def show_error(exc: Exception) -> None:
    """One clear message for a user mistake; the app keeps running."""
    st.error(str(exc), icon="⚠️")


def presentation() -> bool:
    """True in presentation mode (controls hidden, charts enlarged), set by ?present=1."""
    return st.query_params.get("present", "0") == "1"


def apply_presentation_css() -> None:
    """Presentation mode: hide the sidebar and chrome, enlarge text for the back row."""
    if presentation():
        st.markdown(
            """<style>
            [data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"],
            header[data-testid="stHeader"] {display: none !important;}
            .block-container {padding-top: 1rem; max-width: 100% !important;}
            html, body, [class*="css"], .stMarkdown p {font-size: 1.35rem !important;}
            </style>""",
            unsafe_allow_html=True,
        )


def url_settings(warn: bool = True) -> RunSettings:
    """Settings from the URL (a teacher's shared link); bad values fall back to the defaults, with
    a message when `warn` (the sidebar says it once per run, so other readers pass False)."""
    params = {k: st.query_params.get_all(k) for k in st.query_params}
    try:
        return RunSettings.from_query(params)
    except (FatvizError, TypeError, ValueError) as exc:
        if warn:
            st.warning(f"The link's settings could not be read ({exc}); using the defaults.")
        return RunSettings()


def _init_state(settings: RunSettings) -> None:
    """Seed widget state once per session, from the URL."""
    if st.session_state.get("_seeded"):
        return
    _write_state(settings)
    st.session_state["_seeded"] = True


def _write_state(s: RunSettings) -> None:
    kind, _, rate = s.noise.partition(":")
    st.session_state.update({
        "w_dataset": s.dataset, "w_data_root": s.data_root, "w_subsample": s.subsample,
        "w_noise_kind": kind, "w_noise_rate": float(rate or 0.2), "w_loss": s.loss,
        "w_centroid": s.centroid, "w_negatives": s.negatives, "w_hardest_k": s.hardest_k,
        "w_radius": s.radius, "w_margin": s.margin if s.margin is not None else 0.0,
        "w_margin_auto": s.margin is None,
        "w_cw": s.compactness_weight if s.compactness_weight is not None else 0.0,
        "w_cw_auto": s.compactness_weight is None, "w_epochs": s.epochs,
        "w_embedding_dim": s.embedding_dim, "w_seed": s.seed, "w_centres": s.centres,
        "w_lr": s.lr, "w_blob_outliers": s.blob_outliers, "w_blob_spread": s.blob_spread,
    })


def _apply_preset() -> None:
    name = st.session_state.get("w_preset")
    if name in PRESETS:
        _write_state(PRESETS[name][1])


def use_preset(name: str) -> None:
    """Load a named preset into the settings widgets (a button callback, like the sidebar's Preset box)."""
    st.session_state["w_preset"] = name
    _apply_preset()


def sidebar_settings(show: tuple[str, ...] = ("data", "noise", "loss", "training"),
                     base: RunSettings | None = None) -> RunSettings | None:
    """Draw the settings sidebar and return the validated settings (None, with an error shown, if impossible).

    The settings are mirrored into the URL, so the address bar is always a shareable link.
    """
    url = url_settings()
    _init_state(url)
    sb = st.sidebar
    sb.selectbox("Preset", list(PRESETS), index=None, key="w_preset", on_change=_apply_preset,
                 placeholder="Choose a classroom preset…", help="Load a ready-made setting.")
    if "data" in show:
        sb.subheader("Data")
        sb.selectbox("Dataset", DATASET_NAMES, key="w_dataset")
        if st.session_state["w_dataset"] in ("mnist", "fashion-mnist", "cifar10", "folder", "market1501"):
            sb.text_input("Data folder", key="w_data_root",
                          help="A local folder in torchvision / ImageFolder / Market-1501 layout. "
                               "fatviz never downloads data.")
        sb.number_input("Subsample (0 = all)", min_value=0, step=100, key="w_subsample")
        if st.session_state["w_dataset"] == "blobs":
            sb.slider("Blob spread", 0.2, 3.0, step=0.1, key="w_blob_spread")
            sb.slider("Outlier fraction", 0.0, 0.3, step=0.01, key="w_blob_outliers")
    if "noise" in show:
        sb.subheader("Label noise")
        sb.radio("Noise", NOISE_KINDS, key="w_noise_kind", horizontal=True)
        if st.session_state["w_noise_kind"] != "none":
            sb.slider("Noise rate", 0.0, 0.9, step=0.05, key="w_noise_rate")
    if "loss" in show:
        sb.subheader("Loss")
        sb.selectbox("Loss", LOSSES, key="w_loss")
        sb.selectbox("Centroid option", CENTROID_OPTIONS, key="w_centroid",
                     help="The explorer trains all four side by side; this one is used elsewhere.")
        sb.selectbox("Negatives", NEGATIVE_MODES, key="w_negatives")
        if st.session_state["w_negatives"] == "hardest":
            sb.number_input("Hardest k", 1, 50, key="w_hardest_k")
        sb.selectbox("Compactness (radius)", RADIUS_MODES, key="w_radius",
                     help="mean: mean distance to own centre (public code); max: largest radius (the bound)")
        sb.checkbox("Default margin", key="w_margin_auto")
        if not st.session_state["w_margin_auto"]:
            sb.number_input("Margin", 0.0, 10.0, step=0.05, key="w_margin")
        sb.checkbox("Default compactness weight", key="w_cw_auto")
        if not st.session_state["w_cw_auto"]:
            sb.number_input("Compactness weight", 0.0, 10.0, step=0.1, key="w_cw")
    if "training" in show:
        sb.subheader("Training")
        sb.slider("Epochs", 1, 100, key="w_epochs")
        sb.select_slider("Embedding dimension", [2, 3, 8, 16, 32, 64, 128], key="w_embedding_dim")
        sb.radio("Centres from", ("epoch", "batch"), key="w_centres", horizontal=True,
                 help="epoch: whole training set at each epoch start; batch: each batch (cheaper)")
        sb.number_input("Seed", 0, 10_000, key="w_seed")
    ss = st.session_state
    noise = "none" if ss["w_noise_kind"] == "none" else f"{ss['w_noise_kind']}:{ss['w_noise_rate']:g}"
    base = base or url
    try:
        settings = base.replace(
            dataset=ss["w_dataset"], data_root=ss["w_data_root"].strip(), subsample=int(ss["w_subsample"]),
            noise=noise, loss=ss["w_loss"], centroid=ss["w_centroid"], negatives=ss["w_negatives"],
            hardest_k=int(ss["w_hardest_k"]), radius=ss["w_radius"],
            margin=None if ss["w_margin_auto"] else float(ss["w_margin"]),
            compactness_weight=None if ss["w_cw_auto"] else float(ss["w_cw"]),
            epochs=int(ss["w_epochs"]), embedding_dim=int(ss["w_embedding_dim"]), seed=int(ss["w_seed"]),
            centres=ss["w_centres"], blob_outliers=float(ss["w_blob_outliers"]),
            blob_spread=float(ss["w_blob_spread"]),
        ).validate()
    except FatvizError as exc:
        show_error(exc)
        return None
    _sync_url(settings)
    return settings


def _sync_url(settings: RunSettings) -> None:
    """Write the settings into the address bar, keeping the page's own parameters."""
    keep = {k: st.query_params[k] for k in ("present",) if k in st.query_params}
    wanted = {**settings.to_query(), **keep}
    current = {k: st.query_params[k] for k in st.query_params}
    if current != wanted:
        st.query_params.from_dict(wanted)


def cached(fn: Callable[..., Any]) -> Callable[..., Any]:
    """st.cache_data for pure results keyed on their (hashable) arguments."""
    return st.cache_data(show_spinner=False, max_entries=64)(fn)


def start_job(kind: str, settings: RunSettings) -> Job | None:
    """Submit (or join) a job; a user mistake shows one error and returns None."""
    try:
        return job_manager().submit(kind, settings)
    except FatvizError as exc:
        show_error(exc)
        return None


def job_status(job: Job) -> None:
    """A progress bar while running; the error, if the job failed."""
    if job.status == "error":
        st.error(job.error, icon="⚠️")
    elif not job.done:
        frac, msg = job.progress
        st.progress(min(1.0, max(0.0, frac)), text=f"Training… {msg}")




@st.cache_resource(show_spinner=False, max_entries=8)
def _prepared(key: tuple, _settings: RunSettings):
    from fatviz.train import prepare_data

    return prepare_data(_settings)


def prepared_data(settings: RunSettings):
    """The dataset, noisy labels and visual subset for these settings, shared by all sessions."""
    from fatviz.train import data_settings_key

    try:
        return _prepared(data_settings_key(settings), settings)
    except FatvizError as exc:
        show_error(exc)
        return None


# -- The four-panel animation, shared by Home, the Centroid explorer and the Classroom ------------

@st.cache_resource(show_spinner=False)
def _figure_store() -> dict:
    """Built figures shared by every session: a class looking at one preset builds its figure once."""
    return {"lock": threading.Lock(), "figures": OrderedDict()}


def animation_figure(source: str, runs: dict[str, list], labels, *, method: str = "pca", colour_by: str = "true",
                     zoom: str = "follow", frame: int | None = None, animate: bool = True,
                     highlight: int | None = None, columns: int | None = None, hover: bool = True):
    """The four-panel figure for `runs` (snapshots per option), built once per view for all sessions.

    `source` names where the snapshots come from (a job or a run folder). t-SNE and UMAP fit
    every frame, so they animate a few epochs spread over training (`frame` is then mapped to
    the nearest one) and show a progress bar. A user mistake shows one error and returns None.
    """
    from fatviz.figures.embedding import (
        NONLINEAR_EPOCHS,
        embedding_figure,
        panel_frames,
        spread_indices,
    )

    n = min((len(v) for v in runs.values()), default=0)
    keep = list(range(n)) if method == "pca" else spread_indices(n, NONLINEAR_EPOCHS)
    runs = {o: [snaps[i] for i in keep] for o, snaps in runs.items()}
    if frame is not None:
        frame = min(range(len(keep)), key=lambda j: abs(keep[j] - frame), default=None)
    store = _figure_store()
    view = (source, n, method, colour_by, zoom, frame, animate, highlight, columns, hover, presentation())
    with store["lock"]:
        if view in store["figures"]:
            store["figures"].move_to_end(view)
            return store["figures"][view]
    bar = st.progress(0.0, text=f"Fitting {method.upper()}…") if method != "pca" else None
    try:
        panels = []
        for i, (option, snaps) in enumerate(runs.items()):
            def progress(f: float, msg: str, i: int = i, option: str = option) -> None:
                if bar is not None:
                    bar.progress(min(1.0, (i + f) / len(runs)), text=f"{option}: {msg} (once; then cached)")
            panels.append(panel_frames(option, snaps, method, progress=progress))
        fig = embedding_figure(panels, labels, colour_by, frame=frame, animate=animate,
                               presentation=presentation(), zoom=zoom, highlight=highlight, columns=columns,
                               hover=hover)
    except (FatvizError, ImportError) as exc:
        show_error(exc if isinstance(exc, FatvizError) else FatvizError(
            f"{method} is not installed here ({exc}); choose PCA."))
        return None
    finally:
        if bar is not None:
            bar.empty()
    with store["lock"]:
        store["figures"][view] = fig
        while len(store["figures"]) > 48:
            store["figures"].popitem(last=False)
    return fig


def job_runs(job: Job) -> dict[str, list]:
    """Snapshots per option that every option has reached (panels advance together)."""
    n = job.frames()
    return {o: list(job.snapshots.get(o, []))[:n] for o in job.options}


def job_labels(job: Job):
    """The visualisation subset's labels: from the results when done, else from the prepared data."""
    from fatviz.figures.embedding import PointLabels

    if job.results:
        return PointLabels.from_result(next(iter(job.results.values())))
    data = prepared_data(job.settings)
    return None if data is None else PointLabels.from_data(data)


def plot_embedding(fig, key: str, selectable: bool = False, static: bool = False):
    """Draw an embedding figure the same way everywhere (our own style, not Streamlit's theme).

    `static` draws a picture without hover, zoom or toolbar: the live view, replaced every few
    seconds, which a laptop's browser then draws in about half the time."""
    config = {"displaylogo": False, "scrollZoom": True,
              "toImageButtonOptions": {"format": "png", "scale": 2, "filename": "fatviz-embedding"}}
    if static:
        config = {"staticPlot": True}
    if selectable:
        return st.plotly_chart(fig, key=key, theme=None, on_select="rerun", selection_mode="points",
                               config=config)
    st.plotly_chart(fig, key=key, theme=None, config=config)
    return None


# The live view while a job trains. Every redraw costs the server and the browser CPU that the
# training workers need on a two-core laptop (measured: a four-panel redraw costs Chromium about
# 0.7 CPU-seconds), so the view is redrawn every LIVE_SECONDS, not at every epoch.
LIVE_SECONDS = 2.0
FIRST_FRAME_WAIT = 3.0  # the click's own run waits this long for the first epoch, so it draws it at once


def show_job_animation(job: Job, key: str, *, method: str = "pca", colour_by: str = "true", zoom: str = "follow",
                       frame: int | None = None, highlight: int | None = None, columns: int | None = None,
                       selectable: bool = False):
    """A compare job's panels: the latest epoch, live, while it trains; the full animation once done.

    While training, the first epoch is drawn as soon as it exists, then a fragment redraws the
    newest epoch every LIVE_SECONDS; when the job ends (the fragment waits for an end that is
    due before its next turn) it reruns the page once, which draws the animation and stops polling.
    Returns the chart's selection state (when `selectable` and done), else None.
    """
    if not job.done:
        # Polling reruns would fade the chart as "stale": keep it solid.
        st.markdown("<style>[data-stale='true'] {opacity: 1 !important; transition: none !important;}</style>",
                    unsafe_allow_html=True)
        job.wait_frames(1, timeout=FIRST_FRAME_WAIT)

        @st.fragment(run_every=LIVE_SECONDS)
        def live() -> None:
            if job.done:
                st.rerun()
            job_status(job)
            labels = job_labels(job)
            if job.frames() == 0 or labels is None:
                st.caption("The first epoch appears here in a moment…")
            else:
                fig = animation_figure(f"{job.key}:{job.status}", job_runs(job), labels, colour_by=colour_by,
                                       zoom=zoom, animate=False, columns=columns, hover=False)
                if fig is not None:
                    plot_embedding(fig, f"{key}-live", static=True)
            # Ending before the next redraw is due: wait for it here and show the animation at once.
            if job.seconds_left() < LIVE_SECONDS and job.wait(LIVE_SECONDS):
                st.rerun()

        live()
        return None
    if job.status == "error":
        st.error(job.error, icon="⚠️")
        return None
    if job.status == "stopped":
        st.info(f"Stopped after epoch {max(0, job.frames() - 1)}: showing the epochs trained so far.")
    labels = job_labels(job)
    if job.frames() == 0 or labels is None:
        return None
    fig = animation_figure(f"{job.key}:{job.status}", job_runs(job), labels, method=method, colour_by=colour_by,
                           zoom=zoom, frame=frame, highlight=highlight, columns=columns)
    return None if fig is None else plot_embedding(fig, key, selectable)
