"""The loss comparison: same data per seed, metrics against the trainer, spread, storage, verdict, page."""

import json
import statistics

import pytest
from helpers import TINY

from fatviz.compare_losses import (
    compare_losses,
    load_comparison,
    loss_step_seconds,
    run_reads,
    save_comparison,
    verdict,
)
from fatviz.errors import FatvizError
from fatviz.settings import RunSettings
from fatviz.train import Trainer, prepare_data


def test_each_row_is_a_training_with_that_variant_and_seed(tmp_path):
    result = compare_losses(TINY, ["fat", "batch-hard triplet"], seeds=(0, 1))
    assert [(r["variant"], r["seed"]) for r in result.rows] == [
        ("fat", 0), ("batch-hard triplet", 0), ("fat", 1), ("batch-hard triplet", 1)]
    # Row figures are those of a run trained by hand with the same settings.
    s = TINY.replace(seed=1, loss="triplet-hard")
    trainer = Trainer(s, prepare_data(s), snapshots=False)
    trainer.fit()
    assert result.rows[3]["precision_at_1"] == pytest.approx(trainer.evaluator.evaluate()["precision_at_1"])
    summary = {r["variant"]: r for r in result.summary()}
    p = [r["precision_at_1"] for r in result.rows if r["variant"] == "fat"]
    assert summary["fat"]["precision_at_1"] == pytest.approx(statistics.fmean(p))
    assert summary["fat"]["precision_at_1_sd"] == pytest.approx(statistics.stdev(p))
    assert all(r["step_seconds"] > 0 and r["epoch_seconds"] > 0 for r in result.rows)
    loaded = load_comparison(save_comparison(result, tmp_path / "c.json"))
    assert loaded.rows == json.loads(json.dumps(result.rows)) and loaded.settings == TINY


def test_bad_variants_seeds_and_files_give_one_message(tmp_path):
    with pytest.raises(FatvizError, match="Unknown loss variant"):
        compare_losses(TINY, ["fat", "arcface"])
    with pytest.raises(FatvizError, match="seed"):
        compare_losses(TINY, ["fat"], seeds=())
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(FatvizError, match="not a readable"):
        load_comparison(bad)
    bad.write_text(json.dumps({"schema": "something else"}))
    with pytest.raises(FatvizError, match="not a fatviz"):
        load_comparison(bad)


def test_a_study_names_its_own_variants_and_brings_its_own_data():
    calls = []

    def data(s):
        calls.append(s.seed)
        return prepare_data(s)

    study = {"fat m0.3": {"loss": "fat", "margin": 0.3}, "bh m0.3": {"loss": "triplet-hard", "margin": 0.3}}
    result = compare_losses(TINY, study, seeds=(0, 1), data=data)
    assert calls == [0, 1]  # one data set per seed, shared by its variants
    assert [r["variant"] for r in result.rows] == ["fat m0.3", "bh m0.3"] * 2
    assert result.rows[1]["changes"] == {"loss": "triplet-hard", "margin": 0.3}
    s = TINY.replace(seed=0, loss="fat", margin=0.3)
    trainer = Trainer(s, prepare_data(s), snapshots=False)
    trainer.fit()
    assert result.rows[0]["map"] == pytest.approx(trainer.evaluator.evaluate()["map"])
    # Every change is checked before anything trains.
    with pytest.raises(FatvizError, match="unknown setting"):
        compare_losses(TINY, {"x": {"loss": "fat", "warmup": 2}}, data=lambda s: pytest.fail("trained"))
    with pytest.raises(FatvizError, match="margin"):
        compare_losses(TINY, {"x": {"loss": "fat", "margin": -1.0}}, data=lambda s: pytest.fail("trained"))


