"""Evaluation on held-out samples with TRUE labels: retrieval, clustering, classification.

Retrieval ranks gallery entries by Euclidean distance to each query and reports
precision@1 (Recall@1), R-precision, mAP, mINP (mean inverse negative penalty) and CMC rank-k. With cameras it
follows the Market-1501 protocol: gallery entries that share the query's identity AND camera are removed before
ranking, and queries left without a true match are skipped. Ties in distance are broken
by a stable sort, so the gallery entry with the lower index ranks first.

Every retrieval score depends only on the ranks of each query's true matches, so
`retrieval_metrics` never orders the gallery by index: it sorts each row's distances as
plain values and looks the matches' distances up in them (a match's rank is 1 + the
number of kept entries strictly nearer). A match whose distance equals another entry's
also counts its equals of lower index, which keeps the lower-index-first rule exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fatviz.errors import FatvizError

# Entries of the query-by-gallery distance matrix held at once. Retrieval keeps each entry
# twice (as computed and sorted, 8 bytes in float32); rank lists also need an argsort index,
# masks and cumulative counts (~40 bytes in all). 2**22 entries keep a chunk near 160 MB at
# most, whether the gallery has 100 or 60,000 samples.
_CHUNK_ENTRIES = 2**22
# k-means (NMI) on at most this many samples: it costs O(n) per iteration, and a seeded sample
# of 10,000 scores a large split as closely as the split's noise allows.
MAX_CLUSTER_POINTS = 10_000


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _as_embeddings(x: Any, name: str) -> torch.Tensor:
    """x as a 2-D float tensor on its own device (numpy input: on the CPU, without a copy)."""
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim != 2:
        raise FatvizError(
            f"{name} must be a 2-D array (samples x features), got shape {tuple(t.shape)}."
        )
    # float32 is precise enough to rank; float64 input is kept as it is.
    if t.dtype != torch.float64:
        t = t.to(torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise FatvizError(
            f"{name} contains NaN or inf values; training probably diverged "
            "(try a lower learning rate)."
        )
    return t


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


def _sort_rows(x: torch.Tensor) -> torch.Tensor:
    """Each row's values in ascending order (no indices)."""
    if x.device.type == "cpu":
        # numpy's vectorised sort: 1.7 s per 10^8 float32 on one core here, torch's CPU sort 11 s.
        return torch.from_numpy(np.sort(x.numpy(), axis=1))
    return torch.sort(x, dim=1).values


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


def _kmeans(x: np.ndarray, k: int, seed: int, max_iter: int = 300, tol: float = 1e-4) -> np.ndarray:
    """Cluster labels of k-means (Lloyd's iterations from one greedy k-means++ start), in numpy.

    scikit-learn's KMeans costs 1.5-2 s to import, paid by the first snapshot of every run;
    this is the same algorithm, seeded, and stops when no assignment changes or the centres
    move less than `tol` times the data's variance.
    """
    x = x.astype(np.float64)
    n = len(x)
    k = min(k, n)
    rng = np.random.default_rng(seed)
    sq = (x * x).sum(1)

    def sq_dist(c: np.ndarray) -> np.ndarray:
        return np.maximum(sq[:, None] + (c * c).sum(1)[None, :] - 2.0 * (x @ c.T), 0.0)

    # Greedy k-means++: each new centre is the best of a few candidates drawn by D^2 weighting.
    trials = 2 + int(np.log(k)) if k > 1 else 1
    centres = [x[rng.integers(n)]]
    nearest = sq_dist(centres[0][None])[:, 0]
    for _ in range(1, k):
        total = nearest.sum()
        if total <= 0:  # fewer distinct points than k: the rest start on duplicates
            cand = rng.integers(n, size=trials)
        else:
            cand = np.searchsorted(np.cumsum(nearest), rng.random(trials) * total).clip(max=n - 1)
        with_cand = np.minimum(nearest[:, None], sq_dist(x[cand]))
        best = int(np.argmin(with_cand.sum(0)))
        centres.append(x[cand[best]])
        nearest = with_cand[:, best]
    c = np.stack(centres)

    threshold = tol * float(x.var(0).mean())
    labels = np.full(n, -1)
    for _ in range(max_iter):
        d = sq_dist(c)
        new = d.argmin(1)
        if np.array_equal(new, labels):
            break
        labels = new
        counts = np.bincount(labels, minlength=k)
        moved = np.zeros_like(c)
        np.add.at(moved, labels, x)
        empties = np.flatnonzero(counts == 0)
        if len(empties):  # an empty cluster restarts on one of the worst-fitted points
            worst = np.argsort(-d[np.arange(n), labels], kind="stable")[:len(empties)]
            moved[empties], counts[empties] = x[worst], 1
        moved /= counts[:, None]
        shift = float(((moved - c) ** 2).sum())
        c = moved
        if shift <= threshold:
            labels = sq_dist(c).argmin(1)
            break
    return labels


