"""Label distillation: the teacher flags planted flips, the student never goes NaN, runs save and load."""

import json
import math
from io import StringIO

import numpy as np
import pandas as pd
import pytest
import torch

from fatviz.catalogue import BASELINE_SETS
from fatviz.centroids import compute_centroids
from fatviz.distill import (
    BASELINES,
    TABLE_COLUMNS,
    DistillationStopped,
    Teacher,
    confident,
    cross_validated_probs,
    flag_scores,
    format_report,
    load_distillation,
    run_distillation,
    save_distillation,
    soft_labels,
    student_trainer,
    train_baselines,
    train_teacher,
)
from fatviz.distill import teacher as teacher_module
from fatviz.distill.confident_learning import cv_work
from fatviz.distill.student import baselines_work
from fatviz.distill.teacher import round_work
from fatviz.errors import FatvizError
from fatviz.progress import Pace, epoch_work, left_text, seconds_text
from fatviz.settings import RunSettings
from fatviz.train import prepare_data

# Easy synthetic data: six tight blobs in 8-D, where random centres lie far apart (in 2-D two
# of them can overlap, and then a clean sample is honestly ambiguous); 450 training samples.
# No baselines unless a test asks; cross-validation folds train fewer epochs than the teacher's round 0.
BLOBS = RunSettings(dataset="blobs", blob_dim=8, blob_spread=0.5, noise="symmetric:0.2", teacher_rounds=2,
                    round_epochs=3, epochs=3, vis_points=60, cv_epochs=2, baselines="none")


@pytest.fixture(scope="module")
def blobs_data():
    return prepare_data(BLOBS)


@pytest.fixture(scope="module")
def small_run(blobs_data):
    return run_distillation(BLOBS, blobs_data, cleanlab=False)


@pytest.mark.parametrize("noise", ["symmetric:0.2", "pairflip:0.3"])
def test_teacher_flags_planted_flips(noise):
    settings = BLOBS.replace(noise=noise)
    data = prepare_data(settings)
    teacher = train_teacher(settings, data)
    scores = flag_scores(~teacher.kept, data.noisy.flipped)
    assert scores["n_flipped"] > 50
    assert scores["precision"] >= 0.95
    assert scores["recall"] >= 0.95
    assert len(teacher.rounds) == settings.teacher_rounds + 1
    assert teacher.history["kept"].shape == (settings.teacher_rounds + 1, len(data.given_labels))


def test_an_underfit_teacher_trains_round_0_on_until_its_agreement_levels_off():
    from fatviz.distill.teacher import EXTEND_GROWTH, EXTEND_UP_TO, _still_fitting

    given = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])

    def probs(right: int) -> np.ndarray:  # `right` of the ten samples have their given label on top
        top = np.where(np.arange(10) < right, given, (given + 1) % 3)
        return np.eye(3, dtype=np.float32)[top]
    assert _still_fitting([probs(5)], given)  # one epoch says nothing yet
    assert _still_fitting([probs(5), probs(6)], given)  # +0.1
    assert not _still_fitting([probs(6), probs(6)], given)
    assert EXTEND_GROWTH == 0.02

    # A slow learner (one epoch, a small learning rate) goes on; the asked epochs are a floor.
    slow = BLOBS.replace(teacher_epochs=1, lr=3e-4, teacher_rounds=0)
    data = prepare_data(slow)
    teacher = train_teacher(slow, data)
    epochs = teacher.rounds[0]["epochs"]
    assert 1 < epochs <= EXTEND_UP_TO
    messages = []
    train_teacher(slow, data, on_progress=lambda f, m: messages.append((f, m)))
    assert messages[-1][0] == pytest.approx(1.0) and f"epoch {epochs}" in messages[-1][1]
    assert all(b[0] >= a[0] - 1e-9 for a, b in zip(messages, messages[1:], strict=False))  # never goes back


def test_soft_labels_sum_to_one(small_run):
    logits = np.random.default_rng(0).normal(scale=30.0, size=(50, 6)).astype(np.float32)
    for temperature in (0.05, 1.0, 10.0):
        soft = soft_labels(logits, temperature)
        assert soft.dtype == np.float32
        np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-5)
    # A higher temperature flattens: the top probability never grows.
    assert (soft_labels(logits, 4.0).max(1) <= soft_labels(logits, 1.0).max(1) + 1e-6).all()
    np.testing.assert_allclose(small_run.soft_labels.sum(axis=1), 1.0, atol=1e-5)
    assert small_run.soft_labels.shape == (len(small_run.table), 6)


def test_confidence_rules():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.55, 0.45], [0.45, 0.55], [0.9, 0.1]])
    given = np.array([0, 0, 0, 0, 1, 1])
    agree = RunSettings(confidence_rule="agree", confidence_threshold=0.5)
    assert confident(probs, given, agree).tolist() == [True, True, False, True, True, False]
    # Class 0 averages 0.5875 and class 1 0.325: a threshold of 0.8 is capped at those.
    strict = agree.replace(confidence_threshold=0.8)
    assert confident(probs, given, strict).tolist() == [True, True, False, False, True, False]
    small = RunSettings(confidence_rule="small-loss", keep_fraction=0.5)
    # Per given class, the highest given-label probabilities (lowest loss), at least one each.
    assert confident(probs, given, small).tolist() == [True, True, False, False, True, False]


