"""Tests for fatviz.centroids: each option's centre against its definition (docs/METHOD.md section 3)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import reference_centroids
from hypothesis import given, settings
from hypothesis import strategies as st

from fatviz.centroids import (
    CENTROIDS,
    CentroidAccumulator,
    anchor_space,
    compute_centroids,
    euclidean,
    is_normalized,
    l2_normalize,
    precise_euclidean,
)
from fatviz.errors import FatvizError

OPTIONS = CENTROIDS.names()  # the four built-in options, read from the registry


def assert_matches_reference(got, ref: dict[str, list], tol: float = 1e-9) -> None:
    """Compare a Centroids object with reference_centroids output, field by field."""
    for name in ("centres", "counts", "radius", "mean_distance"):
        value = getattr(got, name)
        assert torch.isfinite(value).all(), name
        expected = torch.stack(ref[name]) if name == "centres" else torch.tensor(ref[name], dtype=torch.float64)
        torch.testing.assert_close(value.double(), expected, rtol=tol, atol=tol, msg=name)
    assert got.present.tolist() == ref["present"]


def make_data(seed: int, n: int = 30, dim: int = 5, num_classes: int = 4, dtype=torch.float64):
    """Random features with class-dependent offsets and scales, so the four options differ."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    offsets = torch.randn(num_classes, dim, generator=g, dtype=torch.float64) * 2
    scales = torch.rand(n, 1, generator=g, dtype=torch.float64) * 3 + 0.1
    feats = (offsets[labels] + torch.randn(n, dim, generator=g, dtype=torch.float64)) * scales
    return feats.to(dtype), labels


@pytest.mark.parametrize("option", OPTIONS)
def test_each_option_matches_its_definition(option):
    feats, labels = make_data(1)
    got = compute_centroids(feats, labels, option)
    assert got.option == option
    assert_matches_reference(got, reference_centroids(feats, labels.tolist(), option, 4))


@pytest.mark.parametrize("option", OPTIONS)
def test_options_really_differ(option):
    # Guards the reference test against four options that accidentally coincide.
    feats, labels = make_data(2)
    mine = compute_centroids(feats, labels, option).centres
    for other in OPTIONS:
        if other != option:
            assert not torch.allclose(mine, compute_centroids(feats, labels, other).centres, atol=1e-3)