def test_settings_a_loss_does_not_read_train_to_the_same_result_and_are_trained_once():
    fat_only = {"compactness_weight": 0.3, "negatives": "hardest", "hardest_k": 2, "centres": "batch",
                "ce_weight": 0.5, "pk_k": 8}
    bh = TINY.replace(loss="triplet-hard")
    assert run_reads(bh.replace(**fat_only)) == run_reads(bh)
    assert run_reads(TINY.replace(loss="fat", margin=0.1)) == run_reads(TINY.replace(loss="fat"))  # the default
    for loss, change in (("fat", {"compactness_weight": 0.7}), ("hybrid", {"ce_weight": 0.5}),
                         ("triplet-hard", {"margin": 0.3}), ("triplet-hard", {"batch_sampler": "pk"}),
                         ("fat", {"negatives": "hardest"}), ("fat", {"pk_k": 8, "batch_sampler": "pk"})):
        assert run_reads(TINY.replace(loss=loss, **change)) != run_reads(TINY.replace(loss=loss)), (loss, change)
    # What run_reads drops, the trainer really does not read: the same figures, trained apart.
    figures = []
    for s in (bh, bh.replace(**fat_only)):
        trainer = Trainer(s, prepare_data(s), snapshots=False)
        trainer.fit()
        figures.append(trainer.evaluator.evaluate())
    assert figures[0] == figures[1]
    # So a study trains such a variant once, and an earlier comparison's rows are not trained again.
    study = {"bh": {"loss": "triplet-hard"}, "bh, weight 0.3": {"loss": "triplet-hard", **fat_only}}
    result = compare_losses(TINY, study, seeds=(0,))
    first, copy = result.rows
    assert copy["variant"] == "bh, weight 0.3" and copy["run_key"] == first["run_key"]
    assert copy["precision_at_1"] == first["precision_at_1"] == pytest.approx(figures[0]["precision_at_1"])
    again = compare_losses(TINY, {"bh again": {"loss": "triplet-hard"}}, seeds=(0,), reuse=result.rows,
                           data=lambda s: pytest.fail("trained again"))
    assert again.rows[0]["map"] == first["map"] and again.rows[0]["variant"] == "bh again"


def test_the_loss_cost_per_step_ranks_fat_below_all_triplets_at_a_large_batch():
    big = RunSettings(batch_size=1024, embedding_dim=64)
    fat = loss_step_seconds(big.replace(loss="fat"), num_classes=128)
    exact = loss_step_seconds(big.replace(loss="triplet-all"), num_classes=128)
    assert fat < exact


def test_verdict_says_where_fat_keeps_up_and_where_it_loses():
    def row(variant, loss, p, m, step):
        return {"variant": variant, "loss": loss, "precision_at_1": p, "map": m, "step_seconds": step, "seeds": 3}

    summary = [row("fat", "fat", 0.80, 0.70, 1.0), row("hybrid", "hybrid", 0.845, 0.76, 1.2),
               row("batch-hard triplet", "triplet-hard", 0.85, 0.75, 2.0), row("cross-entropy", "ce", 0.9, 0.8, 0.5)]
    said = verdict(summary)
    assert len(said) == 2  # the FAT family only
    assert said[0].startswith("fat trails") and "P@1 -0.050" in said[0] and "0.50x" in said[0]
    assert said[1].startswith("hybrid keeps") and "P@1 -0.005" in said[1]
    assert verdict([row("fat", "fat", 0.8, 0.7, 1.0)]) == []


def test_the_page_shows_the_comparison_a_job_finds_on_disk():
    from streamlit.testing.v1 import AppTest

    from fatviz.compare_losses import COMPARISON_FILE
    from fatviz.serve.jobs import job_key
    from fatviz.serve.paths import allowed_roots

    at = AppTest.from_file("../pages/losses.py", default_timeout=300)
    at.run()
    assert not at.exception and at.title[0].value == "FAT vs triplet"
    # A saved comparison under the preset's job key: the job manager answers from disk (as after a
    # restart), so the page draws it through the same path as a job it has just trained.
    preset = "2-D blobs with 5% outliers, 15 epochs"
    settings = RunSettings(dataset="blobs", blob_outliers=0.05, embedding_dim=8, epochs=15)
    quick = compare_losses(TINY, ["fat", "batch-hard triplet"], seeds=(0, 1))
    quick.settings = settings
    save_comparison(quick, allowed_roots("runs")[0].path / job_key("losses", settings) / COMPARISON_FILE)
    at.selectbox(key="ls_preset").set_value(preset).run()
    at.button[0].click().run()
    assert not at.exception
    chart = [c for c in at.get("plotly_chart")]
    assert chart, "no chart drawn"
    figure = json.loads(chart[0].proto.spec)
    names = {t["name"] for t in figure["data"]}
    assert names == {"fat", "batch-hard triplet"}
    words = [e.value for e in at.success] + [e.value for e in at.warning]
    assert any(w.startswith("fat ") for w in words)


