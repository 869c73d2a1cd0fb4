"""The command line: `python -m fatviz COMMAND`, one subcommand per entry of `COMMANDS`.

Every command reports a user's mistake the same way, argparse's own included: one
`fatviz: ...` line on stderr and exit status 2, no traceback and no usage dump. The settings
options are built from the settings table (`fatviz.settings.setting_fields`): their types,
defaults, choices (read from the registries) and the app's ranges, which the CLI keeps to
unless `--no-limits` is given.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from fatviz.errors import FatvizError
from fatviz.progress import ProgressBar
from fatviz.settings import RunSettings, SettingField, setting_fields

SUMMARY_KEYS = ("precision_at_1", "map", "nmi", "silhouette", "accuracy", "cmc_1", "cmc_5", "cmc_10", "minp")
DATA_PARALLEL = ("train", "compare-centroids", "distill")  # the commands torchrun runs on several processes


class Parser(argparse.ArgumentParser):
    """argparse in fatviz's error style: a mistake raises a FatvizError, which main prints as one line."""

    def error(self, message: str) -> NoReturn:
        raise FatvizError(f"{message} (see `{self.prog} --help`).")


def _option_type(f: SettingField) -> Callable[[str], Any]:
    """The field's type; an optional field also takes `none` (unset: the option's default)."""
    if not f.optional:
        return f.kind

    def parse(text: str) -> Any:
        return None if text.strip().lower() in ("", "none") else f.kind(text)

    parse.__name__ = f.kind.__name__  # argparse names the type in its message: "invalid float value"
    return parse


