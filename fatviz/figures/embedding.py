"""The animated embedding scatter: one panel per centroid option, one frame per epoch.

All panels live in ONE plotly figure (subplots + frames + Play/Pause + an epoch slider),
so they move in step and the figure exports as a standalone HTML file. Points keep one
colour per class in every panel; class centres are drawn as large diamonds. The panels come
projected (fatviz.projection.panel_frames): this module only draws them.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from fatviz.errors import FatvizError
from fatviz.figures.style import FLAG_COLOURS, apply_style, class_colour, option_colour, option_note
from fatviz.projection import PanelFrames, result_panels

COLOUR_BY: tuple[str, ...] = ("true", "given", "flipped")
COLOUR_BY_LABELS: dict[str, str] = {
    "true": "true label", "given": "given (noisy) label", "flipped": "flipped by label noise",
}
KEPT, FLIPPED = "label kept", "flipped by noise"
_GROUP_COLOURS = {KEPT: FLAG_COLOURS["kept"], FLIPPED: FLAG_COLOURS["correctly flagged"]}
SLIDER_LABEL_EVERY = 5
FRAME_MS = 450  # one epoch on screen during Play
TRANSITION_MS = 300  # points glide between epochs


@dataclass(frozen=True, eq=False)
class PointLabels:
    """What is known about each point of the visualisation subset (same order as the embeddings)."""

    index: np.ndarray  # (V,) index into the training split
    true: np.ndarray  # (V,) true class
    given: np.ndarray  # (V,) the label training saw
    flipped: np.ndarray  # (V,) bool: the label was changed by synthetic noise
    class_names: list[str]

    @classmethod
    def from_result(cls, result) -> PointLabels:
        """Labels of a RunResult's visualisation subset."""
        return cls(np.asarray(result.vis_idx), np.asarray(result.vis_true), np.asarray(result.vis_given),
                   np.asarray(result.vis_flipped, dtype=bool), list(result.class_names))

    @classmethod
    def from_data(cls, data) -> PointLabels:
        """Labels of a PreparedData's visualisation subset (available before any run finishes)."""
        vis = np.asarray(data.vis_idx)
        return cls(vis, data.dataset.y_train[vis], data.given_labels[vis], data.noisy.flipped[vis].astype(bool),
                   list(data.dataset.class_names))


def _caption(metrics: Mapping[str, float]) -> str:
    """Short per-epoch caption: the test precision@1."""
    p1 = metrics.get("precision_at_1")
    return "" if p1 is None or not math.isfinite(p1) else f"P@1 {p1:.2f}"


def point_groups(labels: PointLabels, colour_by: str) -> list[tuple[str, str, np.ndarray]]:
    """(legend name, colour, mask of points) for each colour group of the chosen colouring."""
    if colour_by not in COLOUR_BY:
        raise FatvizError(f"Cannot colour points by {colour_by!r}: choose one of {', '.join(COLOUR_BY)}.")
    if colour_by == "flipped":
        return [(KEPT, _GROUP_COLOURS[KEPT], ~labels.flipped), (FLIPPED, _GROUP_COLOURS[FLIPPED], labels.flipped)]
    values = labels.true if colour_by == "true" else labels.given
    return [(name, class_colour(k), values == k) for k, name in enumerate(labels.class_names)]


def _grid(n: int, columns: int | None = None) -> tuple[int, int]:
    """Rows and columns for n panels: `columns` per row, else side by side up to two, then two per row."""
    cols = min(n, columns or 2)
    return math.ceil(n / cols), cols


ZOOMS: tuple[str, ...] = ("follow", "fixed")


def _square(points: np.ndarray, circle: bool) -> tuple[list[float], list[float]]:
    """A square x and y range around the finite points (and the unit circle when drawn), with a margin."""
    pts = points[np.isfinite(points).all(1)]
    if circle:
        pts = np.concatenate([pts, [[-1.0, -1.0], [1.0, 1.0]]])
    if not len(pts):
        return [-1.0, 1.0], [-1.0, 1.0]
    lo, hi = pts.min(0), pts.max(0)
    mid, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 1e-6) * 1.08
    return [float(mid[0] - half), float(mid[0] + half)], [float(mid[1] - half), float(mid[1] + half)]


def _axis(p: int) -> str:
    """Panel p's axis suffix in plotly's names: "" for the first (xaxis, x), then "2", "3", ..."""
    return "" if p == 0 else str(p + 1)


