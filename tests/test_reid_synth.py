"""Tests for fatviz.reid_synth: a deterministic ReID set with the Market-1501 split conventions."""

from contextlib import contextmanager

import numpy as np
import pytest

from fatviz.data import DATASETS, DatasetSpec, load_dataset
from fatviz.errors import FatvizError
from fatviz.reid_synth import (
    CAMERAS,
    DESCRIPTION,
    IMAGES_PER_CAMERA,
    NAME,
    TRAIN_IDENTITIES,
    load_reid_synth,
)

PER_IDENTITY = CAMERAS * IMAGES_PER_CAMERA


@pytest.fixture(scope="module")
def ds():
    return load_reid_synth()


@contextmanager
def reid_synth_registered():
    """reid-synth in the dataset registry meanwhile (until fatviz.data registers it itself)."""
    added = NAME not in DATASETS
    if added:
        DATASETS.register(NAME, DatasetSpec(NAME, DESCRIPTION, load_reid_synth, False, ""))
    try:
        yield
    finally:
        if added:
            DATASETS.unregister(NAME)


@pytest.fixture
def registered():
    with reid_synth_registered():
        yield


def test_shapes_and_dtypes(ds):
    n_train = TRAIN_IDENTITIES * PER_IDENTITY
    n_test = len(ds.y_test)
    assert ds.name == NAME and ds.kind == "image"
    assert ds.x_train.shape == (n_train, 3, 64, 32) and ds.x_train.dtype == np.float32
    assert ds.x_test.shape == (n_test, 3, 64, 32) and ds.x_test.dtype == np.float32
    assert ds.images_train.shape == (n_train, 64, 32, 3) and ds.images_train.dtype == np.uint8
    assert ds.images_test.shape == (n_test, 64, 32, 3) and ds.images_test.dtype == np.uint8
    assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    assert ds.cam_test.shape == (n_test,) and ds.is_query_test.dtype == bool
    assert ds.num_classes == TRAIN_IDENTITIES
    assert np.array_equal(np.unique(ds.y_train), np.arange(TRAIN_IDENTITIES))
    # Normalised with train statistics: near zero mean and unit spread per channel.
    assert np.abs(ds.x_train.mean(axis=(0, 2, 3))).max() < 1e-3
    assert np.allclose(ds.x_train.std(axis=(0, 2, 3)), 1.0, atol=1e-3)


def test_same_seed_is_byte_identical_other_seed_differs():
    a, b, c = load_reid_synth(seed=3), load_reid_synth(seed=3), load_reid_synth(seed=4)
    for name in ("images_train", "images_test", "x_train", "x_test", "y_train", "y_test", "cam_test",
                 "is_query_test"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes()
    assert a.images_train.tobytes() != c.images_train.tobytes()
    assert a.images_test.tobytes() != c.images_test.tobytes()


def test_reid_split_convention(ds):
    k = ds.num_classes
    # Test identities are unseen: disjoint from train, with ids K, K+1, ...
    assert ds.y_test.min() >= k
    assert not set(ds.y_test) & set(ds.y_train)
    query, gallery = ds.is_query_test, ~ds.is_query_test
    # One query per test identity and camera.
    pairs = list(zip(ds.y_test[query], ds.cam_test[query], strict=True))
    assert len(pairs) == len(set(pairs)) == len(np.unique(ds.y_test)) * CAMERAS
    # Every query has a gallery image of its identity under another camera (the protocol's valid match).
    for identity, cam in pairs:
        assert np.any(gallery & (ds.y_test == identity) & (ds.cam_test != cam))
    assert set(ds.cam_test) == set(range(CAMERAS))


def test_identities_look_alike_across_their_images_not_across_people(ds):
    # A check that the set is learnable: an identity's mean image under one camera is closer to its
    # own under another camera than to most other people's.
    imgs = ds.images_train.reshape(TRAIN_IDENTITIES, CAMERAS, IMAGES_PER_CAMERA, -1).astype(np.float64)
    means = imgs.mean(axis=2)
    own = np.linalg.norm(means[:, 0] - means[:, 1], axis=1)
    other = np.linalg.norm(means[:, 0] - np.roll(means[:, 1], 1, axis=0), axis=1)
    assert np.mean(own < other) > 0.7


def test_subsample_test_fraction_and_image_size():
    small = load_reid_synth(subsample=100, seed=1)
    n_ids = -(-100 // PER_IDENTITY)  # whole identities
    assert len(small.y_train) == n_ids * PER_IDENTITY and small.num_classes == n_ids
    assert small.notes and "subsample=100" in small.notes[0]
    assert load_reid_synth(subsample=100, seed=1).images_train.tobytes() == small.images_train.tobytes()
    more_test = load_reid_synth(subsample=100, test_fraction=0.5)
    assert len(np.unique(more_test.y_test)) == n_ids
    big = load_reid_synth(subsample=16, image_size=(128, 64))
    assert big.images_train.shape[1:] == (128, 64, 3)
    with pytest.raises(FatvizError, match="image_size"):
        load_reid_synth(image_size=(4, 4))
    with pytest.raises(FatvizError, match="test_fraction"):
        load_reid_synth(test_fraction=1.0)


def test_loads_through_the_registry(registered):
    ds = load_dataset(NAME, subsample=32, seed=2)
    assert ds.name == NAME and ds.num_classes == 2
