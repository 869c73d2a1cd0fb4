"""Embedding networks: an MLP for vectors, a small CNN for small images, resnet18 for larger ones."""

from __future__ import annotations

import torch
from torch import nn

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


def resnet18(in_channels: int, embedding_dim: int) -> nn.Module:
    """torchvision's resnet18 with random weights (nothing is downloaded), embedding head on top."""
    from torchvision.models import resnet18 as tv_resnet18

    net = tv_resnet18(weights=None)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    net.fc = nn.Linear(net.fc.in_features, embedding_dim)
    return net


def choose_model(kind: str, input_shape: tuple[int, ...]) -> str:
    """Resolve `auto`: MLP for vectors, small CNN up to 64 pixels a side, resnet18 above."""
    if kind != "auto":
        return kind
    if len(input_shape) == 1:
        return "mlp"
    return "cnn" if max(input_shape[1:]) <= 64 else "resnet18"


def build_model(kind: str, input_shape: tuple[int, ...], embedding_dim: int, num_classes: int) -> EmbeddingNet:
    """Build the embedding network named by `kind` for inputs of `input_shape` (without batch)."""
    kind = choose_model(kind, input_shape)
    if kind == "mlp":
        if len(input_shape) != 1:
            raise FatvizError("The MLP takes vectors; choose the cnn or resnet18 model for images.")
        backbone = mlp(input_shape[0], embedding_dim)
    elif kind in ("cnn", "resnet18"):
        if len(input_shape) != 3:
            raise FatvizError(f"The {kind} model takes images (C, H, W); choose the mlp model for vectors.")
        backbone = small_cnn(input_shape[0], embedding_dim) if kind == "cnn" else resnet18(input_shape[0], embedding_dim)
    else:
        raise FatvizError(f"Unknown model {kind!r}: choose auto, mlp, cnn or resnet18.")
    return EmbeddingNet(backbone, embedding_dim, num_classes)


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
