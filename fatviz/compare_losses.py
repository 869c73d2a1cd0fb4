"""Does FAT keep the triplet loss's accuracy? The losses side by side on the same model, data and seeds.

`compare_losses(settings, variants, seeds)` trains every variant (a name and the settings it
changes) once per seed, with everything else equal, and records for each run: precision@1
and mAP on the whole test split (plus rank-1/mAP/mINP where the data is a ReID set), the
epoch's wall time, and the loss's own cost per step, timed apart from the network on random
embeddings of the run's batch size and dimension (the part of a step that the loss decides).
`summary()` gives mean and spread over seeds; `LossComparison.to_json` / `load_comparison`
store a benchmark so a page can show runs made elsewhere (larger sizes, a GPU).

A study (scripts/bench_losses.py) names its own variants, each with the settings it changes,
and may bring its own data. A run is trained once: a variant whose settings equal, as far as
its loss reads them (`run_reads`), those of a run already trained for the seed (in this
comparison or in the `reuse` rows of an earlier one) copies that run's row.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fatviz.centroids import DEFAULT_EMA_BETA, MovingCentres, class_sums, compute_centroids
from fatviz.errors import FatvizError
from fatviz.losses import LOSSES
from fatviz.settings import RunSettings

if TYPE_CHECKING:
    from fatviz.train import PreparedData

COMPARISON_FILE = "losses.json"  # inside a job's run folder
SCHEMA = "fatviz.compare-losses"
SCHEMA_VERSION = 1
METRICS: tuple[str, ...] = ("precision_at_1", "map", "cmc_1", "minp")

# name -> the settings a variant changes; everything else is the comparison's base settings.
VARIANTS: dict[str, dict[str, Any]] = {
    "fat": {"loss": "fat"},
    "fat, hardest-k negatives": {"loss": "fat", "negatives": "hardest"},
    "fat, average negative": {"loss": "fat", "negatives": "average"},
    "fat, max radius": {"loss": "fat", "radius": "max"},
    "fat, batch centres": {"loss": "fat", "centres": "batch"},
    "fat, moving-average centres": {"loss": "fat", "centres": f"ema:{DEFAULT_EMA_BETA}"},
    "hybrid (fat + cross-entropy)": {"loss": "hybrid"},
    "batch-hard triplet": {"loss": "triplet-hard"},
    "all triplets": {"loss": "triplet-all"},
    "cross-entropy": {"loss": "ce"},
}
QUICK_VARIANTS: tuple[str, ...] = ("fat", "hybrid (fat + cross-entropy)", "batch-hard triplet", "all triplets",
                                   "cross-entropy")
# Loss fields only the FAT family reads (the centres, its negatives, its compactness term).
FAT_ONLY: tuple[str, ...] = ("negatives", "hardest_k", "radius", "compactness_weight", "centres")


def run_reads(settings: RunSettings) -> RunSettings:
    """The settings with every field the run's loss does not read put back to its default.

    Two settings with equal `run_reads` train to the same result (training is deterministic on
    CPU), so a comparison trains them once: a batch-hard run does not read the compactness
    weight, only hybrid reads the cross-entropy weight, and cross-entropy reads no margin.
    """
    spec = LOSSES.get(settings.loss)
    unread = [] if spec.uses_centres else list(FAT_ONLY)
    if spec.uses_centres and settings.negatives != "hardest":
        unread.append("hardest_k")
    if settings.loss != "hybrid":
        unread.append("ce_weight")
    if settings.loss == "ce":
        unread.append("margin")
    if settings.batch_sampler != "pk":
        unread.append("pk_k")
    defaults = {f.name: f.default for f in fields(RunSettings)}
    # An unset margin or weight is the option's default: name the value, so both spellings match.
    read = {"margin": settings.effective_margin, "compactness_weight": settings.effective_compactness_weight}
    return settings.replace(**{name: defaults[name] if name in unread else value for name, value in read.items()},
                            **{name: defaults[name] for name in unread if name not in read})


def _variant_changes(variants: Sequence[str] | Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Variant name -> the settings it changes: names from VARIANTS, or a study's own mapping."""
    if isinstance(variants, Mapping):
        return {str(name): dict(changes) for name, changes in variants.items()}
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise FatvizError(f"Unknown loss variant(s) {', '.join(map(repr, unknown))}: choose from {', '.join(VARIANTS)}.")
    return {name: VARIANTS[name] for name in variants}


