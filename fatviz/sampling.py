"""Batch samplers: the order in which an epoch visits the kept training samples, and the batch size.

`random` is a seeded shuffle. `pk` builds identity-balanced batches the way ReID libraries
sample (P classes x K samples each), so every batch holds positives for every anchor and
several classes' centres to push against.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

# The samplers a run can choose are declared without torch (settings and --help read them); the
# registry is re-exported here, where the library's users look for it.
from fatviz.catalogue import BATCH_SAMPLERS, SamplerSpec  # noqa: F401


class BatchSampler(Protocol):
    """An epoch's order of sample positions (0..n-1 into the kept samples), cut into batches."""

    def batch_length(self, batch_size: int) -> int:
        """How many consecutive positions make one batch when `batch_size` is asked for."""
        ...

    def order(self, generator: torch.Generator) -> torch.Tensor:
        """This epoch's positions; consecutive `batch_length` slices are the batches."""
        ...


class RandomBatches:
    """A seeded shuffle of every kept sample, once each per epoch."""

    def __init__(self, labels: np.ndarray, batch_size: int, k: int) -> None:
        self.n = len(labels)

    def batch_length(self, batch_size: int) -> int:
        """The batch size asked for (all samples when there are fewer)."""
        return min(batch_size, self.n)

    def order(self, generator: torch.Generator) -> torch.Tensor:
        """A permutation of 0..n-1."""
        return torch.randperm(self.n, generator=generator)


def pk_shape(class_count: int, batch_size: int, k: int) -> tuple[int, int]:
    """(P, K) for a batch of about `batch_size`: P = batch_size // K classes of K samples each.

    With fewer classes than that P (ten digits at batch 128, K 4), P is every class and K
    grows to fill the batch instead, so a pk epoch takes about as many steps as a shuffled one.
    """
    p = max(1, batch_size // k)
    if p > class_count:
        p = class_count
        k = max(k, batch_size // p)
    return p, k


class PKBatches:
    """P classes x K samples per batch; every kept sample once per epoch, a few twice.

    Each class's members are shuffled and cut into groups of K; a class's last short group is
    filled with other members of the class, and a class of fewer than K members is sampled
    with replacement. Batches take the P classes with the most groups left (ties broken at
    random), which uses the groups up in the fewest batches; when fewer than P classes have
    groups left, the batch is filled with fresh groups of classes already used up. The batches'
    order is shuffled last.
    """

    def __init__(self, labels: np.ndarray, batch_size: int, k: int) -> None:
        labels = np.asarray(labels)
        classes = np.unique(labels)
        self.members = [np.flatnonzero(labels == c) for c in classes]
        self.p, self.k = pk_shape(len(classes), batch_size, k)

    def batch_length(self, batch_size: int) -> int:
        """P * K, fixed when the sampler was built."""
        return self.p * self.k

    def _group(self, rng: np.random.Generator, members: np.ndarray) -> np.ndarray:
        """K fresh members of one class (with replacement when it has fewer than K)."""
        return rng.choice(members, self.k, replace=len(members) < self.k)

    def _groups(self, rng: np.random.Generator, members: np.ndarray) -> list[np.ndarray]:
        """One class's members, shuffled, in groups of K (the last one filled up)."""
        k = self.k
        shuffled = rng.permutation(members)
        if len(shuffled) < k:
            return [self._group(rng, members)]
        short = len(shuffled) % k
        if short:
            full = shuffled[:len(shuffled) - short]
            shuffled = np.concatenate([shuffled, rng.choice(full, k - short, replace=False)])
        return list(shuffled.reshape(-1, k))

    def order(self, generator: torch.Generator) -> torch.Tensor:
        """Positions, batch after batch of P distinct classes with K positions each."""
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
        groups = [self._groups(rng, m) for m in self.members]
        left = np.array([len(g) for g in groups])
        batches = []
        while left.sum():
            # Most groups left first; the random fraction only breaks ties.
            ranked = np.argsort(-(left + rng.random(len(left)) * 0.5), kind="stable")
            chosen = [c for c in ranked[:self.p] if left[c]]
            spent = rng.permutation(np.flatnonzero(left == 0))
            batch = [groups[c][left[c] - 1] for c in chosen]
            batch += [self._group(rng, self.members[c]) for c in spent[:self.p - len(chosen)]]
            left[chosen] -= 1
            batches.append(np.concatenate(batch))
        batches = [batches[i] for i in rng.permutation(len(batches))]
        return torch.as_tensor(np.concatenate(batches), dtype=torch.long)
