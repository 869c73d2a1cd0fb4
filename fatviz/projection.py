"""2-D views of embeddings over epochs with stable axes: PCA (instant), t-SNE and UMAP (on request).

Every projection is causal (epoch k is drawn from epochs 0..k only): a live chart appends each
new epoch and never redraws the old ones.

Everything the embedding figures draw is computed here: each panel's projected points and
centres per epoch (`panel_frames`), one epoch of a t-SNE/UMAP layout (`fit_epoch`, which
fatviz.serve.layouts runs in the background as snapshots arrive), and a point's nearest neighbours.
The figure builders in fatviz.figures receive the finished frames.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fatviz.errors import FatvizError

PROJECTIONS: tuple[str, ...] = ("pca", "tsne", "umap")
PROJECTION_LABELS = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}


@dataclass(frozen=True, eq=False)
class PanelFrames:
    """One panel's 2-D frames: projected points and centres per epoch, with that epoch's test metrics."""

    title: str
    epochs: list[int]
    points: list[np.ndarray]  # per epoch (V, 2)
    centres: list[np.ndarray]  # per epoch (K, 2); NaN rows for classes without a centre
    metrics: list[Mapping[str, float]]  # per epoch, as the snapshot measured them
    unit_circle: bool = False  # raw 2-D embedding on the unit circle: draw the circle


@functools.lru_cache(maxsize=1)
def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries, found once: looking them up costs
    about 10 ms, and the live view projects four panels every few seconds."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def panel_frames(title: str, snapshots: Sequence, method: str = "pca", seed: int = 0,
                 progress: Callable[[float, str], None] | None = None) -> PanelFrames:
    """Project one run's snapshots to 2-D for a panel (causal: see project_frames)."""
    if not snapshots:
        raise FatvizError(f"The run {title!r} has no snapshot yet: nothing to draw.")
    # One BLAS thread: these matrices are small, and on a laptop whose cores are busy training,
    # extra BLAS threads only spin (measured: PCA of 31 epochs 2.2 s with them, 0.3 s without).
    with _blas_controller().limit(limits=1, user_api="blas"):
        points, centres = project_frames([s.embeddings for s in snapshots], method, seed,
                                         extra=[s.centres for s in snapshots], progress=progress)
    return panel_of(title, snapshots, points, centres)


def panel_of(title: str, snapshots: Sequence, points: Sequence[np.ndarray], centres: Sequence[np.ndarray]
             ) -> PanelFrames:
    """A panel of the first len(points) snapshots, from their projected points and centres (a
    class without a centre in an epoch gets a NaN row)."""
    snapshots = list(snapshots)[:len(points)]
    if not snapshots:
        raise FatvizError(f"The run {title!r} has no projected epoch yet: nothing to draw.")
    centres = [np.where(np.asarray(s.present, dtype=bool)[:, None], c, np.nan).astype(np.float32)
               for s, c in zip(snapshots, centres, strict=True)]
    last = np.asarray(snapshots[-1].embeddings)
    circle = last.shape[1] == 2 and bool(np.allclose(np.linalg.norm(last, axis=1), 1.0, atol=1e-3))
    return PanelFrames(title, [int(s.epoch) for s in snapshots], list(points), centres,
                       [dict(s.metrics) for s in snapshots], circle)


def result_panels(results: Mapping, method: str = "pca") -> list[PanelFrames]:
    """One panel per saved run of {option: RunResult}, each projected with its run's seed."""
    return [panel_frames(option, r.snapshots, method, r.settings.seed) for option, r in results.items()]