def _option_help(f: SettingField) -> str:
    default = "unset" if f.default is None else repr(f.default) if f.kind is str else f"{f.default:g}"
    limits = f"; the app allows {f.limits_text()}" if f.app is not None else ""
    return f"{f.help} (default: {default}{limits})".replace("%", "%%")


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per RunSettings field, from the settings table, and the options every training command has."""
    groups: dict[str, Any] = {}
    for f in setting_fields():
        if f.section not in groups:
            groups[f.section] = parser.add_argument_group(f"{f.section} settings")
        groups[f.section].add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=_option_type(f), default=f.default,
                                       choices=f.choices() if f.choices is not None else None, help=_option_help(f))
    parser.add_argument("--no-limits", action="store_true",
                        help="allow values outside the ranges the app keeps to (epochs, sizes, ...)")
    parser.add_argument("--out", default="", help="folder to save into (default: runs/<kind>-<dataset>-<settings key>)")
    parser.add_argument("--overwrite", action="store_true", help="replace what --out already holds")
    parser.add_argument("--json", action="store_true", help="end stdout with one JSON line of results")
    parser.add_argument("--download", action="store_true", help="fetch mnist/fashion-mnist/cifar10 into --data-root if missing")


def settings_from_args(args: argparse.Namespace) -> RunSettings:
    """RunSettings from parsed options (validated), within the app's ranges unless --no-limits.

    With --download the dataset is then fetched into --data-root if it is missing there; that is
    not a setting: it changes where the files come from, not the run.
    """
    settings = RunSettings(**{f.name: getattr(args, f.name) for f in setting_fields()})
    if not args.no_limits:
        settings.check_app_limits("Pass --no-limits to go beyond.")
    if args.download:
        from fatviz.data.download import download, missing

        if missing(settings.dataset, settings.data_root):
            with ProgressBar("download") as bar:
                download(settings.dataset, settings.data_root, on_progress=bar)
    return settings


def _destination(args: argparse.Namespace, settings: RunSettings, kind: str) -> tuple[Path, bool]:
    """Where a command saves and whether it may replace what is there, checked before it trains.

    The default folder is named by the settings' key, so what it holds came from the same
    settings and is replaced; an `--out` that holds a saved run needs `--overwrite`.
    """
    from fatviz.job_kinds import JOB_KINDS, saved_kind

    if not args.out:
        return Path("runs") / f"{kind}-{settings.dataset}-{settings.key(kind)}", True
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise FatvizError(f"--out {out} is a file; name a folder to save into.")
    held = saved_kind(out)
    if held is not None and not args.overwrite:
        raise FatvizError(f"--out {out} already holds a saved {JOB_KINDS.get(held).saved_as}; pass --overwrite to replace it, "
                          "or name another folder.")
    return out, args.overwrite


def _metrics_line(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k}={metrics[k]:.4f}" for k in SUMMARY_KEYS if k in metrics)


def cmd_train(args: argparse.Namespace) -> int:
    """Train one run, save it, print a summary."""
    from fatviz.distributed import is_distributed, run_distributed_train
    from fatviz.runs import save_run
    from fatviz.train import train

    settings = settings_from_args(args)
    out, overwrite = _destination(args, settings, "train")
    start = time.perf_counter()
    if is_distributed():  # under torchrun: every rank trains its shard, rank 0 saves and reports
        got = _on_every_rank(settings, "train", lambda bar: run_distributed_train(
            settings, out, overwrite, bar, sync_batchnorm=args.sync_batchnorm))
        if got is None:
            return 0
        result, path = got
    else:
        with ProgressBar("train") as bar:
            result = train(settings, on_progress=bar)
        path = save_run(result, out, overwrite=overwrite)
    seconds = time.perf_counter() - start
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
                          "world_size": int(result.extras.get("world_size", 1)), "settings": settings.to_dict()}))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Train every centroid option on the same data and seed; print a table."""
    from fatviz.centroids import CENTROIDS
    from fatviz.distributed import is_distributed
    from fatviz.runs import save_group
    from fatviz.train import compare_centroids

    settings = settings_from_args(args)
    base, overwrite = _destination(args, settings, "compare")
    start = time.perf_counter()
    if is_distributed():  # under torchrun: each option in turn, data-parallel; rank 0 saves and reports
        results = _on_every_rank(settings, "compare", lambda bar: compare_centroids(
            settings, on_progress=bar, make_trainer=_distributed_trainer(args)))
        if results is None:
            return 0
    else:
        workers = min(args.workers, len(CENTROIDS))  # one option per worker at most: more would sit idle
        results = _compare_in_workers(settings, workers) if workers > 0 else compare_centroids(settings)
    seconds = time.perf_counter() - start
    save_group(results, base, overwrite=overwrite)
    cols = ("precision_at_1", "map", "nmi", "silhouette", "accuracy")
    print(f"{'option':<16}" + "".join(f"{c:>16}" for c in cols) + f"{'exact':>10}{'bound':>10}{'s':>7}")
    rows = {}
    for option, result in results.items():
        m, b = result.final_metrics, result.snapshots[-1].bound
        rows[option] = {**m, "exact": b.get("exact"), "bound": b.get("bound"), "seconds": result.seconds}
        print(f"{option:<16}" + "".join(f"{m.get(c, float('nan')):>16.4f}" for c in cols)
              + f"{b.get('exact', float('nan')):>10.4f}{b.get('bound', float('nan')):>10.4f}{result.seconds:>7.1f}")
    print(f"{len(results)} runs in {seconds:.1f} s, saved under {base}/")
    if args.json:
        world = int(next(iter(results.values())).extras.get("world_size", 1))
        print(json.dumps({"options": rows, "seconds": seconds, "runs": str(base), "world_size": world}))
    return 0


def _on_every_rank(settings: RunSettings, desc: str, run: Callable[[ProgressBar | None], Any]) -> Any:
    """`run(bar)` on this rank of the torchrun job: its result on rank 0, None elsewhere.

    Rank 0 alone shows a progress bar (the others get None), saves and reports.
    """
    from fatviz.distributed import joined_job

    with joined_job(settings) as ranks:
        if ranks.rank != 0:
            run(None)
            return None
        with ProgressBar(desc) as bar:
            return run(bar)


def _distributed_trainer(args: argparse.Namespace) -> Callable[..., Any]:
    """Builds each run's trainer on this rank of the torchrun job (the options' --sync-batchnorm)."""
    from fatviz.distributed import DistributedTrainer

    def make(settings: RunSettings, data: Any = None, targets: Any = None, *, snapshots: bool = True) -> Any:
        return DistributedTrainer(settings, data, targets, snapshots=snapshots, sync_batchnorm=args.sync_batchnorm)
    return make