def test_the_study_script_shares_unread_runs_reports_the_goal_and_resumes(tmp_path, capsys, monkeypatch):
    from scripts.bench_losses import main

    args = ["--study", "--datasets", "digits", "--digits-epochs", "1", "--seeds", "0", "--configs", "default",
            "compactness 1", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    rows = report["datasets"]["digits"]
    def accuracy(config, loss):
        return {k: v for k, v in rows[config][loss].items() if k in ("precision_at_1", "map", "minp")}

    assert accuracy("compactness 1", "batch-hard") == accuracy("default", "batch-hard")  # trained once
    assert accuracy("compactness 1", "fat") != accuracy("default", "fat")
    assert set(report["meets_goal"]) == {"default", "compactness 1"}
    assert "| default |" in out and "fat − bh (worst)" in out
    # The cost table: each configuration's seconds per epoch (mean ± sd) and loss ms per step, per loss.
    (cost_head,) = [line for line in out.splitlines() if line.startswith("| configuration | fat s/epoch")]
    assert cost_head.count("s/epoch") == 4 and cost_head.count("loss ms/step") == 3
    (cost_row,) = [line for line in out.splitlines() if line.startswith("| compactness 1 |") and " ± " in line
                   and line.count("|") == 9]
    cells = cost_row.split("|")
    assert float(cells[2].split("±")[0]) == pytest.approx(rows["compactness 1"]["fat"]["epoch_seconds"], abs=1e-3)
    # The centres' own cost per epoch: FAT's epoch centres; batch-hard reads none.
    assert float(cells[-2]) == pytest.approx(rows["compactness 1"]["fat"]["centre_seconds"], abs=1e-3)
    assert rows["default"]["fat"]["centre_seconds"] > 0 and rows["default"]["batch-hard"]["centre_seconds"] is None
    # --resume answers from the saved rows: nothing trains again.
    monkeypatch.setattr(Trainer, "fit", lambda self, **kw: pytest.fail("trained again"))
    assert main([*args, "--resume"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["datasets"]["digits"]["default"]["fat"]["map"] == rows["default"]["fat"]["map"]
    assert main(["--set", "margin=-1", "--out", str(tmp_path)]) == 2
    assert "margin" in capsys.readouterr().err


def test_the_figure_tells_one_losss_configurations_apart_by_marker_shape() -> None:
    from fatviz.figures.losses import SYMBOLS, losses_figure

    rows = [{"variant": f"{loss} | {cfg}", "loss": loss, "precision_at_1": 0.5 + 0.01 * i, "precision_at_1_sd": 0.01,
             "epoch_seconds": 1.0 + i, "epoch_seconds_sd": 0.1, "step_seconds": 0.001, "seeds": 3}
            for i, (loss, cfg) in enumerate([("fat", "default"), ("triplet-hard", "default"),
                                              ("fat", "margin 0.3"), ("triplet-hard", "margin 0.3")])]
    points = [t for t in losses_figure(rows).to_dict()["data"] if t["type"] == "scatter"]
    shape = {t["name"]: t["marker"]["symbol"] for t in points}
    assert shape["fat | default"] == shape["triplet-hard | default"] == SYMBOLS[0]
    assert shape["fat | margin 0.3"] == shape["triplet-hard | margin 0.3"] == SYMBOLS[1]
    colour = {t["name"]: t["marker"]["color"] for t in points}
    assert colour["triplet-hard | default"] == colour["triplet-hard | margin 0.3"]  # the loss keeps its colour