def test_centre_geometry_per_option():
    feats, labels = make_data(3)
    norms = {o: compute_centroids(feats, labels, o).centres.norm(dim=1) for o in OPTIONS}
    # Options 3 and 4 lie on the sphere, option 2 inside the ball.
    torch.testing.assert_close(norms["norm-mean"], torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(norms["norm-mean-norm"], torch.ones(4, dtype=torch.float64))
    assert (norms["mean-norm"] <= 1 + 1e-12).all()
    assert (norms["mean-norm"] < 1 - 1e-3).any()


def test_mean_norm_centre_norm_measures_compactness():
    # A tight class and a spread class: the spread one's mean of unit vectors is shorter.
    g = torch.Generator().manual_seed(0)
    tight = torch.tensor([1.0, 0.0, 0.0]) + 0.01 * torch.randn(20, 3, generator=g)
    spread = torch.randn(20, 3, generator=g)
    feats = torch.cat([tight, spread]).double()
    labels = torch.tensor([0] * 20 + [1] * 20)
    c = compute_centroids(feats, labels, "mean-norm")
    assert c.centres[0].norm() > 0.99 > c.centres[1].norm()


@pytest.mark.parametrize("option", OPTIONS)
def test_weights_and_zero_weight_ignored_entirely(option):
    feats, labels = make_data(4)
    g = torch.Generator().manual_seed(5)
    weights = torch.rand(feats.shape[0], generator=g, dtype=torch.float64) + 0.1
    weights[::4] = 0.0
    # A far outlier of weight 0 must move neither a centre nor a radius.
    feats = torch.cat([feats, torch.full((1, feats.shape[1]), 1e3, dtype=torch.float64)])
    labels = torch.cat([labels, labels[:1]])
    weights = torch.cat([weights, torch.zeros(1, dtype=torch.float64)])
    got = compute_centroids(feats, labels, option, weights=weights)
    ref = reference_centroids(feats, labels.tolist(), option, 4, weights.tolist())
    assert_matches_reference(got, ref)
    keep = weights > 0
    dropped = compute_centroids(feats[keep], labels[keep], option, num_classes=4, weights=weights[keep])
    torch.testing.assert_close(got.centres, dropped.centres)
    torch.testing.assert_close(got.radius, dropped.radius)
    torch.testing.assert_close(got.counts, weights.new_tensor([weights[labels == k].sum() for k in range(4)]))


def test_counts_are_member_counts_when_unweighted():
    feats, labels = make_data(6)
    got = compute_centroids(feats, labels, "mean")
    assert got.counts.tolist() == torch.bincount(labels, minlength=4).double().tolist()


@pytest.mark.parametrize("option", OPTIONS)
def test_absent_classes_are_zero_not_nan(option):
    feats, labels = make_data(7, num_classes=2)
    labels = labels * 2  # classes 0 and 2; 1, 3, 4 absent
    weights = torch.ones(labels.shape[0], dtype=torch.float64)
    weights[labels == 2] = 0.0  # class 2 has members, all of weight 0: absent too
    got = compute_centroids(feats, labels, option, num_classes=5, weights=weights)
    assert got.num_classes == 5
    assert got.present.tolist() == [True, False, False, False, False]
    for t in (got.centres[1:], got.counts[1:], got.radius[1:], got.mean_distance[1:]):
        assert torch.isfinite(t).all() and (t == 0).all()
    assert_matches_reference(got, reference_centroids(feats, labels.tolist(), option, 5, weights.tolist()))


@pytest.mark.parametrize("option", OPTIONS)
def test_singleton_class_has_radius_zero(option):
    feats = torch.tensor([[1.0, 2.0], [3.0, -1.0], [2.0, 2.0]], dtype=torch.float64)
    got = compute_centroids(feats, torch.tensor([0, 1, 1]), option)
    assert float(got.radius[0]) == pytest.approx(0.0, abs=1e-12)
    assert float(got.radius[1]) > 0


@pytest.mark.parametrize("option", OPTIONS)
def test_zero_vectors_under_normalisation(option):
    feats = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 2])  # class 1 holds only a zero vector
    got = compute_centroids(feats, labels, option)
    for t in (got.centres, got.radius, got.mean_distance):
        assert torch.isfinite(t).all()
    assert got.present.all()
    assert_matches_reference(got, reference_centroids(feats, labels.tolist(), option, 3), tol=1e-6)


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_chunked_equals_one_shot(option, weighted):
    feats, labels = make_data(8, n=53)
    weights = (torch.arange(53) % 3).double() if weighted else None
    one = compute_centroids(feats, labels, option, weights=weights)
    for chunk in (1, 4, 7):
        many = compute_centroids(feats, labels, option, weights=weights, chunk_size=chunk)
        for name in ("centres", "counts", "present", "radius", "mean_distance"):
            torch.testing.assert_close(getattr(many, name), getattr(one, name), msg=name)


def test_accumulator_two_passes_by_hand():
    feats, labels = make_data(9, n=40)
    acc = CentroidAccumulator("norm-mean-norm", 4, feats.shape[1], dtype=torch.float64)
    for sl in (slice(0, 13), slice(13, 29), slice(29, 40)):
        acc.add(feats[sl], labels[sl])
    centres = acc.centres()
    for sl in (slice(0, 5), slice(5, 40)):
        acc.add_radius(feats[sl], labels[sl])
    res = acc.result()
    torch.testing.assert_close(res.centres, centres)
    assert_matches_reference(res, reference_centroids(feats, labels.tolist(), "norm-mean-norm", 4))
    with pytest.raises(RuntimeError):
        acc.add(feats, labels)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 25), dim=st.integers(1, 6),
       num_classes=st.integers(1, 6), option=st.sampled_from(OPTIONS), weighted=st.booleans())
