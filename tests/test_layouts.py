"""t-SNE/UMAP layouts fitted in the background as a job's snapshots arrive, and kept with its runs."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
from helpers import TINY

from fatviz.projection import project_frames
from fatviz.runs import load_layout
from fatviz.serve.jobs import JobManager
from fatviz.serve.layouts import LAYOUT_WORKER_DIED, Layout, follow


class GrowingJob:
    """A stand-in for a training job whose snapshots the test hands out one epoch at a time."""

    def __init__(self, snapshots: dict[str, list]) -> None:
        self.all, self.options = snapshots, tuple(snapshots)
        self.snapshots: dict[str, list] = {o: [] for o in self.options}
        self.status, self._cond = "running", threading.Condition()
        self.key, self.settings, self.layouts = "growing", TINY, {}

    @property
    def done(self) -> bool:
        return self.status != "running"

    def frames(self) -> int:
        return min(len(v) for v in self.snapshots.values())

    def release(self, n: int, status: str = "running") -> None:
        with self._cond:
            for o in self.options:
                self.snapshots[o] = self.all[o][:n]
            self.status = status
            self._cond.notify_all()

    def wait_frames(self, count: int, timeout: float | None = None) -> bool:
        with self._cond:
            self._cond.wait_for(lambda: self.frames() >= count or self.done, timeout)
        return self.frames() >= count


def trained(tmp_path, method: str = "tsne"):
    mgr = JobManager(workers=0, runs_dir=tmp_path)
    job = mgr.submit("compare", TINY)
    assert job.wait(120) and job.status == "done", job.error
    return mgr, job


def expected(job, option: str, method: str = "tsne"):
    snaps = job.snapshots[option]
    return project_frames([s.embeddings for s in snaps], method, TINY.seed, extra=[s.centres for s in snaps])


def test_a_layout_follows_the_epochs_as_they_arrive_and_each_epoch_starts_from_the_last(tmp_path):
    _, finished = trained(tmp_path)
    job = GrowingJob(finished.snapshots)
    layout = Layout("tsne", job.options)
    thread = threading.Thread(target=follow, args=(job, layout, TINY.seed, None, dict), daemon=True)
    thread.start()
    job.release(2)
    assert layout.wait_frames(2, timeout=60)
    time.sleep(0.3)
    assert layout.frames() == 2 and not layout.done  # it waits for the next epoch
    job.release(4, status="done")
    thread.join(60)
    assert layout.done and layout.status == "done" and layout.frames() == 4
    for option in job.options:
        points, centres = expected(finished, option)  # all epochs at once: the same frames (causal)
        for got, want in zip(layout.points[option], points, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(layout.centres[option][-1], centres[-1], rtol=1e-4, atol=1e-4)
    panels = layout.panels(job.snapshots)
    assert [p.epochs for p in panels] == [[0, 1, 2, 3]] * 4


def test_a_finished_layout_is_saved_with_each_run_and_loaded_by_the_next_visitor(tmp_path):
    mgr, job = trained(tmp_path)
    layout = mgr.layouts.layout(job, "tsne")
    assert mgr.layouts.layout(job, "tsne") is layout  # every viewer shares it
    assert layout.wait_frames(job.frames(), timeout=120)
    deadline = time.monotonic() + 30
    while not layout.done and time.monotonic() < deadline:
        time.sleep(0.05)
    assert layout.status == "done", layout.error
    folder = mgr.store.folder(job)
    for option in job.options:
        saved = load_layout(folder / option, "tsne", job.snapshots[option])
        assert saved is not None
        np.testing.assert_array_equal(saved[0][-1], layout.points[option][-1])
    # An app restart: the runs and their layout come from disk, nothing is fitted.
    again_mgr = JobManager(workers=0, runs_dir=tmp_path)
    again = again_mgr.submit("compare", TINY)
    loaded = again_mgr.layouts.layout(again, "tsne")
    assert again.from_cache and loaded.from_disk and loaded.done and loaded.frames() == job.frames()
    np.testing.assert_array_equal(loaded.points["mean"][2], layout.points["mean"][2])


def test_a_damaged_or_stale_layout_file_is_fitted_again(tmp_path):
    mgr, job = trained(tmp_path)
    layout = mgr.layouts.layout(job, "tsne")
    layout.wait_frames(job.frames(), timeout=120)
    while not layout.done:
        time.sleep(0.05)
    folder = mgr.store.folder(job)
    (folder / "mean" / "layout-tsne.npz").write_bytes(b"not a layout")
    assert load_layout(folder / "mean", "tsne", job.snapshots["mean"]) is None
    assert load_layout(folder / "norm-mean", "tsne", job.snapshots["norm-mean"][:2]) is None  # other epochs
    fresh = JobManager(workers=0, runs_dir=tmp_path)
    again = fresh.submit("compare", TINY)
    refit = fresh.layouts.layout(again, "tsne")
    assert not refit.from_disk
    assert refit.wait_frames(again.frames(), timeout=120)
    np.testing.assert_allclose(refit.points["mean"][-1], layout.points["mean"][-1], rtol=1e-4, atol=1e-4)


def test_a_stopped_job_keeps_the_epochs_laid_out_and_saves_nothing(tmp_path):
    _, finished = trained(tmp_path)
    job = GrowingJob(finished.snapshots)
    layout = Layout("tsne", job.options)
    job.release(2, status="stopped")
    saved = []
    follow(job, layout, TINY.seed, None, lambda: saved.append(1) or {})
    assert layout.status == "stopped" and layout.frames() == 2 and not saved


def test_a_killed_layout_worker_ends_the_layout_with_one_message_and_the_next_request_fits_again(tmp_path):
    _, finished = trained(tmp_path)
    mgr = JobManager(workers=1, runs_dir=None, warm_up=False)
    try:
        job = GrowingJob(finished.snapshots)
        job.release(1)
        layout = mgr.layouts.layout(job, "tsne")  # fitted in the layout process
        assert layout.wait_frames(1, timeout=180), layout.error
        np.testing.assert_allclose(layout.points["mean"][0], expected(finished, "mean")[0][0], rtol=1e-4, atol=1e-4)
        for pid in mgr.layouts.pool.pids():
            os.kill(pid, signal.SIGKILL)
        job.release(4, status="done")
        deadline = time.monotonic() + 60
        while not layout.done and time.monotonic() < deadline:
            time.sleep(0.05)
        assert layout.status == "error" and layout.error == LAYOUT_WORKER_DIED
        again = mgr.layouts.layout(job, "tsne")
        assert again is not layout
        assert again.wait_frames(4, timeout=180), again.error
    finally:
        mgr.shutdown()
