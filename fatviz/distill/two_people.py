"""Images of two people: the two-class target, the teacher's detector, and naming both people.

A composite (fatviz.noise.composite) holds two people side by side, each squeezed to half width. The
teacher finds them with a detector trained on side-by-side pairs of its kept samples
(`two_people_probability`); the student, once trained, names both people from the image's halves
(`name_two_people`), since it knows the identities far better than the briefly trained teacher.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from fatviz.distill.stopping import fit_or_stop
from fatviz.progress import Progress, epoch_work
from fatviz.settings import RunSettings
from fatviz.train import PreparedData, Targets, Trainer


def pair_target(pair: np.ndarray, num_classes: int) -> np.ndarray:
    """(M, K) float32 soft labels with half the mass on each of the two classes of every row of `pair`."""
    target = np.zeros((len(pair), num_classes), np.float32)
    rows = np.arange(len(pair))
    target[rows, pair[:, 0]] += 0.5
    target[rows, pair[:, 1]] += 0.5
    return target


# The `two_people_share` setting: synthetic two-people images in each teacher round after the first, as
# a share of the training set (0: none, the default). A teacher that never saw two people in one box
# calls a composite one of them or nobody: on reid-synth (market, seed 7, 5 % composites) its softmax
# held both people in its top two for 1 % of the composites, and its halves, each stretched back to a
# whole image, were not recognised (6 % of clean halves). Shown side-by-side pairs of its kept samples
# with a two-class target (the way composites are made: fatviz.noise.composite) it should learn what two
# people look like, but at a share of 0.1 it did not: on market with the three noise kinds it named no
# composite's two people (seed 7: 0 of 117, 68 verdicts all wrong; seed 0: 0 of 123, 105 wrong), so
# it stays off by default (docs/DISTILL_STUDY.md).
# An image shows two people when the teacher's top two classes each hold at least this probability.
PAIR_THRESHOLD = 0.25


def two_people(probs: np.ndarray, threshold: float = PAIR_THRESHOLD) -> np.ndarray:
    """(N, 2) int64: for each sample whose top two classes both hold at least `threshold`, those two
    classes (most likely first); -1 -1 for the rest."""
    top = np.argsort(-probs, axis=1, kind="stable")[:, :2]
    sure = probs[np.arange(len(probs)), top[:, 1]] >= threshold
    return np.where(sure[:, None], top, -1).astype(np.int64)


def with_two_people(data: PreparedData, keep: np.ndarray, seed: int, share: float) -> tuple[PreparedData, Targets]:
    """A round's data and targets: the training samples (given labels, those in `keep` trained on), plus
    `share` as many composites of two kept samples of different given labels, each with
    half its target on either label (pair_target)."""
    from fatviz.noise import composite

    ds, given = data.dataset, data.given_labels
    n, k = len(given), ds.num_classes
    rng = np.random.default_rng([seed, 5])
    pool = np.flatnonzero(keep)
    left, right = rng.choice(pool, round(share * n)), rng.choice(pool, round(share * n))
    differ = given[left] != given[right]
    left, right = left[differ], right[differ]
    x, _ = composite(ds, left, right)
    soft = np.concatenate([np.eye(k, dtype=np.float32)[given],
                           pair_target(np.stack([given[left], given[right]], axis=1), k)])
    grown = dataclasses.replace(data, dataset=dataclasses.replace(
        ds, x_train=np.concatenate([ds.x_train, x]), images_train=None))
    labels = np.concatenate([given, given[right]])  # only the batch sampler reads these; the soft targets teach
    return grown, Targets(labels=labels, soft=soft, keep=np.concatenate([keep, np.ones(len(left), bool)]))


# The `two_people` setting: after its rounds the teacher trains a detector (the same network, two classes:
# one person, two people) on the training images against as many side-by-side pairs of its kept samples
# (made as composites are, fatviz.noise.composite), for DETECT_EPOCHS epochs. Telling one person from two
# is a matter of layout, not of knowing who they are, so it is learned where naming people is not: on
# market reid-synth with the three noise kinds (seed 7, 117 composites) it called 98 % of the composites
# two people and 4 of 1,534 clean images (the rounds' softmax named both people of 1 %). An image called
# two people is flagged, and its two people are named from its halves (name_two_people).
DETECT_EPOCHS = 3
TWO_PEOPLE_CLASSES = ["one person", "two people"]


def two_people_on(settings: RunSettings, data: PreparedData) -> bool:
    """Whether the teacher looks for two people: image data, `two_people` on (auto: on ReID data)."""
    if data.dataset.kind != "image" or settings.two_people == "off":
        return False
    return settings.two_people == "on" or data.dataset.cam_test is not None


def detector_data(data: PreparedData, keep: np.ndarray, seed: int) -> tuple[PreparedData, Targets]:
    """The detector's data: the n training images (class 0, one person) and up to n side-by-side pairs of kept
    samples of different given labels (class 1, two people)."""
    from fatviz.noise import composite

    ds, given = data.dataset, data.given_labels
    n = len(given)
    rng = np.random.default_rng([seed, 6])
    pool = np.flatnonzero(keep)
    left, right = rng.choice(pool, n), rng.choice(pool, n)
    differ = given[left] != given[right]
    x, _ = composite(ds, left[differ], right[differ])
    grown = dataclasses.replace(data, dataset=dataclasses.replace(
        ds, x_train=np.concatenate([ds.x_train, x]), images_train=None, class_names=TWO_PEOPLE_CLASSES))
    labels = np.concatenate([np.zeros(n, np.int64), np.ones(len(x), np.int64)])
    return grown, Targets(labels=labels)


def detector_work(n: int) -> float:
    """The detector's work at most: DETECT_EPOCHS epochs on 2n images, each scoring the n training images."""
    return epoch_work(2 * n, DETECT_EPOCHS, forward=n)


