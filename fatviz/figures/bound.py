"""The triplet bound, drawn: one triplet in 2-D with centres and radii, and the whole set per option."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from fatviz.bound_view import BoundTerms
from fatviz.centroids import is_normalized
from fatviz.figures.style import apply_style, class_colour, option_colour

# The two sides of the bound keep these colours in every bound figure.
TERM_COLOURS: dict[str, str] = {
    "exact": "#555555", "loss": "#555555", "point_to_set": "#0072B2", "radius_a": "#56B4E9",
    "radius_n": "#9ECAE1", "radius_term": "#56B4E9",
}
LINE_P = "#000000"  # d(a, p)
LINE_N = "#C0392B"  # d(a, n)


def _circle(centre: np.ndarray, radius: float, steps: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """x and y of a circle, closed."""
    t = np.linspace(0.0, 2.0 * np.pi, steps + 1)
    return centre[0] + radius * np.cos(t), centre[1] + radius * np.sin(t)


def _segment(fig: go.Figure, u: np.ndarray, v: np.ndarray, name: str, colour: str, width: float,
             dash: str = "solid") -> None:
    fig.add_trace(go.Scatter(x=[u[0], v[0]], y=[u[1], v[1]], mode="lines", name=name, hoverinfo="name",
                             line={"color": colour, "width": width, "dash": dash}))


def bound_view_figure(t: BoundTerms, labels: np.ndarray, class_names: list[str] | None = None,
                      presentation: bool = False) -> go.Figure:
    """One triplet in the option's 2-D anchor space: points, both centres and radii, the four distances.

    The legend names carry the numbers (d(a,p), d(a,n), d(a,c_a), d(a,c_n), R_a, R_n),
    so the figure reads on its own when projected.
    """
    labels = np.asarray(labels)
    x = t.points
    names = class_names or [f"class {k}" for k in range(len(t.centres))]
    fig = go.Figure()
    if is_normalized(t.option):
        cx, cy = _circle(np.zeros(2), 1.0)
        fig.add_trace(go.Scatter(x=cx, y=cy, mode="lines", name="unit circle", hoverinfo="skip",
                                 showlegend=False, line={"color": "#DDDDDD", "width": 1}))
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        fig.add_trace(go.Scatter(
            x=x[idx, 0], y=x[idx, 1], mode="markers", name=names[int(k)], customdata=idx,
            hovertemplate="point %{customdata}<extra>" + names[int(k)] + "</extra>",
            marker={"color": class_colour(int(k)), "size": 9, "opacity": 0.45}))
    a, p, n = x[t.anchor], x[t.positive], x[t.negative]
    ca, cn = t.centres[t.anchor_class], t.centres[t.negative_class]
    for centre, radius, cls, label in ((ca, t.radius_a, t.anchor_class, "a"), (cn, t.radius_n, t.negative_class, "n")):
        cx, cy = _circle(centre, radius)
        fig.add_trace(go.Scatter(x=cx, y=cy, mode="lines", name=f"R_{label} = {radius:.3f}", hoverinfo="name",
                                 line={"color": class_colour(cls), "width": 2, "dash": "dash"}))
    _segment(fig, a, ca, f"d(a,c_a) = {t.d_a_ca:.3f}", LINE_P, 2, "dot")
    _segment(fig, a, cn, f"d(a,c_n) = {t.d_a_cn:.3f}", LINE_N, 2, "dot")
    _segment(fig, a, p, f"d(a,p) = {t.d_ap:.3f}", LINE_P, 4)
    _segment(fig, a, n, f"d(a,n) = {t.d_an:.3f}", LINE_N, 4)
    fig.add_trace(go.Scatter(
        x=[ca[0], cn[0]], y=[ca[1], cn[1]], mode="markers+text", name="centres c_a, c_n",
        text=["c<sub>a</sub>", "c<sub>n</sub>"], textposition="bottom center",
        marker={"symbol": "x", "size": 18, "color": [class_colour(t.anchor_class), class_colour(t.negative_class)],
                "line": {"color": "#000000", "width": 1.5}}))
    # n first, as a wide ring, then p and a filled on top: the hardest triplet's anchor often
    # sits right on its negative, and both must stay visible.
    ya, yn = class_colour(t.anchor_class), class_colour(t.negative_class)
    fig.add_trace(go.Scatter(
        x=[n[0], p[0], a[0]], y=[n[1], p[1], a[1]], mode="markers+text", name="anchor, positive, negative",
        text=["n", "p", "a"], textposition=["bottom right", "top center", "top left"], textfont={"size": 22},
        customdata=[t.negative, t.positive, t.anchor], hovertemplate="point %{customdata}<extra></extra>",
        marker={"size": [30, 18, 18], "symbol": ["circle-open", "circle", "circle"], "color": [yn, ya, ya],
                "line": {"color": [yn, "#000000", "#000000"], "width": [4, 2, 2]}}))
    space = "unit circle" if is_normalized(t.option) else "raw features"
    apply_style(fig, title=f"One triplet, option {t.option} ({space})", presentation=presentation, height=760)
    axis = "u" if is_normalized(t.option) else "x"
    # One square box around the points and both radius circles; equal units on both axes,
    # and the plot shrinks to fit (constrain="domain") rather than stretching one range.
    lo = np.minimum(x.min(0), np.minimum(ca - t.radius_a, cn - t.radius_n))
    hi = np.maximum(x.max(0), np.maximum(ca + t.radius_a, cn + t.radius_n))
    mid, half = (lo + hi) / 2, 0.54 * float((hi - lo).max())
    fig.update_xaxes(title=f"{axis}₁", zeroline=False, range=[mid[0] - half, mid[0] + half], constrain="domain")
    fig.update_yaxes(title=f"{axis}₂", zeroline=False, range=[mid[1] - half, mid[1] + half], constrain="domain",
                     scaleanchor="x", scaleratio=1)
    fig.update_layout(uirevision=t.option, legend={"orientation": "h", "x": 0, "y": -0.12, "yanchor": "top"})
    return fig


def triplet_terms_figure(t: BoundTerms, presentation: bool = False) -> go.Figure:
    """The triplet's loss beside its bound, the bound stacked as point-to-set + R_a + R_n."""
    fig = go.Figure()
    fig.add_trace(go.Bar(y=["loss"], x=[t.loss], orientation="h", name="loss",
                         marker_color=TERM_COLOURS["loss"], text=[f"{t.loss:.3f}"], textposition="auto"))
    for key, label, value in (("point_to_set", "point-to-set", t.point_to_set),
                              ("radius_a", "R_a", t.radius_a), ("radius_n", "R_n", t.radius_n)):
        fig.add_trace(go.Bar(y=["bound"], x=[value], orientation="h", name=label, marker_color=TERM_COLOURS[key],
                             text=[f"{value:.3f}"], textposition="inside", insidetextanchor="middle"))
    apply_style(fig, presentation=presentation, height=240)
    fig.update_layout(barmode="stack", legend={"orientation": "h", "y": -0.3, "x": 0, "traceorder": "normal"},
                      margin={"t": 10, "b": 10}, yaxis={"categoryorder": "array", "categoryarray": ["bound", "loss"]})
    return fig


