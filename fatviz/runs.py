"""Saved runs and groups of runs: the one place that knows their layout on disk.

A run is a folder holding `run.pt` (written atomically, loaded with weights_only=True) and,
once a view asked for them, its t-SNE/UMAP layouts over all epochs (`layout-<method>.npz`,
also atomic; fatviz.serve.layouts fits them).
A compare group is a folder with one run sub-folder per centroid option. A distillation
folder (its own layout, in fatviz.distill.storage) is recognised here by its marker file,
so listings can show it without reading it.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from fatviz.errors import FatvizError
from fatviz.settings import RunSettings
from fatviz.train import RunResult, Snapshot

SCHEMA = "fatviz.run"
SCHEMA_VERSION = 1
RUN_FILE = "run.pt"
DISTILL_MARKER = "distill.json"  # written by fatviz.distill.storage
# A temporary file older than this is a leftover of a killed save: nobody finishes it.
STALE_TEMP_SECONDS = 600.0
# Listings look this many folders down and no further: a group of runs is at most two deep.
LIST_DEPTH = 3


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


def clean_temporary(folder: str | os.PathLike, older_than: float = STALE_TEMP_SECONDS) -> int:
    """Remove leftovers of killed saves (`.run-*.tmp` files) in `folder`; return how many."""
    base = Path(folder)
    removed = 0
    if not base.is_dir():
        return 0
    now = time.time()
    for tmp in base.glob(".run-*.tmp"):
        try:
            if now - tmp.stat().st_mtime > older_than:
                tmp.unlink()
                removed += 1
        except OSError:
            continue  # another process finished or removed it first
    return removed


def save_run(result: RunResult, path: str | os.PathLike, overwrite: bool = True) -> Path:
    """Write the run atomically (temporary file in the same folder, then rename); return the file.

    With `overwrite=False` an existing run is never replaced, also when two processes save
    into the same folder at once: the file is linked into place, which fails if one exists.
    """
    target = run_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_temporary(target.parent)
    if not overwrite and target.exists():
        raise FatvizError(f"{target} already holds a run; pass --overwrite to replace it.")
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
        "test_metrics": dict(result.test_metrics),
        "evaluated_on": list(result.evaluated_on),
    }
    try:
        _write_atomically(target, lambda fh: torch.save(payload, fh), replace=overwrite)
    except FileExistsError:
        raise FatvizError(f"{target} was written by another process meanwhile; "
                          "pass --overwrite to replace it.") from None
    return target


def _write_atomically(target: Path, write: Callable[[BinaryIO], None], replace: bool = True) -> None:
    """Write `target` whole or not at all: into a temporary file beside it (a `.run-*.tmp` that
    clean_temporary removes if the process is killed), then renamed into place, so a reader sees
    the old file or the new one, never half. With `replace=False` it is linked into place instead,
    which raises FileExistsError if a file is there (atomic and exclusive)."""
    fd, tmp = tempfile.mkstemp(prefix=".run-", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)
            Path(tmp).unlink()
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        result = RunResult(
            settings=settings, snapshots=snapshots, state_dict=payload["state_dict"],
            vis_idx=_numpyise(payload["vis_idx"]), vis_true=_numpyise(payload["vis_true"]),
            vis_given=_numpyise(payload["vis_given"]), vis_flipped=_numpyise(payload["vis_flipped"]),
            class_names=list(payload["class_names"]), model_kind=payload["model_kind"],
            device=payload["device"], seconds=payload["seconds"], stopped=payload["stopped"],
            extras=_numpyise(payload.get("extras", {})), test_metrics=dict(payload.get("test_metrics", {})),
            evaluated_on=tuple(payload.get("evaluated_on", (0, 0))))
    except (KeyError, TypeError, AttributeError) as exc:
        raise FatvizError(f"{target} is missing part of a run ({exc}); it may be damaged.") from None
    problem = _shape_problem(result)
    if problem:
        raise FatvizError(f"{target} is damaged: {problem}.")
    return result


def _shape_problem(r: RunResult) -> str:
    """What is inconsistent in a loaded run (empty when its arrays fit together)."""
    v = len(np.atleast_1d(r.vis_idx))
    for name in ("vis_true", "vis_given", "vis_flipped"):
        if np.ndim(getattr(r, name)) != 1 or len(getattr(r, name)) != v:
            return f"{name} does not match the {v} drawn points"
    if not r.snapshots:
        return "it holds no epoch"
    for snap in r.snapshots:
        e, c = np.asarray(snap.embeddings), np.asarray(snap.centres)
        if e.ndim != 2 or e.shape[0] != v or e.shape[1] < 1:
            return f"epoch {snap.epoch}'s embeddings have shape {e.shape}, expected ({v}, D)"
        if c.ndim != 2 or c.shape[1] != e.shape[1]:
            return f"epoch {snap.epoch}'s centres have shape {c.shape}, expected (K, {e.shape[1]})"
        if np.shape(snap.radius) != (c.shape[0],) or np.shape(snap.present) != (c.shape[0],):
            return f"epoch {snap.epoch}'s radii or presence do not match its {c.shape[0]} centres"
        if not all(isinstance(d, dict) for d in (snap.losses, snap.bound, snap.metrics)):
            return f"epoch {snap.epoch}'s losses, bound or metrics are not tables"
    return ""


# -- a run's 2-D layouts (t-SNE, UMAP) -----------------------------------------------------------

LAYOUT_FILE = "layout-{method}.npz"


def save_layout(folder: str | os.PathLike, method: str, epochs: list[int], points: list[np.ndarray],
                centres: list[np.ndarray]) -> Path:
    """Write one run's layout (per epoch: (V, 2) points, (K, 2) centres) beside its run.pt, atomically."""
    target = Path(folder) / LAYOUT_FILE.format(method=method)
    _write_atomically(target, lambda fh: np.savez(
        fh, epochs=np.asarray(epochs, dtype=np.int64), points=np.stack(points).astype(np.float32),
        centres=np.stack(centres).astype(np.float32)))
    return target


