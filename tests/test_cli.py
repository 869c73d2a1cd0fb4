"""The command line: train, compare-centroids, export; JSON last lines; options from the settings table;
user mistakes print one line and exit 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fatviz.cli import build_parser, main, settings_from_args
from fatviz.errors import FatvizError
from fatviz.settings import RunSettings

ROOT = Path(__file__).resolve().parents[1]
TINY_ARGS = ["--dataset", "blobs", "--epochs", "2", "--embedding-dim", "4", "--vis-points", "30"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "fatviz", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def test_train_prints_a_summary_and_a_json_last_line(tmp_path):
    out = run_cli("train", *TINY_ARGS, "--out", str(tmp_path / "run"), "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert {"precision_at_1", "map", "nmi", "seconds"} <= set(result)
    assert 0 <= result["precision_at_1"] <= 1
    assert "test:" in out.stdout and (tmp_path / "run" / "run.pt").is_file()
    html = run_cli("export", str(tmp_path / "run"), "--html", str(tmp_path / "anim.html"), cwd=tmp_path)
    assert html.returncode == 0, html.stderr
    assert (tmp_path / "anim.html").stat().st_size > 10_000


@pytest.mark.parametrize("centres", ["batch", "ema:0.9"])
def test_train_records_the_centre_source_in_the_saved_run(tmp_path, centres):
    from fatviz.runs import load_run

    out = run_cli("train", *TINY_ARGS, "--centres", centres, "--out", str(tmp_path / "run"), "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert 0 <= json.loads(out.stdout.strip().splitlines()[-1])["precision_at_1"] <= 1
    saved = load_run(tmp_path / "run")
    assert saved.settings.centres == centres
    assert saved.settings == settings_from_args(build_parser().parse_args(["train", *TINY_ARGS, "--centres", centres]))


def test_compare_centroids_saves_four_runs(tmp_path):
    out = run_cli("compare-centroids", *TINY_ARGS, "--out", str(tmp_path / "cmp"), "--json", cwd=tmp_path)
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


def one_error_line(capsys) -> str:
    """The single stderr line of a refused command."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fatviz: "), err
    assert "usage:" not in err[0] and "Traceback" not in err[0]
    return err[0]


def test_a_registered_centroid_option_is_a_cli_choice():
    from fatviz.centroids import CENTROIDS, CentroidOption

    CENTROIDS.register("fake-option", CentroidOption("fake-option", True, True, "a test's option", "fake", "#000000"))
    try:
        args = build_parser().parse_args(["train", "--centroid", "fake-option"])
        assert args.centroid == "fake-option"
    finally:
        CENTROIDS.unregister("fake-option")
    with pytest.raises(FatvizError, match="invalid choice: 'fake-option'"):
        build_parser().parse_args(["train", "--centroid", "fake-option"])


def test_options_come_from_the_settings_table():
    args = build_parser().parse_args(["distill", "--margin", "0.25", "--compactness-weight", "none",
                                      "--temperature", "2", "--no-limits", "--epochs", "500"])
    settings = settings_from_args(args)
    assert (settings.margin, settings.compactness_weight, settings.temperature) == (0.25, None, 2.0)
    assert settings.epochs == 500  # beyond the app's 100, allowed by --no-limits
    defaults = settings_from_args(build_parser().parse_args(["train"]))
    assert defaults == RunSettings()


@pytest.mark.parametrize("argv, words", [
    (["train", "--centroid", "bogus"], "invalid choice"),
    (["train", "--epochs", "x"], "invalid int value"),
    (["train", "--margin", "inf"], "margin must be a finite number"),
    (["train", "--centres", "ema:2"], "strictly between 0 and 1"),
    (["train", "--centres", "ema:x"], "'x' is not a number"),
    (["train", "--margin", "nan"], "margin must be a finite number"),
    (["train", "--epochs", "101"], "--no-limits"),
    (["compare-centroids", "--workers", "-1"], "--workers"),
    (["train", "--no-such-option"], "unrecognized arguments"),
    ([], "required"),
])
def test_mistakes_are_one_line_and_exit_2(capsys, argv, words):
    assert main(argv) == 2
    assert words in one_error_line(capsys)


def test_out_is_checked_before_training(tmp_path, capsys, monkeypatch):
    import fatviz.distill
    import fatviz.train

    def no_training(*args, **kwargs):
        raise AssertionError("trained before --out was checked")

    for module, name in ((fatviz.train, "train"), (fatviz.train, "compare_centroids"),
                         (fatviz.distill, "run_distillation")):
        monkeypatch.setattr(module, name, no_training)
    a_file = tmp_path / "a-file"
    a_file.write_text("not a run")
    assert main(["train", *TINY_ARGS, "--out", str(a_file)]) == 2
    assert "is a file" in one_error_line(capsys)
    assert main(["distill", *TINY_ARGS, "--out", str(a_file), "--overwrite"]) == 2
    assert "is a file" in one_error_line(capsys)
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.pt").write_bytes(b"")
    for command in ("train", "compare-centroids", "distill"):
        assert main([command, *TINY_ARGS, "--out", str(run)]) == 2
        assert "already holds a saved run; pass --overwrite" in one_error_line(capsys)
    # A distillation replaces its folder whole: one holding anything else is refused, --overwrite or not.
    assert main(["distill", *TINY_ARGS, "--out", str(run), "--overwrite"]) == 2
    assert "something other than a distillation" in one_error_line(capsys)
    assert main(["distill", *TINY_ARGS, "--out", str(tmp_path)]) == 2
    assert "something other than a distillation" in one_error_line(capsys)


def test_overwrite_replaces_a_saved_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY_ARGS, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["train", *TINY_ARGS, "--out", str(out)]) == 2
    assert "--overwrite" in one_error_line(capsys)
    assert main(["train", *TINY_ARGS, "--seed", "1", "--out", str(out), "--overwrite"]) == 0
    from fatviz.runs import load_run

    assert load_run(out).settings.seed == 1


def test_export_refuses_a_folder_as_html(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--html", str(tmp_path)]) == 2
    assert "is a folder" in one_error_line(capsys)


def test_compare_never_starts_more_workers_than_options(tmp_path, capsys, monkeypatch):
    from fatviz import cli
    from fatviz.centroids import CENTROIDS

    def record(settings, workers):
        raise FatvizError(f"asked for {workers} workers")

    monkeypatch.setattr(cli, "_compare_in_workers", record)
    assert main(["compare-centroids", *TINY_ARGS, "--workers", "64", "--out", str(tmp_path / "cmp")]) == 2
    assert f"asked for {len(CENTROIDS)} workers" in one_error_line(capsys)


def test_commands_that_run_in_one_process_refuse_torchrun(monkeypatch, capsys) -> None:
    from fatviz.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["compare-losses", "--dataset", "blobs"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fatviz: compare-losses runs in one process") and "compare-centroids" in err
