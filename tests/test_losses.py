"""Tests for fatviz.losses: FAT, its triplet bound and the triplet baselines against brute force."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import reference_centroids, unit
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fatviz.centroids import CENTROIDS, compute_centroids
from fatviz.errors import FatvizError
from fatviz.losses import (
    NEGATIVE_MODES,
    RADIUS_MODES,
    FATLoss,
    HybridLoss,
    batch_hard_loss,
    soft_cross_entropy,
    triplet_all_loss,
    triplet_bound,
)

OPTIONS = CENTROIDS.names()  # the four built-in options, read from the registry

# --------------------------------------------------------------------------- references


def pair_distances(x: torch.Tensor) -> list[list[torch.Tensor]]:
    """All pairwise distances as torch.norm of explicit differences (on the autograd graph)."""
    return [[torch.norm(x[i] - x[j]) for j in range(x.shape[0])] for i in range(x.shape[0])]


def brute_triplets(x: torch.Tensor, labels: list[int], margin: float) -> tuple[torch.Tensor, int]:
    """Mean hinge over all (a, p, n) with a != p, y_p == y_a, y_n != y_a, by a triple loop."""
    d = pair_distances(x)
    n = len(labels)
    total, count = x.new_zeros(()), 0
    for a, p, q in itertools.product(range(n), repeat=3):
        if a != p and labels[p] == labels[a] and labels[q] != labels[a]:
            total = total + torch.clamp(d[a][p] - d[a][q] + margin, min=0)
            count += 1
    return total / max(count, 1), count


def brute_batch_hard(x: torch.Tensor, labels: list[int], margin: float) -> torch.Tensor:
    """Per anchor with a positive and a negative: farthest positive against nearest negative."""
    d = pair_distances(x)
    terms = []
    for a in range(len(labels)):
        pos = [d[a][p] for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        neg = [d[a][q] for q in range(len(labels)) if labels[q] != labels[a]]
        if pos and neg:
            terms.append(torch.clamp(torch.stack(pos).max() - torch.stack(neg).min() + margin, min=0))
    return torch.stack(terms).mean() if terms else x.new_zeros(())


def brute_fat(emb: torch.Tensor, labels: list[int], option: str, margin: float, negatives: str,
              hardest_k: int, radius: str, weight: float, centres: list[torch.Tensor | None],
              sample_weights: list[float] | None = None) -> torch.Tensor:
    """docs/METHOD.md sections 2.3 and 4 read literally, one anchor at a time.

    centres[k] is None for a class without a centre. The anchor's own class is never a
    negative; anchors without a centre contribute nothing.
    """
    w = [1.0] * len(labels) if sample_weights is None else sample_weights
    present = [k for k, c in enumerate(centres) if c is not None]
    pairs: list[tuple[float, torch.Tensor]] = []  # (anchor weight, hinge)
    own: list[tuple[float, torch.Tensor]] = []  # (anchor weight, distance to own centre)
    for i, y in enumerate(labels):
        if centres[y] is None:
            continue
        a = emb[i] if option == "mean" else unit(emb[i])
        d_pos = torch.norm(a - centres[y])
        own.append((w[i], d_pos))
        others = [k for k in present if k != y]
        if not others:
            continue
        if negatives == "all":
            chosen = [centres[k] for k in others]
        elif negatives == "average":
            chosen = [sum(centres[k] for k in others) / len(others)]
        else:
            others.sort(key=lambda k: float(torch.norm(centres[y] - centres[k])))
            chosen = [centres[k] for k in others[:hardest_k]]
        for c in chosen:
            pairs.append((w[i], torch.clamp(d_pos - torch.norm(a - c) + margin, min=0)))
    zero = emb.sum() * 0.0
    pw = sum(p[0] for p in pairs)
    p2s = sum(wi * h for wi, h in pairs) / pw if pw > 0 else zero
    if radius == "mean":
        ow = sum(o[0] for o in own)
        compact = sum(wi * d for wi, d in own) / ow if ow > 0 else zero
    else:
        kept = [d for wi, d in own if wi > 0]
        compact = torch.stack(kept).max() if kept else zero
    return p2s + weight * compact


def centre_list(c) -> list[torch.Tensor | None]:
    """Centroids as a list with None for absent classes."""
    return [c.centres[k] if bool(c.present[k]) else None for k in range(c.num_classes)]


def loss_data(seed: int, n: int = 18, dim: int = 4, num_classes: int = 5, dtype=torch.float64):
    """Labelled points with a singleton class, a zero vector and a point duplicated across classes."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes - 1, (n,), generator=g)
    labels[-1] = num_classes - 1  # a singleton class
    x = torch.randn(num_classes, dim, generator=g, dtype=torch.float64)[labels] * 1.5
    x = x + torch.randn(n, dim, generator=g, dtype=torch.float64)
    x[0] = 0.0
    x[1] = x[2]
    labels[1] = (labels[2] + 1) % (num_classes - 1)
    return x.to(dtype), labels