@dataclass
class LossComparison:
    """One row per (variant, seed): metrics, seconds per epoch and the loss's own seconds per step."""

    settings: RunSettings
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> list[dict[str, Any]]:
        """Per variant: mean and standard deviation over seeds of every measured figure."""
        out = []
        for name in dict.fromkeys(r["variant"] for r in self.rows):
            rows = [r for r in self.rows if r["variant"] == name]
            entry: dict[str, Any] = {"variant": name, "seeds": len(rows), "loss": rows[0]["loss"]}
            for key in (*METRICS, "epoch_seconds", "step_seconds"):
                values = [r[key] for r in rows if r.get(key) is not None and math.isfinite(r[key])]
                entry[key] = statistics.fmean(values) if values else None
                entry[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0 if values else None
            out.append(entry)
        return out

    def to_json(self) -> dict[str, Any]:
        """Everything needed to show the comparison again."""
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "settings": self.settings.to_dict(),
                "rows": self.rows, "seconds": self.seconds}


def save_comparison(result: LossComparison, path: str | os.PathLike) -> Path:
    """Write the comparison as JSON, atomically (a temporary file, then a rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(_finite(result.to_json()), indent=1))
    os.replace(tmp, target)
    return target


def load_comparison(path: str | os.PathLike) -> LossComparison:
    """Read a saved comparison; a missing, foreign or damaged file raises one FatvizError."""
    target = Path(path)
    try:
        payload = json.loads(target.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        raise FatvizError(f"{target} is not a readable loss comparison (write one with "
                          "`python -m fatviz compare-losses --out FILE.json`).") from None
    if not isinstance(payload, dict) or payload.get("schema") != SCHEMA:
        raise FatvizError(f"{target} is not a fatviz loss comparison.")
    if payload.get("schema_version") != SCHEMA_VERSION:
        raise FatvizError(f"{target} has version {payload.get('schema_version')}; this fatviz reads "
                          f"{SCHEMA_VERSION}: run it again.")
    try:
        rows = [dict(r) for r in payload["rows"]]
        for r in rows:
            str(r["variant"]), float(r["precision_at_1"])
        return LossComparison(RunSettings.from_dict(payload["settings"], strict=False), rows,
                              float(payload.get("seconds", 0.0)))
    except (KeyError, TypeError, ValueError):
        raise FatvizError(f"{target} is missing part of a loss comparison; run it again.") from None


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def loss_step_seconds(settings: RunSettings, num_classes: int, repeats: int = 20, seed: int = 0) -> float:
    """Median seconds of the loss's own forward+backward on one batch of random embeddings, one thread.

    One thread, after three warm-up calls: right after a training run the thread pool's spinning
    workers inflated two-thread timings of these millisecond steps up to twentyfold.

    The batch has the run's size and embedding dimension and classes drawn evenly, so a
    positive exists for every anchor. The FAT family's centres cost what they cost the trainer:
    epoch centres are computed once beforehand (as at the start of an epoch), batch centres
    inside each timed step, and ema centres are moved inside each timed step.
    """
    g = torch.Generator().manual_seed(seed)
    b, d = settings.batch_size, settings.embedding_dim
    labels = torch.arange(b) % max(2, min(num_classes, b // 2))
    base = torch.randn(b, d, generator=g)
    logits = torch.randn(b, num_classes, generator=g)
    spec = LOSSES.get(settings.loss)
    loss = spec.build(settings)
    source, k = settings.centre_source, int(labels.max()) + 1
    centroids = moving = None
    if spec.uses_centres and source.kind != "batch":
        centroids = compute_centroids(torch.randn(4 * b, d, generator=g), torch.arange(4 * b) % k, settings.centroid, k)
        moving = MovingCentres(centroids, source.beta) if source.kind == "ema" else None
    times = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(repeats + 3):
            emb = base.clone().requires_grad_(True)
            lg = logits.clone().requires_grad_(True)
            start = time.perf_counter()
            if spec.uses_centres and source.kind == "batch":  # as TrainingCentres.for_batch builds them
                centroids = compute_centroids(emb, labels, settings.centroid, k)
            elif moving is not None:
                moving.update(*class_sums(emb, labels, settings.centroid, k))
                centroids = moving.centroids(emb, labels)
            loss(emb, labels, lg, labels, centroids)["total"].backward()
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(times[3:])  # the first calls pay one-off allocations


def compare_losses(settings: RunSettings, variants: Sequence[str] | Mapping[str, Mapping[str, Any]] = QUICK_VARIANTS,
                   seeds: Sequence[int] = (0, 1, 2), *, data: Callable[[RunSettings], PreparedData] | None = None,
                   reuse: Iterable[dict[str, Any]] = (),
                   on_progress: Callable[[float, str], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> LossComparison:
    """Train every variant once per seed on the same data, model and epochs; see the module docstring.

    `variants`: names from VARIANTS, or a mapping of a study's own names to the settings each
    changes. `data(settings)` gives a seed's data (default: `prepare_data`); it is called once
    per seed, so every variant of a seed sees the same data. `reuse`: rows of an earlier
    comparison whose runs need not be trained again (matched by `run_key`).
    """
    from fatviz.train import Trainer, prepare_data

    changes = _variant_changes(variants)
    if not seeds:
        raise FatvizError("Give at least one seed.")
    try:
        runs = {(name, seed): settings.replace(seed=seed, **changes[name]) for seed in seeds for name in changes}
    except TypeError as exc:  # a change that names no setting
        raise FatvizError(f"A variant changes an unknown setting: {exc}.") from None
    load = prepare_data if data is None else data
    trained = {r["run_key"]: r for r in reuse if r.get("run_key")}
    start = time.perf_counter()
    result = LossComparison(settings)
    total = len(runs)
    done = 0
    for seed in seeds:
        prepared = None  # loaded when the seed's first run needs training
        for name in changes:
            s = runs[name, seed]
            key = run_reads(s).key("train")
            if on_progress is not None:
                on_progress(done / total, f"{name}, seed {seed}")
            done += 1
            if key in trained:
                result.rows.append({**trained[key], "variant": name, "changes": changes[name]})
                continue
            if prepared is None:
                prepared = load(settings.replace(seed=seed))  # the same data for every variant of a seed
            trainer = Trainer(s, prepared, snapshots=False)
            t = time.perf_counter()
            trainer.fit(should_stop=should_stop)
            seconds = time.perf_counter() - t
            if trainer.stopped:
                raise FatvizError("The comparison was stopped before it finished; nothing was saved.")
            metrics = trainer.evaluator.evaluate()
            row = {
                "variant": name, "loss": s.loss, "seed": seed, "changes": changes[name], "run_key": key,
                **{k: metrics.get(k) for k in METRICS},
                "epoch_seconds": seconds / s.epochs,
                "step_seconds": loss_step_seconds(s, prepared.dataset.num_classes, seed=seed),
            }
            trained[key] = row
            result.rows.append(row)
    if on_progress is not None:
        on_progress(1.0, "done")
    result.seconds = time.perf_counter() - start
    return result


def format_table(result: LossComparison) -> str:
    """The summary as a plain-text table (mean ± sd over seeds)."""
    s = result.settings
    lines = [f"losses side by side | {s.dataset} | {s.epochs} epochs | batch {s.batch_size} | "
             f"{len({r['seed'] for r in result.rows})} seed(s) | {result.seconds:.0f} s",
             f"  {'variant':<30}{'P@1':>14}{'mAP':>14}{'s/epoch':>10}{'loss ms/step':>14}"]
    def pm(row: dict[str, Any], key: str) -> str:
        v, sd = row[key], row[f"{key}_sd"]
        return "n/a" if v is None else f"{v:.3f}±{sd:.3f}"

    for row in result.summary():
        lines.append(f"  {row['variant']:<30}{pm(row, 'precision_at_1'):>14}{pm(row, 'map'):>14}"
                     f"{row['epoch_seconds']:>10.2f}{1000 * row['step_seconds']:>14.3f}")
    return "\n".join(lines)


def verdict(summary: list[dict[str, Any]], reference: str = "batch-hard triplet", tolerance: float = 0.01) -> list[str]:
    """Plain sentences: where each FAT variant is within `tolerance` of the reference, and where it loses."""
    rows = {r["variant"]: r for r in summary}
    ref = rows.get(reference)
    if ref is None or ref["precision_at_1"] is None:
        return []
    out = []
    for name, row in rows.items():
        if LOSSES.get(row["loss"]).uses_centres is False or row["precision_at_1"] is None:
            continue
        gaps = {k: row[k] - ref[k] for k in ("precision_at_1", "map") if row[k] is not None and ref[k] is not None}
        cost = (row["step_seconds"] / ref["step_seconds"]) if ref["step_seconds"] else float("nan")
        worst = min(gaps.values())
        words = ", ".join(f"{'P@1' if k == 'precision_at_1' else 'mAP'} {v:+.3f}" for k, v in gaps.items())
        if worst >= -tolerance:
            out.append(f"{name} keeps {reference}'s accuracy ({words}) at {cost:.2f}x its loss cost per step.")
        else:
            out.append(f"{name} trails {reference} ({words}, beyond the {tolerance:g} tolerance) at "
                       f"{cost:.2f}x its loss cost per step.")
    return out
