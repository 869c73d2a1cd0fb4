"""Background jobs: deduplication, live snapshots, saving and reloading, stop, errors."""

import time

import pytest

from fatviz.centroids import CENTROIDS
from fatviz.errors import FatvizError
from fatviz.runs import load_run
from fatviz.serve.jobs import JobManager
from fatviz.settings import RunSettings

TINY = RunSettings(dataset="blobs", blob_classes=3, blob_dim=4, epochs=3, batch_size=64, embedding_dim=4,
                   vis_points=30)


def test_identical_requests_share_one_job_and_results_are_saved(tmp_path):
    mgr = JobManager(workers=0, runs_dir=tmp_path)
    job = mgr.submit("compare", TINY)
    assert mgr.submit("compare", TINY) is job  # a second student joins the job in flight
    assert job.wait(120) and job.status == "done", job.error
    assert set(job.snapshots) == set(CENTROIDS.names())
    assert job.frames() == TINY.epochs + 1
    assert job.first_frame_seconds is not None and job.first_frame_seconds <= job.seconds
    saved = load_run(mgr.store.folder(job) / "norm-mean-norm")
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


def test_stop_ends_a_job_early_and_keeps_its_frames_but_saves_nothing(tmp_path):
    mgr = JobManager(workers=0, runs_dir=tmp_path)
    job = mgr.submit("train", TINY.replace(epochs=100))
    while job.frames() < 2:
        time.sleep(0.01)
    assert mgr.stop(job)
    assert job.wait(60)
    assert job.status == "stopped"
    assert 2 <= job.frames() < 101
    assert not list(tmp_path.glob("**/run.pt"))  # a truncated run never reaches the disk


def test_train_again_after_a_stop_really_trains(tmp_path):
    mgr = JobManager(workers=0, runs_dir=tmp_path)
    settings = TINY.replace(epochs=60)
    job = mgr.submit("train", settings)
    while job.frames() < 2:
        time.sleep(0.01)
    mgr.stop(job)
    assert job.wait(60) and job.status == "stopped"
    again = mgr.submit("train", settings)
    assert again is not job and not again.from_cache
    assert again.wait(300) and again.status == "done", again.error
    assert again.frames() == settings.epochs + 1
    # A restart (new manager) serves the full run from disk, never the stopped one.
    cached = JobManager(workers=0, runs_dir=tmp_path).submit("train", settings)
    assert cached.from_cache and cached.frames() == settings.epochs + 1
    # retrain=True trains a finished run again instead of serving it.
    fresh = mgr.submit("train", settings, retrain=True)
    assert fresh is not again and not fresh.from_cache
    assert fresh.wait(300) and fresh.status == "done"


def test_one_viewers_stop_does_not_stop_a_job_others_watch(tmp_path):
    mgr = JobManager(workers=0, runs_dir=None)
    settings = TINY.replace(epochs=40, seed=11)
    job = mgr.submit("train", settings, viewer="alice")
    assert mgr.submit("train", settings, viewer="bob") is job
    assert not mgr.stop(job, viewer="alice")  # bob still watches: it goes on
    assert not job.stop_requested
    assert mgr.stop(job, viewer="bob")  # the last viewer stops it
    assert job.wait(60) and job.status == "stopped"


def test_the_budget_refuses_an_oversized_job_before_registering_it(tmp_path):
    from fatviz.serve.budget import Budget, estimate
    from fatviz.serve.jobs import job_key

    mgr = JobManager(workers=0, runs_dir=tmp_path, budget=Budget(max_active=1, memory=2e9, seconds=600))
    huge = RunSettings(dataset="blobs", blob_classes=20, vis_points=1000, epochs=100, embedding_dim=128)
    assert estimate("compare", huge).memory > estimate("compare", TINY).memory
    big = TINY.replace(vis_points=1000, epochs=100, embedding_dim=128, batch_size=1024, loss="triplet-all")
    with pytest.raises(FatvizError, match="memory"):
        mgr.submit("compare", big)
    assert mgr.get(job_key("compare", big)) is None  # refused: never registered, never "starting" forever
    slow = RunSettings(dataset="mnist", data_root=str(tmp_path), epochs=100)
    with pytest.raises(FatvizError, match="minutes"):
        mgr.submit("compare", slow)
    first = mgr.submit("train", TINY.replace(epochs=50))
    with pytest.raises(FatvizError, match="busy"):
        mgr.submit("train", TINY.replace(epochs=50, seed=1))
    mgr.stop(first)
    assert first.wait(60)


