"""One batch at a time (GAN Lab's slow motion): a private copy of a comparison's four trainers that
trains exactly one batch of each centroid option on request, and says where every class centre was
before and where it is now.

It starts from the settings (the untrained networks a run would start from) or from a finished or
stopped run's final weights. The optimiser's state is not saved with a run, so a copy of a run starts
a fresh Adam: its first steps are not the ones the run would have taken next. The copy never
writes anywhere: the saved run and its epochs stay as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from fatviz.centroids import CENTROIDS, anchor_space
from fatviz.errors import FatvizError
from fatviz.projection import PanelFrames, last_frame_map, panel_of
from fatviz.settings import RunSettings
from fatviz.train import PreparedData, RunResult, Snapshot, Trainer, cpu_threads, option_settings, threads_for


@dataclass(frozen=True, eq=False)
class Stepped:
    """Every option after one more batch: its measured state, where its centres were before, the counter."""

    snapshots: dict[str, Snapshot]  # after the batch: `epoch` = whole epochs done, `losses` = the batch's terms
    previous: dict[str, np.ndarray]  # (K, D) centres before the batch (anchor space; NaN: no centre then)
    epochs: dict[str, int]  # whole epochs done
    batches: dict[str, int]  # batches done of the epoch after those
    per_epoch: dict[str, int]  # batches in that epoch (in the one just done, when `batches` is 0)
    steps: int  # batches stepped since the copy was made

    @property
    def moved(self) -> dict[str, np.ndarray]:
        """How far each class centre moved in the batch, per option: (K,) Euclidean distances in the
        option's anchor space (NaN for a class without a centre before or after)."""
        return {o: np.where(snap.present, np.linalg.norm(snap.centres - self.previous[o], axis=1), np.nan)
                for o, snap in self.snapshots.items()}

    @property
    def counter(self) -> str:
        """Where training stands, e.g. "epoch 3 + 2 of 15 batches" (the same for every option, or per option)."""
        places = {o: _place(self.epochs[o], self.batches[o], self.per_epoch[o]) for o in self.epochs}
        if len(set(places.values())) == 1:
            return next(iter(places.values()))
        return " · ".join(f"{o}: {place}" for o, place in places.items())


def _place(epoch: int, batch: int, per_epoch: int) -> str:
    if batch == 0:
        return f"epoch {epoch}"
    return f"epoch {epoch} + {batch} of {per_epoch} batches"


@dataclass(eq=False)
class _Position:
    epoch: int  # whole epochs done
    now: Snapshot | None = None  # the model as it is, measured
    order: list[torch.Tensor] | None = None  # the current epoch's batches (None: the next step starts an epoch)
    batch: int = 0  # batches done of it
    per_epoch: int = 0  # batches in it (kept once it is done)


class BatchStepper:
    """The four centroid options' trainers, stepped one batch at a time (see the module docstring).

    `results` ({option: RunResult}) starts each option from that run's final weights, at the epoch
    after its last snapshot; without it every option starts untrained, exactly as a run would.
    """

    def __init__(self, settings: RunSettings, data: PreparedData,
                 results: Mapping[str, RunResult] | None = None) -> None:
        self.options = CENTROIDS.names()
        if results is not None and set(results) != set(self.options):
            raise FatvizError("Stepping a batch needs the run of every centroid option; train the four options again.")
        self.trainers: dict[str, Trainer] = {}
        self._at: dict[str, _Position] = {}
        self._maps: dict[str, Callable[[np.ndarray], np.ndarray]] = {}  # where each option's panel draws
        self.steps = 0
        for option in self.options:
            trainer = Trainer(option_settings(settings, option), data, snapshots=False)
            epoch = 0
            if results is not None:
                run = results[option]
                trainer.model.load_state_dict(run.state_dict)  # copies: the run's tensors stay untouched
                epoch = int(run.snapshots[-1].epoch)
                for _ in range(epoch):  # the sampler's generator as the run left it: the next epoch's order
                    trainer.epoch_order()
            self.trainers[option] = trainer
            self._at[option] = _Position(epoch)
            now = self._measure(option, {})
            self._at[option].now = now
            # The axes the panels draw the run's last epoch on (a fresh copy: its own first epoch).
            frames = [s.embeddings for s in results[option].snapshots] if results is not None else [now.embeddings]
            self._maps[option] = last_frame_map(frames)

    def _measure(self, option: str, losses: dict[str, float]) -> Snapshot:
        """The option's model now, as a snapshot without bound or test metrics."""
        trainer, at = self.trainers[option], self._at[option]
        vis_emb, c = trainer.measure()
        return Snapshot(epoch=at.epoch, embeddings=anchor_space(vis_emb, trainer.settings.centroid).cpu().numpy(),
                        centres=c.centres.cpu().numpy(), radius=c.radius.cpu().numpy(),
                        present=c.present.cpu().numpy(), losses=losses, bound={}, metrics={}, seconds=0.0)

    def step(self) -> Stepped:
        """Train one batch of every option (the next of its epoch's order) and measure them again."""
        previous = {}
        for option, trainer in self.trainers.items():
            at = self._at[option]
            previous[option] = np.where(at.now.present[:, None], at.now.centres, np.nan)
            with cpu_threads(threads_for(trainer.model_kind, trainer.device)):
                if at.order is None:
                    at.order, at.batch = trainer.epoch_batches(), 0
                    at.per_epoch = len(at.order)
                terms = trainer.train_batch(at.order[at.batch])
                at.batch += 1
                trainer.check_finite(terms["total"], at.epoch + 1, at.batch)
                if at.batch == len(at.order):  # the epoch is done: the next step starts the next one
                    at.epoch, at.order, at.batch = at.epoch + 1, None, 0
                at.now = self._measure(option, {k: float(v) for k, v in terms.items()})
        self.steps += 1
        at = self._at
        return Stepped({o: at[o].now for o in self.options}, previous, {o: at[o].epoch for o in self.options},
                       {o: at[o].batch for o in self.options}, {o: at[o].per_epoch for o in self.options},
                       self.steps)

    def panels(self, stepped: Stepped) -> tuple[list[PanelFrames], list[np.ndarray]]:
        """Each option's panel of the stepped state and its centres' previous places, both drawn on
        the axes of the run's last epoch (PCA; a 2-D embedding as it is), so an arrow from a
        previous place to the new one shows how far the centre moved in that batch."""
        panels, before = [], []
        for option in self.options:
            snap, drawn = stepped.snapshots[option], self._maps[option]
            panels.append(panel_of(option, [snap], [drawn(snap.embeddings)], [drawn(snap.centres)]))
            before.append(drawn(stepped.previous[option]))
        return panels, before
