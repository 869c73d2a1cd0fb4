"""One batch at a time (fatviz.stepper): a step is one optimiser step on the batch a run would
take, the counter moves by one batch, the centres are where a brute-force computation puts them,
and stepping a copy of a saved run leaves the run as it was."""

from __future__ import annotations

import copy
import hashlib

import numpy as np
import pytest
import torch
from helpers import reference_centroids

from fatviz.centroids import CENTROIDS, compute_centroids
from fatviz.errors import FatvizError
from fatviz.losses import LOSSES
from fatviz.projection import panel_frames
from fatviz.runs import load_group, save_group
from fatviz.settings import RunSettings
from fatviz.stepper import BatchStepper
from fatviz.train import compare_centroids, cpu_threads, option_settings, prepare_data, threads_for, train

DIGITS_200 = RunSettings(subsample=200, epochs=1, vis_points=60, embedding_dim=8, seed=5)


@pytest.fixture(scope="module")
def data():
    return prepare_data(DIGITS_200)


@pytest.fixture(scope="module")
def saved(data, tmp_path_factory):
    """A finished tiny comparison, saved as the app saves one, and its files' digests."""
    folder = save_group(compare_centroids(DIGITS_200, data), tmp_path_factory.mktemp("runs") / "compare")
    return folder, digests(folder)


def digests(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def whole_set_reference(model: torch.nn.Module, x: np.ndarray, labels: np.ndarray, option: str, k: int) -> np.ndarray:
    """Class centres of the whole training split, sample by sample in eval mode (float64)."""
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        emb = torch.cat([model(torch.as_tensor(x[i:i + 1], dtype=torch.float32))[0] for i in range(len(x))])
    return torch.stack(reference_centroids(emb, labels.tolist(), option, k)["centres"]).numpy()


@pytest.mark.parametrize("centres", ["epoch", "batch"])
def test_a_step_is_one_adam_step_on_the_first_batch_of_the_shuffled_epoch(data, centres) -> None:
    settings = DIGITS_200.replace(centres=centres)
    stepper = BatchStepper(settings, data)
    option = "norm-mean"
    s = option_settings(settings, option)
    hand = copy.deepcopy(stepper.trainers[option].model)
    before = state(hand)
    stepper.step()
    # The same batch by hand: the first batch_size positions of the seeded shuffle, one Adam step.
    x = torch.as_tensor(data.dataset.x_train, dtype=torch.float32)
    y = torch.as_tensor(data.given_labels, dtype=torch.long)
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(s.seed))[:s.batch_size]
    k = data.dataset.num_classes
    # On the stepper's thread count: a bias just before batch norm has a gradient of rounding noise
    # only, which Adam's first step scales up to the learning rate, so the sums must add up alike.
    with cpu_threads(threads_for(stepper.trainers[option].model_kind, torch.device("cpu"))):
        if centres == "epoch":  # the whole set's centres at the epoch's start, in eval mode, each sample weighing 1
            with torch.no_grad():
                hand.eval()
                whole = compute_centroids(hand(x)[0], y, option, k, weights=torch.ones(len(y)))
            hand.train()
        emb, logits = hand(x[idx])
        batch = compute_centroids(emb, y[idx], option, k) if centres == "batch" else whole
        optimiser = torch.optim.Adam(hand.parameters(), lr=s.lr)
        LOSSES.get(s.loss).build(s)(emb, y[idx], logits, y[idx], batch)["total"].backward()
        optimiser.step()
    after = state(stepper.trainers[option].model)
    for name, value in state(hand).items():
        torch.testing.assert_close(after[name], value, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(after[n], before[n]) for n in before)  # the step did change the weights


