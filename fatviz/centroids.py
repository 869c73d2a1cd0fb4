"""The four centroid options of FAT (docs/METHOD.md section 3): class centres, radii, counts.

| option           | centre                          | anchor space  |
|------------------|---------------------------------|---------------|
| `mean`           | mean of f                       | raw f         |
| `mean-norm`      | mean of u = f/|f|               | normalised u  |
| `norm-mean`      | mean of f, then normalised      | normalised u  |
| `norm-mean-norm` | mean of u, then normalised      | normalised u  |
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

# The options themselves are declared without torch (settings and --help read them); they are
# re-exported here, where the library's users look for them.
from fatviz.catalogue import (  # noqa: F401
    CENTRE_SOURCES,
    CENTROIDS,
    DEFAULT_CENTROID,
    DEFAULT_EMA_BETA,
    CentreSource,
    CentroidOption,
    check_option,
    is_normalized,
    parse_centres,
)
from fatviz.errors import FatvizError

# Below this norm a vector is treated as zero: it stays zero instead of becoming NaN.
_EPS = 1e-12


class _L2Normalize(torch.autograd.Function):
    """x / |x| row-wise, with the backward written out: (g - u (u . g)) / |x|.

    Autograd's own backward through norm and division costs about four times as much,
    and normalising the anchors is most of FAT's cost beyond the distances themselves.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        # F.normalize divides a zero row by eps, so its gradient there is 1/eps = 1e12 times
        # the incoming one; dividing by inf instead keeps the value 0 and the gradient 0.
        denom = norm.masked_fill_(norm <= _EPS, float("inf"))
        u = x / denom
        ctx.save_for_backward(u, denom)
        return u

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        u, denom = ctx.saved_tensors
        return torch.addcmul(grad, u, (u * grad).sum(-1, keepdim=True), value=-1.0).div_(denom)


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Divide rows by their L2 norm; zero rows stay zero with a zero gradient (no NaN)."""
    return _L2Normalize.apply(x)


def anchor_space(features: torch.Tensor, option: str) -> torch.Tensor:
    """Map features into the space where the option measures anchor-to-centre distances."""
    return l2_normalize(features) if is_normalized(option) else features


def euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances (rows of a to rows of b) with a finite gradient at zero."""
    sq = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    # Clamping before sqrt keeps the gradient finite where two points coincide.
    return sq.clamp_min(1e-12).sqrt()


def precise_euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise distances from explicit differences: slower, but free of cancellation error."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


@dataclass(frozen=True)
class Centroids:
    """Per-class centres in the option's anchor space, with member statistics.

    Absent classes (no member, or zero total weight) have `present == False`, a zero
    centre, zero count and zero radius: never NaN.
    """

    option: str
    centres: torch.Tensor  # (K, D)
    counts: torch.Tensor  # (K,) total member weight (member count when unweighted)
    present: torch.Tensor  # (K,) bool
    radius: torch.Tensor  # (K,) max distance of a member to its centre
    mean_distance: torch.Tensor  # (K,) weighted mean distance of members to their centre

    @property
    def num_classes(self) -> int:
        """Number of class slots, present or not."""
        return int(self.centres.shape[0])

    def to(self, device: torch.device | str) -> Centroids:
        """Copy onto another device."""
        return Centroids(
            self.option,
            *(t.to(device) for t in (self.centres, self.counts, self.present, self.radius, self.mean_distance)),
        )

    def detach(self) -> Centroids:
        """Centres are data, not parameters: a copy cut from the autograd graph."""
        return Centroids(
            self.option,
            *(t.detach() for t in (self.centres, self.counts, self.present, self.radius, self.mean_distance)),
        )


def _summed(features: torch.Tensor, option: str, anchors: torch.Tensor | None = None) -> torch.Tensor:
    """What the option averages: unit vectors for mean-norm and norm-mean-norm, raw features otherwise.

    `anchors` (the features already in the option's anchor space) saves normalising twice.
    """
    if CENTROIDS.get(option).normalise_members:
        return l2_normalize(features) if anchors is None else anchors
    return features


