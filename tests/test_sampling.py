"""Batch samplers: identity-balanced (P x K) batches, determinism, and the kept mask."""

import numpy as np
import pytest
import torch

from fatviz.data import Dataset
from fatviz.noise import add_label_noise
from fatviz.sampling import BATCH_SAMPLERS, PKBatches, pk_shape
from fatviz.settings import RunSettings
from fatviz.train import PreparedData, Targets, Trainer


def _batches(sampler: PKBatches, seed: int = 0) -> np.ndarray:
    order = sampler.order(torch.Generator().manual_seed(seed)).numpy()
    size = sampler.batch_length(0)
    assert len(order) % size == 0
    return order.reshape(-1, size)


def test_each_batch_holds_p_classes_of_k():
    labels = np.repeat(np.arange(12), [30, 25, 20, 17, 9, 40, 3, 12, 12, 8, 1, 22])
    sampler = PKBatches(labels, batch_size=32, k=4)
    assert (sampler.p, sampler.k) == (8, 4)
    for batch in _batches(sampler):
        classes, counts = np.unique(labels[batch], return_counts=True)
        assert len(classes) == 8 and (counts == 4).all()


def test_every_sample_is_used_about_once():
    # P (8) below the class count: the groups are used up in the fewest batches. With P = every
    # class, a batch takes each class, so small classes repeat as often as the largest one needs.
    labels = np.repeat(np.arange(20), np.random.default_rng(0).integers(10, 60, size=20))
    used = np.bincount(_batches(PKBatches(labels, 32, 4)).ravel(), minlength=len(labels))
    assert (used >= 1).all()
    assert used.sum() < 1.1 * len(labels)


def test_small_classes_are_sampled_with_replacement():
    labels = np.array([0, 0, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3])
    for batch in _batches(PKBatches(labels, 8, 4)):
        classes, counts = np.unique(labels[batch], return_counts=True)
        assert len(classes) == 2 and (counts == 4).all()


def test_deterministic_for_a_seed():
    labels = np.repeat(np.arange(6), 20)
    sampler = PKBatches(labels, 24, 4)
    assert np.array_equal(_batches(sampler, 3), _batches(sampler, 3))
    assert not np.array_equal(_batches(sampler, 3), _batches(sampler, 4))


def test_few_classes_grow_k_to_fill_the_batch():
    assert pk_shape(10, 128, 4) == (10, 12)
    assert pk_shape(100, 128, 4) == (32, 4)
    assert pk_shape(1, 16, 4) == (1, 16)


def _images(n: int = 120, classes: int = 6) -> PreparedData:
    rng = np.random.default_rng(0)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, 1, 8, 8)).astype(np.float32)
    ds = Dataset("tiny", "image", x, y, x[:30], y[:30], [str(i) for i in range(classes)])
    return PreparedData(ds, add_label_noise(y, "none", 0.0, classes, 0), np.arange(30))


def test_trainer_uses_pk_and_respects_the_kept_mask():
    data = _images()
    keep = np.ones(120, dtype=bool)
    keep[::7] = False
    keep[data.dataset.y_train == 5] = False
    s = RunSettings(dataset="mnist", data_root="-", model="lenet", epochs=1, batch_size=16,
                    batch_sampler="pk", pk_k=4)
    trainer = Trainer(s, data, Targets(keep=keep), snapshots=False)
    order = trainer.epoch_order().numpy()
    assert keep[order].all() and set(np.flatnonzero(keep)) <= set(order)
    labels = data.given_labels
    assert (trainer.sampler.p, trainer.sampler.k) == (4, 4)
    for batch in order.reshape(-1, 16):
        assert (np.unique(labels[batch], return_counts=True)[1] == 4).all()
    trainer.fit()


def test_random_sampler_is_todays_shuffle():
    data = _images()
    trainer = Trainer(RunSettings(dataset="mnist", data_root="-", epochs=1), data, snapshots=False)
    expected = torch.randperm(120, generator=torch.Generator().manual_seed(0))
    assert torch.equal(trainer.epoch_order(), expected)
    assert "pk" in BATCH_SAMPLERS and RunSettings().batch_sampler == "random"
    with pytest.raises(Exception, match="batch_sampler"):
        RunSettings(batch_sampler="nope")