def _nmi(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised mutual information of two labelings, arithmetic normalisation (sklearn's default)."""
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1))
    np.add.at(table, (ia, ib), 1.0)
    p = table / table.sum()
    pa, pb = p.sum(1), p.sum(0)

    def entropy(q: np.ndarray) -> float:
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    ha, hb = entropy(pa), entropy(pb)
    if ha == 0.0 and hb == 0.0:  # both labelings put everything in one class: identical
        return 1.0
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(pa, pb)[nz])).sum())
    return max(0.0, min(1.0, mi / ((ha + hb) / 2.0)))


def _sq_distances(q: torch.Tensor, g: torch.Tensor, g_sq: torch.Tensor) -> torch.Tensor:
    """(len(q), len(g)) squared Euclidean distances; g_sq holds g's squared norms."""
    # Squared distances rank exactly like distances, so the square root is skipped.
    dist = torch.addmm(g_sq.expand(len(q), -1), q, g.T, alpha=-2.0)
    return dist.add_((q * q).sum(1)[:, None])


def _members(g_cls: np.ndarray, n_classes: int) -> np.ndarray:
    """(classes, largest class) gallery indices of each class in index order, -1 after its last."""
    order = np.argsort(g_cls, kind="stable")
    counts = np.bincount(g_cls, minlength=n_classes)
    starts = np.cumsum(counts) - counts
    table = np.full((n_classes, max(int(counts.max()), 1)), -1, dtype=np.int64)
    table[g_cls[order], np.arange(len(order)) - np.repeat(starts, counts)] = order
    return table


