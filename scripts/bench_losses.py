"""Does FAT keep the triplet loss's accuracy? FAT, hybrid and batch-hard across datasets and seeds.

    python scripts/bench_losses.py [--datasets digits strokes reid-synth] [--seeds 0 1 2]
                                   [--variants fat,hybrid,batch-hard | quick | all] [--set margin=0.3 ...]
    python scripts/bench_losses.py --study [--configs default "margin 0.3" ...] [--losses fat hybrid batch-hard]

Three datasets: `digits` (sklearn's 8x8 digits, an MLP), `strokes` (generated, learnable 28x28
images: class-specific strokes with jitter, a distractor and noise, from scripts/bench_real.py;
no 28x28 synthetic set is registered in fatviz.data) and `reid-synth` (the registered ReID set:
unseen test identities across cameras; rank-1, mAP and mINP). Every loss of a seed trains the
same model on the same data, with the same batch sampler, epochs and weight initialisation.

Comparison (the default): the chosen variants of `fatviz.compare_losses` on every dataset,
with `--set FIELD=VALUE` changing the base settings of all of them (to try new defaults).

`--study`: every study configuration (a set of setting changes: the margin, the compactness
weight, hardest-k negatives, centres per batch, the learning rate, P x K batches, the hybrid's
cross-entropy weight, and combinations) applied alike to FAT, hybrid and batch-hard. A run
whose loss does not read a change (batch-hard and the compactness weight) is trained once and
shared (`fatviz.compare_losses.run_reads`). There is no warm-up setting in fatviz.settings, so
no warm-up is studied.

The loss cost per step in the tables is measured again once a dataset's runs are done: each
distinct loss computation in turn, the least of 10 one-thread medians (`step_costs`), since the
rows' own timings, taken on cores other jobs share, varied fivefold between equal losses.

Prints a markdown table per dataset (mean ± sd over seeds) and, last, one JSON line. Each
dataset's rows are saved as a loss comparison (`OUT/losses-DATASET.json`, readable by the
page "FAT vs triplet") after every configuration; `--resume` reads them and trains only what
is missing. Goal (issue #15): FAT and hybrid within 0.01 of batch-hard's precision@1 and mAP
(mean over seeds) on every dataset, at a lower loss cost per step.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_real, when run as a script

from bench_real import stroke_images  # noqa: E402

from fatviz.compare_losses import (  # noqa: E402
    QUICK_VARIANTS,
    VARIANTS,
    LossComparison,
    compare_losses,
    load_comparison,
    loss_step_seconds,
    run_reads,
    save_comparison,
)
from fatviz.errors import FatvizError  # noqa: E402
from fatviz.losses import LOSSES as LOSS_SPECS  # noqa: E402
from fatviz.settings import RunSettings  # noqa: E402
from fatviz.train import PreparedData, Trainer, prepare_data  # noqa: E402

# The three losses a study compares, by short name: the settings each sets.
LOSSES: dict[str, dict[str, Any]] = {"fat": {"loss": "fat"}, "hybrid": {"loss": "hybrid"},
                                     "batch-hard": {"loss": "triplet-hard"}}
REFERENCE = "batch-hard"
TOLERANCE = 0.01
# Study configurations: name -> the changes applied to every loss (each name says what it changes).
STUDY: dict[str, dict[str, Any]] = {
    "default": {},
    "margin 0.2": {"margin": 0.2},
    "margin 0.3": {"margin": 0.3},
    "margin 0.5": {"margin": 0.5},
    "compactness 1": {"compactness_weight": 1.0},  # the public code's weight (the default is 0.3)
    "compactness 3": {"compactness_weight": 3.0},
    "hardest-5 negatives": {"negatives": "hardest", "hardest_k": 5},
    "batch centres": {"centres": "batch"},
    "ema 0.9 centres": {"centres": "ema:0.9"},
    "lr 1e-3": {"lr": 1e-3},
    "pk batches": {"batch_sampler": "pk"},
    "ce weight 0.3": {"ce_weight": 0.3},
    "ce weight 0.1": {"ce_weight": 0.1},
    "margin 0.3, pk": {"margin": 0.3, "batch_sampler": "pk"},
    "margin 0.3, pk, ce 0.1": {"margin": 0.3, "batch_sampler": "pk", "ce_weight": 0.1},
    "margin 0.3, ce 0.1": {"margin": 0.3, "ce_weight": 0.1},
    "margin 0.5, pk, ce 0.1": {"margin": 0.5, "batch_sampler": "pk", "ce_weight": 0.1},
}
SHORT = {"precision_at_1": "P@1", "map": "mAP", "cmc_1": "rank-1", "minp": "mINP"}


def base_settings(dataset: str, args: argparse.Namespace) -> RunSettings:
    """Each dataset's run: its epochs and model; everything else the fatviz defaults (or --set)."""
    if dataset == "digits":
        s = RunSettings(dataset="digits", epochs=args.digits_epochs)
    elif dataset == "strokes":
        # Not a registered dataset: `strokes_data` builds it. subsample and data_root name its
        # size and origin, so a run key (and --resume) tells two sizes apart.
        s = RunSettings(dataset="mnist", data_root=f"generated strokes {args.strokes_n}+{args.strokes_test}",
                        subsample=args.strokes_n, epochs=args.strokes_epochs, model=args.image_model)
    elif dataset == "reid-synth":
        s = RunSettings(dataset="reid-synth", epochs=args.reid_epochs, model=args.image_model)
    else:
        raise FatvizError(f"Unknown dataset {dataset!r}: choose digits, strokes or reid-synth.")
    return s.replace(**parse_sets(args.set))


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """`FIELD=VALUE` texts as settings changes, read like a URL's values (strictly)."""
    changes: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise FatvizError(f"--set {pair!r}: write FIELD=VALUE, such as margin=0.3.")
        changes[name] = getattr(RunSettings.from_query({name: value}), name)
    return changes


