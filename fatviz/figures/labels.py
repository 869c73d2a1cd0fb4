"""Label distillation, drawn: what the teacher flagged, what it kept per round, where labels moved.

Inputs are the parts of a `fatviz.distill.DistillResult` (its per-sample table, rounds,
report, confusion and baselines), so these builders work on saved results too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from fatviz.figures.style import FLAG_COLOURS, apply_style, class_colour
from fatviz.noise import NOISY_SAMPLE_KINDS, SAMPLE_KINDS, flip_kinds

OUTCOMES: tuple[str, ...] = ("correctly flagged", "wrongly flagged", "missed", "kept")
SORT_ORDERS: tuple[str, ...] = ("lowest score first", "highest score first")
LABEL_COLUMNS: dict[str, str] = {"given_label": "given label", "teacher_label": "teacher's label",
                                 "true_label": "true label"}


def sample_indices(table: pd.DataFrame) -> np.ndarray:
    """Each row's position in the training split (the `index` column, else the frame's index)."""
    return np.asarray(table["index"] if "index" in table.columns else table.index, dtype=np.int64)


def flag_outcomes(table: pd.DataFrame) -> pd.Series:
    """Per sample: correctly flagged (flipped and flagged), wrongly flagged, missed (flipped, kept) or kept."""
    flagged = table["flagged"].to_numpy(bool)
    flipped = table["was_flipped"].to_numpy(bool)
    out = np.select([flagged & flipped, flagged & ~flipped, ~flagged & flipped],
                    ["correctly flagged", "wrongly flagged", "missed"], default="kept")
    return pd.Series(out, index=table.index, name="outcome")


def noise_kinds(table: pd.DataFrame) -> pd.Series:
    """Per sample, the SAMPLE_KINDS name of what touched it (tables saved before noise kinds: flipped is
    wrong identity)."""
    if "noise_kind" in table.columns:
        return table["noise_kind"].astype(str)
    return pd.Series(flip_kinds(table["was_flipped"].to_numpy(bool)), index=table.index)


def kind_table(report: dict[str, float]) -> pd.DataFrame:
    """Per noise kind present in the run: samples, flag precision, recall, F1 and centre shift."""
    rows = {SAMPLE_KINDS.get(k).label: [report.get(f"{key}_{k}", np.nan) for key in
                                        ("n", "flag_precision", "flag_recall", "flag_f1", "centre_shift")]
            for k in NOISY_SAMPLE_KINDS if report.get(f"n_{k}", 0) > 0}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["samples", "precision", "recall", "F1", "centre shift"])


def soft_label_bars(probs: np.ndarray, class_names: Sequence[str], given: int, kind: str,
                    true: Sequence[int] = (), width: int = 96, height: int = 28) -> str:
    """A soft label as a small inline SVG bar row: one bar per class, the given label's bar in the
    noise kind's colour, the true classes' bars underlined (light: no plotly per image)."""
    k = len(probs)
    w = width / max(k, 1)
    colour = SAMPLE_KINDS.get(kind).colour if kind in SAMPLE_KINDS else FLAG_COLOURS["kept"]
    bars = []
    for c, p in enumerate(np.clip(np.asarray(probs, float), 0, 1)):
        h = max(p * (height - 4), 0.5)
        fill = colour if c == given else "#888888"
        bars.append(f'<rect x="{c * w + 0.5:.1f}" y="{height - 4 - h:.1f}" width="{w - 1:.1f}" height="{h:.1f}" '
                    f'fill="{fill}"><title>{class_names[c]}: {p:.2f}</title></rect>')
        if c in true:
            bars.append(f'<rect x="{c * w + 0.5:.1f}" y="{height - 3}" width="{w - 1:.1f}" height="3" fill="#000000"/>')
    return (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="soft label">{"".join(bars)}</svg>')


def gallery_rows(table: pd.DataFrame, outcome: str, classes: Sequence[int] | None = None,
                 order: str = SORT_ORDERS[0], limit: int | None = None) -> pd.DataFrame:
    """The samples with this outcome (given label in `classes`, if set), sorted by the teacher's score."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
    if order not in SORT_ORDERS:
        raise ValueError(f"order must be one of {SORT_ORDERS}, not {order!r}")
    rows = table[flag_outcomes(table) == outcome]
    if classes:
        rows = rows[rows["given_label"].isin(list(classes))]
    rows = rows.sort_values("score", ascending=order == SORT_ORDERS[0], kind="stable")
    return rows if limit is None else rows.head(limit)


