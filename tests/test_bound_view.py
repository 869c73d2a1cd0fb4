"""Tests for fatviz.bound_view: every number of the bound against a hand computation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from helpers import LABELS, POINTS

from fatviz.bound_view import (
    bound_terms,
    hardest_triplet,
    inequality_latex,
    option_space,
    teaching_blobs,
    triangle_latex,
    whole_set_bounds,
)
from fatviz.centroids import CENTROIDS
from fatviz.errors import FatvizError
from fatviz.losses import triplet_bound


def hand_space(option: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points, centres and radii of POINTS in an option's space, written out from docs/METHOD.md section 3."""
    unit = POINTS / np.linalg.norm(POINTS, axis=1, keepdims=True)
    x = POINTS if option == "mean" else unit
    centres = []
    for k in range(3):
        members = LABELS == k
        if option == "mean":
            c = POINTS[members].mean(0)
        elif option == "mean-norm":
            c = unit[members].mean(0)
        elif option == "norm-mean":
            c = POINTS[members].mean(0)
            c = c / np.linalg.norm(c)
        else:
            c = unit[members].mean(0)
            c = c / np.linalg.norm(c)
        centres.append(c)
    centres = np.array(centres)
    radii = np.array([np.linalg.norm(x[LABELS == k] - centres[k], axis=1).max() for k in range(3)])
    return x, centres, radii


@pytest.mark.parametrize("option", CENTROIDS.names())
def test_bound_terms_match_a_hand_computation(option: str) -> None:
    x, centres, radii = hand_space(option)
    a, p, n, m = 0, 2, 5, 0.3
    t = bound_terms(POINTS, LABELS, a, p, n, option, m)
    d = np.linalg.norm
    assert t.d_ap == pytest.approx(d(x[a] - x[p]))
    assert t.d_an == pytest.approx(d(x[a] - x[n]))
    assert t.d_a_ca == pytest.approx(d(x[a] - centres[0]))
    assert t.d_a_cn == pytest.approx(d(x[a] - centres[1]))
    assert (t.radius_a, t.radius_n) == pytest.approx((radii[0], radii[1]))
    assert t.loss == pytest.approx(max(0.0, d(x[a] - x[p]) - d(x[a] - x[n]) + m))
    point_to_set = max(0.0, d(x[a] - centres[0]) - d(x[a] - centres[1]) + m)
    assert t.point_to_set == pytest.approx(point_to_set)
    assert t.bound == pytest.approx(point_to_set + radii[0] + radii[1])
    assert t.gap == pytest.approx(t.bound - t.loss)
    assert t.loss <= t.bound
    np.testing.assert_allclose(t.points, x)
    np.testing.assert_allclose(t.centres, centres)
    if option != "mean":
        np.testing.assert_allclose(np.linalg.norm(t.points, axis=1), 1.0)  # drawn on the unit circle


@pytest.mark.parametrize("option", CENTROIDS.names())
def test_every_triplet_obeys_the_bound_and_both_triangle_steps(option: str) -> None:
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(18, 2)) * 2 + np.repeat(rng.normal(size=(3, 2)) * 3, 6, axis=0)
    y = np.repeat(np.arange(3), 6)
    for a, p, n in itertools.product(range(18), repeat=3):
        if a == p or y[p] != y[a] or y[n] == y[a]:
            continue
        t = bound_terms(pts, y, a, p, n, option, 0.5)
        assert t.loss <= t.bound + 1e-12
        assert t.d_ap <= t.positive_reach + 1e-12
        assert t.d_an >= t.negative_reach - 1e-12


def test_default_margin_follows_the_option() -> None:
    assert bound_terms(POINTS, LABELS, 0, 1, 3, "mean").margin == 1.0
    assert bound_terms(POINTS, LABELS, 0, 1, 3, "norm-mean-norm").margin == 0.1


@pytest.mark.parametrize("triplet", [(0, 0, 3), (0, 3, 4), (0, 1, 2), (0, 1, 99), (-1, 1, 3)])
def test_invalid_triplets_raise_a_user_error(triplet: tuple[int, int, int]) -> None:
    with pytest.raises(FatvizError):
        bound_terms(POINTS, LABELS, *triplet, "mean")


def test_negative_margin_is_refused() -> None:
    with pytest.raises(FatvizError):
        bound_terms(POINTS, LABELS, 0, 1, 3, "mean", -0.1)


