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

Job kinds live in fatviz.job_kinds and the budget in fatviz.budget; what stays here (about 480
lines) is the worker pool and its life cycle, which only make sense together.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import signal
import tempfile
import threading
import time
import traceback
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fatviz.budget import Budget
from fatviz.errors import FatvizError
from fatviz.job_kinds import JOB_KINDS, Emit, JobKind
from fatviz.settings import RunSettings

WORKER_DIED = ("The training worker stopped unexpectedly (it may have run out of memory or been killed), "
               "so this job ended without a result and nothing was saved. The next job starts a fresh worker; "
               "smaller settings (fewer points, epochs or samples) fit better.")

THREAD_STOP_SECONDS = 10.0  # at shutdown, how long a training or layout thread of this process is waited for


# -- worker processes ------------------------------------------------------------------------------

# Worker-process globals, set once by _init_worker.
_QUEUE: Any = None
_STOP_DIR: str = ""


def _init_worker(events: Any, stop_dir: str, warm_up: bool, niceness: int = 0) -> None:
    global _QUEUE, _STOP_DIR
    _QUEUE, _STOP_DIR = events, stop_dir
    # Ctrl+C reaches the whole process group: the parent ends its workers, so they ignore it
    # (no KeyboardInterrupt traceback from each worker).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A forked worker inherits the parent's handlers (the CLI turns SIGTERM into Ctrl+C); a
    # worker the parent terminates should simply end.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # A parent killed outright (kill -9, the OOM killer) cannot end its workers: each worker ends
    # itself once its parent is gone, instead of training on for nobody (seen: orphans for an hour).
    parent = os.getppid()

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True, name="fatviz-parent-watch").start()
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
    user waits: a tiny run with snapshots. Without it the first demo's first frame came 8-9 s
    after the click."""
    from fatviz.train import prepare_data, train

    settings = RunSettings(epochs=1, subsample=200, vis_points=50)
    train(settings, prepare_data(settings))


def _warm() -> int:
    return os.getpid()


def _stop_file(stop_dir: str, key: str) -> str:
    return os.path.join(stop_dir, f"stop-{key}")


def _run_job(kind: str, settings: RunSettings, options: tuple[str, ...], key: str,
             emit: Emit | None = None, stop_dir: str = "") -> dict[str, Any]:
    """Run (part of) a job. In a worker process, events go to the queue set up by _init_worker;
    in-process callers pass `emit` directly."""
    stop_path = _stop_file(stop_dir or _STOP_DIR, key)

    if emit is None:
        def emit(option: str, payload: tuple) -> None:
            if _QUEUE is not None:
                _QUEUE.put((key, option, payload))

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
    layouts: dict[str, Any] = field(default_factory=dict)  # method -> fatviz.layouts.Layout
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
    """Runs jobs in `workers` processes (0: a thread in this process), deduplicated by settings."""

    def __init__(self, workers: int = 2, runs_dir: str | os.PathLike | None = "runs", warm_up: bool = True,
                 start_method: str = "spawn", niceness: int = 0, budget: Budget | None = None,
                 forget_after: float = 900.0) -> None:
        """`warm_up` runs a tiny training in each worker at start (the app: workers start when a
        page opens, long before the click); a one-shot CLI call skips it. `start_method` "fork"
        saves the workers' imports, but is only safe in a single-threaded caller (the CLI).
        `niceness` lowers the workers' CPU priority (Unix), so that on a laptop whose cores all
        train, the page and the browser that draw the epochs are served first. `budget` (the app
        passes `Budget.for_machine`) refuses jobs that do not fit; None accepts all. Finished jobs
        are dropped from memory `forget_after` seconds after they end (they stay on disk)."""
        self.workers = workers
        self.runs_dir = Path(runs_dir) if runs_dir else None
        self.budget = budget
        self.forget_after = forget_after
        self._jobs: dict[str, Job] = {}
        self._lock = threading.RLock()
        self._stop_dir = tempfile.mkdtemp(prefix="fatviz-stop-")
        self._pool: ProcessPoolExecutor | None = None
        self._layout_pool: ProcessPoolExecutor | None = None  # one process for t-SNE/UMAP, started on demand
        self._warming: list[Future] = []
        self._events: Any = None
        self._closing = False
        self._pool_args = (start_method, warm_up, niceness)
        if workers > 0:
            # Snapshots arriving from workers unpickle into fatviz.train classes: import them
            # now, not on the first frame.
            import fatviz.train  # noqa: F401

            self._start_pool()
        # Interpreter exit joins the pool's threads, which wait for the training in flight (seen:
        # 13-41 s after SIGTERM); with workers=0 it would end the interpreter under a training
        # thread (C++ "terminate called", exit 134). Registered here, this runs first and ends both.
        try:
            threading._register_atexit(self.shutdown)  # the hook concurrent.futures itself uses
        except (AttributeError, RuntimeError):
            pass

    def _start_pool(self) -> None:
        start_method, warm_up, niceness = self._pool_args
        ctx = mp.get_context(start_method)  # spawn by default: fork is unsafe in a threaded server
        events = ctx.Queue()
        self._events = events
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_init_worker,
                                         initargs=(events, self._stop_dir, warm_up, niceness))
        self._warming = [self._pool.submit(_warm) for _ in range(self.workers)]
        threading.Thread(target=self._collect, args=(events,), daemon=True, name="fatviz-collector").start()

    def _restart_pool(self, broken: ProcessPoolExecutor | None) -> None:
        """Replace a broken pool (a worker died) by a fresh one, once, whoever notices first."""
        with self._lock:
            if self._closing or self._pool is not broken or broken is None:
                return
            self._kill_workers(broken)
            broken.shutdown(wait=False, cancel_futures=True)
            self._start_pool()

    def ready(self, timeout: float | None = None) -> bool:
        """Wait until the worker processes have started and warmed up (True when they have)."""
        from concurrent.futures import wait

        done, pending = wait(self._warming, timeout=timeout)
        return not pending and not any(f.exception() for f in done)

    # -- events from workers -------------------------------------------------------------
    def _collect(self, events: Any) -> None:
        while self._events is events and not self._closing:
            try:
                key, option, payload = events.get(timeout=0.5)
            except queue_mod.Empty:
                continue
            except (EOFError, OSError, ValueError):
                return
            self._deliver(key, option, payload)

    def _deliver(self, key: str, option: str, payload: tuple) -> None:
        job = self._jobs.get(key)
        if job is None or job.done:
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
                if viewer is not None:
                    job.viewers.add(viewer)
                return job
            job = Job(key, kind, settings, options)
            if viewer is not None:
                job.viewers.add(viewer)
            if not retrain and self._load_saved(job, spec):
                self._jobs[key] = job
                return job
            if self.budget is not None:
                self.budget.check(kind, settings, self.active())
            job._stop_path = _stop_file(self._stop_dir, key)
            Path(job._stop_path).unlink(missing_ok=True)
            futures = self._start(job, spec)  # raises before the job is registered if it cannot start
            self._jobs[key] = job
        threading.Thread(target=self._finish, args=(job, spec, futures), daemon=True).start()
        return job

    def _start(self, job: Job, spec: JobKind) -> list[Future]:
        n = min(self.workers, len(job.options)) if spec.splits and self.workers > 1 else 1
        groups = [job.options[i::n] for i in range(n)]
        if self._pool is None:
            return [self._thread_submit(job.kind, job.settings, g, job.key) for g in groups]
        for attempt in range(2):
            pool = self._pool
            try:
                return [pool.submit(_run_job, job.kind, job.settings, g, job.key) for g in groups]
            except BrokenProcessPool:
                if attempt:
                    raise FatvizError("The training workers cannot be started; restart the app.") from None
                self._restart_pool(pool)
        raise AssertionError("unreachable")

    def _thread_submit(self, kind: str, settings: RunSettings, group: tuple[str, ...], key: str) -> Future:
        fut: Future = Future()

        def work() -> None:
            try:
                fut.set_result(_run_job(kind, settings, group, key,
                                        emit=lambda o, p: self._deliver(key, o, p), stop_dir=self._stop_dir))
            except BaseException as exc:  # handed to _finish, which reports it
                fut.set_exception(exc)

        threading.Thread(target=work, daemon=True).start()
        return fut

    def _finish(self, job: Job, spec: JobKind, futures: list[Future]) -> None:
        pool = self._pool
        try:
            found: dict[str, Any] = {}
            for fut in futures:
                found.update(fut.result())
            if job.stop_requested or self._closing:
                # A stopped run is never saved nor served as finished: its epochs stay on screen
                # for whoever watched, and the next request trains it again.
                self._take_results(job, spec, found)
                job._end("stopped", "stopped")
                return
            self._take_results(job, spec, found)
            self._save(job, spec)
            job._end("done", "done")
        except BrokenProcessPool:
            job._end("error", "The app is shutting down." if self._closing else WORKER_DIED)
            self._restart_pool(pool)
        except FatvizError as exc:
            if job.stop_requested:  # stopped on request (distillation raises when stopped)
                job._end("stopped", "stopped")
            else:
                job._end("error", str(exc))
        except Exception as exc:  # a worker crash must not take the app down
            if self._closing:
                job._end("error", "The app is shutting down.")
            else:
                traceback.print_exc()
                job._end("error", f"{type(exc).__name__}: {exc}")
        except BaseException:  # an interrupt inside a worker while the process shuts down
            job._end("error", "The app is shutting down.")
        finally:
            if not job.done:
                job._end("error", "The job ended unexpectedly.")

    def _take_results(self, job: Job, spec: JobKind, found: dict[str, Any]) -> None:
        job.results.update({o: found[o] for o in job.options if o in found})
        if not spec.snapshots:
            return
        # Drain events still in flight so the last frames are not lost, then take the full lists.
        deadline = time.perf_counter() + 2.0
        while time.perf_counter() < deadline and any(
                len(job.snapshots.get(o, [])) < len(job.results[o].snapshots) for o in job.results):
            time.sleep(0.02)
        for o, result in job.results.items():
            job.snapshots[o] = list(result.snapshots)

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

    # -- t-SNE and UMAP layouts ----------------------------------------------------------
    def layout(self, job: Job, method: str):
        """The t-SNE or UMAP layout of a snapshot job's epochs (fatviz.layouts.Layout): loaded from
        beside its saved runs, or fitted in the background as its epochs arrive (one layout per
        job and method, shared by every viewer)."""
        from fatviz import layouts
        from fatviz.runs import run_folders

        def folders() -> dict:
            folder = self.run_folder(job)
            return {} if folder is None or not folder.is_dir() else run_folders(folder, job.options)

        with self._lock:
            layout = job.layouts.get(method)
            if layout is not None and layout.status != "error":
                return layout
            if job.status == "done":
                layout = layouts.load_saved(method, {o: list(job.snapshots.get(o, [])) for o in job.options},
                                            folders())
            if layout is None:
                layout = layouts.Layout(method, job.options)
                executor = self._layout_executor()
                threading.Thread(target=layouts.follow,
                                 args=(job, layout, job.settings.seed, executor, folders, lambda: self._closing),
                                 daemon=True, name=f"fatviz-layout-{method}").start()
            job.layouts[method] = layout
            return layout

    def _layout_executor(self) -> ProcessPoolExecutor | None:
        """The process that fits layouts (None with workers=0: fitted in the following thread)."""
        if self.workers == 0 or self._closing:
            return None
        pool = self._layout_pool
        if pool is None or getattr(pool, "_broken", False):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            start_method, _, niceness = self._pool_args
            pool = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context(start_method),
                                       initializer=_init_worker, initargs=(None, self._stop_dir, False, niceness))
            self._layout_pool = pool
        return pool

    # -- saved runs ------------------------------------------------------------------------
    def run_folder(self, job: Job) -> Path | None:
        """Where a job's results are saved (None for data a session uploaded: never saved on the server)."""
        from fatviz.data import DATASETS

        if self.runs_dir is None or DATASETS.get(job.settings.dataset).private:
            return None
        return self.runs_dir / job.key

    def _save(self, job: Job, spec: JobKind) -> None:
        folder = self.run_folder(job)
        if folder is not None:
            spec.save(job.results, folder)

    def _load_saved(self, job: Job, spec: JobKind) -> bool:
        folder = self.run_folder(job)
        if folder is None or not folder.is_dir():
            return False
        try:
            results = spec.load(folder, job.options)
        except FatvizError:
            return False
        if any(getattr(r, "stopped", False) for r in results.values()):
            return False  # a truncated run saved by an older fatviz: train it properly
        job.results.update(results)
        if spec.snapshots:
            job.snapshots.update({o: list(r.snapshots) for o, r in results.items()})
        job.from_cache, job.first_frame_seconds = True, 0.0
        job.started = time.perf_counter()
        job._end("done", "loaded from disk")
        return True

    # -- ending ------------------------------------------------------------------------------
    @staticmethod
    def _kill_workers(pool: ProcessPoolExecutor) -> None:
        # ProcessPoolExecutor offers no public way to end a task in flight; its process table
        # is the one handle on the workers.
        for proc in list(getattr(pool, "_processes", {}).values() or []):
            try:
                proc.terminate()
            except (OSError, AttributeError):
                pass

    def shutdown(self) -> None:
        """End the worker processes now; jobs in flight end as stopped and are not saved."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            running = [j for j in self._jobs.values() if not j.done]
        for job in running:
            job.stop()
        for pool in (self._pool, self._layout_pool):
            if pool is not None:
                self._kill_workers(pool)
                pool.shutdown(wait=False, cancel_futures=True)
        # Training and layouts in threads of this process stop at their next batch or epoch.
        for job in running if self._pool is None else ():
            job.wait(THREAD_STOP_SECONDS)
        for layout in [la for j in list(self._jobs.values()) for la in j.layouts.values()]:
            layout.wait(THREAD_STOP_SECONDS)
