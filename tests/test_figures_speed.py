"""Tests for fatviz.figures.speed: the chart and tables show the benchmark's own numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fatviz.bench import log_log_slope, loss_benchmark
from fatviz.figures.speed import (
    method_label,
    slope_table,
    speed_figure,
    speedup_table,
    time_table,
)

SIZES = [64, 128, 256]
SECONDS = {"fat": [0.001, 0.0012, 0.0015], "triplet-all-dense": [0.002, 0.016, None], "batch-hard": [0.001, 0.002, 0.004]}


def fake_result() -> dict:
    """A loss_benchmark-shaped result with known numbers (the dense method skipped at the largest size)."""
    slopes = {m: log_log_slope(SIZES, s) for m, s in SECONDS.items()}
    speedups = {m: [None if t is None else t / f for t, f in zip(s, SECONDS["fat"], strict=False)]
                for m, s in SECONDS.items() if m != "fat"}
    return {"config": {"sizes": SIZES, "dim": 128, "classes_per": 8, "classes": [8, 16, 32], "repeats": 1,
                       "max_step_seconds": 1.0, "seed": 0, "threads": 1, "margin": 0.1, "torch": "x"},
            "methods": list(SECONDS), "seconds": SECONDS, "slopes": slopes, "speedups": speedups,
            "fat_over_floor": None, "skipped": {"triplet-all-dense": {"256": "over 1 s at a smaller size"}}}


def test_lines_are_milliseconds_with_the_slope_in_the_legend() -> None:
    result = fake_result()
    fig = speed_figure(result)
    for m, secs in SECONDS.items():
        (tr,) = [t for t in fig.data if t.name == method_label(m, result["slopes"][m])]
        kept = [(s, t) for s, t in zip(SIZES, secs, strict=False) if t is not None]
        assert list(tr.x) == [s for s, _ in kept]
        np.testing.assert_allclose(tr.y, [1e3 * t for _, t in kept])
    dense = result["slopes"]["triplet-all-dense"]
    assert dense == pytest.approx(3.0)  # 0.002 -> 0.016 for 64 -> 128
    assert method_label("triplet-all-dense", dense) == "triplet-all-dense (slope 3.00)"
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"


def test_reference_lines_have_slopes_one_two_three_from_the_fastest_first_point() -> None:
    fig = speed_figure(fake_result())
    refs = [t for t in fig.data if t.name.startswith("∝ N")]
    assert [t.name for t in refs] == ["∝ N", "∝ N²", "∝ N³"]
    for k, tr in enumerate(refs, start=1):
        assert tr.y[0] == pytest.approx(1.0)  # 1e3 * min(0.001, 0.002, 0.001) ms
        assert math.log(tr.y[-1] / tr.y[0]) / math.log(tr.x[-1] / tr.x[0]) == pytest.approx(k)
        assert tr.showlegend is False


def test_tables_hold_the_numbers() -> None:
    result = fake_result()
    times = time_table(result)
    assert list(times.index) == SIZES
    assert times.loc[128, "triplet-all-dense"] == pytest.approx(16.0)
    assert np.isnan(times.loc[256, "triplet-all-dense"])
    speed = speedup_table(result)
    assert speed.loc[128, "batch-hard"] == pytest.approx(0.002 / 0.0012)
    assert "fat" not in speed.columns
    assert slope_table(result).loc["fat", "slope"] == pytest.approx(result["slopes"]["fat"])


def test_a_real_tiny_benchmark_draws() -> None:
    result = loss_benchmark(sizes=(16, 32), repeats=1, methods=("fat", "batch-hard"), threads=1)
    fig = speed_figure(result)
    (fat,) = [t for t in fig.data if t.name.startswith("fat (slope")]
    np.testing.assert_allclose(fat.y, [1e3 * t for t in result["seconds"]["fat"]])
    assert fat.name == method_label("fat", log_log_slope([16, 32], result["seconds"]["fat"]))


def test_a_loss_has_one_colour_on_the_speed_page_and_on_fat_vs_triplet() -> None:
    """Batch-hard is "batch-hard" in the speed benchmark and "triplet-hard" in training: one colour."""
    from fatviz.figures.losses import losses_figure

    result = fake_result()
    speed = {t.name.split(" (")[0]: t.line.color for t in speed_figure(result).data if t.name and "slope" in t.name}
    rows = [{"variant": loss, "loss": loss, "precision_at_1": 0.5, "precision_at_1_sd": 0.0, "epoch_seconds": 1.0,
             "epoch_seconds_sd": 0.0, "step_seconds": 0.001 * (i + 1), "seeds": 1}
            for i, loss in enumerate(("fat", "triplet-hard"))]
    study = {t["name"]: t["marker"]["color"] for t in losses_figure(rows).to_dict()["data"] if t["type"] == "scatter"}
    assert speed["fat"] == study["fat"]
    assert speed["batch-hard"] == study["triplet-hard"]
    assert speed["fat"] != speed["batch-hard"]


def test_log_axes_are_labelled_with_whole_numbers_not_minor_digits() -> None:
    """Plotly labels minor log ticks "2" and "5" beside "10"; our ticks are the values themselves."""
    from fatviz.figures.style import log_ticks

    assert log_ticks(0.03, 200) == ([0.1, 1.0, 10.0, 100.0], ["0.1", "1", "10", "100"])
    assert log_ticks(0.04, 0.9) == ([0.05, 0.1, 0.2, 0.5], ["0.05", "0.1", "0.2", "0.5"])
    assert log_ticks(5, 1) == ([], []) and log_ticks(0, 1) == ([], [])
    fig = speed_figure(fake_result())
    lo, hi = (10 ** v for v in fig.layout.yaxis.range)
    assert fig.layout.yaxis.tickvals and all(lo <= v <= hi for v in fig.layout.yaxis.tickvals)
    assert list(fig.layout.yaxis.ticktext) == [f"{v:g}" for v in fig.layout.yaxis.tickvals]
