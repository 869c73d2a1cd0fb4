"""Job kinds: what a job of each kind reads and trains (in a worker), what it costs, and how it is stored.

Adding a job kind is one `JOB_KINDS.register` call: the cache key (`Settings.key`), the
budget (`fatviz.serve.budget`), the run store, the listings of saved folders (`fatviz.runs`), the
CLI's messages and the classroom's list of saved runs all read the entry. Its callables import
their torch code on first use, so settings and `--help` stay light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fatviz.catalogue import BASELINE_SETS, CENTROIDS
from fatviz.registry import Registry, lazy

Emit = Callable[[str, tuple], None]
ShouldStop = Callable[[], bool]
Settings = Any  # fatviz.settings.Settings: settings imports this module, so it is not imported here


def _work(name: str) -> Callable[..., Any]:
    return lazy("fatviz.serve.job_work", name)


def _distill_epochs(s: Settings) -> int:
    """Teacher rounds, 5 folds on 4/5 of the set each, the student, and its baselines."""
    return (s.teacher_epochs + s.teacher_rounds * s.round_epochs + 4 * s.cv_epochs
            + (1 + len(BASELINE_SETS.get(s.baselines).rows)) * s.epochs)


@dataclass(frozen=True)
class JobKind:
    """One kind of job: which parts it trains, how (in a worker), and how its results are stored."""

    name: str
    description: str
    options: Callable[[Settings], tuple[str, ...]]  # the parts of the job (panels, or one result)
    run: Callable[[Settings, tuple[str, ...], Emit, ShouldStop], dict[str, Any]]
    save: Callable[[dict[str, Any], Path], None]
    load: Callable[[Path, tuple[str, ...]], dict[str, Any]]
    snapshots: bool  # streams a snapshot per epoch per option (the live animation)
    splits: bool  # its options may train in separate workers at once
    reads: tuple[str, ...]  # the settings sections its result depends on (its cache key)
    ignores: tuple[str, ...]  # fields of those sections it sets itself, left out of its key
    epochs: Callable[[Settings], int]  # epochs of training it runs, one after another (the budget's time)
    saved_as: str  # what a saved folder of this kind is called in messages
    marker: Callable[[Path], Path | None]  # the file that shows a folder holds this kind (None: it does not)
    animation: Callable[[Path], Any] | None  # a saved folder's runs to animate (fatviz.figures), if any

    def key(self, settings: Settings) -> str:
        """The cache key of a job of this kind: a hash of what it reads."""
        return settings.digest(self.reads, self.ignores, salt=self.name)


def saved_kind(folder: str | Path) -> str | None:
    """The job kind whose results a folder holds (the first whose marker is there), or None."""
    base = Path(folder)
    return next((name for name, kind in JOB_KINDS.items() if kind.marker(base) is not None), None)


JOB_KINDS: Registry[JobKind] = Registry("job kind")
_TRAINING = ("data", "model", "training", "view")
for _kind in (
    JobKind("train", "one run with the settings' centroid option", lambda s: (s.centroid,),
            _work("train_options"), _work("save_runs"), _work("load_runs"), snapshots=True, splits=False,
            reads=_TRAINING, ignores=(), epochs=lambda s: s.epochs, saved_as="run", marker=_work("run_marker"),
            animation=lazy("fatviz.runs", "load_run")),
    JobKind("compare", "the four centroid options side by side", lambda s: CENTROIDS.names(),
            _work("train_options"), _work("save_runs"), _work("load_runs"), snapshots=True, splits=True,
            reads=_TRAINING, ignores=("centroid",), epochs=lambda s: len(CENTROIDS) * s.epochs,
            saved_as="compare group", marker=_work("group_marker"), animation=lazy("fatviz.runs", "load_group")),
    JobKind("distill", "teacher-student label distillation", lambda s: ("distillation",),
            _work("distill"), _work("save_distillation_of"), _work("load_distillation_as"), snapshots=False,
            splits=False, reads=("data", "model", "training", "distill", "view"), ignores=(),
            epochs=_distill_epochs, saved_as="distillation", marker=_work("distill_marker"),
            animation=_work("student_animation")),
    # A loss comparison sets the loss fields per variant and trains its own seeds (0, 1, 2): five
    # losses, three seeds each.
    JobKind("losses", "FAT and the triplet losses side by side, over seeds", lambda s: ("comparison",),
            _work("compare"), _work("save_comparison_of"), _work("load_comparison_as"), snapshots=False,
            splits=False, reads=("data", "model", "training"), ignores=("loss", "negatives", "radius", "centres", "seed"),
            epochs=lambda s: 15 * s.epochs, saved_as="loss comparison", marker=_work("comparison_marker"),
            animation=None),
):
    JOB_KINDS.register(_kind.name, _kind)
