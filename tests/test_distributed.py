"""fatviz.distributed on two CPU processes (gloo), launched the way a user launches them: torchrun.

This module is also the workers' script: `torchrun ... tests/test_distributed.py SCENARIO OUT`
runs `_train_worker` or `_fail_worker` on every rank, which write what they saw under OUT.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fatviz.centroids import CENTROIDS, compute_centroids
from fatviz.distributed import rank_seed, rank_shard
from fatviz.settings import RunSettings

REPO = Path(__file__).resolve().parents[1]
SETTINGS = RunSettings(dataset="blobs", blob_classes=3, blob_dim=4, epochs=2, batch_size=32, embedding_dim=4,
                       vis_points=30, device="cpu")
FIELDS = ("centres", "counts", "radius", "mean_distance")
# A launch pays torch's and fatviz's import twice over on two busy cores: a hang guard, not a timing test.
LAUNCH_LIMIT_S = 240


def torchrun(*args: str) -> subprocess.CompletedProcess:
    """A two-process torchrun job of `args` (a script and its arguments, or -m and a module), finished."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=LAUNCH_LIMIT_S)


def launch(scenario: str, out: Path) -> tuple[subprocess.CompletedProcess, float]:
    """Run this file as a two-process torchrun job; return the finished process and its wall time."""
    start = time.time()
    proc = torchrun(__file__, scenario, str(out))
    return proc, time.time() - start


def gloo_threads() -> list[str]:
    """This process's threads that gloo started (Linux names them in /proc)."""
    tasks = Path("/proc/self/task")
    return [n for n in ((t / "comm").read_text().strip() for t in tasks.iterdir()) if "gloo" in n]