# --------------------------------------------------------------------------- the bound


@st.composite
def bound_inputs(draw):
    """N in 2..40, D in 1..8, labels with singleton classes allowed, moderate values."""
    n = draw(st.integers(2, 40))
    dim = draw(st.integers(1, 8))
    k = draw(st.integers(2, n))
    labels = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    x = draw(hnp.arrays("float64", (n, dim), elements=st.floats(-10, 10, allow_nan=False, width=64)))
    margin = draw(st.floats(0, 2))
    return torch.from_numpy(x), torch.tensor(labels), margin


@settings(max_examples=150, deadline=None)
@given(data=bound_inputs(), option=st.sampled_from(OPTIONS))
def test_bound_is_an_upper_bound(data, option):
    x, labels, margin = data
    counts = torch.bincount(labels)
    if int((counts > 0).sum()) < 2:
        with pytest.raises(FatvizError, match="two classes"):
            triplet_bound(x, labels, option, margin)
        return
    if int(counts.max()) < 2:
        with pytest.raises(FatvizError, match="No valid triplet"):
            triplet_bound(x, labels, option, margin)
        return
    res = triplet_bound(x, labels, option, margin)
    assert res.bound >= res.exact - 1e-9 * max(1.0, abs(res.exact))
    assert res.gap >= -1e-9 * max(1.0, abs(res.exact))
    assert res.bound == pytest.approx(res.point_to_set + res.radius_term, rel=1e-12, abs=1e-12)
    assert res.radius_term >= 0 and res.point_to_set >= 0
    n_k = counts.tolist()
    assert res.num_triplets == sum(c * (c - 1) * (len(labels) - c) for c in n_k)
    assert res.option == option and res.margin == margin


@pytest.mark.parametrize("option", OPTIONS)
def test_bound_exact_equals_triple_loop(option):
    x, labels = loss_data(1)
    res = triplet_bound(x, labels, option, margin=0.3)
    anchors = x if option == "mean" else torch.stack([unit(v) for v in x])
    ref, count = brute_triplets(anchors, labels.tolist(), 0.3)
    assert res.exact == pytest.approx(ref.item(), rel=1e-10, abs=1e-12)
    assert res.num_triplets == count


@pytest.mark.parametrize("option", OPTIONS)
def test_bound_terms_by_hand(option):
    # Per triplet: max(0, d(a, c_ya) - d(a, c_yn) + m) + R_ya + R_yn, averaged over triplets.
    x, labels = loss_data(2, n=10)
    lab = labels.tolist()
    ref = reference_centroids(x, lab, option, 5)
    anchors = [v if option == "mean" else unit(v) for v in x]
    p2s, rad, count = 0.0, 0.0, 0
    for a, p, q in itertools.product(range(len(lab)), repeat=3):
        if a != p and lab[p] == lab[a] and lab[q] != lab[a]:
            d_own = float(torch.norm(anchors[a] - ref["centres"][lab[a]]))
            d_neg = float(torch.norm(anchors[a] - ref["centres"][lab[q]]))
            p2s += max(0.0, d_own - d_neg + 0.2)
            rad += ref["radius"][lab[a]] + ref["radius"][lab[q]]
            count += 1
    res = triplet_bound(x, labels, option, 0.2)
    assert res.point_to_set == pytest.approx(p2s / count, rel=1e-10)
    assert res.radius_term == pytest.approx(rad / count, rel=1e-10)


def test_bound_default_margin_and_tightness():
    # Tight, far-apart clusters: the exact loss is 0 and the bound is small.
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(3, dtype=torch.float64) * 10
    labels = torch.arange(30) % 3
    x = centres[labels] + 0.01 * torch.randn(30, 3, generator=g, dtype=torch.float64)
    res = triplet_bound(x, labels)
    assert res.option == "norm-mean-norm" and res.margin == pytest.approx(0.1)
    assert res.exact == 0.0
    assert 0 < res.bound < 0.01