def data_loader(dataset: str, args: argparse.Namespace) -> Callable[[RunSettings], PreparedData]:
    """A seed's data, built once per seed (a study calls it once per configuration)."""
    if dataset != "strokes":
        return cache(prepare_data)

    @cache
    def strokes_data(settings: RunSettings) -> PreparedData:
        return stroke_images(args.strokes_n, args.strokes_test, seed=settings.seed)
    return strokes_data


def study_variants(configs: list[str], losses: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per configuration: variant name ("LOSS | CONFIG") -> its settings changes."""
    unknown = [c for c in configs if c not in STUDY]
    if unknown:
        raise FatvizError(f"Unknown study configuration(s) {unknown}: choose from {list(STUDY)}.")
    bad = [x for x in losses if x not in LOSSES]
    if bad:
        raise FatvizError(f"Unknown loss(es) {bad}: choose from {list(LOSSES)}.")
    return {c: {f"{x} | {c}": {**STUDY[c], **LOSSES[x]} for x in losses} for c in configs}


def comparison_variants(text: str) -> dict[str, dict[str, Any]]:
    """--variants: short names (fat, hybrid, batch-hard), `quick`, `all`, or VARIANTS names by commas."""
    if text in ("quick", "all"):
        names = list(QUICK_VARIANTS if text == "quick" else VARIANTS)
        return {n: VARIANTS[n] for n in names}
    out = {}
    for name in (v.strip() for v in text.split(",") if v.strip()):
        if name in LOSSES:
            out[name] = LOSSES[name]
        elif name in VARIANTS:
            out[name] = VARIANTS[name]
        else:
            raise FatvizError(f"Unknown variant {name!r}: choose from {list(LOSSES)} or {list(VARIANTS)}.")
    return out


# What a loss's own cost per step depends on; the margin, the weights, the learning rate and the
# batch sampler change what it computes, not how much (loss_step_seconds draws its own labels).
COST_FIELDS = ("loss", "negatives", "hardest_k", "radius", "centres", "centroid", "batch_size", "embedding_dim")


def step_costs(settings: RunSettings, variants: dict[str, dict[str, Any]], num_classes: int,
               rounds: int = 10) -> dict[str, float]:
    """Per variant: the loss's own seconds per step, the least of `rounds` medians taken in turn.

    The rows' own figures are taken right after each training, on cores other jobs share; here
    each distinct loss computation is timed once for all the variants that share it, the
    computations interleaved, and the least median is what the loss costs when it has a core.
    """
    runs = {name: run_reads(settings.replace(**changes)) for name, changes in variants.items()}
    keys = {name: tuple(getattr(s, f) for f in COST_FIELDS) for name, s in runs.items()}
    first = {key: runs[name] for name, key in reversed(keys.items())}
    best = {key: float("inf") for key in first}
    for r in range(rounds):
        for key, s in first.items():
            best[key] = min(best[key], loss_step_seconds(s, num_classes, repeats=20, seed=r))
    return {name: best[key] for name, key in keys.items()}


def centre_seconds(settings: RunSettings, data: PreparedData, rounds: int = 5, repeats: int = 20) -> float:
    """Seconds per epoch the run's training centres cost, the least of `rounds` measurements.

    epoch: one whole-set pass (embedding the training set in eval mode, then the centres);
    batch and ema: one step's centres (as `TrainingCentres.for_batch` builds them, on a batch of real
    embeddings) times the steps of an epoch. The training rows' own s/epoch were taken on cores
    other jobs shared; this isolates what the source itself adds.
    """
    trainer = Trainer(settings, data, snapshots=False)
    source = settings.centre_source
    if source.kind == "epoch":
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            trainer.centres.whole_set()
            times.append(time.perf_counter() - start)
        return min(times)
    idx = trainer.epoch_order()[:settings.batch_size]
    emb = trainer.embed(trainer.x_train[idx])[0]
    trainer.centres.start_epoch(refresh=True)  # the ema centres start from the whole-set ones

    def step() -> None:
        trainer.centres.for_batch(emb, idx)

    medians = []
    for _ in range(rounds):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        medians.append(statistics.median(times))
    return min(medians) * math.ceil(len(trainer.keep_idx) / settings.batch_size)


def centre_costs(settings: RunSettings, variants: dict[str, dict[str, Any]], data: PreparedData,
                 seed: int) -> dict[str, float | None]:
    """Per variant: its centres' seconds per epoch (`centre_seconds`), measured once per centre source;
    None for a loss that reads no centres."""
    by_source: dict[str, float] = {}
    out: dict[str, float | None] = {}
    for name, changes in variants.items():
        s = settings.replace(seed=seed, **changes)
        if not LOSS_SPECS.get(s.loss).uses_centres:
            out[name] = None
            continue
        if s.centres not in by_source:
            by_source[s.centres] = centre_seconds(s, data)
        out[name] = by_source[s.centres]
    return out


def pm(row: dict[str, Any] | None, key: str) -> str:
    """mean ± sd, or a dash."""
    if row is None or row.get(key) is None:
        return "–"
    return f"{row[key]:.3f} ± {row[f'{key}_sd']:.3f}"


def metric_keys(summary: list[dict[str, Any]]) -> list[str]:
    """The accuracy figures this dataset has (rank-1 and mINP only for ReID data)."""
    keys = ["precision_at_1", "map"]
    if any(r.get("minp") is not None for r in summary):
        keys.append("minp")
    return keys


def comparison_table(dataset: str, settings: RunSettings, summary: list[dict[str, Any]]) -> str:
    """One row per variant: accuracy mean ± sd, seconds per epoch, the loss's own ms per step."""
    keys = metric_keys(summary)
    s = settings
    lines = [f"### {dataset} ({s.epochs} epochs, model {s.model}, batch {s.batch_size} {s.batch_sampler}, "
             f"{summary[0]['seeds'] if summary else 0} seeds)", "",
             "| loss | " + " | ".join(SHORT[k] for k in keys) + " | s/epoch | loss ms/step |",
             "|---|" + "---|" * (len(keys) + 2)]
    for r in summary:
        lines.append(f"| {r['variant']} | " + " | ".join(pm(r, k) for k in keys)
                     + f" | {r['epoch_seconds']:.2f} | {1000 * r['step_seconds']:.2f} |")
    return "\n".join(lines)


