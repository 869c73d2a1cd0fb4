"""What a distillation found: the flagged set scored against the flips, its tables, notes and text report."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fatviz.distill.confident_learning import CV_FOLDS
from fatviz.distill.student import SCORES, student_verdict_on
from fatviz.distill.teacher import Teacher, verdict_of
from fatviz.distill.two_people import DETECT_EPOCHS, PAIR_THRESHOLD, two_people_on
from fatviz.noise import NOISY_SAMPLE_KINDS, SAMPLE_KINDS
from fatviz.progress import seconds_text
from fatviz.settings import RunSettings
from fatviz.train import PreparedData, RunResult

TABLE_COLUMNS = ("index", "true_label", "given_label", "teacher_label", "score", "flagged", "round_discarded",
                 "was_flipped", "cleanlab_flagged", "noise_kind", "second_label", "pair_first", "pair_second")
PER_CLASS_COLUMNS = ("class", "n", "n_flipped", "n_flagged", "precision", "recall", "f1")
CONFUSION_COLUMNS = ("given_label", "teacher_label", "true_label", "count")
BASELINE_COLUMNS = (*SCORES, "seconds")
# The phases of a distillation in the order they run, with their names in words: the teacher-student
# result first, then the comparisons (confident learning, the baselines), which a user may skip.
PHASES = {"teacher": "teacher", "student": "student", "cleanlab": "confident learning", "baselines": "baselines"}
PHASE_SECONDS = tuple(f"{phase}_seconds" for phase in PHASES)  # NaN for a phase skipped
# Of each phase's seconds, those spent on test-split metrics (0 for the teacher and the folds, which
# score training samples only; NaN for a phase skipped). Distillations saved before have none.
PHASE_EVAL_SECONDS = tuple(f"{phase}_eval_seconds" for phase in PHASES)
REPORT_KEYS = ("flag_precision", "flag_recall", "flag_f1", "kept_label_precision", "n_flagged", "n_flipped",
               "cleanlab_precision", "cleanlab_recall", "cleanlab_f1", "cleanlab_n_flagged",
               "student_precision_at_1", "student_map", "baseline_precision_at_1", "baseline_map",
               *PHASE_SECONDS, *PHASE_EVAL_SECONDS, "seconds")
# Whether the student's embedding gave the reported flags (student_verdict: 1, else 0), and the teacher's own
# verdict's scores (the same as the reported ones when it did not).
VERDICT_REPORT_KEYS = ("student_verdict", "teacher_flag_precision", "teacher_flag_recall", "teacher_flag_f1",
                       "teacher_n_flagged")
# On ReID data (a query / gallery split across cameras), as the field reports it; NaN elsewhere.
REID_REPORT_KEYS = ("student_cmc_1", "student_minp", "baseline_cmc_1", "baseline_minp")
# Per noise kind (docs/METHOD.md section 6): counts and flag scores, what the soft labels say about
# outliers (flat) and composites (both classes), and how far noisy samples move the class centres.
KIND_REPORT_KEYS = (
    *(f"{key}_{kind}" for kind in NOISY_SAMPLE_KINDS for key in ("n", "flag_precision", "flag_recall", "flag_f1")),
    "multi_top2_both", "n_two_people", "two_people_precision", "two_people_found",
    "outlier_soft_entropy", "clean_soft_entropy",
    "centre_spacing", "centre_shift_noisy", "centre_shift_kept", *(f"centre_shift_{k}" for k in NOISY_SAMPLE_KINDS))


@dataclass(eq=False)
class DistillResult:
    """A finished distillation: the per-sample table, the report, the student run and its baselines."""

    settings: RunSettings
    # One row per training sample, TABLE_COLUMNS. score and teacher_label come from the final
    # teacher's softmax averaged over its last round's epochs; cleanlab_flagged is all False
    # when confident learning was skipped.
    table: pd.DataFrame
    rounds: list[dict]  # per teacher round: round, trained_on, kept, kept_per_class, epochs
    report: dict[str, float]  # REPORT_KEYS and KIND_REPORT_KEYS; NaN for a part that was skipped or absent
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


def kind_flag_scores(flagged: np.ndarray, sample_kind: np.ndarray) -> dict[str, float]:
    """Per noisy kind: its count and flag precision, recall and F1 as if it were the only noise.

    Samples of the other noisy kinds are left out, so precision is |flagged of kind| over
    |flagged of kind or clean|: a kind's score counts false alarms on clean samples only.
    """
    out: dict[str, float] = {}
    clean = sample_kind == "clean"
    for kind in NOISY_SAMPLE_KINDS:
        mine = sample_kind == kind
        s = flag_scores(flagged[mine | clean], mine[mine | clean])
        out.update({f"n_{kind}": float(mine.sum()), f"flag_precision_{kind}": s["precision"],
                    f"flag_recall_{kind}": s["recall"], f"flag_f1_{kind}": s["f1"]})
        if not mine.any():  # no sample of this kind: nothing to score
            out.update(dict.fromkeys((f"flag_precision_{kind}", f"flag_recall_{kind}", f"flag_f1_{kind}"), math.nan))
    return out


def soft_label_scores(soft: np.ndarray, true: np.ndarray, second: np.ndarray, sample_kind: np.ndarray,
                      known: np.ndarray) -> dict[str, float]:
    """Share of composites whose soft label's top two are both true classes; mean entropy (0 sure, 1 flat
    over the known classes) of outliers' and clean samples' soft labels."""
    multi = sample_kind == "multi"
    top2 = np.sort(np.argsort(-soft, axis=1)[:, :2], axis=1)
    pair = np.sort(np.stack([true, second], axis=1), axis=1)
    both = float((top2[multi] == pair[multi]).all(axis=1).mean()) if multi.any() else math.nan
    p = np.clip(soft[:, known].astype(np.float64), 1e-12, None)
    p /= p.sum(axis=1, keepdims=True)
    entropy = -(p * np.log(p)).sum(axis=1) / math.log(max(len(known), 2))

    def mean(mask: np.ndarray) -> float:
        return float(entropy[mask].mean()) if mask.any() else math.nan

    return {"multi_top2_both": both, "outlier_soft_entropy": mean(sample_kind == "outlier"),
            "clean_soft_entropy": mean(sample_kind == "clean")}


def two_people_scores(pair: np.ndarray, true: np.ndarray, second: np.ndarray,
                      sample_kind: np.ndarray) -> dict[str, float]:
    """How the teacher's two-people verdicts (pair, (N, 2), -1 for one person) meet the composites: how many
    it made, the share of them that are composites, and the share of composites whose two identities it
    named (in either order)."""
    said = pair[:, 0] >= 0
    multi = sample_kind == "multi"
    both = np.sort(pair, axis=1) == np.sort(np.stack([true, second], axis=1), axis=1)
    return {"n_two_people": float(said.sum()),
            "two_people_precision": float(multi[said].mean()) if said.any() else math.nan,
            "two_people_found": float((said & both.all(axis=1))[multi].mean()) if multi.any() else math.nan}


def centre_shifts(centres_of, sample_kind: np.ndarray, kept: np.ndarray) -> dict[str, float]:
    """How far noisy samples move the class centres, as mean distances to the clean-only centres.

    `centres_of(mask)` gives (K, D) centres and (K,) presence from the samples in `mask` (by given
    label); distances average over classes present in both. `centre_spacing` is the mean distance
    between clean centres, the scale to read the shifts against.
    """
    clean = sample_kind == "clean"
    ref, ref_present = centres_of(clean)

    def shift(mask: np.ndarray) -> float:
        c, present = centres_of(mask)
        both = present & ref_present
        return float(np.linalg.norm(c[both] - ref[both], axis=1).mean()) if both.any() else math.nan

    pts = ref[ref_present]
    gaps = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    out = {"centre_spacing": float(gaps[np.triu_indices(len(pts), 1)].mean()) if len(pts) > 1 else math.nan,
           "centre_shift_noisy": shift(np.ones_like(clean)), "centre_shift_kept": shift(kept)}
    for kind in NOISY_SAMPLE_KINDS:
        mine = sample_kind == kind
        out[f"centre_shift_{kind}"] = shift(clean | mine) if mine.any() else math.nan
    return out


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


def _round0_epochs(teacher, s: RunSettings) -> str:
    """Round 0's epochs, and why when it trained past teacher_epochs."""
    done = int(teacher.rounds[0]["epochs"]) if teacher.rounds else s.teacher_epochs
    if done == s.teacher_epochs:
        return f"{done} epochs"
    return (f"{done} epochs ({s.teacher_epochs} asked; it went on while an epoch still raised its agreement with "
            "the given labels by 2 points or more)")


