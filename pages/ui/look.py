"""How every page looks: the page frame (presentation mode), one way to show a user's mistake,
one way to draw an embedding chart, and the small-results cache."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from pages.ui.routing import through_app_navigation

# Presentation mode (?present=1): no sidebar or chrome, text for the back row.
PRESENTATION_CSS = """<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"],
header[data-testid="stHeader"] {display: none !important;}
.block-container {padding-top: 1rem; max-width: 100% !important;}
html, body, [class*="css"], .stMarkdown p {font-size: 1.35rem !important;}
</style>"""


def start_page() -> None:
    """What every page does first: arrive through app.py's navigation, then apply presentation mode."""
    through_app_navigation()
    # Streamlit forgets the state of widgets a run does not draw: a page without the sidebar (or
    # without some of its sections) would hand the next page the widgets' minimums. Written back
    # as the session's own values (the sidebar's keys start with "w_"), they live on.
    for key in [k for k in st.session_state if str(k).startswith("w_")]:
        st.session_state[key] = st.session_state[key]
    if presentation():
        st.markdown(PRESENTATION_CSS, unsafe_allow_html=True)


def crisp_images() -> None:
    """Enlarged small images stay pixel for pixel on this page (no browser smoothing): 8x8 digits
    and 28x28 or 32x32 images are shown many times their size."""
    st.markdown("<style>[data-testid='stImage'] img {image-rendering: pixelated;}</style>", unsafe_allow_html=True)


def presentation() -> bool:
    """True in presentation mode (controls hidden, charts enlarged), set by ?present=1."""
    return st.query_params.get("present", "0") == "1"


def show_error(exc: Exception) -> None:
    """One clear message for a user mistake; the app keeps running."""
    st.error(str(exc), icon="⚠️")


def cached(fn: Callable[..., Any]) -> Callable[..., Any]:
    """st.cache_data for pure results keyed on their (hashable) arguments."""
    return st.cache_data(show_spinner=False, max_entries=64)(fn)


def plot_embedding(fig, key: str) -> None:
    """Draw an embedding figure as a plotly chart with our own style (not Streamlit's theme): where
    the live chart (pages/ui/live_chart.py) is not available."""
    config = {"displaylogo": False, "scrollZoom": True,
              "toImageButtonOptions": {"format": "png", "scale": 2, "filename": "fatviz-embedding"}}
    st.plotly_chart(fig, key=key, theme=None, config=config)
