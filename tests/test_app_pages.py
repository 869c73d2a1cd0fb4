"""AppTest runs of the Noisy labels, The bound and Speed pages: they render, and widgets change what is computed."""

from __future__ import annotations

import base64
import importlib
import json
import math
import re
import sys
import time
import types

import numpy as np
import pytest
from helpers import fake_result
from streamlit.testing.v1 import AppTest

from fatviz.bench import log_log_slope
from fatviz.bound_view import (
    bound_terms,
    hardest_triplet,
    teaching_blobs,
    whole_set_bounds,
)
from fatviz.distill.teacher import verdict_of
from fatviz.settings import RunSettings

TIMEOUT = 120


def figures(at: AppTest) -> list[dict]:
    """The plotly figures the page drew, as JSON, in page order."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def values(v) -> np.ndarray:
    """An array from plotly's JSON: a plain list or a base64 typed array ({"dtype", "bdata", "shape"})."""
    if isinstance(v, dict) and "bdata" in v:
        out = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return out.reshape([int(s) for s in str(v["shape"]).split(",")]) if "shape" in v else out
    return np.asarray(v)


def metrics(at: AppTest) -> dict[str, str]:
    """Displayed st.metric values by label."""
    return {m.label: m.value for m in at.metric}


def no_trouble(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


# --------------------------------------------------------------------------- the bound


def expected_terms(option: str = "norm-mean-norm", classes: int = 4, spread: float = 1.0, outliers: float = 0.0,
                   seed: int = 0, margin: float | None = None, anchor: int | None = None):
    points, labels = teaching_blobs(classes, spread, outliers, seed)
    a, p, n = hardest_triplet(points, labels, option, anchor)
    return bound_terms(points, labels, a, p, n, option, margin)


def shown_terms(at: AppTest) -> tuple[str, str, str]:
    m = metrics(at)
    return m["Triplet loss"], m["Bound"], m["Gap"]


def as_shown(t) -> tuple[str, str, str]:
    return f"{t.loss:.3f}", f"{t.bound:.3f}", f"{t.gap:.3f}"


@pytest.fixture()
def bound_page() -> AppTest:
    at = AppTest.from_file("../pages/the_bound.py", default_timeout=TIMEOUT)
    at.run()
    no_trouble(at)
    return at


def test_bound_page_shows_the_hardest_triplet_by_default(bound_page: AppTest) -> None:
    t = expected_terms()
    assert shown_terms(bound_page) == as_shown(t)
    # The draggable view gets the same points and triplet; it computes its numbers itself
    # (tests/test_bound_drag.py checks them against fatviz).
    (view,) = [json.loads(el.proto.json) for el in bound_page.get("bidi_component")]
    assert (view["a"], view["p"], view["n"]) == (t.anchor, t.positive, t.negative)
    assert view["margin"] == t.margin and len(view["points"]) == len(t.points)
    assert bound_page.success[0].value.startswith("Holds")
    assert any(f"{t.loss:.3f}" in latex.value for latex in bound_page.latex)


def test_bound_page_option_margin_and_anchor_change_the_numbers(bound_page: AppTest) -> None:
    at = bound_page
    at.radio(key="tb_option").set_value("mean").run()
    no_trouble(at)
    assert shown_terms(at) == as_shown(expected_terms("mean"))
    (view,) = [json.loads(el.proto.json) for el in at.get("bidi_component")]
    assert "option mean" in view["title"] and not view["members"] and not view["centre"]
    at.checkbox(key="tb_margin_auto").uncheck().run()
    at.slider(key="tb_margin").set_value(1.5).run()
    no_trouble(at)
    assert shown_terms(at) == as_shown(expected_terms("mean", margin=1.5))
    at.selectbox(key="tb_anchor").set_value(7).run()
    no_trouble(at)
    assert shown_terms(at) == as_shown(expected_terms("mean", margin=1.5, anchor=7))


def test_bound_page_outliers_change_the_whole_set_view(bound_page: AppTest) -> None:
    at = bound_page
    whole = figures(at)[1]
    (exact,) = [tr for tr in whole["data"] if tr["name"] == "exact triplet loss"]
    table = whole_set_bounds(*teaching_blobs(4, 1.0, 0.0, 0))
    np.testing.assert_allclose(values(exact["y"]), table["exact"])
    at.slider(key="tb_outliers").set_value(0.2).run()
    no_trouble(at)
    whole = figures(at)[1]
    (radius,) = [tr for tr in whole["data"] if tr["name"] == "bound: radius term"]
    np.testing.assert_allclose(values(radius["y"]), whole_set_bounds(*teaching_blobs(4, 1.0, 0.2, 0))["radius_term"])


def test_bound_page_a_stale_choice_falls_back_to_the_hardest(bound_page: AppTest) -> None:
    at = bound_page
    at.selectbox(key="tb_anchor").set_value(100).run()
    at.slider(key="tb_classes").set_value(2).run()  # 2 classes: fewer points, index 100 is gone
    no_trouble(at)
    assert at.session_state["tb_anchor"] == -1
    assert shown_terms(at) == as_shown(expected_terms(classes=2))


# --------------------------------------------------------------------------- speed


def test_speed_page_runs_a_tiny_benchmark_and_caches_it() -> None:
    at = AppTest.from_file("../pages/speed.py", default_timeout=TIMEOUT)
    at.run()
    no_trouble(at)
    assert not at.get("plotly_chart")  # nothing is timed before the button
    at.select_slider(key="sp_sizes").set_range(16, 32)
    at.multiselect(key="sp_methods").set_value(["fat", "batch-hard"])
    at.number_input(key="sp_repeats").set_value(1)
    at.button[0].click().run()
    no_trouble(at)
    fig = figures(at)[0]
    lines = {tr["name"]: tr for tr in fig["data"] if tr.get("mode") == "lines+markers"}
    assert len(lines) == 2
    fat_name = next(name for name in lines if name.startswith("fat"))
    ms = at.dataframe[0].value  # shown as text, three decimals
    assert list(ms.index) == [16, 32]
    fat_ms = values(lines[fat_name]["y"])
    assert list(ms["fat"]) == [f"{v:.3f}" for v in fat_ms]
    assert fat_name == f"fat (slope {log_log_slope([16, 32], list(fat_ms)):.2f})"
    slopes = at.dataframe[2].value
    assert slopes.loc["fat", "slope"] == f"{log_log_slope([16, 32], list(fat_ms)):.2f}"
    start = time.perf_counter()
    at.button[0].click().run()  # same settings: from the cache
    assert time.perf_counter() - start < 5
    np.testing.assert_allclose(values(figures(at)[0]["data"][3]["y"]), values(fig["data"][3]["y"]))


def test_speed_page_refuses_an_empty_method_list() -> None:
    at = AppTest.from_file("../pages/speed.py", default_timeout=TIMEOUT)
    at.run()
    at.multiselect(key="sp_methods").set_value([])
    at.button[0].click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Pick at least one method to time."]


# --------------------------------------------------------------------------- noisy labels

TINY_QUERY = {"subsample": "200", "epochs": "1", "noise": "pairflip:0.4", "teacher_epochs": "1", "teacher_rounds": "1",
        "round_epochs": "1", "embedding_dim": "8"}


def wait_for(at: AppTest, done, seconds: float = 120) -> None:
    """Rerun the page until done(at) holds (the job trains in a thread)."""
    deadline = time.perf_counter() + seconds
    while True:
        at.run()
        if done(at) or time.perf_counter() > deadline:
            return
        time.sleep(0.3)


def run_the_teacher(at: AppTest) -> None:
    """Press the Noisy labels page's Run button and rerun until its metrics show, without trouble."""
    next(b for b in at.button if b.label.startswith("Run the teacher")).click().run()
    wait_for(at, lambda a: bool(a.metric))
    no_trouble(at)


@pytest.fixture()
def fake_distill(monkeypatch: pytest.MonkeyPatch) -> list[RunSettings]:
    """Replace fatviz.distill with one that returns a synthetic result at once; records the settings it gets."""
    seen: list[RunSettings] = []
    module = types.ModuleType("fatviz.distill")
    module.verdict_of = verdict_of  # the page says what the student trained on

    def run_distillation(settings: RunSettings, should_stop=None, on_progress=None):
        seen.append(settings)
        return fake_result(n=60, k=10, seed=1, settings=settings)

    module.run_distillation = run_distillation
    module.save_distillation = lambda result, folder: None
    monkeypatch.setitem(sys.modules, "fatviz.distill", module)
    return seen


def test_noisy_labels_page_runs_and_shows_everything(fake_distill: list[RunSettings]) -> None:
    at = AppTest.from_file("../pages/noisy_labels.py", default_timeout=TIMEOUT)
    at.query_params.update(TINY_QUERY | {"seed": "7"})
    at.run()
    no_trouble(at)
    assert not at.metric
    at.button(key=None)  # the run button is the primary one
    run = next(b for b in at.button if b.label.startswith("Run the teacher"))
    run.click().run()
    wait_for(at, lambda a: bool(a.metric))
    no_trouble(at)
    (settings,) = fake_distill
    assert (settings.seed, settings.subsample, settings.noise, settings.teacher_rounds) == (7, 200, "pairflip:0.4", 1)
    expected = fake_result(n=60, k=10, seed=1, settings=settings)
    rep = expected.report
    shown = metrics(at)
    assert shown["Precision"] == f"{rep['flag_precision']:.3f}"
    assert shown["Recall"] == f"{rep['flag_recall']:.3f}"
    assert shown["F1"] == f"{rep['flag_f1']:.3f}"
    assert shown["Flagged / flipped"] == f"{int(rep['n_flagged'])} / {int(rep['n_flipped'])}"
    t = expected.table
    flagged_or_missed = int((t.flagged | t.was_flipped).sum())  # correctly/wrongly flagged + missed
    assert len(at.image) == flagged_or_missed
    first = t[t.flagged & t.was_flipped].sort_values("score").iloc[0]  # lowest score first, correctly flagged
    assert at.image[0].captions[0] == (f"given {first.given_label} · teacher {first.teacher_label} · "
                                      f"true {first.true_label} · p {first.score:.2f}")
    assert any("- a synthetic result" in md.value for md in at.markdown)
    assert at.get("download_button")
    names = {tr.get("name") for fig in figures(at) for tr in fig["data"]}
    assert {"trained on", "precision@1"} <= names


def test_noisy_labels_widgets_reach_the_distillation(fake_distill: list[RunSettings]) -> None:
    at = AppTest.from_file("../pages/noisy_labels.py", default_timeout=TIMEOUT)
    at.query_params.update(TINY_QUERY | {"seed": "8"})
    at.run()
    at.slider(key="nl_threshold").set_value(0.8)
    at.slider(key="nl_rounds").set_value(2).run()
    run_the_teacher(at)
    (settings,) = fake_distill
    assert (settings.confidence_threshold, settings.teacher_rounds) == (0.8, 2)
    at.radio(key="nl_rule").set_value("small-loss").run()  # new settings: no result yet, the button is back
    no_trouble(at)
    assert not at.metric
    assert at.slider(key="nl_keep").value == RunSettings().keep_fraction


def test_the_teacher_verdict_and_two_people_widgets_reach_the_distillation(fake_distill: list[RunSettings]) -> None:
    at = AppTest.from_file("../pages/noisy_labels.py", default_timeout=TIMEOUT)
    at.query_params.update(TINY_QUERY | {"seed": "10"})
    at.run()
    assert (at.radio(key="nl_verdict").value, at.radio(key="nl_two_people").value) == ("auto", "auto")
    at.radio(key="nl_verdict").set_value("centre")
    at.radio(key="nl_two_people").set_value("off")
    at.radio(key="nl_student_verdict").set_value("on").run()
    run_the_teacher(at)
    (settings,) = fake_distill
    assert (settings.teacher_verdict, settings.two_people, settings.student_verdict) == ("centre", "off", "on")
    captions = " ".join(c.value for c in at.caption)
    assert "the samples the teacher kept, with their given labels" in captions  # the centre verdict's student
    at.radio(key="nl_verdict").set_value("softmax").run()
    run_the_teacher(at)
    assert fake_distill[-1].teacher_verdict == "softmax"
    assert "the teacher's soft labels" in " ".join(c.value for c in at.caption)


def test_noisy_labels_blobs_show_a_table_instead_of_images(fake_distill: list[RunSettings]) -> None:
    at = AppTest.from_file("../pages/noisy_labels.py", default_timeout=TIMEOUT)
    at.query_params.update(TINY_QUERY | {"seed": "9", "dataset": "blobs", "subsample": "0"})
    at.run()
    run_the_teacher(at)
    assert not at.image
    t = fake_result(n=60, k=10, seed=1).table
    missed = [df.value for df in at.dataframe if "missed" in set(df.value.get("outcome", []))]
    assert len(missed) == 1 and len(missed[0]) == int((~t.flagged & t.was_flipped).sum())


def test_the_gallery_names_both_people_the_teacher_sees(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("fatviz.distill")
    module.verdict_of = verdict_of  # the page says what the student trained on

    def run_distillation(settings: RunSettings, should_stop=None, on_progress=None):
        result = fake_result(n=60, k=10, seed=1, settings=settings)
        t = result.table
        row = int(np.flatnonzero(t.flagged & t.was_flipped)[0])
        result.table = t.assign(pair_first=np.where(t.index == row, 3, -1), pair_second=np.where(t.index == row, 7, -1))
        return result

    module.run_distillation = run_distillation
    module.save_distillation = lambda result, folder: None
    monkeypatch.setitem(sys.modules, "fatviz.distill", module)
    at = AppTest.from_file("../pages/noisy_labels.py", default_timeout=TIMEOUT)
    at.query_params.update(TINY_QUERY | {"dataset": "reid-synth", "reid_size": "small", "subsample": "160"})
    at.run()
    run_the_teacher(at)
    captions = [c for image in at.image for c in image.captions]
    assert sum("two people: 3 and 7" in c for c in captions) == 1
    assert sum("· teacher " in c for c in captions) == len(captions) - 1  # the others: the teacher's one label


def test_noisy_labels_hint_without_noise() -> None:
    at = AppTest.from_file("../pages/noisy_labels.py", default_timeout=TIMEOUT)
    at.run()
    no_trouble(at)
    assert any("no label noise" in i.value for i in at.info)
    next(b for b in at.button if b.label == "Use 40% pairflip noise").click().run()
    assert at.session_state["w_noise_kind"] == "pairflip"
    assert not any("no label noise" in i.value for i in at.info)


def _real_distill_available() -> bool:
    try:
        return hasattr(importlib.import_module("fatviz.distill"), "run_distillation")
    except ImportError:
        return False


@pytest.mark.skipif(not _real_distill_available(), reason="fatviz.distill is not finished yet")
def test_noisy_labels_page_with_a_real_tiny_distillation() -> None:
    at = AppTest.from_file("../pages/noisy_labels.py", default_timeout=TIMEOUT)
    at.query_params.update(TINY_QUERY | {"seed": "3"})
    at.run()
    next(b for b in at.button if b.label.startswith("Run the teacher")).click().run()
    wait_for(at, lambda a: bool(a.metric) or bool(a.error), seconds=300)
    no_trouble(at)
    precision = float(metrics(at)["Precision"])
    assert 0.0 <= precision <= 1.0 and not math.isnan(precision)
    # The phases' seconds, with the student's test-split evaluation inside its own (issue 24).
    took = next(c.value for c in at.caption if "Took" in c.value)
    assert re.search(r"student [0-9.]+ s \(evaluation [0-9.]+ s\)", took), took


# --------------------------------------------------------------------------- navigation


@pytest.mark.parametrize("page, title", [("pages/the_bound.py", "The bound"), ("pages/speed.py", "Speed"),
                                         ("pages/noisy_labels.py", "Noisy labels")])
def test_pages_open_from_the_app(page: str, title: str) -> None:
    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT)
    at.run()
    at.switch_page(page).run()
    no_trouble(at)
    assert at.title[0].value == title


def test_a_page_without_the_noise_widgets_keeps_the_noise_after_others_drew_them() -> None:
    """Streamlit forgets the state of widgets a run does not draw: Rank lists (no noise sliders), run
    twice after a page with them, once raised KeyError 'w_noise_kind' for the whole page."""
    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT)
    at.query_params["noise"] = "symmetric:0.3"
    at.run()
    at.switch_page("pages/centroid_explorer.py").run()
    no_trouble(at)
    at.slider(key="w_epochs").set_value(7).run()
    at.switch_page("pages/rank_list.py").run()
    at.run()
    no_trouble(at)
    at.switch_page("pages/the_bound.py").run()  # a page without the sidebar: Streamlit forgets it all
    at.run()
    at.switch_page("pages/centroid_explorer.py").run()
    no_trouble(at)
    ss = at.session_state
    assert (ss["w_noise_kind"], ss["w_noise_rate"], ss["w_epochs"], ss["w_loss"]) == ("symmetric", 0.3, 7, "hybrid")


