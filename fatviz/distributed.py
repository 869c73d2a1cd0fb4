"""Training on several processes with torch.distributed: class centres by all-reduce (docs/METHOD.md section 4.3).

FAT's centres are detached weighted means, so a rank never needs another rank's embeddings:
per-class sums and total weights (K x (D+1) numbers) add up with one SUM all-reduce, and the
radius statistics of the second pass with a MAX (radii) and a SUM (weighted distances). The
result equals one process's pass over the whole set, up to float summation order.

In your own DDP loop (every rank calls the same collectives in the same order):

    import torch
    from fatviz.distributed import init_from_env, sharded_centroids
    from fatviz.losses import FATLoss

    init_from_env("cpu")                  # torchrun's env vars: gloo on CPU, nccl on CUDA
    loss_fn = FATLoss("norm-mean-norm")
    for epoch in range(epochs):
        with torch.no_grad():             # embed only this rank's shard of the training set
            emb = model.eval().embed(x_shard)
        centroids = sharded_centroids(emb, y_shard, "norm-mean-norm", num_classes=K)  # whole-set centres
        for x, y in my_batches:           # this rank's batches; ddp_model = DistributedDataParallel(model)
            loss = loss_fn(ddp_model.train()(x)[0], y, centroids=centroids)
            ...

Chunked passes over a large shard use `ShardedAccumulator` (a `CentroidAccumulator` whose
passes reduce over the ranks). `DistributedTrainer` and `run_distributed_train` train a
whole fatviz run this way under `torchrun --standalone --nproc-per-node N`.
"""

from __future__ import annotations

import gc
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

# torch.distributed.nn.functional names `group.WORLD` as the default group of its functions, which
# binds whatever group is up when it is first imported, and DistributedDataParallel imports it
# (through torch._dynamo). Imported after init_process_group, it would hold the group for the life
# of the process: destroy_process_group could not free it, so gloo's worker threads (which end only
# when it is freed) would outlive the interpreter, and one of them letting go of a finished
# collective's tensors then needs the GIL during finalisation: the process aborts at exit (SIGABRT,
# 'terminate called without an active exception'). Imported here, before any group, it binds None.
import torch.distributed.nn.functional  # noqa: F401
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present
from torch.nn.parallel import DistributedDataParallel

from fatviz.centroids import CentroidAccumulator, Centroids
from fatviz.errors import FatvizError
from fatviz.models import pick_device
from fatviz.settings import RunSettings
from fatviz.train import PreparedData, RunResult, Snapshot, Targets, Trainer, TrainingDiverged, _embed

# How long a rank waits at init and in any collective for the others: long enough for a slow
# rank to load a large dataset, short enough that a lost rank does not hold the rest for gloo's
# and nccl's default of 30 minutes (under torchrun a failed rank ends the others at once anyway).
TIMEOUT_S = 300.0
ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


# -- the centres --------------------------------------------------------------------------------


def all_reduce_sums(sums: torch.Tensor, counts: torch.Tensor, group: dist.ProcessGroup | None = None) -> None:
    """Pass 1's reduction, in place: per-class sums (K, D) and total weights (K,) added over every rank."""
    if sums.ndim != 2 or counts.shape != (sums.shape[0],):
        raise FatvizError("all_reduce_sums needs sums (K, D) and counts (K,) with the same K.")
    packed = torch.cat([sums, counts[:, None]], dim=1)  # one collective of K x (D+1) numbers
    dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=group)
    sums.copy_(packed[:, :-1])
    counts.copy_(packed[:, -1])


def all_reduce_radius(radius: torch.Tensor, dist_sums: torch.Tensor, group: dist.ProcessGroup | None = None) -> None:
    """Pass 2's reduction, in place: radii (K,) by MAX and weighted member distances (K,) by SUM."""
    dist.all_reduce(radius, op=dist.ReduceOp.MAX, group=group)
    dist.all_reduce(dist_sums, op=dist.ReduceOp.SUM, group=group)