def enlarge(image: np.ndarray, factor: int) -> np.ndarray:
    """Blow a small image up by repeating pixels (no blur: an 8x8 digit stays crisp on a projector)."""
    return np.repeat(np.repeat(np.asarray(image), factor, axis=0), factor, axis=1)


def enlarge_to(image: np.ndarray, pixels: int) -> np.ndarray:
    """`enlarge` by the whole factor that brings the image's longer side nearest to `pixels` (at least 1):
    8x8 digits and 28x28 or 32x32 images alike end up about that large, pixel for pixel."""
    side = max(np.asarray(image).shape[:2])
    return enlarge(image, max(1, round(pixels / side)))


def flagging_comparison(report: dict[str, float]) -> pd.DataFrame:
    """The reported flags against confident learning's, on the same noisy labels; where the student's verdict
    gave the flags (report["student_verdict"] 1), the teacher's own beside them."""
    rows = ("precision", "recall", "f1", "n_flagged")

    def column(prefix: str, count: str) -> list[float]:
        return [report.get(f"{prefix}_{r}" if r != "n_flagged" else count, np.nan) for r in rows]

    judged = report.get("student_verdict") == 1
    columns = {"teacher, then the student" if judged else "teacher": column("flag", "n_flagged"),
               **({"teacher alone": column("teacher_flag", "teacher_n_flagged")} if judged else {}),
               "confident learning": column("cleanlab", "cleanlab_n_flagged")}
    return pd.DataFrame(columns, index=pd.Index(["precision", "recall", "F1", "flagged"], name="flagging"), dtype=float)


def kept_per_round_figure(rounds: list[dict], class_names: list[str], presentation: bool = False) -> go.Figure:
    """Samples the teacher keeps after each round, stacked by class, beside how many the round trained on.

    After every round the teacher judges all samples again, so a later round may keep
    more samples than it trained on.
    """
    x = [f"round {r['round']}" for r in rounds]
    fig = go.Figure()
    for k, name in enumerate(class_names):
        fig.add_trace(go.Bar(x=x, y=[r["kept_per_class"][k] for r in rounds], name=name,
                             marker_color=class_colour(k)))
    fig.add_trace(go.Scatter(x=x, y=[r["kept"] for r in rounds], mode="text", name="kept", showlegend=False,
                             text=[f"{r['kept']} kept" for r in rounds], textposition="top center",
                             hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=x, y=[r["trained_on"] for r in rounds], name="trained on", mode="markers",
                             line={"color": "#333333", "dash": "dot", "width": 2}, marker={"size": 10, "symbol": "diamond"},
                             hovertemplate="%{x}: trained on %{y}<extra></extra>"))
    apply_style(fig, title="What the teacher keeps, round by round", presentation=presentation, height=480)
    top = max([max(r["trained_on"], r["kept"]) for r in rounds] or [1])
    fig.update_layout(barmode="stack", yaxis={"title": "samples", "range": [0, top * 1.15]},
                      legend={"x": 1.02, "xanchor": "left", "traceorder": "normal"})
    return fig


def confusion_matrix(confusion: pd.DataFrame, rows: str, cols: str, num_classes: int) -> np.ndarray:
    """(K, K) counts from the long confusion frame: rows[i] by cols[j], summed over the third label."""
    z = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(z, (confusion[rows].to_numpy(np.int64), confusion[cols].to_numpy(np.int64)),
              confusion["count"].to_numpy(np.int64))
    return z


