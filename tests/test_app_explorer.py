"""AppTest runs of Home, the Centroid explorer and the Classroom: they render, and widgets change what is computed.

Runs train in a thread of the test process (conftest: FATVIZ_WORKERS=0) on tiny settings
passed through the URL, as a teacher's link would.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
import torch
from helpers import chart_figures, chart_payloads
from streamlit.testing.v1 import AppTest

from fatviz.presets import PRESETS
from fatviz.runs import save_run
from fatviz.serve.jobs import job_key
from fatviz.serve.paths import allowed_roots
from fatviz.settings import RunSettings
from fatviz.train import compare_centroids
from pages.ui.live import job_manager
from pages.ui.live_chart import forget_sent

TIMEOUT = 120
TINY_QUERY = {"subsample": "200", "epochs": "2", "vis_points": "60", "embedding_dim": "8"}


def tiny(**changes: str) -> dict[str, str]:
    return {**TINY_QUERY, **changes}


def page(name: str, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(f"../pages/{name}.py", default_timeout=TIMEOUT)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    return at.run()


def figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def animation(at: AppTest) -> dict | None:
    """The embedding chart on the page (the one with point traces) as the browser holds it, if drawn."""
    return next((f for f in chart_figures(at) if any(t.get("name") == "points" for t in f["data"])), None)


def values(v) -> np.ndarray:
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v)


def no_trouble(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def run_until_animated(at: AppTest, frames: int, timeout: float = TIMEOUT) -> dict:
    """Rerun the page (as the live fragment would) until the full animation with `frames` epochs is drawn."""
    deadline = time.monotonic() + timeout
    while True:
        assert not at.exception, [e.value for e in at.exception]
        fig = animation(at)
        if fig is not None and not fig["live"] and len(fig["frames"]) == frames:
            return fig
        assert time.monotonic() < deadline, "the animation never appeared"
        time.sleep(0.3)
        at.run()


@pytest.fixture(scope="module")
def saved_default_demo():
    """A finished (tiny) comparison saved where the default demo's job looks, so Run the demo loads it."""
    results = compare_centroids(RunSettings(**{k: int(v) for k, v in TINY_QUERY.items()}))
    folder = allowed_roots("runs")[0].path / job_key("compare", RunSettings())
    for option, result in results.items():
        save_run(result, folder / option)
    job_manager.clear()  # a fresh manager: nothing in memory, the saved run on disk
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
    job_manager.clear()


# --------------------------------------------------------------------------- home


def test_home_says_what_fat_is_and_runs_the_demo(saved_default_demo) -> None:
    at = page("home")
    no_trouble(at)
    latex = [x.value for x in at.latex]
    assert any(r"R_a + R_k" in x and r"d(a,c_k)" in x for x in latex)
    assert any(r"L_{\mathrm{FAT}}" in x for x in latex)
    assert animation(at) is None  # nothing trains before the button, the panels wait empty
    (placeholder,) = chart_figures(at)  # the live chart's own placeholder: plotly.js loads while the class reads
    assert "Run the demo" in placeholder["layout"]["annotations"][-1]["text"] and not placeholder["frames"]
    (button,) = [b for b in at.button if b.label == "Run the demo"]
    button.click().run()
    no_trouble(at)
    fig = run_until_animated(at, frames=3)
    assert sum(t.get("name") == "points" for t in fig["data"]) == 4
    assert fig["epochs"] == [0, 1, 2]
    assert any("loaded from the saved run" in c.value for c in at.caption)
    job = job_manager().get(job_key("compare", RunSettings()))
    assert job.from_cache and job.done


def test_home_button_names_the_demo_runsettings_trains() -> None:
    import ast
    from pathlib import Path

    from fatviz.settings import RunSettings

    source = (Path(__file__).resolve().parents[1] / "pages" / "home.py").read_text()
    tree = ast.parse(source)
    (demo,) = [n.value for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "DEMO"]
    written = ast.literal_eval(demo)
    defaults = RunSettings()
    assert written == {k: getattr(defaults, k) for k in written}
    # The text and the button come before the first import of the training stack (fatviz.*).
    top_level_fatviz = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module.startswith("fatviz")]
    assert not top_level_fatviz
    assert source.index("st.title(") < source.index("_demo(clicked)")


