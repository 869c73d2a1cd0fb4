"""The model registry: every entry builds, `auto` picks lenet-bn for small images, settings read the registry."""

import pytest
import torch

from fatviz.errors import FatvizError
from fatviz.models import MODELS, build_model, choose_model, fast_layout
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


@pytest.mark.parametrize("name", ["lenet-bn", "cnn-fast"])
def test_fast_layout_keeps_the_weights_and_the_embeddings(name):
    """Channels-last conv weights (fast_layout) compute what the default order does, and save the same weights."""
    torch.manual_seed(0)
    plain = build_model(name, (3, 32, 32), 16, 10).eval()
    fast = build_model(name, (3, 32, 32), 16, 10)
    fast.load_state_dict(plain.state_dict())
    fast = fast_layout(fast, (3, 32, 32)).eval()
    convs = [m.weight for m in fast.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in convs)
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(x)[0], plain(x)[0], rtol=1e-5, atol=1e-5)
    for key, value in fast.state_dict().items():
        assert torch.equal(value, plain.state_dict()[key]), key
    vector = build_model("mlp", (20,), 8, 3)
    assert fast_layout(vector, (20,)) is vector


def test_the_trainer_runs_image_models_channels_last(tmp_path):
    """A run on images trains channels-last weights, and its saved weights embed the same either way."""
    from helpers import make_idx_root

    from fatviz.evaluation import embed_split
    from fatviz.train import Trainer, prepare_data

    make_idx_root(tmp_path)
    settings = RunSettings(dataset="mnist", data_root=str(tmp_path), model="lenet-bn", epochs=1, embedding_dim=8)
    data = prepare_data(settings)
    trainer = Trainer(settings, data, snapshots=False)
    *_, conv = (m.weight for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))  # 16 input channels
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    result = trainer.fit()
    plain = build_model("lenet-bn", tuple(data.dataset.input_shape), 8, data.dataset.num_classes).eval()
    plain.load_state_dict(result.state_dict)
    with torch.no_grad():
        expected = plain(torch.as_tensor(data.dataset.x_test))[0]
    from fatviz.centroids import anchor_space

    torch.testing.assert_close(embed_split(result, data.dataset), anchor_space(expected, settings.centroid),
                               rtol=1e-5, atol=1e-5)


def test_fast_layout_leaves_a_gpu_network_in_the_default_order():
    net = build_model("lenet-bn", (3, 32, 32), 16, 10)
    assert fast_layout(net, (3, 32, 32), torch.device("cuda")) is net  # measured on CPUs only
    assert fast_layout(net, (3, 32, 32), torch.device("cpu")) is net  # to() converts in place and returns it
    *_, conv = (m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.is_contiguous(memory_format=torch.channels_last)