def test_round_discarded():
    kept = np.array([[1, 0, 0, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=bool)
    teacher = Teacher(kept=kept[-1], probs=np.full((4, 2), 0.5, np.float32), rounds=[],
                      history={"kept": kept})
    # Sample 1 came back in round 1 and was dropped again in round 2.
    assert teacher.round_discarded.tolist() == [-1, 2, 0, 1]


def test_confident_only_centres_ignore_flagged(blobs_data):
    n = len(blobs_data.given_labels)
    kept = np.ones(n, dtype=bool)
    kept[::3] = False
    soft = np.eye(6, dtype=np.float32)[blobs_data.given_labels]
    trainer = student_trainer(BLOBS, blobs_data, soft, kept)
    emb, _ = trainer.embed(trainer.x_train)
    moved = emb.clone()
    moved[torch.as_tensor(~kept)] = 1e3 * torch.randn(int((~kept).sum()), emb.shape[1])
    a = trainer.centres.whole_set(emb)
    b = trainer.centres.whole_set(moved)
    torch.testing.assert_close(a.centres, b.centres)
    torch.testing.assert_close(a.radius, b.radius)
    labels = torch.as_tensor(blobs_data.given_labels)
    ref = compute_centroids(emb[torch.as_tensor(kept)], labels[torch.as_tensor(kept)], BLOBS.centroid, 6)
    torch.testing.assert_close(a.centres, ref.centres)


@pytest.mark.parametrize("centres", ["epoch", "batch", "ema:0.9"])
def test_only_the_kept_samples_shape_the_students_centres_whatever_their_source(blobs_data, centres):
    """Flagged samples train (with their soft labels) but shape no centre: with every source, a class
    whose samples are all flagged has no centre in any batch's loss, and nothing turns NaN."""
    given = blobs_data.given_labels
    kept = given != 0
    soft = (0.9 * np.eye(6) + 0.1 / 6)[given].astype(np.float32)
    trainer = student_trainer(BLOBS.replace(centres=centres, epochs=2), blobs_data, soft, kept)
    seen = []
    inner = trainer.loss_fn

    def loss(emb, y, logits, targets, centroids):
        seen.append((centroids.present.clone(), torch.isfinite(centroids.centres).all()))
        return inner(emb, y, logits, targets, centroids)

    trainer.loss_fn = loss
    result = trainer.fit()
    assert seen and all(not present[0] and present[1:].all() and finite for present, finite in seen)
    assert all(math.isfinite(v) for v in result.snapshots[-1].losses.values())


@pytest.mark.parametrize("loss", ["hybrid", "fat", "normalized-fat"])
@pytest.mark.parametrize("case", ["empty-class", "all-flagged"])
def test_student_stays_finite(blobs_data, loss, case):
    given = blobs_data.given_labels
    kept = given != 0 if case == "empty-class" else np.zeros(len(given), dtype=bool)
    soft = (0.9 * np.eye(6) + 0.1 / 6)[given].astype(np.float32)  # a teacher that agrees with every label
    settings = BLOBS.replace(loss=loss, centroid="mean" if loss == "fat" else "norm-mean-norm")
    result = student_trainer(settings, blobs_data, soft, kept).fit()
    for snap in result.snapshots:
        assert all(math.isfinite(v) for v in snap.losses.values())
        assert np.isfinite(snap.embeddings).all() and np.isfinite(snap.centres).all()
    last = result.snapshots[-1]
    if case == "empty-class":
        assert not last.present[0] and last.present[1:].all()
    else:
        assert not last.present.any()
    assert math.isfinite(result.final_metrics["precision_at_1"])


def test_all_flagged_run_works(blobs_data, monkeypatch):
    # The per-class threshold makes this rare with real data, so a teacher that trusts nothing stands in.
    monkeypatch.setattr(teacher_module, "confident", lambda probs, given, settings: np.zeros(len(given), dtype=bool))
    result = run_distillation(BLOBS, blobs_data, cleanlab=False)
    assert result.table["flagged"].all()
    assert result.rounds[-1]["kept"] == 0
    assert (result.table["round_discarded"] == 0).all()
    assert math.isnan(result.report["kept_label_precision"])
    assert all(math.isfinite(result.report[k]) for k in ("flag_f1", "student_precision_at_1", "seconds"))
    assert any("kept no sample" in n for n in result.notes)


def test_zero_noise_run_works():
    result = run_distillation(BLOBS.replace(noise="none"), cleanlab=False)
    r = result.report
    assert r["n_flipped"] == 0 and r["flag_recall"] == 1.0
    assert not result.table["was_flipped"].any()
    assert r["kept_label_precision"] == 1.0
    from fatviz.distill.report import KIND_REPORT_KEYS, REID_REPORT_KEYS  # NaN: a noise kind absent, not ReID data

    assert all(math.isfinite(v) for k, v in r.items()
               if not k.startswith(("cleanlab", "baseline")) and k not in (*KIND_REPORT_KEYS, *REID_REPORT_KEYS))


def test_result_shape(small_run, blobs_data):
    t = small_run.table
    assert tuple(t.columns) == TABLE_COLUMNS
    assert len(t) == len(blobs_data.given_labels)
    assert (t["was_flipped"] == (t["given_label"] != t["true_label"])).all()
    assert (t["flagged"] == (t["round_discarded"] >= 0)).all()
    assert [r["round"] for r in small_run.rounds] == [0, 1, 2]
    assert small_run.rounds[0]["trained_on"] == len(t)
    assert sum(small_run.rounds[-1]["kept_per_class"]) == (~t["flagged"]).sum()
    assert small_run.confusion["count"].sum() == len(t) and (small_run.confusion["count"] > 0).all()
    assert small_run.per_class["n"].sum() == len(t)
    assert small_run.per_class["n_flagged"].sum() == t["flagged"].sum()
    assert list(small_run.baselines.index) == ["student"]
    assert len(small_run.student.snapshots) == BLOBS.epochs + 1
    back = pd.read_csv(StringIO(small_run.to_csv()))
    assert tuple(back.columns) == TABLE_COLUMNS and len(back) == len(t)


def test_save_and_load(small_run, tmp_path):
    folder = save_distillation(small_run, tmp_path / "run")
    save_distillation(small_run, folder)  # overwriting an existing run works too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary folder left behind
    back = load_distillation(folder)
    pd.testing.assert_frame_equal(back.table, small_run.table)
    pd.testing.assert_frame_equal(back.per_class, small_run.per_class)
    pd.testing.assert_frame_equal(back.confusion, small_run.confusion)
    pd.testing.assert_frame_equal(back.baselines, small_run.baselines)
    np.testing.assert_array_equal(back.soft_labels, small_run.soft_labels)
    np.testing.assert_array_equal(back.history["kept"], small_run.history["kept"])
    assert back.rounds == small_run.rounds and back.notes == small_run.notes
    assert back.settings == small_run.settings
    assert back.report.keys() == small_run.report.keys()
    assert len(back.student.snapshots) == len(small_run.student.snapshots)


def test_load_errors(small_run, tmp_path):
    with pytest.raises(FatvizError, match="no distillation"):
        load_distillation(tmp_path / "missing")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "distill.json").write_text(json.dumps({"schema": "something.else"}))
    with pytest.raises(FatvizError, match="not a fatviz distillation"):
        load_distillation(tmp_path / "foreign")
    folder = save_distillation(small_run, tmp_path / "damaged")
    (folder / "table.csv").write_text("a,b\n1,2\n")
    with pytest.raises(FatvizError, match="damaged"):
        load_distillation(folder)
    folder = save_distillation(small_run, tmp_path / "garbled")
    (folder / "distill.json").write_text("{not json")
    with pytest.raises(FatvizError, match="damaged"):
        load_distillation(folder)


def test_stop_and_bad_loss(blobs_data):
    with pytest.raises(DistillationStopped):
        run_distillation(BLOBS, blobs_data, should_stop=lambda: True, cleanlab=False)
    with pytest.raises(FatvizError, match="student trains with"):
        run_distillation(BLOBS.replace(loss="ce"), blobs_data)


def test_progress_moves_forward(blobs_data):
    seen = []
    run_distillation(BLOBS.replace(epochs=1), blobs_data, on_progress=lambda f, m: seen.append(f), cleanlab=False)
    assert len(seen) > 5 and seen == sorted(seen) and 0 < seen[0] and seen[-1] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def full_run(blobs_data):
    """Every phase (the fat baseline), with the progress it reported."""
    seen = []
    result = run_distillation(BLOBS.replace(baselines="fat"), blobs_data, on_progress=lambda f, m: seen.append((f, m)))
    return result, seen


PHASE_MESSAGES = ("teacher", "student", "cross-validation", "baseline")  # how each phase's progress begins


def test_phases_run_teacher_student_then_the_comparisons(full_run):
    result, seen = full_run
    phase_of = [next(p for p in PHASE_MESSAGES if m.startswith(p)) for _, m in seen]
    # Each phase reports in one stretch, in this order: the teacher-student result first.
    assert list(dict.fromkeys(phase_of)) == list(PHASE_MESSAGES)
    assert phase_of == sorted(phase_of, key=PHASE_MESSAGES.index)
    r = result.report
    seconds = [r[f"{phase}_seconds"] for phase in ("teacher", "student", "cleanlab", "baselines")]
    assert all(t > 0 for t in seconds) and sum(seconds) <= r["seconds"]
    assert list(result.baselines.index) == ["student", "fat (noisy labels)"]
    assert math.isfinite(r["baseline_precision_at_1"]) and math.isfinite(r["cleanlab_f1"])
    times = format_report(result).splitlines()[1]
    assert times.startswith("time: teacher ") and times.index("student") < times.index(
        "confident learning") < times.index("baselines")
    assert "cleanlab (5-fold CV, 2 epochs)" in format_report(result)


def test_each_phase_says_what_its_evaluation_took(full_run, small_run):
    r = full_run[0].report
    # The student evaluates every epoch and the baseline once; the teacher and the folds never see the test split.
    assert 0 < r["student_eval_seconds"] < r["student_seconds"]
    assert 0 < r["baselines_eval_seconds"] < r["baselines_seconds"]
    assert r["teacher_eval_seconds"] == 0.0 and r["cleanlab_eval_seconds"] == 0.0
    times = format_report(full_run[0]).splitlines()[1]
    assert f"student {r['student_seconds']:.1f} s (evaluation {r['student_eval_seconds']:.1f} s)" in times
    assert f"baselines {r['baselines_seconds']:.1f} s (evaluation " in times
    assert "evaluation" not in times.split(",")[0]  # the teacher's 0 s is left unsaid
    skipped = small_run.report
    assert math.isnan(skipped["cleanlab_eval_seconds"]) and math.isnan(skipped["baselines_eval_seconds"])


def test_a_distillation_saved_before_evaluation_was_timed_still_loads(small_run, tmp_path):
    from fatviz.distill.report import PHASE_EVAL_SECONDS

    folder = save_distillation(small_run, tmp_path / "old")
    meta = json.loads((folder / "distill.json").read_text())
    meta["report"] = {k: v for k, v in meta["report"].items() if k not in PHASE_EVAL_SECONDS}
    (folder / "distill.json").write_text(json.dumps(meta))
    back = load_distillation(folder)
    assert not set(PHASE_EVAL_SECONDS) & set(back.report)
    times = format_report(back).splitlines()[1]
    assert times.startswith("time: teacher ") and "evaluation" not in times


def test_a_skipped_phase_has_no_seconds(small_run):
    r = small_run.report
    assert r["teacher_seconds"] > 0 and r["student_seconds"] > 0
    assert math.isnan(r["cleanlab_seconds"]) and math.isnan(r["baselines_seconds"])
    assert "confident learning skipped, baselines skipped" in format_report(small_run)


def test_progress_follows_the_work(full_run, blobs_data):
    # Each phase counts for its samples x epochs: teacher rounds on what the last round kept,
    # student epochs with a snapshot each, folds on (folds - 1) / folds of the data for cv_epochs
    # (not teacher_epochs), the fat baseline's epochs with a forward pass for its centres.
    result, seen = full_run
    n = len(blobs_data.given_labels)
    teacher = sum(round_work(BLOBS, r["round"], r["trained_on"], n) for r in result.rounds)
    student = epoch_work(n, BLOBS.epochs, snapshot_of=n)
    folds = epoch_work(4 * n, BLOBS.cv_epochs)
    baseline = epoch_work(n, BLOBS.epochs, forward=n)
    assert baselines_work(BLOBS.replace(baselines="fat"), n) == baseline
    total = teacher + student + folds + baseline
    last_of = {phase: max(f for f, m in seen if m.startswith(phase)) for phase in PHASE_MESSAGES}
    assert last_of["teacher"] == pytest.approx(teacher / total)
    assert last_of["student"] == pytest.approx((teacher + student) / total)
    assert last_of["cross-validation"] == pytest.approx((teacher + student + folds) / total)
    assert last_of["baseline"] == pytest.approx(1.0)
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)


