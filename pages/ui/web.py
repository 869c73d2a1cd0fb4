"""The app's own browser components (fatviz/web), registered once in a running app.

fatviz's pyproject.toml declares fatviz/web as their asset folder; Streamlit's runtime finds that
declaration, so a component is registered on its first use inside a script run (not at import).
plotly.js for the live chart is plotly.py's own copy, put beside it: the app works offline.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import streamlit as st

import fatviz

WEB = Path(fatviz.__file__).resolve().parent / "web"
_REGISTERED: dict[str, tuple[Callable | None, str | None]] = {}


def _plotly_js() -> str | None:
    """Put plotly.py's plotly.min.js beside the components (no CDN); returns why not, if it cannot."""
    import plotly

    source = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
    target = WEB / "plotly.min.js"
    try:
        if not target.is_file() or target.stat().st_size != source.stat().st_size:
            partial = target.with_name(f"plotly.min.js.{os.getpid()}.tmp")
            shutil.copyfile(source, partial)
            os.replace(partial, target)  # whole or not at all, for a browser loading it now
    except OSError as exc:
        return f"plotly.js could not be put beside the app's charts ({exc})"
    return None


def component(name: str, plotly: bool = False) -> tuple[Callable | None, str | None]:
    """(mounting command, None) for fatviz/web/<name>.js, or (None, why it is not available)."""
    if name not in _REGISTERED:
        missing = _plotly_js() if plotly else None
        if missing:
            _REGISTERED[name] = (None, missing)
        else:
            try:
                _REGISTERED[name] = (st.components.v2.component(f"fatviz.{name}", js=f"{name}.js",
                                                                 isolate_styles=False), None)
            except Exception as exc:  # noqa: BLE001 - Streamlit raises several kinds here; all mean "not available"
                _REGISTERED[name] = (None, f"the {name} view is not registered ({exc}); install fatviz with "
                                           "`pip install -e .`")
    return _REGISTERED[name]
