"""Speed: time one training step of FAT against the triplet losses it replaces, on log-log axes."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from fatviz.bench import METHOD_DESCRIPTIONS
from fatviz.errors import FatvizError
from fatviz.figures.speed import slope_table, speed_figure, speedup_table, time_table
from pages.ui.benchmark import CLASSES_PER, DIM, run_benchmark
from pages.ui.look import presentation, show_error, start_page

SIZES = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
DEFAULT_METHODS = ("fat", "triplet-all-dense", "triplet-all", "batch-hard", "pml-triplet-all", "pml-batch-hard")
DEFAULT_SIZES = (64, 512)
DEFAULTS = {"sp_methods": list(DEFAULT_METHODS), "sp_repeats": 2, "sp_max_step": 0.5,
            "sp_threads": 1}


def shown_table(table: pd.DataFrame, fmt: str, missing: str) -> None:
    """A numeric table as right-aligned text, with a word instead of an empty cell."""
    text = table.map(lambda v: missing if pd.isna(v) else fmt.format(v))
    st.dataframe(text, width="stretch",
                 column_config={c: st.column_config.TextColumn(alignment="right") for c in text.columns})


for key, value in DEFAULTS.items():
    st.session_state.setdefault(key, value)
start_page()

st.title("Speed")
st.markdown(
    "All-triplet losses compare every anchor with every positive and every negative: **N³** work for a batch "
    "of N. FAT compares each anchor with K class centres: **N·K**. Here every method runs one training step "
    f"(forward and backward) on random unit-length embeddings ({DIM}-D, {CLASSES_PER} samples per class, so "
    f"K = N/{CLASSES_PER}), and the chart shows how the time grows with N.")

c1, c2, c3, c4 = st.columns([3, 3, 1, 1])
c1.select_slider("Batch sizes N (smallest, largest)", SIZES, value=DEFAULT_SIZES, key="sp_sizes",
                 help="Powers of two in this range. The defaults finish in about 20 s on a laptop.")
c2.multiselect("Methods", list(METHOD_DESCRIPTIONS), key="sp_methods", format_func=str,
               help="; ".join(f"{m}: {d}" for m, d in METHOD_DESCRIPTIONS.items()))
c3.number_input("Repeats", 1, 9, key="sp_repeats", help="Timed repeats per size; the median is shown.")
c4.number_input("CPU threads", 1, 64, key="sp_threads", help="1 gives steadier timings on a busy laptop.")
st.number_input("Skip a method at larger sizes once one step takes longer than (s)", 0.05, 30.0, step=0.05,
                key="sp_max_step", help="Keeps the N³ method from stalling the class.")

ss = st.session_state
low, high = ss["sp_sizes"]
params = (tuple(s for s in SIZES if low <= s <= high), tuple(ss["sp_methods"]), int(ss["sp_repeats"]),
          float(ss["sp_max_step"]), int(ss["sp_threads"]))
if st.button("Run the benchmark", type="primary", icon=":material/timer:"):
    if not params[1]:
        show_error(FatvizError("Pick at least one method to time."))
    elif len(params[0]) < 2:
        show_error(FatvizError("Pick at least two batch sizes: a slope needs two points."))
    else:
        ss["sp_last"] = params

last = ss.get("sp_last")
if last is None:
    st.info("Press **Run the benchmark**. A repeated run with the same settings is instant.")
    st.stop()
try:
    result = run_benchmark(*last)
except FatvizError as exc:
    show_error(exc)
    st.stop()
if last != params:
    st.caption("These results are for the settings of the last run; press the button to time the new ones.")

cfg = result["config"]
st.plotly_chart(speed_figure(result, presentation=presentation()), theme=None, key="sp_chart")
st.caption(f"Median of {cfg['repeats']} repeats, {cfg['threads']} CPU thread(s), torch {cfg['torch']}, "
           f"D = {cfg['dim']}, K = N/{cfg['classes_per']}, margin {cfg['margin']:g}. Slope: least-squares fit of "
           "log(time) on log(N) over the sizes measured; small batches are dominated by fixed overheads, so "
           "slopes are lower there than the operation counts say.")
# The tables with a column per method take the page's width (beside the slopes, six methods ran
# off its right edge).
st.subheader("Milliseconds per step")
shown_table(time_table(result), "{:.3f}", "skipped")
if "fat" in result["methods"] and len(result["methods"]) > 1:
    st.subheader("FAT speedup (time of method / time of FAT)")
    shown_table(speedup_table(result), "{:.1f}×", "–")
t1, t2 = st.columns([2, 3], gap="large")
with t1:
    st.subheader("Fitted slopes")
    shown_table(slope_table(result), "{:.2f}", "–")
with t2:
    for method, why in result["skipped"].items():
        for size, reason in why.items():
            st.caption(f"{method} skipped at N = {size}: {reason}.")
