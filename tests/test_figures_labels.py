"""Tests for fatviz.figures.labels on a synthetic DistillResult-shaped object with known numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import fake_result

from fatviz.figures.labels import (
    OUTCOMES,
    SORT_ORDERS,
    baselines_figure,
    confusion_figure,
    confusion_matrix,
    enlarge,
    flag_outcomes,
    flagging_comparison,
    gallery_rows,
    kept_per_round_figure,
    sample_indices,
    score_figure,
)
from fatviz.figures.style import class_colour


def test_outcomes_split_by_flagged_and_flipped() -> None:
    t = fake_result().table
    out = flag_outcomes(t)
    assert ((out == "correctly flagged") == (t.flagged & t.was_flipped)).all()
    assert ((out == "wrongly flagged") == (t.flagged & ~t.was_flipped)).all()
    assert ((out == "missed") == (~t.flagged & t.was_flipped)).all()
    assert ((out == "kept") == (~t.flagged & ~t.was_flipped)).all()
    assert set(out) <= set(OUTCOMES)


def test_gallery_filters_by_outcome_and_class_and_sorts_by_score() -> None:
    t = fake_result().table
    rows = gallery_rows(t, "correctly flagged")
    assert len(rows) == int((t.flagged & t.was_flipped).sum())
    assert list(rows.score) == sorted(rows.score)
    rows = gallery_rows(t, "wrongly flagged", classes=[1], order=SORT_ORDERS[1], limit=2)
    assert (rows.given_label == 1).all() and len(rows) <= 2
    assert list(rows.score) == sorted(rows.score, reverse=True)
    assert list(sample_indices(rows)) == list(rows["index"])
    with pytest.raises(ValueError):
        gallery_rows(t, "lost")


def test_sample_indices_fall_back_to_the_frame_index() -> None:
    t = fake_result().table.drop(columns="index").set_index(pd.Index(range(100, 160)))
    assert sample_indices(t)[0] == 100


def test_enlarge_repeats_pixels() -> None:
    img = np.array([[0, 255], [10, 20]], dtype=np.uint8)
    big = enlarge(img, 3)
    assert big.shape == (6, 6) and big.dtype == np.uint8
    assert (big[:3, 3:] == 255).all() and (big[3:, :3] == 10).all()


def test_enlarge_to_brings_any_small_image_near_the_size_asked() -> None:
    from fatviz.figures.labels import enlarge_to

    for side, factor in ((8, 14), (28, 4), (32, 4), (64, 2), (200, 1)):
        big = enlarge_to(np.zeros((side, side // 2 if side == 64 else side, 3), np.uint8), 112)
        assert big.shape[0] == side * factor, side


def test_flagging_comparison_reads_the_report() -> None:
    r = fake_result().report
    table = flagging_comparison(r)
    assert table.loc["precision", "teacher"] == pytest.approx(r["flag_precision"])
    assert table.loc["F1", "teacher"] == pytest.approx(r["flag_f1"])
    assert table.loc["flagged", "teacher"] == r["n_flagged"]
    assert table.loc["recall", "confident learning"] == 0.4
    assert table.loc["flagged", "confident learning"] == 9.0
    assert np.isnan(flagging_comparison({})).all().all()


def test_flagging_comparison_shows_the_teacher_alone_beside_the_students_verdict() -> None:
    r = {**fake_result().report, "student_verdict": 1.0, "teacher_flag_precision": 0.7, "teacher_flag_recall": 0.9,
         "teacher_flag_f1": 0.7875, "teacher_n_flagged": 40.0}
    table = flagging_comparison(r)
    assert list(table.columns) == ["teacher, then the student", "teacher alone", "confident learning"]
    assert table.loc["F1", "teacher, then the student"] == pytest.approx(r["flag_f1"])
    assert table["teacher alone"].tolist() == [0.7, 0.9, 0.7875, 40.0]
    assert list(flagging_comparison({**r, "student_verdict": 0.0}).columns) == ["teacher", "confident learning"]


def test_kept_per_round_stacks_the_class_counts() -> None:
    res = fake_result()
    fig = kept_per_round_figure(res.rounds, ["a", "b", "c"])
    bars = [t for t in fig.data if t.type == "bar"]
    assert [b.name for b in bars] == ["a", "b", "c"]
    for k, bar in enumerate(bars):
        assert list(bar.y) == [r["kept_per_class"][k] for r in res.rounds]
        assert bar.marker.color == class_colour(k)
    (line,) = [t for t in fig.data if t.name == "trained on"]
    assert list(line.y) == [r["trained_on"] for r in res.rounds]
    (kept,) = [t for t in fig.data if t.name == "kept"]
    assert list(kept.y) == [r["kept"] for r in res.rounds] == [sum(r["kept_per_class"]) for r in res.rounds]
    assert list(kept.text) == [f"{r['kept']} kept" for r in res.rounds]
    assert fig.layout.barmode == "stack"


def test_confusion_heatmap_counts() -> None:
    res = fake_result()
    t = res.table
    z = confusion_matrix(res.confusion, "given_label", "true_label", 3)
    for i in range(3):
        for j in range(3):
            assert z[i, j] == int(((t.given_label == i) & (t.true_label == j)).sum())
    fig = confusion_figure(res.confusion, "given_label", "teacher_label", ["a", "b", "c"])
    expected = pd.crosstab(t.given_label, t.teacher_label).reindex(index=range(3), columns=range(3), fill_value=0)
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), expected.to_numpy())
    assert fig.data[0].z.sum() == len(t)


def test_score_histogram_splits_clean_and_flipped() -> None:
    t = fake_result().table
    fig = score_figure(t, 0.5)
    clean, flipped = fig.data
    assert clean.name == f"clean label ({int((~t.was_flipped).sum())})"
    assert sum(clean.y) == int((~t.was_flipped).sum()) and sum(flipped.y) == int(t.was_flipped.sum())
    for bar, scores in ((clean, t.score[~t.was_flipped]), (flipped, t.score[t.was_flipped])):
        for centre, count in zip(bar.x, bar.y, strict=False):
            inside = (scores >= centre - 0.025) & (scores < centre + 0.025) | ((centre > 0.97) & (scores == 1.0))
            assert count == int(inside.sum())
    assert fig.layout.shapes[0].x0 == 0.5
    assert not score_figure(t, None).layout.shapes


def test_baselines_figure_bars() -> None:
    b = fake_result().baselines
    fig = baselines_figure(b)
    p1, m = fig.data
    assert list(p1.x) == [n.replace(" (", "<br>(") for n in b.index]
    np.testing.assert_allclose(p1.y, b.precision_at_1)
    np.testing.assert_allclose(m.y, b["map"])


def test_noise_kinds_kind_table_and_soft_label_bars() -> None:
    from fatviz.figures.labels import kind_table, noise_kinds, soft_label_bars
    from fatviz.noise import SAMPLE_KINDS

    t = fake_result().table
    assert ((noise_kinds(t) == "wrong_identity") == t.was_flipped).all()  # older tables: flipped = wrong identity
    t2 = t.assign(noise_kind=np.where(t.was_flipped, "multi", "clean"))
    assert (noise_kinds(t2) == t2.noise_kind).all()
    report = {"n_outlier": 4.0, "flag_precision_outlier": 0.5, "flag_recall_outlier": 0.25, "flag_f1_outlier": 1 / 3,
              "centre_shift_outlier": 0.1, "n_multi": 0.0}
    table = kind_table(report)
    assert list(table.index) == ["outlier"] and table.loc["outlier", "recall"] == 0.25
    svg = soft_label_bars(np.array([0.7, 0.2, 0.1]), ["a", "b", "c"], given=1, kind="multi", true=(0, 1))
    assert svg.startswith("<svg") and svg.count("<title>") == 3
    assert SAMPLE_KINDS.get("multi").colour in svg and "a: 0.70" in svg
    assert svg.count('fill="#000000"') == 2  # both true classes underlined
