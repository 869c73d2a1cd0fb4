"""Tests for fatviz.data.reid_synth: a deterministic ReID set with the Market-1501 split conventions."""

from contextlib import contextmanager

import numpy as np
import pytest

from fatviz.data import DATASETS, DatasetSpec, load_dataset
from fatviz.data.reid_synth import (
    DEFAULT_REID_SIZE,
    DESCRIPTION,
    NAME,
    REID_SIZES,
    _around,
    _occlude,
    _shots,
    load_reid_synth,
)
from fatviz.errors import FatvizError
from fatviz.settings import RunSettings

SMALL = REID_SIZES.get("small")  # the classroom size: every identity in every camera, equally often
TRAIN_IDENTITIES = SMALL.identities
CAMERAS = SMALL.cameras
PER_IDENTITY = SMALL.images[0]
IMAGES_PER_CAMERA = PER_IDENTITY // CAMERAS


@pytest.fixture(scope="module")
def ds():
    return load_reid_synth(reid_size="small")


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
    a, b, c = (load_reid_synth(seed=seed, subsample=200) for seed in (3, 3, 4))
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
    small = load_reid_synth(subsample=100, seed=1, reid_size="small")
    n_ids = -(-100 // PER_IDENTITY)  # whole identities
    assert len(small.y_train) == n_ids * PER_IDENTITY and small.num_classes == n_ids
    assert small.notes and "subsample=100" in small.notes[0]
    assert load_reid_synth(subsample=100, seed=1, reid_size="small").images_train.tobytes() == small.images_train.tobytes()
    more_test = load_reid_synth(subsample=100, test_fraction=0.5, reid_size="small")
    assert len(np.unique(more_test.y_test)) == n_ids
    big = load_reid_synth(subsample=16, image_size=(128, 64))
    assert big.images_train.shape[1:] == (128, 64, 3)
    with pytest.raises(FatvizError, match="image_size"):
        load_reid_synth(image_size=(4, 4))
    with pytest.raises(FatvizError, match="test_fraction"):
        load_reid_synth(test_fraction=1.0)


def test_loads_through_the_registry(registered):
    ds = load_dataset(NAME, subsample=32, seed=2, reid_size="small")
    assert ds.name == NAME and ds.num_classes == 2


def test_the_default_size_is_reid_like_and_settings_choose_it():
    market = REID_SIZES.get(DEFAULT_REID_SIZE)
    assert RunSettings().reid_size == DEFAULT_REID_SIZE == "market"
    assert market.identities >= 300 and market.images == (4, 12) and market.cameras >= 4
    assert market.occluders > 0 and market.mirror and market.camera_spread > SMALL.camera_spread
    with pytest.raises(FatvizError, match="reid_size .* choose one of market, small"):
        RunSettings(reid_size="huge")


@pytest.mark.parametrize("name", REID_SIZES.names())
def test_shots_follow_the_size(name):
    spec = REID_SIZES.get(name)
    who, cam, shot = _shots(np.random.default_rng(0), spec, 400)
    count = np.bincount(who, minlength=400)
    assert count.min() >= spec.images[0] and count.max() <= spec.images[1]
    assert abs(count.mean() - sum(spec.images) / 2) < 0.5
    for i in range(400):
        cams, per_cam = np.unique(cam[who == i], return_counts=True)
        assert spec.cameras_per_identity[0] <= len(cams) <= spec.cameras_per_identity[1]
        assert cams.max() < spec.cameras and per_cam.min() >= 2  # a query always has a gallery elsewhere
        assert per_cam.max() - per_cam.min() <= 1  # spread as evenly as they go
        assert sorted(shot[who == i][cam[who == i] == cams[0]]) == list(range(per_cam[0]))
    if name == "small":
        assert (count == 16).all() and (np.bincount(who * 4 + cam) == 4).all()


def test_market_on_tiny_data_keeps_the_split_convention():
    ds = load_reid_synth(subsample=80, seed=0)  # the default size, 10 training identities of 4-12 images
    spec = REID_SIZES.get("market")
    assert ds.num_classes == 10 and 4 * 10 <= len(ds.y_train) <= 12 * 10
    assert "10 train identities" in ds.notes[0]
    query, gallery = ds.is_query_test, ~ds.is_query_test
    for identity in np.unique(ds.y_test):
        mine = ds.y_test == identity
        assert spec.images[0] <= mine.sum() <= spec.images[1]
        cams = np.unique(ds.cam_test[mine])
        assert 2 <= len(cams) and cams.max() < spec.cameras
        for c in cams:
            assert (mine & query & (ds.cam_test == c)).sum() == 1  # one query per identity and camera
            assert np.any(gallery & mine & (ds.cam_test != c))


def test_occluders_stand_in_front_of_part_of_each_image():
    rng = np.random.default_rng(1)
    img = np.zeros((50, 64, 32, 3), np.float32)
    y = (np.arange(64) + 0.5)[None, :, None].astype(np.float32)
    x = (np.arange(32) + 0.5)[None, None, :].astype(np.float32)
    out = _occlude(img, y, x, 1.0, rng)
    covered = (out != 0).any(axis=-1)
    for mask in covered:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        assert rows.size and rows.max() == 63  # each occluder reaches the ground
        assert mask[rows.min():, cols.min():cols.max() + 1].all()  # one rectangle
        assert mask.mean() < 0.7  # the person is not hidden whole
    assert np.array_equal(_occlude(img, y, x, 0.0, rng), img)


def test_camera_spread_widens_about_the_middle():
    rng = np.random.default_rng(0)
    same, wide = _around(rng, 0.6, 1.2, 1.0, 10_000), _around(rng, 0.6, 1.2, 2.0, 10_000)
    assert 0.6 <= same.min() and same.max() <= 1.2
    assert wide.min() < 0.35 and wide.max() > 1.45 and abs(wide.mean() - 0.9) < 0.01