def distill_notes(settings: RunSettings, data: PreparedData, teacher: Teacher, cleanlab: bool,
                  kept: np.ndarray | None = None) -> list[str]:
    """Plain-language notes on what each number rests on, and on anything unusual in this run. `kept`: the
    final verdict, where the student's gave it (student_verdict); the teacher's by default."""
    s = settings
    names = data.dataset.class_names
    rule = (f"top class = given label, with probability >= {s.confidence_threshold:g} or, in a class that "
            "scores lower on average, >= that average"
            if s.confidence_rule == "agree" else
            f"the {s.keep_fraction:.0%} lowest-loss samples of each given label")
    notes = [
        (f"Teacher: cross-entropy on all {len(data.given_labels)} given labels for {_round0_epochs(teacher, s)}, "
         f"then {s.teacher_rounds} round(s) of {s.round_epochs} epochs on the samples it was confident about "
         f"({rule}), each round continuing from the last." + (
             " Its final verdict rests on its embedding instead: a sample is kept when it lies close to the "
             "centre of the other members of its given class (cosine similarity at or above the cut that best "
             "splits the similarities in two groups)." if verdict_of(s, data) == "centre" else "")),
        ("Teacher scores are in-sample: its softmax on the training samples, averaged over the epochs of its last "
         "round (kept samples were trained on, flagged ones were not). Averaging over epochs keeps scores from "
         "early in training, before flipped labels are memorised."),
    ]
    if cleanlab:
        notes.append(f"Confident learning (cleanlab find_label_issues) used out-of-sample probabilities: "
                     f"{CV_FOLDS}-fold stratified cross-validation of the same model trained {s.cv_epochs} "
                     "epochs with cross-entropy on the other folds, as cleanlab requires "
                     "(in-sample probabilities are overconfident).")
    if verdict_of(s, data) == "centre":
        notes.append(f"Student: {s.loss} for {s.epochs} epochs on the kept samples only, with their given labels "
                     "(flagged samples do not train it, and the teacher's soft labels are not its targets).")
    else:
        notes.append(f"Student: {s.loss} for {s.epochs} epochs on the given labels; class centres from kept samples "
                     "only" + (
                         f"; cross-entropy targets are the teacher's soft labels (temperature {s.temperature:g})."
                         if s.loss == "hybrid" else "."))
    if kept is not None and student_verdict_on(s, data):
        notes.append(f"Final verdict: once trained, the student judged every sample again by its own embedding, as "
                     f"the teacher's centre verdict does; the flags shown are its verdict ({int((~kept).sum())} "
                     f"flagged; the teacher's own verdict flagged {int((~teacher.kept).sum())}). Images the "
                     "teacher's detector calls two people stay flagged.")
    if s.baselines != "none":
        notes.append("Baselines train on the given (noisy) labels with no teacher" + (
            f": `fat (noisy labels)` is the student's own loss ({s.loss})" if s.baselines == "all" else
            f", here only `fat (noisy labels)`, the student's own loss ({s.loss}); baselines = all adds "
            "batch-hard and cross-entropy") + "; each is scored on the test split with true labels.")
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
    kinds = [SAMPLE_KINDS.get(k).label for k in NOISY_SAMPLE_KINDS if (data.noisy.sample_kind == k).any()]
    if set(kinds) - {"wrong identity"}:
        notes.append(f"Noise kinds here: {', '.join(kinds)}. Per-kind flag scores leave the other noisy kinds "
                     "out (precision counts false alarms on clean samples only). A composite's soft label "
                     "'holds both' when its top two classes are its two true classes. " + (
                         f"After its rounds the teacher trains a detector ({DETECT_EPOCHS} epochs, its network with "
                         "two classes: one person, two people) on the training images against side-by-side pairs "
                         "of its kept samples; an image it calls two people is flagged, and once trained the "
                         "student names both from the image's halves (the half nearer the given label's centre "
                         "is the given person, the other half's nearest centre of kept samples the second); its "
                         "soft label is half each of the two. " if two_people_on(s, data) else
                         f"From round 1 the teacher also trains on side-by-side pairs of its kept samples "
                         f"({s.two_people_share:.0%} of the set), with half "
                         "the target on each; it then says an image shows two people when its top two classes "
                         f"each hold at least {PAIR_THRESHOLD:g}, and such an image is flagged and its soft label "
                         "is half each of the two. " if data.dataset.kind == "image" and s.two_people_share > 0 else
                         "The teacher says nothing of two people here (two_people off, two_people_share 0). "
                         if data.dataset.kind == "image" else
                         "The teacher says nothing of two people in vector data (an average of two vectors looks "
                         "like label noise between two classes). ") + "Centre shifts are "
                     "mean distances, in the student's anchor space, between centres from clean samples and "
                     "centres that also take in the noisy ones (by given label).")
        notes.extend(n for n in data.dataset.notes if n.startswith(("outlier noise", "multi noise")))
    if not data.noisy.flipped.any():
        notes.append("No label was flipped: recall is 1 by convention and every flag is a false alarm.")
    return notes


