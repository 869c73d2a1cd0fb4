"""How fast is FAT? Forward+backward time per step against the triplet losses it replaces.

`loss_benchmark` times one training step (loss forward and backward) of FAT and of the
triplet baselines on random balanced batches; `dataset_scaling_benchmark` times one
epoch of FAT with whole-dataset centres as the dataset grows. `format_table` prints them;
the command line is `python -m fatviz bench-loss --threads 2 [--json]` (fatviz.cli), whose
--json ends stdout with one JSON line.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence

import torch

from fatviz.catalogue import DEFAULT_CENTROID
from fatviz.centroids import compute_centroids, euclidean
from fatviz.errors import FatvizError
from fatviz.losses import FATLoss, batch_hard_loss, triplet_all_loss

METHODS: tuple[str, ...] = ("fat", "triplet-all", "triplet-all-dense", "batch-hard",
                            "pml-triplet-all", "pml-batch-hard", "floor")

METHOD_DESCRIPTIONS: dict[str, str] = {
    "fat": "FAT loss, norm-mean-norm, centres from the batch",
    "triplet-all": "all triplets, exact, sorted negatives and prefix sums (fatviz)",
    "triplet-all-dense": "all triplets, the textbook O(B^3) hinge tensor (fatviz)",
    "batch-hard": "batch-hard triplet loss (fatviz)",
    "pml-triplet-all": "pytorch-metric-learning TripletMarginLoss, all triplets",
    "pml-batch-hard": "pytorch-metric-learning TripletMarginLoss with BatchHardMiner",
    "floor": "anchor-to-centre distances alone (precomputed centres): the least any FAT can cost",
}

# The targets the README quotes (2 threads, B=1024, K=128, D=128).
TARGET_BATCH = 1024
TARGETS: dict[str, float] = {
    "fat_vs_pml_triplet_all_min": 300.0,
    "fat_vs_pml_batch_hard_min": 5.0,
    "fat_over_floor_max": 2.5,
    "dataset_slope_max": 1.1,
}

# Every loss works on unit vectors with the normalised FAT margin, so all compare like for like.
MARGIN = 0.1
# A repeat times as many consecutive steps as fill this long, so sub-millisecond steps
# are not measured at the resolution of the clock and the scheduler.
MIN_REPEAT_SECONDS = 0.1
# pytorch-metric-learning materialises every triplet's indices and distances (about
# this many bytes each, forward and backward); above the budget the method is skipped.
PML_BYTES_PER_TRIPLET = 80
PML_MEMORY_BUDGET = 4 << 30

Step = Callable[[torch.Tensor], torch.Tensor]
Progress = Callable[[str], None] | None


def _loss_steps(labels: torch.Tensor, centres: torch.Tensor, methods: Sequence[str]) -> dict[str, Step]:
    """One closure per method: embeddings in, scalar loss out."""
    steps: dict[str, Step] = {}
    for name in methods:
        if name == "fat":
            fat = FATLoss(DEFAULT_CENTROID, margin=MARGIN)
            steps[name] = lambda e, fat=fat: fat(e, labels)
        elif name == "triplet-all":
            steps[name] = lambda e: triplet_all_loss(e, labels, MARGIN, normalize=True, method="sorted")
        elif name == "triplet-all-dense":
            steps[name] = lambda e: triplet_all_loss(e, labels, MARGIN, normalize=True, method="dense")
        elif name == "batch-hard":
            steps[name] = lambda e: batch_hard_loss(e, labels, MARGIN, normalize=True)
        elif name in ("pml-triplet-all", "pml-batch-hard"):
            from pytorch_metric_learning import losses, miners

            # Its default distance is L2 on normalised embeddings, like the losses above.
            pml = losses.TripletMarginLoss(margin=MARGIN)
            if name == "pml-triplet-all":
                steps[name] = lambda e, pml=pml: pml(e, labels)
            else:
                miner = miners.BatchHardMiner()
                steps[name] = lambda e, pml=pml, miner=miner: pml(e, labels, miner(e, labels))
        elif name == "floor":
            steps[name] = lambda e: euclidean(e, centres).sum()
    return steps


def _run(step: Step, base: torch.Tensor, times: int) -> float:
    """Seconds for `times` consecutive forward+backward steps."""
    start = time.perf_counter()
    for _ in range(times):
        emb = base.detach().requires_grad_(True)
        step(emb).backward()
    return time.perf_counter() - start


def _calibrate(step: Step, base: torch.Tensor, min_seconds: float) -> int:
    """How many consecutive steps fill `min_seconds` (doubling, as timeit's autorange does)."""
    times = 1
    while times < 1024:
        elapsed = _run(step, base, times)
        if elapsed >= min_seconds:
            break
        times *= 2
    return times


def log_log_slope(sizes: Sequence[float], seconds: Sequence[float | None]) -> float | None:
    """Least-squares slope of log(time) against log(size) over the measured sizes (None if < 2)."""
    pts = [(math.log(s), math.log(t)) for s, t in zip(sizes, seconds, strict=False) if t is not None and t > 0]
    if len(pts) < 2 or len({x for x, _ in pts}) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def _ratio(num: float | None, den: float | None) -> float | None:
    """num / den, or None when either is missing."""
    return None if num is None or den is None or den <= 0 else num / den


class _Threads:
    """Set torch's intra-op thread count for a block, then put the old one back."""

    def __init__(self, threads: int | None) -> None:
        if threads is not None and threads < 1:
            raise FatvizError("threads must be at least 1.")
        self.threads = threads
        self.previous = torch.get_num_threads()

    def __enter__(self) -> int:
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        return torch.get_num_threads()

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.previous)