def centre_case(n: int = 41, dim: int = 4, k: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features with varied norms, labels with an absent class (k - 1), weights with zeros."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, dim, generator=g) * torch.rand(n, 1, generator=g).mul(4).add(0.1)
    y = torch.randint(0, k - 1, (n,), generator=g)
    w = torch.rand(n, generator=g)
    w[::5] = 0.0
    return x, y, w


# -- workers (run under torchrun) ------------------------------------------------------------------


def _centre_errors(rank: int, world: int) -> dict[str, float]:
    """Largest difference to one process's centroids, per case: option, weighted or not, one call or chunks."""
    from fatviz.distributed import ShardedAccumulator, sharded_centroids

    x, y, w = centre_case()
    shard = torch.arange(len(y))[rank::world]
    errors = {}
    for option in CENTROIDS.names():
        for weights in (None, w):
            ref = compute_centroids(x, y, option, 5, weights=weights)
            got = sharded_centroids(x[shard], y[shard], option, 5, None if weights is None else weights[shard])
            errors[f"{option}/{'weighted' if weights is not None else 'plain'}"] = max(
                float((getattr(got, f) - getattr(ref, f)).abs().max()) for f in FIELDS)
            assert torch.equal(got.present, ref.present)
        # Chunks of 3 on rank 0 and an empty shard on rank 1, which still joins both reductions.
        mine = torch.arange(len(y)) if rank == 0 else torch.arange(0)
        acc = ShardedAccumulator(option, 5, x.shape[1])
        for step in (acc.add, acc.add_radius):
            for start in range(0, len(mine), 3):
                part = mine[start:start + 3]
                step(x[part], y[part], w[part])
        ref, got = compute_centroids(x, y, option, 5, weights=w), acc.result()
        errors[f"{option}/chunks"] = max(float((getattr(got, f) - getattr(ref, f)).abs().max()) for f in FIELDS)
    return errors


def _train_worker(out: Path) -> None:
    from fatviz.distributed import DistributedTrainer, init_from_env, run_distributed_train
    from fatviz.errors import FatvizError

    ranks = init_from_env("cpu")
    report = {"centre_errors": _centre_errors(ranks.rank, ranks.world_size)}
    result, path = run_distributed_train(SETTINGS, out / "run")
    report["path"] = None if path is None else str(path)
    report["losses"] = [s.losses for s in result.snapshots]
    # Batch centres all-reduced every step: the run must keep the ranks in step to finish at all.
    batch = DistributedTrainer(SETTINGS.replace(centres="batch", epochs=1), snapshots=False)
    batch.fit()
    report["batch_mode_finished"] = True
    # Moving-average centres move with the global batch's sums: every rank holds the same ones.
    ema = DistributedTrainer(SETTINGS.replace(centres="ema:0.8", epochs=1), snapshots=False)
    ema.fit()
    report["ema_means"] = ema.centres.moving.means.tolist()
    # Identity-balanced batches: 4 classes x 8 per global batch of 32, so 2 whole classes per rank.
    pk = DistributedTrainer(SETTINGS.replace(blob_classes=4, batch_sampler="pk", pk_k=4, epochs=1), snapshots=False)
    report["pk_counts"] = sorted({int(c) for idx in pk.epoch_batches() for c in torch.bincount(pk.y_train[idx]) if c})
    pk.fit()
    try:  # 3 classes x 10: 15 per rank cannot be whole identities
        DistributedTrainer(SETTINGS.replace(batch_sampler="pk", pk_k=4), snapshots=False)
    except FatvizError as exc:
        report["pk_refused"] = str(exc)
    (out / f"rank{ranks.rank}.json").write_text(json.dumps(report))
    torch.distributed.destroy_process_group()


def _commands_worker(out: Path) -> None:
    """The CLI's data-parallel commands on every rank, as `torchrun -m fatviz ...` runs them; stdout kept per rank."""
    import contextlib
    import io

    from fatviz.cli import main
    from fatviz.distributed import init_from_env, leave_job

    # One group for both commands (joining a torchrun job a second time after leaving it can
    # hang in gloo's rendezvous; a user runs one command per launch, which joins once).
    ranks = init_from_env("cpu")
    rank = os.environ["RANK"]
    threads = {"joined": gloo_threads()}
    common = ["--dataset", "blobs", "--blob-classes", "3", "--blob-dim", "4", "--embedding-dim", "4",
              "--batch-size", "32", "--vis-points", "30", "--device", "cpu", "--json"]
    distill = ["--noise", "symmetric:0.2+outlier:0.1", "--epochs", "2", "--teacher-epochs", "2", "--teacher-rounds", "1",
               "--round-epochs", "1", "--cv-epochs", "1", "--baselines", "all"]
    for name, argv in {"compare": ["compare-centroids", *common, "--epochs", "2", "--out", str(out / "compare")],
                       "distill": ["distill", *common, *distill, "--out", str(out / "distill")]}.items():
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = main(argv)
        (out / f"{name}{rank}.json").write_text(json.dumps({"code": code, "stdout": printed.getvalue()}))
    leave_job(ranks)
    threads["left"] = gloo_threads()
    (out / f"threads{rank}.json").write_text(json.dumps(threads))


def _fail_worker(out: Path) -> None:
    from fatviz.distributed import DistributedTrainer, all_reduce_sums, init_from_env
    from fatviz.train import TrainingDiverged

    ranks = init_from_env("cpu")
    trainer = DistributedTrainer(SETTINGS.replace(epochs=1), snapshots=False)
    if ranks.rank == 1:  # an infinite loss on rank 1 only, with finite gradients: rank 0 alone would go on
        inner = trainer.loss_fn

        def infinite(*args, **kwargs):
            terms = inner(*args, **kwargs)
            return {**terms, "total": terms["total"] + math.inf}
        trainer.loss_fn = infinite
    try:
        trainer.fit()
    except TrainingDiverged as exc:
        (out / f"diverged{ranks.rank}.txt").write_text(str(exc))
    if ranks.rank == 1:
        (out / "raised_at").write_text(repr(time.time()))
        raise RuntimeError("rank 1 fails on purpose")
    all_reduce_sums(torch.zeros(2, 2), torch.zeros(2))  # rank 0 waits here for a rank that is gone


# -- tests -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("distributed")
    proc, seconds = launch("train", out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"two-process launch: {seconds:.1f} s")
    return out, [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_rank_shards_are_disjoint_equal_and_make_the_global_batches() -> None:
    order = torch.randperm(23, generator=torch.Generator().manual_seed(3))
    parts = [rank_shard(order, r, 2, 8) for r in (0, 1)]
    assert len(parts[0]) == len(parts[1]) == 11  # 2 x 8 + 7: the 23rd sample waits for another epoch
    # Batch j of 4 on each rank is global batch j of 8, the last (partial) one too.
    for j in range(0, 11, 4):
        both = parts[0][j:j + 4].tolist() + parts[1][j:j + 4].tolist()
        assert sorted(both) == sorted(order[2 * j:min(2 * j + 8, 22)].tolist())
    # An identity-balanced global batch (P = 4 classes of K = 2 in a row) gives each rank whole classes.
    pk = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3] * 2)
    assert [pk[rank_shard(torch.arange(16), r, 2, 8)].tolist() for r in (0, 1)] == [[0, 0, 1, 1] * 2, [2, 2, 3, 3] * 2]
    assert rank_seed(7, 0) == 7 and rank_seed(7, 1) != 7


