"""Synthetic label noise (symmetric and pairflip), with the ground-truth flipped mask."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fatviz.errors import FatvizError

NOISE_KINDS = ("none", "symmetric", "pairflip")


@dataclass(frozen=True, eq=False)
class NoisyLabels:
    """Noisy labels plus the mask of samples whose label was changed."""

    labels: np.ndarray  # int64, the labels training sees
    flipped: np.ndarray  # bool, labels != original: the truth flagging is scored against
    kind: str
    rate: float


def _check(kind: str, rate: float) -> None:
    if kind not in NOISE_KINDS:
        raise FatvizError(
            f"Unknown noise kind {kind!r}: choose one of {', '.join(NOISE_KINDS)}."
        )
    if not 0.0 <= rate < 1.0:
        raise FatvizError(
            f"Noise rate {rate} is outside [0, 1): give the fraction of labels to flip, "
            "e.g. 0.2."
        )


def parse_noise(spec: str) -> tuple[str, float]:
    """Parse "none", "symmetric:0.2" or "pairflip:0.4" into (kind, rate)."""
    text = spec.strip().lower()
    kind, sep, rate_text = text.partition(":")
    kind = kind.strip()
    if kind == "none":
        if sep and rate_text.strip() not in ("", "0", "0.0"):
            raise FatvizError(f"Noise spec {spec!r}: 'none' takes no rate; write just 'none'.")
        return "none", 0.0
    if kind not in NOISE_KINDS:
        raise FatvizError(
            f"Unknown noise kind in {spec!r}: write 'none', 'symmetric:RATE' or "
            "'pairflip:RATE', e.g. 'symmetric:0.2'."
        )
    if not sep or not rate_text.strip():
        raise FatvizError(f"Noise spec {spec!r} has no rate: write e.g. '{kind}:0.2'.")
    try:
        rate = float(rate_text)
    except ValueError:
        raise FatvizError(
            f"Noise rate {rate_text.strip()!r} in {spec!r} is not a number: write e.g. "
            f"'{kind}:0.2'."
        ) from None
    _check(kind, rate)
    return kind, rate


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
    if kind == "symmetric":
        # An offset uniform in 1..K-1 lands on each other class with probability 1/(K-1).
        offset = rng.integers(1, num_classes, size=original.shape)
    else:
        offset = np.ones(original.shape, np.int64)
    noisy = np.where(move, (original + offset) % num_classes, original)
    return NoisyLabels(noisy, noisy != original, kind, float(rate))