def phase_times(report: dict[str, float]) -> str:
    """Each phase's seconds, with the share its test-split evaluation took where it had one:
    'teacher 2.1 s, student 4.9 s (evaluation 0.6 s), confident learning skipped'."""
    parts = []
    for phase, name in PHASES.items():
        text = seconds_text(report, {phase: name})
        evaluation = report.get(f"{phase}_eval_seconds", math.nan)
        if text and evaluation > 0:  # NaN compares False: skipped, or saved before it was timed
            text += f" (evaluation {evaluation:.1f} s)"
        parts += [text] if text else []
    return ", ".join(parts)


def format_report(result: DistillResult) -> str:
    """The report as plain text for a terminal."""
    s, r = result.settings, result.report
    title = (f"distillation | {s.dataset} | noise {s.noise} | seed {s.seed} | student {s.loss} | "
             f"{r['seconds']:.1f} s")
    times = phase_times(r)
    lines = [title, *([f"time: {times}"] if times else []), "", "teacher rounds",
             "  round  trained_on  epochs   kept  kept per class"]
    for row in result.rounds:
        lines.append(f"  {row['round']:>5}  {row['trained_on']:>10}  {row['epochs']:>6}  {row['kept']:>5}  "
                     f"{' '.join(map(str, row['kept_per_class']))}")
    lines += ["", f"flagged samples against the {int(r['n_flipped'])} truly flipped labels",
              f"  {'method':<32}{'flagged':>8}{'precision':>11}{'recall':>8}{'F1':>7}"]
    methods = ([("teacher, then the student's verdict", "flag", "n_flagged"),
                ("teacher alone (in-sample)", "teacher_flag", "teacher_n_flagged")] if r.get("student_verdict") == 1
               else [("teacher (in-sample)", "flag", "n_flagged")])
    if math.isfinite(r["cleanlab_f1"]):
        epochs = f"{s.cv_epochs} epoch{'s' if s.cv_epochs != 1 else ''}"
        methods.append((f"cleanlab ({CV_FOLDS}-fold CV, {epochs})", "cleanlab", "cleanlab_n_flagged"))
    for name, prefix, count in methods:
        lines.append(f"  {name:<32}{int(r[count]):>8}{r[prefix + '_precision']:>11.3f}"
                     f"{r[prefix + '_recall']:>8.3f}{r[prefix + '_f1']:>7.3f}")
    lines.append(f"  kept label precision (share of kept samples whose given label is true): "
                 f"{r['kept_label_precision']:.3f}")
    present = [k for k in NOISY_SAMPLE_KINDS if r.get(f"n_{k}", 0) > 0]
    if present:
        lines += ["", "per noise kind (other noisy kinds left out)",
                  f"  {'kind':<24}{'samples':>8}{'precision':>11}{'recall':>8}{'F1':>7}{'centre shift':>14}"]
        for k in present:
            lines.append(f"  {SAMPLE_KINDS.get(k).label:<24}{int(r[f'n_{k}']):>8}{r[f'flag_precision_{k}']:>11.3f}"
                         f"{r[f'flag_recall_{k}']:>8.3f}{r[f'flag_f1_{k}']:>7.3f}{r[f'centre_shift_{k}']:>14.3f}")
        lines.append(f"  centre shift, all noisy samples in: {r['centre_shift_noisy']:.3f}; kept samples only: "
                     f"{r['centre_shift_kept']:.3f}; clean centres lie {r['centre_spacing']:.3f} apart on average")
        if "multi" in present:
            lines.append(f"  composites whose soft label's top two are both their classes: {r['multi_top2_both']:.3f}")
            lines.append(f"  images the teacher sees as two people: {int(r['n_two_people'])}, of which composites "
                         f"{r['two_people_precision']:.3f}; composites with both people named: "
                         f"{r['two_people_found']:.3f}")
        if "outlier" in present:
            lines.append(f"  soft-label entropy (1 = flat over the known classes): outliers "
                         f"{r['outlier_soft_entropy']:.3f}, clean {r['clean_soft_entropy']:.3f}")
    if not math.isnan(r.get("student_cmc_1", math.nan)):
        lines += ["", "ReID protocol (queries against other cameras' gallery, unseen identities)",
                  f"  student:            rank-1 {r['student_cmc_1']:.3f}  mAP {r['student_map']:.3f}  "
                  f"mINP {r['student_minp']:.3f}",
                  f"  fat (noisy labels): rank-1 {r['baseline_cmc_1']:.3f}  mAP {r['baseline_map']:.3f}  "
                  f"mINP {r['baseline_minp']:.3f}"]
    lines += ["", "test split, true labels", f"  {'model':<30}{'P@1':>7}{'mAP':>7}{'NMI':>7}{'s':>7}"]
    for name, row in result.baselines.iterrows():
        lines.append(f"  {name:<30}{row['precision_at_1']:>7.3f}{row['map']:>7.3f}{row['nmi']:>7.3f}"
                     f"{row['seconds']:>7.1f}")
    lines += ["", "notes"] + [f"  - {n}" for n in result.notes]
    return "\n".join(lines)
