"""Saved runs: one file per run, written atomically, loaded with weights_only=True."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fatviz.errors import FatvizError
from fatviz.settings import RunSettings
from fatviz.train import RunResult, Snapshot

SCHEMA = "fatviz.run"
SCHEMA_VERSION = 1
RUN_FILE = "run.pt"


def _tensorise(value: Any) -> Any:
    """numpy arrays become tensors so the file loads with weights_only=True."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, dict):
        return {str(k): _tensorise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tensorise(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _numpyise(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, dict):
        return {k: _numpyise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numpyise(v) for v in value]
    return value


def run_path(path: str | os.PathLike) -> Path:
    """A run is a folder holding run.pt; a path to the .pt file itself is accepted too."""
    p = Path(path)
    return p if p.suffix == ".pt" else p / RUN_FILE


def save_run(result: RunResult, path: str | os.PathLike) -> Path:
    """Write the run atomically (temporary file in the same folder, then rename); return the file."""
    target = run_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "settings": result.settings.to_dict(),
        "snapshots": [_tensorise(vars(s)) for s in result.snapshots],
        "state_dict": result.state_dict,
        "vis_idx": _tensorise(result.vis_idx),
        "vis_true": _tensorise(result.vis_true),
        "vis_given": _tensorise(result.vis_given),
        "vis_flipped": _tensorise(result.vis_flipped),
        "class_names": list(result.class_names),
        "model_kind": result.model_kind,
        "device": result.device,
        "seconds": float(result.seconds),
        "stopped": bool(result.stopped),
        "extras": _tensorise(result.extras),
    }
    fd, tmp = tempfile.mkstemp(prefix=".run-", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)  # atomic: a reader sees the old file or the new one, never half
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def check_schema(payload: Any, schema: str, version: int, where: str | os.PathLike, kind: str) -> None:
    """Refuse a foreign file (wrong schema) or one from another fatviz version, with a clear message."""
    if not isinstance(payload, dict) or payload.get("schema") != schema:
        raise FatvizError(f"{where} is not a fatviz {kind}; pick another file or folder.")
    if payload.get("schema_version") != version:
        raise FatvizError(f"{where} has {kind} schema version {payload.get('schema_version')}; "
                          f"this fatviz reads version {version}: run it again.")


def load_run(path: str | os.PathLike) -> RunResult:
    """Load a saved run; a missing, corrupt or foreign file raises a FatvizError."""
    target = run_path(path)
    if not target.is_file():
        raise FatvizError(f"No saved run at {target}: a run folder holds a {RUN_FILE} file.")
    try:
        payload = torch.load(target, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        raise FatvizError(f"{target} is not a readable fatviz run ({type(exc).__name__}). "
                          "It may be damaged or written by another program.") from None
    check_schema(payload, SCHEMA, SCHEMA_VERSION, target, "run")
    try:
        settings = RunSettings.from_dict(payload["settings"], strict=False)
        snapshots = [Snapshot(**_numpyise(s)) for s in payload["snapshots"]]
        return RunResult(
            settings=settings, snapshots=snapshots, state_dict=payload["state_dict"],
            vis_idx=_numpyise(payload["vis_idx"]), vis_true=_numpyise(payload["vis_true"]),
            vis_given=_numpyise(payload["vis_given"]), vis_flipped=_numpyise(payload["vis_flipped"]),
            class_names=list(payload["class_names"]), model_kind=payload["model_kind"],
            device=payload["device"], seconds=payload["seconds"], stopped=payload["stopped"],
            extras=_numpyise(payload.get("extras", {})))
    except (KeyError, TypeError) as exc:
        raise FatvizError(f"{target} is missing part of a run ({exc}); it may be damaged.") from None


def list_runs(root: str | os.PathLike = "runs") -> list[Path]:
    """Run folders under root (each holding run.pt), newest first."""
    base = Path(root)
    if not base.is_dir():
        return []
    found = [p.parent for p in base.glob(f"**/{RUN_FILE}")]
    return sorted(found, key=lambda p: (p / RUN_FILE).stat().st_mtime, reverse=True)