def _compare_in_workers(settings: RunSettings, workers: int) -> dict:
    """Every option on `workers` processes (in lockstep), with a progress bar."""
    from fatviz.serve.jobs import JobManager

    # The CLI has one thread and has run no torch op yet, so forking is safe and spares each
    # worker the 2-3 s of importing torch and scikit-learn again.
    fork = "fork" in mp.get_all_start_methods()
    manager = JobManager(workers=workers, runs_dir=None, warm_up=False, start_method="fork" if fork else "spawn")
    try:
        with ProgressBar("compare") as bar:
            job = manager.submit("compare", settings)
            while not job.wait(0.2):
                bar(*job.progress)
    finally:
        manager.shutdown()
    if job.status == "error":
        raise FatvizError(job.error)
    return job.results


def cmd_distill(args: argparse.Namespace) -> int:
    """Teacher-student label distillation: progress on stderr, the report on stdout, optionally a JSON line."""
    from fatviz.distill import format_report, json_ready, run_distillation, save_distillation
    from fatviz.distill.storage import check_distillation_target
    from fatviz.distributed import is_distributed

    settings = settings_from_args(args)
    out = check_distillation_target(_destination(args, settings, "distill")[0])  # it is replaced whole
    if is_distributed():  # under torchrun: every model data-parallel, rank 0 saves and reports
        result = _on_every_rank(settings, "distill", lambda bar: run_distillation(
            settings, on_progress=bar, make_trainer=_distributed_trainer(args)))
        if result is None:
            return 0
    else:
        with ProgressBar("distill") as bar:
            result = run_distillation(settings, on_progress=bar)
    path = save_distillation(result, out)
    print(format_report(result))
    print(f"saved: {path} (per-sample table: {path / 'table.csv'})")
    if args.json:
        world = int(result.student.extras.get("world_size", 1))
        print(json.dumps(json_ready({**result.report, "run": str(path), "world_size": world})))
    return 0


def _whole_numbers(values: list[str], option: str) -> list[int]:
    """Accept `--sizes 256 512` and `--sizes 256,512`."""
    try:
        return [int(v) for item in values for v in item.split(",") if v.strip()]
    except ValueError as err:
        raise FatvizError(f"{option} takes whole numbers: {err}.") from None


