"""What a run can choose, without importing torch: centroid options, centre sources, losses, models, samplers.

Settings validation, the CLI's choices and `--help`, the sidebar and the docs read these
registries; importing torch costs over a second, and none of them needs it. Each entry names
the torch code that builds it, imported on the first build (TensorFlow Playground keeps its
name-to-object maps in `state.ts`, apart from the network code, for the same reason).

The torch modules re-export their registry (`fatviz.centroids.CENTROIDS`, `fatviz.losses.LOSSES`,
`fatviz.models.MODELS`, `fatviz.sampling.BATCH_SAMPLERS`), which is where users import them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fatviz.errors import FatvizError
from fatviz.registry import Registry, lazy

# -- centroid options (docs/METHOD.md section 3) -------------------------------------------------


@dataclass(frozen=True)
class CentroidOption:
    """One way to build a class centre: what is averaged, and whether the mean is projected."""

    name: str
    normalise_members: bool  # average unit vectors f/|f| instead of raw features
    normalise_centre: bool  # project the mean onto the unit sphere
    description: str  # one sentence for pages and docs
    short: str  # a few words under a panel title
    colour: str  # the option's colour in every figure (Okabe-Ito)

    @property
    def normalised_anchors(self) -> bool:
        """Anchors live on the unit sphere whenever anything about the centre is normalised."""
        return self.normalise_members or self.normalise_centre


CENTROIDS: Registry[CentroidOption] = Registry("centroid option")
for _option in (
    CentroidOption("mean", False, False,
                   "mean of raw features; anchors stay raw (large-norm samples dominate)",
                   "mean of raw features", "#E69F00"),
    CentroidOption("mean-norm", True, False,
                   "mean of unit vectors; the centre sits inside the ball (its norm measures compactness)",
                   "mean of normalised features", "#56B4E9"),
    CentroidOption("norm-mean", False, True, "mean of raw features, projected onto the sphere",
                   "normalised mean", "#009E73"),
    CentroidOption("norm-mean-norm", True, True,
                   "mean of unit vectors, projected onto the sphere (the paper's best)",
                   "normalised mean of normalised", "#CC79A7"),
):
    CENTROIDS.register(_option.name, _option)
DEFAULT_CENTROID = "norm-mean-norm"  # the paper's best: what a run uses unless it names another


def check_option(option: str) -> str:
    """Return `option` if it names a centroid option, else raise a FatvizError."""
    CENTROIDS.get(option)
    return option


def is_normalized(option: str) -> bool:
    """True when the option's anchors live on the unit sphere (every built-in option but `mean`)."""
    return CENTROIDS.get(option).normalised_anchors


# -- how fresh the training centres are ----------------------------------------------------------

# `epoch`: the whole training set at each epoch's start (docs/METHOD.md); `batch`: each batch's own
# members; `ema:BETA`: a moving average over the batches, BETA the weight the history keeps.
CENTRE_SOURCES: tuple[str, ...] = ("epoch", "batch", "ema")
DEFAULT_EMA_BETA = 0.9


def centre_settings() -> tuple[str, ...]:
    """The `centres` setting's value for each source, `ema` at its default beta (what a comparison runs)."""
    return tuple(f"ema:{DEFAULT_EMA_BETA}" if kind == "ema" else kind for kind in CENTRE_SOURCES)


@dataclass(frozen=True)
class CentreSource:
    """Where a run's training centres come from: its kind, and for `ema` the history's weight beta."""

    kind: str
    beta: float | None = None

    @property
    def text(self) -> str:
        """The setting's canonical spelling (`ema:0.9`, never `ema:0.90`), so equal sources share a key."""
        return f"ema:{float(self.beta)!r}" if self.kind == "ema" else self.kind

    @property
    def words(self) -> str:
        """What the source means, for pages and captions."""
        if self.kind == "ema":
            return f"a moving average over the batches (beta {self.beta:g}), started from the epoch-0 whole-set centres"
        return {"epoch": "the whole training set at the start of each epoch",
                "batch": "each batch's own members"}[self.kind]


def parse_centres(text: str) -> CentreSource:
    """Read a `centres` setting: epoch, batch or ema:BETA with 0 < BETA < 1; anything else raises a FatvizError."""
    how = f"choose epoch, batch or ema:BETA with BETA between 0 and 1 (such as ema:{DEFAULT_EMA_BETA})"
    if not isinstance(text, str):
        raise FatvizError(f"centres must be text, not {text!r}: {how}.")
    kind, sep, rest = text.strip().lower().partition(":")
    if kind in ("epoch", "batch") and not sep:
        return CentreSource(kind)
    if kind != "ema" or not sep:
        raise FatvizError(f"centres = {text!r} is not possible: {how}.")
    try:
        beta = float(rest)
    except ValueError:
        raise FatvizError(f"centres = {text!r}: {rest!r} is not a number; {how}.") from None
    if not 0.0 < beta < 1.0:  # beta 0 is `batch`, beta 1 never moves: neither is a moving average
        raise FatvizError(f"centres = {text!r}: BETA must lie strictly between 0 and 1; {how}.")
    return CentreSource("ema", beta)


# -- the FAT loss's choices and defaults ----------------------------------------------------------

NEGATIVE_MODES: tuple[str, ...] = ("all", "average", "hardest")
RADIUS_MODES: tuple[str, ...] = ("mean", "max")


def default_margin(option: str) -> float:
    """The public code's margin: 1.0 on raw features, 0.1 on the unit sphere."""
    return 0.1 if is_normalized(option) else 1.0


