"""The bound's instruments, shared by The bound and the Lesson: the teaching blobs, the exact
loss and bound over all their triplets, and the one triplet the student drags."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from fatviz.bound_view import BoundTerms, teaching_blobs, whole_set_bounds
from fatviz.centroids import CENTROIDS
from fatviz.figures.bound import bound_view_figure
from fatviz.figures.style import class_colour
from pages.ui.look import cached
from pages.ui.web import component


@cached
def blobs(n_classes: int, spread: float, outliers: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The small 2-D teaching blobs (cached per slider setting)."""
    return teaching_blobs(n_classes, spread, outliers, seed)


@cached
def set_bounds(n_classes: int, spread: float, outliers: float, seed: int, margin: float | None) -> pd.DataFrame:
    """Exact loss and bound over all triplets of these blobs, per centroid option."""
    return whole_set_bounds(*blobs(n_classes, spread, outliers, seed), margin)


def drag_key(data_args: tuple) -> str:
    """The draggable view's state key: one per set of blobs, so moved points stay with their blobs."""
    return "tb-drag-" + "-".join(map(str, data_args))


def drag_view(key: str, points: np.ndarray, labels: np.ndarray, names: list[str], terms: BoundTerms, option: str,
              big: bool) -> bool:
    """The triplet of `terms` on raw `points`, in the student's hand (fatviz/web/bound_drag.js), or a
    still figure where that component is not available; returns whether it is the draggable one."""
    mount, why = component("bound_drag")
    if mount is None:
        st.plotly_chart(bound_view_figure(terms, labels, names, presentation=big), theme=None, key=f"{key}-still")
        st.caption(f"A still view: {why}.")
        return False
    spec = CENTROIDS.get(option)
    space = "unit circle" if spec.normalised_anchors else "raw features"
    mount(key=key, default={"moved": None}, on_moved_change=lambda: None, data={
        "points": np.asarray(points).tolist(), "labels": labels.tolist(), "names": names,
        "colours": [class_colour(k) for k in range(len(names))], "members": spec.normalise_members,
        "centre": spec.normalise_centre, "margin": terms.margin, "a": terms.anchor, "p": terms.positive,
        "n": terms.negative, "title": f"One triplet, option {option} ({space})", "presentation": big})
    return True