def test_property_matches_reference(seed, n, dim, num_classes, option, weighted):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, dim, generator=g, dtype=torch.float64) * 3
    feats[torch.rand(n, generator=g) < 0.1] = 0.0
    labels = torch.randint(0, num_classes, (n,), generator=g)
    weights = (torch.rand(n, generator=g, dtype=torch.float64) * (torch.rand(n, generator=g) > 0.3)
               if weighted else None)
    got = compute_centroids(feats, labels, option, num_classes=num_classes, weights=weights,
                            chunk_size=1 + seed % 5)
    ref = reference_centroids(feats, labels.tolist(), option, num_classes,
                              None if weights is None else weights.tolist())
    assert_matches_reference(got, ref, tol=1e-7)


def test_result_is_detached_and_keeps_dtype():
    feats, labels = make_data(10, dtype=torch.float32)
    feats.requires_grad_(True)
    got = compute_centroids(feats, labels, "mean")
    assert not got.centres.requires_grad
    assert got.centres.dtype == torch.float32
    assert got.detach().to("cpu").centres.shape == (4, feats.shape[1])


def test_user_errors():
    feats, labels = make_data(11)
    with pytest.raises(FatvizError, match="Unknown centroid option"):
        compute_centroids(feats, labels, "median")
    with pytest.raises(FatvizError, match="Labels must lie"):
        compute_centroids(feats, labels, "mean", num_classes=2)
    with pytest.raises(FatvizError):
        compute_centroids(feats, labels[:-1], "mean")


@pytest.mark.parametrize("option", OPTIONS)
def test_anchor_space(option):
    feats, _ = make_data(12)
    anchors = anchor_space(feats, option)
    if is_normalized(option):
        torch.testing.assert_close(anchors.norm(dim=1), torch.ones(feats.shape[0], dtype=torch.float64))
    else:
        assert anchors is feats


def test_euclidean_matches_differences_and_has_finite_gradient():
    feats, _ = make_data(13, n=12)
    ref = torch.tensor([[math.dist(a.tolist(), b.tolist()) for b in feats[:5]] for a in feats])
    torch.testing.assert_close(precise_euclidean(feats, feats[:5]), ref.double())
    torch.testing.assert_close(euclidean(feats, feats[:5]), ref.double(), rtol=1e-6, atol=1e-5)
    x = feats.clone().requires_grad_(True)
    euclidean(x, x).sum().backward()  # the diagonal is d = 0
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_l2_normalize_zero_rows(dtype):
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1e-300, 0.0]], dtype=dtype, requires_grad=True)
    u = l2_normalize(x)
    torch.testing.assert_close(u[:2].detach(), torch.tensor([[0.0, 0.0], [0.6, 0.8]], dtype=dtype))
    (u * torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]], dtype=dtype)).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert (x.grad[0] == 0).all()  # a zero row stays put: no 1/eps blow-up
    # The ordinary row gets the true derivative of x/|x|: (I - u u^T) g / |x|.
    g = torch.tensor([1.0, 2.0], dtype=dtype)
    u1 = torch.tensor([0.6, 0.8], dtype=dtype)
    torch.testing.assert_close(x.grad[1], (g - u1 * (u1 @ g)) / 5)