class ShardedAccumulator(CentroidAccumulator):
    """A CentroidAccumulator over a set split among ranks: each rank adds its own shard.

    Use it like its parent (`add` chunks, then `add_radius` chunks, then `result`); the
    centres are fixed from the all-reduced sums, so pass 2 measures against the whole-set
    centres, and `result` reduces the radius statistics. Every rank must build it with the
    same option, K and D and call both passes (with no chunk at all if its shard is empty).
    """

    def __init__(self, option: str, num_classes: int, dim: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, group: dist.ProcessGroup | None = None) -> None:
        super().__init__(option, num_classes, dim, device, dtype)
        self.group = group
        self._finished = False

    def centres(self) -> torch.Tensor:
        """Reduce pass 1 over the ranks (once), then fix and return the (K, D) centres."""
        if self._centres is None:
            all_reduce_sums(self._sums, self._counts, self.group)
        return super().centres()

    def add_radius(self, features: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> None:
        """Pass 2 on this rank's chunk (before `result`)."""
        if self._finished:
            raise RuntimeError("add_radius() after result(): start a new accumulator.")
        super().add_radius(features, labels, weights)

    def result(self) -> Centroids:
        """The whole-set centroids (every rank gets the same)."""
        self.centres()  # a rank whose shard had no chunk for pass 2 still joins pass 1's reduction
        if not self._finished:
            all_reduce_radius(self._radius, self._dist_sums, self.group)
            self._finished = True
        return super().result()


def sharded_centroids(features: torch.Tensor, labels: torch.Tensor, option: str, num_classes: int,
                      weights: torch.Tensor | None = None, group: dist.ProcessGroup | None = None) -> Centroids:
    """Whole-set centroids from this rank's shard (features (n, D), labels (n,), optional weights (n,) >= 0).

    Equal to `compute_centroids` over the union of every rank's shard. `num_classes` is
    required: a shard's largest label says nothing about the other ranks'.
    """
    if features.ndim != 2 or labels.ndim != 1 or features.shape[0] != labels.shape[0]:
        raise FatvizError("sharded_centroids needs features (n, D) and labels (n,) of the same length.")
    features = features.detach()
    dtype = features.dtype if features.dtype in (torch.float32, torch.float64) else torch.float32
    acc = ShardedAccumulator(option, num_classes, features.shape[1], features.device, dtype, group)
    w = None if weights is None else weights.detach()
    acc.add(features, labels, w)
    acc.add_radius(features, labels, w)
    return acc.result()


# -- ranks --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in the job."""

    rank: int
    world_size: int
    local_rank: int
    backend: str


def is_distributed() -> bool:
    """True when launched on several processes (torchrun's WORLD_SIZE > 1) or a group of several is up."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def backend_for(device: torch.device) -> str:
    """nccl for CUDA, gloo for the CPU; other devices cannot train on several processes."""
    if device.type == "cuda":
        return "nccl"
    if device.type == "cpu":
        return "gloo"
    raise FatvizError(f"Training on several processes runs on cpu or cuda, not {device.type}: pass --device cpu or cuda.")


def init_from_env(device: torch.device | str = "cpu", timeout_s: float = TIMEOUT_S) -> Ranks:
    """Join the job torchrun started (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), once per process.

    On CUDA this process's GPU is LOCAL_RANK. `timeout_s` bounds every wait for another rank.
    """
    device = torch.device(device)
    backend = backend_for(device)
    missing = [v for v in ENV_VARS if v not in os.environ]
    if missing and not dist.is_initialized():
        raise FatvizError(f"{', '.join(missing)} unset: start this with "
                          "`torchrun --standalone --nproc-per-node N ...`.")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise FatvizError(f"Process {local_rank} has no GPU of its own ({torch.cuda.device_count()} visible): "
                              "start at most one process per GPU, or pass --device cpu.")
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method="env://", rank=int(os.environ["RANK"]),
                                world_size=int(os.environ["WORLD_SIZE"]), timeout=timedelta(seconds=timeout_s))
    return Ranks(dist.get_rank(), dist.get_world_size(), local_rank, dist.get_backend())


def rank_shard(order: torch.Tensor, rank: int, world_size: int, batch_size: int) -> torch.Tensor:
    """This rank's part of a global order, cut global batch by global batch (`batch_size` = global batch).

    Rank r takes the r-th of `world_size` equal contiguous parts of every global batch (the last,
    partial one too, less its remainder), so each rank trains on its part of the same global
    batches, all ranks take the same number of steps, and an identity-balanced batch (P classes
    of K consecutive samples) hands each rank whole identities when its part is a multiple of K.
    """
    per = batch_size // world_size
    full = len(order) // batch_size * batch_size
    tail = order[full:]
    part = len(tail) // world_size
    return torch.cat([order[:full].view(-1, world_size, per)[:, rank].reshape(-1),
                      tail[rank * part:(rank + 1) * part]])


def rank_seed(seed: int, rank: int) -> int:
    """A rank's own seed for per-rank randomness (rank 0 keeps the run's seed)."""
    return (seed + 1_000_003 * rank) % 2**31


# -- training -----------------------------------------------------------------------------------


class RankBatches:
    """A batch sampler's global batches as one rank sees them: the same order, batches of its share.

    A global batch is the sampler's (`batch_size`, or P x K for identity-balanced batches); each
    rank takes 1/world_size of it, which for P x K batches must be whole identities.
    """

    def __init__(self, sampler, settings: RunSettings, world_size: int) -> None:
        self.inner = sampler
        self.global_length = sampler.batch_length(settings.batch_size)
        self.share = self.global_length // world_size
        # A shuffled batch was checked against world_size already (DistributedTrainer); a P x K one
        # must also leave each rank whole identities.
        k = getattr(sampler, "k", 1)
        if self.global_length % world_size or self.share % k:
            raise FatvizError(f"A global batch of P x K = {self.global_length // k} x {k} does not split into "
                              f"{world_size} equal parts of whole identities: pick a batch size (and pk_k) so "
                              f"that P is a multiple of {world_size}.")

    def batch_length(self, batch_size: int) -> int:
        """This rank's share of a global batch."""
        return self.share

    def order(self, generator: torch.Generator) -> torch.Tensor:
        """The sampler's global order (every rank draws the same one)."""
        return self.inner.order(generator)


