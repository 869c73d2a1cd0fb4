"""RunSettings: validation, round trips through dict and URL, cache key."""

from pathlib import Path

import pytest

from fatviz.errors import FatvizError
from fatviz.settings import RunSettings


def test_defaults_validate_and_effective_margins_follow_the_option():
    s = RunSettings()  # validated at construction
    assert s.effective_margin == 0.1 and s.effective_compactness_weight == 0.3
    raw = s.replace(centroid="mean")
    assert raw.effective_margin == 1.0 and raw.effective_compactness_weight == 0.1
    assert s.replace(margin=0.3).effective_margin == 0.3


@pytest.mark.parametrize("change, words", [
    ({"dataset": "imagenet"}, "dataset"),
    ({"noise": "symmetric:1.5"}, "rate"),
    ({"noise": "gaussian:0.1"}, "noise"),
    ({"epochs": 0}, "epochs"),
    ({"lr": -1.0}, "lr"),
    ({"centroid": "median"}, "centroid"),
    ({"confidence_threshold": 2.0}, "confidence_threshold"),
    ({"loss": "normalized-fat", "centroid": "mean"}, "normalised"),
    ({"margin": float("nan")}, "finite"),
    ({"margin": float("inf")}, "finite"),
    ({"epochs": 2.5}, "whole number"),
    ({"epochs": True}, "whole number"),
    ({"loss": 3}, "text"),
    ({"lr": 100.0}, "at most"),
])
def test_impossible_settings_raise_one_clear_error_at_construction(change, words):
    with pytest.raises(FatvizError) as err:
        RunSettings(**change)
    assert words in str(err.value)


def test_replace_validates_too():
    with pytest.raises(FatvizError, match="epochs"):
        RunSettings().replace(epochs=0)


def test_dict_round_trip_and_strictness():
    s = RunSettings(noise="pairflip:0.4", margin=0.2, epochs=7)
    assert RunSettings.from_dict(s.to_dict()) == s
    with pytest.raises(FatvizError, match="Unknown settings"):
        RunSettings.from_dict({**s.to_dict(), "colour": "red"})
    assert RunSettings.from_dict({**s.to_dict(), "colour": "red"}, strict=False) == s


def test_url_round_trip_only_carries_changed_fields():
    s = RunSettings(noise="symmetric:0.2", embedding_dim=2, margin=0.25, seed=3)
    q = s.to_query()
    assert set(q) == {"noise", "embedding_dim", "margin", "seed"}
    assert all(isinstance(v, str) for v in q.values())
    assert RunSettings.from_query(q) == s
    # Streamlit hands repeated parameters as lists; the last one wins.
    assert RunSettings.from_query({"epochs": ["3", "5"]}).epochs == 5
    assert RunSettings.from_query({"margin": ""}).margin is None
    with pytest.raises(FatvizError, match="not a number"):
        RunSettings.from_query({"epochs": "many"})


def test_key_is_stable_and_distinguishes_settings():
    assert RunSettings().key() == RunSettings().key()
    assert RunSettings().key() != RunSettings(seed=1).key()


def test_each_job_kind_keys_on_what_it_reads():
    base = RunSettings()
    # A compare job trains all four options: the centroid option does not change its result.
    assert base.key("compare") == RunSettings(centroid="mean").key("compare")
    assert base.key("train") != RunSettings(centroid="mean").key("train")
    # Neither training kind reads the distillation section; a distillation does.
    for kind in ("train", "compare"):
        assert base.key(kind) == base.replace(teacher_epochs=9, temperature=2.0).key(kind)
    assert base.key("distill") != base.replace(teacher_epochs=9).key("distill")
    # Kinds never share a key, and every kind reads the data, the model and the training.
    assert len({base.key(k) for k in ("train", "compare", "distill")}) == 3
    for kind in ("train", "compare", "distill"):
        assert base.key(kind) != base.replace(epochs=7).key(kind) != base.replace(noise="pairflip:0.2").key(kind)
    with pytest.raises(FatvizError, match="job kind"):
        base.key("paint")


def test_the_comparison_settings_are_distillation_settings():
    base = RunSettings()
    assert (base.cv_epochs, base.baselines) == (3, "fat")  # cheaper folds than the teacher's 5 epochs; one baseline
    assert {"cv_epochs", "baselines"} <= set(base.section("distill"))
    # Only a distillation reads them: changing them never retrains a training or a comparison.
    for kind in ("train", "compare", "losses"):
        assert base.key(kind) == base.replace(cv_epochs=7, baselines="all").key(kind)
    assert len({base.key("distill"), base.replace(cv_epochs=5).key("distill"),
                base.replace(baselines="all").key("distill"), base.replace(baselines="none").key("distill")}) == 4
    with pytest.raises(FatvizError, match="baselines"):
        RunSettings(baselines="some")
    with pytest.raises(FatvizError, match="cv_epochs"):
        RunSettings(cv_epochs=0)
    s, problems = RunSettings.read_query({"cv_epochs": ["50"], "baselines": ["all"]})
    assert (s.cv_epochs, s.baselines) == (20, "all") and "1 to 20" in problems[0]
    assert RunSettings.from_query(base.replace(cv_epochs=5, baselines="none").to_query()) == base.replace(
        cv_epochs=5, baselines="none")


