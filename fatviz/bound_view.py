"""The geometry behind the 2-D teaching view of the triplet bound (docs/METHOD.md section 2).

For one triplet (anchor a, positive p, negative n) in a centroid option's anchor space:

    [d(a,p) - d(a,n) + m]+  <=  [d(a,c_a) - d(a,c_n) + m]+ + R_a + R_n

`bound_terms` returns every number of both sides; `hardest_triplet` picks the triplet
a teacher wants to show first; `whole_set_bounds` gives the exact loss against the bound
over all triplets for each centroid option. Nothing here draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from fatviz.catalogue import DEFAULT_CENTROID
from fatviz.centroids import (
    CENTROIDS,
    anchor_space,
    check_option,
    compute_centroids,
)
from fatviz.data import BlobSpec, load_dataset
from fatviz.errors import FatvizError
from fatviz.losses import default_margin, triplet_bound


@dataclass(frozen=True)
class BoundTerms:
    """Every number of both sides of the bound for one triplet, in the option's anchor space."""

    option: str
    margin: float
    anchor: int
    positive: int
    negative: int
    anchor_class: int
    negative_class: int
    points: np.ndarray  # (N, 2) every point in the anchor space (unit circle for normalised options)
    centres: np.ndarray  # (K, 2) class centres in the anchor space
    radii: np.ndarray  # (K,) largest member-to-centre distance per class
    d_ap: float  # d(a, p)
    d_an: float  # d(a, n)
    d_a_ca: float  # d(a, c_a): anchor to its own centre
    d_a_cn: float  # d(a, c_n): anchor to the negative's centre
    radius_a: float  # R_a
    radius_n: float  # R_n

    @property
    def loss(self) -> float:
        """The left side: the triplet's hinge [d(a,p) - d(a,n) + m]+."""
        return max(0.0, self.d_ap - self.d_an + self.margin)

    @property
    def point_to_set(self) -> float:
        """The right side's first term: [d(a,c_a) - d(a,c_n) + m]+."""
        return max(0.0, self.d_a_ca - self.d_a_cn + self.margin)

    @property
    def bound(self) -> float:
        """The right side: point-to-set term plus both radii."""
        return self.point_to_set + self.radius_a + self.radius_n

    @property
    def gap(self) -> float:
        """How loose the bound is for this triplet (bound - loss, never negative)."""
        return self.bound - self.loss

    @property
    def positive_reach(self) -> float:
        """d(a,c_a) + R_a: the triangle inequality's upper limit on d(a,p)."""
        return self.d_a_ca + self.radius_a

    @property
    def negative_reach(self) -> float:
        """d(a,c_n) - R_n: the triangle inequality's lower limit on d(a,n)."""
        return self.d_a_cn - self.radius_n


def teaching_blobs(n_classes: int = 4, spread: float = 1.0, outliers: float = 0.0, seed: int = 0,
                   n_per_class: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A small 2-D blobs training split (points standardised, labels 0..K-1) for the teaching view."""
    spec = BlobSpec(n_classes=n_classes, n_per_class=n_per_class, dim=2, spread=spread,
                    outlier_fraction=outliers)
    ds = load_dataset("blobs", blobs=spec, seed=seed)
    return ds.x_train.astype(np.float64), ds.y_train.astype(np.int64)


def option_space(points: np.ndarray, labels: np.ndarray, option: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points, class centres and radii in the option's anchor space (float64)."""
    check_option(option)
    x = torch.as_tensor(np.asarray(points, dtype=np.float64))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    cents = compute_centroids(x, y, option)
    return (anchor_space(x, option).numpy(), cents.centres.numpy(), cents.radius.numpy())


def _check_triplet(labels: np.ndarray, a: int, p: int, n: int) -> None:
    """Raise a FatvizError unless (a, p, n) is a valid triplet of these labels."""
    count = len(labels)
    for name, i in (("anchor", a), ("positive", p), ("negative", n)):
        if not 0 <= i < count:
            raise FatvizError(f"The {name} must be a point index in 0..{count - 1}, not {i}.")
    if p == a:
        raise FatvizError("The positive must be another point than the anchor.")
    if labels[p] != labels[a]:
        raise FatvizError(f"The positive must share the anchor's class ({labels[a]}), not {labels[p]}.")
    if labels[n] == labels[a]:
        raise FatvizError(f"The negative must come from another class than the anchor's ({labels[a]}).")


def bound_terms(points: np.ndarray, labels: np.ndarray, a: int, p: int, n: int, option: str = DEFAULT_CENTROID,
                margin: float | None = None) -> BoundTerms:
    """Both sides of the bound for triplet (a, p, n), measured in the option's anchor space."""
    labels = np.asarray(labels, dtype=np.int64)
    _check_triplet(labels, a, p, n)
    margin = default_margin(option) if margin is None else float(margin)
    if margin < 0:
        raise FatvizError("The margin must be >= 0.")
    x, centres, radii = option_space(points, labels, option)
    ya, yn = int(labels[a]), int(labels[n])

    def dist(u: np.ndarray, v: np.ndarray) -> float:
        return float(np.linalg.norm(u - v))

    return BoundTerms(
        option=option, margin=margin, anchor=a, positive=p, negative=n, anchor_class=ya, negative_class=yn,
        points=x, centres=centres, radii=radii,
        d_ap=dist(x[a], x[p]), d_an=dist(x[a], x[n]), d_a_ca=dist(x[a], centres[ya]), d_a_cn=dist(x[a], centres[yn]),
        radius_a=float(radii[ya]), radius_n=float(radii[yn]))


def hardest_triplet(points: np.ndarray, labels: np.ndarray, option: str = DEFAULT_CENTROID,
                    anchor: int | None = None) -> tuple[int, int, int]:
    """(a, p, n) with the farthest positive and nearest negative of the anchor, in the option's space.

    With anchor=None the anchor is the one whose hardest triplet has the largest
    d(a,p) - d(a,n): the triplet batch-hard mining would pick first.
    """
    labels = np.asarray(labels, dtype=np.int64)
    x = option_space(points, labels, option)[0]
    d = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=-1)
    same = labels[:, None] == labels[None, :]
    pos = same & ~np.eye(len(labels), dtype=bool)
    d_pos = np.where(pos, d, -np.inf)
    d_neg = np.where(~same, d, np.inf)
    valid = pos.any(1) & (~same).any(1)
    if not valid.any():
        raise FatvizError("No valid triplet: every anchor needs another point of its class and one of another.")
    if anchor is None:
        hardness = np.where(valid, d_pos.max(1) - d_neg.min(1), -np.inf)
        anchor = int(np.argmax(hardness))
    elif not 0 <= anchor < len(labels):
        raise FatvizError(f"The anchor must be a point index in 0..{len(labels) - 1}, not {anchor}.")
    elif not valid[anchor]:
        raise FatvizError(f"Point {anchor} is the only member of its class: it has no positive.")
    return anchor, int(np.argmax(d_pos[anchor])), int(np.argmin(d_neg[anchor]))