# --------------------------------------------------------------------------- links the sidebar cannot show


def widget(at: AppTest, key: str):
    """The sidebar or page widget with this key, whatever its kind."""
    return next(w for kind in ("slider", "select_slider", "number_input") for w in at.get(kind) if w.key == key)


@pytest.mark.parametrize("query, key, shown, words", [
    ({"epochs": "100000000"}, "w_epochs", 100, ("100000000", "1 to 100")),
    ({"noise": "symmetric:9"}, "w_noise_rate", 0.9, ("symmetric:9", "0 to 0.9")),
    ({"teacher_epochs": "1000"}, "nl_teacher_epochs", 30, ("1000", "1 to 30")),
    ({"temperature": "0.01"}, "nl_temperature", 0.1, ("0.01", "0.1 to 10")),
    ({"margin": "20"}, "w_margin", 10.0, ("20", "0 to 10")),
    ({"negatives": "hardest", "hardest_k": "1000"}, "w_hardest_k", 50, ("1000", "1 to 50")),
    ({"embedding_dim": "5"}, "w_embedding_dim", 3, ("embedding_dim = 5", "2, 3, 8, 16, 32, 64, 128", "using 3")),
])
def test_a_link_beyond_the_widgets_is_fitted_to_them_with_one_warning(query, key, shown, words) -> None:
    at = AppTest.from_file("../pages/noisy_labels.py", default_timeout=TIMEOUT)
    at.query_params.update(query)
    at.run()
    no_trouble(at)
    (warning,) = at.warning
    assert all(w in warning.value for w in words), warning.value
    assert widget(at, key).value == pytest.approx(shown)
    at.run()  # the link is rewritten to what is shown; the warning stays until the settings change
    assert len(at.warning) == 1
    at.slider(key="w_epochs").set_value(7).run()
    no_trouble(at)
    assert not at.warning


