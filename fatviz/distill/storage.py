"""A distillation on disk: one folder of CSV tables, JSON, .npy/.npz arrays and the student's run."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fatviz.distill.report import (
    BASELINE_COLUMNS,
    CONFUSION_COLUMNS,
    PER_CLASS_COLUMNS,
    TABLE_COLUMNS,
    DistillResult,
)
from fatviz.errors import FatvizError
from fatviz.noise import flip_kinds
from fatviz.runs import DISTILL_MARKER, check_schema, load_run, save_run
from fatviz.settings import RunSettings

SCHEMA = "fatviz.distill"
SCHEMA_VERSION = 3  # 2: per-sample noise kind and second true class, per-kind report figures; 3: two people
# Version 1 loads as wrong-identity noise only, without the per-kind figures; 1 and 2 without two-people verdicts.
READABLE_VERSIONS = (1, 2, 3)
META_FILE = DISTILL_MARKER  # listings tell a distillation folder by this file
STUDENT_FOLDER = "student"
TABLE_TYPES = {"index": np.int64, "true_label": np.int64, "given_label": np.int64, "teacher_label": np.int64,
               "score": np.float64, "flagged": bool, "round_discarded": np.int64, "was_flipped": bool,
               "cleanlab_flagged": bool, "noise_kind": str, "second_label": np.int64, "pair_first": np.int64,
               "pair_second": np.int64}


def json_ready(value: Any) -> Any:
    """NaN and inf become null (strict JSON); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def check_distillation_target(folder: str | os.PathLike) -> Path:
    """The folder a distillation may be saved into (new, empty, or an older distillation), else a FatvizError."""
    target = Path(folder)
    if target.exists() and not (target.is_dir() and ((target / META_FILE).is_file() or not any(target.iterdir()))):
        raise FatvizError(f"{target} holds something other than a distillation, and saving one replaces the whole "
                          "folder: name a new or empty folder.")
    return target


def save_distillation(result: DistillResult, folder: str | os.PathLike) -> Path:
    """Write the distillation into `folder` atomically and return the folder.

    Everything goes into a temporary sibling folder first, which then replaces the
    target by rename: a reader finds the old run, the new one, or (for an instant while
    an old run is swapped out) none, never half of one. Tables are CSV, the rest JSON and
    .npy/.npz read with allow_pickle=False, the student a normal run file. Since the folder
    is replaced whole, one that holds anything but a distillation is refused.
    """
    target = check_distillation_target(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        meta = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "settings": result.settings.to_dict(),
                "rounds": result.rounds, "report": result.report, "notes": list(result.notes)}
        (tmp / META_FILE).write_text(json.dumps(json_ready(meta), indent=1))
        result.table.to_csv(tmp / "table.csv", index=False)
        result.per_class.to_csv(tmp / "per_class.csv", index=False)
        result.confusion.to_csv(tmp / "confusion.csv", index=False)
        result.baselines.to_csv(tmp / "baselines.csv", index_label="model")
        np.save(tmp / "soft_labels.npy", np.asarray(result.soft_labels, dtype=np.float32))
        np.savez(tmp / "history.npz", **result.history)
        save_run(result.student, tmp / STUDENT_FOLDER)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "run")  # rename, not copy: the old run leaves in one step
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.read_csv(path)
    if tuple(frame.columns) != columns:
        raise ValueError(f"{path.name} has columns {list(frame.columns)}, expected {list(columns)}")
    return frame


def load_distillation(folder: str | os.PathLike) -> DistillResult:
    """Read a folder written by save_distillation; a missing, foreign or damaged one raises FatvizError."""
    base = Path(folder)
    meta_path = base / META_FILE
    if not meta_path.is_file():
        raise FatvizError(f"{base} holds no distillation ({META_FILE} is missing); pick a folder written by "
                          "`python -m fatviz distill --out FOLDER` or by the app.")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FatvizError(f"{meta_path} cannot be read ({exc}); the run may be damaged: run it again.") from None
    version = meta.get("schema_version") if isinstance(meta, dict) else None
    check_schema(meta, SCHEMA, version if version in READABLE_VERSIONS else SCHEMA_VERSION, meta_path, "distillation")
    try:
        if version == 1:  # before noise kinds: every flipped label was a wrong identity
            table = _read_table(base / "table.csv", TABLE_COLUMNS[:-4])
            table = table.assign(noise_kind=flip_kinds(table["was_flipped"]), second_label=-1)
        else:
            table = _read_table(base / "table.csv", TABLE_COLUMNS[:-2] if version == 2 else TABLE_COLUMNS)
        if version in (1, 2):  # before two-people verdicts: the teacher saw one person in every image
            table = table.assign(pair_first=-1, pair_second=-1)
        table = table.astype(TABLE_TYPES)
        baselines = pd.read_csv(base / "baselines.csv", index_col="model")
        if tuple(baselines.columns) != BASELINE_COLUMNS:
            raise ValueError("baselines.csv has the wrong columns")
        baselines.index.name = None
        soft = np.load(base / "soft_labels.npy", allow_pickle=False)
        with np.load(base / "history.npz", allow_pickle=False) as npz:
            history = {k: npz[k] for k in npz.files}
        if soft.ndim != 2 or soft.shape[0] != len(table):
            raise ValueError("soft_labels.npy does not match the table")
        report = {k: math.nan if v is None else float(v) for k, v in meta["report"].items()}
        return DistillResult(
            settings=RunSettings.from_dict(meta["settings"], strict=False), table=table,
            rounds=list(meta["rounds"]), report=report,
            per_class=_read_table(base / "per_class.csv", PER_CLASS_COLUMNS),
            confusion=_read_table(base / "confusion.csv", CONFUSION_COLUMNS), baselines=baselines,
            soft_labels=soft.astype(np.float32), student=load_run(base / STUDENT_FOLDER),
            notes=[str(n) for n in meta["notes"]], history=history)
    except FatvizError:
        raise
    except (OSError, KeyError, TypeError, ValueError, pd.errors.ParserError) as exc:
        raise FatvizError(f"{base} is missing part of a distillation ({exc}); it may be damaged: run it again.") from None
