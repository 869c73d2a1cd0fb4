"""Centroid explorer: the four centroid options side by side, same data, same seed, over epochs."""

from __future__ import annotations

import numpy as np
import streamlit as st

from fatviz.errors import FatvizError
from fatviz.figures.curves import (
    bound_curves,
    evaluated_on,
    evaluation_note,
    final_metrics_table,
    loss_curves,
    metric_curves,
    metrics_table,
)
from fatviz.figures.embedding import COLOUR_BY, COLOUR_BY_LABELS, ZOOMS, PointLabels, embedding_figure
from fatviz.projection import PROJECTION_LABELS, PROJECTIONS, nearest_neighbours
from fatviz.serve.jobs import job_key
from fatviz.settings import RunSettings
from fatviz.stepper import BatchStepper
from pages.ui.live import job_labels, job_manager, job_runs, prepared_data, show_job_animation, start_job, stop_job
from pages.ui.look import crisp_images, plot_embedding, presentation, show_error, start_page
from pages.ui.sidebar import sidebar_settings

NEIGHBOURS = 6
STEPPED_HEIGHT = 440  # px: a row of four square panels at 1280 px is about 200 px tall; more is empty space
STEPPED = "explorer_stepped"  # session_state: (source, BatchStepper, last Stepped or None): one per session


def batch_steps(settings: RunSettings, source: str, results: dict | None, colour_by: str) -> None:
    """GAN Lab's slow motion: "Step a batch" trains one batch of each option in a private copy (of
    `results`' final weights, or untrained without them) and draws the panels after it, each class
    centre's move an arrow from its previous place. The copy lives in this session only."""
    held = st.session_state.get(STEPPED)
    if held is not None and held[0] != source:
        held = None
    cols = st.columns([1.3, 1.3, 5], vertical_alignment="center")
    if cols[0].button("Step a batch", icon=":material/skip_next:", key="explorer_step_batch", width="stretch",
                      help="Train one batch of each option in a copy and redraw the panels with each centre's "
                           "move. The saved run is never changed."):
        data = prepared_data(settings)
        if data is None:
            return
        try:
            if held is None:
                with st.spinner("Copying the four networks…"):
                    held = (source, BatchStepper(settings, data, results), None)
            held = (held[0], held[1], held[1].step())
        except FatvizError as exc:
            show_error(exc)
            return
        st.session_state[STEPPED] = held
    if held is None or held[2] is None:
        cols[2].caption("**Step a batch** trains one batch of each option " + (
            "from these last weights (with a fresh optimiser)" if results else "from the untrained networks")
            + " and shows how far each class centre moves.")
        return
    stepper, stepped = held[1], held[2]
    if cols[1].button("Forget steps", icon=":material/undo:", key="explorer_step_forget", width="stretch",
                      help="Drop the stepped copy; the run itself was never changed."):
        st.session_state.pop(STEPPED, None)
        st.rerun()
    cols[2].markdown(f"**Stepped: {stepped.counter}** · {stepped.steps} batch{'es' if stepped.steps > 1 else ''} "
                     "in this copy")
    data = prepared_data(settings)
    if data is None:
        return
    panels, moved_from = stepper.panels(stepped)
    fig = embedding_figure(panels, PointLabels.from_data(data), colour_by, animate=False, moved_from=moved_from,
                           columns=4, presentation=presentation(), title=f"After one more batch: {stepped.counter}",
                           hover=False, height=STEPPED_HEIGHT)
    plot_embedding(fig, "explorer-stepped")
    moved = stepped.moved
    st.markdown("**How far the centres moved in this batch** (anchor-space distance, mean · largest): " + " · ".join(
        f"{o} {np.nanmean(d):.3g} · {np.nanmax(d):.3g}" for o, d in moved.items()))
    st.caption("Hollow diamonds: where each class centre was before the last batch; arrows: its move from there "
               "(drawn k times longer where a panel says “arrows ×k”: late in training a batch moves a centre "
               "by less than its diamond's width). "
               + ("Drawn on the axes PCA gives the run's last epoch" if results else
                  "Drawn on the PCA axes of the untrained networks")
               + ", so the picture moves only as the embedding does. "
               + ("The copy starts from the run's final weights with a fresh Adam (a run does not save its "
                  "optimiser's state): its steps are not exactly the ones the run would take next. "
                  if results else "")
               + "The saved run and its epochs are never changed.")

start_page()
crisp_images()
st.title("Centroid explorer")
st.caption("The same network, data and seed, trained once per centroid option. Points are the "
           "visualisation subset of the training split; diamonds are the class centres.")

settings = sidebar_settings()
if settings is None:
    st.stop()
