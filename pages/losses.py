"""FAT vs triplet: does the bound keep the triplet loss's accuracy at a fraction of its cost?"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from fatviz.compare_losses import QUICK_VARIANTS, LossComparison, load_comparison, verdict
from fatviz.errors import FatvizError
from fatviz.figures.losses import losses_figure
from fatviz.settings import RunSettings
from pages.ui.live import job_status, start_job
from pages.ui.look import presentation, show_error, start_page

# Laptop-sized presets: five losses x three seeds train in well under a minute on two cores.
PRESETS: dict[str, RunSettings] = {
    "digits (8x8 images), 15 epochs": RunSettings(epochs=15),
    "2-D blobs with 5% outliers, 15 epochs": RunSettings(dataset="blobs", blob_outliers=0.05, embedding_dim=8,
                                                         epochs=15),
}
SOURCES = ("train on this laptop", "a saved comparison (JSON)")
METRIC_NAMES = {"precision_at_1": "precision@1", "map": "mAP", "cmc_1": "rank-1 (ReID)", "minp": "mINP (ReID)"}


def show(result: LossComparison) -> None:
    """The chart, the table and, in words, where FAT keeps up and where it loses."""
    summary = result.summary()
    metric = st.radio("Accuracy", [m for m in METRIC_NAMES if any(r.get(m) is not None for r in summary)],
                      format_func=METRIC_NAMES.get, horizontal=True, key="ls_metric")
    st.plotly_chart(losses_figure(summary, metric, presentation=presentation()), theme=None,
                    config={"displaylogo": False})
    for sentence in verdict(summary):
        (st.success if "keeps" in sentence else st.warning)(sentence)
    s = result.settings
    st.caption(f"{s.dataset}, {s.epochs} epochs, batch {s.batch_size}, model {s.model}, "
               f"{len({r['seed'] for r in result.rows})} seeds; accuracy on the whole test split with true labels; "
               "the loss's cost is its own forward and backward on random embeddings of the run's batch size.")
    table = pd.DataFrame([{
        "variant": r["variant"],
        **{METRIC_NAMES[m]: "n/a" if r[m] is None else f"{r[m]:.3f} ± {r[f'{m}_sd']:.3f}"
           for m in METRIC_NAMES if r.get(m) is not None},
        "s / epoch": f"{r['epoch_seconds']:.2f}", "loss ms / step": f"{1000 * r['step_seconds']:.3f}",
    } for r in summary])
    st.dataframe(table, hide_index=True)


start_page()
st.title("FAT vs triplet")
st.markdown(
    "The paper's claim has two halves: FAT **matches the triplet loss in accuracy**, and it **costs far less** "
    "per step (N·K centre distances instead of N³ triplets). Here the same network is trained on the same "
    "data with each loss, over three seeds: the left chart shows accuracy against training time, the right "
    "the loss's own cost per step on a log axis.")

source = st.radio("Comparison from", SOURCES, horizontal=True, key="ls_source")
if source == SOURCES[0]:
    name = st.selectbox("Preset", list(PRESETS), key="ls_preset")
    settings = PRESETS[name]
    st.caption("Losses: " + ", ".join(QUICK_VARIANTS) + ". Seeds 0, 1 and 2.")
    if st.button("Compare the losses", type="primary") or st.session_state.get("ls_started") == name:
        st.session_state["ls_started"] = name
        job = start_job("losses", settings)
        if job is not None:
            if not job.done:
                job_status(job)

                @st.fragment(run_every=1.0)
                def wait() -> None:
                    if job.done:
                        st.rerun()
                    job_status(job)

                wait()
            elif job.status == "error":
                st.error(job.error, icon="⚠️")
            elif job.status == "stopped":
                st.info("The comparison was stopped; press the button to run it again.")
            else:
                show(job.result)
else:
    upload = st.file_uploader("A comparison written by `python -m fatviz compare-losses --out FILE.json`",
                              type=["json"], key="ls_upload")
    if upload is not None:
        if upload.size > 20 * 2**20:
            show_error(FatvizError("That file is over 20 MB: a loss comparison is a few kilobytes."))
        else:
            import tempfile
            from pathlib import Path

            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "comparison.json"
                path.write_bytes(upload.getvalue())
                try:
                    result = load_comparison(path)
                except (FatvizError, json.JSONDecodeError) as exc:
                    show_error(exc if isinstance(exc, FatvizError) else FatvizError("Not a JSON file."))
                    result = None
            if result is not None:
                show(result)