# --------------------------------------------------------------------------- centroid explorer


def test_explorer_trains_live_then_animates_the_four_options() -> None:
    at = page("centroid_explorer", tiny(seed="11"))
    fig = run_until_animated(at, frames=3)
    no_trouble(at)
    titles = [a["text"] for a in fig["layout"]["annotations"]]
    assert [t.split("</span>")[0].split(">")[-1] for t in titles] == ["mean", "mean-norm", "norm-mean",
                                                                      "norm-mean-norm"]
    table = at.dataframe[0].value
    assert list(table.index) == ["mean", "mean-norm", "norm-mean", "norm-mean-norm"]
    assert (table["epoch"] == 2).all()
    assert len(figures(at)) == 3  # the three curve figures, beside the live chart
    assert any("Click a point" in c.value for c in at.caption)


def test_explorer_colour_by_given_label_recolours_the_flipped_points() -> None:
    at = page("centroid_explorer", tiny(noise="pairflip:0.4", seed="12"))
    true = run_until_animated(at, frames=3)["data"][0]["marker"]["color"]
    at.segmented_control(key="explorer_colour_by").set_value("given").run()
    no_trouble(at)
    given = animation(at)["data"][0]["marker"]["color"]
    assert true != given
    assert animation(at)["layout"]["legend"]["title"]["text"] == "given (noisy) label"
    at.segmented_control(key="explorer_colour_by").set_value("flipped").run()
    names = [t["name"] for t in animation(at)["data"] if t.get("showlegend") is not False]
    assert any(n.startswith("flipped by noise (") for n in names)


def test_explorer_2d_embedding_is_drawn_as_it_is_on_the_unit_circle() -> None:
    at = page("centroid_explorer", tiny(seed="22", embedding_dim="2"))
    fig = run_until_animated(at, frames=3)
    no_trouble(at)
    assert "explorer_projection" not in [b.key for b in at.button_group]  # nothing to project
    circles = [s for s in fig["layout"].get("shapes", []) if s["type"] == "circle"]
    assert len(circles) == 3  # the three normalised options live on the unit circle; `mean` does not
    x, y = values(fig["data"][6]["x"]), values(fig["data"][6]["y"])  # norm-mean-norm's points
    np.testing.assert_allclose(np.hypot(x, y), 1.0, atol=2e-3)


def test_explorer_tsne_lays_out_every_epoch_and_keeps_it_with_the_run() -> None:
    at = page("centroid_explorer", tiny(seed="19", epochs="2", vis_points="24"))  # t-SNE fits are slow
    pca = run_until_animated(at, frames=3)
    at.segmented_control(key="explorer_projection").set_value("tsne").run()
    no_trouble(at)
    # Every epoch, laid out in the background. t-SNE's OpenMP threads slow down many times over when
    # other processes share the two cores (12 s alone, over 120 s beside three trainings): a longer wait.
    tsne = run_until_animated(at, frames=3, timeout=3 * TIMEOUT)
    assert not np.allclose(values(tsne["data"][2]["x"]), values(pca["data"][2]["x"]))
    job = job_manager().get(job_key("compare", RunSettings(**{**{k: int(v) for k, v in TINY_QUERY.items()},
                                                              "seed": 19, "epochs": 2, "vis_points": 24})))
    layout = job.layouts["tsne"]
    assert layout.done and layout.frames() == 3
    # Drawn as laid out: the chart's first panel at the last epoch is the layout's last frame.
    last = tsne["frames"][-1]["data"][0]
    np.testing.assert_allclose(values(last["x"]), layout.points[job.options[0]][-1][:, 0], atol=6e-4)  # sent to 3 decimals
    folder = job_manager().store.folder(job)
    assert all((folder / o / "layout-tsne.npz").is_file() for o in job.options)


def test_explorer_changed_settings_train_on_request_with_more_epochs() -> None:
    at = page("centroid_explorer", tiny(seed="13"))
    run_until_animated(at, frames=3)
    at.slider(key="w_epochs").set_value(3).run()
    no_trouble(at)
    assert at.query_params["epochs"] in ("3", ["3"])
    assert animation(at) is None  # edited settings wait for the button
    (train,) = [b for b in at.button if b.label == "Train the four options"]
    train.click().run()
    fig = run_until_animated(at, frames=4)
    assert fig["epochs"][-1] == 3


