"""What one server accepts: a job's memory and time estimated from its settings, and the limits."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from fatviz.catalogue import MODELS
from fatviz.data import DATASETS
from fatviz.errors import FatvizError
from fatviz.job_kinds import JOB_KINDS
from fatviz.settings import RunSettings


@dataclass(frozen=True)
class Estimate:
    """A job's expected peak memory (bytes) and time (seconds, one core) before it starts."""

    memory: float
    seconds: float


def estimate(kind: str, settings: RunSettings) -> Estimate:
    """A deliberately rough upper estimate of a job's memory and time, from its settings alone."""
    from fatviz.models import choose_model

    s = settings
    n_train, n_test, shape = DATASETS.get(s.dataset).most(s)
    dim = math.prod(shape)
    if s.subsample:
        n_train, n_test = min(n_train, s.subsample), min(n_test, max(s.subsample // 3, 100))
    spec = JOB_KINDS.get(kind)
    parts = len(spec.options(s))
    frames = parts * (s.epochs + 1)
    memory = (
        400e6  # the interpreter, torch and the model
        + (n_train + n_test) * dim * 5.0  # float32 inputs and uint8 display copies
        + frames * s.vis_points * (s.embedding_dim + 2) * 4.0  # the snapshots kept
        + 10 * s.vis_points ** 2 * 4.0  # the exact triplet loss on the drawn points
        + 4 * min(n_test, 4096) ** 2 * 4.0  # retrieval distances, chunked
        + (s.batch_size ** 3 * 4.0 if s.loss == "triplet-all" else s.batch_size ** 2 * 16.0)
    )
    model = MODELS.get(choose_model(s.model, shape))
    per_epoch = n_train * dim * model.seconds_per_input + n_test * 2e-5
    return Estimate(memory=memory, seconds=spec.epochs(s) * per_epoch)


@dataclass(frozen=True)
class Budget:
    """What one server accepts: jobs waiting at once, and one job's estimated memory and time."""

    max_active: int  # jobs training or queued at once
    memory: float  # bytes one job may need
    seconds: float  # seconds one job may take

    @classmethod
    def for_machine(cls, workers: int) -> Budget:
        """Defaults from the machine: a few jobs per core; a job may use half the memory per worker."""
        cores = os.cpu_count() or 1
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = 8e9
        return cls(max_active=int(os.environ.get("FATVIZ_MAX_JOBS", 4 * cores)),
                   memory=0.5 * total / max(1, workers), seconds=float(os.environ.get("FATVIZ_MAX_JOB_SECONDS", 1800)))

    def check(self, kind: str, settings: RunSettings, active: int) -> None:
        """Raise one FatvizError when the server cannot take this job now."""
        if active >= self.max_active:
            raise FatvizError(f"The server is busy: {active} jobs are training or waiting, the most it takes at once. "
                              "Try again when one has finished.")
        est = estimate(kind, settings)
        if est.memory > self.memory:
            raise FatvizError(f"This job would need about {est.memory / 1e9:.1f} GB of memory, more than the "
                              f"{self.memory / 1e9:.1f} GB one job may use here: choose fewer points, samples or "
                              "embedding dimensions.")
        if est.seconds > self.seconds:
            raise FatvizError(f"This job would take about {est.seconds / 60:.0f} minutes, more than the "
                              f"{self.seconds / 60:.0f} one job may take here: choose fewer epochs or samples, "
                              "or train it with the command line.")


