"""The live embedding chart on a page: a components-v2 component (fatviz/web/live_chart.js) that
drives one plotly.js chart in place and is sent only the epochs it does not hold yet.

Streamlit remounts a changed `st.plotly_chart` (a new DOM node per redraw, zoom lost, a full
redraw in the browser), so a chart that grows while training is this component instead: the
figure goes once, then each page or fragment run sends the new frames only. This session
remembers how many frames of which view it sent; a chart that was remounted (another page and
back) holds none and asks for them again with its "need" trigger, answered before the next run.
"""

from __future__ import annotations

import json

import streamlit as st

from fatviz.figures.embedding import PointLabels, live_chart_data
from fatviz.projection import PanelFrames
from pages.ui.web import component

STEP_MS = 120  # while following training, each newly arrived epoch is on screen at least this long
_SENT = "_live_chart_sent"  # session_state: {chart key: (view signature, frames sent)}


def unavailable() -> str | None:
    """Why this app cannot draw the live chart (None when it can)."""
    return component("live_chart", plotly=True)[1]


def _mount(**kwargs):
    mount = component("live_chart", plotly=True)[0]
    return mount(on_need_change=lambda: _resend(kwargs["key"]), on_picked_change=lambda: None, **kwargs)


def forget_sent(sent: dict, key: str, need) -> None:
    """What the chart `key`'s "need" trigger {sig, have} does to `sent` (chart key -> (view
    signature, frames sent)): the next run sends from `have` on, or everything (another view)."""
    if isinstance(need, dict) and key in sent and need.get("sig") == sent[key][0]:
        have = need.get("have")
        sent[key] = (sent[key][0], max(0, min(have if isinstance(have, int) else 0, sent[key][1])))
    else:
        sent.pop(key, None)


def _resend(key: str) -> None:
    """The chart asks for frames from `have` on (it was remounted, or missed the figure)."""
    forget_sent(st.session_state.setdefault(_SENT, {}), key, (st.session_state.get(key) or {}).get("need"))


def still_chart(key: str, fig) -> None:
    """A figure without epochs (a placeholder) in a chart of its own: drawn as it is, and it loads
    plotly.js while the page is read, so the live chart that follows draws its first epoch at once."""
    if unavailable():
        st.plotly_chart(fig, theme=None, config={"staticPlot": True}, key=key)
        return
    data = {"sig": f"still:{key}", "figure": json.loads(fig.to_json()), "first": 0, "frames": [], "epochs": [],
            "live": False, "show": None, "panels": 0}
    _mount(key=key, data=data)


def live_chart(key: str, source: str, panels: list[PanelFrames], labels: PointLabels, *, live: bool,
               colour_by: str = "true", zoom: str = "follow", presentation: bool = False,
               columns: int | None = None, highlight: int | None = None, show: int | None = None,
               selectable: bool = False) -> dict | None:
    """Draw (or update in place) the chart `key` for `panels` of `source` (a job or a saved run).

    Sends the figure when the view changes (another colouring, ring, projection or source),
    else only the frames this chart lacks. `show` asks it to show that frame (the page's
    "epoch to inspect"); `live` shows the training badge and keeps it following new epochs.
    Returns the clicked point {panel, point} of this run, if any (when `selectable`).
    """
    sig = f"{source}|{colour_by}|{zoom}|{presentation}|{columns}|{highlight}"
    sent = st.session_state.setdefault(_SENT, {})
    previous, have = sent.get(key, (None, 0))
    first = have if previous == sig else 0
    data = live_chart_data(panels, labels, first, colour_by=colour_by, zoom=zoom, presentation=presentation,
                           columns=columns, highlight=highlight)
    data.update(sig=sig, live=live, show=show, selectable=selectable, presentation=presentation,
                panels=len(panels), step_ms=STEP_MS)
    sent[key] = (sig, first + len(data["frames"]))
    result = _mount(key=key, data=data)
    picked = result.get("picked") if selectable else None
    return picked if isinstance(picked, dict) else None