def test_bound_needs_two_classes():
    x = torch.randn(5, 3)
    with pytest.raises(FatvizError, match="two classes"):
        triplet_bound(x, torch.zeros(5, dtype=torch.long))
    with pytest.raises(FatvizError, match="Unknown centroid option"):
        triplet_bound(x, torch.arange(5) % 2, "median")


# --------------------------------------------------------------------------- triplet baselines


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["sorted", "dense"])
@pytest.mark.parametrize("normalize", [False, True])
def test_triplet_all_equals_triple_loop(dtype, method, normalize):
    x, labels = loss_data(3, n=14)
    x = x[2:]  # no zero vector, no duplicate: keep float32 rounding away from d = 0
    labels = labels[2:]
    ref, _ = brute_triplets(torch.stack([unit(v) for v in x]) if normalize else x, labels.tolist(), 0.7)
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    for chunk in (None, 1, 5):
        got = triplet_all_loss(x.to(dtype), labels, margin=0.7, normalize=normalize, method=method,
                               chunk_size=chunk)
        assert got.dtype == dtype
        assert got.item() == pytest.approx(ref.item(), rel=tol, abs=tol)


@pytest.mark.parametrize("margin", [0.0, 0.5, 3.0])
def test_triplet_all_methods_agree_in_value_and_gradient(margin):
    x, labels = loss_data(4, n=20)
    x = x[2:]
    labels = labels[2:]
    grads, values = [], []
    xr = x.clone().requires_grad_(True)
    ref, _ = brute_triplets(xr, labels.tolist(), margin)
    ref.backward()
    for method in ("sorted", "dense"):
        xm = x.clone().requires_grad_(True)
        loss = triplet_all_loss(xm, labels, margin=margin, method=method, chunk_size=3)
        loss.backward()
        values.append(loss.item())
        grads.append(xm.grad)
    assert values[0] == pytest.approx(ref.item(), rel=1e-9, abs=1e-12)
    assert values[1] == pytest.approx(ref.item(), rel=1e-9, abs=1e-12)
    torch.testing.assert_close(grads[0], xr.grad, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(grads[1], xr.grad, rtol=1e-7, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 16), dim=st.integers(1, 5),
       k=st.integers(1, 5), margin=st.floats(0, 2), method=st.sampled_from(["sorted", "dense"]))