st.caption(f"Every panel trains with centres from **{settings.centre_source.words}** "
           f"(`centres = {settings.centres}`; sidebar › Training › *Centres from*)."
           + ("" if settings.centre_source.kind == "epoch" else
              " The diamonds drawn are the whole-set centres after each epoch, for every source alike."))

manager = job_manager()
key = job_key("compare", settings)
job = manager.get(key)
saved = manager.store.root is not None and (manager.store.root / key).is_dir()
# A shared link or a saved run starts at once; edited settings wait for the button, so a
# few quick edits never queue several four-option trainings behind each other.
first_visit = not st.session_state.get("explorer_visited")
st.session_state["explorer_visited"] = True
if job is None and (saved or first_visit):
    job = start_job("compare", settings)
if job is None or job.status in ("error", "stopped"):
    label = "Train the four options" if job is None else "Train again"
    if st.button(label, type="primary", icon=":material/model_training:",
                 help=f"{settings.epochs} epochs × each centroid option, in the background"):
        job = start_job("compare", settings, retrain=job is not None)
    elif job is None:
        st.info("These settings have not been trained yet. Press **Train the four options**: "
                "the panels fill in epoch by epoch while training runs.")
        batch_steps(settings, f"untrained:{key}", None, "true")
        st.stop()
if job is None:
    st.stop()

# Two rows of controls: one row of four cut the colouring's options off at 1280 px (a projector).
controls = [*st.columns([1.9, 1], vertical_alignment="bottom"), *st.columns([1.9, 1], vertical_alignment="bottom")]
colour_by = controls[0].segmented_control(
    "Colour points by", COLOUR_BY, format_func=lambda c: COLOUR_BY_LABELS[c], default="true",
    key="explorer_colour_by", required=True)
if settings.embedding_dim == 2:
    method = "pca"
    controls[1].markdown("**Projection**  \n2-D embedding: drawn as it is")
else:
    method = controls[1].segmented_control(
        "Projection", PROJECTIONS, format_func=PROJECTION_LABELS.get, default="pca", key="explorer_projection",
        required=True, help="PCA: each epoch on the axes of the epochs so far (stable axes, instant). t-SNE "
                            "and UMAP lay out every epoch from the one before, in the background as epochs "
                            "arrive (about a second per panel and epoch), then kept with the run.")
zoom = controls[2].segmented_control(
    "Axes", ZOOMS, default="follow", key="explorer_zoom", required=True,
    format_func={"follow": "follow points", "fixed": "fixed"}.get,
    help="follow: each epoch framed on its own points; fixed: one range for all epochs (shows growth).")
if not job.done and controls[3].button("Stop", icon=":material/stop:", help="Stop after the current batch"):
    stop_job(job)
if method != "pca":
    st.caption(f"{PROJECTION_LABELS[method]} lays out each epoch starting from the previous epoch's layout, "
               "turned to match it, so points move only as far as the embedding moved. Distances between "
               "clusters mean little in it; neighbourhoods do.")
shown_labels = job_labels(job) if colour_by != "true" and job.status != "error" else None  # (a failed job said why)
if shown_labels is not None and not shown_labels.flipped.any():
    st.caption("No point shown has a flipped label: every given label is the true one, so "
               + ("every point is “kept”." if colour_by == "flipped" else "the colours equal the true labels'.")
               + " Add **Label noise** in the sidebar (or pick a noisy preset) to see flipped labels.")

# A click on a point (in the finished chart) remembers the point for the inspector below.
def pick(option: str, point: int) -> None:
    st.session_state["explorer_point"] = (option, point)


chart_key = f"explorer-{key}"
selected = st.session_state.get("explorer_point")
shown = len(job.snapshots[job.options[0]][0].embeddings) if job.frames() else 0
if selected is not None and (selected[0] not in job.options or selected[1] >= shown):
    selected = None
n = job.frames()
if job.done and n > 1:
    if st.session_state.get("explorer_epoch_of") != job.key:
        st.session_state["explorer_epoch_of"] = job.key
        st.session_state["explorer_epoch"] = n - 1
    st.session_state["explorer_epoch"] = min(int(st.session_state.get("explorer_epoch", n - 1)), n - 1)
# The epoch to inspect drives the frame shown, the table and the neighbours; its controls sit
# under the chart, so the chart keeps its place on the page from the first epoch to the last.
frame = st.session_state.get("explorer_epoch") if job.done and n > 1 else None
show_job_animation(job, key=chart_key, method=method, colour_by=colour_by, zoom=zoom,
                   frame=frame, highlight=None if selected is None else selected[1], on_pick=pick,
                   columns=4 if presentation() else None)  # a projector is wide: one row
