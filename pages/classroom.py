"""Placeholder until the page lands."""

import streamlit as st

st.title("classroom")
st.info("This page is being built.")
