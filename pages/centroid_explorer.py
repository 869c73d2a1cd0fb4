"""Placeholder until the page lands."""

import streamlit as st

st.title("centroid_explorer")
st.info("This page is being built.")
