"""Projections: PCA with axes fixed across epochs, 2-D shown raw, centres mapped alike."""

import numpy as np
import pytest

from fatviz.errors import FatvizError
from fatviz.projection import project_frames


def test_pca_is_one_map_for_all_epochs_and_centres():
    rng = np.random.default_rng(0)
    frames = [rng.normal(size=(50, 6)) * (i + 1) for i in range(3)]
    centres = [f[:4] for f in frames]
    proj, extra = project_frames(frames, "pca", extra=centres)
    assert [p.shape for p in proj] == [(50, 2)] * 3
    # The same linear map: centres (copies of the first rows) land exactly on those points.
    for p, e in zip(proj, extra, strict=False):
        assert np.allclose(p[:4], e, atol=1e-5)
    # Fitted on all epochs: variance along axis 0 is the largest of the stacked data.
    stacked = np.concatenate(proj)
    assert stacked[:, 0].var() >= stacked[:, 1].var()
    again, _ = project_frames(frames, "pca")
    assert all(np.allclose(a, b) for a, b in zip(proj, again, strict=False))


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


def test_unknown_projection_is_refused():
    with pytest.raises(FatvizError, match="pca, tsne or umap"):
        project_frames([np.zeros((3, 3))], "isomap")