def test_the_time_left_follows_the_pace_of_the_work():
    clock = iter([10.0, 11.0, 14.0, 20.0])
    pace = Pace(clock=lambda: next(clock))
    assert pace(0.0) == math.inf  # a worker starting: no pace yet
    assert pace(0.1) == math.inf  # the first report that moved is where the pace is measured from
    assert pace(0.4) == pytest.approx(6.0)  # 0.3 in 3 s: 0.6 more in 6 s
    assert pace(0.7) == pytest.approx(9.0 * 0.3 / 0.6)
    assert (left_text(65.4), left_text(3725.0), left_text(math.inf)) == ("~1:05 left", "~1:02:05 left", "")
    assert seconds_text({"teacher_seconds": 2.04, "cleanlab_seconds": math.nan},
                        {"teacher": "teacher", "student": "student", "cleanlab": "confident learning"}) == (
        "teacher 2.0 s, confident learning skipped")


def test_cross_validation_trains_cv_epochs_per_fold(blobs_data):
    # The teacher's round 0 trains teacher_epochs (5 here); each fold model trains cv_epochs (2).
    assert (BLOBS.teacher_epochs, BLOBS.cv_epochs) == (5, 2)
    seen = []
    probs = cross_validated_probs(BLOBS, blobs_data, on_progress=lambda f, m: seen.append(m))
    last_of_fold = {m.split(",")[0]: m for m in seen}
    assert list(last_of_fold) == [f"cross-validation fold {i}/5" for i in range(1, 6)]
    assert all(m.endswith("epoch 2/2") for m in last_of_fold.values())
    assert sum(m.endswith("epoch 1/2") for m in seen) == 5
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert cv_work(BLOBS, blobs_data) == epoch_work(4 * len(blobs_data.given_labels), 2)