@pytest.mark.parametrize("option", CENTROIDS.names())
def test_hardest_triplet_is_the_brute_force_one(option: str) -> None:
    x = hand_space(option)[0]
    best, best_triplet = -np.inf, None
    for a in range(len(LABELS)):
        pos = [i for i in range(len(LABELS)) if LABELS[i] == LABELS[a] and i != a]
        neg = [i for i in range(len(LABELS)) if LABELS[i] != LABELS[a]]
        p = max(pos, key=lambda i: np.linalg.norm(x[a] - x[i]))
        n = min(neg, key=lambda i: np.linalg.norm(x[a] - x[i]))
        hardness = np.linalg.norm(x[a] - x[p]) - np.linalg.norm(x[a] - x[n])
        if hardness > best:
            best, best_triplet = hardness, (a, p, n)
        assert hardest_triplet(POINTS, LABELS, option, anchor=a) == (a, p, n)
    assert hardest_triplet(POINTS, LABELS, option) == best_triplet


def test_hardest_triplet_refuses_a_lonely_anchor() -> None:
    with pytest.raises(FatvizError):
        hardest_triplet(POINTS[:7], np.array([0, 0, 0, 1, 1, 1, 2]), "mean", anchor=6)
    with pytest.raises(FatvizError):
        hardest_triplet(POINTS, LABELS, "mean", anchor=8)


def test_whole_set_bounds_are_triplet_bound_per_option_and_brute_force_exact() -> None:
    table = whole_set_bounds(POINTS, LABELS, margin=0.5)
    assert list(table.index) == list(CENTROIDS.names())
    for option in CENTROIDS.names():
        x, centres, radii = hand_space(option)
        hinges, bounds = [], []
        for a, p, n in itertools.product(range(len(LABELS)), repeat=3):
            if a == p or LABELS[p] != LABELS[a] or LABELS[n] == LABELS[a]:
                continue
            d = np.linalg.norm
            hinges.append(max(0.0, d(x[a] - x[p]) - d(x[a] - x[n]) + 0.5))
            bounds.append(max(0.0, d(x[a] - centres[LABELS[a]]) - d(x[a] - centres[LABELS[n]]) + 0.5)
                          + radii[LABELS[a]] + radii[LABELS[n]])
        row = table.loc[option]
        assert row["exact"] == pytest.approx(np.mean(hinges))
        assert row["bound"] == pytest.approx(np.mean(bounds))
        assert row["bound"] == pytest.approx(row["point_to_set"] + row["radius_term"])
        assert row["gap"] == pytest.approx(row["bound"] - row["exact"])
        assert row["triplets"] == len(hinges)
        assert row["exact"] <= row["bound"]
        b = triplet_bound(torch.tensor(POINTS), torch.tensor(LABELS), option, 0.5)
        assert row["bound"] == pytest.approx(b.bound)


def test_whole_set_default_margin_is_per_option() -> None:
    table = whole_set_bounds(POINTS, LABELS)
    assert table.loc["mean", "margin"] == 1.0
    assert table.loc["norm-mean-norm", "margin"] == 0.1


def test_latex_carries_the_numbers() -> None:
    t = bound_terms(POINTS, LABELS, 0, 2, 5, "mean", 0.3)
    text = inequality_latex(t)
    for value in (t.d_ap, t.d_an, t.margin, t.loss, t.d_a_ca, t.d_a_cn, t.radius_a, t.radius_n, t.point_to_set,
                  t.bound):
        assert f"{value:.3f}" in text
    steps = triangle_latex(t)
    for value in (t.positive_reach, t.negative_reach):
        assert f"{value:.3f}" in steps


def test_teaching_blobs_are_small_2d_and_deterministic() -> None:
    x, y = teaching_blobs(4, 1.0, 0.0, seed=1)
    assert x.shape[1] == 2 and x.shape[0] == len(y)
    assert set(np.unique(y)) == {0, 1, 2, 3}
    x2, _ = teaching_blobs(4, 1.0, 0.0, seed=1)
    np.testing.assert_array_equal(x, x2)


def test_outliers_grow_the_radii_and_the_gap() -> None:
    clean = whole_set_bounds(*teaching_blobs(4, 0.5, 0.0, seed=0), margin=1.0)
    noisy = whole_set_bounds(*teaching_blobs(4, 0.5, 0.2, seed=0), margin=1.0)
    assert noisy.loc["mean", "radius_term"] > clean.loc["mean", "radius_term"]


def test_option_space_unknown_option() -> None:
    with pytest.raises(FatvizError):
        option_space(POINTS, LABELS, "median")