def test_finished_jobs_are_forgotten_after_a_while_but_stay_on_disk(tmp_path):
    mgr = JobManager(workers=0, runs_dir=tmp_path, forget_after=0.0)
    job = mgr.submit("train", TINY)
    assert job.wait(120) and job.status == "done"
    time.sleep(0.01)
    again = mgr.submit("train", TINY)
    assert again is not job and again.from_cache  # dropped from memory, answered from disk


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
        result = job.result
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


def test_a_killed_worker_fails_its_job_and_the_next_job_succeeds(tmp_path):
    import os
    import signal

    mgr = JobManager(workers=1, runs_dir=tmp_path, warm_up=False)
    try:
        job = mgr.submit("train", TINY.replace(epochs=100))
        assert job.wait_frames(1, timeout=180)
        for pid in mgr.pool.pids():
            os.kill(pid, signal.SIGKILL)  # what the kernel's OOM killer does
        assert job.wait(60)
        assert job.status == "error" and "stopped unexpectedly" in job.error
        assert not list(tmp_path.glob("**/run.pt"))
        after = mgr.submit("train", TINY)
        assert after.wait(300) and after.status == "done", after.error
    finally:
        mgr.shutdown()


def test_workers_can_run_at_a_lower_cpu_priority(tmp_path):
    import os

    if not hasattr(os, "nice"):
        pytest.skip("os.nice is Unix-only")
    mgr = JobManager(workers=1, runs_dir=None, warm_up=False, niceness=5)
    try:
        pid = mgr.pool.submit(os.getpid).result(timeout=120)
        assert os.getpriority(os.PRIO_PROCESS, pid) >= os.getpriority(os.PRIO_PROCESS, 0) + 5
    finally:
        mgr.shutdown()


def test_seconds_left_is_estimated_from_the_progress_so_far():
    from fatviz.serve.jobs import Job

    job = Job("k", "train", TINY, ("mean",))
    assert job.seconds_left() == float("inf")  # no progress yet: no estimate
    job.started = time.perf_counter() - 3.0
    job.progress = (0.25, "epoch 1/3")
    assert job.seconds_left() == pytest.approx(9.0, abs=0.2)  # a quarter in 3 s: nine more
    job.progress = (1.0, "done")
    assert job.seconds_left() == pytest.approx(0.0)


def test_every_distillation_setting_that_adds_training_can_tip_it_over_the_time_limit():
    from fatviz.serve.budget import Budget, estimate

    base = TINY.replace(teacher_epochs=5, teacher_rounds=3, round_epochs=3, cv_epochs=3, baselines="none", epochs=10)
    limit = Budget(max_active=4, memory=1e12, seconds=estimate("distill", base).seconds * 1.001)
    limit.check("distill", base, active=0)  # fits
    for more in (dict(teacher_epochs=6), dict(teacher_rounds=4), dict(round_epochs=4), dict(cv_epochs=4),
                 dict(baselines="fat"), dict(epochs=11)):
        with pytest.raises(FatvizError, match="minutes"):
            limit.check("distill", base.replace(**more), active=0)
    assert estimate("distill", base.replace(baselines="all")).seconds > estimate("distill", base.replace(
        baselines="fat")).seconds
    # A setting that adds no epoch (the soft labels' temperature) fits the same.
    limit.check("distill", base.replace(temperature=2.0), active=0)
