"""The bound: one triplet in 2-D with both sides of the inequality live, then all triplets per option."""

from __future__ import annotations

import streamlit as st

from fatviz.bound_view import (
    bound_terms,
    hardest_triplet,
    inequality_latex,
    moved_triplet,
    triangle_latex,
    whole_set_bounds,
)
from fatviz.catalogue import DEFAULT_CENTROID
from fatviz.centroids import CENTROIDS
from fatviz.errors import FatvizError
from fatviz.figures.bound import triplet_terms_figure, whole_set_figure
from fatviz.losses import default_margin
from pages.ui.bound import blobs, drag_key, drag_view, set_bounds
from pages.ui.look import presentation, show_error, start_page

HARDEST = -1  # selectbox value: let the app pick the hardest
DEFAULTS = {"tb_option": DEFAULT_CENTROID, "tb_classes": 4, "tb_spread": 1.0, "tb_outliers": 0.0,
            "tb_margin_auto": True, "tb_margin": 0.5, "tb_seed": 0,
            "tb_anchor": HARDEST, "tb_positive": HARDEST, "tb_negative": HARDEST}


def _keep_valid(key: str, allowed: list[int]) -> None:
    """A stored choice that no longer exists (new blobs, new anchor) falls back to the hardest."""
    if st.session_state.get(key) not in allowed:
        st.session_state[key] = HARDEST


for key, value in DEFAULTS.items():
    st.session_state.setdefault(key, value)
start_page()
big = presentation()

st.title("The bound")
st.markdown(
    "For a triplet (anchor **a**, positive **p**, negative **n**), the triangle inequality bounds the "
    "triplet loss by a term that needs only the anchor's distance to two class **centres** and the "
    "classes' **radii**. FAT minimises that bound, which costs O(N·K) instead of O(N³).")
st.latex(r"\big[d(a,p) - d(a,n) + m\big]_+ \;\le\; \big[d(a,c_a) - d(a,c_n) + m\big]_+ + R_a + R_n")

st.radio("Centroid option", CENTROIDS.names(), key="tb_option", horizontal=True,
         help="Where the centre sits and in which space distances are measured (docs/METHOD.md section 3).")
option = st.session_state["tb_option"]
st.caption(f"**{option}**: {CENTROIDS.get(option).description}.")
c1, c2, c3, c4, c5 = st.columns(5)
c1.slider("Classes", 2, 6, key="tb_classes")
c2.slider("Blob spread", 0.2, 3.0, step=0.1, key="tb_spread", help="Standard deviation of each blob.")
c3.slider("Outlier fraction", 0.0, 0.3, step=0.01, key="tb_outliers",
          help="Share of points moved far from their blob, keeping their label: radii grow.")
c4.checkbox(f"Default margin ({default_margin(option):g} here)", key="tb_margin_auto",
            help="1.0 on raw features, 0.1 on the unit circle (the public code's defaults).")
if not st.session_state["tb_margin_auto"]:
    c4.slider("Margin m", 0.0, 2.0, step=0.05, key="tb_margin")
c5.number_input("Seed", 0, 10_000, key="tb_seed", help="Another seed draws other blobs.")

