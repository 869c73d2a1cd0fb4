"""Projections: causal PCA whose axes settle across epochs, 2-D shown raw, centres mapped alike; panels and neighbours."""

import numpy as np
import pytest

from fatviz.errors import FatvizError
from fatviz.projection import fit_epoch, nearest_neighbours, panel_frames, project_frames
from fatviz.train import Snapshot


def test_pca_maps_centres_like_points_and_is_causal():
    rng = np.random.default_rng(0)
    frames = [rng.normal(size=(50, 6)) * (i + 1) for i in range(3)]
    centres = [f[:4] for f in frames]
    proj, extra = project_frames(frames, "pca", extra=centres)
    assert [p.shape for p in proj] == [(50, 2)] * 3
    # The same linear map: centres (copies of the first rows) land exactly on those points.
    for p, e in zip(proj, extra, strict=True):
        assert np.allclose(p[:4], e, atol=1e-5)
    # Causal: an epoch's frame does not change when later epochs arrive (a live chart appends).
    for k in (1, 2):
        early, _ = project_frames(frames[:k], "pca")
        assert all(np.allclose(a, b) for a, b in zip(early, proj[:k], strict=True))
    again, _ = project_frames(frames, "pca")
    assert all(np.allclose(a, b) for a, b in zip(proj, again, strict=True))


def test_pca_of_the_last_epoch_spans_the_top_axes_of_all_epochs_stacked():
    rng = np.random.default_rng(3)
    scale = np.array([9.0, 4.0, 1.0, 0.5, 0.2])
    frames = [rng.normal(size=(80, 5)) * scale @ np.linalg.qr(rng.normal(size=(5, 5)))[0] for _ in range(4)]
    proj, _ = project_frames(frames, "pca")
    stacked = np.concatenate(frames)
    centred = stacked - stacked.mean(0)
    top = np.linalg.svd(centred, full_matrices=False)[2][:2].T  # brute force: SVD of the stacked epochs
    # The last frame is the last epoch through those two axes, up to a turn of the plane: the same
    # pairwise distances.
    reference = (frames[-1] - stacked.mean(0)) @ top
    d = lambda a: np.linalg.norm(a[:, None] - a[None], axis=-1)  # noqa: E731
    assert np.allclose(d(proj[-1]), d(reference), atol=1e-3)


def test_pca_axes_do_not_spin_between_similar_epochs():
    rng = np.random.default_rng(4)
    base = rng.normal(size=(60, 8)) * np.linspace(3, 0.5, 8)
    frames = [base + rng.normal(scale=0.01, size=base.shape) for _ in range(5)]
    proj, _ = project_frames(frames, "pca")
    spread = np.abs(proj[0]).max()
    assert all(np.abs(b - a).max() < 0.05 * spread for a, b in zip(proj, proj[1:], strict=False))


def test_two_dimensional_embeddings_are_shown_as_they_are():
    frames = [np.arange(10, dtype=np.float32).reshape(5, 2)]
    proj, _ = project_frames(frames, "pca")
    assert np.array_equal(proj[0], frames[0])


def test_tsne_aligns_frames_and_places_centres():
    rng = np.random.default_rng(1)
    base = np.concatenate([rng.normal(size=(20, 5)) + 8 * k for k in range(3)])
    frames = [base, base + rng.normal(scale=0.05, size=base.shape)]
    proj, extra = project_frames(frames, "tsne", extra=[base[:2], base[:2]])
    assert proj[1].shape == (60, 2) and extra[0].shape == (2, 2)
    # Consecutive frames of nearly the same data stay close after alignment.
    spread = np.abs(proj[0]).max()
    assert np.abs(proj[1] - proj[0]).mean() < 0.5 * spread


def test_a_tsne_epoch_starts_from_the_previous_layout():
    rng = np.random.default_rng(2)
    base = np.concatenate([rng.normal(size=(15, 5)) + 8 * k for k in range(3)])
    frames = [base, base + rng.normal(scale=0.05, size=base.shape)]
    proj, _ = project_frames(frames, "tsne", seed=3)
    first, _ = fit_epoch(frames[0], "tsne", 3)
    second, _ = fit_epoch(frames[1], "tsne", 3, previous=first)
    np.testing.assert_allclose(first, proj[0], atol=1e-5)
    np.testing.assert_allclose(second, proj[1], atol=1e-5)
    cold, _ = fit_epoch(frames[1], "tsne", 3)  # without the previous layout: another picture
    assert np.abs(cold - proj[1]).mean() > np.abs(second - proj[0]).mean()


def test_unknown_projection_is_refused():
    with pytest.raises(FatvizError, match="pca, tsne or umap"):
        project_frames([np.zeros((3, 3))], "isomap")


def snapshots(epochs: int = 4, absent: int | None = None) -> list[Snapshot]:
    """Six 5-D points in three classes drifting together, with their centres and a P@1 per epoch."""
    rng = np.random.default_rng(2)
    labels = np.arange(6) % 3
    base = rng.normal(size=(6, 5))
    out = []
    for e in range(epochs):
        emb = (base / (1 + e)).astype(np.float32)
        centres = np.stack([emb[labels == k].mean(0) for k in range(3)])
        present = np.ones(3, dtype=bool)
        if absent is not None:
            present[absent] = False
        out.append(Snapshot(epoch=e, embeddings=emb, centres=centres, radius=np.ones(3, np.float32), present=present,
                            losses={}, bound={}, metrics={"precision_at_1": 0.5 + e / 10}, seconds=float(e)))
    return out


def test_panel_frames_project_every_epoch_and_hide_absent_centres():
    snaps = snapshots(absent=2)
    panel = panel_frames("mean", snaps)
    assert panel.epochs == [0, 1, 2, 3]
    assert all(p.shape == (6, 2) for p in panel.points) and all(c.shape == (3, 2) for c in panel.centres)
    assert all(np.isnan(c[2]).all() and np.isfinite(c[:2]).all() for c in panel.centres)
    assert panel.metrics[-1] == {"precision_at_1": pytest.approx(0.8)}
    assert not panel.unit_circle


def test_panel_frames_without_snapshots_is_a_user_error():
    with pytest.raises(FatvizError, match="no snapshot"):
        panel_frames("mean", [])


def test_nearest_neighbours_match_brute_force_and_skip_the_point_itself():
    emb = np.random.default_rng(3).normal(size=(30, 5))
    order, dist = nearest_neighbours(emb, 7, k=4)
    brute = sorted((np.linalg.norm(emb[j] - emb[7]), j) for j in range(30) if j != 7)[:4]
    assert list(order) == [j for _, j in brute]
    np.testing.assert_allclose(dist, [d for d, _ in brute])
    assert len(nearest_neighbours(emb[:3], 0, k=10)[0]) == 2
    with pytest.raises(FatvizError, match="does not exist"):
        nearest_neighbours(emb, 30)
