"""The teacher: cross-entropy rounds on the samples it is confident about, and its soft labels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from fatviz.distill.stopping import fit_or_stop
from fatviz.distill.two_people import (
    detector_work,
    name_two_people,
    pair_target,
    two_people,
    two_people_on,
    two_people_probability,
    with_two_people,
)
from fatviz.progress import Phases, Progress, epoch_work
from fatviz.settings import RunSettings
from fatviz.train import PreparedData, Targets, Trainer


@dataclass(eq=False)
class Teacher:
    """The final teacher's view of every training sample, and how the rounds got there."""

    kept: np.ndarray  # (N,) bool: confident after the last round
    probs: np.ndarray  # (N, K) float32: softmax averaged over the last round's epochs
    rounds: list[dict]  # per round: round, trained_on, kept, kept_per_class, epochs
    history: dict[str, np.ndarray]  # "kept", "score", "teacher_label": (rounds + 1, N) each
    # (N, 2) int64: the two identities the final teacher sees in an image that looks like two people
    # (see two_people), -1 -1 for the rest; such images are never kept.
    pair: np.ndarray | None = None
    stopped_early: bool = False  # a round kept nothing, so later rounds had nothing to train on

    def __post_init__(self) -> None:
        if self.pair is None:
            self.pair = np.full((len(self.kept), 2), -1, np.int64)

    @property
    def two_people(self) -> np.ndarray:
        """(N,) bool: the images the teacher says show two people."""
        return self.pair[:, 0] >= 0

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
        """The teacher's probabilities tempered: softmax(log p / T), rows summing to one; an image of two
        people gets the two-class target instead (half on each of its two identities, see pair_target)."""
        soft = soft_labels(np.log(np.maximum(self.probs, np.finfo(np.float32).tiny)), temperature)
        two = self.two_people
        soft[two] = pair_target(self.pair[two], soft.shape[1])
        return soft