def test_sections_cover_every_field_once():
    from dataclasses import fields

    from fatviz.settings import SECTIONS

    s = RunSettings()
    seen = [name for section in SECTIONS for name in s.section(section)]
    assert sorted(seen) == sorted(f.name for f in fields(RunSettings))


def test_read_query_clamps_to_the_app_range_and_says_so():
    s, problems = RunSettings.read_query({"epochs": ["1000000000"], "embedding_dim": ["100000000"],
                                          "margin": ["nan"], "vis_points": ["10000000"], "seed": ["-3"]})
    assert (s.epochs, s.embedding_dim, s.vis_points, s.seed, s.margin) == (100, 128, 1000, 0, None)
    assert len(problems) == 5
    joined = " ".join(problems)
    for text in ("1000000000", "1 to 100", "100000000", "2 to 128", "nan", "10000000"):
        assert text in joined
    with pytest.raises(FatvizError, match="epochs"):
        RunSettings.from_query({"epochs": "1000000000"})


def test_read_query_drops_an_impossible_combination_with_a_message():
    s, problems = RunSettings.read_query({"loss": "normalized-fat", "centroid": "mean"})
    assert s.centroid == "mean" and s.loss == RunSettings().loss
    assert len(problems) == 1 and "normalised" in problems[0]
    s, problems = RunSettings.read_query({"noise": "symmetric:9"})
    assert s.noise == "none" and "rate" in problems[0].lower()


def test_app_limits_refuse_with_one_message_and_cli_hint():
    big = RunSettings(epochs=5000, batch_size=100000)
    assert len(big.outside_app_limits()) == 2
    with pytest.raises(FatvizError, match="--no-limits"):
        big.check_app_limits("Pass --no-limits to go beyond.")
    assert RunSettings().check_app_limits() == RunSettings()


def test_each_noise_term_is_held_to_its_own_app_range():
    from fatviz.noise import NOISE_TERMS

    for name, term in NOISE_TERMS.items():
        high = term.rates[1]
        assert RunSettings(noise=f"{name}:{high:g}").outside_app_limits() == []
        above = min(high + 0.05, 0.95)
        with pytest.raises(FatvizError, match=f"noise {name}:{above:g} is outside 0 to {high:g}"):
            RunSettings(noise=f"{name}:{above:g}").check_app_limits()


def test_a_fake_centroid_option_is_accepted_once_registered():
    from fatviz.centroids import CENTROIDS, CentroidOption

    with pytest.raises(FatvizError, match="centroid"):
        RunSettings(centroid="median-norm")
    CENTROIDS.register("median-norm", CentroidOption("median-norm", True, True, "a fake fifth option",
                                                     "fake", "#000000"))
    try:
        assert RunSettings(centroid="median-norm").effective_margin == 0.1  # normalised: the sphere's margin
    finally:
        CENTROIDS.unregister("median-norm")


def test_the_docs_settings_table_is_the_generated_one():
    from pathlib import Path

    from fatviz.settings import settings_markdown

    doc = Path(__file__).resolve().parents[1] / "docs" / "SETTINGS.md"
    assert doc.read_text() == settings_markdown(), "regenerate docs/SETTINGS.md (command in its first lines)"


def test_the_noise_help_names_every_noise_kind():
    from fatviz.noise import NOISE_TERMS, SAMPLE_KINDS
    from fatviz.settings import setting_fields

    help_text = next(f.help for f in setting_fields() if f.name == "noise")
    doc = (Path(__file__).resolve().parents[1] / "docs" / "SETTINGS.md").read_text()
    for name, term in NOISE_TERMS.items():
        assert f"{name}:RATE" in help_text and f"{name}:RATE" in doc
        assert term.sample_kind in SAMPLE_KINDS


def test_centre_sources_round_trip_through_the_url_and_bad_ones_get_one_message():
    for text in ("epoch", "batch", "ema:0.9", "ema:0.99", "ema:0.5"):
        s = RunSettings(centres=text)
        assert RunSettings.from_query(s.to_query()) == s
        assert RunSettings.from_dict(s.to_dict()) == s
    assert RunSettings(centres="ema:0.9").to_query() == {"centres": "ema:0.9"}
    assert RunSettings(centres="ema:0.90").centres == "ema:0.9"  # one spelling
    assert RunSettings(centres="ema:0.9").centre_source.beta == 0.9
    for bad, words in (("ema:2", "strictly between 0 and 1"), ("ema:x", "not a number"), ("weekly", "not possible")):
        with pytest.raises(FatvizError, match=words):
            RunSettings(centres=bad)
        with pytest.raises(FatvizError, match=words):
            RunSettings.from_query({"centres": bad})
        # A link: the rest of it still applies, the centres fall back to the default with one message.
        s, problems = RunSettings.read_query({"centres": [bad], "epochs": ["7"]})
        assert (s.centres, s.epochs) == ("epoch", 7)
        assert len(problems) == 1 and words in problems[0] and "default centres" in problems[0]


def test_each_centre_source_has_its_own_key_where_the_centres_are_read():
    sources = ("epoch", "batch", "ema:0.9", "ema:0.8")
    for kind in ("train", "compare", "distill"):
        assert len({RunSettings(centres=c).key(kind) for c in sources}) == len(sources), kind
        assert RunSettings(centres="ema:0.90").key(kind) == RunSettings(centres="ema:0.9").key(kind)
    # A loss comparison sets the centres per variant itself.
    assert len({RunSettings(centres=c).key("losses") for c in sources}) == 1
