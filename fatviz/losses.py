"""The FAT loss family, its triplet-loss bound, and the triplet baselines it replaces.

Everything here is an ordinary PyTorch loss: `loss = FATLoss()(embeddings, labels)`.
Kept together because the bound is checked against the exact triplet loss and the baselines
share its masks and distances. The `build_*` functions at the end turn settings into the
training losses that `fatviz.catalogue.LOSSES` names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

# The losses a run can choose, and the FAT defaults, are declared without torch (settings and
# --help read them); they are re-exported here, where the library's users look for them.
from fatviz.catalogue import (  # noqa: F401
    DEFAULT_CENTROID,
    LOSSES,
    NEGATIVE_MODES,
    NORMALISED_COMPACTNESS,
    RADIUS_MODES,
    LossSpec,
    default_compactness_weight,
    default_margin,
)
from fatviz.centroids import (
    Centroids,
    anchor_space,
    batch_centres,
    check_option,
    compute_centroids,
    euclidean,
    is_normalized,
    l2_normalize,
    precise_euclidean,
)
from fatviz.errors import FatvizError


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of values where mask holds; 0 (still on the graph) when the mask is empty."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


class _AllNegativesHinge(torch.autograd.Function):
    """FAT's point-to-set sum over every (anchor, other class) pair, with its backward written out.

    Returns (sum over a, k of w[a, k] * max(0, d[a, y_a] - d[a, k] + margin), d[:, y_a]).
    The same values and gradients as the autograd expression, in about half the passes
    over the (B, K) matrix: the gradient of d[a, y_a] is folded into one scatter.
    """

    @staticmethod
    def forward(ctx, dist: torch.Tensor, labels: torch.Tensor, pair_w: torch.Tensor,
                margin: float) -> tuple[torch.Tensor, torch.Tensor]:
        d_pos = dist.gather(1, labels[:, None])
        hinge = (d_pos - dist).add_(margin).clamp_min_(0.0)
        ctx.save_for_backward(hinge, labels, pair_w)
        return (hinge * pair_w).sum(), d_pos

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_sum: torch.Tensor, grad_pos: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        hinge, labels, pair_w = ctx.saved_tensors
        g = (pair_w * grad_sum).masked_fill_(hinge <= 0, 0.0)
        own = g.sum(1, keepdim=True) + grad_pos
        return g.neg_().scatter_add_(1, labels[:, None], own), None, None, None


@dataclass(frozen=True)
class FATTerms:
    """The two terms of the FAT loss and their weighted total, for one call."""

    point_to_set: torch.Tensor
    compactness: torch.Tensor
    total: torch.Tensor


class FATLoss(nn.Module):
    """Fast Approximated Triplet loss: point-to-set hinge plus a cluster compactness term.

    Called as `loss(embeddings, labels)` (centres from the batch, detached) or
    `loss(embeddings, labels, centroids=c)` with centres computed elsewhere, e.g. over
    the whole training set at the start of each epoch (`fatviz.centroids.compute_centroids`).

    With negatives="all" the value is the mean over (anchor a, other present class k) of
    max(0, d(a, c_ya) - d(a, c_k) + margin), plus compactness_weight times either the mean
    over anchors of d(a, c_ya) (radius="mean", the public code) or the largest class
    radius max_a d(a, c_ya) (radius="max", the paper's bound). d is Euclidean in the
    option's anchor space. Anchors whose class has no centre contribute nothing.
    """

    def __init__(self, option: str = DEFAULT_CENTROID, margin: float | None = None,
                 negatives: str = "all", hardest_k: int = 5, radius: str = "mean",
                 compactness_weight: float | None = None) -> None:
        super().__init__()
        self.option = check_option(option)
        if negatives not in NEGATIVE_MODES:
            raise FatvizError(f"negatives must be one of {', '.join(NEGATIVE_MODES)}, not {negatives!r}.")
        if radius not in RADIUS_MODES:
            raise FatvizError(f"radius must be one of {', '.join(RADIUS_MODES)}, not {radius!r}.")
        if hardest_k < 1:
            raise FatvizError("hardest_k must be at least 1.")
        self.margin = default_margin(option) if margin is None else float(margin)
        self.compactness_weight = (default_compactness_weight(option) if compactness_weight is None
                                   else float(compactness_weight))
        if self.margin < 0 or self.compactness_weight < 0:
            raise FatvizError("margin and compactness weight must be >= 0.")
        self.negatives = negatives
        self.hardest_k = int(hardest_k)
        self.radius = radius

    def extra_repr(self) -> str:
        """Shown by print(module)."""
        return (f"option={self.option!r}, margin={self.margin}, negatives={self.negatives!r}, "
                f"hardest_k={self.hardest_k}, radius={self.radius!r}, "
                f"compactness_weight={self.compactness_weight}")

    def terms(self, embeddings: torch.Tensor, labels: torch.Tensor, centroids: Centroids | None = None,
              sample_weights: torch.Tensor | None = None) -> FATTerms:
        """Compute both terms; `sample_weights` (B,) scale each anchor's contribution."""
        labels = labels.long()
        anchors = anchor_space(embeddings, self.option)
        if centroids is None:
            centres, present = batch_centres(embeddings, labels, self.option, anchors=anchors)
        elif centroids.option != self.option:
            raise FatvizError(f"Centroids were computed with {centroids.option!r}, the loss uses {self.option!r}.")
        else:
            num_classes = centroids.num_classes
            if labels.numel() and int(labels.max()) >= num_classes:
                raise FatvizError(f"A label ({int(labels.max())}) has no centre slot (only {num_classes} classes).")
            centres = centroids.centres.detach().to(embeddings.device)
            present = centroids.present.to(embeddings.device)
        centres = centres.to(embeddings.dtype)
        dist = euclidean(anchors, centres)  # (B, K)
        anchor_w = present[labels].to(dist.dtype)
        if sample_weights is not None:
            anchor_w = anchor_w * sample_weights.to(dist.dtype)

        # Every weighted mean below divides by max(total weight, tiny): with no weight at
        # all the numerator is an exact 0, so the term is 0 and stays on the graph.
        if self.negatives == "all":
            pair_w = anchor_w[:, None] * present.to(dist.dtype)[None, :]
            pair_w.scatter_(1, labels[:, None], 0.0)  # the anchor's own class is never a negative
            hinge_sum, d_pos = _AllNegativesHinge.apply(dist, labels, pair_w, self.margin)
            point_to_set = hinge_sum / pair_w.sum().clamp_min(1e-12)
        elif self.negatives == "average":
            d_pos = dist.gather(1, labels[:, None])  # (B, 1)
            # Average of the other present centres, per anchor class.
            pres = present.to(centres.dtype)
            total = (centres * pres[:, None]).sum(0)
            n_other = pres.sum() - pres[labels]
            avg = (total[None, :] - centres[labels] * pres[labels][:, None]) / n_other.clamp_min(1)[:, None]
            d_avg = (anchors - avg).norm(dim=1)
            hinge = F.relu(d_pos.squeeze(1) - d_avg + self.margin)
            valid = anchor_w * (n_other > 0).to(dist.dtype)
            point_to_set = (hinge * valid).sum() / valid.sum().clamp_min(1e-12)
        else:  # hardest: the k other centres nearest to the anchor's own centre
            d_pos = dist.gather(1, labels[:, None])
            cc = euclidean(centres, centres)
            cc = cc.masked_fill(~present[None, :] | ~present[:, None], float("inf"))
            cc.fill_diagonal_(float("inf"))
            k = max(1, min(self.hardest_k, int(present.sum()) - 1))
            near_val, near_idx = cc.topk(k, dim=1, largest=False)  # (K, k)
            idx = near_idx[labels]  # (B, k)
            ok = torch.isfinite(near_val[labels])
            hinge = F.relu(d_pos - dist.gather(1, idx) + self.margin)
            pair_w = ok.to(dist.dtype) * anchor_w[:, None]
            point_to_set = (hinge * pair_w).sum() / pair_w.sum().clamp_min(1e-12)

        d_pos = d_pos.squeeze(1)
        if self.radius == "mean":
            compactness = (d_pos * anchor_w).sum() / anchor_w.sum().clamp_min(1e-12)
        else:
            compactness = (d_pos.masked_fill(anchor_w <= 0, 0.0).max() if d_pos.numel() else d_pos.sum() * 0.0)
        total = point_to_set + self.compactness_weight * compactness
        return FATTerms(point_to_set, compactness, total)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, centroids: Centroids | None = None,
                sample_weights: torch.Tensor | None = None) -> torch.Tensor:
        """The FAT loss (a scalar tensor)."""
        return self.terms(embeddings, labels, centroids, sample_weights).total


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against hard labels (B,) or soft targets (B, K) that sum to one."""
    if targets.ndim == 1:
        return F.cross_entropy(logits, targets.long())
    return -(targets.to(logits.dtype) * F.log_softmax(logits, dim=1)).sum(1).mean()


class HybridLoss(nn.Module):
    """Normalised FAT plus a weighted cross-entropy on a classifier head (hard or soft targets)."""

    def __init__(self, fat: FATLoss | None = None, ce_weight: float = 1.0) -> None:
        super().__init__()
        self.fat = fat if fat is not None else FATLoss(DEFAULT_CENTROID)
        if ce_weight < 0:
            raise FatvizError("The cross-entropy weight must be >= 0.")
        self.ce_weight = float(ce_weight)

    def terms(self, embeddings: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor,
              targets: torch.Tensor | None = None, centroids: Centroids | None = None) -> dict[str, torch.Tensor]:
        """Both FAT terms, the cross-entropy and the weighted total, by name."""
        fat = self.fat.terms(embeddings, labels, centroids)
        ce = soft_cross_entropy(logits, labels if targets is None else targets)
        return {"point_to_set": fat.point_to_set, "compactness": fat.compactness, "ce": ce,
                "total": fat.total + self.ce_weight * ce}

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor,
                targets: torch.Tensor | None = None, centroids: Centroids | None = None) -> torch.Tensor:
        """FAT on (embeddings, labels) + ce_weight * CE(logits, targets or labels)."""
        return self.terms(embeddings, labels, logits, targets, centroids)["total"]


def _triplet_masks(labels: torch.Tensor, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive (same label, not self) and negative masks for a chunk of anchors."""
    la = labels[rows]
    same = la[:, None] == labels[None, :]
    idx = torch.arange(labels.shape[0], device=labels.device)
    not_self = idx[rows][:, None] != idx[None, :]
    return same & not_self, ~same