def _check_sizes(sizes: Sequence[int], least: int) -> list[int]:
    """Sizes sorted ascending; a FatvizError if any is below `least`."""
    out = sorted(int(s) for s in sizes)
    if not out or out[0] < least:
        raise FatvizError(f"Every size must be at least {least}; got {list(sizes)}.")
    return out


def loss_benchmark(sizes: Sequence[int] = (256, 512, 1024, 2048, 4096), dim: int = 128, classes_per: int = 8,
                   repeats: int = 3, max_step_seconds: float = 3.0, methods: Sequence[str] | None = None,
                   seed: int = 0, progress: Progress = None, threads: int | None = None,
                   min_repeat_seconds: float = MIN_REPEAT_SECONDS) -> dict:
    """Median forward+backward seconds per step for each method and batch size B (K = B // classes_per).

    Each size warms every method up once, then runs `repeats` rounds that visit the
    methods in turn (so load on a shared machine hits all alike); one repeat times as
    many consecutive steps as fill `min_repeat_seconds`. A method whose step takes more
    than `max_step_seconds` at one size is skipped (None) at larger sizes.
    """
    methods = list(METHODS if methods is None else methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise FatvizError(f"Unknown method(s) {', '.join(unknown)}: choose from {', '.join(METHODS)}.")
    if classes_per < 2 or dim < 1 or repeats < 1:
        raise FatvizError("classes_per must be >= 2, dim >= 1 and repeats >= 1.")
    sizes = _check_sizes(sizes, 2 * classes_per)
    say = progress or (lambda _msg: None)
    seconds: dict[str, list[float | None]] = {m: [] for m in methods}
    skipped: dict[str, dict[str, str]] = {m: {} for m in methods}
    too_slow: set[str] = set()
    with _Threads(threads) as used_threads:
        for b in sizes:
            k = b // classes_per
            g = torch.Generator().manual_seed(seed * 1_000_003 + b)
            base = torch.randn(b, dim, generator=g)
            labels = torch.arange(b) % k
            centres = compute_centroids(base, labels, DEFAULT_CENTROID).centres
            active = []
            for m in methods:
                triplets = b * (classes_per - 1) * (b - classes_per)
                if m in too_slow:
                    skipped[m][str(b)] = f"over {max_step_seconds:g} s at a smaller size"
                elif m == "pml-triplet-all" and triplets * PML_BYTES_PER_TRIPLET > PML_MEMORY_BUDGET:
                    skipped[m][str(b)] = f"{triplets:,} triplets would need over {PML_MEMORY_BUDGET >> 30} GiB"
                else:
                    active.append(m)
            steps = _loss_steps(labels, centres, active)
            inner: dict[str, int] = {}
            for m in active:
                say(f"B={b}: warming up {m}")
                warm = _run(steps[m], base, 1)
                inner[m] = 1 if warm >= min_repeat_seconds else _calibrate(steps[m], base, min_repeat_seconds)
            runs: dict[str, list[float]] = {m: [] for m in active}
            for r in range(repeats):
                for m in active:
                    say(f"B={b}: {m} (repeat {r + 1}/{repeats})")
                    runs[m].append(_run(steps[m], base, inner[m]) / inner[m])
            for m in methods:
                t = statistics.median(runs[m]) if m in runs else None
                seconds[m].append(t)
                if t is not None and t > max_step_seconds:
                    too_slow.add(m)
    fat = seconds.get("fat")
    speedups = ({m: [_ratio(t, f) for t, f in zip(seconds[m], fat, strict=False)] for m in methods if m != "fat"}
                if fat is not None else {})
    floor = seconds.get("floor")
    return {
        "config": {"sizes": sizes, "dim": dim, "classes_per": classes_per,
                   "classes": [b // classes_per for b in sizes], "repeats": repeats,
                   "max_step_seconds": max_step_seconds, "min_repeat_seconds": min_repeat_seconds,
                   "seed": seed, "threads": used_threads,
                   "margin": MARGIN, "torch": torch.__version__},
        "methods": methods,
        "seconds": seconds,
        "slopes": {m: log_log_slope(sizes, seconds[m]) for m in methods},
        "speedups": speedups,
        "fat_over_floor": ([_ratio(f, c) for f, c in zip(fat, floor, strict=False)] if fat is not None and floor is not None
                           else None),
        "skipped": {m: v for m, v in skipped.items() if v},
    }


def dataset_scaling_benchmark(sizes: Sequence[int] = (1000, 4000, 16000, 64000), dim: int = 128,
                              num_classes: int = 100, batch_size: int = 256, repeats: int = 3,
                              chunk_size: int = 8192, seed: int = 0, progress: Progress = None,
                              threads: int | None = None) -> dict:
    """Seconds for one FAT epoch with whole-dataset centres, per dataset size N, and the log-log slope.

    An epoch is compute_centroids over all N features (in chunks of `chunk_size`), then
    FAT forward+backward over all N anchors in batches of `batch_size` against those
    centres. Linear cost means a slope near 1.
    """
    if num_classes < 2 or batch_size < 1 or repeats < 1 or dim < 1 or chunk_size < 1:
        raise FatvizError("num_classes must be >= 2; dim, batch_size, repeats and chunk_size >= 1.")
    sizes = _check_sizes(sizes, num_classes)
    say = progress or (lambda _msg: None)
    loss = FATLoss(DEFAULT_CENTROID, margin=MARGIN)
    seconds: list[float] = []
    with _Threads(threads) as used_threads:
        for n in sizes:
            g = torch.Generator().manual_seed(seed * 1_000_003 + n)
            features = torch.randn(n, dim, generator=g)
            labels = torch.arange(n) % num_classes

            def epoch(features: torch.Tensor = features, labels: torch.Tensor = labels) -> None:
                cents = compute_centroids(features, labels, DEFAULT_CENTROID, num_classes, chunk_size=chunk_size)
                for start in range(0, features.shape[0], batch_size):
                    emb = features[start:start + batch_size].detach().requires_grad_(True)
                    loss(emb, labels[start:start + batch_size], centroids=cents).backward()

            say(f"N={n}: warming up")
            epoch()
            runs = []
            for r in range(repeats):
                say(f"N={n}: epoch {r + 1}/{repeats}")
                start = time.perf_counter()
                epoch()
                runs.append(time.perf_counter() - start)
            seconds.append(statistics.median(runs))
    return {
        "config": {"sizes": sizes, "dim": dim, "num_classes": num_classes, "batch_size": batch_size,
                   "repeats": repeats, "chunk_size": chunk_size, "seed": seed, "threads": used_threads},
        "seconds": seconds,
        "slope": log_log_slope(sizes, seconds),
    }


def summarize(loss_result: dict, dataset_result: dict | None = None, batch: int = TARGET_BATCH) -> dict:
    """The headline figures at one batch size, with each target and whether it is met (None: not measured)."""
    sizes = loss_result["config"]["sizes"]
    i = sizes.index(batch) if batch in sizes else None

    def at(series: list | None) -> float | None:
        return None if series is None or i is None else series[i]

    speed = loss_result["speedups"]
    figures = {
        "batch": batch,
        "fat_vs_pml_triplet_all": at(speed.get("pml-triplet-all")),
        "fat_vs_pml_batch_hard": at(speed.get("pml-batch-hard")),
        "fat_over_floor": at(loss_result["fat_over_floor"]),
        "dataset_slope": None if dataset_result is None else dataset_result["slope"],
    }
    checks = {
        "fat_vs_pml_triplet_all": ("fat_vs_pml_triplet_all_min", lambda v, t: v >= t),
        "fat_vs_pml_batch_hard": ("fat_vs_pml_batch_hard_min", lambda v, t: v >= t),
        "fat_over_floor": ("fat_over_floor_max", lambda v, t: v <= t),
        "dataset_slope": ("dataset_slope_max", lambda v, t: v <= t),
    }
    met = {name: (None if figures[name] is None else bool(ok(figures[name], TARGETS[target])))
           for name, (target, ok) in checks.items()}
    return {**figures, "targets": dict(TARGETS), "met": met}


def _cell(value: float | None, fmt: str, width: int) -> str:
    """One right-aligned table cell; '-' for a missing value."""
    return ("-" if value is None else format(value, fmt)).rjust(width)


def format_table(result: dict) -> str:
    """A fixed-width table: ms per step, FAT's speedup over each method, log-log slopes.

    Takes a loss_benchmark result, a dataset_scaling_benchmark result, or the
    combined {"loss": ..., "dataset": ..., "summary": ...} (what `bench-loss` prints).
    """
    lines: list[str] = []
    loss = result.get("loss", result if "methods" in result else None)
    dataset = result.get("dataset", result if "slope" in result else None)
    if loss is not None:
        cfg = loss["config"]
        methods = loss["methods"]
        w = max(12, *(len(m) + 2 for m in methods))
        lines.append(f"Loss step (forward+backward), ms: D={cfg['dim']}, K=B/{cfg['classes_per']}, "
                     f"{cfg['threads']} thread(s), median of {cfg['repeats']}")
        lines.append("B".rjust(6) + "".join(m.rjust(w) for m in methods))
        for i, b in enumerate(cfg["sizes"]):
            row = [loss["seconds"][m][i] for m in methods]
            lines.append(str(b).rjust(6) + "".join(_cell(None if t is None else t * 1e3, ".3f", w) for t in row))
        lines.append("slope".rjust(6) + "".join(_cell(loss["slopes"][m], ".2f", w) for m in methods))
        others = [m for m in methods if m in loss["speedups"]]
        if others:
            lines.append("")
            lines.append("FAT speedup (time of method / time of FAT), x")
            lines.append("B".rjust(6) + "".join(m.rjust(w) for m in others))
            for i, b in enumerate(cfg["sizes"]):
                lines.append(str(b).rjust(6) + "".join(_cell(loss["speedups"][m][i], ".1f", w) for m in others))
        for m, why in loss.get("skipped", {}).items():
            for b, reason in why.items():
                lines.append(f"  {m} skipped at B={b}: {reason}")
    if dataset is not None:
        cfg = dataset["config"]
        if lines:
            lines.append("")
        lines.append(f"FAT epoch with whole-dataset centres, s: D={cfg['dim']}, K={cfg['num_classes']}, "
                     f"batch {cfg['batch_size']}, {cfg['threads']} thread(s)")
        lines.append("N".rjust(8) + "seconds".rjust(12) + "us/sample".rjust(12))
        for n, t in zip(cfg["sizes"], dataset["seconds"], strict=False):
            lines.append(str(n).rjust(8) + _cell(t, ".4f", 12) + _cell(t / n * 1e6, ".2f", 12))
        lines.append("slope".rjust(8) + _cell(dataset["slope"], ".2f", 12))
    summary = result.get("summary")
    if summary is not None:
        lines.append("")
        lines.append(f"Targets at B={summary['batch']}:")
        rows = (("fat_vs_pml_triplet_all", "FAT vs PML all triplets", ">=", "fat_vs_pml_triplet_all_min", "x"),
                ("fat_vs_pml_batch_hard", "FAT vs PML batch-hard", ">=", "fat_vs_pml_batch_hard_min", "x"),
                ("fat_over_floor", "FAT / floor", "<=", "fat_over_floor_max", "x"),
                ("dataset_slope", "dataset slope", "<=", "dataset_slope_max", ""))
        for key, label, op, target, unit in rows:
            met = summary["met"][key]
            verdict = "not measured" if met is None else ("met" if met else "MISSED")
            value = _cell(summary[key], ".2f", 10)
            lines.append(f"  {label:<26}{value}{unit:<2} (target {op} {summary['targets'][target]:g}{unit}): {verdict}")
    return "\n".join(lines)