@pytest.mark.parametrize("choice, rows", [("none", []), ("fat", ["fat (noisy labels)"]), ("all", list(BASELINES))])
def test_the_baselines_setting_says_which_models_train(blobs_data, choice, rows):
    settings = BLOBS.replace(baselines=choice, epochs=1)
    n = len(blobs_data.given_labels)
    trained = train_baselines(settings, blobs_data)
    assert list(trained) == rows
    assert all(math.isfinite(row["precision_at_1"]) for row in trained.values())
    # The work follows: nothing for none, the student's loss for fat, two more models for all.
    work = baselines_work(settings, n)
    assert (work == 0) == (choice == "none")
    if choice == "all":
        assert work > baselines_work(settings.replace(baselines="fat"), n) > 0


def test_cli_json_line(tmp_path, capsys):
    from fatviz.cli import main

    out = tmp_path / "cli-run"
    code = main(["distill", "--dataset", "blobs", "--noise", "pairflip:0.3", "--seed", "1", "--epochs", "2",
                 "--teacher-epochs", "4", "--teacher-rounds", "1", "--round-epochs", "2", "--vis-points", "30",
                 "--out", str(out), "--json"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    data = json.loads(lines[-1])
    for key in ("flag_precision", "flag_recall", "flag_f1", "cleanlab_f1", "student_precision_at_1",
                "baseline_precision_at_1", "seconds"):
        assert isinstance(data[key], float)
    assert "cleanlab" in "\n".join(lines) and "student" in "\n".join(lines)
    # By default only the baseline the headline comparison needs trains: FAT on the noisy labels.
    assert list(load_distillation(out).baselines.index) == ["student", "fat (noisy labels)"]
    assert "time: teacher " in "\n".join(lines)
    assert all(data[f"{phase}_seconds"] > 0 for phase in ("teacher", "student", "cleanlab", "baselines"))


def test_kind_flag_scores_hand_made():
    from fatviz.distill.report import kind_flag_scores

    kind = np.array(["clean"] * 4 + ["wrong_identity"] * 2 + ["outlier"] * 2 + ["multi"] * 2)
    flagged = np.array([1, 0, 0, 0, 1, 1, 1, 0, 0, 0], bool)
    s = kind_flag_scores(flagged, kind)
    assert (s["n_wrong_identity"], s["n_outlier"], s["n_multi"]) == (2, 2, 2)
    assert s["flag_recall_wrong_identity"] == 1.0 and s["flag_precision_wrong_identity"] == 2 / 3
    assert s["flag_recall_outlier"] == 0.5 and s["flag_precision_outlier"] == 0.5
    assert s["flag_recall_multi"] == 0.0 and s["flag_precision_multi"] == 0.0  # one false alarm, no hit
    assert math.isnan(kind_flag_scores(flagged, np.where(kind == "multi", "clean", kind))["flag_recall_multi"])


def test_soft_label_scores_and_centre_shifts_hand_made():
    from fatviz.distill.report import centre_shifts, soft_label_scores

    soft = np.array([[0.5, 0.4, 0.1], [0.8, 0.1, 0.1], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]])
    kind = np.array(["multi", "multi", "outlier", "clean"])
    s = soft_label_scores(soft, np.array([1, 0, 2, 0]), np.array([0, 2, -1, -1]), kind, np.arange(3))
    assert s["multi_top2_both"] == 0.5
    assert s["outlier_soft_entropy"] == pytest.approx(1.0) and s["clean_soft_entropy"] == pytest.approx(0.0, abs=1e-9)

    points = np.array([[0.0, 0.0], [10.0, 0.0], [2.0, 0.0]])  # class 0 clean, class 1 clean, a noisy 0

    def centres_of(mask):
        labels = np.array([0, 1, 0])
        c = np.array([points[mask & (labels == k)].mean(0) if (mask & (labels == k)).any() else [0, 0]
                      for k in range(2)])
        return c, np.array([(mask & (labels == k)).any() for k in range(2)])

    shifts = centre_shifts(centres_of, np.array(["clean", "clean", "outlier"]), np.array([True, True, False]))
    assert shifts["centre_spacing"] == 10.0
    assert shifts["centre_shift_noisy"] == 0.5 and shifts["centre_shift_outlier"] == 0.5  # (1 + 0) / 2
    assert shifts["centre_shift_kept"] == 0.0 and math.isnan(shifts["centre_shift_multi"])


def test_combined_noise_distillation_reports_per_kind(tmp_path):
    from fatviz.distill.report import KIND_REPORT_KEYS

    settings = BLOBS.replace(noise="symmetric:0.1+outlier:0.1+multi:0.1")
    result = run_distillation(settings, cleanlab=False)
    assert set(KIND_REPORT_KEYS) <= set(result.report)
    t = result.table
    assert set(t.noise_kind) == {"clean", "wrong_identity", "outlier", "multi"}
    assert (t.was_flipped == (t.noise_kind != "clean")).all()
    assert result.report["n_outlier"] == (t.noise_kind == "outlier").sum()
    back = load_distillation(save_distillation(result, tmp_path / "run"))
    pd.testing.assert_frame_equal(back.table, t, check_dtype=False)
    assert back.report["n_multi"] == result.report["n_multi"]


def test_version_1_folder_still_loads(small_run, tmp_path):
    folder = save_distillation(small_run, tmp_path / "old")
    meta = json.loads((folder / "distill.json").read_text())
    meta["schema_version"] = 1
    (folder / "distill.json").write_text(json.dumps(meta))
    small_run.table.drop(columns=["noise_kind", "second_label", "pair_first", "pair_second"]).to_csv(
        folder / "table.csv", index=False)
    back = load_distillation(folder)
    assert tuple(back.table.columns) == TABLE_COLUMNS
    assert ((back.table.noise_kind == "wrong_identity") == back.table.was_flipped).all()
    assert (back.table.pair_first == -1).all()
    meta["schema_version"] = 2  # before two-people verdicts
    (folder / "distill.json").write_text(json.dumps(meta))
    small_run.table.drop(columns=["pair_first", "pair_second"]).to_csv(folder / "table.csv", index=False)
    back = load_distillation(folder)
    assert tuple(back.table.columns) == TABLE_COLUMNS and (back.table.pair_second == -1).all()
    meta["schema_version"] = 7
    (folder / "distill.json").write_text(json.dumps(meta))
    with pytest.raises(FatvizError, match="reads version 3"):
        load_distillation(folder)


def test_every_baseline_set_names_rows_the_student_module_can_train():
    for name, entry in BASELINE_SETS.items():
        assert set(entry.rows) <= set(BASELINES), name
    assert BASELINE_SETS.get("all").rows == tuple(BASELINES)
    # The report's baseline_precision_at_1 is the student's own loss on the noisy labels, in the default set.
    assert BASELINES[BASELINE_SETS.get(RunSettings().baselines).rows[0]] is None


def test_on_reid_data_the_report_gives_rank_1_and_minp_of_the_student_and_the_noisy_baseline():
    s = RunSettings(dataset="reid-synth", subsample=200, epochs=1, teacher_epochs=1, teacher_rounds=0, cv_epochs=1,
                    noise="symmetric:0.2", vis_points=60)
    result = run_distillation(s, cleanlab=False)
    r = result.report
    student = result.student.final_metrics
    assert r["student_cmc_1"] == pytest.approx(student["cmc_1"]) and r["student_minp"] == pytest.approx(student["minp"])
    assert 0.0 < r["baseline_minp"] <= 1.0 and 0.0 <= r["baseline_cmc_1"] <= 1.0
    assert "mINP" in format_report(result)
    assert math.isnan(run_distillation(BLOBS.replace(epochs=1, teacher_rounds=0), cleanlab=False).report["student_cmc_1"])


def test_the_agree_rule_never_empties_a_class():
    from fatviz.distill.teacher import CLASS_FLOOR

    given = np.repeat(np.arange(3), 8)
    probs = np.full((24, 3), 0.1, dtype=np.float32)
    probs[np.arange(24), given] = 0.8
    probs[given == 2] = [0.7, 0.2, 0.1]  # the teacher disagrees with every label of class 2
    probs[given == 2, 2] = np.linspace(0.05, 0.25, 8)  # ... but scores them unequally
    keep = confident(probs, given, RunSettings(confidence_rule="agree"))
    assert keep[given != 2].all()
    floor = int(np.ceil(CLASS_FLOOR * 8))
    assert np.flatnonzero(keep[given == 2]).tolist() == list(range(8 - floor, 8))  # its best-scored quarter


def test_the_two_class_target_puts_half_on_each_person():
    from fatviz.distill.two_people import pair_target

    target = pair_target(np.array([[0, 2], [3, 1]]), 4)
    assert target.dtype == np.float32 and np.allclose(target.sum(axis=1), 1.0)
    assert target.tolist() == [[0.5, 0.0, 0.5, 0.0], [0.0, 0.5, 0.0, 0.5]]


def test_two_people_needs_two_likely_classes():
    from fatviz.distill.two_people import two_people

    probs = np.array([[0.45, 0.1, 0.45], [0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.24, 0.26, 0.5]])
    # Most likely first; a second class under the threshold: one person.
    assert two_people(probs, threshold=0.25).tolist() == [[0, 2], [-1, -1], [2, 1], [2, 1]]
    assert two_people(probs, threshold=0.3).tolist() == [[0, 2], [-1, -1], [2, 1], [-1, -1]]


def test_the_teacher_learns_two_people_from_pairs_of_its_kept_samples():
    from fatviz.distill.two_people import with_two_people
    from fatviz.noise import side_by_side

    data = prepare_data(RunSettings(dataset="reid-synth", reid_size="small", subsample=96, noise="symmetric:0.2"))
    n, k = len(data.given_labels), data.dataset.num_classes
    keep = np.arange(n) % 3 != 0
    grown, targets = with_two_people(data, keep, seed=0, share=0.1)
    m = len(grown.dataset.x_train) - n
    assert 0 < m <= round(0.1 * n) and np.array_equal(grown.dataset.x_train[:n], data.dataset.x_train)
    assert np.array_equal(targets.keep, np.concatenate([keep, np.ones(m, bool)]))
    assert np.array_equal(targets.soft[:n].argmax(1), data.given_labels) and np.allclose(targets.soft[:n].max(1), 1)
    halves = targets.soft[n:]
    assert np.allclose(halves.sum(1), 1) and ((halves == 0.5).sum(1) == 2).all() and halves.shape == (m, k)
    # Each synthetic image is two kept samples side by side, with half its target on either one's given label.
    x = grown.dataset.x_train[n:]
    for row in range(m):
        pair = np.flatnonzero(halves[row])
        found = [(i, j) for i in np.flatnonzero(keep) for j in np.flatnonzero(keep)
                 if set(data.given_labels[[i, j]]) == set(pair)
                 and np.allclose(side_by_side(data.dataset.x_train[i], data.dataset.x_train[j]), x[row], atol=1e-6)]
        assert found, row
        if row == 2:
            break
    assert with_two_people(data, keep, seed=0, share=0.1)[1].soft.tobytes() == targets.soft.tobytes()  # seeded


def test_a_teacher_that_sees_two_people_gives_them_the_two_class_target():
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1]], dtype=np.float32)
    teacher = Teacher(kept=np.array([True, False]), probs=probs, rounds=[], history={},
                      pair=np.array([[-1, -1], [2, 0]]))
    soft = teacher.soft_labels(1.0)
    assert np.allclose(soft[0], probs[0]) and soft[1].tolist() == [0.5, 0.0, 0.5]
    assert teacher.two_people.tolist() == [False, True]
    assert (Teacher(kept=np.ones(2, bool), probs=probs, rounds=[], history={}).pair == -1).all()


