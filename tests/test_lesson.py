"""The Lesson's steps (fatviz/lesson.py): the deep link's step number, the paper's words, the runs it trains."""

from __future__ import annotations

import pytest

import fatviz.catalogue
import fatviz.settings
from fatviz.lesson import CENTRES_BASE, STEPS, centres_runs, step_from_query
from fatviz.settings import RunSettings

PAPER_WORDS = ("anchor", "centre", "radius", "point-to-set", "compactness", "teacher", "student", "soft label",
               "flagged")


@pytest.mark.parametrize("value, step", [(None, 1), ("", 1), ("1", 1), ("4", 4), (" 7 ", 7), (str(len(STEPS)), len(STEPS))])
def test_a_step_in_range_is_shown_without_a_message(value, step) -> None:
    assert step_from_query(value) == (step, None)


@pytest.mark.parametrize("value, step, words", [
    ("99", len(STEPS), ("no step 99", f"1 to {len(STEPS)}", f"Showing step {len(STEPS)}")),
    ("0", 1, ("no step 0", "Showing step 1")),
    ("-3", 1, ("no step -3", "Showing step 1")),
    ("x", 1, ("?step=x is not a step number", f"1 to {len(STEPS)}")),
    ("2.5", 1, ("?step=2.5 is not a step number",)),
])
def test_a_step_out_of_range_or_not_a_number_is_fitted_with_one_message(value, step, words) -> None:
    shown, message = step_from_query(value)
    assert shown == step
    assert message is not None and all(w in message for w in words), message


def test_six_to_eight_steps_with_distinct_keys_in_the_papers_words() -> None:
    assert 6 <= len(STEPS) <= 8
    assert len({s.key for s in STEPS}) == len(STEPS)
    text = " ".join(f"{s.text} {s.try_this}" for s in STEPS).lower()
    missing = [w for w in PAPER_WORDS if w not in text]
    assert not missing, missing
    assert all(s.title and s.text and s.try_this and s.notes for s in STEPS)


def test_one_centres_run_per_registered_value_and_nothing_else_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = centres_runs()
    assert list(runs) == ["epoch", "batch", "ema:0.9"]
    for scope, s in runs.items():
        assert s.centres == scope and s.replace(centres=CENTRES_BASE.centres) == CENTRES_BASE
    # A source added to the catalogue is a run here with no edit to the lesson.
    monkeypatch.setattr(fatviz.catalogue, "CENTRE_SOURCES", (*fatviz.catalogue.CENTRE_SOURCES, "test-scope"))
    monkeypatch.setattr(fatviz.settings, "_validate", lambda s: None)  # the test value is not a real source
    monkeypatch.setattr(fatviz.settings, "parse_centres", lambda text: fatviz.catalogue.CentreSource("batch"))
    assert "test-scope" in centres_runs(RunSettings())
