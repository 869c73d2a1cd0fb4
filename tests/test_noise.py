import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fatviz.data import load_dataset
from fatviz.errors import FatvizError
from fatviz.noise import NOISE_TERMS, add_label_noise, apply_noise, parse_noise, side_by_side

K = 10
LABELS = np.arange(50_000) % K


def test_only_the_wrong_identity_terms_move_labels_alone_and_only_one_of_them_applies():
    from fatviz.errors import FatvizError

    for name, term in NOISE_TERMS.items():
        if term.moves_labels_only:
            assert add_label_noise(LABELS[:1000], name, 0.3, K, seed=0).flipped.any()
        else:
            with pytest.raises(FatvizError, match="symmetric, pairflip"):
                add_label_noise(LABELS[:1000], name, 0.3, K, seed=0)
    with pytest.raises(FatvizError, match="both symmetric and pairflip"):
        parse_noise("symmetric:0.1+pairflip:0.1")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("none", ()),
        ("symmetric:0.2", (("symmetric", 0.2),)),
        ("pairflip:0.4", (("pairflip", 0.4),)),
        (" Symmetric : 0 ", (("symmetric", 0.0),)),
        ("symmetric:0.2+outlier:0.1+multi:0.05", (("symmetric", 0.2), ("outlier", 0.1), ("multi", 0.05))),
    ],
)
def test_parse_noise(spec, expected):
    assert parse_noise(spec) == expected


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("gaussian:0.2", "Unknown noise kind"),
        ("symmetric", "has no rate"),
        ("symmetric:abc", "not a number"),
        ("pairflip:1.0", "outside [0, 1)"),
        ("symmetric:-0.1", "outside [0, 1)"),
        ("none:0.3", "takes no rate"),
        ("outlier:1.5", "outside [0, 1)"),
        ("multi:x", "not a number"),
        ("foo:0.1", "Unknown noise kind"),
        ("symmetric:0.5+outlier:0.3+multi:0.2", "sum to 1"),
        ("symmetric:0.2+pairflip:0.1", "give one of them"),
        ("multi:0.1+multi:0.2", "twice"),
    ],
)
def test_parse_noise_errors(spec, fragment):
    with pytest.raises(FatvizError, match=re.escape(fragment)):
        parse_noise(spec)


@pytest.mark.parametrize("kind", ["symmetric", "pairflip"])
@pytest.mark.parametrize("rate", [0.2, 0.45])
def test_flip_rate_close_to_rate(kind, rate):
    noisy = add_label_noise(LABELS, kind, rate, K, seed=0)
    assert abs(noisy.flipped.mean() - rate) < 0.01
    assert noisy.kind == kind and noisy.rate == rate


def test_symmetric_spreads_over_all_other_classes():
    noisy = add_label_noise(LABELS, "symmetric", 0.4, K, seed=1)
    for k in range(K):
        moved = noisy.labels[(LABELS == k) & noisy.flipped]
        counts = np.bincount(moved, minlength=K)
        assert counts[k] == 0
        others = np.delete(counts, k)
        # Each of the K - 1 other classes gets about 1/(K-1) of the flipped labels.
        share = others / others.sum()
        assert np.all(np.abs(share - 1 / (K - 1)) < 0.03), share


def test_pairflip_goes_to_next_class():
    noisy = add_label_noise(LABELS, "pairflip", 0.3, K, seed=2)
    moved = noisy.flipped
    assert moved.any()
    np.testing.assert_array_equal(noisy.labels[moved], (LABELS[moved] + 1) % K)
    np.testing.assert_array_equal(noisy.labels[~moved], LABELS[~moved])


@given(
    kind=st.sampled_from(["none", "symmetric", "pairflip"]),
    rate=st.floats(0.0, 0.99),
    k=st.integers(2, 6),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=60, deadline=None)
def test_mask_matches_and_labels_stay_in_range(kind, rate, k, seed):
    labels = np.arange(300) % k
    noisy = add_label_noise(labels, kind, rate, k, seed)
    assert noisy.labels.dtype == np.int64 and noisy.flipped.dtype == bool
    np.testing.assert_array_equal(noisy.flipped, noisy.labels != labels)
    assert noisy.labels.min() >= 0 and noisy.labels.max() < k
    if kind == "none":
        assert not noisy.flipped.any()


