"""Tests for fatviz.bench and `python -m fatviz bench-loss`: structure and bookkeeping on tiny sizes; never a wall-clock time."""

from __future__ import annotations

import json
import math
import runpy
import sys

import pytest
import torch

from fatviz import bench
from fatviz.cli import main
from fatviz.errors import FatvizError

SMALL_BENCH = {"sizes": (64, 128), "dim": 16, "repeats": 1, "min_repeat_seconds": 0.0}


@pytest.fixture(scope="module")
def tiny_result() -> dict:
    """One loss benchmark on tiny batches, shared by the structure tests."""
    return bench.loss_benchmark(**SMALL_BENCH)


def test_loss_benchmark_structure(tiny_result):
    r = tiny_result
    assert r["methods"] == list(bench.METHODS)
    assert r["config"]["sizes"] == [64, 128]
    assert r["config"]["classes"] == [8, 16]
    for m in bench.METHODS:
        assert len(r["seconds"][m]) == 2
        assert all(isinstance(t, float) and t > 0 for t in r["seconds"][m])
        assert math.isfinite(r["slopes"][m])
    assert set(r["speedups"]) == set(bench.METHODS) - {"fat"}
    for m, series in r["speedups"].items():
        assert series == pytest.approx([t / f for t, f in zip(r["seconds"][m], r["seconds"]["fat"], strict=False)])
    assert r["fat_over_floor"] == pytest.approx([f / c for f, c in zip(r["seconds"]["fat"], r["seconds"]["floor"], strict=False)])
    assert r["skipped"] == {}
    json.dumps(r)  # everything in it is plain JSON


def test_slow_methods_are_skipped_at_larger_sizes():
    r = bench.loss_benchmark(sizes=(32, 64, 48), dim=4, repeats=1, methods=["fat", "floor"],
                             max_step_seconds=0.0, min_repeat_seconds=0.0)
    assert r["config"]["sizes"] == [32, 48, 64]  # sorted
    for m in ("fat", "floor"):
        assert r["seconds"][m][0] > 0 and r["seconds"][m][1:] == [None, None]
        assert set(r["skipped"][m]) == {"48", "64"}
        assert r["slopes"][m] is None
    assert r["speedups"]["floor"][1:] == [None, None]


def test_pml_memory_guard(monkeypatch):
    monkeypatch.setattr(bench, "PML_MEMORY_BUDGET", 0)
    r = bench.loss_benchmark(sizes=(32,), dim=4, repeats=1, methods=["pml-triplet-all", "fat"],
                             min_repeat_seconds=0.0)
    assert r["seconds"]["pml-triplet-all"] == [None]
    assert "triplets" in r["skipped"]["pml-triplet-all"]["32"]
    assert r["fat_over_floor"] is None  # no floor measured


def test_progress_and_threads_are_restored():
    before = torch.get_num_threads()
    messages: list[str] = []
    r = bench.loss_benchmark(sizes=(32,), dim=4, repeats=2, methods=["fat"], progress=messages.append,
                             threads=1, min_repeat_seconds=0.0)
    assert r["config"]["threads"] == 1
    assert torch.get_num_threads() == before
    assert any("fat" in m and "B=32" in m for m in messages)
    assert r["speedups"] == {}


def test_bad_arguments_raise_fatviz_errors():
    with pytest.raises(FatvizError, match="Unknown method"):
        bench.loss_benchmark(sizes=(32,), methods=["fat", "arcface"])
    with pytest.raises(FatvizError, match="at least 16"):
        bench.loss_benchmark(sizes=(8,))
    with pytest.raises(FatvizError, match="threads"):
        bench.loss_benchmark(sizes=(32,), methods=["fat"], threads=0)
    with pytest.raises(FatvizError):
        bench.dataset_scaling_benchmark(sizes=(50,), num_classes=100)


def test_dataset_scaling_structure():
    r = bench.dataset_scaling_benchmark(sizes=(400, 200), dim=8, num_classes=10, batch_size=64, repeats=1,
                                        chunk_size=128)
    assert r["config"]["sizes"] == [200, 400]
    assert len(r["seconds"]) == 2 and all(t > 0 for t in r["seconds"])
    assert math.isfinite(r["slope"])


def test_log_log_slope():
    sizes = [10, 20, 40, 80]
    assert bench.log_log_slope(sizes, [3e-4 * s**2 for s in sizes]) == pytest.approx(2.0)
    assert bench.log_log_slope(sizes, [1.0, None, 4.0, None]) == pytest.approx(1.0)
    assert bench.log_log_slope(sizes, [1.0, None, None, None]) is None
    assert bench.log_log_slope([5, 5], [1.0, 2.0]) is None


