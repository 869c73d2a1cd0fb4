"""The training engine on tiny data: snapshots, determinism, stopping, overrides, errors."""

import numpy as np
import pytest
import torch
from helpers import TINY

from fatviz.centroids import CENTROIDS
from fatviz.errors import FatvizError
from fatviz.losses import triplet_bound
from fatviz.models import build_model, pick_device
from fatviz.settings import RunSettings
from fatviz.train import (
    Targets,
    Trainer,
    TrainingDiverged,
    compare_centroids,
    prepare_data,
    train,
)


def test_snapshots_per_epoch_hold_embeddings_centres_bound_and_metrics():
    result = train(TINY)
    assert [s.epoch for s in result.snapshots] == [0, 1, 2, 3]
    last = result.snapshots[-1]
    assert last.embeddings.shape == (80, 8) and last.centres.shape == (4, 8)
    assert last.present.all() and (last.radius > 0).all()
    # Normalised option: anchors and centres on the unit sphere.
    assert np.allclose(np.linalg.norm(last.embeddings, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(last.centres, axis=1), 1, atol=1e-5)
    assert last.bound["bound"] >= last.bound["exact"]
    # The snapshot's bound is the bound of the stored visual subset under the given labels.
    ref = triplet_bound(torch.from_numpy(last.embeddings), torch.from_numpy(result.vis_given), TINY.centroid,
                        TINY.effective_margin)
    assert ref.exact == pytest.approx(last.bound["exact"], abs=1e-5)
    assert ref.bound == pytest.approx(last.bound["bound"], abs=1e-4)
    assert {"precision_at_1", "map", "nmi", "silhouette", "accuracy"} <= set(last.metrics)
    assert set(last.losses) == {"point_to_set", "compactness", "ce", "total"}
    assert last.seconds >= result.snapshots[1].seconds


def test_training_learns_blobs_and_is_deterministic_on_cpu():
    a = train(TINY.replace(epochs=8))
    b = train(TINY.replace(epochs=8))
    assert a.final_metrics["precision_at_1"] > 0.9
    assert a.final_metrics == b.final_metrics
    assert np.array_equal(a.snapshots[-1].embeddings, b.snapshots[-1].embeddings)


@pytest.mark.parametrize("loss", ["fat", "normalized-fat", "hybrid", "triplet-all", "triplet-hard", "ce"])
def test_every_loss_trains_without_nan(loss):
    result = train(TINY.replace(loss=loss, epochs=2))
    assert np.isfinite(result.snapshots[-1].losses["total"])
    assert np.isfinite(result.snapshots[-1].embeddings).all()


def test_batch_centres_and_raw_option_and_negative_modes():
    for change in ({"centres": "batch"}, {"centroid": "mean"}, {"negatives": "hardest", "hardest_k": 2},
                   {"negatives": "average"}, {"radius": "max"}):
        result = train(TINY.replace(epochs=2, **change))
        assert np.isfinite(result.snapshots[-1].losses["total"]), change


def test_stop_between_batches_keeps_a_final_snapshot():
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) >= 2

    result = train(TINY.replace(epochs=10), should_stop=stop)
    assert result.stopped
    assert result.snapshots[-1].epoch == 1  # stopped during epoch 1, after its second batch


def test_centre_weights_and_keep_mask_decide_the_centres():
    data = prepare_data(TINY)
    labels = data.given_labels
    keep = labels != 0  # discard class 0 entirely: it must have no centre, and nothing may NaN
    result = Trainer(TINY, data, Targets(keep=keep)).fit()
    last = result.snapshots[-1]
    assert not last.present[0] and last.present[1:].all()
    assert np.isfinite(last.losses["total"])


