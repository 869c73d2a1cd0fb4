"""Label distillation (docs/METHOD.md section 5): a teacher flags doubtful labels, a student learns from the rest.

1. The teacher trains with cross-entropy on every (noisy) label for `teacher_epochs`, and on
   while an epoch still raises its agreement with the given labels by 2 points or more (up to
   4x as long): an underfit teacher would flag clean samples too.
2. Each of `teacher_rounds` further rounds keeps the samples the teacher is confident
   about (`confidence_rule`) and trains the same network on those only for `round_epochs`.
3. The samples the final teacher does not keep are the *flagged* samples; its softmax
   (averaged over its last round's epochs), tempered by `temperature`, gives every
   sample a soft label.
4. The student trains with FAT (or hybrid, whose cross-entropy takes the soft labels);
   only kept samples shape the class centres.

With synthetic noise the flipped labels are known, so the flagged set is scored against
them, next to confident learning (cleanlab) run on cross-validated probabilities (5 folds
of `cv_epochs` each), and the student is compared on the test split with models trained on
the noisy labels (`baselines`: FAT alone by default, which the report's baseline needs, or
also batch-hard and cross-entropy, or none). The comparisons train after the student, so
the teacher-student result is not kept waiting, and the report gives each phase's seconds.

Why the RunSettings defaults (teacher_epochs 5, teacher_rounds 3, round_epochs 3, rule
"agree", confidence_threshold 0.5, temperature 1): on digits with symmetric and pairflip
noise at 20 % and 40 % (scripts/bench_distill.py, seeds 0-4) they give a flag F1 above
confident learning's in all 20 runs (means 0.97, 0.98, 0.96, 0.77 against 0.91, 0.92,
0.88, 0.65, measured with 5 epochs per fold; with cv_epochs 3 confident learning's means
are 0.91, 0.92, 0.89, 0.70, see `cross_validated_probs`) and a student above FAT on the
noisy labels in every run. Five teacher
epochs follow the paper's blog; round_epochs of 2, 3 or 4 gave the same mean flag F1
within 0.01. A threshold of 0.5 asks the given label for half the probability mass;
the per-class cap (see `confident`) keeps it from emptying a class the network finds
hard. Lower thresholds kept more flipped labels: at 40 % pairflip (no cap, 8 seeds)
0.4 and 0.45 gave a flag F1 of 0.71 and 0.73 against 0.78 for 0.5. Temperature 2
moved the student's mean precision@1 by about 0.001, so the teacher's own
probabilities stay the soft labels.

One module per part: `teacher` (rounds, confidence rule, soft labels), `confident_learning`
(cleanlab on cross-validated probabilities), `student` (the student and its baselines),
`report` (scores, tables, notes, the text report), `storage` (the folder on disk),
`pipeline` (all of it in order) and `stopping` (ending early).
"""

from fatviz.distill.confident_learning import CV_FOLDS, confident_learning, cross_validated_probs
from fatviz.distill.pipeline import run_distillation
from fatviz.distill.report import (
    BASELINE_COLUMNS,
    CONFUSION_COLUMNS,
    PER_CLASS_COLUMNS,
    REPORT_KEYS,
    TABLE_COLUMNS,
    DistillResult,
    confusion_table,
    flag_scores,
    format_report,
    per_class_table,
)
from fatviz.distill.stopping import DistillationStopped
from fatviz.distill.storage import json_ready, load_distillation, save_distillation
from fatviz.distill.student import BASELINES, STUDENT, student_trainer, train_baselines, train_student
from fatviz.distill.teacher import Teacher, confident, soft_labels, train_teacher, verdict_of

__all__ = [
    "BASELINES", "BASELINE_COLUMNS", "CONFUSION_COLUMNS", "CV_FOLDS", "PER_CLASS_COLUMNS", "REPORT_KEYS", "STUDENT",
    "TABLE_COLUMNS", "DistillResult", "DistillationStopped", "Teacher", "confident", "confident_learning",
    "confusion_table", "cross_validated_probs", "flag_scores", "format_report", "json_ready", "load_distillation",
    "per_class_table", "run_distillation", "save_distillation", "soft_labels", "student_trainer", "train_baselines",
    "train_student", "train_teacher", "verdict_of",
]