def test_two_people_scores_hand_made():
    from fatviz.distill.report import two_people_scores

    kind = np.array(["multi", "multi", "multi", "clean", "clean"])
    true, second = np.array([0, 1, 2, 3, 0]), np.array([1, 2, 0, -1, -1])
    pair = np.array([[1, 0], [1, 3], [-1, -1], [3, 0], [-1, -1]])  # found (either order), half right, missed, false
    s = two_people_scores(pair, true, second, kind)
    assert s["n_two_people"] == 3 and s["two_people_precision"] == pytest.approx(2 / 3)
    assert s["two_people_found"] == pytest.approx(1 / 3)
    none = two_people_scores(np.full((5, 2), -1), true, second, np.full(5, "clean"))
    assert none["n_two_people"] == 0 and math.isnan(none["two_people_precision"]) and math.isnan(none["two_people_found"])


def test_a_teacher_with_two_people_rounds_never_keeps_an_image_it_calls_two_people():
    from fatviz.distill.two_people import PAIR_THRESHOLD

    s = RunSettings(dataset="reid-synth", reid_size="small", subsample=96, noise="multi:0.1", teacher_epochs=1,
                    teacher_rounds=1, round_epochs=1, two_people_share=0.3, two_people="off")
    data = prepare_data(s)
    teacher = train_teacher(s, data)
    n = len(data.given_labels)
    assert teacher.pair.shape == (n, 2)
    two = teacher.two_people
    assert not (teacher.kept & two).any()
    assert (teacher.pair[two, 0] != teacher.pair[two, 1]).all()
    top = np.sort(teacher.probs, axis=1)[:, -2]
    assert np.array_equal(two, top >= PAIR_THRESHOLD)  # the verdict is the final round's top two
    off = train_teacher(s.replace(two_people_share=0.0), data)
    assert not off.two_people.any()


