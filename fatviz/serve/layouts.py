"""t-SNE and UMAP layouts of a job's epochs, fitted in the background as its snapshots arrive.

PCA is instant and is computed where it is drawn. t-SNE and UMAP cost about a second per
panel and epoch on a laptop, so a view that asks for one gets a `Layout`: the `LayoutService` fits
each new epoch from the previous epoch's layout (fatviz.projection.fit_epoch), every option
advancing together, in a `WorkerPool` of one process of its own (the training workers are busy
training), while the view draws the epochs fitted so far. Once the job is done and saved, the
finished layout is written beside each run (fatviz.runs.save_layout); the next visitor, or
the next start of the app, loads it instead of fitting it again.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from concurrent.futures import CancelledError, Executor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fatviz.errors import FatvizError
from fatviz.projection import PanelFrames, fit_epoch, panel_of
from fatviz.runs import load_layout, save_layout
from fatviz.serve.pool import WorkerPool
from fatviz.serve.run_store import RunStore

LAYOUT_WORKER_DIED = ("The layout worker stopped unexpectedly (it may have run out of memory or been killed); "
                      "choose the projection again to start a fresh one, or PCA.")


@dataclass(eq=False)
class Layout:
    """One job's t-SNE or UMAP frames per option, growing epoch by epoch."""

    method: str
    options: tuple[str, ...]
    points: dict[str, list[np.ndarray]] = field(default_factory=dict)
    centres: dict[str, list[np.ndarray]] = field(default_factory=dict)
    status: str = "running"  # running, done (all epochs of a finished job), stopped, error
    error: str = ""
    from_disk: bool = False
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        for o in self.options:
            self.points.setdefault(o, [])
            self.centres.setdefault(o, [])

    @property
    def done(self) -> bool:
        """True once no more epochs will be added."""
        return self.status != "running"

    def frames(self) -> int:
        """Epochs every option has been laid out for."""
        return min((len(self.points[o]) for o in self.options), default=0)

    def panels(self, runs: dict[str, list]) -> list[PanelFrames]:
        """The panels of `runs` (snapshots per option) for the epochs laid out so far."""
        n = self.frames()
        return [panel_of(o, runs[o], self.points[o][:n], self.centres[o][:n]) for o in self.options]

    def wait_frames(self, count: int, timeout: float | None = None) -> bool:
        """Block until `count` epochs are laid out (or the layout ended, or timeout)."""
        with self._changed:
            self._changed.wait_for(lambda: self.frames() >= count or self.done, timeout)
        return self.frames() >= count

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the layout ended (or timeout); True if it has."""
        with self._changed:
            return self._changed.wait_for(lambda: self.done, timeout)

    def _add(self, option: str, points: np.ndarray, centres: np.ndarray) -> None:
        self.points[option].append(points)
        self.centres[option].append(centres)
        with self._changed:
            self._changed.notify_all()

    def _end(self, status: str, error: str = "") -> None:
        self.status, self.error = status, error
        with self._changed:
            self._changed.notify_all()


def load_saved(method: str, runs: dict[str, list], folders: dict[str, Path]) -> Layout | None:
    """The layout saved beside every run of a finished group, or None if any is missing or stale."""
    layout = Layout(method, tuple(runs), status="done", from_disk=True)
    for option, snapshots in runs.items():
        saved = load_layout(folders[option], method, snapshots) if option in folders and snapshots else None
        if saved is None:
            return None
        layout.points[option], layout.centres[option] = saved
    return layout


class LayoutService:
    """One layout per job and method, shared by every viewer, fitted on a worker of its own."""

    def __init__(self, pool: WorkerPool | None, store: RunStore) -> None:
        """`pool` fits (one worker; None fits in each layout's own thread); `store` holds the saved runs."""
        self.pool = pool
        self.store = store
        self.closing = False
        self._lock = threading.Lock()

    def layout(self, job: Any, method: str) -> Layout:
        """The t-SNE or UMAP layout of a snapshot job's epochs: loaded from beside its saved runs,
        or fitted in the background as its epochs arrive."""
        with self._lock:
            layout = job.layouts.get(method)
            if layout is not None and layout.status != "error":
                return layout
            if job.status == "done":
                layout = load_saved(method, {o: list(job.snapshots.get(o, [])) for o in job.options},
                                    self.store.run_folders(job))
            if layout is None:
                layout = Layout(method, job.options)
                threading.Thread(target=follow,
                                 args=(job, layout, job.settings.seed, self.pool, lambda: self.store.run_folders(job),
                                       lambda: self.closing),
                                 daemon=True, name=f"fatviz-layout-{method}").start()
            job.layouts[method] = layout
            return layout

    def shutdown(self, jobs: list[Any], wait_seconds: float) -> None:
        """End the layout worker; wait up to `wait_seconds` for each of `jobs`' layouts to stop."""
        self.closing = True
        if self.pool is not None:
            self.pool.shutdown()
        for layout in [la for j in jobs for la in j.layouts.values()]:
            layout.wait(wait_seconds)


def _fit(executor: Executor | WorkerPool | None, args: tuple) -> tuple[np.ndarray, np.ndarray]:
    if executor is None:
        return fit_epoch(*args)
    try:
        future = executor.submit(fit_epoch, *args)
    except BrokenProcessPool:
        raise
    except RuntimeError:  # the pool was shut down: the app is closing
        raise CancelledError from None
    return future.result()


def follow(job: Any, layout: Layout, seed: int, executor: Executor | WorkerPool | None,
           folders: Callable[[], dict[str, Path]], closing: Callable[[], bool] = lambda: False) -> None:
    """Lay out `job`'s epochs as they arrive, until the job has ended and every epoch is laid out;
    then save the layout beside each run (`folders()`: the job's saved run folders) if the job
    finished. Runs in its own thread; `executor` (one process) fits, or this thread when None.
    `closing()` true ends it (as stopped) before its next fit."""
    method = layout.method
    try:
        while True:
            if closing():
                layout._end("stopped")
                return
            ended = job.done  # read before the snapshots: a job that has ended has all of them
            runs = {o: list(job.snapshots.get(o, [])) for o in layout.options}
            available = min(len(v) for v in runs.values())
            i = layout.frames()
            if i < available:
                for o in layout.options:
                    if len(layout.points[o]) > i:
                        continue
                    snap = runs[o][i]
                    previous = layout.points[o][i - 1] if i else None
                    args = (snap.embeddings, method, seed, previous, snap.centres)
                    points, centres = _fit(executor, args)
                    layout._add(o, points, centres)
                continue
            if ended:
                break
            job.wait_frames(available + 1, timeout=1.0)
        if job.status != "done":
            layout._end("stopped" if job.status == "stopped" else "error",
                        "" if job.status == "stopped" else "The training failed, so its layout stops here.")
            return
        try:
            where = folders()
            runs = {o: list(job.snapshots[o]) for o in layout.options}
            if layout.frames() == min(len(v) for v in runs.values()):
                for o, folder in where.items():
                    save_layout(folder, method, [int(s.epoch) for s in runs[o]], layout.points[o], layout.centres[o])
        except OSError as exc:  # a full disk must not lose the layout on screen
            print(f"fatviz: the {method} layout was not saved: {exc}")
        layout._end("done")
    except ImportError as exc:
        layout._end("error", f"{method} is not installed here ({exc}); choose PCA.")
    except FatvizError as exc:
        layout._end("error", str(exc))
    except BrokenProcessPool:
        layout._end("error", LAYOUT_WORKER_DIED)
    except CancelledError:
        layout._end("error", "The app is shutting down.")
    except Exception as exc:  # a failed fit must not take the app down
        traceback.print_exc()
        layout._end("error", f"{type(exc).__name__}: {exc}")
