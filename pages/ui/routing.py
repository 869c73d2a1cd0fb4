"""A first visit that opens a page directly (a shared /classroom link) still gets app.py's navigation."""

from __future__ import annotations

import streamlit as st


def through_app_navigation() -> None:
    """Leave Streamlit's old page-folder mode, once per server, if this run is in it.

    Streamlit 1.67 serves a `pages/` folder next to the entrypoint as an old-style page folder
    (every pages/*.py a page, app.py never run) until some session calls st.navigation. A
    first visitor after a server start who opens /classroom therefore gets the page on its own:
    no app frame, Streamlit's own page list. No setting turns that scan off (showSidebarNavigation
    only hides the list), and the folder keeps its name, so this sets the flag st.navigation
    itself sets and reruns: the rerun goes through app.py, which routes to the page asked for.
    The flag is internal to Streamlit; tests/test_app_pages.py opens a page as such a first
    visitor, so an upgrade that changes it fails there.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