def confusion_figure(confusion: pd.DataFrame, rows: str, cols: str, class_names: list[str],
                     presentation: bool = False) -> go.Figure:
    """A heatmap of sample counts: one label (rows, e.g. given) against another (cols, e.g. teacher's)."""
    z = confusion_matrix(confusion, rows, cols, len(class_names))
    fig = go.Figure(go.Heatmap(
        z=z, x=class_names, y=class_names, colorscale="Blues", text=z, texttemplate="%{text}",
        hovertemplate=f"{LABEL_COLUMNS[rows]} %{{y}}, {LABEL_COLUMNS[cols]} %{{x}}: %{{z}}<extra></extra>",
        showscale=False))
    apply_style(fig, title=f"{LABEL_COLUMNS[rows].capitalize()} vs {LABEL_COLUMNS[cols]}",
                presentation=presentation, height=460)
    fig.update_xaxes(title=LABEL_COLUMNS[cols], type="category", side="bottom")
    fig.update_yaxes(title=LABEL_COLUMNS[rows], type="category", autorange="reversed", scaleanchor="x")
    return fig


def score_figure(table: pd.DataFrame, threshold: float | None = None, presentation: bool = False,
                 bins: int = 20) -> go.Figure:
    """How sure the teacher is of each given label: histograms over [0, 1] for clean and flipped samples."""
    fig = go.Figure()
    flipped = table["was_flipped"].to_numpy(bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    for name, mask, colour in (("clean label", ~flipped, FLAG_COLOURS["kept"]),
                               ("flipped label", flipped, FLAG_COLOURS["correctly flagged"])):
        counts, _ = np.histogram(table.loc[mask, "score"].to_numpy(float), bins=edges)
        fig.add_trace(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=edges[1] - edges[0],
                             name=f"{name} ({int(mask.sum())})", marker_color=colour, opacity=0.75,
                             hovertemplate="%{x:.3f}: %{y}<extra>" + name + "</extra>"))
    if threshold is not None:
        fig.add_vline(x=threshold, line={"color": "#000000", "dash": "dash", "width": 2},
                      annotation_text=f"threshold {threshold:g}", annotation_position="top")
    apply_style(fig, title="Teacher's probability of the given label", presentation=presentation, height=480)
    fig.update_layout(barmode="overlay", xaxis={"title": "probability", "range": [0, 1]}, yaxis_title="samples",
                      legend={"orientation": "h", "x": 0, "y": -0.2, "yanchor": "top"})
    return fig


def baselines_figure(baselines: pd.DataFrame, presentation: bool = False) -> go.Figure:
    """Retrieval on the test split (true labels): the student against models trained on the noisy labels."""
    # "fat (noisy labels)" -> "fat<br>(noisy labels)": tick labels stay horizontal.
    names = [str(n).replace(" (", "<br>(") for n in baselines.index]
    fig = go.Figure()
    for column, label, colour in (("precision_at_1", "precision@1", "#0072B2"), ("map", "mAP", "#56B4E9")):
        values = baselines[column].to_numpy(float)
        fig.add_trace(go.Bar(x=names, y=values, name=label, marker_color=colour,
                             text=[f"{v:.3f}" for v in values], textposition="outside"))
    apply_style(fig, title="Student vs training on the noisy labels", presentation=presentation, height=440)
    fig.update_layout(barmode="group", yaxis={"title": "test split, true labels", "range": [0, 1.1]},
                      legend={"orientation": "h", "x": 0, "y": -0.25, "yanchor": "top"})
    return fig


def nearest_rows_text(features: np.ndarray, indices: np.ndarray, ids: np.ndarray, given: np.ndarray,
                      names: list[str], k: int = 5) -> list[str]:
    """For each training sample in `indices`: its k nearest other training samples (Euclidean, in the
    features the model reads) as 'ID (given label)', nearest first: the gallery of a table without images."""
    from fatviz.projection import nearest_neighbours

    out = []
    for i in np.asarray(indices, dtype=np.int64):
        order, _ = nearest_neighbours(features, int(i), k)
        out.append(", ".join(f"{ids[j]} ({names[given[j]]})" for j in order))
    return out
