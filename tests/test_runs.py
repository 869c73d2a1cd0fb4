"""Saved runs: round trip, atomic writes, clear errors for missing, corrupt or foreign files."""

import numpy as np
import pytest
import torch
from helpers import TINY

from fatviz.errors import FatvizError
from fatviz.runs import list_runs, load_run, save_run
from fatviz.train import train


@pytest.fixture(scope="module")
def result():
    return train(TINY)


def test_round_trip_keeps_settings_snapshots_and_weights(result, tmp_path):
    path = save_run(result, tmp_path / "a")
    assert path.name == "run.pt"
    loaded = load_run(tmp_path / "a")
    assert loaded.settings == result.settings
    assert len(loaded.snapshots) == len(result.snapshots)
    for a, b in zip(loaded.snapshots, result.snapshots, strict=False):
        assert np.array_equal(a.embeddings, b.embeddings) and a.metrics == b.metrics and a.bound == b.bound
    assert all(torch.equal(loaded.state_dict[k], v) for k, v in result.state_dict.items())
    assert np.array_equal(loaded.vis_given, result.vis_given)
    assert list_runs(tmp_path) == [tmp_path / "a"]


def test_a_failed_write_leaves_the_old_run_intact(result, tmp_path, monkeypatch):
    save_run(result, tmp_path / "a")
    before = (tmp_path / "a" / "run.pt").read_bytes()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_run(result, tmp_path / "a")
    assert (tmp_path / "a" / "run.pt").read_bytes() == before
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["run.pt"]  # no temporary left behind


def test_missing_corrupt_and_foreign_files_give_clear_errors(tmp_path):
    with pytest.raises(FatvizError, match="No saved run"):
        load_run(tmp_path / "nothing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.pt").write_bytes(b"not a torch file")
    with pytest.raises(FatvizError, match="not a readable fatviz run"):
        load_run(tmp_path / "bad")
    (tmp_path / "foreign").mkdir()
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign" / "run.pt")
    with pytest.raises(FatvizError, match="not a fatviz run"):
        load_run(tmp_path / "foreign")
    (tmp_path / "future").mkdir()
    torch.save({"schema": "fatviz.run", "schema_version": 99}, tmp_path / "future" / "run.pt")
    with pytest.raises(FatvizError, match="schema version 99"):
        load_run(tmp_path / "future")
