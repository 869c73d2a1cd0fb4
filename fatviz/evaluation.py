"""Test metrics of a model, shared by training, distillation and the loss comparison.

`embed_batches` passes a split through a model in eval mode, in batches; `Evaluator` turns the
test split's embeddings into retrieval and clustering metrics (true labels), on the whole split or
on the fixed stratified subset the per-epoch snapshots use, and keeps the seconds it spent;
`embed_split` embeds a split with a saved run's weights, in the run's anchor space.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np
import torch

from fatviz.centroids import anchor_space
from fatviz.data import Dataset, visualisation_indices
from fatviz.errors import FatvizError
from fatviz.losses import LOSSES
from fatviz.metrics import evaluate_embeddings
from fatviz.models import build_model, fast_layout
from fatviz.settings import RunSettings

# 256 images a batch: on 2 CPU cores a 1024-image batch's activations outgrow the cache, and
# lenet-bn took 181 us an image at 1024 against 111 at 256 (cnn 469 against 277).
EMBED_BATCH = 256


def embed_batches(model: torch.nn.Module, x: torch.Tensor, batch: int = EMBED_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings and logits of x in eval mode, in batches, without gradients (the model's mode is kept)."""
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


class Evaluator:
    """One model's test metrics (true labels) on a dataset's test split, by the run's settings.

    `evaluate()` measures the whole split, `evaluate(subset=True)` the fixed stratified subset of
    `eval_points` samples; `final()` measures the whole split once after training. `seconds` adds
    up the time every evaluation took.
    """

    def __init__(self, model: torch.nn.Module, dataset: Dataset, settings: RunSettings, device: torch.device) -> None:
        self.model = model
        self.dataset = dataset
        self.centroid, self.seed = settings.centroid, settings.seed
        self.uses_logits = LOSSES.get(settings.loss).uses_logits
        self.x_test = torch.as_tensor(dataset.x_test, dtype=torch.float32, device=device)
        n_test = len(dataset.y_test)
        self.subset = (None if n_test <= settings.eval_points
                       else visualisation_indices(dataset.y_test, settings.eval_points, settings.seed))
        self.seconds = 0.0
        self.final_metrics: dict[str, float] = {}

    @property
    def evaluated_on(self) -> tuple[int, int]:
        """(test samples the per-epoch metrics use, test split size)."""
        n = len(self.dataset.y_test)
        return (n if self.subset is None else len(self.subset), n)

    def evaluate(self, subset: bool = False) -> dict[str, float]:
        """Test metrics of the model as it is now: the whole test split, or with `subset` the fixed subset."""
        start = time.perf_counter()
        ds = self.dataset
        pick = self.subset if subset else None

        def part(a: np.ndarray | None) -> np.ndarray | None:
            return a if a is None or pick is None else a[pick]

        x = self.x_test if pick is None else self.x_test[torch.as_tensor(pick, device=self.x_test.device)]
        test_emb, test_logits = embed_batches(self.model, x)
        metrics = evaluate_embeddings(  # the embeddings stay on the device: the ranking runs there
            anchor_space(test_emb, self.centroid), part(ds.y_test),
            logits=test_logits.cpu().numpy() if self.uses_logits else None,
            cams=part(ds.cam_test), is_query=part(ds.is_query_test), seed=self.seed)
        self.seconds += time.perf_counter() - start
        return {k: float(v) for k, v in metrics.items()}

    def final(self, last_subset_metrics: dict[str, float] | None = None) -> dict[str, float]:
        """The whole test split once, after training; the last per-epoch metrics stand for it when
        the subset was the whole split."""
        if not self.final_metrics:
            self.final_metrics = (dict(last_subset_metrics) if last_subset_metrics is not None and self.subset is None
                                  else self.evaluate())
        return self.final_metrics


class SavedWeights(Protocol):
    """What embed_split reads of a run (a fatviz.train.RunResult has it)."""

    settings: RunSettings
    model_kind: str
    state_dict: dict[str, torch.Tensor]


def saved_network(result: SavedWeights, dataset: Dataset) -> torch.nn.Module:
    """A run's network with its saved weights, on the CPU, for the dataset as loaded now."""
    settings = result.settings
    model = build_model(result.model_kind, tuple(dataset.input_shape), settings.embedding_dim, dataset.num_classes)
    try:
        model.load_state_dict(result.state_dict)
    except RuntimeError as exc:
        raise FatvizError(f"The run's weights do not fit its dataset as loaded now ({exc}); train the run again."
                          ) from None
    return fast_layout(model, tuple(dataset.input_shape))


def embed_split(result: SavedWeights, dataset: Dataset, split: str = "test") -> torch.Tensor:
    """A split ("train" or "test") of the dataset embedded by a run's saved weights, in its anchor space, on the CPU."""
    x = dataset.x_train if split == "train" else dataset.x_test
    emb, _ = embed_batches(saved_network(result, dataset), torch.as_tensor(x, dtype=torch.float32))
    return anchor_space(emb, result.settings.centroid)
