"""The training engine: one run from settings, a snapshot after every epoch, stoppable between batches."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from fatviz.centroids import CENTROIDS, Centroids, anchor_space
from fatviz.data import Dataset, load_dataset, visualisation_indices
from fatviz.errors import FatvizError
from fatviz.evaluation import Evaluator, embed_batches
from fatviz.losses import LOSSES, triplet_bound
from fatviz.models import build_model, choose_model, fast_layout, pick_device
from fatviz.noise import NoisyLabels, apply_noise
from fatviz.parallel import SingleProcess
from fatviz.sampling import BATCH_SAMPLERS
from fatviz.settings import RunSettings
from fatviz.training_centres import TrainingCentres

# Batches between two finiteness checks of the running loss (each check waits for the device).
CHECK_EVERY = 25


class TrainingDiverged(FatvizError):
    """The loss became NaN or infinite; the message says where and what to try."""


@dataclass(frozen=True, eq=False)
class PreparedData:
    """A dataset with its (noisy) training labels and the fixed visualisation subset."""

    dataset: Dataset
    noisy: NoisyLabels
    vis_idx: np.ndarray

    @property
    def given_labels(self) -> np.ndarray:
        """The training labels the model sees (after synthetic noise)."""
        return self.noisy.labels


def data_settings_key(settings: RunSettings) -> str:
    """The settings that decide the data (its section and the visual subset's size): runs that
    share them share one PreparedData."""
    return settings.digest(("data", "view"), salt="data")


def prepare_data(settings: RunSettings) -> PreparedData:
    """Load the dataset, add the settings' label noise, and fix the visualisation subset."""
    from fatviz.data import BlobSpec

    blobs = BlobSpec(n_classes=settings.blob_classes, dim=settings.blob_dim, spread=settings.blob_spread,
                     outlier_fraction=settings.blob_outliers)
    dataset = load_dataset(settings.dataset, data_root=settings.data_root or None,
                           subsample=settings.subsample or None, seed=settings.seed, blobs=blobs,
                           reid_size=settings.reid_size)
    return prepare(dataset, settings)


def prepare(dataset: Dataset, settings: RunSettings) -> PreparedData:
    """A loaded dataset with the settings' label noise and visualisation subset (prepare_data's second half,
    for data that does not come from a registered dataset name, such as a benchmark's own images)."""
    if len(np.unique(dataset.y_train)) < 2:
        raise FatvizError("The training split holds a single class: a triplet needs at least two classes.")
    dataset, noisy = apply_noise(dataset, settings.noise, settings.seed)  # outlier/multi change the data
    vis_idx = visualisation_indices(dataset.y_train, settings.vis_points, settings.seed)
    return PreparedData(dataset, noisy, vis_idx)


@dataclass(frozen=True, eq=False)
class Snapshot:
    """What one epoch looks like: embeddings, centres, loss terms, bound and test metrics.

    Epoch 0 is the untrained network. Embeddings and centres live in the anchor space of
    the run's centroid option (unit sphere for all but `mean`).
    """

    epoch: int
    embeddings: np.ndarray  # (V, D) visualisation subset
    centres: np.ndarray  # (K, D) whole-training-set centres after this epoch
    radius: np.ndarray  # (K,)
    present: np.ndarray  # (K,) bool
    losses: dict[str, float]  # mean training loss terms over the epoch (empty at epoch 0)
    bound: dict[str, float]  # exact triplet loss and FAT bound on the visualisation subset
    metrics: dict[str, float]  # test split, true labels
    seconds: float  # since training started


@dataclass(eq=False)
class RunResult:
    """A finished (or stopped) run: its settings, snapshots, weights and data facts."""

    settings: RunSettings
    snapshots: list[Snapshot]
    state_dict: dict[str, torch.Tensor]
    vis_idx: np.ndarray
    vis_true: np.ndarray
    vis_given: np.ndarray
    vis_flipped: np.ndarray
    class_names: list[str]
    model_kind: str
    device: str
    seconds: float
    stopped: bool = False
    extras: dict = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)  # the whole test split, after training
    evaluated_on: tuple[int, int] = (0, 0)  # (test samples per-epoch metrics use, test split size)

    @property
    def final_metrics(self) -> dict[str, float]:
        """Test metrics of the trained model on the whole test split (older runs: the last snapshot's)."""
        if self.test_metrics:
            return self.test_metrics
        return self.snapshots[-1].metrics if self.snapshots else {}


