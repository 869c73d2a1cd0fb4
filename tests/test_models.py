"""The model registry: every entry builds, `auto` picks lenet-bn for small images, settings read the registry."""

import pytest
import torch

from fatviz.errors import FatvizError
from fatviz.models import MODELS, build_model, choose_model
from fatviz.settings import RunSettings, setting_fields


@pytest.mark.parametrize("name", [n for n, m in MODELS.items() if m.takes == "image" and n != "resnet18"])
def test_small_image_models_build_for_28_and_32_pixels(name):
    for shape in ((1, 28, 28), (3, 32, 32)):
        emb, logits = build_model(name, shape, 16, 10)(torch.zeros(2, *shape))
        assert emb.shape == (2, 16) and logits.shape == (2, 10)


def test_auto_picks_by_input_shape():
    assert choose_model("auto", (64,)) == "mlp"
    assert choose_model("auto", (1, 28, 28)) == "lenet-bn"
    assert choose_model("auto", (3, 32, 32)) == "lenet-bn"
    assert choose_model("auto", (3, 128, 128)) == "resnet18"
    assert choose_model("cnn", (1, 28, 28)) == "cnn"


def test_wrong_input_kind_and_unknown_model_are_user_errors():
    with pytest.raises(FatvizError, match="takes vectors"):
        build_model("mlp", (1, 28, 28), 8, 5)
    with pytest.raises(FatvizError, match="takes images"):
        build_model("lenet", (64,), 8, 5)
    with pytest.raises(FatvizError, match="Unknown model"):
        build_model("vgg", (1, 28, 28), 8, 5)


def test_settings_choices_read_the_registry():
    field = next(f for f in setting_fields() if f.name == "model")
    assert field.choices() == ("auto", *MODELS.names())
    assert RunSettings(model="cnn-fast").model == "cnn-fast"
    assert all(MODELS.get(n).description for n in MODELS)
