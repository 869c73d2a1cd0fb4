"""The class centres a run's loss is measured against, by the run's centre source.

`epoch`: the whole training set's centres, fixed at the start of each epoch (the snapshot just
taken measured them). `batch`: each batch's own members. `ema:BETA`: a moving average over the
batches (fatviz.centroids.MovingCentres), started from the epoch-0 whole-set centres. In every
source a sample shapes its class centre by its weight: 0 for a sample the run does not train on,
and distillation's centre weight otherwise.
"""

from __future__ import annotations

import torch

from fatviz.centroids import Centroids, MovingCentres, class_sums
from fatviz.evaluation import embed_batches
from fatviz.parallel import SingleProcess
from fatviz.settings import RunSettings


class TrainingCentres:
    """A run's training centres: the whole set's, and those each batch's loss is given (None for a
    loss without centres). Every process of a run makes the same calls (`parallel` adds them up)."""

    def __init__(self, settings: RunSettings, num_classes: int, x_train: torch.Tensor, y_train: torch.Tensor,
                 keep_idx: torch.Tensor, centre_weights: torch.Tensor | None, *, enabled: bool,
                 module: torch.nn.Module, parallel: SingleProcess) -> None:
        self.option, self.num_classes = settings.centroid, num_classes
        self.source = settings.centre_source
        self.enabled = enabled
        self.x_train, self.y_train = x_train, y_train
        self.centre_weights = centre_weights  # per sample, for the batch sources
        w = torch.zeros(len(y_train), device=y_train.device)
        w[keep_idx] = 1.0
        self.weights = w if centre_weights is None else w * centre_weights  # whole set, for the epoch centres
        self.module, self.parallel = module, parallel
        self.shard = parallel.centre_shard(len(y_train), y_train.device)
        self.current: Centroids | None = None  # the whole-set centres last measured (None: not this epoch)
        self.moving: MovingCentres | None = None  # the ema:BETA centres, started at the first epoch

    def whole_set(self, train_emb: torch.Tensor | None = None) -> Centroids:
        """Centres over the whole training set (model in eval mode; embedded here unless `train_emb` is given)."""
        x, y, w = self.x_train, self.y_train, self.weights
        if self.shard is not None:  # this process's share of the set; the sums add up over the processes
            x, y, w = x[self.shard], y[self.shard], w[self.shard]
            train_emb = None if train_emb is None else train_emb[self.shard]
        if train_emb is None:
            self.parallel.sync_buffers(self.module)
            train_emb, _ = embed_batches(self.module, x)
        return self.parallel.centroids(train_emb, y, self.option, self.num_classes, weights=w)

    def start_epoch(self, refresh: bool) -> None:
        """Fix what an epoch starts from: the ema centres once, the epoch centres when not measured yet
        (or always, with `refresh`: nothing measures them between epochs)."""
        if not self.enabled:
            return
        if self.source.kind == "ema" and self.moving is None:
            # Every class starts at its epoch-0 whole-set centre, so one no batch has reached yet is
            # still a negative where it was, not a missing one.
            self.moving = MovingCentres(self.current if self.current is not None else self.whole_set(), self.source.beta)
        if self.source.kind == "epoch" and (self.current is None or refresh):
            self.current = self.whole_set()

    def batch_sums(self, emb: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-class sums and weights of one (global) batch, what moves the ema centres (`class_sums`)."""
        sums, counts = class_sums(emb, y, self.option, self.num_classes, weights=w)
        self.parallel.reduce_sums(sums, counts)
        return sums, counts

    def for_batch(self, emb: torch.Tensor, idx: torch.Tensor) -> Centroids | None:
        """The centres the loss of the batch of samples `idx` (embedded as `emb`) is measured against."""
        if not self.enabled:
            return None
        if self.source.kind == "epoch":
            return self.current
        y = self.y_train[idx]
        # Distillation's centre weights say which samples shape a centre, whatever the source.
        w = None if self.centre_weights is None else self.centre_weights[idx]
        if self.source.kind == "batch":
            return self.parallel.centroids(emb, y, self.option, self.num_classes, weights=w)
        # The batch moves the centres before its loss: like `batch`, it is measured against
        # centres it has shaped, and like every source the centres carry no gradient.
        self.moving.update(*self.batch_sums(emb, y, w))
        return self.moving.centroids(emb, y, w)