def _ranges(panels: Sequence[PanelFrames], f: int, zoom: str,
            extra: Sequence[np.ndarray] | None = None) -> dict[str, dict]:
    """Axis ranges of every panel at frame f: this frame's points ("follow") or all frames' ("fixed"),
    and the panel's `extra` points (where its centres were before a stepped batch)."""
    out: dict[str, dict] = {}
    for p, panel in enumerate(panels):
        frames = range(len(panel.points)) if zoom == "fixed" else (f,)
        pts = np.concatenate([a for g in frames for a in (panel.points[g], panel.centres[g])]
                             + ([] if extra is None else [extra[p]]))
        xr, yr = _square(pts, panel.unit_circle)
        out[f"xaxis{_axis(p)}"] = {"range": xr}
        out[f"yaxis{_axis(p)}"] = {"range": yr}
    return out


def _typed(values: np.ndarray, dtype: str) -> dict[str, str]:
    """A plotly typed array (base64 little-endian bytes): what plotly itself sends for a numpy array.

    Written out here because Streamlit converts the figure with `to_dict()` on every page run,
    and plotly's per-array conversion of the animation's ~500 numpy arrays cost 170 ms a run.
    """
    return {"dtype": dtype, "bdata": base64.b64encode(np.ascontiguousarray(values, dtype=f"<{dtype}").tobytes()).decode()}


def _xy(a: np.ndarray) -> dict[str, dict]:
    """x and y of (n, 2) points, rounded: three decimals are plenty on screen and keep the figure light."""
    a = np.round(np.asarray(a, dtype=np.float32), 3)
    return {"x": _typed(a[:, 0], "f4"), "y": _typed(a[:, 1], "f4")}


def _moving(panels: Sequence[PanelFrames], f: int, highlight: int | None = None) -> list[dict]:
    """The traces that move, at frame f: points then centres, panel after panel, then the rings."""
    out: list[dict] = []
    for panel in panels:
        out += [{"type": "scatter", **_xy(panel.points[f])}, {"type": "scatter", **_xy(panel.centres[f])}]
    if highlight is not None:
        out += [{"type": "scatter", **_xy(panel.points[f][[highlight]])} for panel in panels]
    return out


LEGEND_BELOW = 110  # px: a row view's legend under its panels (its title and up to three lines of classes)


def _titles(panels: Sequence[PanelFrames], f: int, size: int, row_view: bool = False) -> list[dict]:
    """Panel titles as annotations above each panel, on two lines so that neighbours never run
    into each other: a row of narrow panels shows the option's name over its P@1; a grid shows
    the name and P@1 over what the option's centre is (a short note)."""
    out = []
    for i, panel in enumerate(panels):
        axis = _axis(i)
        text = f"<b><span style='color:{option_colour(panel.title)}'>{panel.title}</span></b>"
        caption = _caption(panel.metrics[f])
        if caption:
            text += f"<br>{caption}" if row_view else f"  {caption}"
        note = "" if row_view else option_note(panel.title)
        if note:
            text += f"<br><span style='font-size:{size - 4}px;color:#555555'>{note}</span>"
        out.append({"text": text, "xref": f"x{axis} domain", "yref": f"y{axis} domain", "x": 0.5, "y": 1.0,
                    "xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": size}})
    return out


ARROW_SHARE = 0.15  # a stepped centre's typical arrow is drawn at least this share of its panel's width: longer
ARROW_COLOUR = "#111111"  # than a centre's diamond in a row of four panels at 1280 px, and dark on the coloured diamonds


def arrow_scale(before: np.ndarray, after: np.ndarray, span: float) -> float:
    """How many times their length to draw the moves from `before` to `after` ((K, 2) each) in a
    panel `span` wide: 1 when the median move shows as it is, else the largest of 2, 5, 10, 20, ...
    that keeps the median arrow within ARROW_SHARE of the panel (one batch late in training moves
    a centre by less than its marker's width)."""
    lengths = np.linalg.norm(np.asarray(after, dtype=float) - np.asarray(before, dtype=float), axis=1)
    lengths = lengths[np.isfinite(lengths)]
    if not len(lengths) or float(np.median(lengths)) <= 0 or span <= 0:
        return 1.0
    wanted = ARROW_SHARE * span / float(np.median(lengths))
    scale = 1.0
    for factor in (2, 5, 10, 20, 50, 100, 200, 500, 1000):
        if factor <= wanted:
            scale = float(factor)
    return scale