def test_sharded_centres_equal_single_process_centres(trained) -> None:
    _, reports = trained
    for report in reports:
        assert len(report["centre_errors"]) == 3 * len(CENTROIDS.names())
        worst = max(report["centre_errors"].items(), key=lambda kv: kv[1])
        assert worst[1] < 1e-5, worst


def test_two_process_run_saves_one_run_like_a_single_process(trained) -> None:
    from fatviz.evaluation import embed_batches
    from fatviz.models import build_model
    from fatviz.runs import load_run
    from fatviz.train import prepare_data, train

    out, reports = trained
    assert reports[1]["path"] is None and reports[0]["path"] is not None  # rank 0 alone saved
    assert reports[0]["losses"] == reports[1]["losses"]  # identical snapshots on every rank
    assert all(r["batch_mode_finished"] for r in reports)
    np.testing.assert_allclose(reports[0]["ema_means"], reports[1]["ema_means"], atol=1e-6)
    assert all(r["pk_counts"] == [8] for r in reports)  # each rank's part of a batch: whole identities
    assert all(r["pk_refused"].startswith("A global batch of P x K = 3 x 10 does not split into 2 equal parts of "
                                          "whole identities") for r in reports)
    run = load_run(out / "run")
    assert run.extras["world_size"] == 2
    assert run.settings == SETTINGS and len(run.snapshots) == SETTINGS.epochs + 1

    # The saved centres are the whole-set centres of the saved weights, as one process computes them.
    data = prepare_data(SETTINGS)
    model = build_model(run.model_kind, tuple(data.dataset.input_shape), SETTINGS.embedding_dim,
                        data.dataset.num_classes)
    model.load_state_dict(run.state_dict)
    emb, _ = embed_batches(model, torch.as_tensor(data.dataset.x_train, dtype=torch.float32))
    ref = compute_centroids(emb, torch.as_tensor(data.given_labels), SETTINGS.centroid, data.dataset.num_classes)
    np.testing.assert_allclose(run.snapshots[-1].centres, ref.centres.numpy(), atol=1e-5)

    # One process on the same global batches: equal but for batch norm (statistics of 16 samples
    # per rank instead of 32, running statistics averaged) and the one sample an odd epoch drops.
    single = train(SETTINGS)
    np.testing.assert_allclose(run.snapshots[0].centres, single.snapshots[0].centres, atol=1e-5)
    for key in ("precision_at_1", "map", "nmi"):
        assert abs(run.final_metrics[key] - single.final_metrics[key]) <= 0.05, key
    two, one = run.snapshots[-1].losses["total"], single.snapshots[-1].losses["total"]
    assert abs(two - one) <= 0.1 * abs(one), (two, one)


@pytest.fixture(scope="module")
def commands(tmp_path_factory) -> Path:
    """One two-process launch running compare-centroids then distill through the CLI."""
    out = tmp_path_factory.mktemp("commands")
    proc, seconds = launch("commands", out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"two-process compare-centroids and distill: {seconds:.1f} s")
    return out