def test_own_centre_similarity_leaves_the_sample_out():
    from fatviz.distill.teacher import own_centre_similarity

    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 2.0], [5.0, 5.0]])
    given = np.array([0, 0, 0, 1, 2])
    sim = own_centre_similarity(emb, given, 3)
    # Sample 2 (0, 1) against the other two of class 0, both (1, 0): orthogonal. Samples 0 and 1 each see
    # the mean of (1, 0) and (0, 1). Classes 1 and 2 have one member: nothing to compare with.
    assert sim[2] == pytest.approx(0.0, abs=1e-12)
    assert sim[0] == pytest.approx(1 / np.sqrt(2)) and sim[1] == pytest.approx(1 / np.sqrt(2))
    assert np.isnan(sim[3]) and np.isnan(sim[4])


def test_split_threshold_cuts_between_two_groups():
    from fatviz.distill.teacher import split_threshold

    low, high = np.array([0.1, 0.15, 0.2]), np.array([0.8, 0.85, 0.9, 0.95])
    t = split_threshold(np.concatenate([high, [np.nan], low]))
    assert t == pytest.approx(0.5)  # halfway between 0.2 and 0.8; NaN ignored
    assert split_threshold(np.full(5, 0.3)) == -np.inf  # one value: one group, nothing is low


