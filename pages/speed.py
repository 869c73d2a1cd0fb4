"""Placeholder until the page lands."""

import streamlit as st

st.title("speed")
st.info("This page is being built.")