def test_explorer_step_buttons_and_a_clicked_point_show_that_epoch_and_sample() -> None:
    at = page("centroid_explorer", tiny(seed="14"))
    run_until_animated(at, frames=3)
    (back,) = [b for b in at.button if b.label == "◀ Step"]
    back.click().run()
    no_trouble(at)
    assert at.session_state["explorer_epoch"] == 1
    assert animation(at)["show"] == 1  # the chart is asked to show that epoch
    assert (at.dataframe[0].value["epoch"] == 1).all()
    at.session_state["explorer_point"] = ("norm-mean", 5)  # what a click on a point stores
    at.run()
    no_trouble(at)
    assert any(h.value.startswith("Sample ") and "norm-mean panel, epoch 1" in h.value for h in at.subheader)
    assert len(at.get("image")) == 1 + 6  # the sample and its six nearest neighbours
    rings = [t for t in animation(at)["data"] if t.get("legendgroup") == "highlight"]
    assert len(rings) == 4
    at.button(key="explorer_clear").click().run()
    assert "explorer_point" not in at.session_state
    assert not at.get("image") and not [t for t in animation(at)["data"] if t.get("legendgroup") == "highlight"]


def stepped_figure(at: AppTest) -> dict:
    """The panels after the last stepped batch (a plotly chart of their own)."""
    (fig,) = [f for f in figures(at) if f["layout"].get("title", {}).get("text", "").startswith("After one more batch")]
    return fig


def step_a_batch(at: AppTest) -> tuple[str, dict]:
    """Click Step a batch; return the counter shown and the stepped panels' figure."""
    at.button(key="explorer_step_batch").click().run()
    no_trouble(at)
    (counter,) = [m.value for m in at.markdown if m.value.startswith("**Stepped: ")]
    return counter, stepped_figure(at)


def arrows(fig: dict) -> list[dict]:
    return [a for a in fig["layout"]["annotations"] if a.get("showarrow")]


def test_explorer_step_a_batch_after_a_finished_run_moves_the_counter_draws_arrows_and_keeps_the_run() -> None:
    at = page("centroid_explorer", tiny(seed="24"))
    run_until_animated(at, frames=3)
    job = job_manager().get(job_key("compare", RunSettings(**{**{k: int(v) for k, v in TINY_QUERY.items()}, "seed": 24})))
    folder = job_manager().store.folder(job)
    saved = {p: p.read_bytes() for p in sorted(folder.rglob("run.pt"))}
    assert len(saved) == 4
    counter, fig = step_a_batch(at)
    per_epoch = at.session_state["explorer_stepped"][2].per_epoch["mean"]
    assert per_epoch >= 2 and counter.startswith(f"**Stepped: epoch 2 + 1 of {per_epoch} batches**")
    assert fig["layout"]["title"]["text"] == f"After one more batch: epoch 2 + 1 of {per_epoch} batches"
    assert len([t for t in fig["data"] if t.get("name") == "points"]) == 4
    assert len(arrows(fig)) == 4 * 10  # every digit's centre in every panel
    assert all(a["x"] != a["ax"] or a["y"] != a["ay"] for a in arrows(fig))  # each one moved
    for _ in range(per_epoch - 1):
        counter, fig = step_a_batch(at)
    assert counter.startswith("**Stepped: epoch 3**") and f"{per_epoch} batches in this copy" in counter
    assert {p: p.read_bytes() for p in sorted(folder.rglob("run.pt"))} == saved  # the saved epochs, byte for byte
    assert [s.epoch for s in job.snapshots["mean"]] == [0, 1, 2] and len(animation(at)["frames"]) == 3
    at.button(key="explorer_step_forget").click().run()
    assert "explorer_stepped" not in at.session_state and not [
        f for f in figures(at) if f["layout"].get("title", {}).get("text", "").startswith("After one more batch")]