def test_a_link_with_several_odd_values_gets_one_warning_naming_each() -> None:
    at = AppTest.from_file("../pages/noisy_labels.py", default_timeout=TIMEOUT)
    at.query_params.update({"epochs": "0", "seed": "-4", "subsample": "abc", "loss": "nope"})
    at.run()
    no_trouble(at)
    (warning,) = at.warning
    for name in ("epochs = 0", "seed = -4", "subsample = 'abc'", "loss = 'nope'"):
        assert name in warning.value, warning.value
    assert (widget(at, "w_epochs").value, widget(at, "w_seed").value) == (1, 0)


def test_a_data_folder_outside_the_data_roots_is_one_error_that_does_not_name_it() -> None:
    at = AppTest.from_file("../pages/noisy_labels.py", default_timeout=TIMEOUT)
    at.query_params.update({"dataset": "folder", "data_root": "/etc"})
    at.run()
    assert not at.exception
    (error,) = at.error
    assert "/etc" not in error.value and "data folder" in error.value and "fatviz-data" in error.value


# --------------------------------------------------------------------------- registries reach the sidebar


def test_a_fifth_centroid_option_and_a_new_dataset_appear_in_the_sidebar() -> None:
    from fatviz.centroids import CENTROIDS, CentroidOption
    from fatviz.data import DATASETS, DatasetSpec

    CENTROIDS.register("test-option", CentroidOption("test-option", True, True, "a centre for this test only",
                                                     "test centre", "#123456"))
    DATASETS.register("test-data", DatasetSpec("test-data", "a dataset for this test only", lambda **kw: None,
                                               True, "nothing in particular"))
    try:
        at = AppTest.from_file("../pages/noisy_labels.py", default_timeout=TIMEOUT)
        at.run()
        no_trouble(at)
        assert "test-option" in at.selectbox(key="w_centroid").options
        assert "test-data" in at.selectbox(key="w_dataset").options
        assert "a centre for this test only" in at.selectbox(key="w_centroid").help
        at.selectbox(key="w_dataset").set_value("test-data").run()
        no_trouble(at)
        assert at.text_input(key="w_data_root")  # the registry says it needs a folder
        assert "nothing in particular" in at.text_input(key="w_data_root").help
    finally:
        CENTROIDS.unregister("test-option")
        DATASETS.unregister("test-data")


