"""Synthetic label noise: the ReID paper's three kinds, with the per-sample truth recorded.

- Wrong identity (`symmetric:R`, `pairflip:R`): the sample is filed under another known label.
- Nobody in the set (`outlier:R`): a sample of a class held out of the label set, given a known label.
- Several people (`multi:R`): a composite of two samples of different classes, labelled as one of them.

Kinds combine with `+` (`symmetric:0.2+outlier:0.1+multi:0.05`); each rate is the share of the
final training set that kind touches, the kinds touch disjoint samples, so the rates sum below 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fatviz.data import Dataset
from fatviz.errors import FatvizError
from fatviz.registry import Registry


@dataclass(frozen=True)
class SampleKind:
    """What touched a training sample: its name in tables, its words on pages, its colour in figures."""

    label: str
    description: str
    colour: str


# Per-sample noise kinds (NoisyLabels.sample_kind holds these names). Okabe-Ito colours.
SAMPLE_KINDS: Registry[SampleKind] = Registry("noise kind")
SAMPLE_KINDS.register("clean", SampleKind("clean", "the given label is the sample's true class", "#BBBBBB"))
SAMPLE_KINDS.register("wrong_identity", SampleKind(
    "wrong identity", "filed under another known class (symmetric or pairflip)", "#D55E00"))
SAMPLE_KINDS.register("outlier", SampleKind(
    "outlier", "a sample of a class held out of the label set, given a known label", "#CC79A7"))
SAMPLE_KINDS.register("multi", SampleKind(
    "two people", "a composite of two samples of different classes, labelled as the second", "#009E73"))
NOISY_SAMPLE_KINDS = SAMPLE_KINDS.names()[1:]
WRONG_IDENTITY = "wrong_identity"  # what the label-only terms leave on a sample


@dataclass(frozen=True)
class NoiseTerm:
    """One `kind:RATE` term of the noise setting: what it leaves on a sample, the rates a visitor may ask
    for, and its words for the sidebar."""

    name: str
    sample_kind: str  # a SAMPLE_KINDS name
    rates: tuple[float, float]  # the app's range (the sidebar's slider; the CLI keeps to it unless --no-limits)
    label: str
    help: str
    # Wrong-identity terms: the offset (mod K) added to each moved label, from (rng, shape, K);
    # None for the terms that change the data, which apply_noise applies step by step.
    flip: Callable[[np.random.Generator, tuple[int, ...], int], np.ndarray] | None = None

    @property
    def moves_labels_only(self) -> bool:
        """True for the wrong-identity terms (one of them at a time), False for those that change the data."""
        return self.flip is not None


NOISE_TERMS: Registry[NoiseTerm] = Registry("noise kind")
for _term in (
    # An offset uniform in 1..K-1 lands on each other class with probability 1/(K-1).
    NoiseTerm("symmetric", WRONG_IDENTITY, (0.0, 0.9), "symmetric", "a label moved to a random other class",
              flip=lambda rng, shape, k: rng.integers(1, k, size=shape)),
    NoiseTerm("pairflip", WRONG_IDENTITY, (0.0, 0.9), "pairflip", "a label moved to the next class",
              flip=lambda rng, shape, k: np.ones(shape, np.int64)),
    NoiseTerm("outlier", "outlier", (0.0, 0.3), "Nobody in the set (outlier)",
              "share of the training set: images of classes held out of the label set, each given a known label"),
    NoiseTerm("multi", "multi", (0.0, 0.3), "Two people in one image (multi)",
              "share of the training set: two images of different classes side by side, labelled as one of them"),
):
    NOISE_TERMS.register(_term.name, _term)


def label_terms() -> tuple[str, ...]:
    """The wrong-identity terms (the sidebar's radio): they move labels only, and one applies at a time."""
    return tuple(n for n, t in NOISE_TERMS.items() if t.moves_labels_only)


def flip_kinds(flipped: np.ndarray) -> np.ndarray:
    """Per sample, its SAMPLE_KINDS name where only flips are known (label-only noise, older tables)."""
    return np.where(np.asarray(flipped, bool), WRONG_IDENTITY, "clean")


def outside_rates(spec: str) -> list[str]:
    """One message per term of a valid noise spec whose rate is outside the app's range for its kind."""
    out = []
    for kind, rate in parse_noise(spec):
        low, high = NOISE_TERMS.get(kind).rates
        if not low <= rate <= high:
            out.append(f"noise {kind}:{rate:g} is outside {low:g} to {high:g}")
    return out


@dataclass(frozen=True, eq=False)
class NoisyLabels:
    """Noisy labels plus the per-sample truth of what the noise did.

    `flipped` (labels != original) is the truth flagging is scored against: every noisy
    sample, of any kind, has a given label other than its (first) true class.
    """

    labels: np.ndarray  # int64, the labels training sees
    flipped: np.ndarray  # bool, labels != original: the truth flagging is scored against
    kind: str  # the spec's kinds, e.g. "symmetric" or "symmetric+outlier"
    rate: float  # the rates summed
    sample_kind: np.ndarray | None = None  # (N,) str: a SAMPLE_KINDS name per sample
    second: np.ndarray | None = None  # (N,) int64: multi's second true class (= its given label), else -1
    held_out: tuple[int, ...] = ()  # classes held out of the label set (outlier noise)

    def __post_init__(self) -> None:
        if self.sample_kind is None:
            object.__setattr__(self, "sample_kind", flip_kinds(self.flipped))
        if self.second is None:
            object.__setattr__(self, "second", np.full(self.labels.shape, -1, np.int64))


def _check(kind: str, rate: float) -> None:
    kinds = ("none", *label_terms())
    if kind not in kinds:
        raise FatvizError(f"Unknown noise kind {kind!r}: choose one of {', '.join(kinds)}.")
    if not 0.0 <= rate < 1.0:
        raise FatvizError(
            f"Noise rate {rate} is outside [0, 1): give the fraction of labels to flip, "
            "e.g. 0.2."
        )


def term_choices() -> str:
    """The noise terms as a user writes them (`symmetric:RATE, pairflip:RATE, ...`), for help and messages."""
    return ", ".join(f"{name}:RATE" for name in NOISE_TERMS.names())


def _parse_term(term: str, spec: str) -> tuple[str, float]:
    kind, sep, rate_text = term.partition(":")
    kind = kind.strip()
    if kind not in NOISE_TERMS:
        raise FatvizError(
            f"Unknown noise kind {kind!r} in {spec!r}: write 'none' or terms {term_choices()} "
            "joined by '+', e.g. 'symmetric:0.2+outlier:0.1'."
        )
    if not sep or not rate_text.strip():
        raise FatvizError(f"Noise spec {spec!r} has no rate for {kind}: write e.g. '{kind}:0.2'.")
    try:
        rate = float(rate_text)
    except ValueError:
        raise FatvizError(
            f"Noise rate {rate_text.strip()!r} in {spec!r} is not a number: write e.g. "
            f"'{kind}:0.2'."
        ) from None
    if not 0.0 <= rate < 1.0:
        raise FatvizError(
            f"Noise rate {rate:g} for {kind} in {spec!r} is outside [0, 1): give the share of samples it "
            "touches, e.g. 0.2."
        )
    return kind, rate


def parse_noise(spec: str) -> tuple[tuple[str, float], ...]:
    """Parse "none", "symmetric:0.2" or "symmetric:0.2+outlier:0.1+multi:0.05" into (kind, rate) terms.

    "none" gives no term. A kind appears at most once, symmetric and pairflip (both
    wrong identity) do not combine, and the rates sum below 1 (they touch disjoint samples).
    """
    text = spec.strip().lower()
    if text.partition(":")[0].strip() == "none":
        _, sep, rate_text = text.partition(":")
        if sep and rate_text.strip() not in ("", "0", "0.0"):
            raise FatvizError(f"Noise spec {spec!r}: 'none' takes no rate; write just 'none'.")
        return ()
    terms = tuple(_parse_term(term, spec) for term in text.split("+"))
    kinds = [k for k, _ in terms]
    if len(set(kinds)) < len(kinds):
        raise FatvizError(f"Noise spec {spec!r} names a kind twice: give each kind once.")
    wrong = [k for k in kinds if NOISE_TERMS.get(k).moves_labels_only]
    if len(wrong) > 1:
        raise FatvizError(f"Noise spec {spec!r} has both {' and '.join(wrong)}: each files samples under "
                          "another label, so give one of them.")
    total = sum(r for _, r in terms)
    if total >= 1.0:
        raise FatvizError(f"The noise rates in {spec!r} sum to {total:g}: each kind touches its own share of the "
                          "samples, so they must sum below 1.")
    return terms


def add_label_noise(
    labels: np.ndarray, kind: str, rate: float, num_classes: int, seed: int
) -> NoisyLabels:
    """Flip labels with the symmetric or pairflip convention (docs/METHOD.md section 6), seeded."""
    _check(kind, rate)
    original = np.asarray(labels).astype(np.int64)
    if kind == "none" or rate == 0.0:
        return NoisyLabels(original.copy(), np.zeros(original.shape, bool), kind, float(rate))
    if num_classes < 2:
        raise FatvizError(
            f"Label noise needs at least two classes to flip between; got {num_classes}."
        )
    if original.size and (original.min() < 0 or original.max() >= num_classes):
        raise FatvizError(
            f"Labels must lie in 0..{num_classes - 1} to add noise; "
            f"found {original.min()}..{original.max()}."
        )
    rng = np.random.default_rng(seed)
    move = rng.random(original.shape) < rate
    offset = NOISE_TERMS.get(kind).flip(rng, original.shape, num_classes)
    noisy = np.where(move, (original + offset) % num_classes, original)
    return NoisyLabels(noisy, noisy != original, kind, float(rate))


def hold_out_classes(labels: np.ndarray, num_classes: int, rate: float, seed: int) -> tuple[np.ndarray, int]:
    """(held-out classes, outlier count) for outlier noise at `rate`, deterministic given the seed.

    Classes leave the label set in a seeded order until their samples can supply the
    outliers: n_out = round(rate / (1 - rate) * N_known), so outliers make `rate` of the
    final training set (N_known + n_out). At least one class is held out and two stay known.
    """
    counts = np.bincount(labels, minlength=num_classes)
    order = np.random.default_rng([seed, 1]).permutation(num_classes)
    for h in range(1, num_classes - 1):
        held = np.sort(order[:h])
        n_known = int(counts.sum() - counts[held].sum())
        need = max(1, round(rate / (1.0 - rate) * n_known))
        if counts[held].sum() >= need:
            return held, need
    raise FatvizError(f"outlier:{rate:g} needs more held-out samples than {num_classes - 2} of the {num_classes} "
                      "classes hold (two must stay known): lower the outlier rate.")


def _squeeze_width(x: np.ndarray, width: int) -> np.ndarray:
    """Shrink the last axis to `width` columns by averaging column bins (weights sum to one)."""
    w = x.shape[-1]
    edges = (np.arange(width + 1) * w) // width
    return np.stack([x[..., edges[c]:edges[c + 1]].mean(axis=-1) for c in range(width)], axis=-1)


def side_by_side(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two images (..., H, W) squeezed to half width each and placed left (a) and right (b).

    Each column is an average of columns with weights summing to one, so the composite of
    normalised inputs is the normalised composite of the raw images.
    """
    left = a.shape[-1] // 2
    return np.concatenate([_squeeze_width(a, left), _squeeze_width(b, a.shape[-1] - left)], axis=-1)


def composite(dataset: Dataset, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Model inputs and display images of the composites of samples i and j (pairwise).

    Images ("image" datasets, NCHW inputs): side by side, each squeezed to half width, as two
    people stand in one ReID box; both stay whole, so a person sees two objects (an overlay
    would ghost them into one). Vectors (blobs, and digits, whose inputs are standardised
    pixels): the mean of the two vectors, a point between the two classes; standardising is
    affine per feature, so the mean of inputs is the input of the mean. A digit's display
    image is likewise the mean of the two images: the two digits overlaid at half intensity,
    exactly what the model sees.
    """
    if dataset.kind == "image":
        x = side_by_side(dataset.x_train[i], dataset.x_train[j]).astype(np.float32)
        imgs = dataset.images_train
        if imgs is None:
            return x, None
        # Display images are (N, H, W) or (N, H, W, 3): put the width axis last to squeeze it.
        a, b = (np.moveaxis(imgs[k].astype(np.float64), 2, -1) if imgs.ndim == 4 else imgs[k].astype(np.float64)
                for k in (i, j))
        shown = side_by_side(a, b)
        shown = np.moveaxis(shown, -1, 2) if imgs.ndim == 4 else shown
        return x, np.clip(np.round(shown), 0, 255).astype(np.uint8)
    x = ((dataset.x_train[i].astype(np.float64) + dataset.x_train[j]) / 2).astype(np.float32)
    imgs = dataset.images_train
    if imgs is None:
        return x, None
    return x, np.round((imgs[i].astype(np.float64) + imgs[j]) / 2).astype(np.uint8)


def _take(dataset: Dataset, train: np.ndarray, test: np.ndarray) -> Dataset:
    """The dataset restricted to the given train and test indices (every per-sample array)."""
    def pick(a: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
        return None if a is None else a[idx]

    return dataclasses.replace(
        dataset, x_train=dataset.x_train[train], y_train=dataset.y_train[train], images_train=pick(dataset.images_train, train),
        x_test=dataset.x_test[test], y_test=dataset.y_test[test], images_test=pick(dataset.images_test, test),
        cam_test=pick(dataset.cam_test, test), is_query_test=pick(dataset.is_query_test, test),
        given_train=pick(dataset.given_train, train), ids_train=pick(dataset.ids_train, train),
        ids_test=pick(dataset.ids_test, test))


def apply_noise(dataset: Dataset, spec: str, seed: int) -> tuple[Dataset, NoisyLabels]:
    """The dataset as noise leaves it, and its noisy labels with the per-sample truth (docs/METHOD.md 6).

    In this order, each on samples no earlier kind touched:

    1. `outlier`: `hold_out_classes` picks the held-out classes; n_out of their training
       samples (seeded) stay, each with a known label drawn uniformly, their other training
       samples and every test sample of theirs are dropped. Held-out classes keep their
       index and name (so an outlier's true class reads in every table), but no given label
       and no test label uses them.
    2. `multi`: round(rate * N) samples become `composite`s with a partner of another known
       class; y_train keeps the sample's class, the given label (and `second`) is the partner's.
    3. `symmetric` / `pairflip` among the known classes, on the samples still clean, each with
       probability rate * N / (those samples): `rate` of the set overall. Alone it is exactly
       `add_label_noise(labels, kind, rate, K, seed)`.
    """
    terms = dict(parse_noise(spec))
    unapplied = set(terms) - {"outlier", "multi"} - set(label_terms())  # the data terms this function applies
    if unapplied:
        raise FatvizError(f"Noise kind {', '.join(sorted(unapplied))} has no way to apply it here: choose "
                          f"{term_choices()} without it.")
    k = dataset.num_classes
    if dataset.given_train is not None:
        # A user's table with its own given labels and their truth: its noise is already there.
        if terms:
            raise FatvizError(f"This table brings its own labels and their truth (true_label), so its noise is known: "
                              f"set noise to none (not {spec}).")
        given = dataset.given_train.astype(np.int64)
        flipped = given != dataset.y_train
        return dataset, NoisyLabels(given, flipped, "given", float(flipped.mean()))
    if not terms:
        noisy = add_label_noise(dataset.y_train, "none", 0.0, k, seed)
        return dataset, dataclasses.replace(noisy, kind="none")
    if k < 2:
        raise FatvizError(f"Label noise needs at least two classes; got {k}.")
    notes: list[str] = []
    held = np.zeros(0, np.int64)
    given = dataset.y_train.astype(np.int64).copy()
    sample_kind = np.full(len(given), "clean", dtype=object)
    if terms.get("outlier"):
        held, n_out = hold_out_classes(dataset.y_train, k, terms["outlier"], seed)
        rng = np.random.default_rng([seed, 2])
        candidates = np.flatnonzero(np.isin(dataset.y_train, held))
        outliers = rng.choice(candidates, size=n_out, replace=False)
        keep = np.sort(np.concatenate([np.flatnonzero(~np.isin(dataset.y_train, held)), outliers]))
        test_keep = np.flatnonzero(~np.isin(dataset.y_test, held))
        names = ", ".join(dataset.class_names[c] for c in held)
        notes.append(f"outlier noise: class(es) {names} held out of the label set; {n_out} of their "
                     f"{len(candidates)} training samples stay with known labels, "
                     f"{len(dataset.y_test) - len(test_keep)} test samples dropped.")
        is_outlier = np.isin(keep, outliers)
        dataset = _take(dataset, keep, test_keep)
        known = np.setdiff1d(np.arange(k), held)
        given = dataset.y_train.copy()
        given[is_outlier] = rng.choice(known, size=int(is_outlier.sum()))
        sample_kind = np.where(is_outlier, "outlier", "clean").astype(object)
    known = np.setdiff1d(np.arange(k), held)
    n = len(given)
    second = np.full(n, -1, np.int64)
    if terms.get("multi"):
        rng = np.random.default_rng([seed, 3])
        pool = np.flatnonzero(sample_kind == "clean")
        n_multi = min(round(terms["multi"] * n), len(pool))
        base = np.sort(rng.choice(pool, size=n_multi, replace=False))
        y = dataset.y_train
        partners = np.empty(n_multi, np.int64)
        for c in np.unique(y[base]):
            rows = y[base] == c
            others = pool[y[pool] != c]  # clean samples: their class is known and whole
            partners[rows] = rng.choice(others, size=int(rows.sum()))
        x, imgs = composite(dataset, base, partners)
        x_train = dataset.x_train.copy()
        x_train[base] = x
        images_train = dataset.images_train
        if imgs is not None:
            images_train = images_train.copy()
            images_train[base] = imgs
        dataset = dataclasses.replace(dataset, x_train=x_train, images_train=images_train)
        second[base] = y[partners]
        given[base] = y[partners]
        sample_kind[base] = "multi"
        notes.append(f"multi noise: {n_multi} training samples are composites of two classes, labelled as the second.")
    wrong = next((kind for kind in label_terms() if kind in terms), None)
    if wrong is not None and terms[wrong] > 0:
        clean = np.flatnonzero(sample_kind == "clean")
        rate = terms[wrong] if len(clean) == n else min(terms[wrong] * n / max(len(clean), 1), np.nextafter(1.0, 0.0))
        # Known classes renumbered 0..K'-1, so a flip never lands on a held-out class.
        index = np.full(k, -1, np.int64)
        index[known] = np.arange(len(known))
        flips = add_label_noise(index[given[clean]], wrong, rate, len(known), seed)
        given[clean] = known[flips.labels]
        sample_kind[clean[flips.flipped]] = WRONG_IDENTITY
    if notes:
        dataset = dataclasses.replace(dataset, notes=(*dataset.notes, *notes))
    flipped = given != dataset.y_train
    kinds = sample_kind.astype(str)
    kind_text = "+".join(kind for kind in NOISE_TERMS.names() if kind in terms)
    return dataset, NoisyLabels(given, flipped, kind_text, round(sum(terms.values()), 12), kinds, second,
                                tuple(int(c) for c in held))