def test_the_centre_verdict_flags_the_members_far_from_their_class():
    from fatviz.distill.teacher import centre_verdict

    rng = np.random.default_rng(0)
    k, per = 6, 6
    centres = np.eye(k, 8) * 3.0
    given = np.repeat(np.arange(k), per)
    emb = centres[given] + rng.normal(0, 0.3, (k * per, 8))
    # One member of each class is an image of the next class, filed under this one; class 5 also holds
    # an image of nobody (a direction no class uses).
    wrong = np.arange(k) * per
    emb[wrong] = centres[(given[wrong] + 1) % k] + rng.normal(0, 0.3, (k, 8))
    emb[k * per - 1] = np.r_[np.zeros(7), 3.0] + rng.normal(0, 0.3, 8)
    keep = centre_verdict(emb, given, k)
    flagged = np.flatnonzero(~keep).tolist()
    assert flagged == sorted([*wrong.tolist(), k * per - 1])


def test_the_final_verdict_is_the_centres_on_reid_data_only(blobs_data):
    from fatviz.distill.teacher import verdict_of

    reid = prepare_data(RunSettings(dataset="reid-synth", reid_size="small", subsample=60))
    assert verdict_of(RunSettings(), reid) == "centre"
    assert verdict_of(BLOBS, blobs_data) == "softmax"
    assert verdict_of(BLOBS.replace(teacher_verdict="centre"), blobs_data) == "centre"
    assert verdict_of(RunSettings(teacher_verdict="softmax"), reid) == "softmax"


def test_a_centre_teacher_flags_by_its_embedding(blobs_data):
    s = BLOBS.replace(teacher_verdict="centre")
    teacher = train_teacher(s, blobs_data)
    scores = flag_scores(~teacher.kept, blobs_data.noisy.flipped)
    assert scores["f1"] > 0.8 and teacher.history["kept"][-1].tolist() == teacher.kept.tolist()


def test_the_detectors_data_is_the_training_images_and_pairs_of_kept_samples():
    from fatviz.distill.two_people import detector_data
    from fatviz.noise import side_by_side

    data = prepare_data(RunSettings(dataset="reid-synth", reid_size="small", subsample=64, noise="symmetric:0.2"))
    n, given = len(data.given_labels), data.given_labels
    keep = np.arange(n) % 4 != 0
    grown, targets = detector_data(data, keep, seed=0)
    x = grown.dataset.x_train
    m = len(x) - n
    assert grown.dataset.num_classes == 2 and 0.5 * n < m <= n and np.array_equal(x[:n], data.dataset.x_train)
    assert targets.labels.tolist() == [0] * n + [1] * m
    for row in range(3):  # each pair is two kept samples of different given labels, side by side
        assert any(given[i] != given[j] and np.allclose(side_by_side(data.dataset.x_train[i], data.dataset.x_train[j]),
                                                        x[n + row], atol=1e-6)
                   for i in np.flatnonzero(keep) for j in np.flatnonzero(keep)), row


def test_two_people_are_looked_for_on_reid_images_unless_off(blobs_data):
    from fatviz.distill.two_people import two_people_on

    reid = prepare_data(RunSettings(dataset="reid-synth", reid_size="small", subsample=60))
    assert two_people_on(RunSettings(), reid) and not two_people_on(RunSettings(two_people="off"), reid)
    assert not two_people_on(BLOBS.replace(two_people="on"), blobs_data)  # vectors: never


def test_the_teacher_finds_composites_and_names_the_given_person_first():
    s = RunSettings(dataset="reid-synth", reid_size="small", subsample=160, noise="multi:0.1", teacher_epochs=2,
                    teacher_rounds=1, round_epochs=1)
    data = prepare_data(s)
    teacher = train_teacher(s, data)
    multi, two = data.noisy.sample_kind == "multi", teacher.two_people
    assert (two & multi).sum() >= 0.5 * multi.sum() and (two & multi).sum() >= 0.8 * two.sum()
    assert not (teacher.kept & two).any() and np.array_equal(teacher.pair[two, 0], data.given_labels[two])
    assert (teacher.pair[two, 1] != teacher.pair[two, 0]).all() and (teacher.pair[~two] == -1).all()
    soft = teacher.soft_labels(1.0)
    assert np.allclose(soft[two].max(axis=1), 0.5)  # the two-class target
    off = train_teacher(s.replace(two_people="off"), data)
    assert not off.two_people.any()


