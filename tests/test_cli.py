"""The command line: train, compare-centroids, export; JSON last lines; user mistakes exit 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "blobs", "--epochs", "2", "--embedding-dim", "4", "--vis-points", "30"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "fatviz", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def test_train_prints_a_summary_and_a_json_last_line(tmp_path):
    out = run_cli("train", *TINY, "--out", str(tmp_path / "run"), "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert {"precision_at_1", "map", "nmi", "seconds"} <= set(result)
    assert 0 <= result["precision_at_1"] <= 1
    assert "test:" in out.stdout and (tmp_path / "run" / "run.pt").is_file()
    html = run_cli("export", str(tmp_path / "run"), "--html", str(tmp_path / "anim.html"), cwd=tmp_path)
    assert html.returncode == 0, html.stderr
    assert (tmp_path / "anim.html").stat().st_size > 10_000


def test_compare_centroids_saves_four_runs(tmp_path):
    out = run_cli("compare-centroids", *TINY, "--out", str(tmp_path / "cmp"), "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result["options"]) == {"mean", "mean-norm", "norm-mean", "norm-mean-norm"}
    assert all((tmp_path / "cmp" / o / "run.pt").is_file() for o in result["options"])
    html = run_cli("export", str(tmp_path / "cmp"), "--html", str(tmp_path / "four.html"), cwd=tmp_path)
    assert html.returncode == 0, html.stderr
    text = (tmp_path / "four.html").read_text()
    assert all(option in text for option in result["options"])


def test_user_mistakes_print_one_line_and_exit_2(tmp_path):
    out = run_cli("train", "--noise", "symmetric:1.2", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("fatviz:") and "Traceback" not in out.stderr
    out = run_cli("train", "--dataset", "mnist", "--data-root", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 2 and "MNIST" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("export", str(tmp_path / "missing"), "--html", "x.html", cwd=tmp_path)
    assert out.returncode == 2 and "No saved run" in out.stderr