def load_layout(folder: str | os.PathLike, method: str, snapshots: list
                ) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
    """A saved layout of these snapshots (points, centres per epoch), or None when there is none,
    or it belongs to other epochs or shapes, or it is damaged: then it is simply fitted again."""
    path = Path(folder) / LAYOUT_FILE.format(method=method)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            epochs, points, centres = z["epochs"], z["points"], z["centres"]
    except (OSError, ValueError, KeyError, EOFError):
        return None
    n = len(snapshots)
    if (epochs.shape != (n,) or [int(e) for e in epochs] != [int(s.epoch) for s in snapshots]
            or points.shape != (n, len(snapshots[0].embeddings), 2)
            or centres.shape != (n, len(snapshots[0].centres), 2)):
        return None
    return list(points), list(centres)


# -- groups of runs ------------------------------------------------------------------------------


def group_kind(folder: str | os.PathLike) -> str | None:
    """The job kind whose results a folder holds ("train": one run, "compare": a run per option, ...), or None."""
    from fatviz.job_kinds import saved_kind

    return saved_kind(folder)


def save_group(results: dict[str, RunResult], folder: str | os.PathLike, overwrite: bool = True) -> Path:
    """Save a compare group: one run sub-folder per centroid option; return the folder."""
    base = Path(folder)
    for option, result in results.items():
        save_run(result, base / option, overwrite=overwrite)
    return base


def run_folders(folder: str | os.PathLike, options: tuple[str, ...]) -> dict[str, Path]:
    """Each option's run folder in a saved compare group (or the one run, for a single option);
    options without a saved run are left out."""
    base = Path(folder)
    if len(options) == 1 and (base / RUN_FILE).is_file():
        return {options[0]: base}
    return {o: base / o for o in options if (base / o / RUN_FILE).is_file()}


def load_group(folder: str | os.PathLike, options: tuple[str, ...] | None = None) -> dict[str, RunResult]:
    """Load a compare group (every option found, or exactly `options`), or a single run under its option."""
    from fatviz.centroids import CENTROIDS

    base = Path(folder)
    if (base / RUN_FILE).is_file() and options is None:
        run = load_run(base)
        return {run.settings.centroid: run}
    wanted = options if options is not None else tuple(o for o in CENTROIDS.names() if (base / o / RUN_FILE).is_file())
    if not wanted:
        raise FatvizError(f"{base} holds no run: a run folder holds {RUN_FILE}, a compare folder one "
                          f"sub-folder per centroid option ({', '.join(CENTROIDS.names())}).")
    return {o: load_run(base / o) for o in wanted}


def _walk(base: Path, depth: int):
    """Folders under base, at most `depth` levels down, never following symbolic links."""
    yield base
    if depth <= 0:
        return
    try:
        children = sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink()
                          and not p.name.startswith("."))
    except OSError:
        return
    for child in children:
        yield from _walk(child, depth - 1)


def list_runs(root: str | os.PathLike = "runs", depth: int = LIST_DEPTH) -> list[Path]:
    """Run folders under root (each holding run.pt), at most `depth` levels down, newest first."""
    base = Path(root)
    if not base.is_dir():
        return []
    found = [p for p in _walk(base, depth) if (p / RUN_FILE).is_file()]
    return sorted(found, key=lambda p: (p / RUN_FILE).stat().st_mtime, reverse=True)


def list_groups(root: str | os.PathLike = "runs", depth: int = LIST_DEPTH) -> list[tuple[Path, str]]:
    """Saved groups under root as (folder, kind), newest first; a compare group's runs are not listed apart."""
    base = Path(root)
    if not base.is_dir():
        return []
    out: list[tuple[Path, str]] = []
    inside: set[Path] = set()
    for p in _walk(base, depth):
        if any(parent in inside for parent in p.parents):
            continue
        kind = group_kind(p)
        if kind is not None:
            out.append((p, kind))
            inside.add(p)

    def stamp(item: tuple[Path, str]) -> float:
        from fatviz.job_kinds import JOB_KINDS

        return JOB_KINDS.get(item[1]).marker(item[0]).stat().st_mtime

    return sorted(out, key=stamp, reverse=True)
