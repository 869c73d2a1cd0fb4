"""One frozen settings object describes a run: sidebar -> trainer -> saved run -> URL -> cache key."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any

from fatviz.centroids import CENTROID_OPTIONS
from fatviz.errors import FatvizError
from fatviz.losses import (
    NEGATIVE_MODES,
    RADIUS_MODES,
    default_compactness_weight,
    default_margin,
)

DATASET_NAMES: tuple[str, ...] = ("digits", "blobs", "mnist", "fashion-mnist", "cifar10", "folder", "market1501")
LOSSES: tuple[str, ...] = ("fat", "normalized-fat", "hybrid", "triplet-all", "triplet-hard", "ce")
MODELS: tuple[str, ...] = ("auto", "mlp", "cnn", "resnet18")
CENTRE_SCOPES: tuple[str, ...] = ("epoch", "batch")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
CONFIDENCE_RULES: tuple[str, ...] = ("agree", "small-loss")

@dataclass(frozen=True)
class RunSettings:
    """Everything that decides a run's result; equal settings give equal results on CPU."""

    dataset: str = "digits"
    data_root: str = ""
    subsample: int = 0  # 0: the whole training split
    noise: str = "none"  # "none", "symmetric:0.2", "pairflip:0.4"
    model: str = "auto"
    embedding_dim: int = 32
    loss: str = "hybrid"
    centroid: str = "norm-mean-norm"
    negatives: str = "all"
    hardest_k: int = 5
    radius: str = "mean"
    margin: float | None = None  # None: the option's default (1.0 raw, 0.1 normalised)
    compactness_weight: float | None = None  # None: the option's default (0.1 raw, 1.0 normalised)
    ce_weight: float = 1.0
    centres: str = "epoch"  # "epoch": whole training set each epoch; "batch": from each batch
    epochs: int = 30
    batch_size: int = 128
    lr: float = 3e-3
    seed: int = 0
    device: str = "auto"
    # Points drawn per panel (a fixed stratified subset of the training split; also where the exact
    # triplet loss is compared with the bound). 300 shows every class's cluster on a projector;
    # a laptop's browser draws four such panels live in a third less time than 500.
    vis_points: int = 300
    # Blobs (synthetic clusters) only.
    blob_classes: int = 6
    blob_dim: int = 2
    blob_spread: float = 1.0
    blob_outliers: float = 0.0
    # Label distillation (teacher and student).
    teacher_epochs: int = 5
    teacher_rounds: int = 3
    round_epochs: int = 3
    confidence_rule: str = "agree"
    confidence_threshold: float = 0.5
    keep_fraction: float = 0.7
    temperature: float = 1.0

    @property
    def effective_margin(self) -> float:
        """The margin the loss uses (the option's default when unset)."""
        return default_margin(self.centroid) if self.margin is None else float(self.margin)

    @property
    def effective_compactness_weight(self) -> float:
        """The compactness weight the loss uses (the option's default when unset)."""
        return (default_compactness_weight(self.centroid) if self.compactness_weight is None
                else float(self.compactness_weight))

    def validate(self) -> RunSettings:
        """Raise a FatvizError naming the first impossible setting; return self when all is well."""
        from fatviz.noise import parse_noise

        def one_of(name: str, allowed: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in allowed:
                raise FatvizError(f"{name} = {value!r} is not possible: choose one of {', '.join(allowed)}.")

        def at_least(name: str, low: float) -> None:
            if getattr(self, name) < low:
                raise FatvizError(f"{name} must be at least {low}, not {getattr(self, name)}.")

        one_of("dataset", DATASET_NAMES)
        one_of("loss", LOSSES)
        one_of("model", MODELS)
        one_of("centroid", CENTROID_OPTIONS)
        one_of("negatives", NEGATIVE_MODES)
        one_of("radius", RADIUS_MODES)
        one_of("centres", CENTRE_SCOPES)
        one_of("device", DEVICES)
        one_of("confidence_rule", CONFIDENCE_RULES)
        parse_noise(self.noise)
        for name, low in (("embedding_dim", 2), ("epochs", 1), ("batch_size", 2), ("hardest_k", 1),
                          ("subsample", 0), ("vis_points", 10), ("blob_classes", 2), ("blob_dim", 2),
                          ("teacher_epochs", 1), ("teacher_rounds", 0), ("round_epochs", 1),
                          ("ce_weight", 0.0), ("blob_spread", 1e-6), ("blob_outliers", 0.0),
                          ("temperature", 1e-3)):
            at_least(name, low)
        if not 0 < self.lr <= 10:
            raise FatvizError(f"lr must lie in (0, 10], not {self.lr}.")
        if self.margin is not None and self.margin < 0:
            raise FatvizError("margin must be >= 0.")
        if self.compactness_weight is not None and self.compactness_weight < 0:
            raise FatvizError("compactness_weight must be >= 0.")
        if not 0 <= self.confidence_threshold <= 1:
            raise FatvizError("confidence_threshold is a probability: keep it in [0, 1].")
        if not 0 < self.keep_fraction <= 1:
            raise FatvizError("keep_fraction must lie in (0, 1].")
        if self.blob_outliers >= 1:
            raise FatvizError("blob_outliers is a fraction: keep it below 1.")
        if self.loss == "normalized-fat" and self.centroid == "mean":
            raise FatvizError("normalized-fat needs a normalised centroid option "
                              "(mean-norm, norm-mean or norm-mean-norm); `mean` works on raw features.")
        if self.dataset in ("folder", "market1501") and not self.data_root:
            raise FatvizError(f"The {self.dataset} dataset reads a local folder: set data_root (--data-root).")
        return self

    def replace(self, **changes: Any) -> RunSettings:
        """A copy with some fields changed (the dataclass is frozen)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], strict: bool = True) -> RunSettings:
        """Build from a dict; unknown keys raise when strict (saved runs), are dropped otherwise."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown and strict:
            raise FatvizError(f"Unknown settings: {', '.join(unknown)}.")
        return cls(**{k: v for k, v in data.items() if k in names})

    def key(self) -> str:
        """A short stable hash: the cache key and default run name suffix."""
        blob = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def to_query(self) -> dict[str, str]:
        """URL query parameters: only the fields that differ from the defaults."""
        default = RunSettings()
        return {f.name: _to_text(getattr(self, f.name)) for f in fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}

    @classmethod
    def from_query(cls, params: dict[str, str | list[str]]) -> RunSettings:
        """Parse URL query parameters (unknown ones ignored); a bad value raises a FatvizError."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in params:
                continue
            raw = params[f.name]
            text = raw[-1] if isinstance(raw, list) else raw
            values[f.name] = _from_text(f.name, text, getattr(cls(), f.name), f.type)
        return cls(**values)


def _to_text(value: Any) -> str:
    return "" if value is None else str(value)


def _from_text(name: str, text: str, default: Any, type_name: Any) -> Any:
    type_text = str(type_name)
    try:
        if "None" in type_text and text in ("", "none", "None"):
            return None
        if "float" in type_text:
            return float(text)
        if "int" in type_text:
            return int(text)
    except ValueError:
        raise FatvizError(f"URL parameter {name}={text!r} is not a number.") from None
    return text
