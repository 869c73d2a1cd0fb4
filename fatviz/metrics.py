"""Evaluation on held-out samples with TRUE labels: retrieval, clustering, classification.

Retrieval ranks gallery entries by Euclidean distance to each query and reports
precision@1 (Recall@1), mAP, mINP (mean inverse negative penalty) and CMC rank-k. With cameras it follows the Market-1501
protocol: gallery entries that share the query's identity AND camera are removed before
ranking, and queries left without a true match are skipped. Ties in distance are broken
by a stable sort, so the gallery entry with the lower index ranks first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

from fatviz.errors import FatvizError

# Entries of the query-by-gallery distance matrix held at once. Each entry also needs an
# argsort index, masks and cumulative counts (~40 bytes in all), so 2**21 entries keep a
# chunk near 100 MB whether the gallery has 100 or 60,000 samples.
_CHUNK_ENTRIES = 2**21


def _to_numpy(x: Any) -> np.ndarray:
    # torch is not imported here: anything with .detach() is treated as a tensor.
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _as_embeddings(x: Any, name: str) -> np.ndarray:
    arr = _to_numpy(x)
    if arr.ndim != 2:
        raise FatvizError(
            f"{name} must be a 2-D array (samples x features), got shape {arr.shape}."
        )
    # float32 is precise enough to rank; float64 input is kept as it is.
    if arr.dtype != np.float64:
        arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise FatvizError(
            f"{name} contains NaN or inf values; training probably diverged "
            "(try a lower learning rate)."
        )
    return arr


def _as_vector(x: Any, n: int, name: str) -> np.ndarray:
    arr = _to_numpy(x)
    if arr.ndim != 1 or len(arr) != n:
        raise FatvizError(
            f"{name} must be a 1-D array with one entry per sample ({n}), "
            f"got shape {arr.shape}."
        )
    return arr


def _stable_argsort(dist: np.ndarray) -> np.ndarray:
    """Row-wise argsort where, among equal distances, the lower gallery index ranks first.

    A stable sort is 3-4x slower than quicksort and ties are rare in real embeddings,
    so quicksort runs first and only rows that hold a tie are sorted again stably.
    """
    order = np.argsort(dist, axis=1)
    ranked = np.take_along_axis(dist, order, axis=1)
    tied = (ranked[:, 1:] == ranked[:, :-1]).any(axis=1)
    if tied.any():
        order[tied] = np.argsort(dist[tied], axis=1, kind="stable")
    return order


def _silhouette(x: np.ndarray, y: np.ndarray) -> float:
    """Mean silhouette (Euclidean) of labels y, as sklearn defines it, in plain numpy.

    sklearn's version spends most of its time validating inputs; per-epoch snapshots
    call this hundreds of times on a few hundred points.
    """
    x = x.astype(np.float64)
    sq = (x * x).sum(1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0))
    _, inv, counts = np.unique(y, return_inverse=True, return_counts=True)
    onehot = np.zeros((len(y), len(counts)))
    onehot[np.arange(len(y)), inv] = 1.0
    sums = dist @ onehot  # (n, K) total distance to each cluster
    own = counts[inv]
    a = sums[np.arange(len(y)), inv] / np.maximum(own - 1, 1)
    other = sums / counts[None, :]
    other[np.arange(len(y)), inv] = np.inf
    b = other.min(1)
    s = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-300), 0.0)
    return float(s.mean())


def _ranked(
    q: np.ndarray,
    q_lab: np.ndarray,
    q_cam: np.ndarray | None,
    g: np.ndarray,
    g_lab: np.ndarray,
    g_cam: np.ndarray | None,
    offset: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each query's gallery order, and along it: kept (not removed), true match, and rank.

    `offset` is the index of q[0] in the gallery when the gallery is the query set
    (leave-one-out), else None. Removed entries take no rank: a match's rank counts only the
    kept entries up to it.
    """
    # Squared distances rank exactly like distances, so the square root is skipped.
    dist = (q * q).sum(1)[:, None] + (g * g).sum(1)[None, :] - 2.0 * (q @ g.T)
    same_id = q_lab[:, None] == g_lab[None, :]
    keep = np.ones(dist.shape, dtype=bool)
    if q_cam is not None:
        keep &= ~(same_id & (q_cam[:, None] == g_cam[None, :]))
    if offset is not None:
        rows = np.arange(len(q))
        keep[rows, rows + offset] = False
    order = _stable_argsort(dist)
    keep_sorted = np.take_along_axis(keep, order, axis=1)
    good_sorted = np.take_along_axis(same_id & keep, order, axis=1)
    rank = np.cumsum(keep_sorted, axis=1, dtype=np.int32)
    return order, keep_sorted, good_sorted, rank


