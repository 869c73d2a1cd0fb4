"""The losses side by side, drawn: accuracy against epoch time (spread over seeds) beside each loss's
own cost per step on a log axis, so a class sees both halves of FAT's claim at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from fatviz.figures.style import apply_style, log_ticks, loss_colour

# Marker shapes for the configurations of one loss in a study (its colour stays the loss's).
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "star")


def losses_figure(summary: Sequence[dict[str, Any]], metric: str = "precision_at_1",
                  presentation: bool = False) -> go.Figure:
    """Left: `metric` (mean ± sd over seeds) against seconds per epoch. Right: the loss's own ms per step, log axis."""
    label = {"precision_at_1": "precision@1", "map": "mAP", "cmc_1": "rank-1", "minp": "mINP"}.get(metric, metric)
    data: list[dict] = []
    seen: dict[str, int] = {}  # rows so far per loss: a study's configurations of one loss differ by marker shape
    for row in summary:
        if row.get(metric) is None:
            continue
        colour = loss_colour(row["loss"])
        symbol = SYMBOLS[seen.get(row["loss"], 0) % len(SYMBOLS)]
        seen[row["loss"]] = seen.get(row["loss"], 0) + 1
        data.append({"type": "scatter", "mode": "markers", "name": row["variant"], "legendgroup": row["variant"],
                     "x": [row["epoch_seconds"]], "y": [row[metric]],
                     "error_y": {"type": "data", "array": [row.get(f"{metric}_sd") or 0.0], "visible": True},
                     "error_x": {"type": "data", "array": [row.get("epoch_seconds_sd") or 0.0], "visible": True},
                     "marker": {"size": 16, "color": colour, "symbol": symbol, "line": {"width": 1, "color": "#222222"}},
                     "hovertemplate": f"{row['variant']}<br>{label} %{{y:.3f}}<br>%{{x:.2f}} s per epoch"
                                      f"<br>{row['seeds']} seed(s)<extra></extra>",
                     "xaxis": "x", "yaxis": "y"})
        data.append({"type": "bar", "orientation": "h", "name": row["variant"], "legendgroup": row["variant"],
                     "showlegend": False, "y": [row["variant"]], "x": [1000 * row["step_seconds"]],
                     "marker": {"color": colour}, "text": [row["variant"].split(" (")[0]],  # short: cut off outside a bar
                     "textposition": "auto",
                     "insidetextanchor": "start",
                     "hovertemplate": "%{y}: %{x:.3f} ms per step<extra></extra>", "xaxis": "x2", "yaxis": "y2"})
    steps = [1000 * row["step_seconds"] for row in summary if row.get(metric) is not None and row["step_seconds"] > 0]
    vals, texts = log_ticks(min(steps) / 1.5, max(steps) * 1.5) if steps else ([], [])
    fig = go.Figure({
        "data": data,
        "layout": {
            "xaxis": {"domain": [0.0, 0.5], "title": {"text": "seconds per epoch (whole run)"}},
            "yaxis": {"title": {"text": f"{label}, mean ± sd"}},  # short: a long title is cut off at 470 px
            "xaxis2": {"domain": [0.68, 1.0], "type": "log", "title": {"text": "the loss alone: ms per step (log)"},
                       "tickvals": vals, "ticktext": texts},
            "yaxis2": {"anchor": "x2", "automargin": True, "autorange": "reversed", "showticklabels": False},
            "legend": {"orientation": "h", "y": -0.25, "x": 0.0},
        },
    })
    return apply_style(fig, presentation=presentation, height=560 if presentation else 470)