def test_compare_centroids_under_torchrun_saves_one_group_from_rank_0(commands) -> None:
    from fatviz.runs import load_group

    tmp_path = commands
    ranks = [json.loads((tmp_path / f"compare{r}.json").read_text()) for r in (0, 1)]
    assert [r["code"] for r in ranks] == [0, 0]
    assert ranks[1]["stdout"] == ""  # one table and one JSON line per job: rank 0's
    line = json.loads(ranks[0]["stdout"].strip().splitlines()[-1])
    assert line["world_size"] == 2 and set(line["options"]) == set(CENTROIDS.names())
    group = load_group(tmp_path / "compare")
    assert set(group) == set(CENTROIDS.names())
    for option, run in group.items():
        assert run.extras["world_size"] == 2 and run.settings.centroid == option
        assert len(run.snapshots) == 3
        assert line["options"][option]["precision_at_1"] == pytest.approx(run.final_metrics["precision_at_1"])


def test_distill_under_torchrun_saves_one_distillation_from_rank_0(commands) -> None:
    from fatviz.distill import load_distillation

    out = commands
    ranks = [json.loads((out / f"distill{r}.json").read_text()) for r in (0, 1)]
    assert [r["code"] for r in ranks] == [0, 0] and ranks[1]["stdout"] == ""
    line = json.loads(ranks[0]["stdout"].strip().splitlines()[-1])
    assert line["world_size"] == 2
    saved = load_distillation(out / "distill")
    assert saved.student.extras["world_size"] == 2
    # Every rank's teacher saw the same averaged model, so rank 0's flags are the job's flags.
    assert line["n_flagged"] == int(saved.table["flagged"].sum())
    assert set(saved.baselines.index) >= {"fat (noisy labels)", "batch-hard (noisy labels)"}
    for phase in ("teacher", "student", "cleanlab", "baselines"):
        assert line[f"{phase}_seconds"] > 0, phase


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="thread names are read from Linux's /proc")
def test_leaving_the_job_ends_gloos_threads(commands) -> None:
    # DDP had imported torch.distributed.nn.functional, whose default arguments would have held the
    # group had it been imported after the group was up; still alive at exit, gloo's threads then
    # aborted about 1 launch in 8 at interpreter exit (issue #27).
    for r in (0, 1):
        threads = json.loads((commands / f"threads{r}.json").read_text())
        assert threads["joined"] and threads["left"] == [], threads


def test_train_launches_exit_cleanly_every_time(tmp_path) -> None:
    # The exit race of issue #27 ended about 1 launch in 8 with SIGABRT: ten in a row, as a user launches them.
    argv = ["-m", "fatviz", "train", "--dataset", "digits", "--subsample", "200", "--epochs", "1", "--vis-points", "30",
            "--device", "cpu", "--json"]
    failed = []
    for i in range(10):
        proc = torchrun(*argv, "--out", str(tmp_path / f"run{i}"))
        if proc.returncode != 0:
            failed.append(f"launch {i}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
        else:
            assert json.loads(proc.stdout.strip().splitlines()[-1])["world_size"] == 2
    assert not failed, "\n".join(failed)


def test_a_failing_rank_stops_the_launch_with_one_message(tmp_path) -> None:
    proc, _ = launch("fail", tmp_path)
    ended = time.time()
    assert proc.returncode != 0
    messages = {(tmp_path / f"diverged{r}.txt").read_text() for r in (0, 1)}
    assert len(messages) == 1 and next(iter(messages)).startswith("Rank 1 of 2: The loss became inf at epoch 1")
    assert "rank 1 fails on purpose" in proc.stderr
    # Rank 0 waits in a collective for 300 s unless the launch ends it: well before that, here.
    # (the launch's LAUNCH_LIMIT_S is below that wait: reaching here means the launch ended it)
    print(f"launch ended {ended - float((tmp_path / 'raised_at').read_text()):.1f} s after rank 1 raised")


if __name__ == "__main__":
    {"train": _train_worker, "fail": _fail_worker, "commands": _commands_worker}[sys.argv[1]](Path(sys.argv[2]))
