"""The folders of the server that the app may read: data folders and saved runs.

A visitor of the app types folder names (the sidebar's Data folder, the Classroom's Run
folder). Those names are resolved (symbolic links and `..` included) and accepted only
when they lie under one of the configured roots, so a link cannot make the server read, or
say anything about, any other path. Relative names are taken relative to the first root.

Configured with two environment variables, read when the app starts:

- `FATVIZ_DATA_DIRS`: the data roots, separated by `os.pathsep` (`:` on Linux and macOS,
  `;` on Windows). Default: `data` (in the folder the app is started from) and `~/fatviz-data`.
- `FATVIZ_RUNS_DIR`: the saved-runs root, where the app saves finished trainings and where
  the Classroom loads them from. Default: `runs`.

The command line takes full paths and does not read these.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fatviz.errors import FatvizError

ROOT_ENV: dict[str, str] = {"data": "FATVIZ_DATA_DIRS", "runs": "FATVIZ_RUNS_DIR"}
DEFAULT_ROOTS: dict[str, tuple[str, ...]] = {"data": ("data", "~/fatviz-data"), "runs": ("runs",)}


@dataclass(frozen=True)
class Root:
    """One allowed folder: its name as configured (what messages show) and its resolved path."""

    name: str
    path: Path


def allowed_roots(kind: str) -> tuple[Root, ...]:
    """The roots for `kind` ("data" or "runs"), from the environment or the defaults, in order."""
    if kind not in ROOT_ENV:
        raise FatvizError(f"Unknown kind of folder {kind!r}: choose one of {', '.join(ROOT_ENV)}.")
    configured = os.environ.get(ROOT_ENV[kind], "")
    names = [n.strip() for n in configured.split(os.pathsep) if n.strip()] if configured.strip() else []
    if kind == "runs":
        names = names[:1]  # one place to save into
    return tuple(Root(n, Path(n).expanduser().resolve()) for n in names or DEFAULT_ROOTS[kind])


def resolve_under(path: str | os.PathLike, roots: tuple[Root, ...], what: str) -> Path:
    """`path` resolved (links and `..` followed), if it lies under one of `roots`; else a FatvizError.

    A relative path is taken relative to the first root. The message names the allowed
    roots by their configured names and never the path asked for.
    """
    if not roots:
        raise FatvizError(f"No folder is configured for the {what}.")
    allowed = ", ".join(r.name for r in roots)
    text = str(path).strip()
    if not text:
        raise FatvizError(f"Type the {what}: a folder under {allowed}.")
    given = Path(text).expanduser()
    resolved = (given if given.is_absolute() else roots[0].path / given).resolve()
    if any(resolved.is_relative_to(r.path) for r in roots):
        return resolved
    raise FatvizError(f"That {what} is outside the folders this app may read: choose one under {allowed}.")