def test_triplet_all_property(seed, n, dim, k, margin, method):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, k, (n,), generator=g)
    ref, _ = brute_triplets(x, labels.tolist(), margin)
    got = triplet_all_loss(x, labels, margin=margin, method=method)
    assert got.item() == pytest.approx(ref.item(), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("normalize", [False, True])
def test_batch_hard_equals_loop(dtype, normalize):
    x, labels = loss_data(5, n=16)
    x = x[2:]
    labels = labels[2:]
    xr = x.clone().requires_grad_(True)
    ref = brute_batch_hard(torch.stack([unit(v) for v in xr]) if normalize else xr, labels.tolist(), 0.4)
    ref.backward()
    xm = x.to(dtype).requires_grad_(True)
    got = batch_hard_loss(xm, labels, margin=0.4, normalize=normalize)
    got.backward()
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    assert got.item() == pytest.approx(ref.item(), rel=tol, abs=tol)
    torch.testing.assert_close(xm.grad.double(), xr.grad, rtol=tol * 10, atol=tol * 10)


def test_batch_hard_without_valid_anchor_is_zero():
    x = torch.randn(4, 3, requires_grad=True)
    loss = batch_hard_loss(x, torch.arange(4))  # all singletons: no positive anywhere
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(x.grad).all()


def test_triplet_all_bad_method():
    with pytest.raises(FatvizError, match="sorted"):
        triplet_all_loss(torch.randn(4, 2), torch.arange(4) % 2, method="cubic")


# --------------------------------------------------------------------------- FAT


FAT_CASES = list(itertools.product(OPTIONS, NEGATIVE_MODES, RADIUS_MODES))


@pytest.mark.parametrize(("option", "negatives", "radius"), FAT_CASES)
@pytest.mark.parametrize("weighted", [False, True])
def test_fat_with_batch_centres_equals_loop(option, negatives, radius, weighted):
    x, labels = loss_data(6)
    lab = labels.tolist()
    sw = None
    if weighted:
        sw = (torch.arange(len(lab)) % 4).double() / 3  # weights 0, 1/3, 2/3, 1
    loss = FATLoss(option, margin=0.35, negatives=negatives, hardest_k=2, radius=radius,
                   compactness_weight=0.7)
    ref_c = reference_centroids(x, lab, option, 5)
    centres = [c if p else None for c, p in zip(ref_c["centres"], ref_c["present"], strict=False)]
    xr = x.clone().requires_grad_(True)
    ref = brute_fat(xr, lab, option, 0.35, negatives, 2, radius, 0.7, centres,
                    None if sw is None else sw.tolist())
    ref.backward()
    xm = x.clone().requires_grad_(True)
    got = loss(xm, labels, sample_weights=sw)
    got.backward()
    assert got.item() == pytest.approx(ref.item(), rel=1e-6, abs=1e-5)
    torch.testing.assert_close(xm.grad, xr.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("option", "negatives", "radius"), FAT_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fat_with_given_centroids_equals_loop(option, negatives, radius, dtype):
    # Centres from a larger "training set" with 7 class slots: class 5 has no member,
    # class 6 only members of weight 0. The batch holds anchors of both absent classes.
    g = torch.Generator().manual_seed(7)
    big_x, big_labels = loss_data(8, n=60, num_classes=7)
    big_labels[big_labels == 5] = 4
    weights = torch.rand(60, generator=g, dtype=torch.float64) + 0.5
    weights[big_labels == 6] = 0.0
    cents = compute_centroids(big_x.to(dtype), big_labels, option, num_classes=7, weights=weights)
    assert cents.present.tolist() == [True] * 5 + [False, False]
    x, labels = loss_data(9, n=16, num_classes=7)
    labels[3], labels[4] = 5, 6
    lab = labels.tolist()
    sw = torch.rand(16, generator=g, dtype=torch.float64)
    loss = FATLoss(option, margin=0.25, negatives=negatives, hardest_k=3, radius=radius)
    xr = x.clone().requires_grad_(True)
    ref = brute_fat(xr, lab, option, loss.margin, negatives, 3, radius, loss.compactness_weight,
                    [None if c is None else c.double() for c in centre_list(cents)], sw.tolist())
    ref.backward()
    xm = x.to(dtype).requires_grad_(True)
    got = loss(xm, labels, centroids=cents, sample_weights=sw.to(dtype))
    got.backward()
    assert got.dtype == dtype
    tol = 1e-6 if dtype == torch.float64 else 2e-3
    assert got.item() == pytest.approx(ref.item(), rel=tol, abs=tol)
    torch.testing.assert_close(xm.grad.double(), xr.grad, rtol=tol * 10, atol=tol * 10)
    assert xm.grad[3].abs().sum() == 0 and xm.grad[4].abs().sum() == 0  # no centre: no say


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 14), k=st.integers(1, 5),
       option=st.sampled_from(OPTIONS), negatives=st.sampled_from(NEGATIVE_MODES),
       radius=st.sampled_from(RADIUS_MODES), hardest_k=st.integers(1, 4), margin=st.floats(0, 2))
def test_fat_property(seed, n, k, option, negatives, radius, hardest_k, margin):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, k, (n,), generator=g)
    lab = labels.tolist()
    ref_c = reference_centroids(x, lab, option, max(lab) + 1)
    centres = [c if p else None for c, p in zip(ref_c["centres"], ref_c["present"], strict=False)]
    ref = brute_fat(x, lab, option, margin, negatives, hardest_k, radius, 0.5, centres)
    got = FATLoss(option, margin, negatives, hardest_k, radius, 0.5)(x, labels)
    assert got.item() == pytest.approx(ref.item(), rel=1e-6, abs=1e-5)


def test_fat_all_excludes_own_class_by_hand():
    # Two classes on a line, raw features: anchors at 0 and 1 (class 0, centre 0.5),
    # one at 3 (class 1, centre 3). Every real hinge is 0; an own-centre "negative" (the
    # public code's "all") would add exactly m = 1 per anchor and make the mean 0.5.
    x = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])
    terms = FATLoss("mean", margin=1.0, radius="mean", compactness_weight=0.0).terms(x, labels)
    # hinges: a=0: 0.5-3+1 <0 -> 0; a=1: 0.5-2+1 = -0.5 -> 0; a=3: 0-2.5+1 <0 -> 0
    assert terms.point_to_set.item() == 0.0
    assert terms.compactness.item() == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert terms.total.item() == pytest.approx(terms.point_to_set.item())


