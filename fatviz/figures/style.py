"""One look for every figure: projector-sized fonts, one colour per class and one per centroid option."""

from __future__ import annotations

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
OTHER_COLOUR = "#333333"  # a panel or line that is not a registered centroid option
FONT_SIZE = 16
PRESENTATION_FONT_SIZE = 22


def class_colour(label: int) -> str:
    """The colour of a class, the same in every panel and page (cycles after 16 classes)."""
    return CLASS_COLOURS[int(label) % len(CLASS_COLOURS)]


def option_colour(option: str) -> str:
    """A centroid option's colour (from its registry entry), the same in every figure."""
    return CENTROIDS.get(option).colour if option in CENTROIDS else OTHER_COLOUR


def option_note(option: str) -> str:
    """The few words under a centroid option's panel title (empty for anything else)."""
    return CENTROIDS.get(option).short if option in CENTROIDS else ""


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