ss = st.session_state
margin = None if ss["tb_margin_auto"] else float(ss["tb_margin"])
data_args = (int(ss["tb_classes"]), float(ss["tb_spread"]), float(ss["tb_outliers"]), int(ss["tb_seed"]))
try:
    points, labels = blobs(*data_args)
    names = [f"blob {k}" for k in range(int(labels.max()) + 1)]

    def describe(i: int, what: str) -> str:
        return f"the hardest {what}" if i == HARDEST else f"#{i} · {names[labels[i]]}"

    everyone = list(range(len(labels)))
    _keep_valid("tb_anchor", [HARDEST, *everyone])
    p1, p2, p3 = st.columns(3)
    p1.selectbox("Anchor a", [HARDEST, *everyone], key="tb_anchor", format_func=lambda i: describe(i, "anchor"),
                 help="The hardest anchor is the one whose farthest positive is farthest beyond its nearest negative.")
    chosen = ss["tb_anchor"]
    a, hard_p, hard_n = hardest_triplet(points, labels, option, None if chosen == HARDEST else chosen)
    positives = [i for i in everyone if labels[i] == labels[a] and i != a]
    negatives = [i for i in everyone if labels[i] != labels[a]]
    _keep_valid("tb_positive", [HARDEST, *positives])
    _keep_valid("tb_negative", [HARDEST, *negatives])
    p2.selectbox("Positive p", [HARDEST, *positives], key="tb_positive",
                 format_func=lambda i: describe(i, "(farthest) positive"))
    p3.selectbox("Negative n", [HARDEST, *negatives], key="tb_negative",
                 format_func=lambda i: describe(i, "(nearest) negative"))
    p = hard_p if ss["tb_positive"] == HARDEST else int(ss["tb_positive"])
    n = hard_n if ss["tb_negative"] == HARDEST else int(ss["tb_negative"])
    # The draggable view's state: the points and triplet a student left there (per set of blobs).
    view_key = drag_key(data_args)
    moved = moved_triplet((ss.get(view_key) or {}).get("moved"), labels)
    if moved is not None:
        points, a, p, n = moved
    terms = bound_terms(points, labels, a, p, n, option, margin)
    table = set_bounds(*data_args, margin) if moved is None else whole_set_bounds(points, labels, margin)
except FatvizError as exc:
    show_error(exc)
    st.stop()

left, right = st.columns([3, 2], gap="large")
with left:
    if drag_view(view_key, points, labels, names, terms, option, big) and moved is not None:
        st.caption("You moved points: every number on this page is for the points as you left them "
                   "(**Reset the points** in the view brings the blobs back).")
with right:
    st.markdown(f"**Triplet** a = #{a}, p = #{p} ({names[terms.anchor_class]}), "
                f"n = #{n} ({names[terms.negative_class]}); margin m = {terms.margin:g}")
    m1, m2, m3 = st.columns(3)
    m1.metric("Triplet loss", f"{terms.loss:.3f}")
    m2.metric("Bound", f"{terms.bound:.3f}")
    m3.metric("Gap", f"{terms.gap:.3f}", help="bound − loss: how loose the bound is for this triplet")
    st.plotly_chart(triplet_terms_figure(terms, presentation=big), theme=None, key="tb_terms")
    if terms.loss <= terms.bound + 1e-12:
        st.success(f"Holds: {terms.loss:.3f} ≤ {terms.bound:.3f}.", icon=":material/check_circle:")
    else:  # cannot happen for Euclidean distances; shown rather than hidden if it ever did
        st.error(f"Violated: {terms.loss:.3f} > {terms.bound:.3f}.")
st.latex(inequality_latex(terms))
st.markdown("**Why it holds**: two triangle inequalities, one per side.")
st.latex(triangle_latex(terms))

st.header("All triplets at once")
st.markdown(
    f"The mean loss over **all {int(table['triplets'].iloc[0]):,} triplets** of these {len(labels)} points, "
    "exact, against the mean of the bound over the same triplets, for each centroid option. The bound is "
    "the point-to-set term plus the radius term (R of the anchor's class + R of the negative's class): "
    "outliers inflate the radii, and with them the gap.")
w1, w2 = st.columns(2, gap="large")
w1.plotly_chart(whole_set_figure(table, presentation=big), theme=None, key="tb_whole")
w2.markdown("- **exact**: the mean of [d(a,p) − d(a,n) + m]+ over all triplets (O(N³) work)\n"
            "- **bound** = **point-to-set** + **radius term**, computed per anchor against the K centres "
            "(O(N·K) work)\n- **gap** = bound − exact: what the bound gives away")
# Below the chart at the page's width: beside it, its five columns ran off the right edge.
shown = table[["exact", "point_to_set", "radius_term", "bound", "gap", "margin", "triplets"]].T.rename(
    index={"point_to_set": "point-to-set", "radius_term": "radius term"})
st.dataframe(shown.style.format("{:.4f}").format("{:,.0f}", subset=(["triplets"], slice(None))), width="stretch")