@contextmanager
def cpu_threads(count: int | None):
    """Temporarily set torch's and BLAS's CPU thread counts (None: leave them)."""
    if count is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    old = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        with threadpool_limits(limits=count):  # numpy/sklearn metrics in the snapshots
            yield
    finally:
        torch.set_num_threads(old)


def threads_for(model_kind: str, device: torch.device) -> int | None:
    """One CPU thread for the MLP: its ops are so small that a second thread only adds
    synchronisation, and a busy second core makes OpenMP spin (seen: 100x slower steps)."""
    return 1 if device.type == "cpu" and model_kind == "mlp" else None


@dataclass(frozen=True, eq=False)
class Targets:
    """What a run trains towards, when it is not simply every given label.

    Label distillation fills it: `labels` replace the given labels, `soft` (N, K) rows replace
    them as cross-entropy targets, `keep` restricts which samples are trained on, and
    `centre_weights` decide how much each sample shapes its class centre (0 = not at all).
    """

    labels: np.ndarray | None = None
    soft: np.ndarray | None = None
    keep: np.ndarray | None = None
    centre_weights: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class TrainingSet:
    """The training split on the run's device, as a run's Targets say it is trained on."""

    x: torch.Tensor  # (N, ...) every training input
    y: torch.Tensor  # (N,) the given labels, or the targets' labels
    keep_idx: torch.Tensor  # the samples trained on
    kept_labels: np.ndarray  # their labels, for the batch sampler
    soft: torch.Tensor | None  # (N, K) cross-entropy targets instead of y
    centre_weights: torch.Tensor | None  # (N,) how much each sample shapes its class centre

    @classmethod
    def of(cls, data: PreparedData, targets: Targets, device: torch.device) -> TrainingSet:
        """The data's training split with `targets` applied, on `device`."""
        labels = data.given_labels if targets.labels is None else targets.labels
        keep = np.ones(len(labels), dtype=bool) if targets.keep is None else np.asarray(targets.keep).astype(bool)
        if not keep.any():
            raise FatvizError("No training sample is left to train on (every sample was discarded).")

        def floats(a: np.ndarray | None) -> torch.Tensor | None:
            return None if a is None else torch.as_tensor(a, dtype=torch.float32, device=device)

        return cls(x=floats(data.dataset.x_train), y=torch.as_tensor(labels, dtype=torch.long, device=device),
                   keep_idx=torch.as_tensor(np.flatnonzero(keep), device=device), kept_labels=np.asarray(labels)[keep],
                   soft=floats(targets.soft), centre_weights=floats(targets.centre_weights))


def build_network(settings: RunSettings, dataset: Dataset, device: torch.device) -> tuple[str, torch.nn.Module]:
    """The run's model kind and its untrained network on `device`, drawn from the run's seed."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    torch.manual_seed(settings.seed)
    kind = choose_model(settings.model, tuple(dataset.input_shape))
    model = build_model(kind, tuple(dataset.input_shape), settings.embedding_dim, dataset.num_classes)
    return kind, fast_layout(model, tuple(dataset.input_shape), device).to(device)


def snapshot_of(settings: RunSettings, epoch: int, vis_emb: torch.Tensor, vis_given: torch.Tensor, centroids: Centroids,
                losses: dict[str, float], metrics: dict[str, float], seconds: float) -> Snapshot:
    """A Snapshot of the model as measured: the visual subset's embeddings (and their triplet loss and
    FAT bound), the whole-set centres, the epoch's loss terms and the test metrics."""
    try:
        b = triplet_bound(vis_emb, vis_given, settings.centroid, settings.effective_margin)
        bound = {"exact": b.exact, "bound": b.bound, "bound_point_to_set": b.point_to_set, "bound_radius": b.radius_term}
    except FatvizError:
        bound = {}
    return Snapshot(
        epoch=epoch, embeddings=anchor_space(vis_emb, settings.centroid).cpu().numpy().astype(np.float32),
        centres=centroids.centres.cpu().numpy().astype(np.float32),
        radius=centroids.radius.cpu().numpy().astype(np.float32), present=centroids.present.cpu().numpy(),
        losses=losses, bound=bound, metrics=metrics, seconds=seconds)


