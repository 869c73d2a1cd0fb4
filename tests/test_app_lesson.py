"""AppTest runs of the Lesson: every step renders, Back/Next and the arrow keys' trigger move the
step in the address, a bad `?step=` is fitted with one message, `?present=1` hides the notes, and
the instruments show what the library computes.

Runs train in a thread of the test process (conftest: FATVIZ_WORKERS=0), with the lesson's own
small settings (the distillation takes a few seconds).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_app_pages import values

from fatviz.bound_view import bound_terms, hardest_triplet, teaching_blobs, whole_set_bounds
from fatviz.figures.labels import gallery_rows
from fatviz.lesson import BOUND_BLOBS, BOUND_OPTION, NOISY, STEPS, WHOLE_SET_OUTLIERS, centres_runs, step_from_query
from fatviz.serve.jobs import job_key
from pages.ui.live import job_manager

TIMEOUT = 120
COUNT = len(STEPS)


def lesson(query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file("../pages/lesson.py", default_timeout=TIMEOUT)
    at.query_params.update(query or {})
    return at.run()


def no_trouble(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def heading(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("#### Step"))


def shown_step(at: AppTest) -> int:
    return int(heading(at).split()[2])


def wait_for(at: AppTest, done, seconds: float = 120) -> None:
    deadline = time.perf_counter() + seconds
    while not done(at) and time.perf_counter() < deadline:
        time.sleep(0.3)
        at.run()


@pytest.mark.parametrize("k", range(1, COUNT + 1))
def test_every_step_renders_with_its_number_text_and_notes(k: int) -> None:
    at = lesson({"step": str(k)})
    no_trouble(at)
    step = STEPS[k - 1]
    assert heading(at) == f"#### Step {k} of {COUNT} · {step.title}"
    assert any(m.value == step.text for m in at.markdown)
    assert at.info[0].value == step.try_this
    assert at.expander[0].label == "Presenter notes"
    assert at.button(key="lesson_back").disabled == (k == 1)
    assert at.button(key="lesson_next").disabled == (k == COUNT)


def test_next_and_back_walk_the_lesson_and_keep_the_step_in_the_address() -> None:
    at = lesson()
    assert shown_step(at) == 1
    for k in range(2, COUNT + 1):
        at.button(key="lesson_next").click().run()
        no_trouble(at)
        assert shown_step(at) == k and at.query_params["step"] == str(k)
    at.button(key="lesson_back").click().run()
    assert shown_step(at) == COUNT - 1


def test_the_arrow_keys_component_knows_the_step_and_the_count() -> None:
    """fatviz/web/lesson_keys.js moves from the step it was given, never past the count (the
    keys themselves are pressed in tests/test_browser_lesson.py)."""
    at = lesson({"step": "3"})
    (keys,) = [json.loads(el.proto.json) for el in at.get("bidi_component")]
    assert keys == {"step": 3, "count": COUNT}


@pytest.mark.parametrize("value", ["99", "x", "0", "-1"])
def test_a_bad_step_is_fitted_with_one_message_and_no_traceback(value: str) -> None:
    at = lesson({"step": value})
    assert not at.exception
    expected, message = step_from_query(value)
    (warning,) = at.warning
    assert warning.value == message
    assert shown_step(at) == expected
    assert at.query_params["step"] == str(expected)  # the address says what is shown


def test_presentation_mode_hides_the_presenter_notes() -> None:
    at = lesson({"step": "2", "present": "1"})
    no_trouble(at)
    assert not at.expander
    assert not any(m.value == STEPS[1].notes for m in at.markdown)


def test_the_bound_step_hands_the_view_the_hardest_triplet_of_its_blobs() -> None:
    at = lesson({"step": str(next(i for i, s in enumerate(STEPS, 1) if s.key == "bound"))})
    no_trouble(at)
    points, labels = teaching_blobs(*BOUND_BLOBS)
    t = bound_terms(points, labels, *hardest_triplet(points, labels, BOUND_OPTION), BOUND_OPTION)
    views = [json.loads(el.proto.json) for el in at.get("bidi_component")]
    (view,) = [v for v in views if "points" in v]
    assert (view["a"], view["p"], view["n"]) == (t.anchor, t.positive, t.negative)
    assert view["margin"] == t.margin and not view["members"] and not view["centre"]
    np.testing.assert_allclose(view["points"], points)


def test_the_whole_set_step_draws_the_exact_loss_and_follows_its_slider() -> None:
    at = lesson({"step": str(next(i for i, s in enumerate(STEPS, 1) if s.key == "whole_set"))})
    no_trouble(at)
    classes, spread, _, seed = BOUND_BLOBS

    def bars(name: str) -> np.ndarray:
        fig = json.loads(at.get("plotly_chart")[0].proto.spec)
        (trace,) = [tr for tr in fig["data"] if tr["name"] == name]
        return values(trace["y"])

    exact = whole_set_bounds(*teaching_blobs(classes, spread, WHOLE_SET_OUTLIERS, seed))
    np.testing.assert_allclose(bars("exact triplet loss"), exact["exact"])
    at.slider(key="lesson_outliers").set_value(0.25).run()
    no_trouble(at)
    radius = whole_set_bounds(*teaching_blobs(classes, spread, 0.25, seed))["radius_term"]
    np.testing.assert_allclose(bars("bound: radius term"), radius)


def test_the_noisy_step_trains_its_distillation_and_shows_the_flagged() -> None:
    at = lesson({"step": str(next(i for i, s in enumerate(STEPS, 1) if s.key == "noisy"))})
    wait_for(at, lambda a: bool(a.metric), seconds=300)
    no_trouble(at)
    job = job_manager().get(job_key("distill", NOISY))
    rep, table = job.result.report, job.result.table
    shown = {m.label: m.value for m in at.metric}
    assert shown["Precision"] == f"{rep['flag_precision']:.3f}" and shown["Recall"] == f"{rep['flag_recall']:.3f}"
    assert shown["Flagged / flipped"] == f"{int(table.flagged.sum())} / {int(table.was_flipped.sum())}"
    first = gallery_rows(table, "correctly flagged").iloc[0]
    assert len(at.image) == 6
    assert at.image[0].captions[0].startswith(f"given {first.given_label} · teacher {first.teacher_label} · "
                                              f"true {first.true_label}")


def test_the_centres_step_trains_one_run_per_registered_value() -> None:
    at = lesson({"step": str(next(i for i, s in enumerate(STEPS, 1) if s.key == "centres"))})
    no_trouble(at)
    assert not at.get("plotly_chart")  # the class votes before anything trains
    at.button(key="lesson_train").click().run()
    wait_for(at, lambda a: bool(a.get("plotly_chart")), seconds=300)
    no_trouble(at)
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = [tr["name"] for tr in fig["data"] if tr.get("showlegend") is not False]
    assert names == [f"centres={scope}" for scope in centres_runs()]
    assert len({tr["line"]["color"] for tr in fig["data"]}) == len(names)