def study_rows(summary: list[dict[str, Any]], configs: list[str], losses: list[str]) -> dict[str, dict[str, Any]]:
    """Per configuration: each loss's summary row, and the gaps of fat and hybrid to batch-hard."""
    by_name = {r["variant"]: r for r in summary}
    out: dict[str, dict[str, Any]] = {}
    for c in configs:
        rows = {x: by_name.get(f"{x} | {c}") for x in losses}
        entry: dict[str, Any] = {x: _figures(r) for x, r in rows.items() if r is not None}
        ref = rows.get(REFERENCE)
        for x in ("fat", "hybrid"):
            r = rows.get(x)
            if r is None or ref is None:
                continue
            gaps = {k: r[k] - ref[k] for k in ("precision_at_1", "map")}
            entry[f"{x}_gap"] = min(gaps.values())  # the worse of P@1 and mAP, against batch-hard
            entry[f"{x}_step_ratio"] = r["step_seconds"] / ref["step_seconds"]
        out[c] = entry
    return out


def _figures(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("precision_at_1", "map", "minp", "epoch_seconds")
    return ({k: row[k] for k in keys} | {f"{k}_sd": row[f"{k}_sd"] for k in keys}
            | {"step_seconds": row["step_seconds"], "centre_seconds": row.get("centre_seconds"), "seeds": row["seeds"]})


def study_table(dataset: str, settings: RunSettings, summary: list[dict[str, Any]], configs: list[str],
                losses: list[str]) -> str:
    """One row per configuration: P@1, mAP (and mINP) of each loss, and fat's and hybrid's worst gap to batch-hard."""
    by_name = {r["variant"]: r for r in summary}
    rows = study_rows(summary, configs, losses)
    s = settings
    keys = metric_keys(summary)  # with mINP on ReID data
    head = " | ".join(f"{x} {SHORT[k]}" for x in losses for k in keys)
    gap_cols = [x for x in ("fat", "hybrid") if x in losses and REFERENCE in losses]
    seeds = max((r["seeds"] for r in summary), default=0)
    lines = [f"### {dataset} ({s.epochs} epochs, model {s.model}, batch {s.batch_size}, {seeds} seeds)", "",
             f"| configuration | {head} | " + " | ".join(f"{x} − bh (worst)" for x in gap_cols)
             + (" | fat/bh loss cost |" if gap_cols else " |"),
             "|---|" + "---|" * (len(keys) * len(losses) + len(gap_cols) + bool(gap_cols))]
    for c in configs:
        cells = []
        for x in losses:
            r = by_name.get(f"{x} | {c}")
            cells += [pm(r, k) for k in keys]
        cells += [f"{rows[c][f'{x}_gap']:+.3f}" if f"{x}_gap" in rows[c] else "–" for x in gap_cols]
        if gap_cols:
            cells.append(f"{rows[c]['fat_step_ratio']:.2f}" if "fat_step_ratio" in rows[c] else "–")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    costs = ", ".join(f"{x} {1000 * r['step_seconds']:.2f}" for x in losses
                      if (r := by_name.get(f"{x} | default")) is not None)
    if costs:
        lines += ["", f"Loss ms/step (default configuration, least of 10 medians): {costs}."]
    return "\n".join(lines + ["", cost_table(by_name, configs, losses)])


def cost_table(by_name: dict[str, dict[str, Any]], configs: list[str], losses: list[str]) -> str:
    """What each configuration costs: seconds per epoch (the whole step, centres included; mean ± sd
    over seeds), the loss's own ms per step (with the centres it builds each step) and the
    training centres' own seconds per epoch (`centre_seconds`)."""
    lines = ["| configuration | " + " | ".join(f"{x} s/epoch" for x in losses) + " | "
             + " | ".join(f"{x} loss ms/step" for x in losses) + " | centres s/epoch |",
             "|---|" + "---|" * (2 * len(losses) + 1)]
    for c in configs:
        rows = [by_name.get(f"{x} | {c}") for x in losses]
        centre = next((r["centre_seconds"] for r in rows if r is not None and r.get("centre_seconds") is not None),
                      None)
        lines.append(f"| {c} | " + " | ".join(pm(r, "epoch_seconds") for r in rows) + " | "
                     + " | ".join("–" if r is None else f"{1000 * r['step_seconds']:.2f}" for r in rows)
                     + f" | {'–' if centre is None else f'{centre:.3f}'} |")
    return "\n".join(lines)


def run_dataset(dataset: str, args: argparse.Namespace, groups: dict[str, dict[str, dict[str, Any]]],
                out_dir: Path) -> tuple[RunSettings, list[dict[str, Any]]]:
    """Train every group of variants (a study configuration, or the one comparison) on one dataset.

    Returns the base settings and the summary, each variant's loss cost per step measured again
    by `step_costs` once the training is over.
    """
    settings = base_settings(dataset, args)
    path = out_dir / f"losses-{dataset}.json"
    saved = load_comparison(path) if args.resume and path.exists() else None
    earlier: list[dict[str, Any]] = [] if saved is None else saved.rows
    load = data_loader(dataset, args)
    result = LossComparison(settings)
    start = time.perf_counter()
    asked = {name for variants in groups.values() for name in variants}
    # Earlier variants of the same base settings stay in the file (runs are matched by key anyway).
    kept = [r for r in earlier if r["variant"] not in asked] if saved is not None and saved.settings == settings else []
    for name, variants in groups.items():
        t = time.perf_counter()
        part = compare_losses(settings, variants, args.seeds, data=load, reuse=earlier + result.rows)
        result.rows += part.rows
        result.seconds = time.perf_counter() - start
        save_comparison(LossComparison(settings, kept + result.rows, result.seconds), path)
        print(f"  {dataset} | {name}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    every = {name: changes for variants in groups.values() for name, changes in variants.items()}
    data = load(settings.replace(seed=args.seeds[0]))
    costs = step_costs(settings, every, data.dataset.num_classes)
    centres = centre_costs(settings, every, data, args.seeds[0])
    return settings, [{**r, "step_seconds": costs[r["variant"]], "centre_seconds": centres[r["variant"]]}
                      for r in result.summary()]


def main(argv: list[str] | None = None) -> int:
    """Run the comparison or the study on every dataset; print the tables and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "strokes", "reid-synth"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--digits-epochs", type=int, default=30)
    parser.add_argument("--strokes-n", type=int, default=1500, help="generated 28x28 training images")
    parser.add_argument("--strokes-test", type=int, default=600)
    parser.add_argument("--strokes-epochs", type=int, default=4)
    parser.add_argument("--reid-epochs", type=int, default=10)
    parser.add_argument("--image-model", default="auto", help="model for strokes and reid-synth (auto: lenet-bn)")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="change the base settings of every run (e.g. margin=0.3 batch_sampler=pk)")
    parser.add_argument("--variants", default="fat,hybrid,batch-hard",
                        help="comparison: short names, quick, all, or fatviz.compare_losses.VARIANTS names")
    parser.add_argument("--study", action="store_true", help="sweep the study configurations instead")
    parser.add_argument("--configs", nargs="+", default=list(STUDY), help="study configurations to run")
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), help="study: losses per configuration")
    parser.add_argument("--out", default="runs/bench-losses", help="folder for losses-DATASET.json")
    parser.add_argument("--resume", action="store_true", help="reuse the runs saved in --out")
    args = parser.parse_args(argv)
    try:
        if args.study:
            groups = study_variants(args.configs, args.losses)
        else:
            groups = {"comparison": comparison_variants(args.variants)}
        for d in args.datasets:
            base_settings(d, args)  # every dataset name and --set value checked before anything trains
    except FatvizError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    start = time.perf_counter()
    report: dict[str, Any] = {"study": args.study, "seeds": args.seeds, "set": parse_sets(args.set), "datasets": {}}
    for dataset in args.datasets:
        settings, summary = run_dataset(dataset, args, groups, out_dir)
        if args.study:
            print(study_table(dataset, settings, summary, args.configs, args.losses) + "\n", flush=True)
            report["datasets"][dataset] = study_rows(summary, args.configs, args.losses)
        else:
            print(comparison_table(dataset, settings, summary) + "\n", flush=True)
            report["datasets"][dataset] = {r["variant"]: _figures(r) for r in summary}
    if args.study and REFERENCE in args.losses:
        # A configuration meets the goal when, on every dataset, fat and hybrid are within the
        # tolerance of batch-hard (the worse of P@1 and mAP) at a lower loss cost per step.
        report["meets_goal"] = {
            c: all(rows[c].get(f"{x}_gap", -1.0) >= -TOLERANCE and rows[c].get(f"{x}_step_ratio", 2.0) < 1.0
                   for rows in report["datasets"].values() for x in ("fat", "hybrid") if x in args.losses)
            for c in args.configs}
        print("meets the goal on every dataset: "
              + (", ".join(c for c, ok in report["meets_goal"].items() if ok) or "none"), flush=True)
    report["seconds"] = time.perf_counter() - start
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
