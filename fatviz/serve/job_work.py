"""What each job kind does with torch: train in a worker, save and load its results, recognise and animate a saved folder.

fatviz.job_kinds names these functions by module and name, so the registry (read by settings
and `--help`) never imports torch. Each imports its job's module when called, not with this one,
so a test that stands in a fake `fatviz.distill` (tests/test_app_pages.py) is the one called.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fatviz.catalogue import CENTROIDS
from fatviz.runs import DISTILL_MARKER, RUN_FILE, load_group, load_run, save_group
from fatviz.settings import RunSettings

Emit = Callable[[str, tuple], None]
ShouldStop = Callable[[], bool]


def train_options(settings: RunSettings, options: tuple[str, ...], emit: Emit, should_stop: ShouldStop) -> dict:
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


def distill(settings: RunSettings, options: tuple[str, ...], emit: Emit, should_stop: ShouldStop) -> dict:
    """A teacher-student distillation, its progress sent as the one option's events."""
    from fatviz.distill import run_distillation

    result = run_distillation(settings, should_stop=should_stop,
                              on_progress=lambda f, msg: emit(options[0], ("progress", f, msg)))
    return {options[0]: result}


def compare(settings: RunSettings, options: tuple[str, ...], emit: Emit, should_stop: ShouldStop) -> dict:
    """FAT and the triplet losses over seeds, its progress sent as the one option's events."""
    from fatviz.compare_losses import compare_losses

    result = compare_losses(settings, should_stop=should_stop,
                            on_progress=lambda f, msg: emit(options[0], ("progress", f, msg)))
    return {options[0]: result}


def save_runs(results: dict[str, Any], folder: Path) -> None:
    """Save one run per option (fatviz.runs.save_group)."""
    save_group(results, folder)


def load_runs(folder: Path, options: tuple[str, ...]) -> dict[str, Any]:
    """Load one run per option (fatviz.runs.load_group)."""
    return load_group(folder, options)


def save_distillation_of(results: dict[str, Any], folder: Path) -> None:
    """Save the one distillation result."""
    from fatviz.distill import save_distillation

    save_distillation(next(iter(results.values())), folder)


def load_distillation_as(folder: Path, options: tuple[str, ...]) -> dict[str, Any]:
    """Load a saved distillation under the job's one option."""
    from fatviz.distill import load_distillation

    return {options[0]: load_distillation(folder)}


def save_comparison_of(results: dict[str, Any], folder: Path) -> None:
    """Save the one loss comparison into the folder."""
    from fatviz.compare_losses import COMPARISON_FILE, save_comparison

    save_comparison(next(iter(results.values())), folder / COMPARISON_FILE)


def load_comparison_as(folder: Path, options: tuple[str, ...]) -> dict[str, Any]:
    """Load a saved loss comparison under the job's one option."""
    from fatviz.compare_losses import COMPARISON_FILE, load_comparison

    return {options[0]: load_comparison(folder / COMPARISON_FILE)}


def _present(path: Path) -> Path | None:
    return path if path.is_file() else None


def run_marker(folder: Path) -> Path | None:
    """A single run's file, if the folder holds one."""
    return _present(folder / RUN_FILE)


def group_marker(folder: Path) -> Path | None:
    """The first option's run file, if the folder holds a run per centroid option."""
    return next((folder / o / RUN_FILE for o in CENTROIDS.names() if (folder / o / RUN_FILE).is_file()), None)


def distill_marker(folder: Path) -> Path | None:
    """A distillation's marker file, if the folder holds one."""
    return _present(folder / DISTILL_MARKER)


def comparison_marker(folder: Path) -> Path | None:
    """A loss comparison's file, if the folder holds one."""
    from fatviz.compare_losses import COMPARISON_FILE

    return _present(folder / COMPARISON_FILE)


def student_animation(folder: Path) -> Any:
    """A saved distillation's student run (what its animation shows)."""
    from fatviz.distill.storage import STUDENT_FOLDER

    return load_run(folder / STUDENT_FOLDER)
