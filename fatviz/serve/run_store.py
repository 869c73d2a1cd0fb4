"""Where the server keeps finished jobs: one folder per job key, written and read by the job's kind."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from fatviz.errors import FatvizError
from fatviz.job_kinds import JOB_KINDS
from fatviz.settings import RunSettings


class Job(Protocol):
    """What the store reads of a job (fatviz.serve.jobs.Job)."""

    key: str
    kind: str
    settings: RunSettings
    options: tuple[str, ...]
    results: dict[str, Any]


class RunStore:
    """Finished jobs' results under `root`, one folder per job key (root None: nothing is kept)."""

    def __init__(self, root: str | os.PathLike | None) -> None:
        """`root` is the runs folder; None keeps nothing (the CLI's in-memory jobs)."""
        self.root = Path(root) if root else None

    def folder(self, job: Job) -> Path | None:
        """Where a job's results are saved (None for data a session uploaded: never saved on the server)."""
        from fatviz.data import DATASETS

        if self.root is None or DATASETS.get(job.settings.dataset).private:
            return None
        return self.root / job.key

    def save(self, job: Job) -> None:
        """Save a finished job's results with its kind's writer (nothing when it has no folder)."""
        folder = self.folder(job)
        if folder is not None:
            JOB_KINDS.get(job.kind).save(job.results, folder)

    def load(self, job: Job) -> dict[str, Any] | None:
        """A saved job's results per option, or None when none is saved, it cannot be read, or it was stopped."""
        folder = self.folder(job)
        if folder is None or not folder.is_dir():
            return None
        try:
            results = JOB_KINDS.get(job.kind).load(folder, job.options)
        except FatvizError:
            return None
        if any(getattr(r, "stopped", False) for r in results.values()):
            return None  # a truncated run saved by an older fatviz: train it properly
        return results

    def run_folders(self, job: Job) -> dict[str, Path]:
        """Each option's saved run folder (for the layouts kept beside them); empty until it is saved."""
        from fatviz.runs import run_folders

        folder = self.folder(job)
        return {} if folder is None or not folder.is_dir() else run_folders(folder, job.options)