def test_explorer_step_a_batch_before_training_steps_the_untrained_networks_without_a_job() -> None:
    at = page("centroid_explorer", tiny(seed="25"))
    run_until_animated(at, frames=3)
    at.slider(key="w_epochs").set_value(3).run()  # edited settings: nothing trains before the button
    assert [b for b in at.button if b.label == "Train the four options"]
    counter, fig = step_a_batch(at)
    assert counter.startswith("**Stepped: epoch 0 + 1 of ")
    assert len(arrows(fig)) == 40
    counter, _ = step_a_batch(at)
    assert counter.startswith("**Stepped: epoch 0 + 2 of ") or counter.startswith("**Stepped: epoch 1**")
    settings = RunSettings(**{**{k: int(v) for k, v in TINY_QUERY.items()}, "seed": 25, "epochs": 3})
    assert job_manager().get(job_key("compare", settings)) is None  # stepping trained no run


def test_explorer_draws_the_first_epoch_in_the_same_run_then_sends_only_new_epochs() -> None:
    at = page("centroid_explorer", tiny(seed="21", epochs="100"))
    no_trouble(at)
    (first,) = chart_payloads(at)  # the page's first run waited for epoch 0 instead of a polling turn
    assert first["live"] and first["figure"] is not None and first["first"] == 0 and first["frames"]
    assert first["figure"]["layout"]["title"]["text"].startswith("Epoch ")
    held = len(first["frames"])
    later = []
    deadline = time.monotonic() + TIMEOUT
    while sum(len(p["frames"]) for p in later) < 3:  # the polling runs, as the live fragment makes them
        assert time.monotonic() < deadline, "no new epoch reached the chart"
        time.sleep(0.3)
        at.run()
        (payload,) = chart_payloads(at)
        later.append(payload)
    # The figure went once; each later run sent only the epochs the chart did not hold, in order.
    assert all(p["figure"] is None and p["sig"] == first["sig"] for p in later)
    for p in later:
        assert p["first"] == held and len(p["epochs"]) == len(p["frames"])
        held += len(p["frames"])
    epochs = first["epochs"] + [e for p in later for e in p["epochs"]]
    assert epochs == list(range(len(epochs)))
    (stop,) = [b for b in at.button if b.label == "Stop"]
    stop.click().run()


def test_a_finished_chart_is_sent_nothing_more_and_a_remounted_one_gets_every_epoch_again() -> None:
    at = page("centroid_explorer", tiny(seed="14"))
    fig = run_until_animated(at, frames=3)
    at.run()
    (payload,) = chart_payloads(at)
    assert payload["figure"] is None and payload["frames"] == []  # nothing new: nothing sent
    # A chart remounted in the browser (another page and back) holds no frame: its "need" trigger
    # {sig, have: 0} makes the session forget what it sent, and the next run sends it all.
    sent = at.session_state["_live_chart_sent"]
    (key,) = [k for k in sent if k.startswith("explorer-")]
    forget_sent(sent, key, {"sig": payload["sig"], "have": 0})
    assert sent[key] == (payload["sig"], 0)
    at.session_state["_live_chart_sent"] = sent
    at.run()
    (again,) = chart_payloads(at)
    assert again["first"] == 0 and again["figure"] is not None and len(again["frames"]) == len(fig["frames"])


def test_a_chart_that_asks_for_another_view_or_more_than_was_sent_gets_everything() -> None:
    sent = {"c": ("view-a", 5)}
    forget_sent(sent, "c", {"sig": "view-a", "have": 9})  # holds more than was sent: never trusted beyond it
    assert sent == {"c": ("view-a", 5)}
    forget_sent(sent, "c", {"sig": "view-a", "have": 2})
    assert sent == {"c": ("view-a", 2)}
    forget_sent(sent, "c", {"sig": "view-b", "have": 2})  # an older view: start again
    assert sent == {}
    forget_sent(sent, "c", "garbage")
    assert sent == {}


def stop_and_wait(at) -> None:
    """Press Stop and rerun the page until it says the run stopped."""
    (stop,) = [b for b in at.button if b.label == "Stop"]
    stop.click().run()
    deadline = time.monotonic() + TIMEOUT
    while not any(i.value.startswith("Stopped after epoch") for i in at.info):
        assert time.monotonic() < deadline, "the run never stopped"
        time.sleep(0.3)
        at.run()