def soft_labels(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Row-wise softmax(logits / temperature) as float32 rows that sum to one."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z -= z.max(axis=1, keepdims=True)  # exp never overflows; the row max maps to exp(0) = 1
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    return p.astype(np.float32)


# Each given class keeps at least this share of its members (its best-scored ones) under "agree".
# A class the teacher empties gets no centre from the student, whose anchors of that class then
# learn nothing: on reid-synth (60 identities of 16 images, 35% noise) the teacher kept no sample of
# 36 identities and the student's rank-1 fell to 0.70 against 0.84 without distillation. With 35%
# noise, a quarter of a class's best-scored members are nearly all clean.
CLASS_FLOOR = 0.25


def _class_floor(keep: np.ndarray, score: np.ndarray, given: np.ndarray) -> np.ndarray:
    """`keep`, plus each class's best-scored members up to CLASS_FLOOR of it (at least one)."""
    keep = keep.copy()
    for c in np.unique(given):
        members = np.flatnonzero(given == c)
        floor = max(1, int(np.ceil(CLASS_FLOOR * len(members))))
        if keep[members].sum() < floor:
            keep[members[np.argsort(-score[members], kind="stable")[:floor]]] = True
    return keep


def confident(probs: np.ndarray, given: np.ndarray, settings: RunSettings) -> np.ndarray:
    """The samples the teacher is confident about, by the settings' confidence rule.

    "agree": the teacher's top class is the given label, with a probability of at least
    the class's threshold: `confidence_threshold`, lowered for a class whose samples
    score less on average to that average (confident learning's per-class threshold).
    Without the cap, a class the network finds hard loses its clean members too: on
    digits at 40 % symmetric noise (seed 3) a flat 0.5 flagged 125 of the given 8s,
    of which 60 were flipped (flag F1 0.91; with the cap 59 and 0.98). Early in
    training every class averages below 0.5, so round 0 rests on the class averages.

    Every given class keeps at least its best-scored CLASS_FLOOR share (see _class_floor).

    "small-loss": the `keep_fraction` of samples whose given label has the lowest
    cross-entropy, chosen within each given class so a hard class is not emptied wholesale.
    """
    k = probs.shape[1]
    score = probs[np.arange(len(given)), given]
    if settings.confidence_rule == "agree":
        counts = np.bincount(given, minlength=k)
        class_mean = np.bincount(given, weights=score, minlength=k) / np.maximum(counts, 1)
        threshold = np.minimum(settings.confidence_threshold, class_mean[given])
        return _class_floor((probs.argmax(axis=1) == given) & (score >= threshold), score, given)
    keep = np.zeros(len(given), dtype=bool)
    for c in np.unique(given):
        members = np.flatnonzero(given == c)
        # Highest probability of the given label = lowest loss; stable for equal scores.
        order = members[np.argsort(-score[members], kind="stable")]
        keep[order[:max(1, round(settings.keep_fraction * len(members)))]] = True
    return keep


# The `teacher_verdict` setting: what the last round's keep / flag verdict rests on. "softmax" is the
# confidence rule on the teacher's softmax, as in every round before it. "centre" keeps a sample whose
# embedding lies close to the leave-one-out centre of its given class (own_centre_similarity), the cut
# between close and far found in the data (split_threshold). With few images per class a classifier is
# underfit when the rounds end, and its softmax cannot tell a hard clean image from a wrong one; its
# embedding can. On market reid-synth with symmetric:0.2+outlier:0.1+multi:0.05 (seed 7) the softmax
# kept 49 % of the clean samples (flag F1 0.62), the centres kept 96 % (F1 0.79); on digits (seeds 0, 1),
# whose 10 classes of ~135 images the classifier fits, the softmax does better (0.90 against 0.85-0.86),
# so "auto" takes the centres on ReID data only (docs/DISTILL_STUDY.md).
def verdict_of(settings: RunSettings, data: PreparedData) -> str:
    """The settings' teacher_verdict, "auto" resolved: centre on ReID data (a test split with cameras), else softmax."""
    if settings.teacher_verdict != "auto":
        return settings.teacher_verdict
    return "centre" if data.dataset.cam_test is not None else "softmax"


def own_centre_similarity(emb: np.ndarray, given: np.ndarray, num_classes: int) -> np.ndarray:
    """(N,) cosine similarity of each L2-normalised embedding to the mean of the other members of its
    given class (its leave-one-out centre), NaN for a class's only member."""
    e = np.asarray(emb, np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    sums = np.zeros((num_classes, e.shape[1]))
    np.add.at(sums, given, e)
    others = sums[given] - e  # leave the sample itself out, or it always looks close to its centre
    norm = np.linalg.norm(others, axis=1)
    alone = np.bincount(given, minlength=num_classes)[given] < 2
    sim = (e * others).sum(axis=1) / np.maximum(norm, 1e-12)
    return np.where(alone, np.nan, sim)


def split_threshold(values: np.ndarray) -> float:
    """The cut that splits `values` (NaN ignored) into a low and a high group with the largest
    between-group variance (Otsu's rule): halfway between the last low and the first high value."""
    v = np.sort(np.asarray(values, np.float64)[np.isfinite(values)])
    if len(v) < 2 or v[0] == v[-1]:
        return -np.inf  # one group: nothing is low
    n = len(v)
    low_n = np.arange(1, n)
    low_mean = np.cumsum(v)[:-1] / low_n
    high_mean = (v.sum() - np.cumsum(v)[:-1]) / (n - low_n)
    between = low_n * (n - low_n) * (high_mean - low_mean) ** 2
    between[v[1:] == v[:-1]] = -1.0  # a cut between equal values is no cut
    i = int(np.argmax(between))
    return float((v[i] + v[i + 1]) / 2)


def centre_verdict(emb: np.ndarray, given: np.ndarray, num_classes: int) -> np.ndarray:
    """(N,) bool kept: own_centre_similarity at or above split_threshold (a class's only member is kept:
    nothing to compare it with), plus each class's CLASS_FLOOR best (see _class_floor)."""
    sim = own_centre_similarity(emb, given, num_classes)
    keep = ~(sim < split_threshold(sim))
    return _class_floor(keep, np.nan_to_num(sim, nan=np.inf), given)


def train_probs(trainer: Trainer, idx: np.ndarray | None = None) -> np.ndarray:
    """The trainer's softmax on (some of) its training samples, in eval mode."""
    x = trainer.x_train if idx is None else trainer.x_train[torch.as_tensor(idx, device=trainer.device)]
    return torch.softmax(trainer.embed(x)[1].float(), dim=1).cpu().numpy()


# Round 0 goes on past `teacher_epochs` while one more epoch still raised the share of samples
# whose top class is their given label by EXTEND_GROWTH or more, up to EXTEND_UP_TO times as many
# epochs. A network fits the clean labels first; while that share still climbs quickly it has not
# finished, and its verdict would flag clean samples too. Memorising flips raises it slowly.
# Measured on reid-synth (60 identities of 16 images, 35% noise of three kinds): 5 epochs kept
# 131 of 960 samples (flag F1 0.53); 15 kept 503 (F1 0.78).
EXTEND_GROWTH = 0.02
EXTEND_UP_TO = 4


def _still_fitting(epoch_probs: list[np.ndarray], given: np.ndarray) -> bool:
    """Whether the last epoch raised the teacher's agreement with the given labels by EXTEND_GROWTH or more."""
    if len(epoch_probs) < 2:
        return True
    before, now = ((p.argmax(axis=1) == given).mean() for p in epoch_probs[-2:])
    return bool(now - before >= EXTEND_GROWTH)


def _continued(make_trainer: Callable[..., Trainer], settings: RunSettings, data: PreparedData,
               keep: np.ndarray, state: dict | None, two: bool = False) -> Trainer:
    """A trainer on the kept samples, starting from `state`'s weights when given; with `two`, on
    synthetic two-people images besides (with_two_people)."""
    data, targets = (with_two_people(data, keep, settings.seed, settings.two_people_share) if two
                     else (data, Targets(keep=keep)))
    trainer = make_trainer(settings, data, targets, snapshots=False)
    if state is not None:
        trainer.model.load_state_dict(state)
    return trainer


def _fit_scored(trainer: Trainer, epoch_probs: list[np.ndarray], should_stop: Callable[[], bool] | None,
                report: Progress | None, n: int) -> None:
    """Train to the end, adding the softmax on the n training samples (not the synthetic ones after
    them) to `epoch_probs` after each epoch."""
    def after_epoch(f: float, msg: str) -> None:
        epoch_probs.append(train_probs(trainer, np.arange(n)))  # Trainer reports progress once per finished epoch
        if report is not None:
            report(f, msg)

    fit_or_stop(trainer, "during the teacher", should_stop, after_epoch)


def round_work(settings: RunSettings, r: int, trained_on: int, n: int) -> float:
    """Work of teacher round r: its epochs on `trained_on` samples, each epoch scoring all n."""
    return epoch_work(trained_on, settings.teacher_epochs if r == 0 else settings.round_epochs, forward=n)


def teacher_work(settings: RunSettings, n: int, detect: bool = False) -> float:
    """The teacher's work at most (every round on all n samples; with `detect`, the two-people detector), in
    sample-epochs."""
    return (sum(round_work(settings, r, n, n) for r in range(settings.teacher_rounds + 1))
            + (detector_work(n) if detect else 0.0))


def train_teacher(settings: RunSettings, data: PreparedData, *, should_stop: Callable[[], bool] | None = None,
                  on_progress: Progress | None = None, make_trainer: Callable[..., Trainer] = Trainer) -> Teacher:
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
    n, k = len(given), data.dataset.num_classes
    n_rounds = settings.teacher_rounds + 1
    # A round trains on what the round before kept: every round is sized at its most (all n) until
    # round 0 is done, then by the last kept count (exact for the next round, close for later ones).
    detect = two_people_on(settings, data)
    phases = Phases({**{f"round {r}": round_work(settings, r, n, n) for r in range(n_rounds)},
                     **({"two people": detector_work(n)} if detect else {})}, on_progress)
    keep = np.ones(n, dtype=bool)
    rounds: list[dict] = []
    hist: dict[str, list[np.ndarray]] = {"kept": [], "score": [], "teacher_label": []}
    state = None
    stopped_early = False
    for r in range(n_rounds):
        epochs = settings.teacher_epochs if r == 0 else settings.round_epochs
        epoch_probs: list[np.ndarray] = []
        part = phases.part(f"round {r}")
        # Two-people images need kept samples to be made of, so they join from round 1, on image data only
        # (two vectors averaged look like any mixture of two classes, which is what pairflip noise looks like).
        two = r > 0 and data.dataset.kind == "image" and settings.two_people_share > 0
        trainer = _continued(make_trainer, settings.replace(loss="ce", epochs=epochs), data, keep, state, two)
        _fit_scored(trainer, epoch_probs, should_stop, None if part is None else (
            lambda f, msg, r=r, part=part: part(f, f"teacher round {r}/{n_rounds - 1}, {msg}")), n)
        while r == 0 and len(epoch_probs) < epochs * EXTEND_UP_TO and _still_fitting(epoch_probs, given):
            # An underfit teacher agrees with too few labels to tell flips from the rest: one more epoch.
            done = len(epoch_probs) + 1
            phases.resize("round 0", round_work(settings, 0, n, n) * done / epochs)
            trainer = _continued(make_trainer, settings.replace(loss="ce", epochs=1), data, keep,
                                 trainer.model.state_dict())
            _fit_scored(trainer, epoch_probs, should_stop, None if part is None else (
                lambda f, msg, done=done, part=part: part(1.0, f"teacher round 0/{n_rounds - 1}, epoch {done}")), n)
        epochs = len(epoch_probs)
        state = trainer.model.state_dict()
        probs = np.mean(epoch_probs, axis=0).astype(np.float32)
        trained_on = int(keep.sum())
        # An image of two people is never kept: no single given label is right for it. Only a teacher that
        # has seen two-people images says so.
        pair = two_people(probs) if two else np.full((n, 2), -1, np.int64)
        verdict = confident(probs, given, settings)
        if r == n_rounds - 1 and verdict_of(settings, data) == "centre":  # the final verdict, see verdict_of
            verdict = centre_verdict(trainer.embed(trainer.x_train[:n])[0].float().cpu().numpy(), given, k)
        keep = verdict & (pair[:, 0] < 0)
        hist["kept"].append(keep)
        hist["score"].append(probs[np.arange(n), given])
        hist["teacher_label"].append(probs.argmax(axis=1))
        rounds.append({"round": r, "trained_on": trained_on, "kept": int(keep.sum()),
                       "kept_per_class": np.bincount(given[keep], minlength=k).astype(int).tolist(),
                       "epochs": epochs})
        for later in range(r + 1, n_rounds):  # none at all when this round kept nothing
            phases.resize(f"round {later}", round_work(settings, later, int(keep.sum()), n) if keep.any() else 0.0)
        if not keep.any():
            stopped_early = r < n_rounds - 1
            break
    if detect and keep.any():
        part = phases.part("two people")
        two = two_people_probability(settings, data, keep, should_stop=should_stop, make_trainer=make_trainer,
                                     on_progress=None if part is None else (
                                         lambda f, msg, part=part: part(f, f"teacher, two-people detector, {msg}")))
        # Named here by the teacher's own embedding; the distillation names them again with the student's.
        pair = name_two_people(lambda x: trainer.embed(x)[0], trainer.x_train, given, two >= 0.5, keep, k)
        keep = keep & (pair[:, 0] < 0)  # the final verdict: an image of two people is never kept
        hist["kept"][-1] = keep
        rounds[-1]["kept"] = int(keep.sum())
        rounds[-1]["kept_per_class"] = np.bincount(given[keep], minlength=k).astype(int).tolist()
    history = {name: np.stack(v) for name, v in hist.items()}
    return Teacher(kept=keep, probs=probs, rounds=rounds, history=history, pair=pair, stopped_early=stopped_early)
