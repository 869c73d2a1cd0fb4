"""Background jobs: runs train in worker processes and stream snapshots back as they are made.

One JobManager per app (or CLI call). Identical requests share one job: thirty students
opening the same preset start one training, and every later request for the same
settings is answered from memory or from the saved runs on disk.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fatviz.centroids import CENTROID_OPTIONS
from fatviz.errors import FatvizError
from fatviz.settings import RunSettings

JOB_KINDS = ("compare", "train", "distill")

# Worker-process globals, set once by _init_worker.
_QUEUE: Any = None
_STOP_DIR: str = ""


def _init_worker(events: Any, stop_dir: str, warm_up: bool, niceness: int = 0) -> None:
    global _QUEUE, _STOP_DIR
    _QUEUE, _STOP_DIR = events, stop_dir
    if niceness and hasattr(os, "nice"):
        # Below the app and the browser: they draw the epochs, training takes every idle cycle.
        try:
            os.nice(niceness)
        except OSError:
            pass
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)  # two workers on two cores: one thread each, BLAS included
    threadpool_limits(limits=1)
    if warm_up:
        _warm_up()


def _warm_up() -> None:
    """Pay the first-call costs (lazy imports, allocator, sklearn, the digits file) before any
    user waits: a tiny two-epoch run with snapshots. Without it the first demo's first frame
    came 8-9 s after the click."""
    from fatviz.train import prepare_data, train

    settings = RunSettings(epochs=1, subsample=200, vis_points=50)
    train(settings, prepare_data(settings))


def _warm() -> int:
    return os.getpid()


def _stop_file(stop_dir: str, key: str) -> str:
    return os.path.join(stop_dir, f"stop-{key}")


def _run_group(kind: str, settings: RunSettings, options: tuple[str, ...], key: str,
               emit: Callable[[str, tuple], None] | None = None, stop_dir: str = "") -> dict[str, Any]:
    """Train a group of options in lockstep (epoch by epoch, round robin) so panels advance together.

    In a worker process, events go to the queue set up by _init_worker; in-process
    callers pass `emit` directly.
    """
    from fatviz.train import Trainer, option_settings, prepare_data

    stop_path = _stop_file(stop_dir or _STOP_DIR, key)

    def should_stop() -> bool:
        return os.path.exists(stop_path)

    if emit is None:
        def emit(option: str, payload: tuple) -> None:
            if _QUEUE is not None:
                _QUEUE.put((key, option, payload))

    if kind == "distill":
        from fatviz.distill import run_distillation

        result = run_distillation(settings, should_stop=should_stop,
                                  on_progress=lambda f, msg: emit("", ("progress", f, msg)))
        return {"": result}
    data = prepare_data(settings)
    trainers = {}
    for option in options:
        trainers[option] = Trainer(option_settings(settings, option), data)
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


@dataclass(eq=False)
class Job:
    """One request's work: its snapshots so far, its results when done, or its error."""

    key: str
    kind: str
    settings: RunSettings
    options: tuple[str, ...]
    snapshots: dict[str, list] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    status: str = "running"  # running, done, error, stopped
    error: str = ""
    progress: tuple[float, str] = (0.0, "starting")
    started: float = field(default_factory=time.perf_counter)
    first_frame_seconds: float | None = None
    seconds: float | None = None
    from_cache: bool = False
    _done: threading.Event = field(default_factory=threading.Event)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _stop_path: str = ""

    @property
    def done(self) -> bool:
        """True once the job finished, failed or was stopped."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until done (or timeout); True if done."""
        return self._done.wait(timeout)

    def wait_frames(self, count: int, timeout: float | None = None) -> bool:
        """Block until every option has `count` epochs (or the job ended, or timeout); True if it has."""
        with self._changed:
            self._changed.wait_for(lambda: self.frames() >= count or self.done, timeout)
        return self.frames() >= count

    def seconds_left(self) -> float:
        """A rough estimate of the remaining time from the progress so far (inf before any progress)."""
        frac = self.progress[0]
        if frac <= 0.0:
            return float("inf")
        return (time.perf_counter() - self.started) * (1.0 - frac) / frac

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def stop(self) -> None:
        """Ask the workers to stop after their current batch."""
        if self._stop_path and not self.done:
            Path(self._stop_path).touch()

    def frames(self) -> int:
        """Number of epochs every option has reached (the animation can show this many)."""
        if not self.snapshots or len(self.snapshots) < len(self.options):
            return 0
        return min(len(v) for v in self.snapshots.values())


