"""Progress of long work: phases weighted by what they cost, and the bar the command line shows.

Everything that trains reports `(fraction, message)` to an `on_progress` callback, the
fraction running from 0 to 1. `Phases` turns the progress of several named phases into one
fraction, each phase counting for its share of the work, and the work is counted in
sample-epochs: one training sample through one forward and backward pass is one unit. A
phase whose size is only known later (a teacher round trains on the samples the round before
it kept) starts with an upper bound and is resized once known, so the fraction only grows.

Because the fraction counts real work, it grows at a steady pace, and `Pace` can say how
long is left from the pace so far: the command line's `ProgressBar` and the app's progress
text both show it.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

from fatviz.errors import FatvizError

Progress = Callable[[float, str], None]

# What work other than training steps costs, in sample-epochs; measured on digits (MLP on one
# CPU thread, 1347 training and 450 test samples): a training epoch took 0.11-0.12 s, a forward
# pass over the training split in eval mode 0.009 s, a snapshot (the training and test splits
# embedded, the bound on the drawn points, the test metrics) 0.073 s.
FORWARD_WORK = 0.08  # one sample through the network in eval mode, no gradient
SNAPSHOT_WORK = 0.6  # a snapshot, per sample of the training split


def epoch_work(trained: int, epochs: int = 1, *, forward: int = 0, snapshot_of: int = 0) -> float:
    """Work of `epochs` epochs on `trained` samples, each epoch also passing `forward` samples
    forward and taking a snapshot of a `snapshot_of`-sample training split."""
    return float(epochs) * (trained + FORWARD_WORK * forward + SNAPSHOT_WORK * snapshot_of)


class Stopped(FatvizError):
    """`should_stop` asked the work to end early; nothing half-finished is returned."""


class Part:
    """The progress callback of one phase: its own 0..1 fraction in, the whole's fraction out."""

    def __init__(self, phases: Phases, name: str) -> None:
        self.phases = phases
        self.name = name

    def __call__(self, fraction: float, message: str) -> None:
        self.phases.report(self.name, fraction, message)

    def resize(self, work: float) -> None:
        """This phase's work, once it is known."""
        self.phases.resize(self.name, work)


class Phases:
    """Named phases of one job, each weighted by its work, reported as one growing fraction.

    A Phases whose `on_progress` is another Phases' `Part` is nested in it: its total work
    becomes that part's weight, and follows it when a phase of it is resized.
    """

    def __init__(self, weights: dict[str, float], on_progress: Progress | None = None,
                 should_stop: Callable[[], bool] | None = None, stopped: type[Stopped] = Stopped) -> None:
        self.weights = {name: float(w) for name, w in weights.items()}
        self.done = dict.fromkeys(self.weights, 0.0)  # each phase's own fraction
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.stopped = stopped
        self._last = 0.0
        self._tell_parent()

    @property
    def total(self) -> float:
        """All the work, in sample-epochs."""
        return sum(self.weights.values())

    def fraction(self) -> float:
        """The share of the work done."""
        total = self.total
        if total <= 0:
            return 1.0
        return min(1.0, sum(self.weights[n] * f for n, f in self.done.items()) / total)

    def part(self, name: str) -> Part | None:
        """The progress callback for one phase (None when nobody listens)."""
        if self.on_progress is None:
            return None
        if name not in self.weights:
            raise KeyError(name)
        return Part(self, name)

    def resize(self, name: str, work: float) -> None:
        """Set one phase's work (in sample-epochs), once it is known."""
        self.weights[name] = float(work)
        self._tell_parent()

    def report(self, name: str, fraction: float, message: str) -> None:
        """Phase `name` is `fraction` done: pass the whole's fraction on."""
        self.done[name] = min(max(float(fraction), 0.0), 1.0)
        # A phase that grew past its estimate must not move the bar back.
        self._last = max(self._last, self.fraction())
        if self.on_progress is not None:
            self.on_progress(self._last, message)

    def check(self) -> None:
        """Between phases: end here (raise `stopped`) when asked to stop."""
        if self.should_stop is not None and self.should_stop():
            raise self.stopped("Stopped before it finished; nothing was saved.")

    def _tell_parent(self) -> None:
        if isinstance(self.on_progress, Part):
            self.on_progress.resize(self.total)


def seconds_left(first: tuple[float, float], now: tuple[float, float]) -> float:
    """Seconds left at the average pace since the first report, from (time, fraction) pairs; inf
    until the fraction has moved.

    The pace is measured from the first report on, not from the start: the first epoch of a
    process pays one-off costs (imports, allocator, thread pools; 3-5 s on digits), and an
    average that includes them said 50 s were left of a 15 s distillation. From the first
    report on, the estimate was within about 1 s all along (digits, pairflip 40 %).
    """
    (t0, f0), (t, f) = first, now
    if f <= f0 or t <= t0:
        return math.inf
    return (t - t0) * (1.0 - f) / (f - f0)


class Pace:
    """Seconds left, from `(fraction)` reports over time, at the pace seen since the first one that moved.

    Polling callers (a page following a job) report 0 while a worker starts; the pace is
    measured from the first report above 0 (see `seconds_left`).
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.first: tuple[float, float] | None = None

    def __call__(self, fraction: float) -> float:
        """Seconds left after this report (inf while unknown)."""
        now = (self.clock(), min(max(float(fraction), 0.0), 1.0))
        if self.first is None and now[1] > 0:
            self.first = now
        return math.inf if self.first is None else seconds_left(self.first, now)


def left_text(seconds: float) -> str:
    """'~1:05 left' (minutes:seconds, hours:minutes:seconds past an hour); '' while unknown."""
    if not math.isfinite(seconds):
        return ""
    m, s = divmod(round(max(seconds, 0.0)), 60)
    h, m = divmod(m, 60)
    return f"~{h}:{m:02d}:{s:02d} left" if h else f"~{m}:{s:02d} left"


def seconds_text(report: dict[str, float], words: dict[str, str]) -> str:
    """What each phase took, from a report's "<phase>_seconds" entries, in the order of `words` (phase ->
    its name in words): 'teacher 2.1 s, student 4.9 s, confident learning skipped' (NaN: skipped).

    A phase the report lacks is left out, so a run saved before its phases were timed gives ''.
    """
    times = [(name, report[f"{phase}_seconds"]) for phase, name in words.items() if f"{phase}_seconds" in report]
    return ", ".join(f"{name} skipped" if math.isnan(t) else f"{name} {t:.1f} s" for name, t in times)


class ProgressBar:
    """A tqdm bar on stderr, called with `(fraction, message)`: the time spent, the time left, the message.

    The time left assumes the rest goes at the pace seen so far (see `Pace`), which holds
    when the fraction counts work, as `Phases` does.
    """

    STEPS = 1000

    def __init__(self, desc: str) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=self.STEPS, desc=desc, file=sys.stderr, leave=False,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}{postfix}")
        self.pace = Pace()

    def __call__(self, fraction: float, message: str) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        left = left_text(self.pace(fraction))
        self.bar.set_postfix_str(f"{left}, {message}" if left else message, refresh=False)
        self.bar.update(round(self.STEPS * fraction) - self.bar.n)

    def close(self) -> None:
        """Remove the bar from the terminal."""
        self.bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
