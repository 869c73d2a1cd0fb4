"""The loss benchmark as the pages run it (Speed, the Lesson): cached for every session, with a progress bar."""

from __future__ import annotations

import streamlit as st

from fatviz.bench import loss_benchmark

CLASSES_PER = 8  # samples per class in every batch: K = N / 8 classes
DIM = 128  # embedding dimension, as in the README's benchmark


@st.cache_data(show_spinner=False, max_entries=16)
def run_benchmark(sizes: tuple[int, ...], methods: tuple[str, ...], repeats: int, max_step_seconds: float,
                  threads: int) -> dict:
    """The loss benchmark for these parameters, with a progress bar; a repeated call is instant."""
    bar = st.progress(0.0, text="Starting the benchmark…")
    total = len(sizes) * len(methods) * (1 + repeats)  # one warm-up and `repeats` timings per method and size
    calls = [0]

    def progress(message: str) -> None:
        calls[0] += 1
        bar.progress(min(0.99, calls[0] / total), text=message)

    result = loss_benchmark(sizes, DIM, CLASSES_PER, repeats, max_step_seconds, methods,
                            progress=progress, threads=threads)
    bar.empty()
    return result
