"""Background jobs: runs train in worker processes and stream snapshots back as they are made.

One JobManager per app (or CLI call). Identical requests share one job: thirty students
opening the same preset start one training, and every later request for the same
settings is answered from memory or from the saved runs on disk.

A classroom server must survive its visitors, so the manager also
- refuses a job that does not fit (`Budget`: queue length, estimated memory and time),
  with one message, before anything starts;
- heals itself: a worker that dies (out of memory, killed) fails its jobs with one
  message and the pool is rebuilt for the next request;
- never saves a stopped job, and stops a shared job only when its last viewer stops it;
- ends its workers at once when the process exits (SIGTERM, Ctrl+C), without saving the
  interrupted jobs.

What a job of each kind runs lives in fatviz.job_kinds, what the server accepts in fatviz.serve.budget,
the worker processes in fatviz.serve.pool, the saved results in fatviz.serve.run_store and the t-SNE/UMAP
layouts in fatviz.serve.layouts; here is the registry of jobs: submitting, sharing, stopping, finishing.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import traceback
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fatviz.errors import FatvizError
from fatviz.job_kinds import JOB_KINDS, Emit, JobKind
from fatviz.serve import pool
from fatviz.serve.budget import Budget
from fatviz.serve.pool import WorkerPool
from fatviz.serve.run_store import RunStore
from fatviz.settings import RunSettings

__all__ = ["Budget", "Job", "JobManager", "job_key"]

WORKER_DIED = ("The training worker stopped unexpectedly (it may have run out of memory or been killed), "
               "so this job ended without a result and nothing was saved. The next job starts a fresh worker; "
               "smaller settings (fewer points, epochs or samples) fit better.")

THREAD_STOP_SECONDS = 10.0  # at shutdown, how long a training or layout thread of this process is waited for


def _warm_up() -> None:
    """Pay the first-call costs (lazy imports, allocator, sklearn, the digits file) before any
    user waits: a tiny run with snapshots. Without it the first demo's first frame came 8-9 s
    after the click."""
    from fatviz.train import prepare_data, train

    settings = RunSettings(epochs=1, subsample=200, vis_points=50)
    train(settings, prepare_data(settings))


def _stop_file(stop_dir: str, key: str) -> str:
    return os.path.join(stop_dir, f"stop-{key}")


def _run_job(kind: str, settings: RunSettings, options: tuple[str, ...], key: str,
             emit: Emit | None = None, stop_dir: str = "") -> dict[str, Any]:
    """Run (part of) a job. In a worker process, events go to the pool's queue; in-process callers
    pass `emit` directly."""
    stop_path = _stop_file(stop_dir or pool.worker_stop_dir(), key)

    if emit is None:
        def emit(option: str, payload: tuple) -> None:
            pool.send((key, option, payload))

    return JOB_KINDS.get(kind).run(settings, options, emit, lambda: os.path.exists(stop_path))


# -- jobs --------------------------------------------------------------------------------------------


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
    finished_at: float | None = None  # time.monotonic() when it ended
    from_cache: bool = False
    viewers: set = field(default_factory=set)
    layouts: dict[str, Any] = field(default_factory=dict)  # method -> fatviz.serve.layouts.Layout
    _done: threading.Event = field(default_factory=threading.Event)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _stop_path: str = ""

    @property
    def done(self) -> bool:
        """True once the job finished, failed or was stopped."""
        return self._done.is_set()

    @property
    def result(self) -> Any:
        """The result of a one-part job (a distillation, a single run); None until done."""
        return next(iter(self.results.values()), None)

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
        """Ask the workers to stop after their current batch (whoever else is watching)."""
        if self._stop_path and not self.done:
            Path(self._stop_path).touch()

    @property
    def stop_requested(self) -> bool:
        """True once a stop was asked for."""
        return bool(self._stop_path) and os.path.exists(self._stop_path)

    def frames(self) -> int:
        """Number of epochs every option has reached (the animation can show this many)."""
        if not self.snapshots or len(self.snapshots) < len(self.options):
            return 0
        return min(len(v) for v in self.snapshots.values())

    def _take_event(self, option: str, payload: tuple) -> None:
        """A worker's event: a snapshot of one option's epoch, or (fraction, words) of progress."""
        if payload[0] == "snapshot":
            self.snapshots.setdefault(option, []).append(payload[1])
            if self.first_frame_seconds is None and self.frames() >= 1:
                self.first_frame_seconds = time.perf_counter() - self.started
            total = self.settings.epochs + 1
            self.progress = (self.frames() / total, f"epoch {max(0, self.frames() - 1)}/{self.settings.epochs}")
            self._notify()
        elif payload[0] == "progress":
            self.progress = (payload[1], payload[2])

    def _take_results(self, found: dict[str, Any], snapshots: bool) -> None:
        """Keep the workers' results; with `snapshots`, wait briefly for frames still in flight, then take all."""
        self.results.update({o: found[o] for o in self.options if o in found})
        if not snapshots:
            return
        deadline = time.perf_counter() + 2.0
        while time.perf_counter() < deadline and any(
                len(self.snapshots.get(o, [])) < len(self.results[o].snapshots) for o in self.results):
            time.sleep(0.02)
        for o, result in self.results.items():
            self.snapshots[o] = list(result.snapshots)

    def _end(self, status: str, message: str = "") -> None:
        self.status = status
        if status == "error":
            self.error = message
        self.progress = (1.0, message if status != "error" else "failed")
        self.seconds = time.perf_counter() - self.started
        self.finished_at = time.monotonic()
        self._done.set()
        self._notify()