def test_l2_normalize_gradcheck():
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(6, 4, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    assert torch.autograd.gradcheck(l2_normalize, (x,))


def test_centre_sources_read_one_way_and_refuse_the_rest_with_one_message():
    from fatviz.centroids import CentreSource, parse_centres

    assert parse_centres("epoch") == CentreSource("epoch")
    assert parse_centres("batch") == CentreSource("batch")
    assert parse_centres("ema:0.9") == CentreSource("ema", 0.9)
    assert parse_centres(" EMA:0.90 ").text == "ema:0.9"  # one spelling, one cache key
    assert parse_centres("ema:0.999").text == "ema:0.999"
    for bad, words in (("ema:2", "strictly between 0 and 1"), ("ema:0", "strictly between 0 and 1"),
                       ("ema:1", "strictly between 0 and 1"), ("ema:nan", "strictly between 0 and 1"),
                       ("ema:x", "'x' is not a number"), ("ema", "not possible"), ("batch:0.5", "not possible"),
                       ("fresh", "not possible"), (0.9, "must be text")):
        with pytest.raises(FatvizError, match=words) as info:
            parse_centres(bad)
        assert "ema:0.9" in str(info.value)  # every message shows a value that works


def test_class_sums_are_the_weighted_sums_of_what_the_option_averages():
    from fatviz.centroids import class_sums

    feats, labels = make_data(3)
    weights = torch.rand(feats.shape[0], generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    weights[::4] = 0.0
    for option in OPTIONS:
        sums, counts = class_sums(feats, labels, option, 6, weights=weights)
        summed = feats if not CENTROIDS.get(option).normalise_members else feats / feats.norm(dim=1, keepdim=True)
        for k in range(6):
            member = labels == k
            torch.testing.assert_close(sums[k], (summed[member] * weights[member, None]).sum(0))
            torch.testing.assert_close(counts[k], weights[member].sum())


@pytest.mark.parametrize("option", OPTIONS)
def test_moving_centres_are_the_moving_average_written_out_by_hand(option):
    """Classes absent from a batch keep their centre; a class with no start centre takes its first
    batch's mean; a member of weight 0 moves nothing; the option's projection is applied on reading."""
    from helpers import unit

    from fatviz.centroids import MovingCentres, class_sums

    k, beta = 4, 0.8
    start_feats, start_labels = make_data(10, n=24, num_classes=3)  # class 3 has no start centre
    start = compute_centroids(start_feats, start_labels, option, k)
    assert start.present.tolist() == [True, True, True, False]
    moving = MovingCentres(start, beta)
    opt = CENTROIDS.get(option)
    by_hand = {c: start.centres[c].clone() for c in range(3)}
    g = torch.Generator().manual_seed(11)
    for step, present_classes in enumerate(([0, 1], [1, 3], [0, 2, 3], [2])):
        labels = torch.tensor([c for c in present_classes for _ in range(3)])
        feats = torch.randn(len(labels), 5, generator=g, dtype=torch.float64) * (1 + labels[:, None]) + labels[:, None]
        weights = torch.ones(len(labels), dtype=torch.float64)
        weights[0] = 0.0  # shapes no centre
        moving.update(*class_sums(feats, labels, option, k, weights=weights))
        for c in present_classes:
            members = [i for i in range(len(labels)) if labels[i] == c and weights[i] > 0]
            mean = sum((unit(feats[i]) if opt.normalise_members else feats[i]) for i in members) / len(members)
            by_hand[c] = beta * by_hand[c] + (1 - beta) * mean if c in by_hand else mean
        centres, present = moving.centres()
        assert present.tolist() == [c in by_hand for c in range(k)], step
        for c in range(k):
            want = torch.zeros(5, dtype=torch.float64) if c not in by_hand else (
                unit(by_hand[c]) if opt.normalise_centre else by_hand[c])
            torch.testing.assert_close(centres[c], want, msg=f"step {step}, class {c}")
        got = moving.centroids(feats, labels, weights)
        torch.testing.assert_close(got.centres, centres)
        assert got.present.tolist() == present.tolist() and not got.centres.requires_grad
        anchors = anchor_space(feats, option)
        for c in present_classes:  # the radius is the batch's members' against the moving centre
            members = (labels == c) & (weights > 0)
            torch.testing.assert_close(got.radius[c], (anchors[members] - centres[c]).norm(dim=1).max())
    with pytest.raises(FatvizError, match="0 < beta < 1"):
        MovingCentres(start, 1.0)
