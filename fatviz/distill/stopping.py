"""How a distillation ends early: one exception, raised by whichever phase was training."""

from __future__ import annotations

from collections.abc import Callable

from fatviz.progress import Progress, Stopped
from fatviz.train import RunResult, Trainer


class DistillationStopped(Stopped):
    """`should_stop` asked the distillation to end early; nothing half-finished is returned."""


def fit_or_stop(trainer: Trainer, during: str, should_stop: Callable[[], bool] | None,
                on_progress: Progress | None) -> RunResult:
    """Train to the end; a stop request raises DistillationStopped naming the phase (`during`)."""
    result = trainer.fit(should_stop=should_stop, on_progress=on_progress)
    if trainer.stopped:
        raise DistillationStopped(f"Distillation was stopped {during}; nothing was saved.")
    return result