def _arrows(panels: Sequence[PanelFrames], f: int, moved_from: Sequence[np.ndarray],
            scales: Sequence[float]) -> list[dict]:
    """An arrow per class centre from its previous place along its move to frame f, `scales[p]` times
    the move's length in panel p (drawn where both places are known)."""
    out = []
    for p, (panel, before, scale) in enumerate(zip(panels, moved_from, scales, strict=True)):
        x, y = f"x{_axis(p)}", f"y{_axis(p)}"
        for new, old in zip(panel.centres[f], before, strict=True):
            if np.isfinite(new).all() and np.isfinite(old).all():
                head = old + scale * (np.asarray(new, dtype=float) - old)
                out.append({"x": float(head[0]), "y": float(head[1]), "ax": float(old[0]), "ay": float(old[1]),
                            "xref": x, "yref": y, "axref": x, "ayref": y, "text": "", "showarrow": True,
                            "arrowhead": 2, "arrowsize": 1.2, "arrowwidth": 2, "arrowcolor": ARROW_COLOUR})
    return out


def _title_size(presentation: bool) -> int:
    return 22 if presentation else 16


def moving_traces(n_panels: int, highlight: bool) -> list[int]:
    """Indices of the traces an epoch moves: each panel's points and centres, then the rings
    (after the legend key's traces, which stay put)."""
    return list(range(2 * n_panels)) + (list(range(-n_panels, 0)) if highlight else [])


def embedding_frames(panels: Sequence[PanelFrames], first: int = 0, *, zoom: str = "follow",
                     presentation: bool = False, columns: int | None = None, title: str = "",
                     highlight: int | None = None, n_traces: int | None = None) -> list[dict]:
    """The animation's frames from epoch index `first` on, as plotly frames: each epoch's moving
    traces (see `moving_traces`; negative indices count from the end, or give `n_traces`, the
    figure's trace count, to make them plain), panel titles with P@1, axis ranges and title.

    Projections are causal, so the frames of a run still training are final: a live chart
    appends them as they come."""
    rows, cols = _grid(len(panels), columns)
    row_view = rows == 1 and cols >= 3
    size = _title_size(presentation)
    traces = moving_traces(len(panels), highlight is not None)
    if n_traces is not None:
        traces = [t % n_traces for t in traces]
    epochs = panels[0].epochs
    n_frames = min(len(p.points) for p in panels)
    return [{"name": str(f), "data": _moving(panels, f, highlight), "traces": traces,
             "layout": {"annotations": _titles(panels, f, size, row_view), **_ranges(panels, f, zoom),
                        "title": {"text": title or f"Epoch {epochs[f]}"}}}
            for f in range(first, n_frames)]


# A panel is a plain box: projected axes have no units to read, and without grid lines a new
# epoch only moves the points (the live chart moves them without a full redraw).
_FRAME = {"showticklabels": False, "zeroline": False, "showgrid": False, "showline": True, "mirror": True,
          "linecolor": "#c8c8c8", "ticks": ""}


def _subplot_axes(n: int, rows: int, cols: int, hspace: float = 0.05, vspace: float = 0.13) -> dict[str, dict]:
    """Square, tick-free panel axes for n panels on a rows x cols grid, filled row by row from the
    top: the domains and anchors plotly's make_subplots lays out, written as plain layout keys
    (building the figure from dicts and validating it once is ten times faster than make_subplots
    and add_trace)."""
    width = (1.0 - hspace * (cols - 1)) / cols
    height = (1.0 - vspace * (rows - 1)) / rows
    out: dict[str, dict] = {}
    for p in range(n):
        row, col = divmod(p, cols)
        axis = _axis(p)
        x0, y1 = col * (width + hspace), 1.0 - row * (height + vspace)
        out[f"xaxis{axis}"] = {"anchor": f"y{axis}", "domain": [round(x0, 6), round(x0 + width, 6)], **_FRAME}
        out[f"yaxis{axis}"] = {"anchor": f"x{axis}", "domain": [round(max(0.0, y1 - height), 6), round(y1, 6)],
                               **_FRAME, "scaleanchor": f"x{axis}", "scaleratio": 1, "constrain": "domain"}
    return out


def _axis_refs(p: int) -> dict[str, str]:
    return {"xaxis": f"x{_axis(p)}", "yaxis": f"y{_axis(p)}"}