def _positive_ranks(dist: torch.Tensor, cand: torch.Tensor, good: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ranks of each query's true matches in ascending order (1 = nearest), and how many it has.

    `dist` (B, N) holds the chunk's squared distances (overwritten: removed entries become inf),
    `cand` (B, M) the gallery index of each entry that shares the query's identity, in index
    order (-1: none), `good` (B, M) which of those are kept. Entry k < count of a row is its
    (k+1)-th match's rank among the kept entries; entries after it are meaningless.
    """
    removed = (cand >= 0) & ~good
    rows, cols = removed.nonzero(as_tuple=True)
    dist[rows, cand[rows, cols]] = torch.inf  # removed entries take no rank: they sort after every kept one
    n_good = good.sum(1)
    pos_dist = dist.gather(1, cand.clamp(min=0)).masked_fill_(~good, torch.inf)
    pos = _sort_rows(pos_dist)
    ranked = _sort_rows(dist)
    below = torch.searchsorted(ranked, pos)  # kept entries strictly nearer than each match
    n = dist.shape[1]
    live = torch.arange(pos.shape[1], device=dist.device)[None, :] < n_good[:, None]
    tied = live & (below + 1 < n) & (ranked.gather(1, (below + 1).clamp(max=n - 1)) == pos)
    ranks = below + 1
    if bool(tied.any()):
        _rank_ties(ranks, tied, dist, cand, pos_dist, pos)
    return ranks, n_good


# A row with more matches level with another entry than this is ranked by a stable argsort
# (N log N) rather than by counting, per tied match, its equals of lower index (N each).
_TIES_PER_ROW_TO_SORT = 64


def _rank_ties(ranks: torch.Tensor, tied: torch.Tensor, dist: torch.Tensor, cand: torch.Tensor,
               pos_dist: torch.Tensor, pos: torch.Tensor) -> None:
    """Add to each tied match's rank its equals of lower gallery index (the stable order's rule).

    Float32 distances tie often (at 10,000 entries a row holds about one tied match), so a
    few ties are counted one by one; a row of many is ranked by a stable sort.
    """
    n, device = dist.shape[1], dist.device
    many = tied.sum(1) > _TIES_PER_ROW_TO_SORT
    sort_rows = many.nonzero(as_tuple=True)[0]
    if len(sort_rows):
        order = torch.sort(dist[sort_rows], dim=1, stable=True).indices
        is_good = torch.zeros(len(sort_rows), n, dtype=torch.bool, device=device)
        r, c = torch.isfinite(pos_dist[sort_rows]).nonzero(as_tuple=True)
        is_good[r, cand[sort_rows][r, c]] = True
        at = torch.arange(1, n + 1, device=device).expand(len(sort_rows), -1)
        marked = torch.where(is_good.gather(1, order), at, n + 1)
        ranks[sort_rows] = torch.sort(marked, dim=1).values[:, :ranks.shape[1]]
    t_row, t_col = (tied & ~many[:, None]).nonzero(as_tuple=True)
    step = max(1, _CHUNK_ENTRIES // n)
    for start in range(0, len(t_row), step):
        r, k = t_row[start:start + step], t_col[start:start + step]
        value = pos[r, k]
        # Equal matches are one run of the sorted list, and in index order within it (cand is):
        # the one at sorted place k is the (k - first)-th match of that distance by index.
        first = torch.searchsorted(pos[r], value[:, None]).squeeze(1)
        same = pos_dist[r] == value[:, None]
        nth = same & (same.cumsum(1) == (k - first + 1)[:, None])
        index = cand[r, nth.int().argmax(1)]
        before = (dist[r] == value[:, None]) & (torch.arange(n, device=device)[None, :] < index[:, None])
        ranks[r, k] += before.sum(1)


def _map_chunks(work: Callable[[int], dict[str, np.ndarray]], starts: range,
                device: torch.device) -> list[dict[str, np.ndarray]]:
    """work(start) for every chunk, in order; on the CPU on one thread per core, each chunk single-threaded.

    A chunk's operations are small, and torch's own threads wait for each other after every
    one: on 2 busy cores that made the ranking 2.5x slower than one thread alone. Chunks
    share nothing, so whole chunks run side by side instead (torch and numpy's sort release
    the GIL).
    """
    workers = torch.get_num_threads()
    if device.type != "cpu" or workers == 1 or len(starts) == 1:
        return [work(start) for start in starts]
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(work, starts))
    finally:
        torch.set_num_threads(workers)


def _rank_scores(ranks: torch.Tensor, n_good: torch.Tensor) -> dict[str, np.ndarray]:
    """Per query, from its matches' ascending ranks: valid (has a match), first-match rank, AP,
    hardest-match rank, INP and R-precision. The scores are 0 for a query without a match."""
    live = torch.arange(ranks.shape[1], device=ranks.device)[None, :] < n_good[:, None]
    valid = n_good > 0
    safe = n_good.clamp(min=1).double()
    # Precision at each match's rank: the k-th match is the k-th true entry of the list.
    hits = torch.arange(1, ranks.shape[1] + 1, device=ranks.device, dtype=torch.float64)[None, :]
    ap = torch.where(live, hits / ranks.double(), 0.0).sum(1) / safe
    first = torch.where(valid, ranks[:, 0], 0)
    last = torch.where(valid, ranks.gather(1, (n_good - 1).clamp(min=0)[:, None])[:, 0], 0)
    # INP = G / r_G: how much of the list must be read to find every match (METHOD.md 7.2).
    inp = torch.where(valid, n_good / last.clamp(min=1).double(), 0.0)
    # R-precision: the share of matches among the first G entries, G the query's match count.
    r_precision = (live & (ranks <= n_good[:, None])).sum(1) / safe
    out = {"valid": valid, "first": first, "ap": torch.where(valid, ap, 0.0), "last": last, "inp": inp,
           "r_precision": r_precision}
    return {k: v.cpu().numpy() for k, v in out.items()}


def _gallery_inputs(
    q: torch.Tensor, query_cams: Any, gallery_emb: Any, gallery_labels: Any, gallery_cams: Any
) -> tuple[np.ndarray | None, torch.Tensor, np.ndarray, np.ndarray | None]:
    """Checked query cameras, gallery embeddings (on the queries' device), gallery labels and gallery cameras."""
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
    return q_cam, g.to(q.device), g_lab, g_cam


def _codes(*arrays: np.ndarray) -> list[np.ndarray]:
    """The arrays' values as integer codes shared across them (equal values, equal codes)."""
    _, inv = np.unique(np.concatenate(arrays), return_inverse=True)
    return np.split(inv.reshape(-1), np.cumsum([len(a) for a in arrays])[:-1])


def _chunk_rows(chunk_size: int | None, gallery_size: int) -> int:
    if chunk_size is None:
        return max(1, _CHUNK_ENTRIES // gallery_size)
    if chunk_size < 1:
        raise FatvizError(f"chunk_size must be 1 or more, got {chunk_size}.")
    return chunk_size


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
    """Precision@1, R-precision, mAP, mINP, CMC rank-k and valid-query count; leave-one-out without a gallery.

    Embeddings may be numpy arrays or tensors; ranking runs on the query tensor's device.
    """
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
        dtype = torch.promote_types(q.dtype, g.dtype)
        q, g = q.to(dtype), g.to(dtype)
    ranks = tuple(int(k) for k in ranks)
    if any(k < 1 for k in ranks):
        raise FatvizError(f"CMC ranks must be 1 or more, got {ranks}.")
    chunk_size = _chunk_rows(chunk_size, len(g))

    device = q.device
    q_cls, g_cls = _codes(q_lab, g_lab)
    # A query's candidate matches are its identity's gallery entries: the gallery is never searched for them.
    members = torch.as_tensor(_members(g_cls, int(max(q_cls.max(), g_cls.max())) + 1), device=device)
    q_cls = torch.as_tensor(q_cls, device=device)
    if q_cam is not None:
        q_cam, g_cam = (torch.as_tensor(c, device=device) for c in _codes(q_cam, g_cam))
    g_sq = (g * g).sum(1)

    def chunk(start: int) -> dict[str, np.ndarray]:
        stop = min(start + chunk_size, len(q))
        cand = members[q_cls[start:stop]]
        good = cand >= 0
        if q_cam is not None:  # the Market-1501 removal: same identity (every candidate) and same camera
            good &= g_cam[cand.clamp(min=0)] != q_cam[start:stop, None]
        if leave_one_out:
            good &= cand != torch.arange(start, stop, device=device)[:, None]
        return _rank_scores(*_positive_ranks(_sq_distances(q[start:stop], g, g_sq), cand, good))

    parts = _map_chunks(chunk, range(0, len(q), chunk_size), device)
    scores = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    valid = scores["valid"]
    first = scores["first"][valid]

    num_valid = len(first)
    # No valid query leaves every score undefined; 0.0 keeps plots and JSON NaN-free, and
    # num_valid_queries == 0 tells the caller why.
    def score(values: np.ndarray) -> float:
        return float(values.mean()) if num_valid else 0.0

    out = {"precision_at_1": score(first == 1), "r_precision": score(scores["r_precision"][valid]),
           "map": score(scores["ap"][valid]), "minp": score(scores["inp"][valid])}
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
    chunk_size = _chunk_rows(chunk_size, len(g))
    dtype = torch.promote_types(q.dtype, g.dtype)
    q, g = q.to(dtype), g.to(dtype)
    g_sq = (g * g).sum(1)
    parts: list[tuple[np.ndarray, ...]] = []
    width = min(k, len(g))
    for start in range(0, len(q), chunk_size):
        stop = min(start + chunk_size, len(q))
        dist = _sq_distances(q[start:stop], g, g_sq).cpu().numpy()
        same_id = q_lab[start:stop, None] == g_lab[None, :]
        keep = np.ones(dist.shape, dtype=bool)
        if q_cam is not None:
            keep &= ~(same_id & (q_cam[start:stop, None] == g_cam[None, :]))
        # The whole order, removed entries included: the top-k and the hardest match are gallery entries.
        order = _stable_argsort(dist)
        keep_sorted = np.take_along_axis(keep, order, axis=1)
        good_sorted = np.take_along_axis(same_id & keep, order, axis=1)
        rank = np.cumsum(keep_sorted, axis=1, dtype=np.int64)  # removed entries take no rank
        n_good = good_sorted.sum(axis=1)
        match_ranks = np.sort(np.where(good_sorted, rank, len(g) + 1), axis=1)
        sc = _rank_scores(torch.from_numpy(match_ranks), torch.from_numpy(n_good))
        valid, first, ap, last, inp = (sc[key] for key in ("valid", "first", "ap", "last", "inp"))
        # Kept entries first, in rank order (a stable sort of "removed"), then the first k of them.
        kept_cols = np.argsort(~keep_sorted, axis=1, kind="stable")[:, :width]
        top = np.take_along_axis(order, kept_cols, axis=1)
        shown = np.take_along_axis(keep_sorted, kept_cols, axis=1)
        match = np.take_along_axis(good_sorted, kept_cols, axis=1) & shown
        top = np.where(shown, top, -1)
        last_col = good_sorted.shape[1] - 1 - good_sorted[:, ::-1].argmax(axis=1)
        hardest = order[np.arange(len(order)), last_col]
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
    emb: Any, labels: Any, *, seed: int = 0, max_silhouette_points: int = 2000,
    max_cluster_points: int = MAX_CLUSTER_POINTS,
) -> dict[str, float]:
    """NMI of k-means clusters (k = number of labels), silhouette of the true labels, and
    `nmi_points`: how many samples k-means clustered (a seeded sample of a larger set)."""
    x = _as_embeddings(emb, "emb").cpu().numpy()
    y = _as_vector(labels, len(x), "labels")
    if len(x) == 0:
        raise FatvizError("There are no samples to cluster; evaluate on a non-empty split.")
    if max_silhouette_points < 2 or max_cluster_points < 2:
        raise FatvizError(
            "max_silhouette_points and max_cluster_points must be 2 or more, got "
            f"{max_silhouette_points} and {max_cluster_points}."
        )
    def sample(size: int) -> np.ndarray:
        if len(x) <= size:
            return np.arange(len(x))
        return np.sort(np.random.default_rng(seed).choice(len(x), size=size, replace=False))

    pick = sample(max_cluster_points)
    n_classes = len(np.unique(y[pick]))
    # k-means++ with a fixed seed is deterministic; one start keeps per-epoch snapshots cheap.
    nmi = _nmi(y[pick], _kmeans(x[pick], n_classes, seed))

    # Silhouette costs O(n^2), so large sets are scored on a seeded subsample.
    idx = sample(max_silhouette_points)
    n_sub_classes = len(np.unique(y[idx]))
    if 2 <= n_sub_classes <= len(idx) - 1:
        silhouette = _silhouette(x[idx], y[idx])
    else:
        # One label, or one label per point (always so below 3 points): sklearn raises,
        # since no sample has both an own and an other cluster to compare. 0.0 is the
        # neutral value, the one sklearn gives a sample alone in its cluster.
        silhouette = 0.0
    return {"nmi": nmi, "silhouette": silhouette, "nmi_points": float(len(pick))}


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
    """Retrieval, clustering and (with logits) accuracy of a test split with true labels (embeddings may be
    tensors on any device: the ranking runs there)."""
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
        on_device = torch.as_tensor(mask, device=x.device)
        out = retrieval_metrics(
            x[on_device],
            y[mask],
            x[~on_device],
            y[~mask],
            query_cams=None if cam is None else cam[mask],
            gallery_cams=None if cam is None else cam[~mask],
        )
        # ReID test sets are clustered on the gallery, which holds most identities' images.
        cluster_x, cluster_y = x[~on_device], y[~mask]
    out.update(clustering_metrics(cluster_x, cluster_y, seed=seed))
    if logits is not None:
        out["accuracy"] = classification_accuracy(logits, y)
    return {key: float(value) for key, value in out.items()}