def cmd_bench_loss(args: argparse.Namespace) -> int:
    """Time FAT against the triplet losses: the table on stdout, optionally a JSON line."""
    from fatviz.bench import dataset_scaling_benchmark, format_table, loss_benchmark, summarize

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    loss = loss_benchmark(_whole_numbers(args.sizes, "--sizes"), args.dim, args.classes_per, args.repeats,
                          args.max_seconds, args.methods, args.seed, progress, args.threads, args.min_repeat_seconds)
    dataset = (dataset_scaling_benchmark(_whole_numbers(args.dataset_sizes, "--dataset-sizes"), args.dim,
                                         seed=args.seed, progress=progress, threads=args.threads)
               if args.dataset_scaling else None)
    result = {"loss": loss, "dataset": dataset, "summary": summarize(loss, dataset)}
    print(format_table(result))
    if args.json:
        print(json.dumps(result, separators=(",", ":")))
    return 0


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """The bench-loss options."""
    from fatviz.bench import METHODS, MIN_REPEAT_SECONDS  # torch, for the loss functions it times

    p.add_argument("--sizes", nargs="+", default=["256,512,1024,2048,4096"], help="batch sizes B")
    p.add_argument("--dim", type=int, default=128, help="embedding dimension D")
    p.add_argument("--classes-per", type=int, default=8, help="samples per class (K = B // this)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per size (median)")
    p.add_argument("--max-seconds", type=float, default=3.0,
                   help="skip a method at larger sizes once one step takes longer than this")
    p.add_argument("--min-repeat-seconds", type=float, default=MIN_REPEAT_SECONDS,
                   help="a timed repeat runs consecutive steps until it lasts this long")
    p.add_argument("--methods", nargs="+", default=None, choices=METHODS, help="subset of methods")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--dataset-scaling", action=argparse.BooleanOptionalAction, default=True,
                   help="also time one FAT epoch with whole-dataset centres for N in --dataset-sizes")
    p.add_argument("--dataset-sizes", nargs="+", default=["1000,4000,16000,64000"], help="dataset sizes N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="end stdout with one JSON line of all figures")


def cmd_export(args: argparse.Namespace) -> int:
    """Export a saved run's animation (every panel of a compare group) as a standalone HTML file."""
    from fatviz.figures.embedding import embedding_animation
    from fatviz.job_kinds import JOB_KINDS, saved_kind
    from fatviz.runs import load_run

    out = Path(args.html)
    if out.is_dir():
        raise FatvizError(f"--html {out} is a folder; name the file to write, such as {out / 'animation.html'}.")
    folder = Path(args.run)
    kind = saved_kind(folder)
    if kind is None:  # load_run names what a run folder should hold
        runs = load_run(folder)
    elif JOB_KINDS.get(kind).animation is None:
        raise FatvizError(f"{folder} holds a saved {JOB_KINDS.get(kind).saved_as}, which has no animation; "
                          "export a run, a compare group or a distillation.")
    else:  # a distillation exports its student's animation
        runs = JOB_KINDS.get(kind).animation(folder)
    fig = embedding_animation(runs)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(out, include_plotlyjs=True, full_html=True, auto_play=False)
    print(f"wrote {out}")
    return 0


def cmd_compare_losses(args: argparse.Namespace) -> int:
    """Train FAT's variants and the triplet losses on the same model, data and seeds; print mean and spread."""
    from fatviz.compare_losses import QUICK_VARIANTS, VARIANTS, compare_losses, format_table, save_comparison

    settings = settings_from_args(args)
    variants = list(VARIANTS) if args.variants == "all" else (
        list(QUICK_VARIANTS) if args.variants == "quick" else [v.strip() for v in args.variants.split(",") if v.strip()])
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        raise FatvizError(f"--seeds {args.seeds!r}: give whole numbers separated by commas, e.g. 0,1,2.") from None
    out = Path(args.out) if args.out else Path("runs") / f"losses-{settings.dataset}-{settings.key('train')}.json"
    if out.is_dir():
        raise FatvizError(f"--out {out} is a folder; name a .json file to save the comparison into.")
    if args.out and out.exists() and not args.overwrite:
        raise FatvizError(f"--out {out} already exists; pass --overwrite to replace it.")
    with ProgressBar("compare-losses") as bar:
        result = compare_losses(settings, variants, seeds, on_progress=bar)
    path = save_comparison(result, out)
    print(format_table(result))
    print(f"saved: {path}")
    if args.json:
        print(json.dumps({"summary": result.summary(), "seconds": result.seconds, "file": str(path)}))
    return 0


def cmd_rank_list(args: argparse.Namespace) -> int:
    """Save a ReID run's rank lists (worst queries first) as a PNG grid; print its retrieval scores."""
    from fatviz.figures.rank_list import rank_list_image
    from fatviz.retrieval import run_rank_lists
    from fatviz.runs import load_run

    out = Path(args.png)
    if out.is_dir():
        raise FatvizError(f"--png {out} is a folder; name the file to write, such as {out / 'rank_list.png'}.")
    if args.queries < 1:
        raise FatvizError(f"--queries must be 1 or more, got {args.queries}.")
    ranked = run_rank_lists(load_run(args.run), k=args.top)
    ds, lists = ranked.dataset, ranked.lists
    names = [str(int(v)) for v in ds.y_test[ranked.query_idx]]
    cams = ds.cam_test
    image = rank_list_image(lists, ranked.query_images, ranked.gallery_images, queries=args.queries,
                            query_names=names, query_cams=None if cams is None else cams[ranked.query_idx],
                            gallery_cams=None if cams is None else cams[ranked.gallery_idx])
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    print(f"{len(lists)} queries with a true match; mAP {lists.ap.mean():.4f}, mINP {lists.inp.mean():.4f}; "
          f"the {min(args.queries, len(lists))} worst by AP drawn")
    print(f"wrote {out}")
    return 0


def _workers(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


_workers.__name__ = "worker count"  # argparse: "invalid worker count value: '-1'"


def _add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder (or its run.pt); a compare-centroids folder exports every panel, "
                               "a distillation folder its student")
    p.add_argument("--html", required=True, help="output .html file")


def _add_rank_list_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder (or its run.pt) trained on a dataset with queries (reid-synth, market1501)")
    p.add_argument("--png", required=True, help="output .png file")
    p.add_argument("--queries", type=int, default=8, help="rows: the worst queries by average precision")
    p.add_argument("--top", type=int, default=10, help="gallery entries shown per query")


def _add_training_arguments(name: str) -> Callable[[argparse.ArgumentParser], None]:
    """The options of a command that trains: every setting, plus the command's own."""
    def add(p: argparse.ArgumentParser) -> None:
        add_settings_arguments(p)
        if name in DATA_PARALLEL:
            p.add_argument("--sync-batchnorm", action="store_true",
                           help="under torchrun on GPUs: batch norm over the global batch (SyncBatchNorm)")
        if name == "compare-centroids":
            p.add_argument("--workers", type=_workers, default=min(2, os.cpu_count() or 1),
                           help="worker processes, at most one per option (0: train in this process)")
        if name == "compare-losses":
            p.add_argument("--variants", default="quick",
                           help="quick (fat, hybrid, batch-hard, all triplets, cross-entropy), all, or names "
                                "separated by commas (see fatviz.compare_losses.VARIANTS)")
            p.add_argument("--seeds", default="0,1,2", help="seeds separated by commas")
    return add


# Each command: (one line of help, a longer description or None, what adds its options, what runs it).
COMMANDS: dict[str, tuple[str, str | None, Callable[[argparse.ArgumentParser], None],
                          Callable[[argparse.Namespace], int]]] = {
    "train": ("train one run and save it", None, _add_training_arguments("train"), cmd_train),
    "compare-centroids": ("train every centroid option side by side", None,
                          _add_training_arguments("compare-centroids"), cmd_compare),
    "distill": ("teacher-student label distillation and flagged-sample report", None,
                _add_training_arguments("distill"), cmd_distill),
    "compare-losses": ("FAT and the triplet losses side by side: accuracy, epoch time, loss cost per step", None,
                       _add_training_arguments("compare-losses"), cmd_compare_losses),
    "bench-loss": ("time FAT against triplet losses (forward+backward per step)",
                   "Time FAT against triplet losses (forward+backward per step).", add_bench_arguments,
                   cmd_bench_loss),
    "export": ("export a saved run's animation as standalone HTML", None, _add_export_arguments, cmd_export),
    "rank-list": ("save a ReID run's rank lists, worst queries first, as a PNG",
                  "Save a ReID run's rank lists (query, top gallery entries framed green or red, hardest match), "
                  "worst average precision first, as a PNG grid.", _add_rank_list_arguments, cmd_rank_list),
}


def build_parser(only: str | None = None) -> Parser:
    """The argument parser with every subcommand; with `only`, just that command gets its options.

    `main` passes the command it was given: `train --help` then never builds `bench-loss`'s
    options, whose choices come from torch code (an import of over a second).
    """
    parser = Parser(prog="python -m fatviz", description="fatviz, the FAT loss: " + " | ".join(COMMANDS))
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, description, add_arguments, func) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=description or help_text)
        if only is None or name == only:
            add_arguments(p)
        p.set_defaults(func=func)
    return parser


def _command(argv: list[str]) -> str:
    """The subcommand named in `argv` ("" when there is none, e.g. `--help` alone)."""
    return next((a for a in argv if not a.startswith("-")), "")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop_on_sigterm() -> None:
    """SIGTERM ends a command like Ctrl+C: its worker processes are ended and nothing half-done is saved
    (the default action would kill this process alone and leave its workers training)."""
    import signal

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def main(argv: list[str] | None = None) -> int:
    """Entry point; user mistakes print one line on stderr and exit 2."""
    _stop_on_sigterm()
    try:
        argv = sys.argv[1:] if argv is None else argv
        args = build_parser(only=_command(argv)).parse_args(argv)
        if args.command not in DATA_PARALLEL and os.environ.get("WORLD_SIZE", "1") != "1":
            raise FatvizError(f"{args.command} runs in one process; under torchrun only {', '.join(DATA_PARALLEL)} "
                              "are data-parallel (start it without torchrun).")
        return args.func(args)
    except FatvizError as exc:
        print(f"fatviz: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fatviz: interrupted", file=sys.stderr)
        return 130
