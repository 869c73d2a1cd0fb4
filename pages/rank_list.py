"""Rank lists: what a ReID model retrieves for each query, the worst queries first, and where in the embedding."""

from __future__ import annotations

import streamlit as st

from fatviz.data import DATASETS
from fatviz.errors import FatvizError
from fatviz.figures.rank_list import rank_list_embedding_figure, rank_list_image
from fatviz.serve.jobs import job_key
from fatviz.settings import RunSettings
from pages.ui.live import finished_job, prepared_data
from pages.ui.look import presentation, show_error, start_page
from pages.ui.sidebar import sidebar_settings

REID_DATASETS = ("reid-synth", "market1501")  # datasets with a query / gallery split and cameras
# reid-synth as the page suggests it: the default 60 identities (subsample in images, so the job's
# time estimate knows its size) and epochs that train in well under a minute on two cores.
SUGGESTED = {"w_dataset": "reid-synth", "w_subsample": 960, "w_epochs": 10}
IMAGE_SCALE = 2


def _use_reid_synth() -> None:
    st.session_state.update(SUGGESTED)


@st.cache_resource(show_spinner="Ranking the gallery for every query…", max_entries=8)
def ranked(key: str, _result, _settings: RunSettings):
    """The run's rank lists and 2-D test embedding, once per finished job for all sessions."""
    from fatviz.retrieval import run_rank_lists

    data = prepared_data(_settings)
    if data is None:
        return None
    out = run_rank_lists(_result, data)
    return out, out.projected()


def show_rank_lists(result, settings: RunSettings) -> None:
    """Scores, the worst queries' rank lists as images, and one query in the embedding."""
    got = ranked(job_key("train", settings), result, settings)
    if got is None:
        return
    run, points = got
    lists, ds = run.lists, run.dataset
    m = st.columns(5)
    metrics = result.final_metrics
    for col, (key, label, why) in zip(m, (
            ("cmc_1", "Rank-1", "Share of queries whose top gallery image is the same person."),
            ("cmc_5", "Rank-5", "Share of queries with the same person among the top 5."),
            ("cmc_10", "Rank-10", "Share of queries with the same person among the top 10."),
            ("map", "mAP", "Mean over queries of the average precision over all true matches."),
            ("minp", "mINP", "Mean over queries of G / rank of the hardest match: how far down the list the "
                             "last true match hides.")), strict=True):
        col.metric(label, f"{metrics.get(key, float('nan')):.3f}", help=why)
    if ds.is_query_test is None:
        st.caption(f"Your images: each of the {len(lists)} test images queries the other {len(lists) - 1} (itself "
                   "left out); a match is an image of the same class.")
    else:
        st.caption(f"{len(lists)} queries against {len(run.gallery_idx)} gallery images of people never seen in "
                   "training. Gallery images of the query's person under the query's own camera are removed before "
                   "ranking (Market-1501 protocol), so a match must be found across cameras.")
    c1, c2 = st.columns([1, 3])
    shown = c1.slider("Queries shown", 1, min(24, len(lists)), min(8, len(lists)), key="rl_queries")
    cams = ds.cam_test
    names = ([ds.class_names[int(v)] for v in ds.y_test[run.query_idx]] if ds.is_query_test is None
             else [str(int(v)) for v in ds.y_test[run.query_idx]])
    image = rank_list_image(lists, run.query_images, run.gallery_images, queries=shown, query_names=names,
                            query_cams=None if cams is None else cams[run.query_idx],
                            gallery_cams=None if cams is None else cams[run.gallery_idx], scale=IMAGE_SCALE)
    c2.markdown("**Worst queries first** (lowest average precision). Blue: the query. Green: the same person, "
                "red: someone else. Gold: the **hardest match**, the last-ranked image of the same person, "
                "whose rank sets INP.")
    st.image(image, output_format="PNG")  # JPEG would blur the thin frames
    st.subheader("One query in the embedding")
    row = st.selectbox("Query", list(range(shown)), key="rl_row",
                       format_func=lambda r: f"#{r + 1} worst: query {int(lists.query[r])} (id "
                                             f"{names[int(lists.query[r])]}, AP {lists.ap[r]:.2f})")
    fig = rank_list_embedding_figure(points, run.query_idx, run.gallery_idx, ds.y_test[run.gallery_idx], lists,
                                     int(row), presentation=presentation())
    st.plotly_chart(fig, theme=None, key="rl_embedding")
    st.caption("The test split in 2-D (PCA of the embeddings the ranking used). Red crosses near the star are the "
               "people the model confuses with the query; a gold ring far away is a hard positive: the same person "
               "seen by a camera whose light and background moved the embedding.")


start_page()
st.title("Rank lists")
st.markdown(
    "Person re-identification asks: given a **query** image of a person, which **gallery** images, taken by "
    "*other* cameras, show the same person? Each query ranks the gallery by embedding distance. **CMC rank-k** "
    "counts queries whose first match is in the top k, **mAP** averages precision over all matches, and **mINP** "
    "asks how far down the list the hardest match hides.")
settings = sidebar_settings(show=("data", "loss", "training"))
if settings is None:
    st.stop()
available = [name for name in REID_DATASETS if name in DATASETS]
own = DATASETS.get(settings.dataset).private
if own and prepared_data(settings) is not None and prepared_data(settings).dataset.images_test is None:
    st.info("Rank lists draw the gallery's images, and your table has features only: the Centroid explorer and "
            "Noisy labels show it (with each row's nearest rows).", icon=":material/lightbulb:")
    st.stop()
if settings.dataset not in available and not own:
    offered = ", ".join(available) or "none is registered"
    st.info(f"Rank lists need a dataset with queries, a gallery and cameras ({offered}); {settings.dataset} "
            "has none.", icon=":material/lightbulb:")
    if "reid-synth" in available:
        st.button("Use reid-synth (60 synthetic people, 4 cameras, 10 epochs)", on_click=_use_reid_synth,
                  type="primary")
    st.stop()

job = finished_job("train", settings, "Train")
try:
    show_rank_lists(job.result, settings)
except FatvizError as exc:
    show_error(exc)
