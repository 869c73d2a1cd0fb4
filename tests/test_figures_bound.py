"""Tests for fatviz.figures.bound: the figures draw exactly the numbers bound_view computes."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import LABELS, POINTS

from fatviz.bound_view import bound_terms, whole_set_bounds
from fatviz.figures.bound import (
    bound_view_figure,
    triplet_terms_figure,
    whole_set_figure,
)
from fatviz.figures.style import class_colour


def trace(fig, prefix: str):
    """The one trace whose name starts with prefix."""
    found = [t for t in fig.data if (t.name or "").startswith(prefix)]
    assert len(found) == 1, [t.name for t in fig.data]
    return found[0]


@pytest.mark.parametrize("option", ["mean", "mean-norm", "norm-mean-norm"])
def test_view_draws_the_triplet_its_distances_centres_and_radii(option: str) -> None:
    t = bound_terms(POINTS, LABELS, 0, 2, 5, option, 0.3)
    fig = bound_view_figure(t, LABELS, ["zero", "one", "two"])
    x = t.points
    for name, u, v, value in (("d(a,p)", x[0], x[2], t.d_ap), ("d(a,n)", x[0], x[5], t.d_an),
                              ("d(a,c_a)", x[0], t.centres[0], t.d_a_ca), ("d(a,c_n)", x[0], t.centres[1], t.d_a_cn)):
        tr = trace(fig, name + " =")
        assert tr.name == f"{name} = {value:.3f}"
        np.testing.assert_allclose([tr.x[0], tr.y[0]], u)
        np.testing.assert_allclose([tr.x[1], tr.y[1]], v)
        assert np.hypot(tr.x[1] - tr.x[0], tr.y[1] - tr.y[0]) == pytest.approx(value)
    for name, centre, radius in (("R_a", t.centres[0], t.radius_a), ("R_n", t.centres[1], t.radius_n)):
        tr = trace(fig, name + " =")
        assert tr.name == f"{name} = {radius:.3f}"
        np.testing.assert_allclose(np.hypot(np.array(tr.x) - centre[0], np.array(tr.y) - centre[1]), radius)
    apn = trace(fig, "anchor, positive, negative")
    where = {name: (px, py) for name, px, py in zip(apn.text, apn.x, apn.y, strict=False)}
    np.testing.assert_allclose([where["a"], where["p"], where["n"]], x[[0, 2, 5]])
    assert list(apn.text)[-1] == "a"  # drawn last, on top of a negative it may sit on
    for k, name in enumerate(["zero", "one", "two"]):
        cls = trace(fig, name)
        assert cls.marker.color == class_colour(k)
        np.testing.assert_allclose(np.c_[cls.x, cls.y], x[LABELS == k])
    assert any(tr.name == "unit circle" for tr in fig.data) == (option != "mean")
    assert fig.layout.yaxis.scaleanchor == "x"  # circles stay round


def test_terms_figure_stacks_the_bound_and_shows_the_loss() -> None:
    t = bound_terms(POINTS, LABELS, 0, 2, 5, "mean", 0.3)
    fig = triplet_terms_figure(t)
    loss = [tr for tr in fig.data if tr.y == ("loss",)]
    bound = [tr for tr in fig.data if tr.y == ("bound",)]
    assert [tr.x[0] for tr in loss] == [pytest.approx(t.loss)]
    assert [tr.x[0] for tr in bound] == pytest.approx([t.point_to_set, t.radius_a, t.radius_n])
    assert sum(tr.x[0] for tr in bound) == pytest.approx(t.bound)
    assert fig.layout.barmode == "stack"


def test_whole_set_figure_draws_the_table() -> None:
    table = whole_set_bounds(POINTS, LABELS, margin=0.5)
    fig = whole_set_figure(table)
    exact = trace(fig, "exact")
    p2s = trace(fig, "bound: point-to-set")
    rad = trace(fig, "bound: radius term")
    assert list(exact.x) == list(table.index)
    np.testing.assert_allclose(exact.y, table["exact"])
    np.testing.assert_allclose(p2s.y, table["point_to_set"])
    np.testing.assert_allclose(rad.y, table["radius_term"])
    np.testing.assert_allclose(np.asarray(rad.base, float) + np.asarray(rad.y, float), table["bound"])
    assert list(rad.text) == [f"{v:.3f}" for v in table["bound"]]
    assert p2s.offsetgroup == rad.offsetgroup != exact.offsetgroup