def test_noise_is_applied_to_the_given_labels_only():
    data = prepare_data(TINY.replace(noise="symmetric:0.4"))
    flipped = data.noisy.flipped
    assert 0.25 < flipped.mean() < 0.55
    assert (data.given_labels[flipped] != data.dataset.y_train[flipped]).all()
    result = train(TINY.replace(noise="symmetric:0.4", epochs=1), data)
    assert np.array_equal(result.vis_flipped, flipped[result.vis_idx])


def test_diverging_loss_raises_one_clear_error():
    trainer = Trainer(TINY)
    trainer.loss_fn = lambda emb, labels, logits, targets, centroids: {"total": emb.sum() * float("nan")}
    with pytest.raises(TrainingDiverged, match="learning rate"):
        trainer.fit()


def test_compare_centroids_trains_all_four_options_on_the_same_data():
    results = compare_centroids(TINY.replace(epochs=1))
    assert list(results) == list(CENTROIDS.names())
    vis = [r.vis_idx for r in results.values()]
    assert all(np.array_equal(vis[0], v) for v in vis)
    assert results["mean"].settings.centroid == "mean"


def test_one_class_dataset_is_refused(tmp_path):
    from PIL import Image

    for i in range(4):
        (tmp_path / "only").mkdir(exist_ok=True)
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "only" / f"{i}.png")
    with pytest.raises(FatvizError, match="two classes"):
        prepare_data(RunSettings(dataset="folder", data_root=str(tmp_path)))


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda: bool, mps: bool, expected: str):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert pick_device("auto").type == expected
    assert pick_device("cpu").type == "cpu"
    if not cuda:
        with pytest.raises(FatvizError, match="no CUDA GPU is visible"):
            pick_device("cuda")


def test_models_and_device_choice():
    with pytest.raises(FatvizError, match="Unknown device 'tpu'"):
        pick_device("tpu")
    cnn = build_model("auto", (1, 28, 28), 16, 10)
    emb, logits = cnn(torch.zeros(2, 1, 28, 28))
    assert emb.shape == (2, 16) and logits.shape == (2, 10)
    res = build_model("resnet18", (3, 64, 64), 8, 5)
    assert res(torch.zeros(2, 3, 64, 64))[0].shape == (2, 8)
    with pytest.raises(FatvizError):
        build_model("mlp", (1, 28, 28), 8, 5)


@pytest.mark.parametrize("loss", ["ce", "triplet-hard", "fat"])
def test_a_run_records_the_loss_it_trained_with(loss, tmp_path):
    from fatviz.runs import load_run, save_run

    result = train(TINY.replace(loss=loss, epochs=1))
    assert result.settings.loss == loss
    assert load_run(save_run(result, tmp_path / loss)).settings.loss == loss
    # Only the FAT family reports its two terms; only losses with a classifier head its accuracy.
    assert ("point_to_set" in result.snapshots[-1].losses) == (loss == "fat")
    assert ("accuracy" in result.final_metrics) == (loss == "ce")


def test_evaluate_is_the_final_snapshots_metrics():
    trainer = Trainer(TINY.replace(epochs=2), prepare_data(TINY))
    result = trainer.fit()
    assert trainer.evaluator.evaluate() == pytest.approx(result.final_metrics)


def test_a_fake_loss_registered_once_trains():
    from fatviz.losses import LOSSES, LossSpec

    calls = []

    def build(s):
        def loss(emb, labels, logits=None, targets=None, centroids=None):
            calls.append(centroids is not None)
            return {"total": (emb ** 2).mean()}
        return loss

    LOSSES.register("shrink", LossSpec("shrink", "pull every embedding to the origin", build, True, False))
    try:
        result = train(TINY.replace(loss="shrink", epochs=1))
        assert result.settings.loss == "shrink" and calls and all(calls)  # uses_centres: centres passed
    finally:
        LOSSES.unregister("shrink")