def test_explorer_stop_keeps_the_epochs_trained_so_far_and_offers_to_train_again() -> None:
    at = page("centroid_explorer", tiny(seed="20", epochs="100"))
    stop_and_wait(at)
    at.run()  # the run that saw the job stop may have drawn its top before it stopped
    no_trouble(at)
    fig = animation(at)
    assert fig is not None and len(fig.get("frames", [])) < 101
    assert [b for b in at.button if b.label == "Train again"]


def test_explorer_trains_the_four_panels_with_the_centre_source_the_sidebar_picks() -> None:
    link = tiny(centres="ema:0.9", epochs="1", seed="31")
    at = page("centroid_explorer", link)
    run_until_animated(at, frames=2)
    no_trouble(at)
    assert at.radio(key="w_centres").value == "ema" and at.number_input(key="w_centres_beta").value == 0.9
    assert any("moving average over the batches (beta 0.9)" in c.value for c in at.caption)
    settings = RunSettings.from_query(link)
    job = job_manager().get(job_key("compare", settings))
    assert job is not None and job.wait(TIMEOUT) and job.settings.centres == "ema:0.9"
    assert {r.settings.centres for r in job.results.values()} == {"ema:0.9"}  # all four options
    at.number_input(key="w_centres_beta").set_value(0.5).run()  # another beta is another training
    assert at.query_params["centres"] in ("ema:0.5", ["ema:0.5"]) and animation(at) is None
    at.radio(key="w_centres").set_value("batch").run()
    no_trouble(at)
    assert at.query_params["centres"] in ("batch", ["batch"])
    assert any("each batch's own members" in c.value for c in at.caption)
    at.radio(key="w_centres").set_value("ema").run()
    at.number_input(key="w_centres_beta").set_value(1.0).run()  # not a moving average: one error, no traceback
    assert not at.exception and len(at.error) == 1 and "strictly between 0 and 1" in at.error[0].value


def test_explorer_link_with_an_impossible_centre_source_says_so_and_uses_the_default() -> None:
    for bad in ("ema:2", "ema:x"):
        at = page("centroid_explorer", tiny(centres=bad, epochs="1", seed="32"))
        no_trouble(at)
        (warning,) = at.warning
        assert bad in warning.value and "default centres" in warning.value
        assert at.radio(key="w_centres").value == "epoch"


def test_explorer_step_a_batch_after_stop_goes_on_from_the_epochs_trained() -> None:
    at = page("centroid_explorer", tiny(seed="26", epochs="100"))
    assert not [b for b in at.button if b.label == "Step a batch"]
    stop_and_wait(at)
    at.run()
    job = job_manager().get(job_key("compare", RunSettings(**{**{k: int(v) for k, v in TINY_QUERY.items()},
                                                              "seed": 26, "epochs": 100})))
    epochs = {o: int(r.snapshots[-1].epoch) for o, r in job.results.items()}
    shown = {o: [s.epoch for s in snaps] for o, snaps in job.snapshots.items()}
    weights = {o: {k: v.clone() for k, v in r.state_dict.items()} for o, r in job.results.items()}
    counter, fig = step_a_batch(at)
    assert len(arrows(fig)) == 40
    stepped = at.session_state["explorer_stepped"][2]
    assert stepped.epochs == epochs and set(stepped.batches.values()) == {1}  # the next epoch's first batch
    # The stopped run's epochs and weights, as the panels show them, are untouched.
    assert {o: [s.epoch for s in snaps] for o, snaps in job.snapshots.items()} == shown
    assert all(torch.equal(job.results[o].state_dict[k], v) for o, w in weights.items() for k, v in w.items())


def test_explorer_impossible_setting_shows_one_error_and_keeps_running() -> None:
    at = page("centroid_explorer", tiny(loss="normalized-fat", centroid="mean", epochs="1", seed="23"))
    no_trouble(at)  # a link is fitted: the default loss, and one warning that says why
    (warning,) = at.warning
    assert "normalized-fat" in warning.value and "default loss" in warning.value
    at.selectbox(key="w_loss").set_value("normalized-fat").run()  # the sidebar cannot be fitted: one error
    assert not at.exception
    assert len(at.error) == 1 and "normalized-fat" in at.error[0].value