def _query_scores(
    good_sorted: np.ndarray, rank: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per query: valid (has a match), first-match rank, AP, hardest-match rank and INP.

    The scores are 0 for a query without a match; `valid` says which those are.
    """
    rows = np.arange(len(good_sorted))
    hits = np.cumsum(good_sorted, axis=1, dtype=np.int32)
    n_good = hits[:, -1]
    valid = n_good > 0
    # Precision at each true match's rank, summed per query; non-matches add nothing.
    match_row, match_col = np.nonzero(good_sorted)
    precision = hits[match_row, match_col] / rank[match_row, match_col]
    ap_sum = np.bincount(match_row, weights=precision, minlength=len(rows))
    safe = np.maximum(n_good, 1)
    ap = np.where(valid, ap_sum / safe, 0.0)
    first = np.where(valid, rank[rows, good_sorted.argmax(axis=1)], 0)
    last_col = good_sorted.shape[1] - 1 - good_sorted[:, ::-1].argmax(axis=1)
    last = np.where(valid, rank[rows, last_col], 0)
    # INP = G / r_G: how much of the list must be read to find every match (METHOD.md 7.2).
    inp = np.where(valid, n_good / np.maximum(last, 1), 0.0)
    return valid, first, ap, last, inp


def _gallery_inputs(
    q: np.ndarray, query_cams: Any, gallery_emb: Any, gallery_labels: Any, gallery_cams: Any
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray | None]:
    """Checked query cameras, gallery embeddings, gallery labels and gallery cameras."""
    g = _as_embeddings(gallery_emb, "gallery_emb")
    if gallery_labels is None:
        raise FatvizError("gallery_emb was given without gallery_labels; pass both.")
    g_lab = _as_vector(gallery_labels, len(g), "gallery_labels")
    if len(g) == 0:
        raise FatvizError("The gallery is empty; pass at least one gallery sample.")
    if g.shape[1] != q.shape[1]:
        raise FatvizError(
            f"Query and gallery embeddings differ in size ({q.shape[1]} vs "
            f"{g.shape[1]}); embed both with the same model."
        )
    if (query_cams is None) != (gallery_cams is None):
        raise FatvizError("Pass both query_cams and gallery_cams, or neither.")
    q_cam = None if query_cams is None else _as_vector(query_cams, len(q), "query_cams")
    g_cam = None if gallery_cams is None else _as_vector(gallery_cams, len(g), "gallery_cams")
    return q_cam, g, g_lab, g_cam


def retrieval_metrics(
    query_emb: Any,
    query_labels: Any,
    gallery_emb: Any = None,
    gallery_labels: Any = None,
    *,
    query_cams: Any = None,
    gallery_cams: Any = None,
    ranks: Sequence[int] = (1, 5, 10),
    chunk_size: int | None = None,
) -> dict[str, float]:
    """Precision@1, mAP, mINP, CMC rank-k and valid-query count; leave-one-out without a gallery."""
    q = _as_embeddings(query_emb, "query_emb")
    q_lab = _as_vector(query_labels, len(q), "query_labels")
    if len(q) == 0:
        raise FatvizError("There are no query samples; evaluate on a non-empty split.")
    leave_one_out = gallery_emb is None
    if leave_one_out:
        if gallery_labels is not None or gallery_cams is not None:
            raise FatvizError(
                "gallery_labels or gallery_cams was given without gallery_emb; pass "
                "gallery_emb too, or none of them for leave-one-out retrieval."
            )
        g, g_lab = q, q_lab
        q_cam = None if query_cams is None else _as_vector(query_cams, len(q), "query_cams")
        g_cam = q_cam
    else:
        q_cam, g, g_lab, g_cam = _gallery_inputs(
            q, query_cams, gallery_emb, gallery_labels, gallery_cams
        )
    ranks = tuple(int(k) for k in ranks)
    if any(k < 1 for k in ranks):
        raise FatvizError(f"CMC ranks must be 1 or more, got {ranks}.")
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ENTRIES // len(g))
    elif chunk_size < 1:
        raise FatvizError(f"chunk_size must be 1 or more, got {chunk_size}.")

    firsts, aps, inps = [], [], []
    for start in range(0, len(q), chunk_size):
        stop = min(start + chunk_size, len(q))
        _, _, good_sorted, rank = _ranked(
            q[start:stop],
            q_lab[start:stop],
            None if q_cam is None else q_cam[start:stop],
            g,
            g_lab,
            g_cam,
            start if leave_one_out else None,
        )
        valid, first, ap, _, inp = _query_scores(good_sorted, rank)
        firsts.append(first[valid])
        aps.append(ap[valid])
        inps.append(inp[valid])
    first = np.concatenate(firsts)
    ap = np.concatenate(aps)
    inp = np.concatenate(inps)

    num_valid = len(first)
    # No valid query leaves every score undefined; 0.0 keeps plots and JSON NaN-free, and
    # num_valid_queries == 0 tells the caller why.
    def score(values: np.ndarray) -> float:
        return float(values.mean()) if num_valid else 0.0

    out = {"precision_at_1": score(first == 1), "map": score(ap), "minp": score(inp)}
    for k in ranks:
        out[f"cmc_{k}"] = score(first <= k)
    out["num_valid_queries"] = float(num_valid)
    return out


@dataclass(frozen=True, eq=False)
class RankLists:
    """Rank lists of the valid queries, worst average precision first (the Market-1501 removal applied).

    Row i describes query `query[i]` (an index into the query set); gallery positions index the
    gallery. `top` lists the first `k` kept gallery entries (-1 where the kept gallery is shorter).
    """

    query: np.ndarray  # (Q,) int
    top: np.ndarray  # (Q, k) int, gallery indices in rank order
    top_match: np.ndarray  # (Q, k) bool, True where that entry is a true match
    ap: np.ndarray  # (Q,) average precision
    inp: np.ndarray  # (Q,) inverse negative penalty, G / rank of the hardest match
    first_rank: np.ndarray  # (Q,) rank of the first true match (1 = top)
    hardest: np.ndarray  # (Q,) gallery index of the hardest (last-ranked) true match
    hardest_rank: np.ndarray  # (Q,) its rank
    num_matches: np.ndarray  # (Q,) true matches G left after the removal

    def __len__(self) -> int:
        return len(self.query)


def rank_lists(
    query_emb: Any,
    query_labels: Any,
    gallery_emb: Any,
    gallery_labels: Any,
    *,
    query_cams: Any = None,
    gallery_cams: Any = None,
    k: int = 10,
    chunk_size: int | None = None,
) -> RankLists:
    """Each valid query's top-k gallery entries and hardest match, sorted worst AP first."""
    q = _as_embeddings(query_emb, "query_emb")
    q_lab = _as_vector(query_labels, len(q), "query_labels")
    if len(q) == 0:
        raise FatvizError("There are no query samples; evaluate on a non-empty split.")
    q_cam, g, g_lab, g_cam = _gallery_inputs(q, query_cams, gallery_emb, gallery_labels, gallery_cams)
    if k < 1:
        raise FatvizError(f"k (gallery entries shown per query) must be 1 or more, got {k}.")
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ENTRIES // len(g))
    parts: list[tuple[np.ndarray, ...]] = []
    width = min(k, len(g))
    for start in range(0, len(q), chunk_size):
        stop = min(start + chunk_size, len(q))
        order, keep_sorted, good_sorted, rank = _ranked(
            q[start:stop], q_lab[start:stop], None if q_cam is None else q_cam[start:stop],
            g, g_lab, g_cam, None,
        )
        valid, first, ap, last, inp = _query_scores(good_sorted, rank)
        # Kept entries first, in rank order (a stable sort of "removed"), then the first k of them.
        kept_cols = np.argsort(~keep_sorted, axis=1, kind="stable")[:, :width]
        top = np.take_along_axis(order, kept_cols, axis=1)
        shown = np.take_along_axis(keep_sorted, kept_cols, axis=1)
        match = np.take_along_axis(good_sorted, kept_cols, axis=1) & shown
        top = np.where(shown, top, -1)
        last_col = good_sorted.shape[1] - 1 - good_sorted[:, ::-1].argmax(axis=1)
        hardest = order[np.arange(len(order)), last_col]
        n_good = good_sorted.sum(axis=1)
        idx = np.arange(start, stop)
        parts.append(tuple(a[valid] for a in (idx, top, match, ap, inp, first, hardest, last, n_good)))
    cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
    if width < k:
        pad = k - width
        cols[1] = np.pad(cols[1], ((0, 0), (0, pad)), constant_values=-1)
        cols[2] = np.pad(cols[2], ((0, 0), (0, pad)), constant_values=False)
    # Worst AP first; among equal AP the lower INP, then the lower query index.
    worst = np.lexsort((cols[0], cols[4], cols[3]))
    cols = [c[worst] for c in cols]
    return RankLists(
        query=cols[0].astype(np.int64), top=cols[1].astype(np.int64), top_match=cols[2].astype(bool),
        ap=cols[3].astype(np.float64), inp=cols[4].astype(np.float64), first_rank=cols[5].astype(np.int64),
        hardest=cols[6].astype(np.int64), hardest_rank=cols[7].astype(np.int64),
        num_matches=cols[8].astype(np.int64),
    )


def clustering_metrics(
    emb: Any, labels: Any, *, seed: int = 0, max_silhouette_points: int = 2000
) -> dict[str, float]:
    """NMI of k-means clusters (k = number of labels) and silhouette of the true labels."""
    x = _as_embeddings(emb, "emb")
    y = _as_vector(labels, len(x), "labels")
    if len(x) == 0:
        raise FatvizError("There are no samples to cluster; evaluate on a non-empty split.")
    if max_silhouette_points < 2:
        raise FatvizError(
            f"max_silhouette_points must be 2 or more, got {max_silhouette_points}."
        )
    n_classes = len(np.unique(y))
    # k-means++ with a fixed seed is deterministic; one start keeps per-epoch snapshots cheap.
    clusters = KMeans(n_clusters=n_classes, n_init=1, random_state=seed).fit_predict(x)
    nmi = float(normalized_mutual_info_score(y, clusters))

    # Silhouette costs O(n^2), so large sets are scored on a seeded subsample.
    idx = np.arange(len(x))
    if len(x) > max_silhouette_points:
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(len(x), size=max_silhouette_points, replace=False))
    n_sub_classes = len(np.unique(y[idx]))
    if 2 <= n_sub_classes <= len(idx) - 1:
        silhouette = _silhouette(x[idx], y[idx])
    else:
        # One label, or one label per point (always so below 3 points): sklearn raises,
        # since no sample has both an own and an other cluster to compare. 0.0 is the
        # neutral value, the one sklearn gives a sample alone in its cluster.
        silhouette = 0.0
    return {"nmi": nmi, "silhouette": silhouette}


