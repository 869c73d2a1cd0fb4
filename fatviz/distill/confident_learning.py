"""Confident learning (cleanlab) on cross-validated probabilities: what the teacher is compared with."""

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
    return epoch_work((k - 1) * len(data.given_labels), settings.teacher_epochs)


def cross_validated_probs(settings: RunSettings, data: PreparedData, folds: int = CV_FOLDS, *,
                          should_stop: Callable[[], bool] | None = None,
                          on_progress: Progress | None = None) -> np.ndarray:
    """Out-of-sample softmax (N, K): each fold predicted by the teacher's model family trained on the others.

    Every fold model trains with cross-entropy on the given labels for `teacher_epochs`,
    like the teacher's round 0; only the held-out fold's probabilities are kept.
    """
    from sklearn.model_selection import StratifiedKFold

    given = data.given_labels
    folds = fold_count(given, data.dataset.num_classes, folds)
    with warnings.catch_warnings():
        # A class with a single member cannot be in two folds; sklearn warns and goes on, and so do we.
        warnings.simplefilter("ignore", UserWarning)
        split = list(StratifiedKFold(folds, shuffle=True, random_state=settings.seed).split(given, given))
    phases = Phases({f"fold {i}": epoch_work(len(train_idx), settings.teacher_epochs)
                     for i, (train_idx, _) in enumerate(split)}, on_progress)
    fold_settings = settings.replace(loss="ce", epochs=settings.teacher_epochs)
    probs = np.zeros((len(given), data.dataset.num_classes), dtype=np.float32)
    for i, (train_idx, held_idx) in enumerate(split):
        keep = np.zeros(len(given), dtype=bool)
        keep[train_idx] = True
        trainer = Trainer(fold_settings, data, Targets(keep=keep), snapshots=False)
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
