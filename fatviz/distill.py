"""Label distillation (FAT_METHOD.md section 4): a teacher flags doubtful labels, a student learns from the rest.

1. The teacher trains with cross-entropy on every (noisy) label for `teacher_epochs`.
2. Each of `teacher_rounds` further rounds keeps the samples the teacher is confident
   about (`confidence_rule`) and trains the same network on those only for `round_epochs`.
3. The samples the final teacher does not keep are the *flagged* samples; its softmax
   (averaged over its last round's epochs), tempered by `temperature`, gives every
   sample a soft label.
4. The student trains with FAT (or hybrid, whose cross-entropy takes the soft labels);
   only kept samples shape the class centres.

With synthetic noise the flipped labels are known, so the flagged set is scored against
them, next to confident learning (cleanlab) run on cross-validated probabilities, and
the student is compared on the test split with models trained on the noisy labels.

Why the RunSettings defaults (teacher_epochs 5, teacher_rounds 3, round_epochs 3, rule
"agree", confidence_threshold 0.5, temperature 1): on digits with symmetric and pairflip
noise at 20 % and 40 % (scripts/bench_distill.py, seeds 0-4) they give a flag F1 above
confident learning's in all 20 runs (means 0.97, 0.98, 0.96, 0.77 against 0.91, 0.92,
0.88, 0.65) and a student above FAT on the noisy labels in every run. Five teacher
epochs follow the paper's blog; round_epochs of 2, 3 or 4 gave the same mean flag F1
within 0.01. A threshold of 0.5 asks the given label for half the probability mass;
the per-class cap (see `confident`) keeps it from emptying a class the network finds
hard. Lower thresholds kept more flipped labels: at 40 % pairflip (no cap, 8 seeds)
0.4 and 0.45 gave a flag F1 of 0.71 and 0.73 against 0.78 for 0.5. Temperature 2
moved the student's mean precision@1 by about 0.001, so the teacher's own
probabilities stay the soft labels.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fatviz.centroids import anchor_space
from fatviz.errors import FatvizError
from fatviz.metrics import evaluate_embeddings
from fatviz.settings import RunSettings
from fatviz.train import (
    FAT_LOSSES,
    PreparedData,
    RunResult,
    Trainer,
    _embed,
    prepare_data,
)

SCHEMA = "fatviz.distill"
SCHEMA_VERSION = 1
CV_FOLDS = 5
TABLE_COLUMNS = ("index", "true_label", "given_label", "teacher_label", "score", "flagged", "round_discarded",
                 "was_flipped", "cleanlab_flagged")
PER_CLASS_COLUMNS = ("class", "n", "n_flipped", "n_flagged", "precision", "recall", "f1")
CONFUSION_COLUMNS = ("given_label", "teacher_label", "true_label", "count")
BASELINE_COLUMNS = ("precision_at_1", "map", "nmi", "seconds")
STUDENT = "student"
BASELINES = {  # row name -> loss trained on the given (noisy) labels; None: the student's own loss
    "fat (noisy labels)": None,
    "batch-hard (noisy labels)": "triplet-hard",
    "cross-entropy (noisy labels)": "ce",
}
REPORT_KEYS = ("flag_precision", "flag_recall", "flag_f1", "kept_label_precision", "n_flagged", "n_flipped",
               "cleanlab_precision", "cleanlab_recall", "cleanlab_f1", "cleanlab_n_flagged",
               "student_precision_at_1", "student_map", "baseline_precision_at_1", "baseline_map", "seconds")

Progress = Callable[[float, str], None]


class DistillationStopped(FatvizError):
    """`should_stop` asked the distillation to end early; nothing half-finished is returned."""


# -- the teacher ----------------------------------------------------------------------------


@dataclass(eq=False)
class Teacher:
    """The final teacher's view of every training sample, and how the rounds got there."""

    kept: np.ndarray  # (N,) bool: confident after the last round
    probs: np.ndarray  # (N, K) float32: softmax averaged over the last round's epochs
    rounds: list[dict]  # per round: round, trained_on, kept, kept_per_class, epochs
    history: dict[str, np.ndarray]  # "kept", "score", "teacher_label": (rounds + 1, N) each
    stopped_early: bool = False  # a round kept nothing, so later rounds had nothing to train on

    @property
    def round_discarded(self) -> np.ndarray:
        """(N,) the round from which each sample stayed discarded; -1 for kept samples."""
        kept = self.history["kept"]
        out = np.full(kept.shape[1], -1, dtype=np.int64)
        # Walk backwards: a sample discarded in every round from r to the last one was dropped in r.
        still_out = np.ones(kept.shape[1], dtype=bool)
        for r in range(kept.shape[0] - 1, -1, -1):
            still_out &= ~kept[r]
            out[still_out] = r
        return out

    def soft_labels(self, temperature: float) -> np.ndarray:
        """The teacher's probabilities tempered: softmax(log p / T), rows summing to one."""
        return soft_labels(np.log(np.maximum(self.probs, np.finfo(np.float32).tiny)), temperature)