def classification_accuracy(logits_or_pred: Any, labels: Any) -> float:
    """Fraction of samples whose prediction (argmax of 2-D logits, or 1-D classes) is right."""
    scores = _to_numpy(logits_or_pred)
    if scores.ndim not in (1, 2) or len(scores) == 0:
        raise FatvizError(
            "Pass logits (samples x classes) or predicted classes (samples) for at least "
            f"one sample, got shape {scores.shape}."
        )
    pred = scores.argmax(axis=1) if scores.ndim == 2 else scores
    y = _as_vector(labels, len(pred), "labels")
    return float(np.mean(pred == y))


def evaluate_embeddings(
    emb: Any,
    labels: Any,
    *,
    logits: Any = None,
    cams: Any = None,
    is_query: Any = None,
    seed: int = 0,
) -> dict[str, float]:
    """Retrieval, clustering and (with logits) accuracy of a test split with true labels."""
    x = _as_embeddings(emb, "emb")
    y = _as_vector(labels, len(x), "labels")
    if len(x) == 0:
        raise FatvizError("There are no samples to evaluate; use a non-empty test split.")
    cam = None if cams is None else _as_vector(cams, len(x), "cams")
    if is_query is None:
        out = retrieval_metrics(x, y, query_cams=cam)
        cluster_x, cluster_y = x, y
    else:
        mask = _as_vector(is_query, len(x), "is_query")
        if mask.dtype != bool:
            raise FatvizError(f"is_query must be a boolean mask, got dtype {mask.dtype}.")
        if mask.all() or not mask.any():
            raise FatvizError(
                "is_query must mark at least one query and one gallery sample."
            )
        out = retrieval_metrics(
            x[mask],
            y[mask],
            x[~mask],
            y[~mask],
            query_cams=None if cam is None else cam[mask],
            gallery_cams=None if cam is None else cam[~mask],
        )
        # ReID test sets are clustered on the gallery, which holds most identities' images.
        cluster_x, cluster_y = x[~mask], y[~mask]
    out.update(clustering_metrics(cluster_x, cluster_y, seed=seed))
    if logits is not None:
        out["accuracy"] = classification_accuracy(logits, y)
    return {key: float(value) for key, value in out.items()}
