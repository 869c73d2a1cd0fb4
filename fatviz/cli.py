"""The command line: `python -m fatviz train | compare-centroids | distill | bench-loss | export`."""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fatviz.errors import FatvizError
from fatviz.settings import RunSettings

SUMMARY_KEYS = ("precision_at_1", "map", "nmi", "silhouette", "accuracy", "cmc_1", "cmc_5", "cmc_10")


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """Expose the RunSettings fields users change most as options (defaults from RunSettings)."""
    d = RunSettings()
    parser.add_argument("--dataset", default=d.dataset)
    parser.add_argument("--data-root", default=d.data_root, help="local folder for mnist, cifar10, folder, market1501")
    parser.add_argument("--subsample", type=int, default=d.subsample, help="stratified training subsample (0: all)")
    parser.add_argument("--noise", default=d.noise, help="none, symmetric:RATE or pairflip:RATE")
    parser.add_argument("--model", default=d.model)
    parser.add_argument("--embedding-dim", type=int, default=d.embedding_dim)
    parser.add_argument("--loss", default=d.loss)
    parser.add_argument("--centroid", default=d.centroid)
    parser.add_argument("--negatives", default=d.negatives)
    parser.add_argument("--hardest-k", type=int, default=d.hardest_k)
    parser.add_argument("--radius", default=d.radius)
    parser.add_argument("--margin", type=float, default=d.margin)
    parser.add_argument("--compactness-weight", type=float, default=d.compactness_weight)
    parser.add_argument("--ce-weight", type=float, default=d.ce_weight)
    parser.add_argument("--centres", default=d.centres, help="epoch (whole training set) or batch")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--device", default=d.device)
    parser.add_argument("--vis-points", type=int, default=d.vis_points)
    parser.add_argument("--teacher-epochs", type=int, default=d.teacher_epochs)
    parser.add_argument("--teacher-rounds", type=int, default=d.teacher_rounds)
    parser.add_argument("--round-epochs", type=int, default=d.round_epochs)
    parser.add_argument("--confidence-rule", default=d.confidence_rule)
    parser.add_argument("--confidence-threshold", type=float, default=d.confidence_threshold)
    parser.add_argument("--keep-fraction", type=float, default=d.keep_fraction)
    parser.add_argument("--temperature", type=float, default=d.temperature)
    parser.add_argument("--out", default="", help="run folder to save into (default: runs/<name>)")
    parser.add_argument("--json", action="store_true", help="end stdout with one JSON line of results")


def settings_from_args(args: argparse.Namespace) -> RunSettings:
    """Build (and validate) RunSettings from parsed options."""
    names = RunSettings.__dataclass_fields__
    values = {k: v for k, v in vars(args).items() if k in names}
    return RunSettings(**values).validate()


class _Progress:
    """A tqdm bar on stderr fed by the trainer's progress callback."""

    def __init__(self, desc: str) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=100, desc=desc, file=sys.stderr, leave=False,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

    def __call__(self, fraction: float, message: str) -> None:
        self.bar.n = int(round(100 * fraction))
        self.bar.set_postfix_str(message)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _metrics_line(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k}={metrics[k]:.4f}" for k in SUMMARY_KEYS if k in metrics)


def _default_out(settings: RunSettings, prefix: str) -> Path:
    return Path("runs") / f"{prefix}-{settings.dataset}-{settings.key()}"