def whole_set_figure(table: pd.DataFrame, presentation: bool = False) -> go.Figure:
    """Per centroid option: the exact all-triplet loss beside the bound (point-to-set + radius term)."""
    options = list(table.index)
    exact, p2s, rad, bound = (table[c].to_numpy(float) for c in ("exact", "point_to_set", "radius_term", "bound"))
    fig = go.Figure()
    fig.add_trace(go.Bar(x=options, y=exact, name="exact triplet loss", offsetgroup="exact",
                         marker_color=TERM_COLOURS["exact"], text=[f"{v:.3f}" for v in exact],
                         textposition="outside"))
    fig.add_trace(go.Bar(x=options, y=p2s, name="bound: point-to-set", offsetgroup="bound",
                         marker_color=TERM_COLOURS["point_to_set"]))
    fig.add_trace(go.Bar(x=options, y=rad, base=p2s, name="bound: radius term",
                         offsetgroup="bound", marker_color=TERM_COLOURS["radius_term"],
                         text=[f"{v:.3f}" for v in bound], textposition="outside"))
    apply_style(fig, title="All triplets: exact loss vs the FAT bound", presentation=presentation, height=440)
    # The legend sits at the foot of the whole figure, below however much room the option names take.
    fig.update_layout(barmode="group", yaxis_title="mean over all triplets",
                      legend={"orientation": "h", "yref": "container", "y": 0.0, "yanchor": "bottom", "x": 0})
    fig.update_layout(margin={"b": 130 if presentation else 110})
    # The option names in their colours, as in the centroid explorer, level and broken at a hyphen after
    # the first word so four of them fit side by side at projector sizes.
    fig.update_xaxes(tickvals=options, tickangle=0, automargin=True,
                     ticktext=[f"<span style='color:{option_colour(o)}'><b>{o.replace('-', '-<br>', 1)}</b></span>"
                               for o in options])
    return fig