def diverged(bad: dict[int, float], world_size: int, epoch: int, batch: int | None) -> TrainingDiverged:
    """The error for a running loss that is not finite on the processes in `bad` (rank: its value) at
    an epoch (by a batch, when known); ranks are named when several processes train."""
    where = f"epoch {epoch}" + (f", by batch {batch}" if batch is not None else "")
    ranks = f"Rank {', '.join(map(str, bad))} of {world_size}: " if world_size > 1 else ""
    return TrainingDiverged(f"{ranks}The loss became {next(iter(bad.values()))} at {where}. "
                            "Lower the learning rate or the margin, or pick a normalised centroid option.")


class Trainer:
    """Trains one run from its settings (and optional targets); iterate `snapshots()` for live
    progress, then read `result()`. It knows nothing of pages or distillation rounds. `parallel` says
    how this process trains the run with others (fatviz.parallel); by default it trains alone.
    """

    def __init__(self, settings: RunSettings, data: PreparedData | None = None, targets: Targets | None = None,
                 *, snapshots: bool = True, parallel: SingleProcess | None = None) -> None:
        self.settings = settings
        self.parallel = parallel if parallel is not None else SingleProcess()
        self.device = pick_device(settings.device)
        self.parallel.prepare(settings.batch_size, self.device)
        self.data = data if data is not None else prepare_data(settings)
        self.created = time.perf_counter()  # the training's set-up (network, optimizer, data on the device) from here
        self.loss_spec = LOSSES.get(settings.loss)
        self.take_snapshots = snapshots
        ds = self.data.dataset
        self.num_classes = ds.num_classes
        ts = TrainingSet.of(self.data, targets or Targets(), self.device)
        self.x_train, self.y_train, self.soft, self.keep_idx = ts.x, ts.y, ts.soft, ts.keep_idx
        self.sampler = BATCH_SAMPLERS.get(settings.batch_sampler).build(ts.kept_labels, settings.batch_size, settings.pk_k)
        self.global_batch = self.sampler.batch_length(settings.batch_size)
        self.batch_share = self.parallel.batch_share(self.global_batch, getattr(self.sampler, "k", 1))
        self.model_kind, net = build_network(settings, ds, self.device)
        # `module` is the network to read; `model` the one trained (a DDP wrapper of it on several processes).
        self.module, self.model = self.parallel.wrap(net, self.device, self.loss_spec.uses_logits)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings.lr)
        self.loss_fn = self.loss_spec.build(settings)
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.parallel.reseed(settings.seed)
        self.evaluator = Evaluator(self.module, ds, settings, self.device)
        self.centres = TrainingCentres(settings, ds.num_classes, self.x_train, self.y_train, self.keep_idx, ts.centre_weights,
                                       enabled=self.loss_spec.uses_centres, module=self.module, parallel=self.parallel)
        self.snapshot_list: list[Snapshot] = []
        self.stopped = False
        self.started = 0.0

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings, logits) of inputs `x` in eval mode, in chunks (with every process's batch-norm statistics)."""
        self.parallel.sync_buffers(self.module)
        return embed_batches(self.module, x)

    def measure(self) -> tuple[torch.Tensor, Centroids]:
        """The model as it is now: the visualisation subset's embeddings and the whole-set centres."""
        train_emb, _ = embed_batches(self.module, self.x_train)
        vis_emb = train_emb[torch.as_tensor(self.data.vis_idx, device=self.device)]
        return vis_emb, self.centres.whole_set(train_emb)

    def _snapshot(self, epoch: int, losses: dict[str, float]) -> Snapshot:
        """Measure the model now, the same on every process; its centres are the next epoch's."""
        self.parallel.sync_buffers(self.module)
        losses = self.parallel.mean_losses(losses)
        vis_emb, self.centres.current = self.measure()
        vis_given = self.y_train[torch.as_tensor(self.data.vis_idx, device=self.device)]
        metrics = self.evaluator.evaluate(subset=True)
        return snapshot_of(self.settings, epoch, vis_emb, vis_given, self.centres.current, losses, metrics,
                           time.perf_counter() - self.started)

    def snapshots(self, should_stop: Callable[[], bool] | None = None,
                  on_progress: Callable[[float, str], None] | None = None) -> Iterator[Snapshot]:
        """Train epoch by epoch, yielding a snapshot after each (epoch 0 = before training).

        `should_stop` is polled between batches; when it returns True (on any process), training
        ends after the current batch, a last snapshot is taken, and `self.stopped` is set.
        """
        with cpu_threads(threads_for(self.model_kind, self.device)):
            yield from self._loop(self.parallel.agreed_stop(should_stop), on_progress)
        self.parallel.sync_buffers(self.module)  # the saved weights carry every process's statistics

    def _loop(self, should_stop: Callable[[], bool] | None,
              on_progress: Callable[[float, str], None] | None) -> Iterator[Snapshot]:
        self.started = time.perf_counter()
        if self.take_snapshots:
            self.snapshot_list.append(self._snapshot(0, {}))
            yield self.snapshot_list[-1]
        for epoch in range(1, self.settings.epochs + 1):
            # Loss terms add up on the device: reading a float every batch would make a GPU wait
            # for each step. Finiteness is checked every CHECK_EVERY batches and at the epoch end.
            sums: dict[str, torch.Tensor] = {}
            batches = 0
            for idx in self.epoch_batches():
                for k, v in self.train_batch(idx).items():
                    sums[k] = sums[k] + v if k in sums else v.clone()
                batches += 1
                if batches % CHECK_EVERY == 0:
                    self.check_finite(sums["total"], epoch, batches)
                if should_stop is not None and should_stop():
                    self.stopped = True
                    break
            if batches:
                self.check_finite(sums["total"], epoch, None)
            losses = {k: float(v) / max(1, batches) for k, v in sums.items()}
            if on_progress is not None:
                on_progress(epoch / self.settings.epochs, f"epoch {epoch}/{self.settings.epochs}")
            if self.take_snapshots:
                self.snapshot_list.append(self._snapshot(epoch, losses))
                if epoch == self.settings.epochs or self.stopped:  # before the last yield: a consumer may stop there
                    self.evaluator.final(self.snapshot_list[-1].metrics)
                yield self.snapshot_list[-1]
            else:
                self.centres.current = None
            if self.stopped:
                return

    def epoch_order(self) -> torch.Tensor:
        """The next epoch's order of the kept training samples, by the settings' batch sampler (every process draws the same)."""
        return self.keep_idx[self.sampler.order(self.generator).to(self.device)]

    def epoch_batches(self) -> list[torch.Tensor]:
        """Start an epoch (its centres, when fixed per epoch; train mode) and return this process's batches of sample indices."""
        self.centres.start_epoch(refresh=not self.take_snapshots)
        self.model.train()
        order, bs = self.parallel.shard(self.epoch_order(), self.global_batch), self.batch_share
        # Batch norm cannot train on a single sample: a last batch of one is left out.
        return [idx for idx in (order[start:start + bs] for start in range(0, len(order), bs)) if len(idx) >= 2]

    def train_batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimiser step on the training samples `idx`; returns the loss terms (detached, on the device)."""
        emb, logits = self.model(self.x_train[idx])
        targets = self.y_train[idx] if self.soft is None else self.soft[idx]
        terms = self.loss_fn(emb, self.y_train[idx], logits, targets, self.centres.for_batch(emb, idx))
        self.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        self.optimizer.step()
        return {k: v.detach() for k, v in terms.items()}

    def check_finite(self, total: torch.Tensor, epoch: int, batch: int | None = None) -> None:
        """Raise TrainingDiverged when the running loss `total` is not finite on this or any other process."""
        bad = self.parallel.non_finite(total)
        if bad:
            raise diverged(bad, self.parallel.world_size, epoch, batch)

    def result(self) -> RunResult:
        """The run so far, as a RunResult (as one process would record it)."""
        given, vis, ds = self.y_train.cpu().numpy(), self.data.vis_idx, self.data.dataset
        return RunResult(
            settings=self.settings, snapshots=list(self.snapshot_list),
            state_dict={k: v.detach().cpu() for k, v in self.module.state_dict().items()},
            vis_idx=vis, vis_true=ds.y_train[vis], vis_given=given[vis], vis_flipped=given[vis] != ds.y_train[vis],
            class_names=list(ds.class_names), model_kind=self.model_kind, device=str(self.device),
            seconds=time.perf_counter() - self.started, stopped=self.stopped,
            extras={**self.parallel.extras(), "setup_seconds": self.started - self.created},
            test_metrics=dict(self.evaluator.final_metrics), evaluated_on=self.evaluator.evaluated_on)

    def fit(self, should_stop: Callable[[], bool] | None = None,
            on_snapshot: Callable[[Snapshot], None] | None = None,
            on_progress: Callable[[float, str], None] | None = None) -> RunResult:
        """Train to the end (or until stopped) and return the result."""
        for snap in self.snapshots(should_stop, on_progress):
            if on_snapshot is not None:
                on_snapshot(snap)
        return self.result()


def train(settings: RunSettings, data: PreparedData | None = None, targets: Targets | None = None, *,
          snapshots: bool = True, should_stop: Callable[[], bool] | None = None,
          on_snapshot: Callable[[Snapshot], None] | None = None,
          on_progress: Callable[[float, str], None] | None = None) -> RunResult:
    """Train one run from settings (and optional targets) and return its result."""
    return Trainer(settings, data, targets, snapshots=snapshots).fit(should_stop, on_snapshot, on_progress)


def option_settings(settings: RunSettings, option: str) -> RunSettings:
    """The run's settings for one centroid option (normalized-fat has no raw `mean` form: plain fat)."""
    spec, opt = LOSSES.get(settings.loss), CENTROIDS.get(option)
    return settings.replace(centroid=option, loss="fat" if spec.needs_normalised and not opt.normalised_anchors
                            else settings.loss)


def compare_centroids(settings: RunSettings, data: PreparedData | None = None,
                      on_snapshot: Callable[[str, Snapshot], None] | None = None,
                      should_stop: Callable[[], bool] | None = None,
                      on_progress: Callable[[float, str], None] | None = None, *,
                      make_trainer: Callable[..., Trainer] = Trainer) -> dict[str, RunResult]:
    """Train the same run once per centroid option (same seed, same data), one after another.

    `make_trainer` builds each option's trainer from (settings, data): fatviz.distributed's
    DistributedTrainer makes every option data-parallel over a torchrun job.
    """
    data = data if data is not None else prepare_data(settings)
    options = CENTROIDS.names()
    results = {}
    for i, option in enumerate(options):
        s = option_settings(settings, option)
        cb = None if on_snapshot is None else (lambda snap, o=option: on_snapshot(o, snap))
        report = None if on_progress is None else (
            lambda f, msg, i=i, o=option: on_progress((i + f) / len(options), f"{o} ({i + 1}/{len(options)}), {msg}"))
        results[option] = make_trainer(s, data).fit(should_stop, cb, report)
    return results