def test_a_first_visit_straight_to_a_page_goes_through_the_app_navigation() -> None:
    """A shared link opened by the first visitor after a server start: Streamlit starts in its page-folder
    mode (AppTest starts every run that way, as a fresh server does), and the page still lands in app.py."""
    from streamlit.runtime.pages_manager import PagesManager

    from app import PAGES

    at = AppTest.from_file("../app.py", default_timeout=TIMEOUT)
    at.switch_page("pages/speed.py")  # before any run: the address a link opens
    at.run()
    no_trouble(at)
    assert at.title[0].value == "Speed"
    assert PagesManager.uses_pages_directory is False
    assert [p["page_name"] for p in at._registered_pages.values()] == [title for _, title, _ in PAGES]


def test_a_link_with_all_three_reid_noise_kinds_sets_every_noise_widget() -> None:
    at = AppTest.from_file("../pages/centroid_explorer.py", default_timeout=TIMEOUT)
    at.query_params["noise"] = "symmetric:0.2+outlier:0.1+multi:0.05"
    at.run()
    assert not at.exception
    ss = at.session_state
    assert (ss["w_noise_kind"], ss["w_noise_rate"], ss["w_noise_outlier"], ss["w_noise_multi"]) == (
        "symmetric", 0.2, 0.1, 0.05)
    assert at.query_params["noise"] == "symmetric:0.2+outlier:0.1+multi:0.05"  # the link survives the round trip
    at.slider(key="w_noise_multi").set_value(0.0).run()
    assert at.query_params["noise"] == "symmetric:0.2+outlier:0.1"


def test_the_reid_presets_are_valid_settings_with_the_three_noise_kinds() -> None:
    from fatviz.noise import parse_noise
    from fatviz.presets import PRESETS

    _, noisy = PRESETS["ReID: 20% wrong identity + 10% nobody + 5% two people"]
    assert noisy.dataset == "reid-synth"
    assert dict(parse_noise(noisy.noise)) == {"symmetric": 0.2, "outlier": 0.1, "multi": 0.05}
    assert PRESETS["ReID: clean"][1].noise == "none"
