"""The loss benchmark, drawn: time per step against batch size on log-log axes, with fitted slopes."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from fatviz.figures.style import apply_style, log_ticks, loss_colour

REFERENCE_SLOPES: tuple[int, ...] = (1, 2, 3)
_SUPERSCRIPT = {1: "", 2: "²", 3: "³"}


def method_label(method: str, slope: float | None) -> str:
    """A legend entry: the method and its fitted log-log slope."""
    return f"{method} (slope {slope:.2f})" if slope is not None else f"{method} (slope –)"


def speed_figure(result: dict, presentation: bool = False) -> go.Figure:
    """Milliseconds per forward+backward step against batch size N, log-log, one line per method.

    Faint reference lines of slope 1, 2 and 3 start at the fastest first measurement, so
    a class can read each method's growth (N, N², N³) off the chart.
    """
    sizes = list(result["config"]["sizes"])
    fig = go.Figure()
    measured = [t for m in result["methods"] for t in result["seconds"][m] if t is not None]
    if measured:
        first = [result["seconds"][m][0] for m in result["methods"] if result["seconds"][m][0] is not None]
        y0 = 1e3 * min(first) if first else 1e3 * min(measured)
        for k in REFERENCE_SLOPES:
            ys = [y0 * (s / sizes[0]) ** k for s in sizes]
            fig.add_trace(go.Scatter(
                x=sizes, y=ys, mode="lines+text", name=f"∝ N{_SUPERSCRIPT[k]}", showlegend=False,
                text=[""] * (len(sizes) - 1) + [f"∝ N{_SUPERSCRIPT[k]}"], textposition="middle right",
                textfont={"color": "#999999"}, hoverinfo="skip",
                line={"color": "#BBBBBB", "width": 1.5, "dash": "dot"}))
    for m in result["methods"]:
        pts = [(s, 1e3 * t) for s, t in zip(sizes, result["seconds"][m], strict=False) if t is not None]
        if not pts:
            continue
        fig.add_trace(go.Scatter(
            x=[s for s, _ in pts], y=[t for _, t in pts], mode="lines+markers",
            name=method_label(m, result["slopes"].get(m)),
            line={"color": loss_colour(m), "width": 5 if m == "fat" else 3},
            marker={"size": 11 if m == "fat" else 8},
            hovertemplate="N=%{x}: %{y:.3f} ms<extra>" + m + "</extra>"))
    apply_style(fig, title="Time per training step (forward + backward)", presentation=presentation, height=560)
    fig.update_xaxes(type="log", title="samples per batch N", tickvals=sizes, ticktext=[str(s) for s in sizes])
    fig.update_yaxes(type="log", title="milliseconds per step")
    if measured:
        lo, hi = 1e3 * min(measured), 1e3 * max(measured)
        # Keep the axes on the data: the reference lines may run off the top.
        bottom, top = math.log10(lo) - 0.2, math.log10(hi) + 0.2
        vals, texts = log_ticks(10 ** bottom, 10 ** top)
        fig.update_yaxes(range=[bottom, top], tickvals=vals, ticktext=texts)
        fig.update_xaxes(range=[math.log10(sizes[0]) - 0.05, math.log10(sizes[-1]) + 0.25])
    fig.update_layout(legend={"x": 1.02, "y": 1, "xanchor": "left"})
    return fig


def time_table(result: dict) -> pd.DataFrame:
    """Milliseconds per step: one row per batch size N, one column per method (NaN: skipped)."""
    sizes = result["config"]["sizes"]
    data = {m: [None if t is None else 1e3 * t for t in result["seconds"][m]] for m in result["methods"]}
    return pd.DataFrame(data, index=pd.Index(sizes, name="N"), dtype=float)


def speedup_table(result: dict) -> pd.DataFrame:
    """How many times faster FAT is than each other method (its time / FAT's time), per batch size N."""
    sizes = result["config"]["sizes"]
    return pd.DataFrame(result["speedups"], index=pd.Index(sizes, name="N"), dtype=float)


def slope_table(result: dict) -> pd.DataFrame:
    """Each method's fitted log-log slope (time grows as N to this power)."""
    return pd.DataFrame({"slope": [result["slopes"].get(m) for m in result["methods"]]},
                        index=pd.Index(result["methods"], name="method"), dtype=float)