def embedding_figure(panels: Sequence[PanelFrames], labels: PointLabels, colour_by: str = "true",
                     frame: int | None = None, animate: bool = True, presentation: bool = False,
                     height: int | None = None, title: str = "", zoom: str = "follow",
                     highlight: int | None = None, columns: int | None = None, hover: bool = True,
                     moved_from: Sequence[np.ndarray] | None = None) -> go.Figure:
    """The synchronised panels as one figure: frames per epoch, Play/Pause/Reset and an epoch slider.

    `frame` picks the epoch shown first (default: the last). With `animate=False` the figure
    holds only that epoch (a light live view while training still runs). `zoom="follow"`
    frames each epoch's points (a raw `mean` embedding grows tenfold in the first epochs);
    "fixed" keeps one range for all epochs. `highlight` rings one point (a position in the
    visualisation subset) in every panel. `columns` sets panels per row (default: a 2x2 grid;
    4 puts them in one row under one horizontal legend). `hover=False` leaves out the
    per-point hover texts (the live view, redrawn every few seconds, is not for pointing at).
    `moved_from` (per panel, (K, 2) in the panel's axes; NaN rows: no centre) draws each class
    centre's previous place as a hollow diamond with an arrow to where it is at `frame` (one
    stepped batch, fatviz.stepper); a panel whose moves are too short to see draws its arrows
    along the moves, a few times longer, and says so under its title (see `arrow_scale`).
    Traces: per panel its points (customdata = position in the visualisation subset) and its
    centres; then the previous places, when drawn; then the legend key of colour groups; then the rings.
    """
    if not panels:
        raise FatvizError("Nothing to draw: no run has a snapshot yet.")
    n_frames = min(len(p.points) for p in panels)
    frame = n_frames - 1 if frame is None else max(0, min(int(frame), n_frames - 1))
    if zoom not in ZOOMS:
        raise FatvizError(f"Unknown zoom {zoom!r}: choose follow or fixed.")
    if moved_from is not None and len(moved_from) != len(panels):
        raise FatvizError(f"{len(moved_from)} sets of previous centres for {len(panels)} panels.")
    if highlight is not None and not 0 <= highlight < len(labels.true):
        raise FatvizError(f"Point {highlight} does not exist: the view holds {len(labels.true)} points.")
    groups = point_groups(labels, colour_by)
    colours = np.empty(len(labels.true), dtype=object)
    for _, colour, mask in groups:
        colours[mask] = colour
    colours = colours.tolist()
    names = labels.class_names
    points_hover: dict = {"hoverinfo": "skip"}
    if hover:
        points_hover = {
            "customdata": _typed(np.arange(len(labels.true)), "i4"), "hoverinfo": "text",
            "hovertext": [f"sample {labels.index[i]}<br>true {names[labels.true[i]]} · given {names[labels.given[i]]}"
                          + (" (flipped)" if labels.flipped[i] else "") for i in range(len(labels.true))]}
    rows, cols = _grid(len(panels), columns)
    row_view = rows == 1 and cols >= 3  # narrow panels: short titles, legend on top
    size = _title_size(presentation)
    marker = 9 if presentation else 7
    epochs = panels[0].epochs
    start = _moving(panels, frame, highlight)
    data: list[dict] = []
    layout: dict = _subplot_axes(len(panels), rows, cols)
    shapes = []
    for p, panel in enumerate(panels):
        k = len(panel.centres[frame])
        refs = _axis_refs(p)
        data.append({**start[2 * p], **refs, "mode": "markers", "name": "points", "showlegend": False,
                     "marker": {"color": colours, "size": marker, "opacity": 0.8, "line": {"width": 0}},
                     **points_hover})
        data.append({**start[2 * p + 1], **refs, "mode": "markers", "name": "class centre",
                     "legendgroup": "centres", "showlegend": p == 0,
                     "marker": {"symbol": "diamond", "size": marker * 2.7, "opacity": 0.9,
                                "color": [class_colour(c) for c in range(k)],
                                "line": {"width": 2, "color": "#111111"}},
                     "hovertext": [f"centre of {names[c] if c < len(names) else c}" for c in range(k)],
                     "hoverinfo": "text" if hover else "skip"})
        layout[f"xaxis{_axis(p)}"]["autorange"] = False
        layout[f"yaxis{_axis(p)}"]["autorange"] = False
        if panel.unit_circle:
            shapes.append({"type": "circle", "x0": -1, "y0": -1, "x1": 1, "y1": 1, "layer": "below",
                           "line": {"color": "#999999", "dash": "dot"}, "xref": refs["xaxis"],
                           "yref": refs["yaxis"]})
    for p, before in enumerate(() if moved_from is None else moved_from):
        data.append({"type": "scatter", **_xy(before), **_axis_refs(p), "mode": "markers", "name": "previous place",
                     "legendgroup": "previous", "showlegend": p == 0, "hoverinfo": "skip",
                     "marker": {"symbol": "diamond-open", "size": marker * 2.2, "opacity": 0.9,
                                "color": [class_colour(c) for c in range(len(before))], "line": {"width": 2}}})
    for name, colour, mask in groups:  # legend key: one entry per colour group, with its count
        data.append({"type": "scatter", "x": [None], "y": [None], "mode": "markers",
                     "name": f"{name} ({int(mask.sum())})", "marker": {"color": colour, "size": marker + 3},
                     "hoverinfo": "skip"})
    if highlight is not None:
        for p in range(len(panels)):
            data.append({**start[2 * len(panels) + p], **_axis_refs(p), "mode": "markers",
                         "name": f"sample {labels.index[highlight]}", "legendgroup": "highlight",
                         "showlegend": p == 0, "hoverinfo": "skip",
                         "marker": {"symbol": "circle-open", "size": marker * 3.2, "color": "#111111",
                                    "line": {"width": 3}}})
    for key, value in _ranges(panels, frame, zoom, moved_from).items():
        layout[key].update(value)
    titles, arrows = _titles(panels, frame, size, row_view), []
    if moved_from is not None:
        scales = [arrow_scale(before, panel.centres[frame], float(np.diff(layout[f"xaxis{_axis(p)}"]["range"])[0]))
                  for p, (panel, before) in enumerate(zip(panels, moved_from, strict=True))]
        arrows = _arrows(panels, frame, moved_from, scales)
        for panel_title, scale in zip(titles, scales, strict=True):
            if scale > 1:
                panel_title["text"] += f"<br><span style='font-size:{size - 2}px;color:#555555'>arrows ×{scale:g}</span>"
    controls = animate and n_frames > 1
    panel_height = (400 if presentation else 290) if row_view else 500  # row: near-square panels
    legend = {"title": {"text": COLOUR_BY_LABELS[colour_by]}, "itemsizing": "constant", "itemclick": False,
              "itemdoubleclick": False}
    fig_height = height or (panel_height * rows + 100 + (110 if controls else 0) + (LEGEND_BELOW + size if row_view else 0))
    if row_view:  # under the panels, from the left: a long legend wraps there without covering a title
        legend.update(orientation="h", x=0.0, xanchor="left", y=0.0, yanchor="bottom", yref="container")
        # Title on its own line and items in fifths of the width: left to its own wrapping, plotly
        # ran the last item of a line past the figure's edge.
        legend["title"]["side"] = "top left"
        legend.update(entrywidth=0.2, entrywidthmode="fraction")
    else:
        legend.update(x=1.01, xanchor="left", y=1.0, yanchor="top")
    layout.update(
        annotations=titles + arrows,
        shapes=shapes,
        uirevision="embedding",  # keep the zoom when the page reruns
        title={"text": title or f"Epoch {epochs[frame]}", "x": 0.01, "xanchor": "left", "y": 0.99,
               "yanchor": "top", "font": {"size": size + 4}},
        hovermode="closest", dragmode="pan",
    )
    spec: dict = {"data": data, "layout": layout}
    if controls:
        spec["frames"] = embedding_frames(panels, 0, zoom=zoom, presentation=presentation, columns=columns,
                                          title=title, highlight=highlight, n_traces=len(data))
        play = {"frame": {"duration": FRAME_MS, "redraw": True}, "fromcurrent": True, "mode": "immediate",
                "transition": {"duration": TRANSITION_MS, "easing": "cubic-in-out"}}
        jump = {"frame": {"duration": 0, "redraw": True}, "transition": {"duration": 0}, "mode": "immediate"}
        layout["updatemenus"] = [{
            "type": "buttons", "direction": "left", "showactive": False, "x": 0.0, "y": 0.0,
            "xanchor": "left", "yanchor": "top", "pad": {"t": 40, "r": 10}, "font": {"size": size - 2},
            "buttons": [
                {"label": "▶ Play", "method": "animate", "args": [None, play]},
                {"label": "❚❚ Pause", "method": "animate", "args": [[None], jump]},
                {"label": "↺ Reset", "method": "animate", "args": [["0"], jump]},
            ],
        }]
        # One step per epoch, labelled every SLIDER_LABEL_EVERY epochs once there are many: 31
        # labels crowd a projector, and each costs the browser a text measurement. The title
        # ("Epoch n") names the epoch shown, so the slider needs no current-value label.
        every = 1 if n_frames <= 11 else SLIDER_LABEL_EVERY
        layout["sliders"] = [{
            "active": frame, "x": 0.3, "len": 0.7, "y": 0.0, "yanchor": "top", "pad": {"t": 32},
            "currentvalue": {"visible": False}, "font": {"size": max(12, size - 4)},
            "steps": [{"label": str(e) if f % every == 0 or f == n_frames - 1 else "", "value": str(f),
                       "method": "animate", "args": [[str(f)], jump]}
                      for f, e in enumerate(epochs[:n_frames])],
        }]
    fig = go.Figure(spec)
    apply_style(fig, presentation=presentation, height=fig_height)
    fig.update_layout(legend=legend, margin={"l": 10, "r": 10, "t": 80 + size if row_view else 100,
                                             "b": (100 if controls else 10) + (LEGEND_BELOW if row_view else 0)})
    return fig


