"""One frozen settings object describes a run: sidebar -> trainer -> saved run -> URL -> cache key.

Every field is declared once, in `RunSettings`, with its section (what reads it), the range in
which it is valid, the narrower range a visitor of the app may ask for (so one link cannot ask
for a job that does not fit the machine), its choices (read from the registries) and its help
text. The CLI's options, the URL reader, the sidebar's widget ranges and the docs all read
this one table (`setting_fields()`).

Sections say what a job reads, so a cache key is honest: each job kind (fatviz.job_kinds) names
the sections it reads, so `key("compare")` ignores the centroid option (a compare job trains
all four) and the distillation section, and `key("distill")` reads everything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from fatviz.catalogue import (
    BASELINE_SETS,
    BATCH_SAMPLERS,
    CENTROIDS,
    DEFAULT_CENTROID,
    LOSSES,
    MODELS,
    NEGATIVE_MODES,
    RADIUS_MODES,
    CentreSource,
    default_compactness_weight,
    default_margin,
    parse_centres,
)
from fatviz.data import DATASETS
from fatviz.data.reid_synth import DEFAULT_REID_SIZE, REID_SIZES
from fatviz.errors import FatvizError
from fatviz.job_kinds import JOB_KINDS
from fatviz.noise import NOISE_TERMS, SAMPLE_KINDS, outside_rates, term_choices

SECTIONS: tuple[str, ...] = ("data", "model", "training", "distill", "view")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
CONFIDENCE_RULES: tuple[str, ...] = ("agree", "small-loss")
TEACHER_VERDICTS: tuple[str, ...] = ("auto", "softmax", "centre")  # fatviz.distill.teacher.verdict_of

# Bump KEY_VERSION whenever the same settings would train to a different result (a saved run
# under an old key is then trained again instead of being served as if it were this code's
# result). What each kind of job reads is its entry's `reads` (fatviz.job_kinds).
KEY_VERSION = 8


def _setting(default: Any, section: str, help: str, *, low: float | None = None, high: float | None = None,
             app: tuple[float, float] | None = None, choices: Callable[[], tuple[str, ...]] | None = None) -> Any:
    """A settings field: `low`/`high` bound what is valid at all, `app` what a visitor may ask for."""
    return field(default=default, metadata={"section": section, "help": help, "low": low, "high": high,
                                            "app": app, "choices": choices})


@dataclass(frozen=True)
class SettingField:
    """One row of the settings table, for the CLI, the URL reader, the sidebar and the docs."""

    name: str
    kind: type  # int, float or str
    optional: bool  # None allowed (the option's default)
    default: Any
    section: str
    help: str
    low: float | None
    high: float | None
    app: tuple[float, float] | None
    choices: Callable[[], tuple[str, ...]] | None

    def limits_text(self) -> str:
        """The app's range in words, for help texts and messages."""
        if self.app is None:
            return ""
        return f"{self.app[0]:g} to {self.app[1]:g}"


