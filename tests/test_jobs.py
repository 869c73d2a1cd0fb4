"""Background jobs: deduplication, live snapshots, saving and reloading, stop, errors."""

import time

import pytest

from fatviz.centroids import CENTROID_OPTIONS
from fatviz.errors import FatvizError
from fatviz.jobs import JobManager
from fatviz.runs import load_run
from fatviz.settings import RunSettings

TINY = RunSettings(dataset="blobs", blob_classes=3, blob_dim=4, epochs=3, batch_size=64, embedding_dim=4,
                   vis_points=30)


def test_identical_requests_share_one_job_and_results_are_saved(tmp_path):
    mgr = JobManager(workers=0, runs_dir=tmp_path)
    job = mgr.submit("compare", TINY)
    assert mgr.submit("compare", TINY) is job  # a second student joins the job in flight
    assert job.wait(120) and job.status == "done", job.error
    assert set(job.snapshots) == set(CENTROID_OPTIONS)
    assert job.frames() == TINY.epochs + 1
    assert job.first_frame_seconds is not None and job.first_frame_seconds <= job.seconds
    saved = load_run(mgr.run_folder(job) / "norm-mean-norm")
    assert saved.settings.centroid == "norm-mean-norm"
    assert saved.final_metrics == job.results["norm-mean-norm"].final_metrics
    # A new manager (an app restart) answers from disk without training.
    again = JobManager(workers=0, runs_dir=tmp_path).submit("compare", TINY)
    assert again.done and again.from_cache
    assert again.results["mean"].final_metrics == job.results["mean"].final_metrics


def test_a_user_mistake_becomes_the_job_error_not_a_crash(tmp_path):
    mgr = JobManager(workers=0, runs_dir=tmp_path)
    with pytest.raises(FatvizError):
        mgr.submit("compare", TINY.replace(noise="symmetric:3"))
    job = mgr.submit("train", RunSettings(dataset="mnist", data_root=str(tmp_path / "none")))
    assert job.wait(60)
    assert job.status == "error" and "MNIST" in job.error
    assert not any((tmp_path / job.key).glob("**/run.pt"))


def test_stop_ends_a_job_early_and_keeps_its_frames(tmp_path):
    mgr = JobManager(workers=0, runs_dir=tmp_path)
    job = mgr.submit("train", TINY.replace(epochs=200))
    while job.frames() < 2:
        time.sleep(0.01)
    job.stop()
    assert job.wait(60)
    assert job.status == "stopped"
    assert 2 <= job.frames() < 201


def test_worker_processes_stream_the_same_results(tmp_path):
    mgr = JobManager(workers=1, runs_dir=None)
    try:
        job = mgr.submit("train", TINY)
        assert job.wait(300) and job.status == "done", job.error
        local = JobManager(workers=0, runs_dir=None).submit("train", TINY)
        assert local.wait(120)
        assert job.results["norm-mean-norm"].final_metrics == local.results["norm-mean-norm"].final_metrics
        assert len(job.snapshots["norm-mean-norm"]) == TINY.epochs + 1
    finally:
        mgr.shutdown()


def test_distillation_in_a_worker_process_runs_cleanlab(tmp_path):
    settings = RunSettings(dataset="blobs", blob_classes=3, blob_dim=4, noise="symmetric:0.2", epochs=2,
                           teacher_epochs=2, teacher_rounds=1, round_epochs=1, embedding_dim=4, vis_points=30)
    mgr = JobManager(workers=1, runs_dir=tmp_path)
    try:
        job = mgr.submit("distill", settings)
        assert job.wait(300) and job.status == "done", job.error
        result = job.results[""]
        assert 0 <= result.report["cleanlab_f1"] <= 1
        assert len(result.table) == len(result.soft_labels)
    finally:
        mgr.shutdown()


def test_wait_frames_returns_as_soon_as_every_option_has_them(tmp_path):
    mgr = JobManager(workers=0, runs_dir=None)
    job = mgr.submit("compare", TINY.replace(seed=5))
    assert job.wait_frames(1, timeout=120)
    assert job.frames() >= 1
    assert job.wait(120) and job.status == "done", job.error
    started = time.perf_counter()
    assert not job.wait_frames(TINY.epochs + 2, timeout=30)  # more than the run has: a finished job answers at once
    assert time.perf_counter() - started < 5
    assert job.wait_frames(TINY.epochs + 1, timeout=0)


def test_workers_can_run_at_a_lower_cpu_priority(tmp_path):
    import os

    if not hasattr(os, "nice"):
        pytest.skip("os.nice is Unix-only")
    mgr = JobManager(workers=1, runs_dir=None, warm_up=False, niceness=5)
    try:
        pid = mgr._pool.submit(os.getpid).result(timeout=120)
        assert os.getpriority(os.PRIO_PROCESS, pid) >= os.getpriority(os.PRIO_PROCESS, 0) + 5
    finally:
        mgr.shutdown()


def test_seconds_left_is_estimated_from_the_progress_so_far():
    from fatviz.jobs import Job

    job = Job("k", "train", TINY, ("mean",))
    assert job.seconds_left() == float("inf")  # no progress yet: no estimate
    job.started = time.perf_counter() - 3.0
    job.progress = (0.25, "epoch 1/3")
    assert job.seconds_left() == pytest.approx(9.0, abs=0.2)  # a quarter in 3 s: nine more
    job.progress = (1.0, "done")
    assert job.seconds_left() == pytest.approx(0.0)