def live_chart_data(panels: Sequence[PanelFrames], labels: PointLabels, first: int = 0, *, colour_by: str = "true",
                    zoom: str = "follow", presentation: bool = False, columns: int | None = None,
                    highlight: int | None = None) -> dict:
    """What the browser's live chart (fatviz/web/live_chart.js) needs beyond the epochs it holds.

    `first` is how many epochs it holds already: 0 sends the figure itself too (its traces,
    colours and layout, drawn at the last epoch, without plotly's own animation controls: the
    chart has its own), then only the frames from `first` on, with their epoch numbers. With
    `zoom="fixed"`, `ranges` is one range per axis over every epoch so far, for all frames.
    """
    n_frames = min(len(p.points) for p in panels) if panels else 0
    first = max(0, min(int(first), n_frames))
    frames = embedding_frames(panels, first, zoom=zoom, presentation=presentation, columns=columns,
                              highlight=highlight)
    out: dict = {"first": first, "frames": frames, "epochs": [int(e) for e in panels[0].epochs[first:n_frames]],
                 "frame_ms": FRAME_MS, "transition_ms": TRANSITION_MS}
    if zoom == "fixed" and n_frames:
        out["ranges"] = _ranges(panels, n_frames - 1, "fixed")
    if first == 0:
        fig = embedding_figure(panels, labels, colour_by, animate=False, presentation=presentation, zoom=zoom,
                               highlight=highlight, columns=columns)
        out["figure"] = json.loads(fig.to_json())
        n_traces = len(out["figure"]["data"])
        for frame in frames:
            frame["traces"] = [t % n_traces for t in frame["traces"]]
    else:
        out["figure"] = None
    return out


