"""One look for every figure: projector-sized fonts, one colour per class and one per centroid option."""

from __future__ import annotations

import math

import plotly.graph_objects as go

from fatviz.centroids import CENTROIDS

# Okabe-Ito and Tableau colours: distinguishable for colour-blind viewers and on projectors.
CLASS_COLOURS: tuple[str, ...] = (
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
    "#8C564B", "#7F7F7F", "#17BECF", "#BCBD22", "#9467BD", "#FF9DA7", "#2CA02C", "#AEC7E8",
)
FLAG_COLOURS: dict[str, str] = {
    "kept": "#BBBBBB", "correctly flagged": "#D55E00", "wrongly flagged": "#E69F00", "missed": "#0072B2",
}
# One colour per loss, the same on the Speed page (its benchmark's method names) and on FAT vs
# triplet (the training losses): the FAT family in vermillion and purple, triplet losses in blues
# and green, cross-entropy grey.
LOSS_COLOURS: dict[str, str] = {
    "fat": "#D55E00", "normalized-fat": "#CC79A7", "hybrid": "#E69F00", "triplet-hard": "#009E73",
    "triplet-all": "#0072B2", "triplet-all-dense": "#000000", "pml-triplet-all": "#56B4E9",
    "pml-batch-hard": "#8C564B", "ce": "#7F7F7F", "floor": "#999999",
}
LOSS_ALIASES = {"batch-hard": "triplet-hard"}  # the Speed benchmark's name for the same loss
OTHER_COLOUR = "#333333"  # a panel or line that is not a registered centroid option
FONT_SIZE = 16
PRESENTATION_FONT_SIZE = 22


def class_colour(label: int) -> str:
    """The colour of a class, the same in every panel and page (cycles after 16 classes)."""
    return CLASS_COLOURS[int(label) % len(CLASS_COLOURS)]


def option_colour(option: str) -> str:
    """A centroid option's colour (from its registry entry), the same in every figure."""
    return CENTROIDS.get(option).colour if option in CENTROIDS else OTHER_COLOUR


def loss_colour(loss: str) -> str:
    """A loss's colour, the same in every figure (by its training name or its benchmark name)."""
    return LOSS_COLOURS.get(LOSS_ALIASES.get(loss, loss), OTHER_COLOUR)


def option_note(option: str) -> str:
    """The few words under a centroid option's panel title (empty for anything else)."""
    return CENTROIDS.get(option).short if option in CENTROIDS else ""


def log_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Tick values and labels for a log axis over [lo, hi] (both > 0): the powers of ten, and 2 and 5
    times them where fewer than three powers fall inside. Plotly's own minor labels ("2", "5" beside
    "10") read as other numbers from the back row."""
    if not (0 < lo <= hi) or not math.isfinite(hi):
        return [], []
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    steps = (1,) if sum(lo <= 10.0 ** k <= hi for k in range(first, last + 1)) >= 3 else (1, 2, 5)
    vals = [m * 10.0 ** k for k in range(first, last + 1) for m in steps if lo <= m * 10.0 ** k <= hi]
    return vals, [f"{v:g}" for v in vals]


def apply_style(fig: go.Figure, *, title: str | None = None, presentation: bool = False,
                height: int | None = None) -> go.Figure:
    """Readable fonts, white background, legend kept clear of the plot; returns the figure."""
    size = PRESENTATION_FONT_SIZE if presentation else FONT_SIZE
    fig.update_layout(
        template="plotly_white",
        font={"size": size, "family": "Inter, Helvetica, Arial, sans-serif"},
        margin={"l": 50, "r": 20, "t": 60 if title else 30, "b": 50},
        legend={"font": {"size": size - 2}},
        hoverlabel={"font_size": size - 2},
    )
    if title:
        fig.update_layout(title={"text": title, "font": {"size": size + 4}})
    if height:
        fig.update_layout(height=height)
    return fig