def nearest_neighbours(embeddings: np.ndarray, index: int, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """The k points nearest to point `index` (Euclidean, in the embedding itself), and their distances."""
    emb = np.asarray(embeddings, dtype=np.float64)
    if not 0 <= index < len(emb):
        raise FatvizError(f"Point {index} does not exist: the view holds {len(emb)} points.")
    d = np.sqrt(((emb - emb[index]) ** 2).sum(1))
    d[index] = np.inf
    k = min(k, len(emb) - 1)
    order = np.argsort(d, kind="stable")[:k]
    return order, d[order]


def _procrustes(reference: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """Rotate/reflect `moving` onto `reference` so consecutive frames do not spin or flip."""
    ref = reference - reference.mean(0)
    mov = moving - moving.mean(0)
    u, _, vt = np.linalg.svd(mov.T @ ref)
    return mov @ (u @ vt) + reference.mean(0)


def project_frames(frames: Sequence[np.ndarray], method: str = "pca", seed: int = 0,
                   extra: Sequence[np.ndarray] | None = None,
                   progress: Callable[[float, str], None] | None = None
                   ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Project each epoch's (V, D) points (and optional extra points, e.g. centres) to 2-D.

    Every method is causal: frame k depends only on epochs 0..k, so a live view can draw each
    epoch as it arrives and the finished animation holds the very same frames. PCA projects
    epoch k on the axes of epochs 0..k stacked, turned to face the previous epoch's axes, so the
    axes settle while points move. Two-dimensional embeddings are shown as they are. t-SNE and
    UMAP fit each epoch, starting from the previous epoch's layout, and are aligned to it
    (Procrustes).
    Extra points go through the same linear map for PCA; for t-SNE/UMAP each extra point
    is placed at the mean of its 5 nearest frame points (in the original space).
    """
    if method not in PROJECTIONS:
        raise FatvizError(f"Unknown projection {method!r}: choose pca, tsne or umap.")
    if not frames:
        return [], ([] if extra is not None else None)
    dim = frames[0].shape[1]
    if dim == 2:
        return [np.asarray(f, dtype=np.float32) for f in frames], \
            (None if extra is None else [np.asarray(e, dtype=np.float32) for e in extra])
    if dim < 2:
        raise FatvizError("Embeddings need at least two dimensions to draw.")
    if method == "pca":
        return _pca_frames(frames, extra)
    out: list[np.ndarray] = []
    proj_extra: list[np.ndarray] | None = None if extra is None else []
    previous: np.ndarray | None = None
    for i, f in enumerate(frames):
        if progress is not None:
            progress(i / len(frames), f"{method.upper()} epoch {i + 1}/{len(frames)}")
        previous, placed = fit_epoch(f, method, seed, previous, None if extra is None else extra[i])
        out.append(previous)
        if proj_extra is not None:
            proj_extra.append(placed)
    if progress is not None:
        progress(1.0, f"{method.upper()} done")
    return out, proj_extra


def fit_epoch(frame: np.ndarray, method: str, seed: int, previous: np.ndarray | None = None,
              extra: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """One epoch of a t-SNE or UMAP layout: `frame`'s (V, D) points fitted from the previous
    epoch's (V, 2) layout and turned onto it (Procrustes), so the picture moves only as much as
    the embedding did; `extra` points (centres) sit at the mean of their 5 nearest frame points.
    A pure function of its inputs: fatviz.serve.layouts calls it epoch by epoch in a background process."""
    x = np.asarray(frame, dtype=np.float32)
    emb = _fit_nonlinear(x, method, seed, previous)
    if previous is not None:
        emb = _procrustes(previous, emb)
    emb = emb.astype(np.float32)
    placed = None if extra is None else _place_by_neighbours(x, emb, np.asarray(extra, dtype=np.float32))
    return emb, placed


def _pca_frames(frames: Sequence[np.ndarray], extra: Sequence[np.ndarray] | None
                ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """PCA per epoch on the epochs so far (see _pca_maps), each epoch drawn on its own axes."""
    proj: list[np.ndarray] = []
    proj_extra: list[np.ndarray] | None = None if extra is None else []
    for i, (mean, basis) in enumerate(_pca_maps(frames)):
        proj.append(((np.asarray(frames[i], dtype=np.float64) - mean) @ basis).astype(np.float32))
        if proj_extra is not None:
            proj_extra.append(((np.asarray(extra[i], dtype=np.float64) - mean) @ basis).astype(np.float32))
    return proj, proj_extra


def _pca_maps(frames: Sequence[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Each epoch's PCA map (mean, (D, 2) basis) on the epochs so far (running sums: one D x D
    eigenproblem per epoch), each basis turned (a 2 x 2 rotation or reflection) to face the one before it."""
    dim = frames[0].shape[1]
    total, outer, count = np.zeros(dim), np.zeros((dim, dim)), 0
    previous: np.ndarray | None = None
    for f in frames:
        f = np.asarray(f, dtype=np.float64)
        total += f.sum(0)
        outer += f.T @ f
        count += len(f)
        mean = total / count
        # The top two eigenvectors of the covariance: the axes an SVD of the stacked epochs would give.
        _, vecs = np.linalg.eigh(outer - count * np.outer(mean, mean))
        basis = vecs[:, ::-1][:, :2]
        if previous is None:  # fix each axis' sign so re-running gives the same picture
            signs = np.sign(basis[np.abs(basis).argmax(0), [0, 1]])
            basis = basis * np.where(signs == 0, 1.0, signs)
        else:  # orthogonal Procrustes: the 2 x 2 turn that brings these axes closest to the last
            u, _, vt = np.linalg.svd(basis.T @ previous)
            basis = basis @ (u @ vt)
        previous = basis
        yield mean, basis


def last_frame_map(frames: Sequence[np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """The map PCA draws the last of `frames` with (2-D embeddings: as they are), for new points in
    the same space: an embedding stepped on from that epoch lands on the axes it is drawn on."""
    if not frames:
        raise FatvizError("No epoch to take the axes from.")
    if frames[0].shape[1] == 2:
        return lambda a: np.asarray(a, dtype=np.float32)
    if frames[0].shape[1] < 2:
        raise FatvizError("Embeddings need at least two dimensions to draw.")
    *_, (mean, basis) = _pca_maps(frames)
    return lambda a: ((np.asarray(a, dtype=np.float64) - mean) @ basis).astype(np.float32)


def _place_by_neighbours(frame: np.ndarray, projected: np.ndarray, points: np.ndarray, k: int = 5) -> np.ndarray:
    """Non-linear maps have no transform for new points: use the mean of the k nearest ones."""
    d = ((points[:, None, :] - frame[None, :, :]) ** 2).sum(-1)
    idx = np.argsort(d, axis=1)[:, :k]
    return projected[idx].mean(1).astype(np.float32)


def _fit_nonlinear(x: np.ndarray, method: str, seed: int, init: np.ndarray | None) -> np.ndarray:
    n = x.shape[0]
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(2, (n - 1) // 3)))
        start = "pca" if init is None else init.astype(np.float32)
        return TSNE(n_components=2, perplexity=perplexity, init=start, random_state=seed,
                    max_iter=500 if init is None else 300).fit_transform(x)
    import umap  # imported only here: the import alone costs 10-15 s

    start = "spectral" if init is None else init.astype(np.float32)
    reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), init=start, random_state=seed,
                        n_epochs=200 if init is None else 100)
    return reducer.fit_transform(x)
