"""2-D views of embeddings over epochs with stable axes: PCA (instant), t-SNE and UMAP (on request)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from fatviz.errors import FatvizError

PROJECTIONS: tuple[str, ...] = ("pca", "tsne", "umap")


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

    PCA is fitted once on all epochs stacked, so the axes stay put while points move.
    Two-dimensional embeddings are shown as they are. t-SNE and UMAP fit each epoch,
    starting from the previous epoch's layout, and are aligned to it (Procrustes).
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
        stacked = np.concatenate([np.asarray(f, dtype=np.float64) for f in frames])
        mean = stacked.mean(0)
        centred = stacked - mean
        # The top two eigenvectors of the D x D covariance: the same axes as an SVD of the
        # (epochs * V) x D matrix at a fraction of the cost.
        _, vecs = np.linalg.eigh(centred.T @ centred)
        basis = vecs[:, ::-1][:, :2]
        # Fix the sign of each axis so re-running gives the same picture.
        signs = np.sign(basis[np.abs(basis).argmax(0), [0, 1]])
        basis = basis * np.where(signs == 0, 1.0, signs)
        proj = [((f - mean) @ basis).astype(np.float32) for f in frames]
        proj_extra = None if extra is None else [((e - mean) @ basis).astype(np.float32) for e in extra]
        return proj, proj_extra
    out: list[np.ndarray] = []
    previous: np.ndarray | None = None
    for i, f in enumerate(frames):
        if progress is not None:
            progress(i / len(frames), f"{method.upper()} epoch {i + 1}/{len(frames)}")
        emb = _fit_nonlinear(np.asarray(f, dtype=np.float32), method, seed, previous)
        if previous is not None:
            emb = _procrustes(previous, emb)
        out.append(emb.astype(np.float32))
        previous = emb
    if progress is not None:
        progress(1.0, f"{method.upper()} done")
    proj_extra = None
    if extra is not None:
        proj_extra = [_place_by_neighbours(f, p, e) for f, p, e in zip(frames, out, extra, strict=True)]
    return out, proj_extra


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