def _fake_loss_result(fat: float, floor: float, pml_all: float | None, pml_hard: float) -> dict:
    """A loss_benchmark-shaped result at B=512 and B=1024."""
    seconds = {"fat": [fat / 2, fat], "floor": [floor / 2, floor], "pml-triplet-all": [1.0, pml_all],
               "pml-batch-hard": [pml_hard / 2, pml_hard]}
    return {
        "config": {"sizes": [512, 1024], "dim": 128, "classes_per": 8, "threads": 2, "repeats": 3},
        "methods": list(seconds),
        "seconds": seconds,
        "slopes": {m: bench.log_log_slope([512, 1024], s) for m, s in seconds.items()},
        "speedups": {m: [bench._ratio(t, f) for t, f in zip(s, seconds["fat"], strict=False)]
                     for m, s in seconds.items() if m != "fat"},
        "fat_over_floor": [2.0, fat / floor],
        "skipped": {"pml-triplet-all": {"1024": "over 3 s at a smaller size"}} if pml_all is None else {},
    }


def test_summarize_checks_each_target():
    good = bench.summarize(_fake_loss_result(0.001, 0.0005, 0.5, 0.006), {"slope": 1.02})
    assert good["fat_vs_pml_triplet_all"] == pytest.approx(500)
    assert good["fat_vs_pml_batch_hard"] == pytest.approx(6)
    assert good["fat_over_floor"] == pytest.approx(2)
    assert good["met"] == {"fat_vs_pml_triplet_all": True, "fat_vs_pml_batch_hard": True,
                           "fat_over_floor": True, "dataset_slope": True}
    bad = bench.summarize(_fake_loss_result(0.001, 0.0002, None, 0.002), {"slope": 1.3})
    assert bad["met"] == {"fat_vs_pml_triplet_all": None, "fat_vs_pml_batch_hard": False,
                          "fat_over_floor": False, "dataset_slope": False}
    text = bench.format_table({"loss": _fake_loss_result(0.001, 0.0002, None, 0.002), "dataset": None,
                               "summary": bad})
    assert "MISSED" in text and "not measured" in text and "skipped at B=1024" in text


def test_format_table(tiny_result):
    text = bench.format_table(tiny_result)
    for m in bench.METHODS:
        assert m in text
    assert "slope" in text and "speedup" in text
    lines = text.splitlines()
    assert any(line.split()[:1] == ["128"] for line in lines)
    ds = bench.dataset_scaling_benchmark(sizes=(100, 200), dim=4, num_classes=10, batch_size=50, repeats=1)
    assert "whole-dataset centres" in bench.format_table(ds)


def test_bench_loss_json_line(capsys):
    code = main(["bench-loss", "--sizes", "32,64", "--dim", "8", "--repeats", "1", "--methods", "fat", "floor",
                 "batch-hard", "--dataset-sizes", "100", "200", "--json", "--threads", "1",
                 "--min-repeat-seconds", "0"])
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert set(result) == {"loss", "dataset", "summary"}
    assert result["loss"]["config"]["sizes"] == [32, 64]
    assert result["loss"]["config"]["threads"] == 1
    assert result["loss"]["config"]["min_repeat_seconds"] == 0.0
    assert result["dataset"]["config"]["sizes"] == [100, 200]
    assert math.isfinite(result["dataset"]["slope"])
    summary = result["summary"]
    assert summary["batch"] == 1024 and summary["fat_over_floor"] is None  # 1024 not measured
    assert summary["dataset_slope"] == result["dataset"]["slope"]
    assert any("FAT epoch" in line for line in out[:-1])


@pytest.mark.parametrize("argv", [["--sizes", "4", "--no-dataset-scaling"], ["--sizes", "abc", "--no-dataset-scaling"],
                                  ["--methods", "arcface"]])
def test_bench_loss_user_error(capsys, argv):
    assert main(["bench-loss", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fatviz: ")


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
def test_python_dash_m_runs_bench_loss(monkeypatch, capsys):
    # What `python -m fatviz bench-loss ...` runs, without paying for a second torch import.
    monkeypatch.setattr(sys, "argv", ["fatviz", "bench-loss", "--sizes", "32", "--dim", "4", "--repeats", "1",
                                      "--methods", "fat", "floor", "--no-dataset-scaling", "--json",
                                      "--min-repeat-seconds", "0"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("fatviz", run_name="__main__")
    assert exit_info.value.code == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["dataset"] is None and last["summary"]["met"]["dataset_slope"] is None