def test_per_epoch_metrics_use_a_fixed_subset_and_the_end_the_whole_test_split(tmp_path):
    from fatviz.metrics import evaluate_embeddings
    from fatviz.runs import load_run, save_run

    settings = TINY.replace(epochs=2, eval_points=40)
    data = prepare_data(settings)
    n_test = len(data.dataset.y_test)
    assert n_test > 40
    trainer = Trainer(settings, data)
    result = trainer.fit()
    assert result.evaluated_on == (40, n_test)
    assert result.final_metrics == pytest.approx(trainer.evaluator.evaluate())  # the whole split
    # The snapshot's figures are those of the stratified subset, recomputed here by hand.
    pick = trainer.evaluator.subset
    assert len(pick) == 40 and set(np.unique(data.dataset.y_test[pick])) == set(np.unique(data.dataset.y_test))
    with torch.no_grad():
        trainer.model.eval()
        emb = trainer.model(trainer.evaluator.x_test[torch.as_tensor(pick)])[0]
    from fatviz.centroids import anchor_space

    by_hand = evaluate_embeddings(anchor_space(emb, settings.centroid).numpy(), data.dataset.y_test[pick],
                                  logits=None, seed=settings.seed)
    assert result.snapshots[-1].metrics["precision_at_1"] == pytest.approx(by_hand["precision_at_1"])
    loaded = load_run(save_run(result, tmp_path / "r"))
    assert loaded.final_metrics == result.final_metrics and loaded.evaluated_on == (40, n_test)