@dataclass(frozen=True)
class RunSettings:
    """Everything that decides a run's result; equal settings give equal results on CPU.

    Validated once, at construction: an impossible value raises a FatvizError naming it.
    """

    # -- data --
    dataset: str = _setting("digits", "data", "dataset to train on", choices=lambda: tuple(DATASETS))
    data_root: str = _setting("", "data", "local folder of a real dataset (mnist, cifar10, folder, market1501)")
    subsample: int = _setting(0, "data", "stratified training subsample (0: the whole training split)",
                              low=0, app=(0, 20_000))
    noise: str = _setting("none", "data", "synthetic noise: none, or terms joined by + from "
                          + term_choices() + " (e.g. symmetric:0.2+multi:0.05)")
    seed: int = _setting(0, "data", "seed of every random choice (data, noise, weights, batches)",
                         low=0, high=2**31 - 1, app=(0, 10_000))
    blob_classes: int = _setting(6, "data", "blobs: number of classes", low=2, app=(2, 20))
    blob_dim: int = _setting(2, "data", "blobs: input dimension", low=2, app=(2, 64))
    blob_spread: float = _setting(1.0, "data", "blobs: spread of each blob", low=1e-6, app=(0.2, 3.0))
    blob_outliers: float = _setting(0.0, "data", "blobs: fraction of outliers", low=0.0, high=0.99, app=(0.0, 0.3))
    reid_size: str = _setting(DEFAULT_REID_SIZE, "data", "reid-synth: market (300 identities of 4-12 images, 6 "
                              "cameras, occluders) or small (60 identities of 16 images, 4 cameras)",
                              choices=lambda: REID_SIZES.names())
    # -- model and loss --
    model: str = _setting("auto", "model", "embedding network (auto: MLP for vectors, lenet-bn for small images)",
                          choices=lambda: ("auto", *MODELS.names()))
    embedding_dim: int = _setting(32, "model", "embedding dimension", low=2, app=(2, 128))
    loss: str = _setting("hybrid", "model", "training loss", choices=lambda: LOSSES.names())
    centroid: str = _setting(DEFAULT_CENTROID, "model", "centroid option", choices=lambda: CENTROIDS.names())
    negatives: str = _setting("all", "model", "negative centres: all, average or the hardest k",
                              choices=lambda: NEGATIVE_MODES)
    hardest_k: int = _setting(5, "model", "with negatives=hardest: how many nearest other centres", low=1,
                              app=(1, 50))
    radius: str = _setting("mean", "model", "compactness term: mean distance to the own centre, or max radius",
                           choices=lambda: RADIUS_MODES)
    margin: float | None = _setting(None, "model", "hinge margin (unset: 1.0 raw, 0.1 normalised)", low=0.0,
                                    app=(0.0, 10.0))
    compactness_weight: float | None = _setting(
        None, "model", "compactness weight (unset: 0.1 raw, 0.3 normalised)", low=0.0, app=(0.0, 10.0))
    ce_weight: float = _setting(1.0, "model", "hybrid: cross-entropy weight", low=0.0, app=(0.0, 10.0))
    centres: str = _setting("epoch", "model", "training centres: epoch (the whole training set at each epoch's "
                            "start), batch (each batch's own) or ema:BETA (a moving average over batches, "
                            "BETA the history's weight, such as ema:0.9)")
    # -- training --
    epochs: int = _setting(30, "training", "training epochs", low=1, app=(1, 100))
    batch_size: int = _setting(128, "training", "batch size", low=2, app=(8, 1024))
    batch_sampler: str = _setting("random", "training", "batches: a seeded shuffle, or pk (P classes x K samples)",
                                  choices=lambda: BATCH_SAMPLERS.names())
    pk_k: int = _setting(4, "training", "pk: samples per class in a batch (P = batch_size // K; K grows if fewer classes)", low=1,
                         app=(1, 64))
    lr: float = _setting(3e-3, "training", "Adam learning rate", low=1e-9, high=10.0, app=(1e-5, 0.1))
    device: str = _setting("auto", "training", "auto (cuda, then mps, then cpu), cpu, cuda or mps",
                           choices=lambda: DEVICES)
    # -- label distillation (teacher and student) --
    teacher_epochs: int = _setting(5, "distill", "teacher: epochs of round 0 on every given label", low=1,
                                   app=(1, 30))
    teacher_rounds: int = _setting(3, "distill", "teacher: further rounds on its confident samples", low=0,
                                   app=(0, 6))
    round_epochs: int = _setting(3, "distill", "teacher: epochs per further round", low=1, app=(1, 20))
    confidence_rule: str = _setting("agree", "distill", "which samples the teacher keeps",
                                    choices=lambda: CONFIDENCE_RULES)
    confidence_threshold: float = _setting(0.5, "distill", "agree: probability the given label needs",
                                           low=0.0, high=1.0, app=(0.0, 1.0))
    keep_fraction: float = _setting(0.7, "distill", "small-loss: share of each class kept", low=1e-6, high=1.0,
                                    app=(0.05, 1.0))
    temperature: float = _setting(1.0, "distill", "soft-label temperature", low=1e-3, app=(0.1, 10.0))
    teacher_verdict: str = _setting("auto", "distill", "teacher's final verdict: softmax (the confidence rule), centre "
                                    "(closeness to its class's other members in the teacher's embedding) or auto "
                                    "(centre on ReID data)", choices=lambda: TEACHER_VERDICTS)
    two_people: str = _setting("auto", "distill", "teacher, image data: a detector trained on side-by-side pairs of its "
                               "kept samples says which images show two people (auto: on ReID data)",
                               choices=lambda: ("auto", "on", "off"))
    two_people_share: float = _setting(0.0, "distill", "teacher, image data: synthetic two-people images per round "
                                       "after the first, as a share of the training set (0: off)", low=0.0,
                                       high=1.0, app=(0.0, 0.5))
    student_verdict: str = _setting("auto", "distill", "once trained, the student's embedding judges every sample again "
                                    "as the teacher's centre verdict does, and its verdict is the flags reported "
                                    "(auto: when the teacher's verdict is the centres)",
                                    choices=lambda: ("auto", "on", "off"))
    # -- the comparisons, trained after the student --
    cv_epochs: int = _setting(3, "distill", "confident learning (the comparison): epochs per cross-validation fold",
                              low=1, app=(1, 20))
    baselines: str = _setting("fat", "distill", "models trained on the noisy labels to compare the student with: "
                              "fat (the student's own loss), all (fat, batch-hard, cross-entropy) or none",
                              choices=lambda: BASELINE_SETS.names())
    # -- view --
    # Points drawn per panel (a fixed stratified subset of the training split; also where the exact
    # triplet loss is compared with the bound). 300 shows every class's cluster on a projector and
    # keeps four live panels light for a laptop's browser.
    vis_points: int = _setting(300, "view", "points drawn per panel (and where the bound is checked)", low=10,
                               app=(10, 1000))
    # Per-epoch test metrics on a fixed stratified subset of at most this many test samples; the
    # whole test split is evaluated once, at the end: ranking all of a large split every epoch would
    # add its cost (quadratic in the split) to every epoch.
    eval_points: int = _setting(2000, "view", "test samples the per-epoch metrics use (all of them at the end)",
                                low=10, app=(100, 10_000))

    def __post_init__(self) -> None:
        _validate(self)
        # One spelling per centre source (ema:0.90 is ema:0.9), so equal runs share a key.
        object.__setattr__(self, "centres", self.centre_source.text)

    @property
    def centre_source(self) -> CentreSource:
        """Where the training centres come from (the `centres` setting, read)."""
        return parse_centres(self.centres)

    @property
    def effective_margin(self) -> float:
        """The margin the loss uses (the option's default when unset)."""
        return default_margin(self.centroid) if self.margin is None else float(self.margin)

    @property
    def effective_compactness_weight(self) -> float:
        """The compactness weight the loss uses (the option's default when unset)."""
        return (default_compactness_weight(self.centroid) if self.compactness_weight is None
                else float(self.compactness_weight))

    def replace(self, **changes: Any) -> RunSettings:
        """A copy with some fields changed (validated like any new settings)."""
        return dataclasses.replace(self, **changes)

    def section(self, name: str) -> dict[str, Any]:
        """The fields of one section, by name."""
        if name not in SECTIONS:
            raise FatvizError(f"Unknown settings section {name!r}: choose one of {', '.join(SECTIONS)}.")
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["section"] == name}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], strict: bool = True) -> RunSettings:
        """Build from a dict; unknown keys raise when strict, are dropped otherwise (older saved runs)."""
        if not isinstance(data, dict):
            raise FatvizError("Settings must be a mapping of names to values.")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(map(str, data)) - names)
        if unknown and strict:
            raise FatvizError(f"Unknown settings: {', '.join(unknown)}.")
        return cls(**{k: v for k, v in data.items() if k in names})

    def key(self, kind: str = "train") -> str:
        """A short stable hash of what a `kind` job reads: its cache key and run-folder suffix."""
        return JOB_KINDS.get(kind).key(self)

    def digest(self, sections: tuple[str, ...], ignored: tuple[str, ...] = (), salt: str = "") -> str:
        """A short stable hash of the fields of some sections (less `ignored`)."""
        read = {f.name: getattr(self, f.name) for f in fields(self)
                if f.metadata["section"] in sections and f.name not in ignored}
        blob = json.dumps({"salt": salt, "version": KEY_VERSION, "settings": read}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def outside_app_limits(self) -> list[str]:
        """One message per field outside the range a visitor of the app may ask for."""
        out = []
        for f in setting_fields():
            value = getattr(self, f.name)
            if f.app is not None and value is not None and not f.app[0] <= value <= f.app[1]:
                out.append(f"{f.name} = {value:g} is outside {f.limits_text()}")
        return out + outside_rates(self.noise)

    def check_app_limits(self, hint: str = "") -> RunSettings:
        """Raise one FatvizError when any field is outside the app's range; return self otherwise."""
        problems = self.outside_app_limits()
        if problems:
            raise FatvizError("; ".join(problems) + "." + (f" {hint}" if hint else ""))
        return self

    def to_query(self) -> dict[str, str]:
        """URL query parameters: only the fields that differ from the defaults."""
        default = RunSettings()
        # Uploaded data is the session's own: a link names the dataset, never the upload's id.
        private = {"data_root"} if DATASETS.get(self.dataset).private else set()
        return {f.name: _to_text(getattr(self, f.name)) for f in fields(self)
                if getattr(self, f.name) != getattr(default, f.name) and f.name not in private}

    @classmethod
    def from_query(cls, params: dict[str, str | list[str]]) -> RunSettings:
        """Parse URL query parameters strictly: the first bad or out-of-range value raises."""
        settings, problems = cls.read_query(params)
        if problems:
            raise FatvizError(problems[0])
        return settings

    @classmethod
    def read_query(cls, params: dict[str, str | list[str]]) -> tuple[RunSettings, list[str]]:
        """Parse URL query parameters leniently: (settings, one message per value changed).

        A value outside the app's range is clamped to it, a value that cannot be read falls
        back to the default, and each message names the value and the limit. Unknown
        parameters are ignored (pages keep their own, such as `present`).
        """
        values: dict[str, Any] = {}
        problems: list[str] = []
        for f in setting_fields():
            if f.name not in params:
                continue
            raw = params[f.name]
            text = str(raw[-1] if isinstance(raw, (list, tuple)) and raw else raw)[:200]
            try:
                value = _from_text(f, text)
            except FatvizError as exc:
                problems.append(f"{exc} Using the default, {_to_text(f.default) or 'unset'}.")
                continue
            if f.app is not None and value is not None and not f.app[0] <= value <= f.app[1]:
                clamped = min(max(value, f.app[0]), f.app[1])
                clamped = f.kind(clamped) if f.kind is int else float(clamped)
                problems.append(f"{f.name} = {text} is outside what this app trains ({f.limits_text()}): "
                                f"using {clamped:g}.")
                value = clamped
            values[f.name] = value
        # Cross-field rules (a loss that needs a normalised option, a bad noise rate) are checked
        # on the whole: drop the link's values one section at a time until what is left is valid.
        try:
            return cls(**values), problems
        except FatvizError as exc:
            for name in [n for n in ("noise", "centres", "loss", "centroid") if n in values]:
                values.pop(name)
                try:
                    return cls(**values), [*problems, f"{exc} Using the default {name}."]
                except FatvizError:
                    continue
            return cls(), [*problems, f"{exc} Using the default settings."]


def setting_fields() -> list[SettingField]:
    """The settings table, in declaration order."""
    rows = []
    for f in fields(RunSettings):
        type_text = str(f.type)
        kind = float if "float" in type_text else int if "int" in type_text else str
        m = f.metadata
        rows.append(SettingField(f.name, kind, "None" in type_text, f.default, m["section"], m["help"],
                                 m["low"], m["high"], m["app"], m["choices"]))
    return rows


def _number(value: float | None) -> str:
    return "" if value is None else f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def settings_markdown() -> str:
    """The settings table as Markdown (docs/SETTINGS.md is this text; a test keeps them equal)."""
    lines = ["# Settings", "",
             "Generated from `fatviz.settings` (`python -c \"import sys; from fatviz.settings import "
             "settings_markdown; sys.stdout.write(settings_markdown())\" > docs/SETTINGS.md`). "
             "*App range*: what a link or the sidebar may ask for (a link's value outside it is clamped, "
             "with a message); the CLI checks it too unless "
             "`--no-limits`. *Valid*: what is possible at all.", "",
             "| setting | section | default | app range | valid | choices | what it does |",
             "|---|---|---|---|---|---|---|"]
    for f in setting_fields():
        valid = "" if f.kind is str else f"{_number(f.low)} .. {_number(f.high)}"
        choices = ", ".join(f.choices()) if f.choices is not None else ""
        default = "unset" if f.default is None else f"`{f.default}`" if f.default != "" else "empty"
        lines.append(f"| `{f.name}` | {f.section} | {default} | {f.limits_text()} | {valid.strip()} | {choices} | "
                     f"{f.help} |")
    lines += ["", "## Noise terms", "", "Each `KIND:RATE` term of `noise` (from `fatviz.noise.NOISE_TERMS`); the rate "
              "is the share of the training set it touches.", "",
              "| term | app range | leaves a sample | what it does |", "|---|---|---|---|"]
    lines += [f"| `{name}:RATE` | {t.rates[0]:g} to {t.rates[1]:g} | {SAMPLE_KINDS.get(t.sample_kind).label} | {t.help} |"
              for name, t in NOISE_TERMS.items()]
    return "\n".join(lines) + "\n"


def _validate(s: RunSettings) -> None:
    """Raise a FatvizError naming the first impossible setting."""
    from fatviz.noise import parse_noise

    for f in setting_fields():
        value = getattr(s, f.name)
        if value is None and f.optional:
            continue
        if f.kind is str:
            if not isinstance(value, str):
                raise FatvizError(f"{f.name} must be text, not {value!r}.")
            if f.choices is not None and value not in f.choices():
                raise FatvizError(f"{f.name} = {value!r} is not possible: choose one of {', '.join(f.choices())}.")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                f.kind is int and not float(value).is_integer()):
            raise FatvizError(f"{f.name} must be {'a whole number' if f.kind is int else 'a number'}, not {value!r}.")
        if not math.isfinite(value):
            raise FatvizError(f"{f.name} must be a finite number, not {value}.")
        if f.low is not None and value < f.low:
            raise FatvizError(f"{f.name} must be at least {f.low:g}, not {value:g}.")
        if f.high is not None and value > f.high:
            raise FatvizError(f"{f.name} must be at most {f.high:g}, not {value:g}.")
    parse_noise(s.noise)
    parse_centres(s.centres)
    spec = LOSSES.get(s.loss)
    if spec.needs_normalised and not CENTROIDS.get(s.centroid).normalised_anchors:
        raise FatvizError(f"{s.loss} needs a normalised centroid option "
                          f"({', '.join(n for n, o in CENTROIDS.items() if o.normalised_anchors)}); "
                          f"`{s.centroid}` works on raw features.")


def _to_text(value: Any) -> str:
    return "" if value is None else str(value)


def _from_text(f: SettingField, text: str) -> Any:
    """One URL value as the field's type; a FatvizError naming the field when it cannot be."""
    if f.optional and text.strip().lower() in ("", "none"):
        return None
    if f.kind is str:
        if f.choices is not None and text not in f.choices():
            raise FatvizError(f"{f.name} = {text!r} is not one of {', '.join(f.choices())}.")
        return text
    try:
        value = float(text)
    except ValueError:
        raise FatvizError(f"{f.name} = {text!r} is not a number.") from None
    if not math.isfinite(value):
        raise FatvizError(f"{f.name} = {text!r} is not a finite number.")
    if f.kind is int:
        if not value.is_integer():
            raise FatvizError(f"{f.name} = {text!r} is not a whole number.")
        return int(value)
    return value