def soft_labels(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Row-wise softmax(logits / temperature) as float32 rows that sum to one."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z -= z.max(axis=1, keepdims=True)  # exp never overflows; the row max maps to exp(0) = 1
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    return p.astype(np.float32)


def confident(probs: np.ndarray, given: np.ndarray, settings: RunSettings) -> np.ndarray:
    """The samples the teacher is confident about, by the settings' confidence rule.

    "agree": the teacher's top class is the given label, with a probability of at least
    the class's threshold: `confidence_threshold`, lowered for a class whose samples
    score less on average to that average (confident learning's per-class threshold).
    Without the cap, a class the network finds hard loses its clean members too: on
    digits at 40 % symmetric noise (seed 3) a flat 0.5 flagged 125 of the given 8s,
    of which 60 were flipped (flag F1 0.91; with the cap 59 and 0.98). Early in
    training every class averages below 0.5, so round 0 rests on the class averages.

    "small-loss": the `keep_fraction` of samples whose given label has the lowest
    cross-entropy, chosen within each given class so a hard class is not emptied wholesale.
    """
    k = probs.shape[1]
    score = probs[np.arange(len(given)), given]
    if settings.confidence_rule == "agree":
        counts = np.bincount(given, minlength=k)
        class_mean = np.bincount(given, weights=score, minlength=k) / np.maximum(counts, 1)
        threshold = np.minimum(settings.confidence_threshold, class_mean[given])
        return (probs.argmax(axis=1) == given) & (score >= threshold)
    keep = np.zeros(len(given), dtype=bool)
    for c in np.unique(given):
        members = np.flatnonzero(given == c)
        # Highest probability of the given label = lowest loss; stable for equal scores.
        order = members[np.argsort(-score[members], kind="stable")]
        keep[order[:max(1, round(settings.keep_fraction * len(members)))]] = True
    return keep


def _probs(trainer: Trainer, idx: np.ndarray | None = None) -> np.ndarray:
    """The trainer's softmax on (some of) its training samples, in eval mode."""
    x = trainer.x_train if idx is None else trainer.x_train[torch.as_tensor(idx, device=trainer.device)]
    return torch.softmax(_embed(trainer.model, x)[1].float(), dim=1).cpu().numpy()


def train_teacher(settings: RunSettings, data: PreparedData, *, should_stop: Callable[[], bool] | None = None,
                  on_progress: Progress | None = None) -> Teacher:
    """Round 0 on every given label, then `teacher_rounds` rounds on the confident samples only.

    Two choices make the teacher work with a few epochs per round (measured on digits
    with symmetric and pairflip noise at 20 % and 40 %, five to eight seeds; see
    scripts/bench_distill.py):

    - Each round continues from the previous round's weights. A fresh network trained
      for `round_epochs` is too unsure to keep much, and the kept set can shrink to
      nothing within two rounds.
    - A round's verdict rests on the softmax averaged over its epochs (a temporal
      ensemble), not on the last epoch alone. A network fits clean labels first and
      memorises flipped ones later, so a flipped label the last epoch has begun to
      memorise still scores low on average. With last-epoch scores, the flag F1 at 40 %
      pairflip fell from about 0.77 to about 0.59 (five seeds), below confident
      learning's 0.65.
    """
    given = data.given_labels
    k = data.dataset.num_classes
    n_rounds = settings.teacher_rounds + 1
    keep = np.ones(len(given), dtype=bool)
    rounds: list[dict] = []
    hist: dict[str, list[np.ndarray]] = {"kept": [], "score": [], "teacher_label": []}
    state = None
    stopped_early = False
    for r in range(n_rounds):
        epochs = settings.teacher_epochs if r == 0 else settings.round_epochs
        trainer = Trainer(settings, data, loss="ce", keep=keep, epochs=epochs, snapshots=False)
        if state is not None:
            trainer.model.load_state_dict(state)
        epoch_probs: list[np.ndarray] = []

        def after_epoch(f: float, msg: str, r: int = r, trainer: Trainer = trainer,
                        epoch_probs: list[np.ndarray] = epoch_probs) -> None:
            epoch_probs.append(_probs(trainer))  # Trainer reports progress once per finished epoch
            if on_progress is not None:
                on_progress((r + f) / n_rounds, f"teacher round {r}/{n_rounds - 1}, {msg}")

        trainer.fit(should_stop=should_stop, on_progress=after_epoch)
        if trainer.stopped:
            raise DistillationStopped("Distillation was stopped during the teacher; nothing was saved.")
        state = trainer.model.state_dict()
        probs = np.mean(epoch_probs, axis=0).astype(np.float32)
        trained_on = int(keep.sum())
        keep = confident(probs, given, settings)
        hist["kept"].append(keep)
        hist["score"].append(probs[np.arange(len(given)), given])
        hist["teacher_label"].append(probs.argmax(axis=1))
        rounds.append({"round": r, "trained_on": trained_on, "kept": int(keep.sum()),
                       "kept_per_class": np.bincount(given[keep], minlength=k).astype(int).tolist(),
                       "epochs": epochs})
        if not keep.any():
            stopped_early = r < n_rounds - 1
            break
    history = {name: np.stack(v) for name, v in hist.items()}
    return Teacher(kept=keep, probs=probs, rounds=rounds, history=history, stopped_early=stopped_early)


# -- confident learning (cleanlab) -------------------------------------------------------------


def cross_validated_probs(settings: RunSettings, data: PreparedData, folds: int = CV_FOLDS, *,
                          should_stop: Callable[[], bool] | None = None,
                          on_progress: Progress | None = None) -> np.ndarray:
    """Out-of-sample softmax (N, K): each fold predicted by the teacher's model family trained on the others.

    Every fold model trains with cross-entropy on the given labels for `teacher_epochs`,
    like the teacher's round 0; only the held-out fold's probabilities are kept.
    """
    from sklearn.model_selection import StratifiedKFold

    given = data.given_labels
    counts = np.bincount(given, minlength=data.dataset.num_classes)
    # Fewer folds than members of the smallest class leaves no fold without that class.
    folds = int(max(2, min(folds, counts[counts > 0].min())))
    with warnings.catch_warnings():
        # A class with a single member cannot be in two folds; sklearn warns and goes on, and so do we.
        warnings.simplefilter("ignore", UserWarning)
        split = list(StratifiedKFold(folds, shuffle=True, random_state=settings.seed).split(given, given))
    probs = np.zeros((len(given), data.dataset.num_classes), dtype=np.float32)
    for i, (train_idx, held_idx) in enumerate(split):
        keep = np.zeros(len(given), dtype=bool)
        keep[train_idx] = True
        trainer = Trainer(settings, data, loss="ce", keep=keep, epochs=settings.teacher_epochs, snapshots=False)
        report = None if on_progress is None else (
            lambda f, msg, i=i: on_progress((i + f) / folds, f"cross-validation fold {i + 1}/{folds}, {msg}"))
        trainer.fit(should_stop=should_stop, on_progress=report)
        if trainer.stopped:
            raise DistillationStopped("Distillation was stopped during cross-validation; nothing was saved.")
        probs[held_idx] = _probs(trainer, held_idx)
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


# -- the student and its baselines ----------------------------------------------------------------


def _check_student_loss(settings: RunSettings) -> None:
    if settings.loss not in FAT_LOSSES:
        raise FatvizError(f"The student trains with {', '.join(FAT_LOSSES)}; loss = {settings.loss!r} is "
                          "not one of them. Set loss to hybrid (the default) to distil.")


def student_trainer(settings: RunSettings, data: PreparedData, soft: np.ndarray, kept: np.ndarray) -> Trainer:
    """The student's Trainer: settings.loss on the given labels, centres from kept samples only.

    With hybrid, cross-entropy takes the soft labels as targets. Every anchor keeps its
    given label: a flagged one is pulled toward a centre that only kept samples shaped,
    so it cannot drag that centre. Relabelling flagged anchors with the teacher's label
    instead measured no better (student precision@1 on digits, 4 noise settings x 4
    seeds: 0.950 against 0.954). A class with no kept member has no centre: the loss
    leaves it out of the negatives and its anchors add no positive term, so nothing
    divides by zero.
    """
    _check_student_loss(settings)
    return Trainer(settings, data, soft_targets=soft, centre_weights=kept.astype(np.float32))


def train_student(settings: RunSettings, data: PreparedData, soft: np.ndarray, kept: np.ndarray, *,
                  should_stop: Callable[[], bool] | None = None, on_progress: Progress | None = None) -> RunResult:
    """Train the student (see student_trainer) with a snapshot per epoch, for the embedding animation."""
    trainer = student_trainer(settings, data, soft, kept)
    result = trainer.fit(should_stop=should_stop, on_progress=on_progress)
    if trainer.stopped:
        raise DistillationStopped("Distillation was stopped while the student trained; nothing was saved.")
    # Pages mark the flagged points in the student's embedding animation.
    result.extras["vis_flagged"] = ~kept[result.vis_idx]
    return result


def evaluate_model(trainer: Trainer) -> dict[str, float]:
    """Test-split metrics (true labels) of a trainer's model as it is now, like a final snapshot's."""
    s = trainer.settings
    ds = trainer.data.dataset
    emb, logits = _embed(trainer.model, trainer.x_test)
    return evaluate_embeddings(anchor_space(emb, s.centroid).cpu().numpy(), ds.y_test,
                               logits=logits.cpu().numpy() if trainer.loss_name in ("hybrid", "ce") else None,
                               cams=ds.cam_test, is_query=ds.is_query_test, seed=s.seed)


def train_baselines(settings: RunSettings, data: PreparedData, *, should_stop: Callable[[], bool] | None = None,
                    on_progress: Progress | None = None) -> dict[str, dict[str, float]]:
    """The student's loss, batch-hard triplet and cross-entropy, each on the given (noisy) labels."""
    out = {}
    for i, (name, loss) in enumerate(BASELINES.items()):
        start = time.perf_counter()
        trainer = Trainer(settings, data, loss=loss or settings.loss, snapshots=False)
        report = None if on_progress is None else (
            lambda f, msg, i=i, name=name: on_progress((i + f) / len(BASELINES), f"baseline {name}, {msg}"))
        trainer.fit(should_stop=should_stop, on_progress=report)
        if trainer.stopped:
            raise DistillationStopped("Distillation was stopped while a baseline trained; nothing was saved.")
        m = evaluate_model(trainer)
        out[name] = {**{k: m[k] for k in ("precision_at_1", "map", "nmi")}, "seconds": time.perf_counter() - start}
    return out


# -- scoring the flagged set ----------------------------------------------------------------------


def flag_scores(flagged: np.ndarray, flipped: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of flagged samples against the truly flipped ones.

    With nothing flagged precision is 1 (no false alarm); with nothing flipped recall is
    1 (nothing was missed): zero-noise runs then score F1 = 1 only if nothing is flagged.
    """
    tp = float((flagged & flipped).sum())
    n_flagged, n_flipped = float(flagged.sum()), float(flipped.sum())
    precision = tp / n_flagged if n_flagged else 1.0
    recall = tp / n_flipped if n_flipped else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "n_flagged": n_flagged, "n_flipped": n_flipped}


def per_class_table(given: np.ndarray, flagged: np.ndarray, flipped: np.ndarray, num_classes: int) -> pd.DataFrame:
    """Flag precision, recall and F1 within each given label."""
    rows = []
    for k in range(num_classes):
        m = given == k
        s = flag_scores(flagged[m], flipped[m])
        rows.append({"class": k, "n": int(m.sum()), "n_flipped": int(s["n_flipped"]), "n_flagged": int(s["n_flagged"]),
                     "precision": s["precision"], "recall": s["recall"], "f1": s["f1"]})
    return pd.DataFrame(rows, columns=list(PER_CLASS_COLUMNS))


def confusion_table(given: np.ndarray, teacher: np.ndarray, true: np.ndarray) -> pd.DataFrame:
    """Counts of (given label, teacher label, true label) triples, nonzero rows only."""
    frame = pd.DataFrame({"given_label": given, "teacher_label": teacher, "true_label": true})
    counts = frame.value_counts(sort=False).rename("count").reset_index()
    return counts.sort_values(list(CONFUSION_COLUMNS[:3]), ignore_index=True)[list(CONFUSION_COLUMNS)]


# -- the whole procedure ------------------------------------------------------------------------------


@dataclass(eq=False)
class DistillResult:
    """A finished distillation: the per-sample table, the report, the student run and its baselines."""

    settings: RunSettings
    # One row per training sample, TABLE_COLUMNS. score and teacher_label come from the final
    # teacher's softmax averaged over its last round's epochs; cleanlab_flagged is all False
    # when confident learning was skipped.
    table: pd.DataFrame
    rounds: list[dict]  # per teacher round: round, trained_on, kept, kept_per_class, epochs
    report: dict[str, float]  # REPORT_KEYS; NaN for a part that was skipped
    per_class: pd.DataFrame  # PER_CLASS_COLUMNS, one row per given label
    confusion: pd.DataFrame  # CONFUSION_COLUMNS, nonzero rows only
    baselines: pd.DataFrame  # index: "student" and BASELINES names; BASELINE_COLUMNS
    soft_labels: np.ndarray  # (N, K) float32, rows sum to one
    student: RunResult
    notes: list[str]
    history: dict[str, np.ndarray] = field(default_factory=dict)  # per round: "kept", "score", "teacher_label"

    def to_csv(self) -> str:
        """The per-sample table as CSV text."""
        return self.table.to_csv(index=False)


class _Phases:
    """Maps each phase's own 0..1 progress onto one bar, weighted by its expected cost."""

    def __init__(self, weights: dict[str, float], on_progress: Progress | None,
                 should_stop: Callable[[], bool] | None) -> None:
        total = sum(weights.values())
        self.starts, acc = {}, 0.0
        for name, w in weights.items():
            self.starts[name] = (acc / total, w / total)
            acc += w
        self.on_progress = on_progress
        self.should_stop = should_stop

    def part(self, name: str) -> Progress | None:
        """The progress callback for one phase (None when nobody listens)."""
        if self.on_progress is None:
            return None
        start, width = self.starts[name]
        return lambda f, msg: self.on_progress(min(1.0, start + width * f), msg)

    def check(self) -> None:
        """Between phases: end here when asked to stop."""
        if self.should_stop is not None and self.should_stop():
            raise DistillationStopped("Distillation was stopped before it finished; nothing was saved.")


def run_distillation(settings: RunSettings, data: PreparedData | None = None, *,
                     should_stop: Callable[[], bool] | None = None, on_progress: Progress | None = None,
                     baselines: bool = True, cleanlab: bool = True) -> DistillResult:
    """Teacher rounds, soft labels, student, confident learning and baselines, with the report.

    A stop request (`should_stop()` returning True, polled between batches) raises
    DistillationStopped, a FatvizError: a half-made teacher or student would be reported
    as if it were finished, so nothing partial is returned or saved.
    """
    settings = settings.validate()
    _check_student_loss(settings)  # fail before the teacher trains, not after
    start = time.perf_counter()
    data = data if data is not None else prepare_data(settings)
    # Weights in "whole-training-set epochs": a student epoch also takes a snapshot, about
    # one more training epoch's worth on digits; a fold model sees (folds - 1) / folds of the data.
    weights = {"teacher": settings.teacher_epochs + settings.teacher_rounds * settings.round_epochs}
    if cleanlab:
        weights["cleanlab"] = (CV_FOLDS - 1) * settings.teacher_epochs
    weights["student"] = 2.0 * settings.epochs
    if baselines:
        weights["baselines"] = len(BASELINES) * settings.epochs
    phases = _Phases(weights, on_progress, should_stop)

    ds = data.dataset
    given, true, flipped = data.given_labels, ds.y_train, data.noisy.flipped
    teacher = train_teacher(settings, data, should_stop=should_stop, on_progress=phases.part("teacher"))
    phases.check()
    soft = teacher.soft_labels(settings.temperature)
    probs = teacher.probs
    flagged = ~teacher.kept
    teacher_label = probs.argmax(axis=1)

    cl_flagged = np.zeros(len(given), dtype=bool)
    if cleanlab:
        pred_probs = cross_validated_probs(settings, data, should_stop=should_stop, on_progress=phases.part("cleanlab"))
        cl_flagged = confident_learning(given, pred_probs)
        phases.check()

    student = train_student(settings, data, soft, teacher.kept, should_stop=should_stop,
                            on_progress=phases.part("student"))
    rows = {STUDENT: {**{k: student.final_metrics[k] for k in ("precision_at_1", "map", "nmi")},
                      "seconds": student.seconds}}
    if baselines:
        phases.check()
        rows.update(train_baselines(settings, data, should_stop=should_stop, on_progress=phases.part("baselines")))
    baseline_frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(BASELINE_COLUMNS))

    ours = flag_scores(flagged, flipped)
    theirs = flag_scores(cl_flagged, flipped) if cleanlab else dict.fromkeys(ours, math.nan)
    nan = math.nan
    fat_noisy = rows.get("fat (noisy labels)", {})
    report = {
        "flag_precision": ours["precision"], "flag_recall": ours["recall"], "flag_f1": ours["f1"],
        "kept_label_precision": float((given == true)[teacher.kept].mean()) if teacher.kept.any() else nan,
        "n_flagged": ours["n_flagged"], "n_flipped": ours["n_flipped"],
        "cleanlab_precision": theirs["precision"], "cleanlab_recall": theirs["recall"],
        "cleanlab_f1": theirs["f1"], "cleanlab_n_flagged": theirs["n_flagged"],
        "student_precision_at_1": rows[STUDENT]["precision_at_1"], "student_map": rows[STUDENT]["map"],
        "baseline_precision_at_1": fat_noisy.get("precision_at_1", nan), "baseline_map": fat_noisy.get("map", nan),
        "seconds": time.perf_counter() - start,
    }
    table = pd.DataFrame({
        "index": np.arange(len(given)), "true_label": true, "given_label": given, "teacher_label": teacher_label,
        "score": probs[np.arange(len(given)), given].astype(np.float64), "flagged": flagged,
        "round_discarded": teacher.round_discarded, "was_flipped": flipped, "cleanlab_flagged": cl_flagged,
    })
    return DistillResult(
        settings=settings, table=table, rounds=teacher.rounds, report={k: float(report[k]) for k in REPORT_KEYS},
        per_class=per_class_table(given, flagged, flipped, ds.num_classes),
        confusion=confusion_table(given, teacher_label, true), baselines=baseline_frame, soft_labels=soft,
        student=student, notes=_notes(settings, data, teacher, cleanlab, baselines), history=teacher.history)


def _notes(settings: RunSettings, data: PreparedData, teacher: Teacher, cleanlab: bool, baselines: bool) -> list[str]:
    """Plain-language notes on what each number rests on, and on anything unusual in this run."""
    s = settings
    names = data.dataset.class_names
    rule = (f"top class = given label, with probability >= {s.confidence_threshold:g} or, in a class that "
            "scores lower on average, >= that average"
            if s.confidence_rule == "agree" else
            f"the {s.keep_fraction:.0%} lowest-loss samples of each given label")
    notes = [
        (f"Teacher: cross-entropy on all {len(data.given_labels)} given labels for {s.teacher_epochs} epochs, "
         f"then {s.teacher_rounds} round(s) of {s.round_epochs} epochs on the samples it was confident about "
         f"({rule}), each round continuing from the last."),
        ("Teacher scores are in-sample: its softmax on the training samples, averaged over the epochs of its last "
         "round (kept samples were trained on, flagged ones were not). Averaging over epochs keeps scores from "
         "early in training, before flipped labels are memorised."),
    ]
    if cleanlab:
        notes.append(f"Confident learning (cleanlab find_label_issues) used out-of-sample probabilities: "
                     f"{CV_FOLDS}-fold stratified cross-validation of the same model trained {s.teacher_epochs} "
                     "epochs with cross-entropy on the other folds, as cleanlab requires "
                     "(in-sample probabilities are overconfident).")
    notes.append(f"Student: {s.loss} for {s.epochs} epochs on the given labels; class centres from kept samples "
                 "only" + (
                     f"; cross-entropy targets are the teacher's soft labels (temperature {s.temperature:g})."
                     if s.loss == "hybrid" else "."))
    if baselines:
        notes.append(f"Baselines train on the given (noisy) labels with no teacher: `fat (noisy labels)` is the "
                     f"student's own loss ({s.loss}); all are scored on the test split with true labels.")
    notes.append("Per-class figures group samples by their given label.")
    empty = [names[k] for k, n in enumerate(np.bincount(data.given_labels[teacher.kept],
                                                        minlength=len(names))) if n == 0]
    if not teacher.kept.any():
        notes.append("The teacher kept no sample, so every sample is flagged and the student has no class "
                     "centre: its FAT term is zero" + (" and only cross-entropy on soft labels trains it."
                                                       if s.loss == "hybrid" else " and it does not learn."))
    elif empty:
        notes.append(f"No kept sample in class(es) {', '.join(map(str, empty))}: the student gives them no "
                     "centre (left out of the negatives; their anchors add no positive term).")
    if teacher.stopped_early:
        notes.append("The teacher ran out of confident samples before its last round, so it stopped there.")
    if not data.noisy.flipped.any():
        notes.append("No label was flipped: recall is 1 by convention and every flag is a false alarm.")
    return notes


# -- saving and loading --------------------------------------------------------------------------------

META_FILE = "distill.json"
STUDENT_FOLDER = "student"


def _json_ready(value: Any) -> Any:
    """NaN and inf become null (strict JSON); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def save_distillation(result: DistillResult, folder: str | os.PathLike) -> Path:
    """Write the distillation into `folder` atomically and return the folder.

    Everything goes into a temporary sibling folder first, which then replaces the
    target by rename: a reader finds the old run, the new one, or (for an instant while
    an old run is swapped out) none, never half of one. Tables are CSV, the rest JSON and
    .npy/.npz read with allow_pickle=False, the student a normal run file.
    """
    from fatviz.runs import save_run

    target = Path(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        meta = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "settings": result.settings.to_dict(),
                "rounds": result.rounds, "report": result.report, "notes": list(result.notes)}
        (tmp / META_FILE).write_text(json.dumps(_json_ready(meta), indent=1))
        result.table.to_csv(tmp / "table.csv", index=False)
        result.per_class.to_csv(tmp / "per_class.csv", index=False)
        result.confusion.to_csv(tmp / "confusion.csv", index=False)
        result.baselines.to_csv(tmp / "baselines.csv", index_label="model")
        np.save(tmp / "soft_labels.npy", np.asarray(result.soft_labels, dtype=np.float32))
        np.savez(tmp / "history.npz", **result.history)
        save_run(result.student, tmp / STUDENT_FOLDER)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "run")  # rename, not copy: the old run leaves in one step
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.read_csv(path)
    if tuple(frame.columns) != columns:
        raise ValueError(f"{path.name} has columns {list(frame.columns)}, expected {list(columns)}")
    return frame


def load_distillation(folder: str | os.PathLike) -> DistillResult:
    """Read a folder written by save_distillation; a missing, foreign or damaged one raises FatvizError."""
    from fatviz.runs import check_schema, load_run

    base = Path(folder)
    meta_path = base / META_FILE
    if not meta_path.is_file():
        raise FatvizError(f"{base} holds no distillation ({META_FILE} is missing); pick a folder written by "
                          "`python -m fatviz distill --out FOLDER` or by the app.")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FatvizError(f"{meta_path} cannot be read ({exc}); the run may be damaged: run it again.") from None
    check_schema(meta, SCHEMA, SCHEMA_VERSION, meta_path, "distillation")
    try:
        table = _read_table(base / "table.csv", TABLE_COLUMNS).astype(
            {"index": np.int64, "true_label": np.int64, "given_label": np.int64, "teacher_label": np.int64,
             "score": np.float64, "flagged": bool, "round_discarded": np.int64, "was_flipped": bool,
             "cleanlab_flagged": bool})
        baselines = pd.read_csv(base / "baselines.csv", index_col="model")
        if tuple(baselines.columns) != BASELINE_COLUMNS:
            raise ValueError("baselines.csv has the wrong columns")
        baselines.index.name = None
        soft = np.load(base / "soft_labels.npy", allow_pickle=False)
        with np.load(base / "history.npz", allow_pickle=False) as npz:
            history = {k: npz[k] for k in npz.files}
        if soft.ndim != 2 or soft.shape[0] != len(table):
            raise ValueError("soft_labels.npy does not match the table")
        report = {k: math.nan if v is None else float(v) for k, v in meta["report"].items()}
        return DistillResult(
            settings=RunSettings.from_dict(meta["settings"], strict=False), table=table,
            rounds=list(meta["rounds"]), report=report,
            per_class=_read_table(base / "per_class.csv", PER_CLASS_COLUMNS),
            confusion=_read_table(base / "confusion.csv", CONFUSION_COLUMNS), baselines=baselines,
            soft_labels=soft.astype(np.float32), student=load_run(base / STUDENT_FOLDER),
            notes=[str(n) for n in meta["notes"]], history=history)
    except FatvizError:
        raise
    except (OSError, KeyError, TypeError, ValueError, pd.errors.ParserError) as exc:
        raise FatvizError(f"{base} is missing part of a distillation ({exc}); it may be damaged: run it again.") from None


# -- command line ----------------------------------------------------------------------------------------


def format_report(result: DistillResult) -> str:
    """The report as plain text for a terminal."""
    s, r = result.settings, result.report
    title = (f"distillation | {s.dataset} | noise {s.noise} | seed {s.seed} | student {s.loss} | "
             f"{r['seconds']:.1f} s")
    lines = [title, "", "teacher rounds", "  round  trained_on  epochs   kept  kept per class"]
    for row in result.rounds:
        lines.append(f"  {row['round']:>5}  {row['trained_on']:>10}  {row['epochs']:>6}  {row['kept']:>5}  "
                     f"{' '.join(map(str, row['kept_per_class']))}")
    lines += ["", f"flagged samples against the {int(r['n_flipped'])} truly flipped labels",
              f"  {'method':<24}{'flagged':>8}{'precision':>11}{'recall':>8}{'F1':>7}"]
    methods = [("teacher (in-sample)", "flag", "n_flagged")]
    if math.isfinite(r["cleanlab_f1"]):
        methods.append((f"cleanlab ({CV_FOLDS}-fold CV)", "cleanlab", "cleanlab_n_flagged"))
    for name, prefix, count in methods:
        lines.append(f"  {name:<24}{int(r[count]):>8}{r[prefix + '_precision']:>11.3f}"
                     f"{r[prefix + '_recall']:>8.3f}{r[prefix + '_f1']:>7.3f}")
    lines.append(f"  kept label precision (share of kept samples whose given label is true): "
                 f"{r['kept_label_precision']:.3f}")
    lines += ["", "test split, true labels", f"  {'model':<30}{'P@1':>7}{'mAP':>7}{'NMI':>7}{'s':>7}"]
    for name, row in result.baselines.iterrows():
        lines.append(f"  {name:<30}{row['precision_at_1']:>7.3f}{row['map']:>7.3f}{row['nmi']:>7.3f}"
                     f"{row['seconds']:>7.1f}")
    lines += ["", "notes"] + [f"  - {n}" for n in result.notes]
    return "\n".join(lines)


def cli(settings: RunSettings, args: Any) -> int:
    """`python -m fatviz distill`: progress on stderr, the report on stdout, optionally a last JSON line."""
    from fatviz.cli import _default_out, _Progress

    bar = _Progress("distill")
    try:
        result = run_distillation(settings, on_progress=bar)
    finally:
        bar.close()
    out = Path(args.out) if args.out else _default_out(settings, "distill")
    path = save_distillation(result, out)
    print(format_report(result))
    print(f"saved: {path} (per-sample table: {path / 'table.csv'})")
    if args.json:
        print(json.dumps(_json_ready({**result.report, "run": str(path)})))
    return 0