def placeholder_figure(options: Sequence[str], message: str, columns: int | None = None,
                       presentation: bool = False) -> go.Figure:
    """Empty panels titled like the animation's, with a message: where the runs will appear."""
    rows, cols = _grid(len(options), columns)
    row_view = rows == 1 and cols >= 3
    size = _title_size(presentation)
    layout: dict = _subplot_axes(len(options), rows, cols)
    for axis in layout.values():
        axis["range"] = [-1, 1]
    titles = _titles([PanelFrames(o, [0], [], [], [{}]) for o in options], 0, size, row_view)
    note = {"text": message, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5, "showarrow": False,
            "font": {"size": size + 2, "color": "#555555"}, "bgcolor": "rgba(255,255,255,0.9)"}
    data = [{"type": "scatter", "x": [None], "y": [None], "showlegend": False, "hoverinfo": "skip", **_axis_refs(p)}
            for p in range(len(options))]
    fig = go.Figure({"data": data, "layout": {**layout, "annotations": [*titles, note]}})
    panel_height = (400 if presentation else 290) if row_view else 500
    apply_style(fig, presentation=presentation, height=panel_height * rows + 100)
    fig.update_layout(margin={"l": 10, "r": 10, "t": 80 if row_view else 90, "b": 10}, dragmode=False)
    return fig


def embedding_animation(results, method: str = "pca", colour_by: str = "true", presentation: bool = False,
                        frame: int | None = None, zoom: str = "follow", columns: int | None = None) -> go.Figure:
    """The animation of one RunResult, or of {option: RunResult} side by side (the CLI's export):
    projected by fatviz.projection, then drawn."""
    if not isinstance(results, Mapping):
        results = {results.settings.centroid: results}
    if not results:
        raise FatvizError("No run to draw.")
    first = next(iter(results.values()))
    return embedding_figure(result_panels(results, method), PointLabels.from_result(first), colour_by, frame=frame,
                            presentation=presentation, zoom=zoom, columns=columns)