def centres_from_sums(sums: torch.Tensor, counts: torch.Tensor, option: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres (K, D) and presence (K,) from per-class sums and total weights; absent rows are zero."""
    present = counts > 0
    mean = sums / counts.clamp_min(_EPS)[:, None]
    if CENTROIDS.get(option).normalise_centre:
        mean = l2_normalize(mean)
    return torch.where(present[:, None], mean, torch.zeros_like(mean)), present


def class_sums(features: torch.Tensor, labels: torch.Tensor, option: str, num_classes: int | None = None,
               weights: torch.Tensor | None = None,
               anchors: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class, the weighted sum of what the option averages (K, D) and the total weight (K,), detached.

    Without `num_classes` the slots run up to the largest label; `anchors` may pass
    `anchor_space(features, option)` when the caller has it already.
    """
    dtype = features.dtype if features.dtype in (torch.float32, torch.float64) else torch.float32
    features = features.detach().to(dtype)
    anchors = None if anchors is None or anchors.dtype != dtype else anchors.detach()
    summed = _summed(features, option, anchors)
    if weights is None:  # the loss's own batch centres, every step: no multiply by ones
        counts = torch.bincount(labels, minlength=1 if num_classes is None else num_classes).to(summed.dtype)
    else:
        if num_classes is None:
            num_classes = int(labels.max()) + 1 if labels.numel() else 1
        weights = weights.detach().to(summed.dtype)
        counts = summed.new_zeros(num_classes).index_add_(0, labels, weights)
        summed = summed * weights[:, None]
    sums = summed.new_zeros(counts.shape[0], summed.shape[1]).index_add_(0, labels, summed)
    return sums, counts


def batch_centres(features: torch.Tensor, labels: torch.Tensor, option: str, num_classes: int | None = None,
                  anchors: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres and presence of each class from one batch, detached, without the radius pass.

    The same centres as `compute_centroids(features, labels, option, num_classes).centres`
    in one pass over the batch: what a loss needs every step.
    """
    return centres_from_sums(*class_sums(features, labels, option, num_classes, anchors=anchors), option)


class CentroidAccumulator:
    """Build centroids over a whole dataset in chunks, in two passes over the features.

    Pass 1 (`add`) sums members per class; `centres()` then fixes the centres. Pass 2
    (`add_radius`) measures each member's distance to its centre. Both passes are
    O(N * D) with index_add / scatter, so no N x N or N x K matrix is ever built.
    """

    def __init__(self, option: str, num_classes: int, dim: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        check_option(option)
        if num_classes < 1:
            raise FatvizError("num_classes must be at least 1.")
        self.option = option
        self._sums = torch.zeros(num_classes, dim, device=device, dtype=dtype)
        self._counts = torch.zeros(num_classes, device=device, dtype=dtype)
        self._radius = torch.zeros(num_classes, device=device, dtype=dtype)
        self._dist_sums = torch.zeros(num_classes, device=device, dtype=dtype)
        self._centres: torch.Tensor | None = None

    def _prepare(self, features: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None):
        labels = labels.to(self._sums.device).long()
        features = features.to(self._sums.device, self._sums.dtype)
        if weights is None:
            weights = torch.ones(labels.shape[0], device=labels.device, dtype=features.dtype)
        else:
            weights = weights.to(labels.device, features.dtype)
        if labels.numel() and (labels.min() < 0 or labels.max() >= self._sums.shape[0]):
            raise FatvizError(f"Labels must lie in 0..{self._sums.shape[0] - 1}.")
        return features, labels, weights

    def add(self, features: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> None:
        """Pass 1: add a chunk of (features, labels, optional per-sample weights >= 0)."""
        if self._centres is not None:
            raise RuntimeError("add() after centres(): start a new accumulator.")
        features, labels, weights = self._prepare(features, labels, weights)
        # `mean` averages raw features; the other options average unit vectors (u) or
        # raw features (norm-mean) and normalise at the end.
        self._sums.index_add_(0, labels, _summed(features, self.option) * weights[:, None])
        self._counts.index_add_(0, labels, weights)

    def centres(self) -> torch.Tensor:
        """Fix and return the (K, D) centres; absent classes get a zero row."""
        if self._centres is None:
            self._centres = centres_from_sums(self._sums, self._counts, self.option)[0]
        return self._centres

    def fix_centres(self, centres: torch.Tensor) -> None:
        """Measure pass 2 against centres from elsewhere (a moving average) instead of pass 1's means."""
        self._centres = centres.detach().to(self._sums.device, self._sums.dtype)

    def add_radius(self, features: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> None:
        """Pass 2: measure members' distances to their fixed centres (radius, mean distance)."""
        centres = self.centres()
        features, labels, weights = self._prepare(features, labels, weights)
        anchors = anchor_space(features, self.option)
        dist = (anchors - centres[labels]).norm(dim=1)
        member = weights > 0
        self._radius.scatter_reduce_(0, labels[member], dist[member], reduce="amax", include_self=True)
        self._dist_sums.index_add_(0, labels, dist * weights)

    def result(self) -> Centroids:
        """The finished centroids (call after both passes)."""
        centres = self.centres()
        present = self._counts > 0
        mean_distance = torch.where(present, self._dist_sums / self._counts.clamp_min(_EPS),
                                    torch.zeros_like(self._dist_sums))
        return Centroids(self.option, centres, self._counts.clone(), present, self._radius.clone(), mean_distance)


def compute_centroids(features: torch.Tensor, labels: torch.Tensor, option: str = DEFAULT_CENTROID,
                      num_classes: int | None = None, weights: torch.Tensor | None = None,
                      chunk_size: int = 65536) -> Centroids:
    """Centres, counts, radii and mean member distances of every class, in O(N * D).

    `weights` (N,) >= 0 lets confidence masks or soft memberships decide which samples
    shape the centres; a sample of weight 0 is ignored entirely (also for the radius).
    The result is detached: centres are data, not parameters.
    """
    features = features.detach()
    labels = labels.detach().long()
    if features.ndim != 2 or labels.ndim != 1 or features.shape[0] != labels.shape[0]:
        raise FatvizError("compute_centroids needs features (N, D) and labels (N,) of the same length.")
    if num_classes is None:
        num_classes = int(labels.max().item()) + 1 if labels.numel() else 1
    dtype = features.dtype if features.dtype in (torch.float32, torch.float64) else torch.float32
    acc = CentroidAccumulator(option, num_classes, features.shape[1], features.device, dtype)
    w = None if weights is None else weights.detach()
    for start in range(0, features.shape[0], chunk_size):
        sl = slice(start, start + chunk_size)
        acc.add(features[sl], labels[sl], None if w is None else w[sl])
    for start in range(0, features.shape[0], chunk_size):
        sl = slice(start, start + chunk_size)
        acc.add_radius(features[sl], labels[sl], None if w is None else w[sl])
    return acc.result()


# -- How fresh the training centres are ------------------------------------------------------------
# (the `centres` setting is read in fatviz.catalogue; the moving average lives here)


class MovingCentres:
    """Training centres as a moving average over batches (`centres = ema:BETA`): detached state.

    For each class k with weight in a batch, m_k <- beta * m_k + (1 - beta) * b_k, with b_k the
    batch's weighted mean of what the option averages (raw features for mean and norm-mean, unit
    vectors for mean-norm and norm-mean-norm); a class not in the batch keeps m_k. The centres
    read are the option's projection of m, so they lie on the sphere for norm-mean and
    norm-mean-norm and inside the ball for mean-norm, like the whole-set ones. Nothing carries a
    gradient, the batch's share included: like `epoch` and `batch` centres, these are data.

    It starts from `start` (the trainer passes the epoch-0 whole-set centres): a class no batch has
    reached yet keeps that centre; a class absent there too takes its first batch's mean.
    """

    def __init__(self, start: Centroids, beta: float) -> None:
        if not 0.0 < beta < 1.0:
            raise FatvizError(f"A moving average needs 0 < beta < 1, not {beta:g}.")
        self.option = start.option
        self.beta = float(beta)
        self.means = start.centres.detach().clone()
        self.present = start.present.detach().clone()

    def update(self, sums: torch.Tensor, counts: torch.Tensor) -> None:
        """Move the centres of the classes in one batch, from its per-class sums and weights (`class_sums`)."""
        sums, counts = sums.to(self.means), counts.to(self.means)
        in_batch = counts > 0
        batch_mean = sums / counts.clamp_min(_EPS)[:, None]
        moved = torch.where(self.present[:, None], self.beta * self.means + (1.0 - self.beta) * batch_mean,
                            batch_mean)
        self.means = torch.where(in_batch[:, None], moved, self.means)
        self.present = self.present | in_batch

    def centres(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The centres (K, D), projected as the option says, and which classes have one (K,)."""
        return centres_from_sums(self.means, self.present.to(self.means.dtype), self.option)

    def centroids(self, features: torch.Tensor, labels: torch.Tensor,
                  weights: torch.Tensor | None = None) -> Centroids:
        """The moving centres as Centroids; counts, radius and mean distance are those of these members."""
        centres, present = self.centres()
        acc = CentroidAccumulator(self.option, centres.shape[0], centres.shape[1], centres.device, centres.dtype)
        features, labels = features.detach(), labels.detach().long()
        w = None if weights is None else weights.detach()
        acc.add(features, labels, w)
        acc.fix_centres(centres)
        acc.add_radius(features, labels, w)
        got = acc.result()
        return Centroids(self.option, centres, got.counts, present, got.radius, got.mean_distance)