def moved_triplet(moved, labels: np.ndarray) -> tuple[np.ndarray, int, int, int] | None:
    """The points and triplet a student left in the draggable view ({points, a, p, n} from the
    browser), or None when that is not a valid triplet of these labels' points (another data set,
    a point that is not a number): the page then shows its own points."""
    labels = np.asarray(labels, dtype=np.int64)
    if not isinstance(moved, dict):
        return None
    try:
        points = np.asarray(moved["points"], dtype=np.float64)
        a, p, n = (int(moved[k]) for k in ("a", "p", "n"))
    except (KeyError, TypeError, ValueError):
        return None
    if points.shape != (len(labels), 2) or not np.isfinite(points).all():
        return None
    try:
        _check_triplet(labels, a, p, n)
    except FatvizError:
        return None
    return points, a, p, n


def whole_set_bounds(points: np.ndarray, labels: np.ndarray, margin: float | None = None,
                     options: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Exact mean triplet loss and the FAT bound over all triplets, one row per centroid option
    (every registered one unless `options` names some).

    Columns: margin, exact, point_to_set, radius_term, bound (= point_to_set + radius_term),
    gap (= bound - exact), triplets. margin=None uses each option's default.
    """
    x = torch.as_tensor(np.asarray(points, dtype=np.float64))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    rows = []
    for option in CENTROIDS.names() if options is None else options:
        b = triplet_bound(x, y, option, margin)
        rows.append({"option": option, "margin": b.margin, "exact": b.exact, "point_to_set": b.point_to_set,
                     "radius_term": b.radius_term, "bound": b.bound, "gap": b.gap, "triplets": b.num_triplets})
    return pd.DataFrame(rows).set_index("option")


def inequality_latex(t: BoundTerms) -> str:
    """The bound for this triplet as a LaTeX block, symbols first, then the numbers (in lines short
    enough for a 1024-px screen)."""
    def f(v: float) -> str:
        return f"{v:.3f}"

    return (
        r"\begin{aligned}"
        r"\big[d(a,p) - d(a,n) + m\big]_+ &= \big[" + f(t.d_ap) + " - " + f(t.d_an) + " + " + f(t.margin)
        + r"\big]_+ = \mathbf{" + f(t.loss) + r"}\\"
        r"&\le \big[d(a,c_a) - d(a,c_n) + m\big]_+ + R_a + R_n \\ &= \big[" + f(t.d_a_ca) + " - " + f(t.d_a_cn)
        + " + " + f(t.margin) + r"\big]_+ + " + f(t.radius_a) + " + " + f(t.radius_n)
        + r"\\ &= " + f(t.point_to_set) + " + " + f(t.radius_a) + " + " + f(t.radius_n)
        + r" = \mathbf{" + f(t.bound) + r"}"
        r"\end{aligned}"
    )


def triangle_latex(t: BoundTerms) -> str:
    """The two triangle-inequality steps the bound rests on, with this triplet's numbers."""
    return (
        r"\begin{aligned}"
        r"d(a,p) = " + f"{t.d_ap:.3f}" + r" &\le d(a,c_a) + R_a = " + f"{t.d_a_ca:.3f} + {t.radius_a:.3f} = "
        + f"{t.positive_reach:.3f}" + r"\\"
        r"d(a,n) = " + f"{t.d_an:.3f}" + r" &\ge d(a,c_n) - R_n = " + f"{t.d_a_cn:.3f} - {t.radius_n:.3f} = "
        + f"{t.negative_reach:.3f}"
        r"\end{aligned}"
    )
