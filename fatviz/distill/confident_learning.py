"""Confident learning (cleanlab) on cross-validated probabilities: what the teacher is compared with.

It runs after the student (the teacher-student result comes first); the folds train `cv_epochs`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from fatviz.distill.stopping import fit_or_stop
from fatviz.distill.teacher import train_probs
from fatviz.progress import Phases, Progress, epoch_work
from fatviz.settings import RunSettings
from fatviz.train import PreparedData, Targets, Trainer

CV_FOLDS = 5


def fold_count(given: np.ndarray, num_classes: int, folds: int = CV_FOLDS) -> int:
    """How many folds the cross-validation uses: fewer than `folds` when a class has fewer members."""
    counts = np.bincount(given, minlength=num_classes)
    # Fewer folds than members of the smallest class leaves no fold without that class.
    return int(max(2, min(folds, counts[counts > 0].min())))


def cv_work(settings: RunSettings, data: PreparedData, folds: int = CV_FOLDS) -> float:
    """The cross-validation's work: each sample is trained on in all folds but its own."""
    k = fold_count(data.given_labels, data.dataset.num_classes, folds)
    return epoch_work((k - 1) * len(data.given_labels), settings.cv_epochs)


def cross_validated_probs(settings: RunSettings, data: PreparedData, folds: int = CV_FOLDS, *,
                          should_stop: Callable[[], bool] | None = None,
                          on_progress: Progress | None = None, make_trainer: Callable[..., Trainer] = Trainer) -> np.ndarray:
    """Out-of-sample softmax (N, K): each fold predicted by the teacher's model family trained on the others.

    Every fold model trains with cross-entropy on the given labels, like the teacher's round
    0, for `cv_epochs`; only the held-out fold's probabilities are kept.

    Why 3 epochs (the teacher's round 0 has 5), with the five folds costing 4 x 3 epochs
    on the whole training split instead of 4 x 5: on digits (symmetric and pairflip noise at
    20 % and 40 %, seeds 0-4) cleanlab's flag F1 averaged 0.908, 0.924, 0.889, 0.697 with 3
    epochs per fold against 0.907, 0.922, 0.880, 0.652 with 5; 3 was not below 5 in 16 of
    the 20 runs and at most 0.014 below in the other four. Fewer epochs leave the fold
    models less time to memorise flipped labels, which their held-out probabilities would
    otherwise echo, so the cheaper comparison is no weaker.
    """
    from sklearn.model_selection import StratifiedKFold

    given = data.given_labels
    folds = fold_count(given, data.dataset.num_classes, folds)
    with warnings.catch_warnings():
        # A class with a single member cannot be in two folds; sklearn warns and goes on, and so do we.
        warnings.simplefilter("ignore", UserWarning)
        split = list(StratifiedKFold(folds, shuffle=True, random_state=settings.seed).split(given, given))
    phases = Phases({f"fold {i}": epoch_work(len(train_idx), settings.cv_epochs)
                     for i, (train_idx, _) in enumerate(split)}, on_progress)
    fold_settings = settings.replace(loss="ce", epochs=settings.cv_epochs)
    probs = np.zeros((len(given), data.dataset.num_classes), dtype=np.float32)
    for i, (train_idx, held_idx) in enumerate(split):
        keep = np.zeros(len(given), dtype=bool)
        keep[train_idx] = True
        trainer = make_trainer(fold_settings, data, Targets(keep=keep), snapshots=False)
        part = phases.part(f"fold {i}")
        report = None if part is None else (
            lambda f, msg, i=i, part=part: part(f, f"cross-validation fold {i + 1}/{folds}, {msg}"))
        fit_or_stop(trainer, "during cross-validation", should_stop, report)
        probs[held_idx] = train_probs(trainer, held_idx)
    return probs


def confident_learning(given: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """cleanlab's `find_label_issues` (default: prune by noise rate) as a boolean mask."""
    from cleanlab.filter import find_label_issues

    # A class absent from the given labels is fine (its column stays), but cleanlab warns
    # about it at length; the report's notes already say which classes are empty.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # n_jobs=1: cleanlab's own multiprocessing pool breaks inside our spawned job
        # workers (NameError in its pool initialiser), and the sets are small anyway.
        return np.asarray(find_label_issues(given, pred_probs, n_jobs=1), dtype=bool)
