"""Progress: phases weighted by their work, nested phases resized when their work is known, the bar."""

import math

import pytest

from fatviz.progress import Phases, ProgressBar, Stopped, epoch_work, seconds_left


def test_phases_weigh_each_part_by_its_work():
    seen = []
    phases = Phases({"small": 1.0, "large": 3.0}, lambda f, m: seen.append((f, m)))
    phases.part("small")(1.0, "a")
    phases.part("large")(0.5, "b")
    assert seen == [(0.25, "a"), (pytest.approx(0.625), "b")]
    assert Phases({"x": 1.0}).part("x") is None  # nobody listens


def test_a_nested_phase_sets_its_parent_weight_and_never_moves_back():
    seen = []
    outer = Phases({"teacher": 100.0, "student": 100.0}, lambda f, m: seen.append(f))
    inner = Phases({"round 0": 50.0, "round 1": 50.0}, outer.part("teacher"))
    assert outer.weights["teacher"] == 100.0
    inner.part("round 0")(1.0, "")
    assert seen[-1] == pytest.approx(0.25)
    inner.resize("round 1", 10.0)  # it trains on fewer samples than the upper bound
    assert outer.weights["teacher"] == 60.0
    inner.part("round 1")(1.0, "")
    assert seen[-1] == pytest.approx(60 / 160)
    inner.resize("round 1", 500.0)  # larger than estimated: the bar holds still instead of going back
    inner.part("round 1")(1.0, "")
    assert seen == sorted(seen)


def test_check_raises_the_given_error_when_asked_to_stop():
    class Mine(Stopped):
        pass

    Phases({"a": 1.0}, should_stop=lambda: False).check()
    with pytest.raises(Mine):
        Phases({"a": 1.0}, should_stop=lambda: True, stopped=Mine).check()


def test_epoch_work_counts_training_forward_passes_and_snapshots():
    assert epoch_work(100, 3) == 300
    assert epoch_work(100, 2, forward=100) > epoch_work(100, 2)
    assert epoch_work(0, 5) == 0


def test_progress_bar_counts_work_and_estimates_the_time_left(capsys):
    with ProgressBar("test") as bar:
        bar(0.5, "half")
        assert bar.bar.n == ProgressBar.STEPS // 2 and bar.bar.total == ProgressBar.STEPS
        assert bar.bar.format_dict["postfix"] == "half"  # no pace yet, so no time left
        bar(0.75, "more")
        assert bar.bar.format_dict["postfix"].endswith(" left, more")
        bar(1.0, "done")
        assert bar.bar.n == ProgressBar.STEPS
    assert capsys.readouterr().out == ""  # the bar is on stderr only


def test_seconds_left_uses_the_pace_since_the_first_report():
    assert seconds_left((10.0, 0.2), (20.0, 0.6)) == pytest.approx(10.0)  # 0.4 in 10 s: 0.4 more in 10 s
    assert seconds_left((10.0, 0.2), (12.0, 0.2)) == math.inf  # no pace yet
