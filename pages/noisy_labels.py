"""Placeholder until the page lands."""

import streamlit as st

st.title("noisy_labels")
st.info("This page is being built.")
