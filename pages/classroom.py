"""Classroom: presets, a link that carries the settings, presentation mode, saved runs, HTML export."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

import streamlit as st

from fatviz.errors import FatvizError
from fatviz.figures.embedding import PointLabels
from fatviz.job_kinds import JOB_KINDS
from fatviz.presets import PRESETS, preset_name
from fatviz.runs import RUN_FILE, list_groups, list_runs, load_group
from fatviz.serve.paths import Root, allowed_roots, resolve_under
from fatviz.settings import RunSettings
from pages.ui.live import animation_figure, job_labels, job_runs, show_job_animation, show_runs, start_job
from pages.ui.look import presentation, show_error, start_page
from pages.ui.sidebar import sidebar_settings, use_preset

SOURCES = ("these settings", "a saved run")
MAX_SAVED = 30
PRESETS_PER_ROW = 2


def summary(s: RunSettings) -> str:
    """One line naming what a run is."""
    name = preset_name(s)
    text = (f"{s.dataset}, noise {s.noise}, loss {s.loss}, {s.epochs} epochs, "
            f"embedding dim {s.embedding_dim}, seed {s.seed}")
    return f"{name}: {text}" if name else text


@st.cache_resource(show_spinner=False, max_entries=16)
def saved_group(folder: str, stamp: float) -> dict:
    """The runs saved in a folder ({option: RunResult}), read once per change (`stamp`) for all sessions."""
    return load_group(folder)


def saved_folders(root: Root) -> list[Path]:
    """Saved comparisons and single runs under the runs root (a few levels down at most), newest first."""
    return [folder for folder, kind in list_groups(root.path) if JOB_KINDS.get(kind).snapshots][:MAX_SAVED]


def shown_name(folder: Path, root: Root) -> str:
    """A run folder as the page shows it: under the runs root's configured name, never the server's path."""
    return str(Path(root.name) / folder.relative_to(root.path))


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


start_page()
pres = presentation()
settings = sidebar_settings()

head, toggle = st.columns([3, 2], vertical_alignment="bottom")
head.title("Classroom" if not pres else "FAT: four centroid options, side by side")
toggle.toggle("Presentation mode", value=pres, key="classroom_present", on_change=toggle_presentation,
              help="Hides the controls and enlarges the charts for a projector (?present=1 in the link).")

if not pres:
    st.subheader("Presets")
    # Two presets a row, each its button over its description: seven in a row cut every name to a
    # few letters at 1024 px.
    items = list(PRESETS.items())
    for start in range(0, len(items), PRESETS_PER_ROW):
        cols = st.columns(PRESETS_PER_ROW, gap="medium")
        for col, (name, (text, _)) in zip(cols, items[start:start + PRESETS_PER_ROW], strict=False):
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
        fig = animation_figure(f"{job.key}:{job.status}", job_runs(job), job_labels(job), columns=columns)
        if fig is not None and not pres:
            export_button(fig, job.key)
else:
    root = allowed_roots("runs")[0]
    folders = saved_folders(root)
    typed = st.text_input("Run folder", placeholder=f"a folder under {root.name}/", key="classroom_folder",
                          help=f"A folder under {root.name}/ with {RUN_FILE}, or with one sub-folder per option.")
    if folders:
        picked = st.selectbox("Saved runs (newest first)", folders, key="classroom_saved",
                              format_func=lambda p: f"{p.name} · saved {datetime.fromtimestamp(p.stat().st_mtime):%d %b %H:%M}")
    else:
        picked = None
        st.info(f"No saved run in {root.name}/ yet: finished trainings are saved there automatically, "
                "or type a run folder above.")
    if picked is None and not typed.strip():
        st.stop()
    try:
        folder = resolve_under(typed, (root,), "run folder") if typed.strip() else picked
        if not folder.is_dir():
            raise FatvizError(f"{shown_name(folder, root)} is not a folder: type the name of a saved run "
                              f"folder under {root.name}/.")
        # The option folders of a comparison, or the run itself: never deeper.
        stamp = max(((p / RUN_FILE).stat().st_mtime for p in list_runs(folder, depth=1)), default=0.0)
        results = saved_group(str(folder), stamp)
    except FatvizError as exc:
        show_error(exc)
        st.stop()
    first = next(iter(results.values()))
    st.markdown(f"**{summary(first.settings)}** — loaded from `{shown_name(folder, root)}`, no training")
    runs, labels = {o: r.snapshots for o, r in results.items()}, PointLabels.from_result(first)
    show_runs(f"classroom-saved-{folder}", f"{folder}:{stamp}", runs, labels, columns=4 if pres else None)
    if not pres:
        fig = animation_figure(f"{folder}:{stamp}", runs, labels)
        if fig is not None:
            export_button(fig, folder.name)