def test_fat_defaults_follow_the_public_code_but_the_study_on_the_sphere():
    raw = FATLoss("mean")
    norm = FATLoss()
    assert (raw.margin, raw.compactness_weight) == (1.0, 0.1)
    # compactness 0.3 on the unit sphere (the public code: 1.0), from scripts/bench_losses.py --study
    assert (norm.option, norm.margin, norm.compactness_weight, norm.negatives, norm.radius) == \
        ("norm-mean-norm", 0.1, 0.3, "all", "mean")
    assert "norm-mean-norm" in repr(norm)


def test_fat_user_errors():
    with pytest.raises(FatvizError, match="negatives"):
        FATLoss(negatives="some")
    with pytest.raises(FatvizError, match="radius"):
        FATLoss(radius="median")
    with pytest.raises(FatvizError, match="hardest_k"):
        FATLoss(hardest_k=0)
    with pytest.raises(FatvizError, match=">= 0"):
        FATLoss(margin=-1.0)
    x, labels = loss_data(10)
    cents = compute_centroids(x, labels, "mean")
    with pytest.raises(FatvizError, match="computed with"):
        FATLoss("norm-mean-norm")(x, labels, centroids=cents)
    with pytest.raises(FatvizError, match="no centre slot"):
        FATLoss("mean")(x, labels + 10, centroids=cents)


@pytest.mark.parametrize("negatives", NEGATIVE_MODES)
@pytest.mark.parametrize("radius", RADIUS_MODES)
def test_fat_empty_and_one_class_batches_are_zero(negatives, radius):
    loss = FATLoss(negatives=negatives, radius=radius)
    empty = torch.zeros(0, 4, requires_grad=True)
    value = loss(empty, torch.zeros(0, dtype=torch.long))
    value.backward()
    assert value.item() == 0.0
    one = torch.randn(5, 4, requires_grad=True)
    terms = loss.terms(one, torch.zeros(5, dtype=torch.long))
    terms.total.backward()
    assert terms.point_to_set.item() == 0.0  # no negative class
    assert torch.isfinite(one.grad).all()
    zero_w = loss(torch.randn(6, 4), torch.arange(6) % 2, sample_weights=torch.zeros(6))
    assert zero_w.item() == 0.0


# --------------------------------------------------------------------------- gradients