def cmd_train(args: argparse.Namespace) -> int:
    """Train one run, save it, print a summary."""
    from fatviz.runs import save_run
    from fatviz.train import train

    settings = settings_from_args(args)
    start = time.perf_counter()
    bar = _Progress("train")
    try:
        result = train(settings, on_progress=bar)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    out = Path(args.out) if args.out else _default_out(settings, "train")
    path = save_run(result, out)
    m = result.final_metrics
    print(f"{settings.dataset} | loss {settings.loss} | centroid {settings.centroid} | noise {settings.noise} | "
          f"{settings.epochs} epochs on {result.device} in {seconds:.1f} s")
    print(f"test: {_metrics_line(m)}")
    last = result.snapshots[-1]
    if last.bound:
        print(f"visual subset: exact triplet {last.bound['exact']:.4f} <= FAT bound {last.bound['bound']:.4f}")
    print(f"saved: {path}")
    if args.json:
        print(json.dumps({**m, "seconds": seconds, "device": result.device, "run": str(path),
                          "settings": settings.to_dict()}))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Train the four centroid options on the same data and seed; print a table."""
    from fatviz.runs import save_run
    from fatviz.train import compare_centroids

    settings = settings_from_args(args)
    start = time.perf_counter()
    if args.workers > 0:
        results = _compare_in_workers(settings, args.workers)
    else:
        results = compare_centroids(settings)
    seconds = time.perf_counter() - start
    base = Path(args.out) if args.out else _default_out(settings, "compare")
    cols = ("precision_at_1", "map", "nmi", "silhouette", "accuracy")
    print(f"{'option':<16}" + "".join(f"{c:>16}" for c in cols) + f"{'exact':>10}{'bound':>10}{'s':>7}")
    rows = {}
    for option, result in results.items():
        m, b = result.final_metrics, result.snapshots[-1].bound
        save_run(result, base / option)
        rows[option] = {**m, "exact": b.get("exact"), "bound": b.get("bound"), "seconds": result.seconds}
        print(f"{option:<16}" + "".join(f"{m.get(c, float('nan')):>16.4f}" for c in cols)
              + f"{b.get('exact', float('nan')):>10.4f}{b.get('bound', float('nan')):>10.4f}{result.seconds:>7.1f}")
    print(f"4 runs in {seconds:.1f} s, saved under {base}/")
    if args.json:
        print(json.dumps({"options": rows, "seconds": seconds, "runs": str(base)}))
    return 0


def _compare_in_workers(settings: RunSettings, workers: int) -> dict:
    """The four options on `workers` processes (two options each, in lockstep), with a progress bar."""
    from fatviz.jobs import JobManager

    # The CLI has one thread and has run no torch op yet, so forking is safe and spares each
    # worker the 2-3 s of importing torch and scikit-learn again.
    fork = "fork" in mp.get_all_start_methods()
    manager = JobManager(workers=workers, runs_dir=None, warm_up=False, start_method="fork" if fork else "spawn")
    bar = _Progress("compare")
    try:
        job = manager.submit("compare", settings)
        while not job.wait(0.2):
            bar(*job.progress)
    finally:
        bar.close()
        manager.shutdown()
    if job.status == "error":
        raise FatvizError(job.error)
    return job.results


def cmd_distill(args: argparse.Namespace) -> int:
    """Teacher-student label distillation with its flagged-sample report."""
    from fatviz import distill

    return distill.cli(settings_from_args(args), args)


def cmd_bench_loss(argv: list[str]) -> int:
    """Loss-speed benchmark (see fatviz.bench)."""
    from fatviz import bench

    return bench.main(argv)


def cmd_export(args: argparse.Namespace) -> int:
    """Export a saved run's animation as a standalone HTML file."""
    from fatviz.centroids import CENTROID_OPTIONS
    from fatviz.figures.embedding import embedding_animation
    from fatviz.runs import load_run

    folder = Path(args.run)
    options = [o for o in CENTROID_OPTIONS if (folder / o / "run.pt").is_file()]
    if options and not (folder / "run.pt").is_file():  # a compare-centroids folder: all panels
        fig = embedding_animation({o: load_run(folder / o) for o in options})
    else:
        fig = embedding_animation(load_run(folder))
    out = Path(args.html)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(out, include_plotlyjs=True, full_html=True, auto_play=False)
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="python -m fatviz", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, tuple[str, Callable]] = {
        "train": ("train one run and save it", cmd_train),
        "compare-centroids": ("train the four centroid options side by side", cmd_compare),
        "distill": ("teacher-student label distillation and flagged-sample report", cmd_distill),
    }
    for name, (help_text, func) in commands.items():
        p = sub.add_parser(name, help=help_text)
        add_settings_arguments(p)
        p.set_defaults(func=func)
        if name == "compare-centroids":
            p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                           help="worker processes (0: train in this process)")
    sub.add_parser("bench-loss", help="loss-speed benchmark (python -m fatviz bench-loss --help)", add_help=False)
    p = sub.add_parser("export", help="export a saved run's animation as standalone HTML")
    p.add_argument("run", help="run folder (or its run.pt); a compare-centroids folder exports all four panels")
    p.add_argument("--html", required=True, help="output .html file")
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; user mistakes print one line on stderr and exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "bench-loss":
            return cmd_bench_loss(argv[1:])
        args = build_parser().parse_args(argv)
        return args.func(args)
    except FatvizError as exc:
        print(f"fatviz: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fatviz: interrupted", file=sys.stderr)
        return 130