def job_key(kind: str, settings: RunSettings) -> str:
    """Jobs with equal kind and settings are the same job."""
    return f"{kind}-{settings.key()}"


class JobManager:
    """Runs jobs in `workers` processes (0: a thread in this process), deduplicated by settings."""

    def __init__(self, workers: int = 2, runs_dir: str | os.PathLike | None = "runs", warm_up: bool = True,
                 start_method: str = "spawn", niceness: int = 0) -> None:
        """`warm_up` runs a tiny training in each worker at start (the app: workers start when a
        page opens, long before the click); a one-shot CLI call skips it. `start_method` "fork"
        saves the workers' imports, but is only safe in a single-threaded caller (the CLI).
        `niceness` lowers the workers' CPU priority (Unix), so that on a laptop whose cores all
        train, the page and the browser that draw the epochs are served first."""
        self.workers = workers
        self.runs_dir = Path(runs_dir) if runs_dir else None
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._stop_dir = tempfile.mkdtemp(prefix="fatviz-stop-")
        self._pool: ProcessPoolExecutor | None = None
        self._warming: list[Future] = []
        self._events: Any = None
        if workers > 0:
            # Snapshots arriving from workers unpickle into fatviz.train classes: import them
            # now, not on the first frame.
            import fatviz.train  # noqa: F401

            ctx = mp.get_context(start_method)  # spawn by default: fork is unsafe in a threaded server
            self._events = ctx.Queue()
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                             initargs=(self._events, self._stop_dir, warm_up, niceness))
            self._warming = [self._pool.submit(_warm) for _ in range(workers)]
            threading.Thread(target=self._collect, daemon=True, name="fatviz-collector").start()

    def ready(self, timeout: float | None = None) -> bool:
        """Wait until the worker processes have started and warmed up (True when they have)."""
        from concurrent.futures import wait

        _, pending = wait(self._warming, timeout=timeout)
        return not pending

    # -- events from workers -------------------------------------------------------------
    def _collect(self) -> None:
        while True:
            try:
                key, option, payload = self._events.get(timeout=1.0)
            except queue_mod.Empty:
                continue
            except (EOFError, OSError):
                return
            self._deliver(key, option, payload)

    def _deliver(self, key: str, option: str, payload: tuple) -> None:
        job = self._jobs.get(key)
        if job is None:
            return
        if payload[0] == "snapshot":
            job.snapshots.setdefault(option, []).append(payload[1])
            if job.first_frame_seconds is None and job.frames() >= 1:
                job.first_frame_seconds = time.perf_counter() - job.started
            total = job.settings.epochs + 1
            job.progress = (job.frames() / total, f"epoch {max(0, job.frames() - 1)}/{job.settings.epochs}")
            job._notify()
        elif payload[0] == "progress":
            job.progress = (payload[1], payload[2])

    # -- submitting ------------------------------------------------------------------------
    def get(self, key: str) -> Job | None:
        """The job with this key, if one was submitted."""
        return self._jobs.get(key)

    def submit(self, kind: str, settings: RunSettings, options: tuple[str, ...] | None = None) -> Job:
        """Start (or join) the job for these settings; a finished identical job returns at once."""
        if kind not in JOB_KINDS:
            raise FatvizError(f"Unknown job kind {kind!r}.")
        settings = settings.validate()
        if options is None:
            options = CENTROID_OPTIONS if kind == "compare" else (settings.centroid,) if kind == "train" else ("",)
        key = job_key(kind, settings)
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.status != "error" and job.status != "stopped":
                return job
            job = Job(key, kind, settings, tuple(options))
            self._jobs[key] = job
        if self._load_saved(job):
            return job
        job._stop_path = _stop_file(self._stop_dir, key)
        Path(job._stop_path).unlink(missing_ok=True)
        groups = self._groups(kind, tuple(options))
        futures = []
        for group in groups:
            if self._pool is not None:
                futures.append(self._pool.submit(_run_group, kind, settings, group, key))
            else:
                futures.append(self._thread_submit(kind, settings, group, key))
        threading.Thread(target=self._finish, args=(job, futures), daemon=True).start()
        return job

    def _groups(self, kind: str, options: tuple[str, ...]) -> list[tuple[str, ...]]:
        if kind != "compare" or self.workers <= 1:
            return [options]
        n = min(self.workers, len(options))
        return [options[i::n] for i in range(n)]

    def _thread_submit(self, kind: str, settings: RunSettings, group: tuple[str, ...], key: str) -> Future:
        fut: Future = Future()

        def work() -> None:
            try:
                fut.set_result(_run_group(kind, settings, group, key,
                                          emit=lambda o, p: self._deliver(key, o, p), stop_dir=self._stop_dir))
            except BaseException as exc:  # handed to _finish, which reports it
                fut.set_exception(exc)

        threading.Thread(target=work, daemon=True).start()
        return fut

    def _finish(self, job: Job, futures: list[Future]) -> None:
        try:
            found: dict[str, Any] = {}
            for fut in futures:
                found.update(fut.result())
            job.results.update({o: found[o] for o in job.options if o in found})
            stopped = os.path.exists(job._stop_path)
            # Drain events still in flight so the last frames are not lost.
            deadline = time.perf_counter() + 2.0
            while job.kind != "distill" and time.perf_counter() < deadline and any(
                    len(job.snapshots.get(o, [])) < len(job.results[o].snapshots) for o in job.options):
                time.sleep(0.02)
            for o in job.options:
                if job.kind != "distill":
                    job.snapshots[o] = list(job.results[o].snapshots)
            self._save(job)
            job.status = "stopped" if stopped else "done"
            job.progress = (1.0, "stopped" if stopped else "done")
        except FatvizError as exc:
            if os.path.exists(job._stop_path):  # stopped on request (distillation raises when stopped)
                job.status, job.progress = "stopped", (1.0, "stopped")
            else:
                job.status, job.error = "error", str(exc)
        except Exception as exc:  # a worker crash must not take the app down
            job.status = "error"
            job.error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            job.seconds = time.perf_counter() - job.started
            job._done.set()
            job._notify()

    # -- saved runs ------------------------------------------------------------------------
    def run_folder(self, job: Job) -> Path | None:
        """Where a job's runs are saved (one sub-folder per option)."""
        return None if self.runs_dir is None else self.runs_dir / job.key

    def _save(self, job: Job) -> None:
        folder = self.run_folder(job)
        if folder is None:
            return
        if job.kind == "distill":
            from fatviz.distill import save_distillation

            save_distillation(job.results[""], folder)
            return
        from fatviz.runs import save_run

        for option, result in job.results.items():
            save_run(result, folder / option)

    def _load_saved(self, job: Job) -> bool:
        folder = self.run_folder(job)
        if folder is None or not folder.is_dir():
            return False
        try:
            if job.kind == "distill":
                from fatviz.distill import load_distillation

                job.results[""] = load_distillation(folder)
            else:
                from fatviz.runs import load_run

                for option in job.options:
                    job.results[option] = load_run(folder / option)
                    job.snapshots[option] = list(job.results[option].snapshots)
        except FatvizError:
            job.results.clear()
            job.snapshots.clear()
            return False
        job.status, job.progress, job.from_cache = "done", (1.0, "loaded from disk"), True
        job.seconds = 0.0
        job.first_frame_seconds = 0.0
        job._done.set()
        return True

    def shutdown(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