class DistributedTrainer(Trainer):
    """A Trainer on one rank of a process group: DDP gradients, each rank on its shard of every epoch.

    `settings.batch_size` is the global batch (it must split evenly over the ranks), so the run
    trains on the same global batches as one process would and saves the same settings. Every
    rank holds the whole data, trains on its part of every global batch of the epoch's seeded order
    (`rank_shard`), builds the whole-set centres from its shard of the set by all-reduce, and takes
    identical snapshots (the losses averaged over the ranks, batch-norm running statistics averaged
    before anything is embedded).
    Every rank must make the same calls; a non-finite loss on any rank stops all with one message.
    """

    def __init__(self, settings: RunSettings, data: PreparedData | None = None, targets: Targets | None = None,
                 *, snapshots: bool = True, group: dist.ProcessGroup | None = None,
                 sync_batchnorm: bool = False) -> None:
        if not dist.is_initialized():
            raise FatvizError("No process group: call fatviz.distributed.init_from_env() first (under torchrun).")
        self.group = group
        self.rank, self.world_size = dist.get_rank(group), dist.get_world_size(group)
        if settings.batch_size % self.world_size or settings.batch_size // self.world_size < 2:
            raise FatvizError(f"batch_size {settings.batch_size} does not split into batches of at least 2 over "
                              f"{self.world_size} processes: pick a multiple of {self.world_size}.")
        backend_for(pick_device(settings.device))
        super().__init__(settings, data, targets, snapshots=snapshots)
        self.run_settings = settings
        self.settings = settings.replace(batch_size=settings.batch_size // self.world_size)  # this rank's view
        self.sampler = RankBatches(self.sampler, settings, self.world_size)
        module = self.model
        if sync_batchnorm:
            if self.device.type != "cuda":
                raise FatvizError("SyncBatchNorm needs CUDA; on the CPU leave it off (running statistics are averaged).")
            module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group=group)  # same parameters
        self.module = module
        # Buffers are averaged where they are read (see _average_buffers), not broadcast in every
        # forward: an eval-mode forward then holds no collective, so ranks may embed unequal shards.
        self.model = DistributedDataParallel(
            module, device_ids=[torch.cuda.current_device()] if self.device.type == "cuda" else None,
            process_group=group, forward_sync_buffers=False,
            find_unused_parameters=not self.loss_spec.uses_logits)  # losses that ignore the classifier head
        torch.manual_seed(rank_seed(settings.seed, self.rank))
        n = len(self.y_train)
        self._centre_idx = torch.arange(n, device=self.device)[self.rank::self.world_size]
        w = torch.zeros(n, device=self.device)
        w[self._keep_idx] = 1.0
        if self.centre_weights is not None:
            w = w * self.centre_weights
        self._centre_w = w[self._centre_idx]

    # -- collectives --------------------------------------------------------------------------
    def _sum(self, values: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(values, op=dist.ReduceOp.SUM, group=self.group)
        return values

    def _average_buffers(self) -> None:
        """Average the batch-norm running statistics (each rank saw its own batches)."""
        floats = [b for b in self.module.buffers() if b.is_floating_point()]
        if floats:
            flat = self._sum(torch.cat([b.reshape(-1) for b in floats])) / self.world_size
            offset = 0
            for b in floats:
                b.copy_(flat[offset:offset + b.numel()].view_as(b))
                offset += b.numel()

    # -- Trainer hooks ------------------------------------------------------------------------
    def epoch_order(self) -> torch.Tensor:
        """This rank's shard of the epoch's global order (the same seeded permutation on every rank)."""
        return rank_shard(super().epoch_order(), self.rank, self.world_size, self.sampler.global_length)

    def whole_set_centroids(self, train_emb: torch.Tensor | None = None) -> Centroids:
        """Whole-training-set centres from this rank's shard of it, by all-reduce (every rank calls it)."""
        if train_emb is None:
            self._average_buffers()
            emb, _ = _embed(self.module, self.x_train[self._centre_idx])
        else:
            emb = train_emb[self._centre_idx]
        return sharded_centroids(emb, self.y_train[self._centre_idx], self.settings.centroid, self.num_classes,
                                 weights=self._centre_w, group=self.group)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As Trainer.embed, with every rank's batch-norm statistics, so every rank gets the same
        answer mid-training (a collective: every rank calls it)."""
        self._average_buffers()
        return _embed(self.module, x)

    def batch_sums(self, emb: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The global batch's per-class sums: the ema centres move alike on every rank."""
        sums, counts = super().batch_sums(emb, y, w)
        all_reduce_sums(sums, counts, self.group)
        return sums, counts

    def _batch_loss(self, emb: torch.Tensor, logits: torch.Tensor, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Batch centres are the global batch's: this rank's batch sums, all-reduced each step."""
        if not (self.loss_spec.uses_centres and self.centre_source.kind == "batch"):
            return super()._batch_loss(emb, logits, idx)
        y = self.y_train[idx]
        w = None if self.centre_weights is None else self.centre_weights[idx]
        centroids = sharded_centroids(emb, y, self.settings.centroid, self.num_classes, weights=w, group=self.group)
        return self.loss_fn(emb, y, logits, y if self.soft is None else self.soft[idx], centroids)

    def _snapshot(self, epoch: int, losses: dict[str, float]) -> Snapshot:
        """The same snapshot on every rank: averaged running statistics, losses averaged over the ranks."""
        self._average_buffers()
        if losses:
            names = sorted(losses)
            mean = self._sum(torch.tensor([losses[k] for k in names], dtype=torch.float64,
                                          device=self.device)) / self.world_size
            losses = {k: float(v) for k, v in zip(names, mean, strict=True)}
        return super()._snapshot(epoch, losses)

    def _check_finite(self, total: torch.Tensor, epoch: int, batch: int | None) -> None:
        """Every rank learns every rank's running loss: one non-finite loss stops them all alike."""
        totals = torch.zeros(self.world_size, dtype=torch.float64, device=self.device)
        totals[self.rank] = total.detach().double()
        totals = self._sum(totals).tolist()
        bad = [r for r, v in enumerate(totals) if not math.isfinite(v)]
        if bad:
            try:
                Trainer._check_finite(torch.tensor(totals[bad[0]]), epoch, batch)
            except TrainingDiverged as exc:
                raise TrainingDiverged(f"Rank {', '.join(map(str, bad))} of {self.world_size}: {exc}") from None

    def snapshots(self, should_stop: Callable[[], bool] | None = None,
                  on_progress: Callable[[float, str], None] | None = None) -> Iterator[Snapshot]:
        """Train as Trainer.snapshots; `should_stop` (given on every rank or on none) stops all when any says so."""
        agreed = None if should_stop is None else (
            lambda: bool(self._sum(torch.tensor([float(should_stop())], device=self.device)).item()))
        yield from super().snapshots(agreed, on_progress)
        self._average_buffers()  # the saved weights carry every rank's statistics, snapshots or not

    def result(self) -> RunResult:
        """The run as one process would record it: the global settings, plain weights, and world_size."""
        res = super().result()
        res.settings = self.run_settings
        consume_prefix_in_state_dict_if_present(res.state_dict, "module.")
        res.extras["world_size"] = self.world_size
        return res


def run_distributed_train(settings: RunSettings, out: str | os.PathLike, overwrite: bool = True,
                          on_progress: Callable[[float, str], None] | None = None, *,
                          sync_batchnorm: bool = False) -> tuple[RunResult, Path | None]:
    """Train one run on every rank of a torchrun job; rank 0 alone saves it (and reports progress).

    Returns (the result, the saved run.pt on rank 0 or None elsewhere). Joins the job from the
    environment when no group is up, and then leaves it again at the end.
    """
    from fatviz.runs import save_run

    with joined_job(settings) as ranks:
        # No name keeps the trainer: its DDP wrapper holds the group, which leave_job frees.
        result = DistributedTrainer(settings, sync_batchnorm=sync_batchnorm).fit(
            on_progress=on_progress if ranks.rank == 0 else None)
        path = save_run(result, out, overwrite=overwrite) if ranks.rank == 0 else None
    return result, path


def leave_job(ranks: Ranks) -> None:
    """Leave the job on every rank alike, after its last collective: a barrier, then the group destroyed.

    No rank tears its end down while another is still in a collective, and the group is freed
    here, which joins gloo's worker threads while the interpreter is whole (a worker still letting
    go of a finished collective's tensors at exit would need the GIL during finalisation, and the
    process would abort). Keep no trainer past this: its DDP wrapper holds the group.
    """
    # nccl's barrier is a collective on this rank's GPU: name it rather than let torch guess.
    dist.barrier(device_ids=[ranks.local_rank] if ranks.backend == "nccl" else None)
    # DistributedDataParallel sits in a reference cycle, so a finished trainer's wrapper, and the
    # group it holds, would only go at some later collection, perhaps the interpreter's last.
    gc.collect()
    dist.destroy_process_group()


@contextmanager
def joined_job(settings: RunSettings) -> Iterator[Ranks]:
    """This process's place in the torchrun job for one command, on the settings' device.

    Joins the job from the environment when no group is up, and leaves it again at the end:
    after success through `leave_job` on every rank; after an error at once, without waiting for
    ranks that may never come (a group someone else set up is left as it was).
    """
    owns_group = not dist.is_initialized()
    ranks = init_from_env(pick_device(settings.device))
    try:
        yield ranks
    except BaseException:
        if owns_group and dist.is_initialized():
            dist.destroy_process_group()
        raise
    if owns_group and dist.is_initialized():
        leave_job(ranks)
