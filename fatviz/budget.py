"""What one server accepts: a job's memory and time estimated from its settings, and the limits."""

from __future__ import annotations

import os
from dataclasses import dataclass

from fatviz.errors import FatvizError
from fatviz.job_kinds import JOB_KINDS
from fatviz.settings import RunSettings

# Rough costs of one training sample for one epoch on one CPU core, by model (seconds per input
# value): measured on this project's 2-core machine (cnn on 28x28: about 1.7 ms a sample).
_SECONDS_PER_INPUT = {"mlp": 2e-8, "lenet": 0.7e-6, "lenet-bn": 0.8e-6, "cnn-fast": 1.4e-6, "cnn": 2.2e-6, "resnet18": 1.2e-5}
_DATASET_SIZES = {"digits": (1347, 450, 64), "mnist": (60000, 10000, 784), "fashion-mnist": (60000, 10000, 784),
                  "cifar10": (50000, 10000, 3072), "folder": (20000, 5000, 3072),
                  "market1501": (12936, 19732, 6144)}
# reid-synth by size (fatviz.reid_synth.REID_SIZES): market's counts vary with the seed, so its largest.
_REID_SYNTH_SIZES = {"small": (960, 320, 6144), "market": (2700, 900, 6144)}


@dataclass(frozen=True)
class Estimate:
    """A job's expected peak memory (bytes) and time (seconds, one core) before it starts."""

    memory: float
    seconds: float


def estimate(kind: str, settings: RunSettings) -> Estimate:
    """A deliberately rough upper estimate of a job's memory and time, from its settings alone."""
    from fatviz.models import choose_model

    s = settings
    if s.dataset == "blobs":
        n_train, n_test, dim = 150 * s.blob_classes, 50 * s.blob_classes, s.blob_dim
        shape: tuple[int, ...] = (dim,)
    else:
        sizes = {**_DATASET_SIZES, "reid-synth": _REID_SYNTH_SIZES[s.reid_size]}
        n_train, n_test, dim = sizes.get(s.dataset, (20000, 5000, 3072))
        shape = (dim,) if s.dataset == "digits" else (3, 64, 32) if dim == 6144 else (3, 32, 32)
    if s.subsample:
        n_train, n_test = min(n_train, s.subsample), min(n_test, max(s.subsample // 3, 100))
    parts = len(JOB_KINDS.get(kind).options(s))
    frames = parts * (s.epochs + 1)
    memory = (
        400e6  # the interpreter, torch and the model
        + (n_train + n_test) * dim * 5.0  # float32 inputs and uint8 display copies
        + frames * s.vis_points * (s.embedding_dim + 2) * 4.0  # the snapshots kept
        + 10 * s.vis_points ** 2 * 4.0  # the exact triplet loss on the drawn points
        + 4 * min(n_test, 4096) ** 2 * 4.0  # retrieval distances, chunked
        + (s.batch_size ** 3 * 4.0 if s.loss == "triplet-all" else s.batch_size ** 2 * 16.0)
    )
    model = choose_model(s.model, shape)
    per_epoch = n_train * dim * _SECONDS_PER_INPUT.get(model, 1e-5) + n_test * 2e-5
    epochs = parts * s.epochs
    if kind == "losses":  # five losses, three seeds each, no snapshots
        epochs = 15 * s.epochs
    if kind == "distill":  # teacher rounds, 5 folds on 4/5 of the set each, student, its baselines
        from fatviz.distill.student import BASELINE_ROWS

        epochs = (s.teacher_epochs + s.teacher_rounds * s.round_epochs + 4 * s.cv_epochs
                  + (1 + len(BASELINE_ROWS[s.baselines])) * s.epochs)
    return Estimate(memory=memory, seconds=epochs * per_epoch)


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