def test_the_distillation_names_both_people_with_the_students_embedding():
    from fatviz.distill.two_people import name_two_people, pair_target
    from fatviz.evaluation import embed_batches, saved_network

    s = RunSettings(dataset="reid-synth", reid_size="small", subsample=160, noise="multi:0.1", teacher_epochs=2,
                    teacher_rounds=1, round_epochs=1, epochs=2, baselines="none")
    data = prepare_data(s)
    result = run_distillation(s, data, cleanlab=False)
    t = result.table
    two = (t.pair_first >= 0).to_numpy()
    assert two.any() and not (two & ~t.flagged.to_numpy()).any()  # found, and flagged
    network = saved_network(result.student, data.dataset)
    expected = name_two_people(lambda x: embed_batches(network, x)[0], torch.as_tensor(data.dataset.x_train),
                               data.given_labels, two, ~t.flagged.to_numpy(), data.dataset.num_classes)
    assert np.array_equal(expected, t[["pair_first", "pair_second"]].to_numpy())
    assert np.array_equal(result.soft_labels[two], pair_target(expected[two], data.dataset.num_classes))



def test_the_students_embedding_gives_the_final_verdict_on_reid_data():
    from fatviz.distill.teacher import centre_verdict
    from fatviz.evaluation import embed_split

    s = RunSettings(dataset="reid-synth", reid_size="small", subsample=160, noise="symmetric:0.2+multi:0.1",
                    teacher_epochs=2, teacher_rounds=1, round_epochs=1, epochs=2, baselines="none")
    data = prepare_data(s)
    result = run_distillation(s, data, cleanlab=False)
    t = result.table
    two = (t.pair_first >= 0).to_numpy()
    emb = embed_split(result.student, data.dataset, "train").numpy()
    expected = centre_verdict(emb, data.given_labels, data.dataset.num_classes) & ~two
    assert np.array_equal(~t.flagged.to_numpy(), expected)
    assert result.report["n_flagged"] == (~expected).sum()
    assert any(n.startswith("Final verdict: once trained, the student") for n in result.notes)
    off = run_distillation(s.replace(student_verdict="off"), data, cleanlab=False)
    assert off.report["n_flagged"] == off.report["teacher_n_flagged"] == result.report["teacher_n_flagged"]
    assert off.report["flag_f1"] == off.report["teacher_flag_f1"] and off.report["student_verdict"] == 0.0
    assert result.report["student_verdict"] == 1.0
    text = format_report(result)
    assert "teacher, then the student's verdict" in text and "teacher alone (in-sample)" in text
    assert "teacher alone" not in format_report(off) and "teacher (in-sample)" in format_report(off)
    assert not any(n.startswith("Final verdict") for n in off.notes)
    for run in (result, off):  # one note on what the student trained on, whichever verdict is reported
        assert [n for n in run.notes if n.startswith("Student:")] == [
            n for n in result.notes if n.startswith("Student: ") and "kept samples only" in n]


def test_with_the_centre_verdict_the_student_trains_on_the_kept_samples_only(blobs_data):
    given = blobs_data.given_labels
    n, k = len(given), blobs_data.dataset.num_classes
    kept = np.arange(n) % 3 != 0
    soft = np.eye(k, dtype=np.float32)[given]
    centre = student_trainer(BLOBS.replace(teacher_verdict="centre"), blobs_data, soft, kept)
    softmax = student_trainer(BLOBS.replace(teacher_verdict="softmax"), blobs_data, soft, kept)
    assert centre.keep_idx.cpu().tolist() == np.flatnonzero(kept).tolist() and centre.soft is None  # given labels
    assert softmax.keep_idx.cpu().tolist() == list(range(n))  # flagged samples train, but shape no centre


def test_two_people_are_named_from_the_halves_by_the_nearest_centre_of_kept_samples():
    """Images whose embedding is the mean colour of each channel: a class is a channel lit across the image,
    a composite lights one channel on its left half and another on its right."""
    from fatviz.distill.two_people import name_two_people

    k, w = 5, 8
    given = np.array([0, 0, 1, 1, 2, 3, 3, 4, 2, 3, 0, 1])  # 0-7 single people, 8-11 composites
    x = torch.zeros(len(given), k, 2, w)
    for i, c in enumerate(given[:8]):
        x[i, c] = 1.0
    people = {8: (2, 1), 9: (0, 3), 10: (4, 0), 11: (1, 4)}  # (left, right): the given label is one of them
    for i, (left, right) in people.items():
        x[i, left, :, :w // 2] = 1.0
        x[i, right, :, w // 2:] = 1.0
    keep = np.arange(len(given)) < 7  # class 4's only single image (7) is not kept: 4 has no centre
    two = np.arange(len(given)) >= 8
    two[3] = True  # a single person the detector called two: the nearest other centre is still named

    def embed(t: torch.Tensor) -> torch.Tensor:
        return t.mean(dim=(2, 3)) + 0.01  # a small shared offset, so no embedding is all zero

    pair = name_two_people(embed, x, given, two, keep, k)
    assert pair[8].tolist() == [2, 1] and pair[9].tolist() == [3, 0]  # given first, the other half second
    assert pair[11, 0] == 1 and pair[11, 1] not in (1, 4)  # its other person, 4, has no centre: someone else
    assert pair[10, 0] == 0 and pair[10, 1] not in (0, 4)
    assert pair[3, 0] == 1 and pair[3, 1] not in (1, 4)
    assert (pair[~two] == -1).all()
    assert (name_two_people(embed, x, given, two, np.zeros(len(given), bool), k) == -1).all()  # nothing kept
