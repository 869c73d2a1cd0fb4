"""The training engine: one run from settings, a snapshot after every epoch, stoppable between batches."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from fatviz.centroids import CENTROIDS, Centroids, MovingCentres, anchor_space, class_sums, compute_centroids
from fatviz.data import Dataset, load_dataset, visualisation_indices
from fatviz.errors import FatvizError
from fatviz.losses import LOSSES, triplet_bound
from fatviz.metrics import evaluate_embeddings
from fatviz.models import EmbeddingNet, build_model, choose_model, pick_device
from fatviz.noise import NoisyLabels, apply_noise
from fatviz.sampling import BATCH_SAMPLERS
from fatviz.settings import RunSettings

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


def _embed(model: EmbeddingNet, x: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings and logits of x in eval mode, in batches, without gradients."""
    # 256 images a batch: on 2 CPU cores a 1024-image batch's activations outgrow the cache, and
    # lenet-bn took 181 us an image at 1024 against 111 at 256 (cnn 469 against 277).
    was_training = model.training
    model.eval()
    embs, logits = [], []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch):
            e, lg = model(x[start:start + batch])
            embs.append(e)
            logits.append(lg)
    model.train(was_training)
    return torch.cat(embs), torch.cat(logits)


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


class Trainer:
    """Trains one run from its settings (and optional targets); iterate `snapshots()` for live
    progress, then read `result()`. It knows nothing of pages or distillation rounds."""

    def __init__(self, settings: RunSettings, data: PreparedData | None = None, targets: Targets | None = None,
                 *, snapshots: bool = True) -> None:
        self.settings = settings
        self.data = data if data is not None else prepare_data(settings)
        self.targets = targets or Targets()
        self.loss_spec = LOSSES.get(settings.loss)
        self.take_snapshots = snapshots
        self.device = pick_device(settings.device)
        ds = self.data.dataset
        self.num_classes = ds.num_classes
        t = self.targets
        labels = self.data.given_labels if t.labels is None else t.labels
        keep = np.ones(len(labels), dtype=bool) if t.keep is None else np.asarray(t.keep).astype(bool)
        if not keep.any():
            raise FatvizError("No training sample is left to train on (every sample was discarded).")
        self._keep_idx = torch.as_tensor(np.flatnonzero(keep), device=self.device)
        self.sampler = BATCH_SAMPLERS.get(settings.batch_sampler).build(np.asarray(labels)[keep],
                                                                         settings.batch_size, settings.pk_k)
        self.x_train = torch.as_tensor(ds.x_train, dtype=torch.float32, device=self.device)
        self.y_train = torch.as_tensor(labels, dtype=torch.long, device=self.device)
        self.soft = None if t.soft is None else torch.as_tensor(t.soft, dtype=torch.float32, device=self.device)
        self.centre_weights = None if t.centre_weights is None else torch.as_tensor(
            t.centre_weights, dtype=torch.float32, device=self.device)
        self.x_test = torch.as_tensor(ds.x_test, dtype=torch.float32, device=self.device)
        n_test = len(ds.y_test)
        self._eval_idx = (None if n_test <= settings.eval_points
                          else visualisation_indices(ds.y_test, settings.eval_points, settings.seed))
        self.test_metrics: dict[str, float] = {}
        self.eval_seconds = 0.0  # spent in evaluate(): the test metrics, per epoch and at the end
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
        torch.manual_seed(settings.seed)
        self.model_kind = choose_model(settings.model, tuple(ds.input_shape))
        self.model = build_model(self.model_kind, tuple(ds.input_shape), settings.embedding_dim,
                                 ds.num_classes).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings.lr)
        self.loss_fn = self.loss_spec.build(settings)
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.snapshot_list: list[Snapshot] = []
        self.stopped = False
        self._start = 0.0
        self._centroids: Centroids | None = None
        self.centre_source = settings.centre_source
        self._moving: MovingCentres | None = None  # the ema:BETA centres, started at the first epoch

    # -- pieces -----------------------------------------------------------------------
    def whole_set_centroids(self, train_emb: torch.Tensor | None = None) -> Centroids:
        """Centres over the whole training set (model in eval mode), fixed for an epoch."""
        if train_emb is None:
            train_emb, _ = _embed(self.model, self.x_train)
        w = torch.zeros(len(self.y_train), device=self.device)
        w[self._keep_idx] = 1.0
        if self.centre_weights is not None:
            w = w * self.centre_weights
        return compute_centroids(train_emb, self.y_train, self.settings.centroid, self.num_classes, weights=w)

    def batch_sums(self, emb: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-class sums and weights of one batch, what moves the ema centres (`class_sums`)."""
        return class_sums(emb, y, self.settings.centroid, self.num_classes, weights=w)

    def _batch_loss(self, emb: torch.Tensor, logits: torch.Tensor, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.y_train[idx]
        centroids = None
        if self.loss_spec.uses_centres:
            centroids = self._centroids
            # Distillation's centre weights say which samples shape a centre, whatever the source.
            w = None if self.centre_weights is None else self.centre_weights[idx]
            if self.centre_source.kind == "batch":
                centroids = compute_centroids(emb, y, self.settings.centroid, self.num_classes, weights=w)
            elif self.centre_source.kind == "ema":
                # The batch moves the centres before its loss: like `batch`, it is measured against
                # centres it has shaped, and like every source the centres carry no gradient.
                self._moving.update(*self.batch_sums(emb, y, w))
                centroids = self._moving.centroids(emb, y, w)
        targets = y if self.soft is None else self.soft[idx]
        return self.loss_fn(emb, y, logits, targets, centroids)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings, logits) of inputs `x` in eval mode, in chunks."""
        return _embed(self.model, x)

    @property
    def evaluated_on(self) -> tuple[int, int]:
        """(test samples the per-epoch metrics use, test split size)."""
        n = len(self.data.dataset.y_test)
        return (n if self._eval_idx is None else len(self._eval_idx), n)

    def evaluate(self, subset: bool = False) -> dict[str, float]:
        """Test metrics (true labels) of the model as it is now: the whole test split, or with
        `subset` the fixed stratified evaluation subset the per-epoch snapshots use."""
        start = time.perf_counter()
        ds = self.data.dataset
        pick = self._eval_idx if subset else None

        def part(a: np.ndarray | None) -> np.ndarray | None:
            return a if a is None or pick is None else a[pick]

        x = self.x_test if pick is None else self.x_test[torch.as_tensor(pick, device=self.device)]
        test_emb, test_logits = _embed(self.model, x)
        metrics = evaluate_embeddings(  # the embeddings stay on the device: the ranking runs there
            anchor_space(test_emb, self.settings.centroid), part(ds.y_test),
            logits=test_logits.cpu().numpy() if self.loss_spec.uses_logits else None,
            cams=part(ds.cam_test), is_query=part(ds.is_query_test), seed=self.settings.seed)
        self.eval_seconds += time.perf_counter() - start
        return {k: float(v) for k, v in metrics.items()}

    def final_evaluation(self) -> dict[str, float]:
        """The whole test split once, after training (reusing the last snapshot's when that was it)."""
        if not self.test_metrics:
            last = self.snapshot_list[-1] if self.snapshot_list else None
            self.test_metrics = (dict(last.metrics) if last is not None and self._eval_idx is None
                                 else self.evaluate())
        return self.test_metrics

    def measure(self) -> tuple[torch.Tensor, Centroids]:
        """The model as it is now: the visualisation subset's embeddings and the whole-set centres."""
        train_emb, _ = _embed(self.model, self.x_train)
        vis_emb = train_emb[torch.as_tensor(self.data.vis_idx, device=self.device)]
        return vis_emb, self.whole_set_centroids(train_emb)

    def _snapshot(self, epoch: int, losses: dict[str, float]) -> Snapshot:
        """Measure the model now: embeddings, centres, bound on the visual subset, test metrics."""
        s = self.settings
        vis_emb, self._centroids = self.measure()
        vis_given = self.y_train[torch.as_tensor(self.data.vis_idx, device=self.device)]
        try:
            b = triplet_bound(vis_emb, vis_given, s.centroid, s.effective_margin)
            bound = {"exact": b.exact, "bound": b.bound, "bound_point_to_set": b.point_to_set,
                     "bound_radius": b.radius_term}
        except FatvizError:
            bound = {}
        metrics = self.evaluate(subset=True)
        c = self._centroids
        return Snapshot(
            epoch=epoch,
            embeddings=anchor_space(vis_emb, s.centroid).cpu().numpy().astype(np.float32),
            centres=c.centres.cpu().numpy().astype(np.float32),
            radius=c.radius.cpu().numpy().astype(np.float32),
            present=c.present.cpu().numpy(),
            losses=losses, bound=bound, metrics=metrics,
            seconds=time.perf_counter() - self._start)

    # -- the loop ---------------------------------------------------------------------
    def snapshots(self, should_stop: Callable[[], bool] | None = None,
                  on_progress: Callable[[float, str], None] | None = None) -> Iterator[Snapshot]:
        """Train epoch by epoch, yielding a snapshot after each (epoch 0 = before training).

        `should_stop` is polled between batches; when it returns True, training ends
        after the current batch, a last snapshot is taken, and `self.stopped` is set.
        """
        with cpu_threads(threads_for(self.model_kind, self.device)):
            yield from self._loop(should_stop, on_progress)

    def _loop(self, should_stop: Callable[[], bool] | None,
              on_progress: Callable[[float, str], None] | None) -> Iterator[Snapshot]:
        self._start = time.perf_counter()
        if self.take_snapshots:
            snap = self._snapshot(0, {})
            self.snapshot_list.append(snap)
            yield snap
        for epoch in range(1, self.settings.epochs + 1):
            # Loss terms add up on the device: reading a float every batch would make a GPU wait
            # for each step. Finiteness is checked every CHECK_EVERY batches and at the epoch end.
            sums: dict[str, torch.Tensor] = {}
            batches = 0
            for idx in self.epoch_batches():
                terms = self.train_batch(idx)
                for k, v in terms.items():
                    sums[k] = sums[k] + v if k in sums else v.clone()
                batches += 1
                if batches % CHECK_EVERY == 0:
                    self._check_finite(sums["total"], epoch, batches)
                if should_stop is not None and should_stop():
                    self.stopped = True
                    break
            if batches:
                self._check_finite(sums["total"], epoch, None)
            sums = {k: float(v) for k, v in sums.items()}
            losses = {k: v / max(1, batches) for k, v in sums.items()}
            if on_progress is not None:
                on_progress(epoch / self.settings.epochs, f"epoch {epoch}/{self.settings.epochs}")
            last = epoch == self.settings.epochs or self.stopped
            if self.take_snapshots:
                snap = self._snapshot(epoch, losses)
                self.snapshot_list.append(snap)
                if last:
                    self.final_evaluation()  # before the last yield: a consumer may stop iterating there
                yield snap
            else:
                self._centroids = None
            if self.stopped:
                return

    def epoch_batches(self) -> list[torch.Tensor]:
        """Start an epoch (its centres, when fixed per epoch; train mode) and return its batches of sample indices."""
        if self.loss_spec.uses_centres and self.centre_source.kind == "ema" and self._moving is None:
            # Every class starts at its epoch-0 whole-set centre, so one no batch has reached yet is
            # still a negative where it was, not a missing one.
            start = self._centroids if self._centroids is not None else self.whole_set_centroids()
            self._moving = MovingCentres(start, self.centre_source.beta)
        if self.loss_spec.uses_centres and self.centre_source.kind == "epoch" and (
                self._centroids is None or not self.take_snapshots):
            self._centroids = self.whole_set_centroids()
        self.model.train()
        order = self.epoch_order()
        bs = self.sampler.batch_length(self.settings.batch_size)  # a DistributedTrainer's settings hold its share
        # Batch norm cannot train on a single sample: a last batch of one is left out.
        return [idx for idx in (order[start:start + bs] for start in range(0, len(order), bs)) if len(idx) >= 2]

    def train_batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """One optimiser step on the training samples `idx`; returns the loss terms (detached, on the device)."""
        emb, logits = self.model(self.x_train[idx])
        terms = self._batch_loss(emb, logits, idx)
        self.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        self.optimizer.step()
        return {k: v.detach() for k, v in terms.items()}

    def epoch_order(self) -> torch.Tensor:
        """This epoch's order of the kept training samples, by the settings' batch sampler."""
        return self._keep_idx[self.sampler.order(self.generator).to(self.device)]

    @staticmethod
    def _check_finite(total: torch.Tensor, epoch: int, batch: int | None) -> None:
        if not torch.isfinite(total):
            where = f"epoch {epoch}" + (f", by batch {batch}" if batch is not None else "")
            raise TrainingDiverged(
                f"The loss became {float(total)} at {where}. "
                "Lower the learning rate or the margin, or pick a normalised centroid option.")

    def result(self) -> RunResult:
        """The run so far, as a RunResult."""
        given = self.y_train.cpu().numpy()
        vis = self.data.vis_idx
        return RunResult(
            settings=self.settings, snapshots=list(self.snapshot_list),
            state_dict={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            vis_idx=vis, vis_true=self.data.dataset.y_train[vis], vis_given=given[vis],
            vis_flipped=given[vis] != self.data.dataset.y_train[vis],
            class_names=list(self.data.dataset.class_names), model_kind=self.model_kind,
            device=str(self.device), seconds=time.perf_counter() - self._start, stopped=self.stopped,
            test_metrics=dict(self.test_metrics), evaluated_on=self.evaluated_on)

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
