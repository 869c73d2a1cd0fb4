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
from torch.nn.parallel import DistributedDataParallel

from fatviz.centroids import CentroidAccumulator, Centroids
from fatviz.errors import FatvizError
from fatviz.models import pick_device
from fatviz.parallel import SingleProcess
from fatviz.settings import RunSettings
from fatviz.train import PreparedData, RunResult, Targets, Trainer

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


class DataParallel(SingleProcess):
    """The strategy of a Trainer on one rank of a process group (see fatviz.parallel): DDP gradients,
    each rank on its share of every global batch, centres and stop decisions agreed by all-reduce.

    `settings.batch_size` is the global batch (it must split evenly over the ranks), so the run
    trains on the same global batches as one process would and saves the same settings. Every
    rank holds the whole data, trains on its part of every global batch of the epoch's seeded order
    (`rank_shard`), builds the whole-set centres from its shard of the set by all-reduce, and takes
    identical snapshots (the losses averaged over the ranks, batch-norm running statistics averaged
    before anything is embedded). Every rank must make the same calls; a non-finite loss on any
    rank stops all with one message.
    """

    def __init__(self, group: dist.ProcessGroup | None = None, *, sync_batchnorm: bool = False) -> None:
        if not dist.is_initialized():
            raise FatvizError("No process group: call fatviz.distributed.init_from_env() first (under torchrun).")
        self.group = group
        self.rank, self.world_size = dist.get_rank(group), dist.get_world_size(group)
        self.sync_batchnorm = sync_batchnorm
        self.device = torch.device("cpu")  # the run's, once `prepare` is called

    def prepare(self, batch_size: int, device: torch.device) -> None:
        """Refuse a global batch that does not split into parts of at least 2, or a device with no backend;
        the collectives run on `device`."""
        self.device = device
        if batch_size % self.world_size or batch_size // self.world_size < 2:
            raise FatvizError(f"batch_size {batch_size} does not split into batches of at least 2 over "
                              f"{self.world_size} processes: pick a multiple of {self.world_size}.")
        backend_for(device)

    def wrap(self, module: torch.nn.Module, device: torch.device, uses_logits: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
        """(the module, optionally with SyncBatchNorm, and its DistributedDataParallel wrapper)."""
        if self.sync_batchnorm:
            if device.type != "cuda":
                raise FatvizError("SyncBatchNorm needs CUDA; on the CPU leave it off (running statistics are averaged).")
            module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group=self.group)  # same parameters
        # Buffers are averaged where they are read (sync_buffers), not broadcast in every forward:
        # an eval-mode forward then holds no collective, so ranks may embed unequal shards.
        model = DistributedDataParallel(
            module, device_ids=[torch.cuda.current_device()] if device.type == "cuda" else None,
            process_group=self.group, forward_sync_buffers=False,
            find_unused_parameters=not uses_logits)  # losses that ignore the classifier head
        return module, model

    def reseed(self, seed: int) -> None:
        """Each rank its own seed for per-rank randomness, once every rank built the same model."""
        torch.manual_seed(rank_seed(seed, self.rank))

    def batch_share(self, global_length: int, k: int) -> int:
        """1/world_size of a global batch, which for P x K batches (k > 1) must be whole identities."""
        share = global_length // self.world_size
        if global_length % self.world_size or share % k:
            raise FatvizError(f"A global batch of P x K = {global_length // k} x {k} does not split into "
                              f"{self.world_size} equal parts of whole identities: pick a batch size (and pk_k) so "
                              f"that P is a multiple of {self.world_size}.")
        return share

    def shard(self, order: torch.Tensor, global_length: int) -> torch.Tensor:
        """This rank's part of every global batch of the epoch's order (the same seeded order on every rank)."""
        return rank_shard(order, self.rank, self.world_size, global_length)

    def centre_shard(self, n: int, device: torch.device) -> torch.Tensor:
        """Every world_size-th training sample, from this rank's: its part of the whole-set centres."""
        return torch.arange(n, device=device)[self.rank::self.world_size]

    def centroids(self, emb: torch.Tensor, labels: torch.Tensor, option: str, num_classes: int,
                  weights: torch.Tensor | None = None) -> Centroids:
        """Centroids of every rank's members together, by all-reduce (every rank calls it)."""
        return sharded_centroids(emb, labels, option, num_classes, weights=weights, group=self.group)

    def reduce_sums(self, sums: torch.Tensor, counts: torch.Tensor) -> None:
        """The global batch's per-class sums: the ema centres move alike on every rank."""
        all_reduce_sums(sums, counts, self.group)

    def _sum(self, values: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(values, op=dist.ReduceOp.SUM, group=self.group)
        return values

    def mean_losses(self, losses: dict[str, float]) -> dict[str, float]:
        """The epoch's loss terms averaged over the ranks, so every rank's snapshot is the same."""
        if not losses:
            return losses
        names = sorted(losses)
        mean = self._sum(torch.tensor([losses[k] for k in names], dtype=torch.float64, device=self.device)) / self.world_size
        return {k: float(v) for k, v in zip(names, mean, strict=True)}

    def non_finite(self, total: torch.Tensor) -> dict[int, float]:
        """Every rank learns every rank's running loss: one non-finite loss stops them all alike."""
        totals = torch.zeros(self.world_size, dtype=torch.float64, device=total.device)
        totals[self.rank] = total.detach().double()
        return {r: v for r, v in enumerate(self._sum(totals).tolist()) if not math.isfinite(v)}

    def agreed_stop(self, should_stop: Callable[[], bool] | None) -> Callable[[], bool] | None:
        """`should_stop` (given on every rank or on none) stops all when any says so."""
        return None if should_stop is None else (
            lambda: bool(self._sum(torch.tensor([float(should_stop())], device=self.device)).item()))

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Average the batch-norm running statistics (each rank saw its own batches)."""
        floats = [b for b in module.buffers() if b.is_floating_point()]
        if floats:
            flat = self._sum(torch.cat([b.reshape(-1) for b in floats])) / self.world_size
            offset = 0
            for b in floats:
                b.copy_(flat[offset:offset + b.numel()].view_as(b))
                offset += b.numel()

    def extras(self) -> dict:
        """The number of processes the run trained on."""
        return {"world_size": self.world_size}


class DistributedTrainer(Trainer):
    """A Trainer on one rank of a process group: a Trainer with the DataParallel strategy."""

    def __init__(self, settings: RunSettings, data: PreparedData | None = None, targets: Targets | None = None,
                 *, snapshots: bool = True, group: dist.ProcessGroup | None = None,
                 sync_batchnorm: bool = False) -> None:
        super().__init__(settings, data, targets, snapshots=snapshots,
                         parallel=DataParallel(group, sync_batchnorm=sync_batchnorm))


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