def test_a_nan_loss_names_its_epoch_without_a_sync_per_batch(monkeypatch):
    real = Trainer.train_batch
    seen = {"batches": 0}
    per_epoch = -(-len(prepare_data(TINY).given_labels) // TINY.batch_size)

    def late_nan(self, idx):
        seen["batches"] += 1
        out = real(self, idx)
        if seen["batches"] > per_epoch:  # fine through epoch 1, NaN from epoch 2 on
            out["total"] = out["total"] * float("nan")
        return out

    monkeypatch.setattr(Trainer, "train_batch", late_nan)
    with pytest.raises(TrainingDiverged, match="epoch 2"):
        train(TINY.replace(epochs=3))



class _Recorder:
    """Wraps a trainer: keeps each batch's sample indices, embeddings and the centroids its loss was
    given, and the model's state at each epoch's start (epoch_order comes before the epoch's first batch)."""

    def __init__(self, trainer: Trainer) -> None:
        self.calls: list[tuple[int, torch.Tensor, torch.Tensor, object]] = []
        self.starts: list[dict] = []
        train_batch, inner, order = trainer.train_batch, trainer.loss_fn, trainer.epoch_order
        idx_now: list[torch.Tensor] = []

        def batch(idx):
            idx_now[:] = [idx]
            return train_batch(idx)

        def loss(emb, y, logits, targets, centroids):
            self.calls.append((len(self.starts), idx_now[0].clone(), emb.detach().clone(), centroids))
            return inner(emb, y, logits, targets, centroids)

        def epoch_order():
            self.starts.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
            return order()

        trainer.train_batch, trainer.loss_fn, trainer.epoch_order = batch, loss, epoch_order


def _whole_set_by_hand(trainer: Trainer, state: dict, weights: np.ndarray, option: str) -> dict:
    """The whole-set centres of the model in `state` (eval mode), written out per class."""
    from helpers import reference_centroids

    model = build_model(trainer.model_kind, tuple(trainer.data.dataset.input_shape), trainer.settings.embedding_dim,
                        trainer.num_classes)
    model.load_state_dict(state)
    with torch.no_grad():
        emb = model.eval()(trainer.x_train)[0]
    return reference_centroids(emb, trainer.y_train.tolist(), option, trainer.num_classes, weights.tolist())


@pytest.mark.parametrize("option", ["norm-mean-norm", "mean-norm", "norm-mean", "mean"])
@pytest.mark.parametrize("source", ["epoch", "batch", "ema:0.7"])
def test_each_centre_source_gives_the_loss_the_centres_computed_by_hand(source, option):
    """epoch: the whole set at the epoch's start; batch: the batch's own members; ema: the moving
    average over the same batches, from the epoch-0 whole-set centres. Each with distillation's kept
    samples and centre weights, and on the sphere (or in the ball) as the option says."""
    from helpers import reference_centroids, unit

    settings = TINY.replace(loss="fat", centroid=option, centres=source, epochs=2, batch_size=24)
    data = prepare_data(settings)
    n = len(data.given_labels)
    keep = np.ones(n, dtype=bool)
    keep[np.flatnonzero(data.given_labels == 0)[:4]] = False
    centre_weights = np.where(np.arange(n) % 5 == 0, 0.0, 1.0 + (np.arange(n) % 3)).astype(np.float32)
    trainer = Trainer(settings, data, Targets(keep=keep, centre_weights=centre_weights))
    rec = _Recorder(trainer)
    trainer.fit()
    assert rec.calls and len(rec.starts) == 2
    whole_w = keep * centre_weights
    opt = CENTROIDS.get(option)
    if source.startswith("ema"):
        start = _whole_set_by_hand(trainer, rec.starts[0], whole_w, option)
        moving, seen = [c.clone() for c in start["centres"]], list(start["present"])
    for epoch, idx, emb, got in rec.calls:
        y, w = trainer.y_train[idx].tolist(), centre_weights[idx.numpy()].tolist()
        if source == "epoch":
            want = _whole_set_by_hand(trainer, rec.starts[epoch - 1], whole_w, option)
            centres, present = torch.stack(want["centres"]), want["present"]
        elif source == "batch":
            want = reference_centroids(emb, y, option, trainer.num_classes, w)
            centres, present = torch.stack(want["centres"]), want["present"]
        else:  # what the option averages (no projection), moved class by class, then projected
            means = reference_centroids(emb, y, "mean-norm" if opt.normalise_members else "mean", trainer.num_classes, w)
            for k in range(trainer.num_classes):
                if means["present"][k]:
                    moving[k] = 0.7 * moving[k] + 0.3 * means["centres"][k] if seen[k] else means["centres"][k]
                    seen[k] = True
            centres, present = torch.stack([unit(m) if opt.normalise_centre else m for m in moving]), seen
        assert got.present.tolist() == list(present)
        torch.testing.assert_close(got.centres.double(), centres, rtol=1e-4, atol=1e-4)
        if opt.normalise_centre:  # on the sphere, whatever the source
            norms = got.centres.norm(dim=1)[got.present]
            torch.testing.assert_close(norms, torch.ones_like(norms), rtol=0, atol=1e-5)
        elif opt.normalise_members:  # mean-norm: inside the ball
            assert (got.centres.norm(dim=1) <= 1 + 1e-6).all()
    assert np.isfinite(trainer.snapshot_list[-1].losses["total"])


def test_the_trainer_asks_its_parallel_strategy_for_its_share_and_whether_to_stop():
    """A strategy (fatviz.parallel) decides this process's part of every epoch and the agreed stop."""
    from fatviz.parallel import SingleProcess

    class FirstHalf(SingleProcess):
        def batch_share(self, global_length: int, k: int) -> int:
            return global_length // 2

        def shard(self, order: torch.Tensor, global_length: int) -> torch.Tensor:
            return order[:len(order) // 2]

        def agreed_stop(self, should_stop):
            return lambda: True  # another process asked to stop

    data = prepare_data(TINY)
    assert isinstance(Trainer(TINY, data).parallel, SingleProcess)
    trainer = Trainer(TINY.replace(epochs=3), data, parallel=FirstHalf())
    batches = trainer.epoch_batches()
    assert max(len(b) for b in batches) == TINY.batch_size // 2
    assert sum(len(b) for b in batches) <= len(data.given_labels) // 2
    result = trainer.fit()
    assert result.stopped and [s.epoch for s in result.snapshots] == [0, 1]
