"""The whole distillation: teacher and student, then confident learning and the baselines, then the report."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from fatviz.centroids import compute_centroids
from fatviz.distill.confident_learning import confident_learning, cross_validated_probs, cv_work
from fatviz.distill.report import (
    BASELINE_COLUMNS,
    KIND_REPORT_KEYS,
    PHASES,
    REID_REPORT_KEYS,
    REPORT_KEYS,
    VERDICT_REPORT_KEYS,
    DistillResult,
    centre_shifts,
    confusion_table,
    distill_notes,
    flag_scores,
    kind_flag_scores,
    per_class_table,
    soft_label_scores,
    two_people_scores,
)
from fatviz.distill.stopping import DistillationStopped
from fatviz.distill.student import (
    REID_SCORES,
    SCORES,
    STUDENT,
    baselines_work,
    check_student_loss,
    student_verdict_on,
    student_work,
    train_baselines,
    train_student,
)
from fatviz.distill.teacher import centre_verdict, teacher_work, train_teacher
from fatviz.distill.two_people import name_two_people, two_people_on
from fatviz.evaluation import embed_batches, embed_split, saved_network
from fatviz.progress import Phases, Progress
from fatviz.settings import RunSettings
from fatviz.train import PreparedData, Trainer, prepare_data


def student_centres(settings: RunSettings, data: PreparedData, emb: torch.Tensor):
    """`centres_of(mask)` for report.centre_shifts: class centres (by given label) of the student's
    embedding of the training split `emb` (in its anchor space), from the samples in mask."""
    ds = data.dataset
    labels = torch.as_tensor(data.given_labels)

    def centres_of(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = compute_centroids(emb, labels, settings.centroid, ds.num_classes, weights=torch.as_tensor(mask, dtype=emb.dtype))
        return c.centres.numpy(), c.present.numpy()

    return centres_of


def reid_scores(student: dict[str, float], baseline: dict[str, float], reid: bool) -> dict[str, float]:
    """REID_REPORT_KEYS: rank-1 and mINP of the student and of FAT on the noisy labels, on ReID data only
    (queries against a gallery from other cameras); NaN elsewhere or for a baseline not trained."""
    nan = math.nan
    return {"student_cmc_1": student.get("cmc_1", nan) if reid else nan,
            "student_minp": student.get("minp", nan) if reid else nan,
            "baseline_cmc_1": baseline.get("cmc_1", nan) if reid else nan,
            "baseline_minp": baseline.get("minp", nan) if reid else nan}


def run_distillation(settings: RunSettings, data: PreparedData | None = None, *,
                     should_stop: Callable[[], bool] | None = None, on_progress: Progress | None = None,
                     cleanlab: bool = True, make_trainer: Callable[..., Trainer] = Trainer) -> DistillResult:
    """Teacher rounds, soft labels and student, then the comparisons (confident learning unless
    `cleanlab` is False, and the baselines the `baselines` setting names), with the report.

    `make_trainer` builds every model's trainer from (settings, data, targets, snapshots=):
    fatviz.distributed's DistributedTrainer makes the whole distillation data-parallel.
    The teacher-student result comes first and the comparisons after it, training only what was
    asked for; each phase's seconds are in the report (report.PHASE_SECONDS, NaN for a phase
    skipped), with those its test-split evaluation took (report.PHASE_EVAL_SECONDS). A stop
    request (`should_stop()` returning True, polled between batches) raises
    DistillationStopped, a FatvizError: a half-made teacher or student would be reported as if
    it were finished, so nothing partial is returned or saved. Progress counts the work of
    every phase in sample-epochs (see fatviz.progress), so it grows at a steady pace.
    """
    check_student_loss(settings)  # fail before the teacher trains, not after
    start = time.perf_counter()
    data = data if data is not None else prepare_data(settings)
    n = len(data.given_labels)
    weights = {"teacher": teacher_work(settings, n, two_people_on(settings, data)), "student": student_work(settings, n),
               "cleanlab": cv_work(settings, data) if cleanlab else 0.0, "baselines": baselines_work(settings, n)}
    phases = Phases(weights, on_progress, should_stop, stopped=DistillationStopped)
    seconds = dict.fromkeys(PHASES, math.nan)
    eval_seconds = dict.fromkeys(PHASES, math.nan)
    clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        seconds[phase] = time.perf_counter() - clock
        clock = time.perf_counter()

    ds = data.dataset
    given, true, flipped = data.given_labels, ds.y_train, data.noisy.flipped
    sample_kind, second = data.noisy.sample_kind, data.noisy.second
    teacher = train_teacher(settings, data, should_stop=should_stop, on_progress=phases.part("teacher"),
                            make_trainer=make_trainer)
    soft = teacher.soft_labels(settings.temperature)
    probs = teacher.probs
    flagged = ~teacher.kept
    teacher_label = probs.argmax(axis=1)
    lap("teacher")
    eval_seconds["teacher"] = 0.0  # it scores the training samples only
    phases.check()

    student = train_student(settings, data, soft, teacher.kept, should_stop=should_stop,
                            on_progress=phases.part("student"), make_trainer=make_trainer)
    m = student.final_metrics
    rows = {STUDENT: {**{k: m[k] for k in (*SCORES, *REID_SCORES) if k in m}, "seconds": student.seconds}}
    train_emb = embed_split(student, ds, "train")
    kept = teacher.kept
    if student_verdict_on(settings, data):  # the student judges every sample again (see student_verdict_on)
        kept = centre_verdict(train_emb.numpy(), given, ds.num_classes) & ~teacher.two_people
        flagged = ~kept
        student.extras["vis_flagged"] = flagged[student.vis_idx]
    if teacher.two_people.any():
        # The student knows the identities far better than the briefly trained teacher, so it names both
        # people of the images the teacher's detector found (see name_two_people), from the centres of the
        # final verdict's kept samples; their soft labels follow. Where the student trains on soft labels
        # (the softmax verdict) it learnt the teacher's naming.
        network = saved_network(student, ds)
        teacher.pair = name_two_people(lambda x: embed_batches(network, x)[0], torch.as_tensor(ds.x_train), given,
                                       teacher.two_people, kept, ds.num_classes)
        soft = teacher.soft_labels(settings.temperature)
    lap("student")
    eval_seconds["student"] = student.extras["eval_seconds"]

    cl_flagged = np.zeros(n, dtype=bool)
    if cleanlab:
        phases.check()
        pred_probs = cross_validated_probs(settings, data, should_stop=should_stop, on_progress=phases.part("cleanlab"),
                                           make_trainer=make_trainer)
        cl_flagged = confident_learning(given, pred_probs)
        lap("cleanlab")
        eval_seconds["cleanlab"] = 0.0  # the folds predict held-out training samples only
    if settings.baselines != "none":
        phases.check()
        baselines = train_baselines(settings, data, should_stop=should_stop, on_progress=phases.part("baselines"),
                                    make_trainer=make_trainer)
        lap("baselines")
        eval_seconds["baselines"] = sum(row["eval_seconds"] for row in baselines.values())
        rows.update(baselines)
    baseline_frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(BASELINE_COLUMNS))

    ours, alone = flag_scores(flagged, flipped), flag_scores(~teacher.kept, flipped)  # reported; the teacher's own
    theirs = flag_scores(cl_flagged, flipped) if cleanlab else dict.fromkeys(ours, math.nan)
    nan = math.nan
    fat_noisy = rows.get("fat (noisy labels)", {})
    report = {
        "flag_precision": ours["precision"], "flag_recall": ours["recall"], "flag_f1": ours["f1"],
        "kept_label_precision": float((given == true)[kept].mean()) if kept.any() else nan,
        "student_verdict": float(student_verdict_on(settings, data)),
        **{"teacher_flag_precision": alone["precision"], "teacher_flag_recall": alone["recall"],
           "teacher_flag_f1": alone["f1"], "teacher_n_flagged": alone["n_flagged"]},
        "n_flagged": ours["n_flagged"], "n_flipped": ours["n_flipped"],
        "cleanlab_precision": theirs["precision"], "cleanlab_recall": theirs["recall"],
        "cleanlab_f1": theirs["f1"], "cleanlab_n_flagged": theirs["n_flagged"],
        "student_precision_at_1": rows[STUDENT]["precision_at_1"], "student_map": rows[STUDENT]["map"],
        "baseline_precision_at_1": fat_noisy.get("precision_at_1", nan), "baseline_map": fat_noisy.get("map", nan),
        **reid_scores(rows[STUDENT], fat_noisy, reid=ds.cam_test is not None),
        **kind_flag_scores(flagged, sample_kind),
        **soft_label_scores(soft, true, second, sample_kind,
                            np.setdiff1d(np.arange(ds.num_classes), data.noisy.held_out)),
        **two_people_scores(teacher.pair, true, second, sample_kind),
        **centre_shifts(student_centres(settings, data, train_emb), sample_kind, kept),
        **{f"{phase}_seconds": t for phase, t in seconds.items()},
        **{f"{phase}_eval_seconds": t for phase, t in eval_seconds.items()},
        "seconds": time.perf_counter() - start,
    }
    table = pd.DataFrame({
        "index": np.arange(n), "true_label": true, "given_label": given, "teacher_label": teacher_label,
        "score": probs[np.arange(n), given].astype(np.float64), "flagged": flagged,
        "round_discarded": teacher.round_discarded, "was_flipped": flipped, "cleanlab_flagged": cl_flagged,
        "noise_kind": sample_kind, "second_label": second, "pair_first": teacher.pair[:, 0],
        "pair_second": teacher.pair[:, 1],
    })
    keys = (*REPORT_KEYS, *VERDICT_REPORT_KEYS, *REID_REPORT_KEYS, *KIND_REPORT_KEYS)
    return DistillResult(
        settings=settings, table=table, rounds=teacher.rounds, report={k: float(report[k]) for k in keys},
        per_class=per_class_table(given, flagged, flipped, ds.num_classes),
        confusion=confusion_table(given, teacher_label, true), baselines=baseline_frame, soft_labels=soft,
        student=student, notes=distill_notes(settings, data, teacher, cleanlab, kept), history=teacher.history)
