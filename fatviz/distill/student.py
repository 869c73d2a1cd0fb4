"""The student (FAT or hybrid on the given labels, centres from kept samples) and its baselines."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from fatviz.catalogue import BASELINE_SETS
from fatviz.distill.stopping import fit_or_stop
from fatviz.distill.teacher import verdict_of
from fatviz.errors import FatvizError
from fatviz.losses import LOSSES
from fatviz.progress import Phases, Progress, epoch_work
from fatviz.settings import RunSettings
from fatviz.train import PreparedData, RunResult, Targets, Trainer

STUDENT = "student"
BASELINES = {  # row name -> loss trained on the given (noisy) labels; None: the student's own loss
    "fat (noisy labels)": None,
    "batch-hard (noisy labels)": "triplet-hard",
    "cross-entropy (noisy labels)": "ce",
}
SCORES = ("precision_at_1", "map", "nmi")  # what the baselines table keeps of each model's test metrics
REID_SCORES = ("cmc_1", "minp")  # also kept for the report on ReID data


def check_student_loss(settings: RunSettings) -> None:
    """Refuse a student loss outside the FAT family (it would have no class centres to protect)."""
    if not LOSSES.get(settings.loss).uses_centres:
        family = [name for name, spec in LOSSES.items() if spec.uses_centres]
        raise FatvizError(f"The student trains with {', '.join(family)}; loss = {settings.loss!r} is "
                          "not one of them. Set loss to hybrid (the default) to distil.")


def student_trainer(settings: RunSettings, data: PreparedData, soft: np.ndarray, kept: np.ndarray, *,
                    make_trainer: Callable[..., Trainer] = Trainer) -> Trainer:
    """The student's Trainer: settings.loss on the given labels, centres from kept samples only.

    With hybrid, cross-entropy takes the soft labels as targets. Every anchor keeps its
    given label: a flagged one is pulled toward a centre that only kept samples shaped,
    so it cannot drag that centre. Relabelling flagged anchors with the teacher's label
    instead measured no better (student precision@1 on digits, 4 noise settings x 4
    seeds: 0.950 against 0.954). A class with no kept member has no centre: the loss
    leaves it out of the negatives and its anchors add no positive term, so nothing
    divides by zero.

    When the teacher's final verdict rests on its embedding's centres (teacher_verdict, "centre" on ReID
    data), the student trains on the kept samples only, with their given labels as the cross-entropy
    targets. There the flagged samples are mostly noise (market reid-synth with the three noise kinds,
    seed 7: 85 % of 599), and a flagged anchor still pulls toward its given label's centre; and the
    teacher's softmax is what the centres replaced for being underfit (on clean samples a median top
    probability of 0.31), so its soft labels would teach that. At seed 7 the student went from rank-1
    0.227 (FAT on the noisy labels) to 0.514 (docs/DISTILL_STUDY.md).
    """
    check_student_loss(settings)
    if verdict_of(settings, data) == "centre":
        return make_trainer(settings, data, Targets(keep=kept, centre_weights=kept.astype(np.float32)))
    return make_trainer(settings, data, Targets(soft=soft, centre_weights=kept.astype(np.float32)))


# The `student_verdict` setting. The student trains for settings.epochs on the kept samples, so it knows
# the identities far better than the briefly trained teacher; judged again by its embedding (the centre
# verdict: far from the other members of its given class), a clean sample the teacher flagged is kept.
# Market reid-synth with symmetric:0.2+outlier:0.1+multi:0.05, seeds 0, 1, 2, 7, clean samples flagged
# by the teacher's verdict 66 / 48 / 39 / 53, by the student's 17 / 14 / 11 / 13; overall flag F1 the
# same (0.847 / 0.838 / 0.874 / 0.850 against 0.852 / 0.837 / 0.866 / 0.846), per kind higher (nobody
# +0.04 to +0.07, composites 0.77-0.85 -> 0.92-0.95) (docs/DISTILL_STUDY.md). Images the teacher's
# detector calls two people stay flagged.
def student_verdict_on(settings: RunSettings, data: PreparedData) -> bool:
    """Whether the student's embedding gives the final flags (auto: when the teacher's verdict is the centres)."""
    if settings.student_verdict != "auto":
        return settings.student_verdict == "on"
    return verdict_of(settings, data) == "centre"


def student_work(settings: RunSettings, n: int) -> float:
    """The student's work: its epochs on all n samples, with a snapshot after each."""
    return epoch_work(n, settings.epochs, snapshot_of=n)


def train_student(settings: RunSettings, data: PreparedData, soft: np.ndarray, kept: np.ndarray, *,
                  should_stop: Callable[[], bool] | None = None, on_progress: Progress | None = None,
                  make_trainer: Callable[..., Trainer] = Trainer) -> RunResult:
    """Train the student (see student_trainer) with a snapshot per epoch, for the embedding animation."""
    trainer = student_trainer(settings, data, soft, kept, make_trainer=make_trainer)
    report = None if on_progress is None else (lambda f, msg: on_progress(f, f"student, {msg}"))
    result = fit_or_stop(trainer, "while the student trained", should_stop, report)
    result.extras["eval_seconds"] = trainer.evaluator.seconds  # its per-epoch and final test metrics
    # Pages mark the flagged points in the student's embedding animation.
    result.extras["vis_flagged"] = ~kept[result.vis_idx]
    return result


def _baseline_settings(settings: RunSettings) -> dict[str, RunSettings]:
    """The baselines the `baselines` setting asks for, by row name, each with its own loss."""
    return {name: settings.replace(loss=BASELINES[name] or settings.loss) for name in BASELINE_SETS.get(settings.baselines).rows}


def _baseline_work(settings: RunSettings, n: int) -> float:
    # Without snapshots, a loss with centres passes the whole training split forward each epoch for them.
    return epoch_work(n, settings.epochs, forward=n if LOSSES.get(settings.loss).uses_centres else 0)


def baselines_work(settings: RunSettings, n: int) -> float:
    """The baselines' work, in sample-epochs."""
    return sum(_baseline_work(s, n) for s in _baseline_settings(settings).values())


def train_baselines(settings: RunSettings, data: PreparedData, *, should_stop: Callable[[], bool] | None = None,
                    on_progress: Progress | None = None,
                    make_trainer: Callable[..., Trainer] = Trainer) -> dict[str, dict[str, float]]:
    """The baselines the `baselines` setting names (of the student's loss, batch-hard triplet and
    cross-entropy), each on the given (noisy) labels: its test scores, seconds and evaluation's seconds."""
    runs = _baseline_settings(settings)
    n = len(data.given_labels)
    phases = Phases({name: _baseline_work(s, n) for name, s in runs.items()}, on_progress)
    out = {}
    for name, run_settings in runs.items():
        start = time.perf_counter()
        trainer = make_trainer(run_settings, data, snapshots=False)
        part = phases.part(name)
        report = None if part is None else (lambda f, msg, name=name, part=part: part(f, f"baseline {name}, {msg}"))
        fit_or_stop(trainer, "while a baseline trained", should_stop, report)
        m = trainer.evaluator.evaluate()
        out[name] = {**{k: m[k] for k in (*SCORES, *REID_SCORES) if k in m}, "seconds": time.perf_counter() - start,
                     "eval_seconds": trainer.evaluator.seconds}
    return out