def _hinge_sums_sorted(d: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, margin: float) -> torch.Tensor:
    """Per anchor, sum over (p, n) of max(0, d_ap - d_an + m), in O(N log N) per anchor.

    For each anchor the negative distances are sorted once; for a positive p the hinge
    is active exactly for the negatives with d_an < d_ap + m, so the sum over them is
    count * (d_ap + m) - (sum of those d_an), read from a prefix sum.
    """
    inf = torch.finfo(d.dtype).max
    d_neg = d.masked_fill(~neg, inf)
    sorted_neg, _ = d_neg.sort(dim=1)
    prefix = F.pad(torch.where(sorted_neg < inf, sorted_neg, 0.0).cumsum(1), (1, 0))
    n_neg = neg.sum(1, keepdim=True)
    thresh = d + margin  # (rows, N): one threshold per candidate positive
    count = torch.searchsorted(sorted_neg.contiguous(), thresh.contiguous(), right=False)
    count = torch.minimum(count, n_neg)
    sums = count.to(d.dtype) * thresh - prefix.gather(1, count)
    return (sums * pos.to(d.dtype)).sum(1)


def triplet_all_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 1.0,
                     normalize: bool = False, method: str = "sorted", chunk_size: int | None = None) -> torch.Tensor:
    """Exact mean over all valid triplets (a != p, y_p = y_a, y_n != y_a) of the hinge.

    method="sorted" sorts each anchor's negatives and reads hinge sums from prefix sums
    (O(N^2 log N), exact); method="dense" builds the (chunk, N, N) hinge tensor, the
    textbook O(N^3) computation. Both chunk over anchors so memory stays bounded.
    """
    if method not in ("sorted", "dense"):
        raise FatvizError("method must be 'sorted' or 'dense'.")
    labels = labels.long()
    x = l2_normalize(embeddings) if normalize else embeddings
    n = x.shape[0]
    dist = euclidean(x, x)
    if chunk_size is None:
        chunk_size = max(1, min(n, (1 << 24) // max(1, n * n))) if method == "dense" else max(1, (1 << 22) // max(1, n))
    total = dist.new_zeros(())
    count = dist.new_zeros(())
    for start in range(0, n, chunk_size):
        rows = slice(start, min(n, start + chunk_size))
        pos, neg = _triplet_masks(labels, rows)
        d = dist[rows]
        if method == "dense":
            hinge = F.relu(d[:, :, None] - d[:, None, :] + margin)
            valid = pos[:, :, None] & neg[:, None, :]
            total = total + (hinge * valid.to(hinge.dtype)).sum()
        else:
            total = total + _hinge_sums_sorted(d, pos, neg, margin).sum()
        count = count + (pos.sum(1) * neg.sum(1)).sum().to(dist.dtype)
    return total / count.clamp_min(1.0)


def batch_hard_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 1.0,
                    normalize: bool = False) -> torch.Tensor:
    """Batch-hard triplet loss: per anchor, its farthest positive against its nearest negative."""
    labels = labels.long()
    x = l2_normalize(embeddings) if normalize else embeddings
    dist = euclidean(x, x)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    pos = same & ~eye
    hardest_pos = dist.masked_fill(~pos, float("-inf")).max(1).values
    hardest_neg = dist.masked_fill(same, float("inf")).min(1).values
    valid = pos.any(1) & (~same).any(1)
    hinge = F.relu(torch.where(valid, hardest_pos - hardest_neg, torch.zeros_like(hardest_pos)) + margin)
    return _masked_mean(hinge, valid)


@dataclass(frozen=True)
class BoundResult:
    """The exact all-triplet loss and the FAT upper bound on the same triplets.

    bound = point_to_set + radius_term, each a mean over the same valid triplets.
    """

    exact: float
    bound: float
    point_to_set: float
    radius_term: float
    num_triplets: int
    option: str
    margin: float

    @property
    def gap(self) -> float:
        """How loose the bound is (bound - exact, never negative)."""
        return self.bound - self.exact


def triplet_bound(embeddings: torch.Tensor, labels: torch.Tensor, option: str = DEFAULT_CENTROID,
                  margin: float | None = None) -> BoundResult:
    """Exact mean triplet hinge and the mean docs/METHOD.md section 2 upper bound over the same triplets.

    The bound for (a, p, n) is max(0, d(a, c_ya) - d(a, c_yn) + m) + R_ya + R_yn, with R
    the max radius of each class. It does not depend on p or on which member of y_n is n,
    so its sum is computed in O(N * K): per anchor, (number of positives) times, per
    negative class k, (members of k) times the anchor's term for k. Distances are
    Euclidean in the option's anchor space, computed in float64 for both sides.
    """
    check_option(option)
    margin = default_margin(option) if margin is None else float(margin)
    x = anchor_space(embeddings.detach().to(torch.float64), option)
    labels = labels.detach().long().to(x.device)
    classes, y = torch.unique(labels, return_inverse=True)
    if classes.numel() < 2:
        raise FatvizError("A triplet needs at least two classes: these labels hold only one.")
    cents = compute_centroids(embeddings.detach().to(torch.float64), y, option)
    n_k = torch.bincount(y, minlength=classes.numel()).to(x.dtype)
    dist_c = precise_euclidean(x, cents.centres)  # (N, K)
    d_own = dist_c.gather(1, y[:, None])
    hinge = F.relu(d_own - dist_c + margin)  # (N, K)
    neg_counts = n_k[None, :].expand_as(hinge).clone()
    neg_counts.scatter_(1, y[:, None], 0.0)
    positives = (n_k[y] - 1.0)  # (N,)
    weight = positives[:, None] * neg_counts  # triplets per (anchor, negative class)
    num_triplets = weight.sum()
    if num_triplets == 0:
        raise FatvizError("No valid triplet: every class has a single member, so there is no positive.")
    radius = cents.radius
    p2s = (weight * hinge).sum() / num_triplets
    rad = (weight * (radius[y][:, None] + radius[None, :])).sum() / num_triplets
    exact = _exact_triplet_mean(x, labels, margin)
    return BoundResult(exact=float(exact), bound=float(p2s + rad), point_to_set=float(p2s),
                       radius_term=float(rad), num_triplets=int(num_triplets.item()), option=option,
                       margin=margin)


def _exact_triplet_mean(x: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Exact mean hinge over all valid triplets with cancellation-free distances (float64).

    Per anchor, the negatives' distances are sorted once with prefix sums; a positive
    with threshold t = d(a, p) + m then has hinge sum count * t - (sum of the `count`
    negatives below t). All rows are searched in one call by shifting row r by r * span,
    which keeps rows apart. numpy's sort is several times faster than torch's on CPU.
    """
    xs = x.cpu().numpy()
    y = labels.cpu().numpy()
    n = xs.shape[0]
    chunk = max(1, (1 << 21) // max(1, n))
    total = 0.0
    count = 0
    for start in range(0, n, chunk):
        rows = np.arange(start, min(n, start + chunk))
        d = precise_euclidean(x[start:start + len(rows)], x).cpu().numpy()
        same = y[rows][:, None] == y[None, :]
        pos = same.copy()
        pos[np.arange(len(rows)), rows] = False
        neg = ~same
        span = float(d.max()) + margin + 1.0  # above every threshold d(a, p) + m
        neg_sorted = np.where(neg, d, span)
        neg_sorted.sort(axis=1)
        prefix = np.cumsum(np.where(neg_sorted < span, neg_sorted, 0.0), axis=1)
        shift = (np.arange(len(rows)) * (2.0 * span))[:, None]
        pr, pc = np.nonzero(pos)
        thresholds = d[pr, pc] + margin
        below = np.searchsorted((neg_sorted + shift).ravel(), thresholds + shift[pr, 0]) - pr * n
        below_sum = np.where(below > 0, prefix[pr, np.maximum(below - 1, 0)], 0.0)
        total += float((below * thresholds - below_sum).sum())
        count += int((pos.sum(1) * neg.sum(1)).sum())
    return torch.tensor(total / max(count, 1), dtype=torch.float64)


# -- The losses a run can train with ------------------------------------------------------------

# A training loss takes (embeddings, labels, logits, targets, centroids) and returns its terms by
# name, "total" among them; targets are the cross-entropy targets (hard labels or soft rows) and
# centroids the class centres for the FAT family (None: from the batch).
TrainingLoss = Callable[..., dict[str, torch.Tensor]]


def _fat(s: Any) -> FATLoss:
    return FATLoss(s.centroid, margin=s.effective_margin, negatives=s.negatives, hardest_k=s.hardest_k,
                   radius=s.radius, compactness_weight=s.effective_compactness_weight)


def build_fat(s: Any) -> TrainingLoss:
    """FAT (point-to-set plus compactness) from settings, as a training loss."""
    fat = _fat(s)

    def loss(emb, labels, logits=None, targets=None, centroids=None):
        t = fat.terms(emb, labels, centroids)
        return {"point_to_set": t.point_to_set, "compactness": t.compactness, "total": t.total}
    return loss


def build_hybrid(s: Any) -> TrainingLoss:
    """FAT plus cross-entropy on the classifier head, as a training loss."""
    hybrid = HybridLoss(_fat(s), ce_weight=s.ce_weight)

    def loss(emb, labels, logits=None, targets=None, centroids=None):
        return hybrid.terms(emb, labels, logits, targets, centroids)
    return loss


def _triplet(s: Any, fn: Callable[..., torch.Tensor]) -> TrainingLoss:
    margin, normalize = s.effective_margin, is_normalized(s.centroid)

    def loss(emb, labels, logits=None, targets=None, centroids=None):
        return {"total": fn(emb, labels, margin, normalize=normalize)}
    return loss


def build_triplet_all(s: Any) -> TrainingLoss:
    """The exact triplet loss over every valid triplet of a batch, as a training loss."""
    return _triplet(s, triplet_all_loss)


def build_triplet_hard(s: Any) -> TrainingLoss:
    """Batch-hard triplet mining, as a training loss."""
    return _triplet(s, batch_hard_loss)


def build_ce(s: Any) -> TrainingLoss:
    """Cross-entropy on the classifier head alone, as a training loss."""
    def loss(emb, labels, logits=None, targets=None, centroids=None):
        return {"total": soft_cross_entropy(logits, labels if targets is None else targets)}
    return loss
