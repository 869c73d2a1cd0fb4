"""Placeholder until the page lands."""

import streamlit as st

st.title("the_bound")
st.info("This page is being built.")
