"""Curves over epochs, one colour per centroid option: test metrics, loss terms, and the bound vs the exact loss."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fatviz.errors import FatvizError
from fatviz.figures.style import apply_style, option_colour

METRIC_LABELS: dict[str, str] = {
    "precision_at_1": "precision@1", "map": "mAP", "nmi": "NMI", "silhouette": "silhouette",
    "accuracy": "accuracy", "cmc_1": "CMC rank-1", "cmc_5": "CMC rank-5", "cmc_10": "CMC rank-10",
}
LOSS_STYLES: dict[str, tuple[str, dict]] = {
    "total": ("total", {"color": "#111111", "width": 3}),
    "point_to_set": ("point-to-set", {"color": "#0072B2", "width": 2.5}),
    "compactness": ("compactness", {"color": "#D55E00", "width": 2.5}),
    "ce": ("cross-entropy", {"color": "#009E73", "width": 2.5, "dash": "dot"}),
}
BOUND_STYLES: dict[str, tuple[str, dict]] = {
    "exact": ("exact triplet loss", {"color": "#111111", "width": 3}),
    "bound": ("FAT bound", {"color": "#D55E00", "width": 3, "dash": "dash"}),
    "bound_point_to_set": ("bound: point-to-set part", {"color": "#0072B2", "width": 2, "dash": "dot"}),
}
DEFAULT_METRICS: tuple[str, ...] = ("precision_at_1", "map", "nmi")
TABLE_METRICS: tuple[str, ...] = ("precision_at_1", "map", "nmi", "silhouette", "accuracy")


def _value(d: Mapping[str, float], key: str) -> float | None:
    v = d.get(key)
    return None if v is None or not math.isfinite(v) else float(v)


def _check(runs: Mapping[str, Sequence]) -> None:
    if not runs or not any(runs.values()):
        raise FatvizError("No snapshot to plot yet.")


def _finish(fig: go.Figure, presentation: bool, height: int, uirevision: str) -> go.Figure:
    """Shared look: projector fonts, one horizontal legend above the panels, zoom kept across reruns."""
    apply_style(fig, presentation=presentation, height=height)
    fig.update_layout(legend={"orientation": "h", "x": 0.0, "y": 1.18, "xanchor": "left", "yanchor": "bottom"},
                      margin={"t": 100}, uirevision=uirevision)
    return fig


def metric_curves(runs: Mapping[str, Sequence], metrics: Sequence[str] = DEFAULT_METRICS,
                  presentation: bool = False, height: int = 360, colours: Mapping[str, str] | None = None) -> go.Figure:
    """Test metrics over epochs, one panel per metric and one line per option (same colours everywhere);
    `colours` names the colour of runs that are not centroid options (the Lesson's centres runs)."""
    _check(runs)
    colours = colours or {}
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[METRIC_LABELS.get(m, m) for m in metrics],
                        horizontal_spacing=0.07)
    for c, metric in enumerate(metrics, start=1):
        for option, snaps in runs.items():
            fig.add_trace(go.Scatter(
                x=[s.epoch for s in snaps], y=[_value(s.metrics, metric) for s in snaps], mode="lines+markers",
                name=option, legendgroup=option, showlegend=c == 1,
                line={"color": colours.get(option, option_colour(option)), "width": 3},
                marker={"size": 5}), row=1, col=c)
        fig.update_xaxes(title_text="epoch", row=1, col=c)
    return _finish(fig, presentation, height, "metrics")


def _terms_per_option(runs: Mapping[str, Sequence], field: str, styles: Mapping[str, tuple[str, dict]],
                      presentation: bool, height: int) -> go.Figure:
    """One panel per option, one line per term of each snapshot's `field` dict (terms never recorded skipped)."""
    _check(runs)
    fig = make_subplots(rows=1, cols=len(runs), subplot_titles=list(runs), horizontal_spacing=0.05)
    shown: set[str] = set()
    for c, snaps in enumerate(runs.values(), start=1):
        snaps = [s for s in snaps if getattr(s, field)]
        for term, (label, line) in styles.items():
            if not any(term in getattr(s, field) for s in snaps):
                continue
            fig.add_trace(go.Scatter(
                x=[s.epoch for s in snaps], y=[_value(getattr(s, field), term) for s in snaps], mode="lines",
                name=label, legendgroup=term, showlegend=term not in shown, line=line), row=1, col=c)
            shown.add(term)
        fig.update_xaxes(title_text="epoch", row=1, col=c)
    return _finish(fig, presentation, height, field)


def loss_curves(runs: Mapping[str, Sequence], presentation: bool = False, height: int = 340) -> go.Figure:
    """Mean training loss terms over epochs, one panel per option."""
    return _terms_per_option(runs, "losses", LOSS_STYLES, presentation, height)


def bound_curves(runs: Mapping[str, Sequence], presentation: bool = False, height: int = 340) -> go.Figure:
    """The FAT bound against the exact triplet loss (visualisation subset) over epochs, one panel per option."""
    return _terms_per_option(runs, "bound", BOUND_STYLES, presentation, height)


def metrics_table(runs: Mapping[str, Sequence], index: int = -1) -> pd.DataFrame:
    """One row per option at snapshot `index` (default: the last): test metrics, exact loss, bound, seconds."""
    _check(runs)
    rows = {}
    for option, snaps in runs.items():
        if not snaps:
            continue
        s = snaps[max(-len(snaps), min(index, len(snaps) - 1))]
        row: dict[str, float | int | None] = {"epoch": int(s.epoch)}
        row.update({METRIC_LABELS[m]: _value(s.metrics, m) for m in TABLE_METRICS if m in s.metrics})
        row["exact triplet loss"] = _value(s.bound, "exact")
        row["FAT bound"] = _value(s.bound, "bound")
        row["seconds"] = round(float(s.seconds), 2)
        rows[option] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def evaluated_on(results: Mapping[str, Any]) -> tuple[int, int] | None:
    """(test images the per-epoch metrics used, test split size) shared by finished runs, else None."""
    sizes = {tuple(r.evaluated_on) for r in results.values()}
    if len(sizes) != 1:
        return None
    (subset, total), = sizes
    return (subset or total, total) if total > 0 else None


def evaluation_note(subset: int, total: int) -> str:
    """Says what the metrics were computed on."""
    if subset < total:
        return (f"Per-epoch metrics: evaluated on {subset:,} of {total:,} test images (a fixed stratified subset, "
                f"the eval_points setting); the final metrics use all {total:,}.")
    return f"Metrics on all {total:,} test images, every epoch."


def final_metrics_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """One row per option: its final metrics on the whole test split (RunResult.final_metrics)."""
    rows = {option: {METRIC_LABELS[m]: _value(r.final_metrics, m) for m in TABLE_METRICS if m in r.final_metrics}
            for option, r in results.items()}
    return pd.DataFrame.from_dict(rows, orient="index")