if job.done and n > 1:
    def step(delta: int) -> None:
        st.session_state["explorer_epoch"] = int(np.clip(st.session_state["explorer_epoch"] + delta, 0, n - 1))

    epochs = [s.epoch for s in next(iter(job_runs(job).values()))]
    cols = st.columns([1.4, 1.4, 1.1, 6], vertical_alignment="bottom")  # "◀ Step" whole at 1280 px
    cols[0].button("◀ Step", on_click=step, args=(-1,), width="stretch", key="explorer_back")
    cols[1].button("Step ▶", on_click=step, args=(1,), width="stretch", key="explorer_next")
    cols[2].button("Reset", on_click=step, args=(-n,), width="stretch", key="explorer_reset")
    frame = cols[3].select_slider("Epoch to inspect", options=list(range(n)), key="explorer_epoch",
                                  format_func=lambda f: f"epoch {epochs[f]}",
                                  help="Sets the frame shown, the table and the neighbours below. "
                                       "▶ Play in the chart animates all epochs.")
if not job.done or job.status == "error":
    st.stop()
if len(job.results) == len(job.options):
    batch_steps(settings, f"{job.key}:{job.started}", job.results, colour_by)

runs = job_runs(job)
if not any(runs.values()):
    st.stop()
index = -1 if frame is None else frame

# -- one sample: its image, labels and nearest neighbours --------------------------------
data = prepared_data(settings)
if selected is not None and data is not None:
    option, i = selected
    snap = runs[option][index]
    ds = data.dataset
    names = ds.class_names

    def describe(j: int) -> str:
        """True and given label of point j, marking a label flipped by noise."""
        idx = data.vis_idx[j]
        given = data.given_labels[idx]
        text = f"true **{names[ds.y_train[idx]]}** · given **{names[given]}**"
        return text + (" · :red[flipped]" if data.noisy.flipped[idx] else "")

    def show_sample(where, j: int, caption: str) -> None:
        """The sample's image, or its features when the dataset has no images."""
        idx = data.vis_idx[j]
        if ds.images_train is not None:
            where.image(ds.images_train[idx], width=110 if caption else 180)
        else:
            where.code("x = (" + ", ".join(f"{v:.2f}" for v in ds.x_train[idx][:8]) + ")")
        if caption:
            where.caption(caption)

    head, clear = st.columns([6, 1], vertical_alignment="bottom")
    head.subheader(f"Sample {data.vis_idx[i]} in the {option} panel, epoch {snap.epoch}")
    clear.button("Clear", key="explorer_clear", icon=":material/close:", width="stretch",
                 on_click=lambda: st.session_state.pop("explorer_point", None))
    left, right = st.columns([1, 3], gap="large")
    with left:
        show_sample(st, i, "")
        st.markdown(describe(i))
    with right:
        order, dist = nearest_neighbours(snap.embeddings, i, NEIGHBOURS)
        st.markdown(f"**Nearest neighbours** in the {option} anchor space (Euclidean distance)")
        cells = st.columns(len(order))
        for cell, j, d in zip(cells, order, dist, strict=True):
            show_sample(cell, int(j), f"d = {d:.3f}")
            cell.markdown(describe(int(j)))
else:
    st.caption("Click a point in any panel to see its image, its labels and its nearest neighbours.")

# -- per option: metrics, loss terms, bound vs exact --------------------------------------
pres = presentation()
table = metrics_table(runs, index)
st.subheader(f"Test metrics at epoch {int(table['epoch'].iloc[0])}")
st.dataframe(table.style.format(precision=3, na_rep="–"), width="stretch")
sizes = evaluated_on(job.results)
if sizes is not None:
    st.caption(evaluation_note(*sizes))
    if sizes[0] < sizes[1]:  # a subset each epoch: the whole split's numbers too
        st.markdown(f"**Final metrics on all {sizes[1]:,} test images**")
        st.dataframe(final_metrics_table(job.results).style.format(precision=3, na_rep="–"), width="stretch")
tabs = st.tabs(["Metrics over epochs", "Loss terms", "The bound vs the exact triplet loss"])
with tabs[0]:
    st.plotly_chart(metric_curves(runs, presentation=pres), theme=None, width="stretch")
with tabs[1]:
    st.plotly_chart(loss_curves(runs, presentation=pres), theme=None, width="stretch")
with tabs[2]:
    st.plotly_chart(bound_curves(runs, presentation=pres), theme=None, width="stretch")
    st.caption("Measured on the visualisation subset with the given labels: the exact mean triplet "
               "loss over all triplets, and the FAT bound (point-to-set term plus the two radii), "
               "which holds for every centroid option.")
