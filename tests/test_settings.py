"""RunSettings: validation, round trips through dict and URL, cache key."""

import pytest

from fatviz.errors import FatvizError
from fatviz.settings import RunSettings


def test_defaults_validate_and_effective_margins_follow_the_option():
    s = RunSettings().validate()
    assert s.effective_margin == 0.1 and s.effective_compactness_weight == 1.0
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
    ({"dataset": "folder"}, "data_root"),
])
def test_impossible_settings_raise_one_clear_error(change, words):
    with pytest.raises(FatvizError) as err:
        RunSettings(**change).validate()
    assert words in str(err.value)


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