def awkward_batch(dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero vectors, duplicated points (within and across classes), a singleton class."""
    x, labels = loss_data(11, n=12, num_classes=4, dtype=dtype)
    x = torch.cat([x, torch.zeros(2, x.shape[1], dtype=dtype), x[5:6], x[5:6]])
    labels = torch.cat([labels, torch.tensor([0, 1]), labels[5:6], (labels[5:6] + 1) % 3])
    return x, labels


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("option", "negatives", "radius"), FAT_CASES)
def test_fat_gradients_finite(dtype, option, negatives, radius):
    x, labels = awkward_batch(dtype)
    for given_centroids in (None, compute_centroids(x, labels, option)):
        xm = x.clone().requires_grad_(True)
        loss = FATLoss(option, negatives=negatives, radius=radius)(xm, labels, centroids=given_centroids)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(xm.grad).all()
        # Finite is not enough: a zero row once got a 1/eps = 1e12 gradient.
        assert xm.grad.abs().max() < 1e3


@pytest.mark.parametrize(("option", "negatives", "radius"), FAT_CASES)
def test_fat_gradcheck_with_given_centroids(option, negatives, radius):
    # Given centres are constants, so finite differences see the same function autograd does.
    x, labels = loss_data(13, n=10)
    x = x[2:].clone().requires_grad_(True)
    labels = labels[2:]
    cents = compute_centroids(x.detach() + 0.3, labels, option)
    weights = torch.linspace(0.2, 1.0, labels.shape[0], dtype=torch.float64)
    loss = FATLoss(option, margin=0.3, negatives=negatives, hardest_k=2, radius=radius)
    assert torch.autograd.gradcheck(lambda v: loss(v, labels, cents, weights), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("normalize", [False, True])
def test_baseline_gradients_finite(dtype, normalize):
    x, labels = awkward_batch(dtype)
    for fn in (lambda v: triplet_all_loss(v, labels, normalize=normalize, method="sorted"),
               lambda v: triplet_all_loss(v, labels, normalize=normalize, method="dense"),
               lambda v: batch_hard_loss(v, labels, normalize=normalize)):
        xm = x.clone().requires_grad_(True)
        loss = fn(xm)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(xm.grad).all()
        assert xm.grad.abs().max() < 1e3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hybrid_gradients_finite(dtype):
    x, labels = awkward_batch(dtype)
    xm = x.clone().requires_grad_(True)
    logits = torch.zeros(x.shape[0], 4, dtype=dtype, requires_grad=True)
    HybridLoss()(xm, labels, logits).backward()
    assert torch.isfinite(xm.grad).all() and torch.isfinite(logits.grad).all()


# --------------------------------------------------------------------------- hybrid and CE


def test_soft_cross_entropy_one_hot_equals_hard():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(9, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (9,), generator=g)
    hard = soft_cross_entropy(logits, labels)
    soft = soft_cross_entropy(logits, F.one_hot(labels, 4).double())
    assert hard.item() == pytest.approx(float(F.cross_entropy(logits, labels)))
    assert soft.item() == pytest.approx(hard.item(), rel=1e-12)
    targets = torch.softmax(torch.randn(9, 4, generator=g, dtype=torch.float64), 1)
    by_hand = -sum(float((targets[i] * torch.log_softmax(logits[i], 0)).sum()) for i in range(9)) / 9
    assert soft_cross_entropy(logits, targets).item() == pytest.approx(by_hand, rel=1e-12)


def test_hybrid_hard_and_soft_targets():
    x, labels = loss_data(12)
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(x.shape[0], 5, generator=g, dtype=torch.float64)
    fat = FATLoss("norm-mean-norm", negatives="hardest", hardest_k=2)
    hybrid = HybridLoss(fat, ce_weight=0.3)
    hard = hybrid(x, labels, logits)
    soft = hybrid(x, labels, logits, targets=F.one_hot(labels, 5).double())
    expected = fat(x, labels) + 0.3 * F.cross_entropy(logits, labels)
    assert hard.item() == pytest.approx(expected.item(), rel=1e-12)
    assert soft.item() == pytest.approx(hard.item(), rel=1e-12)
    targets = torch.softmax(logits * 0.5, 1)
    cents = compute_centroids(x, labels, "norm-mean-norm")
    with_soft = hybrid(x, labels, logits, targets=targets, centroids=cents)
    assert with_soft.item() == pytest.approx((fat(x, labels, cents) + 0.3 * soft_cross_entropy(logits, targets)).item())
    assert isinstance(HybridLoss().fat, FATLoss)
    with pytest.raises(FatvizError):
        HybridLoss(ce_weight=-1.0)


# --------------------------------------------------------------------------- training


def test_fat_trains_a_linear_layer():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    means = torch.randn(4, 8, generator=g) * 3
    labels = torch.arange(128) % 4
    data = means[labels] + torch.randn(128, 8, generator=g)
    model = torch.nn.Linear(8, 6)
    loss_fn = FATLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = loss_fn(model(data), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0]
    assert min(losses[-5:]) < losses[0]


@pytest.mark.parametrize(("option", "negatives", "radius"), FAT_CASES)
def test_batch_centres_of_classes_absent_from_the_batch_are_no_negatives(option, negatives, radius):
    """The trainer's `batch` centres: K slots from the batch alone. A class with no member in the
    batch, or only members of centre weight 0 (distillation), is absent: a zero centre that is no
    negative, its anchors without a say, and no NaN."""
    x, labels = loss_data(12, n=14, num_classes=5)
    labels = torch.where(labels % 2 == 0, torch.zeros_like(labels), torch.full_like(labels, 2))
    labels[5] = 1  # class 1's one member shapes no centre
    weights = torch.ones(14, dtype=torch.float64)
    weights[5] = 0.0
    cents = compute_centroids(x, labels, option, num_classes=5, weights=weights)
    assert cents.present.tolist() == [True, False, True, False, False]
    assert (cents.centres[~cents.present] == 0).all() and torch.isfinite(cents.centres).all()
    loss = FATLoss(option, margin=0.3, negatives=negatives, hardest_k=3, radius=radius)
    xr = x.clone().requires_grad_(True)
    ref = brute_fat(xr, labels.tolist(), option, loss.margin, negatives, 3, radius, loss.compactness_weight,
                    centre_list(cents))
    ref.backward()
    xm = x.clone().requires_grad_(True)
    got = loss(xm, labels, centroids=cents)
    got.backward()
    assert torch.isfinite(got) and torch.isfinite(xm.grad).all()
    assert got.item() == pytest.approx(ref.item(), rel=1e-6, abs=1e-6)
    torch.testing.assert_close(xm.grad, xr.grad, rtol=1e-5, atol=1e-5)
    assert xm.grad[5].abs().sum() == 0
