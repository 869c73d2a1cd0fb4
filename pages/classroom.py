"""Classroom: presets, a link that carries the settings, presentation mode, saved runs, HTML export."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

import streamlit as st

from fatviz.centroids import CENTROID_OPTIONS
from fatviz.errors import FatvizError
from fatviz.figures.embedding import PointLabels
from fatviz.presets import PRESETS, preset_name
from fatviz.runs import list_runs, load_run
from fatviz.settings import RunSettings
from pages.common import (
    RUNS_DIR,
    animation_figure,
    apply_presentation_css,
    job_runs,
    plot_embedding,
    presentation,
    show_error,
    show_job_animation,
    sidebar_settings,
    start_job,
    use_preset,
)

SOURCES = ("these settings", "a saved run")
MAX_SAVED = 30


def summary(s: RunSettings) -> str:
    """One line naming what a run is."""
    name = preset_name(s)
    text = (f"{s.dataset}, noise {s.noise}, loss {s.loss}, {s.epochs} epochs, "
            f"embedding dim {s.embedding_dim}, seed {s.seed}")
    return f"{name}: {text}" if name else text


@st.cache_resource(show_spinner=False, max_entries=16)
def load_group(folder: str, stamp: float) -> dict:
    """The runs saved in a folder: {option: RunResult} for a comparison, {centroid: RunResult} for one run."""
    base = Path(folder)
    if (base / "run.pt").is_file():
        result = load_run(base)
        return {result.settings.centroid: result}
    found = {o: load_run(base / o) for o in CENTROID_OPTIONS if (base / o / "run.pt").is_file()}
    if not found:
        raise FatvizError(f"{folder} holds no saved run: pick a folder with run.pt, or with one "
                          f"sub-folder per centroid option ({', '.join(CENTROID_OPTIONS)}).")
    return found


def saved_folders(root: str) -> list[Path]:
    """Saved runs under root, newest first, a comparison's four option folders counted once."""
    folders: list[Path] = []
    for run in list_runs(root):
        folder = run.parent if run.name in CENTROID_OPTIONS else run
        if folder not in folders:
            folders.append(folder)
    return folders[:MAX_SAVED]


def toggle_presentation() -> None:
    """Mirror the toggle into ?present=1, so the address bar (and a shared link) keeps it."""
    if st.session_state["classroom_present"]:
        st.query_params["present"] = "1"
    elif "present" in st.query_params:
        del st.query_params["present"]


def share_link(settings: RunSettings, present: bool) -> str:
    """The full address of this page with the settings (and presentation mode) in the query."""
    query = settings.to_query()
    if present:
        query["present"] = "1"
    base = (st.context.url or "http://localhost:8501").rstrip("/").removesuffix("/classroom")
    return f"{base}/classroom" + (f"?{urlencode(query)}" if query else "")


def export_button(fig, name: str) -> None:
    """Download the animation as one standalone HTML file (plotly.js inside, works offline)."""
    st.download_button("Download the animation (standalone HTML)", icon=":material/download:",
                       data=lambda: fig.to_html(include_plotlyjs=True, full_html=True, auto_play=False),
                       file_name=f"fatviz-{name}.html", mime="text/html", on_click="ignore")


apply_presentation_css()
pres = presentation()
settings = sidebar_settings()

head, toggle = st.columns([4, 1], vertical_alignment="bottom")
head.title("Classroom" if not pres else "FAT: four centroid options, side by side")
toggle.toggle("Presentation mode", value=pres, key="classroom_present", on_change=toggle_presentation,
              help="Hides the controls and enlarges the charts for a projector (?present=1 in the link).")

if not pres:
    st.subheader("Presets")
    cols = st.columns(len(PRESETS))
    for col, (name, (text, _)) in zip(cols, PRESETS.items(), strict=True):
        col.button(name, key=f"preset-{name}", on_click=use_preset, args=(name,), width="stretch",
                   type="primary" if settings is not None and PRESETS[name][1] == settings else "secondary")
        col.caption(text)
if settings is None:
    st.stop()

source = SOURCES[0]
if not pres:
    st.subheader("Share these settings")
    st.caption("Everyone who opens the link sees the same run: it trains once, the first visitor starts "
               "it, everyone else joins it, and later visits load it from the saved runs.")
    st.code(share_link(settings, False), language=None)
    st.caption("…or straight into presentation mode:")
    st.code(share_link(settings, True), language=None)
    source = st.segmented_control("Show", SOURCES, default=SOURCES[0], key="classroom_source", required=True)

if source == SOURCES[0]:
    st.markdown(f"**{summary(settings)}**")
    job = start_job("compare", settings)
    if job is None:
        st.stop()
    columns = 4 if pres else None  # a projector is wide: all four panels on one screen
    show_job_animation(job, key=f"classroom-{job.key}", columns=columns)
    if job.done and job.status != "error" and job.frames() > 0:
        fig = animation_figure(f"{job.key}:{job.status}", job_runs(job), PointLabels.from_result(
            next(iter(job.results.values()))), columns=columns)
        if fig is not None and not pres:
            export_button(fig, job.key)
else:
    folders = saved_folders(RUNS_DIR)
    typed = st.text_input("Run folder", placeholder=f"a folder under {RUNS_DIR}/, or any path",
                          key="classroom_folder", help="A folder with run.pt, or with one sub-folder per option.")
    if folders:
        picked = st.selectbox("Saved runs (newest first)", folders, key="classroom_saved",
                              format_func=lambda p: f"{p.name} · saved {datetime.fromtimestamp(p.stat().st_mtime):%d %b %H:%M}")
    else:
        picked = None
        st.info(f"No saved run in {RUNS_DIR}/ yet: finished trainings are saved there automatically, "
                "or type a run folder above.")
    folder = Path(typed.strip()) if typed.strip() else picked
    if folder is None:
        st.stop()
    if not folder.is_dir():
        show_error(FatvizError(f"{folder} is not a folder: type the path of a saved run folder "
                               f"(for example one under {RUNS_DIR}/)."))
        st.stop()
    try:
        stamp = max((p.stat().st_mtime for p in folder.glob("**/run.pt")), default=0.0)
        results = load_group(str(folder), stamp)
    except FatvizError as exc:
        show_error(exc)
        st.stop()
    first = next(iter(results.values()))
    st.markdown(f"**{summary(first.settings)}** — loaded from `{folder}`, no training")
    fig = animation_figure(f"{folder}:{stamp}", {o: r.snapshots for o, r in results.items()},
                           PointLabels.from_result(first), columns=4 if pres else None)
    if fig is not None:
        plot_embedding(fig, key=f"classroom-saved-{folder}")
        export_button(fig, folder.name)