def test_explorer_data_folder_is_read_only_under_the_data_roots() -> None:
    at = page("centroid_explorer", tiny(dataset="folder", data_root="/no/such/folder", seed="15"))
    assert not at.exception
    assert len(at.error) == 1 and "/no/such" not in at.error[0].value and "data folder" in at.error[0].value
    at = page("centroid_explorer", tiny(dataset="folder", data_root="no/such/folder", seed="15"))
    deadline = time.monotonic() + TIMEOUT
    while not at.error and time.monotonic() < deadline:
        time.sleep(0.3)
        at.run()
    assert not at.exception
    assert len(at.error) == 1 and "no/such/folder" in at.error[0].value  # under the data root: named


# --------------------------------------------------------------------------- classroom


def test_classroom_link_carries_the_settings_and_presentation_mode() -> None:
    at = page("classroom", tiny(seed="16"))
    no_trouble(at)
    links = [c.value for c in at.code]
    assert len(links) == 2
    query = parse_qs(urlparse(links[0]).query)
    assert urlparse(links[0]).path.endswith("/classroom")
    assert {k: v[0] for k, v in query.items()} == tiny(seed="16")
    assert parse_qs(urlparse(links[1]).query)["present"] == ["1"]
    assert [b.label for b in at.button if b.key and b.key.startswith("preset-")] == list(PRESETS)
    run_until_animated(at, frames=3)
    assert at.get("download_button")  # the HTML export
    at.toggle(key="classroom_present").set_value(True).run()
    no_trouble(at)
    assert at.query_params["present"] in ("1", ["1"])
    assert not [b for b in at.button if b.key and b.key.startswith("preset-")]  # controls hidden
    assert animation(at)["layout"]["font"]["size"] == 22  # charts enlarged


def test_classroom_students_opening_one_link_share_one_training() -> None:
    link = tiny(seed="21")
    teacher = page("classroom", link)
    job = job_manager().get(job_key("compare", RunSettings(**{k: int(v) for k, v in link.items()})))
    assert job is not None
    students = [page("classroom", link) for _ in range(3)]
    assert job_manager().get(job.key) is job  # joined, not restarted
    for at in (teacher, *students):
        assert len(run_until_animated(at, frames=3)["frames"]) == 3
    assert job_manager().get(job.key) is job


def test_classroom_preset_button_loads_the_preset_into_the_settings() -> None:
    at = page("classroom", tiny(seed="17"))
    (button,) = [b for b in at.button if b.key == "preset-40% pairflip noise"]
    button.click().run()
    assert not at.exception
    assert at.session_state["w_noise_kind"] == "pairflip" and at.session_state["w_noise_rate"] == 0.4
    assert "noise=pairflip%3A0.4" in at.code[0].value
    # The preset's job started for the whole class; stop it, this test only checks the link.
    # vis_points is not a sidebar widget: it stays as the link set it.
    job = job_manager().get(job_key("compare", PRESETS["40% pairflip noise"][1].replace(vis_points=60)))
    assert job is not None
    job.stop()
    job.wait(TIMEOUT)


def test_classroom_saved_run_shows_without_training_and_a_bad_folder_is_one_error(saved_default_demo) -> None:
    at = page("classroom", tiny(seed="18"))
    at.segmented_control(key="classroom_source").set_value("a saved run").run()
    no_trouble(at)
    at.selectbox(key="classroom_saved").set_value(saved_default_demo).run()
    no_trouble(at)
    assert any(f"{saved_default_demo.name}`, no training" in m.value for m in at.markdown)
    fig = animation(at)
    assert fig is not None and len(fig["frames"]) == 3
    assert at.get("download_button")
    for outside in ("/no/such/run", "../.."):  # outside the runs root: refused, and not named
        at.text_input(key="classroom_folder").input(outside).run()
        assert not at.exception
        assert len(at.error) == 1 and "run folder" in at.error[0].value and outside not in at.error[0].value
    at.text_input(key="classroom_folder").input("no-such-run").run()
    assert len(at.error) == 1 and "no-such-run is not a folder" in at.error[0].value
