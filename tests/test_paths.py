"""Server paths stay private: a visitor's folder is resolved, then accepted only under the configured roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fatviz.errors import FatvizError
from fatviz.serve.paths import Root, allowed_roots, resolve_under


@pytest.fixture()
def roots(tmp_path: Path) -> tuple[Root, ...]:
    """Two data roots, as FATVIZ_DATA_DIRS would configure them, with a dataset folder in the first."""
    (tmp_path / "data" / "mnist").mkdir(parents=True)
    (tmp_path / "more").mkdir()
    return (Root("data", (tmp_path / "data").resolve()), Root("~/more", (tmp_path / "more").resolve()))


def refused(path: str | Path, roots: tuple[Root, ...]) -> str:
    with pytest.raises(FatvizError) as info:
        resolve_under(path, roots, "data folder")
    return str(info.value)


def test_a_folder_inside_a_root_is_resolved_relative_names_under_the_first(roots) -> None:
    assert resolve_under("mnist", roots, "data folder") == roots[0].path / "mnist"
    assert resolve_under(roots[0].path / "mnist", roots, "data folder") == roots[0].path / "mnist"
    assert resolve_under(str(roots[1].path), roots, "data folder") == roots[1].path
    assert resolve_under("mnist/../mnist", roots, "data folder") == roots[0].path / "mnist"
    assert resolve_under("not-there-yet", roots, "data folder") == roots[0].path / "not-there-yet"


def test_a_path_outside_the_roots_is_refused_without_naming_it(roots) -> None:
    message = refused("/etc", roots)
    assert "/etc" not in message
    assert "data, ~/more" in message and "data folder" in message
    assert str(roots[0].path) not in message  # the roots by their configured names only


def test_dot_dot_out_of_a_root_is_refused(roots) -> None:
    message = refused("../../../../etc/passwd", roots)
    assert "etc" not in message and "passwd" not in message
    refused(roots[0].path / ".." / "more-secret", roots)


def test_a_symbolic_link_pointing_outside_is_refused(roots, tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.mkdir()
    (roots[0].path / "shortcut").symlink_to(outside, target_is_directory=True)
    message = refused("shortcut", roots)
    assert "secret" not in message and "shortcut" not in message
    (roots[0].path / "inside").symlink_to(roots[0].path / "mnist", target_is_directory=True)
    assert resolve_under("inside", roots, "data folder") == roots[0].path / "mnist"


def test_an_empty_name_asks_for_a_folder(roots) -> None:
    assert "Type the data folder" in refused("  ", roots)


def test_roots_come_from_the_environment_or_the_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FATVIZ_DATA_DIRS", raising=False)
    assert [r.name for r in allowed_roots("data")] == ["data", "~/fatviz-data"]
    assert allowed_roots("data")[0].path == (Path.cwd() / "data").resolve()
    assert allowed_roots("data")[1].path == (Path.home() / "fatviz-data").resolve()
    monkeypatch.setenv("FATVIZ_DATA_DIRS", os.pathsep.join([str(tmp_path / "a"), "", str(tmp_path / "b")]))
    assert [r.path for r in allowed_roots("data")] == [(tmp_path / "a").resolve(), (tmp_path / "b").resolve()]
    monkeypatch.setenv("FATVIZ_RUNS_DIR", str(tmp_path / "runs"))
    assert allowed_roots("runs") == (Root(str(tmp_path / "runs"), (tmp_path / "runs").resolve()),)
    monkeypatch.delenv("FATVIZ_RUNS_DIR")
    assert [r.name for r in allowed_roots("runs")] == ["runs"]
    with pytest.raises(FatvizError, match="data, runs"):
        allowed_roots("home")