def test_deterministic_given_seed():
    a = add_label_noise(LABELS, "symmetric", 0.3, K, seed=7)
    b = add_label_noise(LABELS, "symmetric", 0.3, K, seed=7)
    c = add_label_noise(LABELS, "symmetric", 0.3, K, seed=8)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)


def test_zero_rate_and_none_leave_labels_unchanged():
    for kind, rate in (("none", 0.0), ("symmetric", 0.0), ("pairflip", 0.0)):
        noisy = add_label_noise(LABELS, kind, rate, K, seed=0)
        np.testing.assert_array_equal(noisy.labels, LABELS)
        assert not noisy.flipped.any()


def test_input_is_not_modified():
    labels = LABELS.copy()
    add_label_noise(labels, "symmetric", 0.5, K, seed=0)
    np.testing.assert_array_equal(labels, LABELS)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("symmetric", 1.0, K), "outside"),
        (("symmetric", -0.2, K), "outside"),
        (("gaussian", 0.2, K), "Unknown noise kind"),
        (("symmetric", 0.2, 1), "at least two classes"),
        (("pairflip", 0.2, 5), "must lie in 0..4"),
    ],
)
def test_add_label_noise_errors(args, fragment):
    with pytest.raises(FatvizError, match=re.escape(fragment)):
        add_label_noise(LABELS, *args, seed=0)


def _digits():
    return load_dataset("digits", seed=0)


def test_combined_noise_records_what_it_did():
    ds = _digits()
    out, noisy = apply_noise(ds, "symmetric:0.2+outlier:0.1+multi:0.05", seed=0)
    n = len(out.y_train)
    kinds = noisy.sample_kind
    np.testing.assert_array_equal(noisy.flipped, kinds != "clean")
    np.testing.assert_array_equal(noisy.flipped, noisy.labels != out.y_train)
    # Outliers: whole held-out classes, absent from the given labels and the test split.
    held = np.asarray(noisy.held_out)
    assert len(held) >= 1
    assert not np.isin(noisy.labels, held).any() and not np.isin(out.y_test, held).any()
    np.testing.assert_array_equal(np.isin(out.y_train, held), kinds == "outlier")
    for kind, rate in (("outlier", 0.1), ("multi", 0.05), ("wrong_identity", 0.2)):
        sd = np.sqrt(rate * (1 - rate) / n)
        assert abs((kinds == kind).mean() - rate) < 4 * sd + 1 / n, kind
    # Composites: two distinct classes, labelled as the second, the mean of the two inputs.
    multi = kinds == "multi"
    assert (noisy.second[multi] != out.y_train[multi]).all() and (noisy.second[~multi] == -1).all()
    np.testing.assert_array_equal(noisy.labels[multi], noisy.second[multi])
    i = np.flatnonzero(multi)[0]
    same = np.flatnonzero((kinds == "clean") & (out.y_train == out.y_train[i]))
    assert not np.isclose(out.x_train[same], out.x_train[i]).all(axis=1).any()  # it changed
    # Wrong identity never lands on a held-out class, and the data is deterministic.
    again, noisy2 = apply_noise(ds, "multi:0.05+outlier:0.1+symmetric:0.2", seed=0)
    np.testing.assert_array_equal(noisy2.labels, noisy.labels)
    np.testing.assert_array_equal(again.x_train, out.x_train)


def test_single_kind_matches_add_label_noise():
    ds = _digits()
    for spec, kind in (("symmetric:0.3", "symmetric"), ("pairflip:0.2", "pairflip")):
        out, noisy = apply_noise(ds, spec, seed=4)
        ref = add_label_noise(ds.y_train, kind, float(spec.split(":")[1]), ds.num_classes, seed=4)
        assert out is ds
        np.testing.assert_array_equal(noisy.labels, ref.labels)
        assert set(noisy.sample_kind[noisy.flipped]) == {"wrong_identity"}


def test_side_by_side_keeps_both_images_whole():
    a = np.zeros((1, 8, 8))
    b = np.full((1, 8, 8), 255.0)
    c = side_by_side(a, b)
    assert c.shape == (1, 8, 8)
    assert (c[..., :4] == 0).all() and (c[..., 4:] == 255).all()


def test_outlier_rate_too_high_is_one_clear_error():
    with pytest.raises(FatvizError, match="lower the outlier rate"):
        apply_noise(_digits(), "outlier:0.95", seed=0)
