"""Job kinds: what a job of each kind trains (in a worker), and how its results are saved and loaded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fatviz.centroids import CENTROIDS
from fatviz.registry import Registry
from fatviz.settings import RunSettings

Emit = Callable[[str, tuple], None]
ShouldStop = Callable[[], bool]


def _train_options(settings: RunSettings, options: tuple[str, ...], emit: Emit, should_stop: ShouldStop) -> dict:
    """Train a group of centroid options in lockstep (epoch by epoch, round robin) so panels advance together."""
    from fatviz.train import Trainer, option_settings, prepare_data

    data = prepare_data(settings)
    trainers = {o: Trainer(option_settings(settings, o), data) for o in options}
    streams = {o: t.snapshots(should_stop) for o, t in trainers.items()}
    live = list(streams)
    while live:
        for option in list(live):
            snap = next(streams[option], None)
            if snap is None:
                live.remove(option)
            else:
                emit(option, ("snapshot", snap))
    return {o: t.result() for o, t in trainers.items()}


def _distill(settings: RunSettings, options: tuple[str, ...], emit: Emit, should_stop: ShouldStop) -> dict:
    from fatviz.distill import run_distillation

    result = run_distillation(settings, should_stop=should_stop,
                              on_progress=lambda f, msg: emit(options[0], ("progress", f, msg)))
    return {options[0]: result}


def _save_runs(results: dict[str, Any], folder: Path) -> None:
    from fatviz.runs import save_group

    save_group(results, folder)


def _load_runs(folder: Path, options: tuple[str, ...]) -> dict[str, Any]:
    from fatviz.runs import load_group

    return load_group(folder, options)


def _save_distillation(results: dict[str, Any], folder: Path) -> None:
    from fatviz.distill import save_distillation

    save_distillation(next(iter(results.values())), folder)


def _load_distillation(folder: Path, options: tuple[str, ...]) -> dict[str, Any]:
    from fatviz.distill import load_distillation

    return {options[0]: load_distillation(folder)}


def _compare_losses(settings: RunSettings, options: tuple[str, ...], emit: Emit, should_stop: ShouldStop) -> dict:
    from fatviz.compare_losses import compare_losses

    result = compare_losses(settings, should_stop=should_stop,
                            on_progress=lambda f, msg: emit(options[0], ("progress", f, msg)))
    return {options[0]: result}


def _save_comparison(results: dict[str, Any], folder: Path) -> None:
    from fatviz.compare_losses import COMPARISON_FILE, save_comparison

    save_comparison(next(iter(results.values())), folder / COMPARISON_FILE)


def _load_comparison(folder: Path, options: tuple[str, ...]) -> dict[str, Any]:
    from fatviz.compare_losses import COMPARISON_FILE, load_comparison

    return {options[0]: load_comparison(folder / COMPARISON_FILE)}


@dataclass(frozen=True)
class JobKind:
    """One kind of job: which parts it trains, how (in a worker), and how its results are stored."""

    name: str
    description: str
    options: Callable[[RunSettings], tuple[str, ...]]  # the parts of the job (panels, or one result)
    run: Callable[[RunSettings, tuple[str, ...], Emit, ShouldStop], dict[str, Any]]
    save: Callable[[dict[str, Any], Path], None]
    load: Callable[[Path, tuple[str, ...]], dict[str, Any]]
    snapshots: bool  # streams a snapshot per epoch per option (the live animation)
    splits: bool  # its options may train in separate workers at once


JOB_KINDS: Registry[JobKind] = Registry("job kind")
for _kind in (
    JobKind("train", "one run with the settings' centroid option", lambda s: (s.centroid,), _train_options,
            _save_runs, _load_runs, snapshots=True, splits=False),
    JobKind("compare", "the four centroid options side by side", lambda s: CENTROIDS.names(), _train_options,
            _save_runs, _load_runs, snapshots=True, splits=True),
    JobKind("distill", "teacher-student label distillation", lambda s: ("distillation",), _distill,
            _save_distillation, _load_distillation, snapshots=False, splits=False),
    JobKind("losses", "FAT and the triplet losses side by side, over seeds", lambda s: ("comparison",),
            _compare_losses, _save_comparison, _load_comparison, snapshots=False, splits=False),
):
    JOB_KINDS.register(_kind.name, _kind)


