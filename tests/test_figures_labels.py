"""Tests for fatviz.figures.labels on a synthetic DistillResult-shaped object with known numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

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
from fatviz.settings import RunSettings


@dataclass(eq=False)
class FakeDistillResult:
    """The fields of fatviz.distill.DistillResult that pages and figures read."""

    settings: RunSettings
    table: pd.DataFrame
    rounds: list[dict]
    report: dict[str, float]
    per_class: pd.DataFrame
    confusion: pd.DataFrame
    baselines: pd.DataFrame
    student: SimpleNamespace
    notes: list[str] = field(default_factory=list)

    def to_csv(self) -> str:
        """The per-sample table as CSV."""
        return self.table.to_csv(index=False)


def fake_result(n: int = 60, k: int = 3, seed: int = 0, settings: RunSettings | None = None) -> FakeDistillResult:
    """A DistillResult-shaped object whose numbers follow from a seeded random table."""
    rng = np.random.default_rng(seed)
    true = np.arange(n) % k
    flipped = rng.random(n) < 0.3
    given = np.where(flipped, (true + 1) % k, true)
    # The teacher catches most flips and raises a few false alarms.
    flagged = (flipped & (rng.random(n) < 0.8)) | (~flipped & (rng.random(n) < 0.1))
    teacher = np.where(flagged & flipped, true, given)
    score = np.round(np.where(flagged, rng.uniform(0.0, 0.5, n), rng.uniform(0.5, 1.0, n)), 4)
    table = pd.DataFrame({
        "index": np.arange(n), "true_label": true, "given_label": given, "teacher_label": teacher, "score": score,
        "flagged": flagged, "round_discarded": np.where(flagged, 1, -1), "was_flipped": flipped,
        "cleanlab_flagged": flipped & (rng.random(n) < 0.5)})
    tp = int((flagged & flipped).sum())
    precision, recall = tp / flagged.sum(), tp / flipped.sum()
    kept_per_class = [int(((given == c) & ~flagged).sum()) for c in range(k)]
    first = [int((given == c).sum()) - 1 for c in range(k)]  # round 0 doubts one sample per class
    rounds = [{"round": 0, "trained_on": n, "kept": sum(first), "kept_per_class": first, "epochs": 2},
              {"round": 1, "trained_on": sum(first), "kept": sum(kept_per_class), "kept_per_class": kept_per_class,
               "epochs": 1}]
    report = {"flag_precision": precision, "flag_recall": recall, "flag_f1": 2 * precision * recall / (precision + recall),
              "kept_label_precision": float((given == true)[~flagged].mean()), "n_flagged": float(flagged.sum()),
              "n_flipped": float(flipped.sum()), "cleanlab_precision": 0.5, "cleanlab_recall": 0.4,
              "cleanlab_f1": 0.444, "cleanlab_n_flagged": 9.0, "student_precision_at_1": 0.9, "student_map": 0.8,
              "baseline_precision_at_1": 0.7, "baseline_map": 0.6, "seconds": 1.5}
    confusion = (pd.DataFrame({"given_label": given, "teacher_label": teacher, "true_label": true})
                 .value_counts(sort=False).rename("count").reset_index())
    per_class = pd.DataFrame({"class": range(k), "n": [int((given == c).sum()) for c in range(k)],
                              "n_flipped": 0, "n_flagged": 0, "precision": 1.0, "recall": 1.0, "f1": 1.0})
    baselines = pd.DataFrame({"precision_at_1": [0.9, 0.7, 0.6, 0.65], "map": [0.8, 0.6, 0.5, 0.55],
                              "nmi": [0.7, 0.5, 0.4, 0.45], "seconds": [1.0, 0.5, 0.5, 0.4]},
                             index=["student", "fat (noisy labels)", "batch-hard (noisy labels)",
                                    "cross-entropy (noisy labels)"])
    names = [str(c) for c in range(k)]
    return FakeDistillResult(settings or RunSettings(), table, rounds, report, per_class, confusion, baselines,
                             SimpleNamespace(class_names=names), ["a synthetic result"])


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


def test_flagging_comparison_reads_the_report() -> None:
    r = fake_result().report
    table = flagging_comparison(r)
    assert table.loc["precision", "teacher (fatviz)"] == pytest.approx(r["flag_precision"])
    assert table.loc["F1", "teacher (fatviz)"] == pytest.approx(r["flag_f1"])
    assert table.loc["flagged", "teacher (fatviz)"] == r["n_flagged"]
    assert table.loc["recall", "confident learning (cleanlab)"] == 0.4
    assert table.loc["flagged", "confident learning (cleanlab)"] == 9.0
    assert np.isnan(flagging_comparison({})).all().all()


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