def test_the_counter_moves_one_batch_a_step_and_a_whole_epoch_of_steps_is_the_trained_epoch(data) -> None:
    stepper = BatchStepper(DIGITS_200, data)
    n = -(-len(data.given_labels) // DIGITS_200.batch_size)  # 200 samples, batches of 128: two
    for b in range(1, n):
        stepped = stepper.step()
        assert stepped.batches == dict.fromkeys(CENTROIDS.names(), b) and stepped.epochs["mean"] == 0
        assert stepped.per_epoch["mean"] == n and stepped.steps == b
        assert stepped.counter == f"epoch 0 + {b} of {n} batches"
    stepped = stepper.step()
    assert stepped.counter == "epoch 1" and stepped.epochs == dict.fromkeys(CENTROIDS.names(), 1)
    assert stepper.step().counter == f"epoch 1 + 1 of {n} batches"
    # One epoch of steps from scratch is the run's first epoch, weight for weight.
    fresh = BatchStepper(DIGITS_200, data)
    for _ in range(n):
        fresh.step()
    for option in CENTROIDS.names():
        run = train(option_settings(DIGITS_200, option), data)
        for name, value in run.state_dict.items():
            torch.testing.assert_close(fresh.trainers[option].model.state_dict()[name], value)


def test_previous_and_new_centres_are_the_brute_force_ones_on_the_shown_axes(data) -> None:
    stepper = BatchStepper(DIGITS_200, data)
    x, labels, k = data.dataset.x_train, data.given_labels, data.dataset.num_classes
    untrained = {o: copy.deepcopy(t.model) for o, t in stepper.trainers.items()}
    stepped = stepper.step()
    panels, moved_from = stepper.panels(stepped)
    for p, option in enumerate(stepper.options):
        before = whole_set_reference(untrained[option], x, labels, option, k)
        after = whole_set_reference(stepper.trainers[option].model, x, labels, option, k)
        np.testing.assert_allclose(stepped.previous[option], before, atol=1e-5)
        np.testing.assert_allclose(stepped.snapshots[option].centres, after, atol=1e-5)
        assert not np.allclose(before, after, atol=1e-4)  # the batch moved them
        distances = [np.sqrt(((a - b) ** 2).sum()) for a, b in zip(after, before, strict=True)]
        np.testing.assert_allclose(stepped.moved[option], distances, atol=1e-5)
        # The axes: the untrained copy's own first epoch by a plain SVD (each axis' largest entry positive).
        shown = anchor_points(untrained[option], x[data.vis_idx], option)
        mean = shown.mean(0)
        axes = np.linalg.svd(shown - mean, full_matrices=False)[2][:2].T
        axes = axes * np.sign(axes[np.abs(axes).argmax(0), [0, 1]])
        np.testing.assert_allclose(moved_from[p], (before - mean) @ axes, atol=1e-4)
        np.testing.assert_allclose(panels[p].centres[0], (after - mean) @ axes, atol=1e-4)
        np.testing.assert_allclose(panels[p].points[0], (anchor_points(stepper.trainers[option].model,
                                                                       x[data.vis_idx], option) - mean) @ axes,
                                   atol=1e-4)


def anchor_points(model: torch.nn.Module, x: np.ndarray, option: str) -> np.ndarray:
    """Embeddings of x one sample at a time in eval mode, in the option's anchor space (float64)."""
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        emb = np.concatenate([model(torch.as_tensor(x[i:i + 1], dtype=torch.float32))[0].double().numpy()
                              for i in range(len(x))])
    return emb if option == "mean" else emb / np.linalg.norm(emb, axis=1, keepdims=True)


def test_stepping_a_saved_run_starts_from_its_last_epoch_on_its_axes_and_leaves_it_unchanged(data, saved) -> None:
    folder, before = saved
    results = load_group(folder)
    weights = {o: {k: v.clone() for k, v in r.state_dict.items()} for o, r in results.items()}
    stepper = BatchStepper(DIGITS_200, data, results)
    for _ in range(3):
        stepped = stepper.step()
    assert stepped.counter == "epoch 2 + 1 of 2 batches"  # from epoch 1, at two batches an epoch
    assert digests(folder) == before  # the files, byte for byte
    for option, result in results.items():  # and the loaded run in memory
        for name, value in weights[option].items():
            assert torch.equal(result.state_dict[name], value)
        stepped_weights = state(stepper.trainers[option].model)
        assert any(not torch.equal(stepped_weights[n], v) for n, v in weights[option].items())  # the copy moved
    # The first step's previous centres are the run's last epoch, drawn where its panel draws them.
    again = BatchStepper(DIGITS_200, data, results)
    stepped = again.step()
    _, moved_from = again.panels(stepped)
    for p, option in enumerate(again.options):
        result = results[option]
        last = result.snapshots[-1]
        np.testing.assert_allclose(stepped.previous[option], last.centres, atol=1e-5)
        np.testing.assert_allclose(moved_from[p], panel_frames(option, result.snapshots).centres[-1], atol=1e-4)


def test_the_four_copies_share_the_prepared_data_instead_of_copying_it(data) -> None:
    stepper = BatchStepper(DIGITS_200, data)
    where = data.dataset.x_train.__array_interface__["data"][0]
    assert {t.x_train.data_ptr() for t in stepper.trainers.values()} == {where}  # one dataset in memory per session


def test_a_run_without_every_option_is_one_clear_error(data, saved) -> None:
    results = load_group(saved[0])
    results.pop("mean")
    with pytest.raises(FatvizError, match="every centroid option"):
        BatchStepper(DIGITS_200, data, results)


@pytest.mark.parametrize("centres", ["batch", "ema:0.9"])
def test_an_epoch_of_steps_is_the_trained_epoch_with_every_centre_source(data, centres) -> None:
    settings = DIGITS_200.replace(centres=centres)
    stepper = BatchStepper(settings, data)
    for _ in range(-(-len(data.given_labels) // settings.batch_size)):
        stepper.step()
    for option in CENTROIDS.names():
        run = train(option_settings(settings, option), data)
        for name, value in run.state_dict.items():
            torch.testing.assert_close(stepper.trainers[option].model.state_dict()[name], value)
