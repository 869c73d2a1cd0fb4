"""Worker processes that run functions for the server, and the events they send back while they do.

A `WorkerPool` starts its processes (each one thread, its CPU priority lowered if asked, ending
itself when its parent dies), replaces them when one dies, pumps the events the workers put on
their queue to a callback, and with size 0 runs each function in a thread of this process
instead. The job registry (fatviz.serve.jobs) trains on one; the layout service (fatviz.serve.layouts)
fits t-SNE and UMAP on another of one worker.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from fatviz.errors import FatvizError

Event = tuple[str, str, tuple]  # (job key, option, payload)

# Worker-process globals, set once by _init_worker.
_QUEUE: Any = None
_STOP_DIR: str = ""


def _init_worker(events: Any, stop_dir: str, warm_up: Callable[[], None] | None, niceness: int = 0) -> None:
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
    if warm_up is not None:
        warm_up()


def _pid() -> int:
    return os.getpid()


def send(event: Event) -> None:
    """In a worker process: put an event on the pool's queue (dropped where the pool takes none)."""
    if _QUEUE is not None:
        _QUEUE.put(event)


def worker_stop_dir() -> str:
    """In a worker process: the folder where stop requests appear as files."""
    return _STOP_DIR


class WorkerPool:
    """`size` worker processes (0: a thread of this process per call) that run functions and send events."""

    def __init__(self, size: int, stop_dir: str, *, what: str = "training", start_method: str = "spawn",
                 niceness: int = 0, warm_up: Callable[[], None] | None = None,
                 on_event: Callable[[str, str, tuple], None] | None = None) -> None:
        """`what` names the workers in messages; `warm_up` (a module-level function) runs in each worker
        as it starts; `on_event` receives every event the workers send (none are sent without it)."""
        self.size = size
        self.stop_dir = stop_dir
        self.what = what
        self.on_event = on_event
        self.closing = False
        self._start_args = (start_method, niceness, warm_up)
        self._lock = threading.RLock()
        self._executor: ProcessPoolExecutor | None = None
        self._events: Any = None
        self._warming: list[Future] = []

    @property
    def in_processes(self) -> bool:
        """True when calls run in worker processes, False when each runs in a thread here."""
        return self.size > 0

    def start(self) -> None:
        """Start the worker processes (and the thread that pumps their events); nothing for size 0."""
        with self._lock:
            if self.size == 0 or self.closing:
                return
            start_method, niceness, warm_up = self._start_args
            ctx = mp.get_context(start_method)  # spawn by default: fork is unsafe in a threaded server
            events = ctx.Queue() if self.on_event is not None else None
            self._events = events
            self._executor = ProcessPoolExecutor(max_workers=self.size, mp_context=ctx, initializer=_init_worker,
                                                 initargs=(events, self.stop_dir, warm_up, niceness))
            self._warming = [self._executor.submit(_pid) for _ in range(self.size)]
            if events is not None:
                threading.Thread(target=self._pump, args=(events,), daemon=True, name="fatviz-collector").start()

    def restart(self, broken: ProcessPoolExecutor | None = None) -> None:
        """Replace the processes (a worker died) by fresh ones, once, whoever notices first."""
        with self._lock:
            if self.closing or self._executor is None or (broken is not None and self._executor is not broken):
                return
            self._end(self._executor)
            self._executor = None
            self.start()

    def ready(self, timeout: float | None = None) -> bool:
        """Wait until the worker processes have started and warmed up (True when they have)."""
        done, pending = wait(self._warming, timeout=timeout)
        return not pending and not any(f.exception() for f in done)

    def pids(self) -> list[int]:
        """The process ids of the workers alive now (none for size 0)."""
        return [proc.pid for proc in list((getattr(self._executor, "_processes", None) or {}).values())]

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """Run `fn(*args, **kwargs)` in a worker (a dead pool is replaced once first); its future.

        Raises RuntimeError once the pool is shut down, and a FatvizError when no worker can start.
        """
        if self.closing:
            raise RuntimeError(f"the {self.what} workers are shut down")
        if self.size == 0:
            return self._thread_submit(fn, args, kwargs)
        for attempt in range(2):
            with self._lock:
                if self._executor is None:
                    self.start()  # started on the first call (the layout worker)
                elif getattr(self._executor, "_broken", False):
                    self.restart(self._executor)
                executor = self._executor
            if executor is None:
                raise RuntimeError(f"the {self.what} workers are shut down")
            try:
                return executor.submit(fn, *args, **kwargs)
            except BrokenProcessPool:
                if attempt:
                    break
                self.restart(executor)
        raise FatvizError(f"The {self.what} workers cannot be started; restart the app.")

    def executor(self) -> ProcessPoolExecutor | None:
        """The process pool now running (a future failing with BrokenProcessPool names the one to restart)."""
        return self._executor

    def shutdown(self) -> None:
        """End the workers now; calls in flight fail, later calls raise RuntimeError."""
        with self._lock:
            self.closing = True
            executor, self._executor, self._events = self._executor, None, None
        if executor is not None:
            self._end(executor)

    @staticmethod
    def _thread_submit(fn: Callable[..., Any], args: tuple, kwargs: dict) -> Future:
        fut: Future = Future()

        def work() -> None:
            try:
                fut.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # the caller reads it from the future
                fut.set_exception(exc)

        threading.Thread(target=work, daemon=True).start()
        return fut

    def _pump(self, events: Any) -> None:
        while self._events is events and not self.closing:
            try:
                key, option, payload = events.get(timeout=0.5)
            except queue_mod.Empty:
                continue
            except (EOFError, OSError, ValueError):
                return
            if self.on_event is not None:
                self.on_event(key, option, payload)

    @staticmethod
    def _end(executor: ProcessPoolExecutor) -> None:
        # ProcessPoolExecutor offers no public way to end a task in flight; its process table
        # is the one handle on the workers.
        for proc in list((getattr(executor, "_processes", None) or {}).values()):
            try:
                proc.terminate()
            except (OSError, AttributeError):
                pass
        executor.shutdown(wait=False, cancel_futures=True)