def job_key(kind: str, settings: RunSettings) -> str:
    """Jobs with equal kind and equal settings (of what that kind reads) are the same job."""
    return f"{kind}-{settings.key(kind)}"


class JobManager:
    """The registry of jobs, deduplicated by settings, trained on `workers` processes (0: threads here)."""

    def __init__(self, workers: int = 2, runs_dir: str | os.PathLike | None = "runs", warm_up: bool = True,
                 start_method: str = "spawn", niceness: int = 0, budget: Budget | None = None,
                 forget_after: float = 900.0) -> None:
        """`warm_up` runs a tiny training in each worker as it starts (the app; a one-shot CLI call skips
        it); `start_method` "fork" saves the workers' imports but suits only a single-threaded caller;
        `niceness` lowers the workers' CPU priority so the pages drawing the epochs come first; `budget`
        refuses jobs that do not fit (None accepts all); finished jobs leave memory `forget_after`
        seconds after they end (they stay on disk)."""
        from fatviz.serve.layouts import LayoutService

        self.workers = workers
        self.budget = budget
        self.forget_after = forget_after
        self.store = RunStore(runs_dir)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.RLock()
        self._closing = False
        stop_dir = tempfile.mkdtemp(prefix="fatviz-stop-")
        self.pool = WorkerPool(workers, stop_dir, start_method=start_method, niceness=niceness,
                               warm_up=_warm_up if warm_up else None, on_event=self._deliver)
        layout_pool = (WorkerPool(1, stop_dir, what="layout", start_method=start_method, niceness=niceness)
                       if workers else None)  # started on the first t-SNE/UMAP request
        self.layouts = LayoutService(layout_pool, self.store)
        if workers > 0:
            # Snapshots arriving from workers unpickle into fatviz.train classes: import them
            # now, not on the first frame.
            import fatviz.train  # noqa: F401

            self.pool.start()
        # Interpreter exit joins the pool's threads, which wait for the training in flight (seen:
        # 13-41 s after SIGTERM); with workers=0 it would end the interpreter under a training
        # thread (C++ "terminate called", exit 134). Registered here, this runs first and ends both.
        try:
            threading._register_atexit(self.shutdown)  # the hook concurrent.futures itself uses
        except (AttributeError, RuntimeError):
            pass

    def get(self, key: str) -> Job | None:
        """The job with this key, if one was submitted and is still remembered."""
        return self._jobs.get(key)

    def active(self) -> int:
        """Jobs training or waiting for a worker."""
        return sum(not j.done for j in self._jobs.values())

    def submit(self, kind: str, settings: RunSettings, options: tuple[str, ...] | None = None, *,
               viewer: str | None = None, retrain: bool = False) -> Job:
        """Start (or join) the job for these settings; a finished identical job returns at once.

        `viewer` names who asked (a browser session), so that Stop can tell whether others are
        watching. `retrain` trains again even when a finished run exists (in memory or on disk);
        a job still training is joined. Raises a FatvizError when the budget refuses the job.
        """
        spec = JOB_KINDS.get(kind)
        if self._closing:
            raise FatvizError("The server is shutting down; no new job starts.")
        options = tuple(options) if options is not None else tuple(spec.options(settings))
        key = job_key(kind, settings)
        with self._lock:
            self._forget_old()
            job = self._jobs.get(key)
            if job is not None and (not job.done or (job.status == "done" and not retrain)):
                job.viewers.update({viewer} - {None})
                return job
            job = Job(key, kind, settings, options)
            job.viewers.update({viewer} - {None})
            saved = None if retrain else self.store.load(job)
            if saved is not None:
                self._jobs[key] = _loaded(job, spec, saved)
                return job
            if self.budget is not None:
                self.budget.check(kind, settings, self.active())
            job._stop_path = _stop_file(self.pool.stop_dir, key)
            Path(job._stop_path).unlink(missing_ok=True)
            futures = self._start(job, spec)  # raises before the job is registered if it cannot start
            self._jobs[key] = job
        threading.Thread(target=self._finish, args=(job, spec, futures), daemon=True).start()
        return job

    def _start(self, job: Job, spec: JobKind) -> list[Future]:
        n = min(self.workers, len(job.options)) if spec.splits and self.workers > 1 else 1
        here = {} if self.pool.in_processes else {
            "emit": lambda o, p: self._deliver(job.key, o, p), "stop_dir": self.pool.stop_dir}
        return [self.pool.submit(_run_job, job.kind, job.settings, job.options[i::n], job.key, **here)
                for i in range(n)]

    def _deliver(self, key: str, option: str, payload: tuple) -> None:
        job = self._jobs.get(key)
        if job is not None and not job.done:
            job._take_event(option, payload)

    def _finish(self, job: Job, spec: JobKind, futures: list[Future]) -> None:
        executor = self.pool.executor()
        try:
            found: dict[str, Any] = {}
            for fut in futures:
                found.update(fut.result())
            # A stopped run is never saved nor served as finished: its epochs stay on screen
            # for whoever watched, and the next request trains it again.
            stopped = job.stop_requested or self._closing
            job._take_results(found, spec.snapshots)
            if not stopped:
                self.store.save(job)
            job._end(*(("stopped", "stopped") if stopped else ("done", "done")))
        except BrokenProcessPool:
            job._end("error", "The app is shutting down." if self._closing else WORKER_DIED)
            self.pool.restart(executor)
        except FatvizError as exc:  # stopped on request (distillation raises when stopped), or a user's mistake
            job._end(*(("stopped", "stopped") if job.stop_requested else ("error", str(exc))))
        except Exception as exc:  # a worker crash must not take the app down
            if not self._closing:
                traceback.print_exc()
            job._end("error", "The app is shutting down." if self._closing else f"{type(exc).__name__}: {exc}")
        except BaseException:  # an interrupt inside a worker while the process shuts down
            job._end("error", "The app is shutting down.")
        finally:
            if not job.done:
                job._end("error", "The job ended unexpectedly.")

    def stop(self, job: Job, viewer: str | None = None) -> bool:
        """`viewer` stops watching `job`; it stops only when nobody else watches. True if it stops."""
        with self._lock:
            job.viewers.discard(viewer)
            if job.viewers and viewer is not None:
                return False
        job.stop()
        return True

    def _forget_old(self) -> None:
        """Drop finished jobs from memory a while after they ended (their runs stay on disk)."""
        now = time.monotonic()
        for key in [k for k, j in self._jobs.items()
                    if j.finished_at is not None and now - j.finished_at > self.forget_after]:
            del self._jobs[key]

    def shutdown(self) -> None:
        """End the worker processes now; jobs in flight end as stopped and are not saved."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            running = [j for j in self._jobs.values() if not j.done]
        for job in running:
            job.stop()
        self.pool.shutdown()
        # Training and layouts in threads of this process stop at their next batch or epoch.
        for job in running if not self.pool.in_processes else ():
            job.wait(THREAD_STOP_SECONDS)
        self.layouts.shutdown(list(self._jobs.values()), THREAD_STOP_SECONDS)


def _loaded(job: Job, spec: JobKind, results: dict[str, Any]) -> Job:
    """`job` ended as done with results loaded from disk."""
    job.results.update(results)
    if spec.snapshots:
        job.snapshots.update({o: list(r.snapshots) for o, r in results.items()})
    job.from_cache, job.first_frame_seconds = True, 0.0
    job.started = time.perf_counter()
    job._end("done", "loaded from disk")
    return job
