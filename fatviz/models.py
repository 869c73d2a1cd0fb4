"""Embedding networks, one `fatviz.catalogue.MODELS` entry each: an MLP, small CNNs for small images, resnet18."""

from __future__ import annotations

import torch
from torch import nn

# The models a run can choose are declared without torch (settings and --help read them); the
# registry is re-exported here, where the library's users look for it.
from fatviz.catalogue import MODELS, ModelSpec  # noqa: F401
from fatviz.errors import FatvizError


class EmbeddingNet(nn.Module):
    """A backbone that maps inputs to an embedding, plus a linear classifier head on it."""

    def __init__(self, backbone: nn.Module, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.embedding_dim = embedding_dim
        self.head = nn.Linear(embedding_dim, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (embeddings, logits)."""
        emb = self.backbone(x)
        return emb, self.head(emb)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings only."""
        return self.backbone(x)


def mlp(in_dim: int, embedding_dim: int, hidden: int = 128) -> nn.Module:
    """Two hidden layers with batch norm: enough for digits and blobs, instant on a CPU."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
        nn.Linear(hidden, embedding_dim),
    )


def small_cnn(in_channels: int, embedding_dim: int) -> nn.Module:
    """Three conv blocks and global pooling, for 28x28 and 32x32 images (and any small size)."""
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(
        *block(in_channels, 32), *block(32, 64), *block(64, 128),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, embedding_dim),
    )


def lenet(in_channels: int, height: int, width: int, embedding_dim: int) -> nn.Module:
    """LeNet-sized: conv5x5 16, pool, conv5x5 32, pool, fc 128, embedding (no batch norm)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * (height // 4) * (width // 4), 128), nn.ReLU(),
        nn.Linear(128, embedding_dim),
    )


def lenet_bn(in_channels: int, height: int, width: int, embedding_dim: int, dropout: float = 0.5) -> nn.Module:
    """LeNet's layers with batch norm after each conv and the fc: about LeNet's cost, but it learns
    in a few epochs what plain LeNet needs many for.

    Dropout before the wide fc layer (32 x H/4 x W/4 -> 128, most of the weights): without it the
    network memorised flipped labels within 4 epochs (5,000 28x28 images, 40% symmetric noise:
    the teacher's agreement with the flipped labels went 0.04 -> 0.70 by epoch 5), which the
    distillation's teacher relies on coming late; with it, 0.05 after 8 epochs."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 5, padding=2, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(dropout),
        nn.Linear(32 * (height // 4) * (width // 4), 128, bias=False), nn.BatchNorm1d(128), nn.ReLU(),
        nn.Linear(128, embedding_dim),
    )


def fast_cnn(in_channels: int, embedding_dim: int) -> nn.Module:
    """The small CNN's widths, but a stride-2 first layer: every later layer sees a quarter of the pixels."""
    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(in_channels, 32, 2), *block(32, 64, 1), nn.MaxPool2d(2), *block(64, 128, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, embedding_dim),
    )


def resnet18(in_channels: int, embedding_dim: int) -> nn.Module:
    """torchvision's resnet18 with random weights (nothing is downloaded), embedding head on top."""
    from torchvision.models import resnet18 as tv_resnet18

    net = tv_resnet18(weights=None)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    net.fc = nn.Linear(net.fc.in_features, embedding_dim)
    return net


# Backbones by input shape (without batch) and embedding dimension: what the catalogue's model
# entries build.
def mlp_backbone(shape: tuple[int, ...], d: int) -> nn.Module:
    """The `mlp` entry's backbone."""
    return mlp(shape[0], d)


def lenet_backbone(shape: tuple[int, ...], d: int) -> nn.Module:
    """The `lenet` entry's backbone."""
    return lenet(shape[0], shape[1], shape[2], d)


def lenet_bn_backbone(shape: tuple[int, ...], d: int) -> nn.Module:
    """The `lenet-bn` entry's backbone."""
    return lenet_bn(shape[0], shape[1], shape[2], d)


def fast_cnn_backbone(shape: tuple[int, ...], d: int) -> nn.Module:
    """The `cnn-fast` entry's backbone."""
    return fast_cnn(shape[0], d)


def small_cnn_backbone(shape: tuple[int, ...], d: int) -> nn.Module:
    """The `cnn` entry's backbone."""
    return small_cnn(shape[0], d)


def resnet18_backbone(shape: tuple[int, ...], d: int) -> nn.Module:
    """The `resnet18` entry's backbone."""
    return resnet18(shape[0], d)


# What `auto` picks for images up to SMALL_IMAGE pixels a side: lenet-bn, LeNet's layers with batch
# norm. scripts/bench_real.py, hybrid loss, batch 128, 2 cores, synthetic stroke images:
#   6,000 28x28 x 10 epochs: lenet-bn 1.21x the LeNet hand loop's time, precision@1 0.921
#     (cnn 2.99x, 0.895; plain lenet 1.01x, 0.890);
#   3,000 28x28 x 5 epochs: lenet-bn 1.31x, 0.874 (cnn 2.74x, 0.839; lenet 1.02x, 0.665);
#   3,000 3x32x32 colour x 5 epochs: lenet-bn 0.54x cnn's time, 0.850 (cnn 0.750, lenet 0.756).
# Without batch norm LeNet learns slowly over few epochs; cnn stays selectable.
SMALL_IMAGE = 64
AUTO_SMALL_IMAGES = "lenet-bn"


def choose_model(kind: str, input_shape: tuple[int, ...]) -> str:
    """Resolve `auto`: MLP for vectors, lenet-bn up to 64 pixels a side, resnet18 above."""
    if kind != "auto":
        return kind
    if len(input_shape) == 1:
        return "mlp"
    return AUTO_SMALL_IMAGES if max(input_shape[1:]) <= SMALL_IMAGE else "resnet18"


def build_model(kind: str, input_shape: tuple[int, ...], embedding_dim: int, num_classes: int) -> EmbeddingNet:
    """Build the embedding network named by `kind` for inputs of `input_shape` (without batch)."""
    kind = choose_model(kind, input_shape)
    if kind not in MODELS:
        raise FatvizError(f"Unknown model {kind!r}: choose auto, {', '.join(MODELS.names())}.")
    spec = MODELS.get(kind)
    if spec.takes == "vector" and len(input_shape) != 1:
        images = ", ".join(n for n, m in MODELS.items() if m.takes == "image")
        raise FatvizError(f"The {kind} model takes vectors; choose an image model ({images}) for images.")
    if spec.takes == "image" and len(input_shape) != 3:
        vectors = ", ".join(n for n, m in MODELS.items() if m.takes == "vector")
        raise FatvizError(f"The {kind} model takes images (C, H, W); choose {vectors} for vectors.")
    return EmbeddingNet(spec.build(tuple(input_shape), embedding_dim), embedding_dim, num_classes)


# Image networks keep their conv weights in channels-last order (NHWC): a conv with such weights
# writes channels-last activations whatever the input's order, and max pooling over them is far
# cheaper on a CPU. 2 cores, eval embeddings in 256-image batches / training steps, against the
# default order: lenet-bn on 1x28x28 0.41x / 0.72x the time, on 3x32x32 0.47x / 0.70x, cnn-fast
# 0.65x / 0.83x, resnet18 on 3x128x64 1.03x / 1.03x (noise); the embeddings agree to 3e-7.
# The weights' values, and so a saved run, are the same in either order. Measured on CPUs only, so a
# GPU keeps PyTorch's default order.
def fast_layout(model: EmbeddingNet, input_shape: tuple[int, ...], device: torch.device | None = None) -> EmbeddingNet:
    """The network with its weights in the memory order it runs fastest in: channels-last for images on a CPU."""
    on_cpu = device is None or torch.device(device).type == "cpu"
    return model.to(memory_format=torch.channels_last) if len(input_shape) == 3 and on_cpu else model


def pick_device(name: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit device that is missing is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise FatvizError("device=cuda was asked for, but no CUDA GPU is visible; use device auto or cpu.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise FatvizError("device=mps was asked for, but Apple's MPS is not available; use auto or cpu.")
    if name not in ("cpu", "cuda", "mps"):
        raise FatvizError(f"Unknown device {name!r}: choose auto, cpu, cuda or mps.")
    return torch.device(name)