def two_people_probability(settings: RunSettings, data: PreparedData, keep: np.ndarray, *,
                           should_stop: Callable[[], bool] | None = None, on_progress: Progress | None = None,
                           make_trainer: Callable[..., Trainer] = Trainer) -> np.ndarray:
    """(N,) the detector's probability (see detector_data) that each training image shows two people."""
    grown, targets = detector_data(data, keep, settings.seed)
    trainer = make_trainer(settings.replace(loss="ce", epochs=DETECT_EPOCHS), grown, targets, snapshots=False)
    fit_or_stop(trainer, "during the teacher's two-people detector", should_stop, on_progress)
    logits = trainer.embed(trainer.x_train[:len(data.given_labels)])[1]
    return torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy()


def _halves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The left and right halves of NCHW images (as fatviz.noise.side_by_side splits them), each stretched
    back to the full width."""
    w = x.shape[-1]
    left = w // 2
    size = tuple(x.shape[-2:])
    return (torch.nn.functional.interpolate(x[..., :left], size=size, mode="nearest"),
            torch.nn.functional.interpolate(x[..., left:], size=size, mode="nearest"))


def name_two_people(embed: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, given: np.ndarray,
                    two: np.ndarray, keep: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, 2) int64 pairs for the images in `two` (-1 -1 for the rest): the given label, and the other person.

    `embed` maps images (a slice of the training inputs `x`) to a network's embeddings. Each half of an
    image, stretched back to full width (_halves), is compared with the class centres of the kept samples
    (by given label, unit-length embeddings): the half nearer the given label's centre is the given person,
    and the other half's nearest other centre names the second.

    Measured on market reid-synth with symmetric:0.2+outlier:0.1+multi:0.05 (seeds 0, 1, 2, 7), as the
    share of all composites whose two people were both named: the student's embedding 0.520 / 0.586 /
    0.529 / 0.581; the teacher's 0.252 / 0.371 / 0.347 / 0.256 (its nearest kept sample instead of the
    centre: 0.358 / - / - / 0.325). The given person's half was found for 99-100 % with the student's.
    Centres of kept samples squeezed and stretched like a half (the same degradation) gave 0.561 / 0.603 /
    0.521 / 0.564, no better on average, and adding the teacher's similarities made it worse
    (docs/DISTILL_STUDY.md)."""
    pair = np.full((len(given), 2), -1, np.int64)
    rows = np.flatnonzero(two)
    if not len(rows) or not keep.any():
        return pair

    def unit(t: torch.Tensor) -> np.ndarray:
        e = t.double().cpu().numpy()
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)

    emb = unit(embed(x[:len(given)]))
    sums = np.zeros((num_classes, emb.shape[1]))
    np.add.at(sums, given[keep], emb[keep])
    present = np.bincount(given[keep], minlength=num_classes) > 0
    centres = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    left, right = (unit(embed(h)) for h in _halves(x[torch.as_tensor(rows, device=x.device)]))
    g = given[rows]
    at = np.arange(len(rows))
    given_left = (left @ centres.T)[at, g] >= (right @ centres.T)[at, g]
    sim = np.where(given_left[:, None], right, left) @ centres.T
    sim[:, ~present] = -np.inf  # a class with no kept sample has no centre
    sim[at, g] = -np.inf  # the second person is someone else
    named = np.isfinite(sim.max(axis=1))  # False only when no other class kept a sample
    pair[rows[named], 0], pair[rows[named], 1] = g[named], sim.argmax(axis=1)[named]
    return pair