# On the unit sphere the public code weighs compactness 1.0; fatviz uses 0.3 there, as measured
# by `scripts/bench_losses.py --study` (docs/LOSS_STUDY.md): at 1.0 the radius term pulled
# classes in harder than the hinge pushed them apart.
NORMALISED_COMPACTNESS = 0.3


def default_compactness_weight(option: str) -> float:
    """The default compactness weight: 0.1 on raw features (the public code's), 0.3 on the unit sphere."""
    return NORMALISED_COMPACTNESS if is_normalized(option) else 0.1


# -- training losses -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossSpec:
    """One loss a run can train with: how to build it from settings, and what it reads."""

    name: str
    description: str
    build: Callable[[Any], Any]  # settings (centroid, effective_margin, ...) -> fatviz.losses.TrainingLoss
    uses_centres: bool  # the FAT family: reads class centres (per epoch or per batch)
    uses_logits: bool  # trains the classifier head, so its accuracy is reported
    needs_normalised: bool = False  # only for centroid options whose anchors are unit vectors


LOSSES: Registry[LossSpec] = Registry("loss")
for _spec in (
    LossSpec("fat", "FAT: point-to-set hinge plus compactness, centres from the data",
             lazy("fatviz.losses", "build_fat"), True, False),
    LossSpec("normalized-fat", "FAT on the unit sphere only (a normalised centroid option)",
             lazy("fatviz.losses", "build_fat"), True, False, needs_normalised=True),
    LossSpec("hybrid", "FAT plus cross-entropy on a classifier head (soft labels when distilling)",
             lazy("fatviz.losses", "build_hybrid"), True, True),
    LossSpec("triplet-all", "the exact triplet loss over every valid triplet of a batch",
             lazy("fatviz.losses", "build_triplet_all"), False, False),
    LossSpec("triplet-hard", "batch-hard triplet loss: farthest positive, nearest negative",
             lazy("fatviz.losses", "build_triplet_hard"), False, False),
    LossSpec("ce", "cross-entropy on the classifier head alone", lazy("fatviz.losses", "build_ce"), False, True),
):
    LOSSES.register(_spec.name, _spec)


# -- the baselines a distillation compares its student with ---------------------------------------


@dataclass(frozen=True)
class BaselineSet:
    """One choice of the `baselines` setting: which models train on the noisy labels (fatviz.distill.student)."""

    name: str
    words: str  # the choice in a sentence, for pages
    rows: tuple[str, ...]  # the baselines table's rows it trains (fatviz.distill.student.BASELINES' names)


_FAT_ROW = "fat (noisy labels)"  # the student's own loss without the teacher: what the headline needs
BASELINE_SETS: Registry[BaselineSet] = Registry("baseline set")
for _set in (
    BaselineSet("fat", "FAT only", (_FAT_ROW,)),
    BaselineSet("all", "FAT, batch-hard, cross-entropy",
                (_FAT_ROW, "batch-hard (noisy labels)", "cross-entropy (noisy labels)")),
    BaselineSet("none", "none", ()),
):
    BASELINE_SETS.register(_set.name, _set)


# -- embedding networks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """One embedding network a run can train: what it takes, how to build its backbone."""

    name: str
    description: str
    takes: str  # "vector" or "image": the input kind it accepts
    build: Callable[[tuple[int, ...], int], Any]  # (input shape without batch, embedding dim) -> nn.Module
    # Seconds one training sample costs per input value for one epoch on one CPU core (the budget's
    # time), roughly calibrated on a 2-core machine: the budget's estimate is deliberately rough.
    seconds_per_input: float


MODELS: Registry[ModelSpec] = Registry("model")
for _model in (
    ModelSpec("mlp", "two hidden layers of 128 with batch norm, for vectors", "vector",
              lazy("fatviz.models", "mlp_backbone"), 2e-8),
    ModelSpec("lenet", "LeNet-sized CNN (conv 16, conv 32, fc 128, no batch norm): the cheapest for small images",
              "image", lazy("fatviz.models", "lenet_backbone"), 0.7e-6),
    ModelSpec("lenet-bn", "LeNet-sized CNN with batch norm and dropout: about LeNet's cost, quick to learn; the "
              "default for small images", "image", lazy("fatviz.models", "lenet_bn_backbone"), 0.8e-6),
    ModelSpec("cnn-fast", "the small CNN with a stride-2 first layer", "image",
              lazy("fatviz.models", "fast_cnn_backbone"), 1.4e-6),
    ModelSpec("cnn", "three conv blocks of 32, 64, 128 with batch norm at full resolution", "image",
              lazy("fatviz.models", "small_cnn_backbone"), 2.2e-6),
    ModelSpec("resnet18", "torchvision's resnet18 (random weights), for images above 64 pixels a side", "image",
              lazy("fatviz.models", "resnet18_backbone"), 1.2e-5),
):
    MODELS.register(_model.name, _model)


# -- batch samplers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplerSpec:
    """One batch sampler a run can train with."""

    name: str
    description: str
    build: Callable[[Any, int, int], Any]  # (kept labels, batch_size, pk_k) -> fatviz.sampling.BatchSampler


BATCH_SAMPLERS: Registry[SamplerSpec] = Registry("batch sampler")
for _sampler in (
    SamplerSpec("random", "a seeded shuffle of the kept samples, batch_size each",
                lazy("fatviz.sampling", "RandomBatches")),
    SamplerSpec("pk", "identity-balanced: P = batch_size // K classes, K samples each",
                lazy("fatviz.sampling", "PKBatches")),
):
    BATCH_SAMPLERS.register(_sampler.name, _sampler)
