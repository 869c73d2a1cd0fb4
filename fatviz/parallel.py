"""How a Trainer's process stands among others: the strategy it is given, one process by default.

A Trainer asks its strategy at the few points where several processes training one run must
agree: which share of every global batch is this process's, how per-class sums and centres add up
over the processes, whether any process wants to stop or saw a non-finite loss, and the batch-norm
statistics to read the model with. `SingleProcess` answers for one process alone (nothing to
agree with); fatviz.distributed's `DataParallel` answers with torch.distributed collectives.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from fatviz.centroids import Centroids, compute_centroids


class SingleProcess:
    """The strategy of a run on one process: every method is the plain single-process answer."""

    rank = 0
    world_size = 1

    def prepare(self, batch_size: int, device: torch.device) -> None:
        """Refuse a run's global batch or device this strategy cannot train on (one process trains any)."""

    def wrap(self, module: torch.nn.Module, device: torch.device, uses_logits: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
        """(the module to read, the model to train) from the built network: the same one here."""
        return module, module

    def reseed(self, seed: int) -> None:
        """Seed this process's own randomness once the model is built (one process keeps the run's seed)."""

    def batch_share(self, global_length: int, k: int) -> int:
        """This process's share of a global batch of `global_length` samples (groups of `k` kept whole)."""
        return global_length

    def shard(self, order: torch.Tensor, global_length: int) -> torch.Tensor:
        """This process's part of the epoch's global order, cut global batch by global batch."""
        return order

    def centre_shard(self, n: int, device: torch.device) -> torch.Tensor | None:
        """The training samples whose embeddings this process adds to the whole-set centres (None: all)."""
        return None

    def centroids(self, emb: torch.Tensor, labels: torch.Tensor, option: str, num_classes: int,
                  weights: torch.Tensor | None = None) -> Centroids:
        """Centroids of every process's members together, from this process's `emb`."""
        return compute_centroids(emb, labels, option, num_classes, weights=weights)

    def reduce_sums(self, sums: torch.Tensor, counts: torch.Tensor) -> None:
        """Add per-class sums (K, D) and weights (K,) over the processes, in place."""

    def mean_losses(self, losses: dict[str, float]) -> dict[str, float]:
        """An epoch's mean loss terms, averaged over the processes."""
        return losses

    def non_finite(self, total: torch.Tensor) -> dict[int, float]:
        """The processes whose running loss is not finite, with its value (a wait for the device)."""
        return {} if torch.isfinite(total) else {self.rank: float(total)}

    def agreed_stop(self, should_stop: Callable[[], bool] | None) -> Callable[[], bool] | None:
        """`should_stop` as every process answers it: True on all when any says so."""
        return should_stop

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Make the module's batch-norm running statistics every process's, before it is read."""

    def extras(self) -> dict:
        """What a run's result records of how it was trained."""
        return {}
