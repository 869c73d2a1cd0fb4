"""The embedding animation and the curves over epochs, read back from the figures' data."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from fatviz.centroids import CENTROIDS
from fatviz.cli import main as cli_main
from fatviz.errors import FatvizError
from fatviz.figures.curves import (
    bound_curves,
    loss_curves,
    metric_curves,
    metrics_table,
)
from fatviz.figures.embedding import (
    ARROW_COLOUR,
    ARROW_SHARE,
    FLIPPED,
    KEPT,
    PointLabels,
    arrow_scale,
    embedding_animation,
    embedding_figure,
    placeholder_figure,
    point_groups,
)
from fatviz.figures.style import class_colour
from fatviz.projection import PanelFrames, panel_frames
from fatviz.runs import load_run, save_run
from fatviz.settings import RunSettings
from fatviz.train import RunResult, Snapshot

OPTIONS = ("mean", "mean-norm", "norm-mean", "norm-mean-norm")
V, K, D, EPOCHS = 40, 4, 6, 5


def values(v) -> np.ndarray:
    """An array from plotly's data: a list, a numpy array, or a base64 typed array."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v, dtype=float)


def fake_snapshots(seed: int = 0, dim: int = D, epochs: int = EPOCHS, unit: bool = False,
                   absent: int | None = None) -> list[Snapshot]:
    """Points that drift toward their class centre epoch by epoch, with computed centres and metrics."""
    rng = np.random.default_rng(seed)
    labels = np.arange(V) % K
    anchors = rng.normal(size=(K, dim)) * 3
    noise = rng.normal(size=(V, dim))
    snaps = []
    for e in range(epochs + 1):
        emb = anchors[labels] + noise / (1 + e)
        if unit:
            emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        centres = np.stack([emb[labels == k].mean(0) for k in range(K)])
        present = np.ones(K, dtype=bool)
        if absent is not None:
            present[absent] = False
        exact = 1.0 / (1 + e)
        snaps.append(Snapshot(
            epoch=e, embeddings=emb.astype(np.float32), centres=centres.astype(np.float32),
            radius=np.ones(K, dtype=np.float32), present=present,
            losses={} if e == 0 else {"point_to_set": 0.5 / e, "compactness": 0.2 / e, "total": 0.7 / e},
            bound={"exact": exact, "bound": exact + 0.3, "bound_point_to_set": exact + 0.1, "bound_radius": 0.2},
            metrics={"precision_at_1": 0.5 + 0.1 * e / epochs, "map": 0.4 + e / 100, "nmi": 0.3 + e / 50},
            seconds=0.1 * e))
    return snaps


def fake_labels(flip_every: int = 5) -> PointLabels:
    true = np.arange(V) % K
    flipped = np.arange(V) % flip_every == 0
    given = np.where(flipped, (true + 1) % K, true)
    return PointLabels(np.arange(100, 100 + V), true, given, flipped, [f"class {k}" for k in range(K)])


def fake_result(option: str, snaps: list[Snapshot], labels: PointLabels) -> RunResult:
    return RunResult(settings=RunSettings(centroid=option), snapshots=snaps, state_dict={}, vis_idx=labels.index,
                     vis_true=labels.true, vis_given=labels.given, vis_flipped=labels.flipped,
                     class_names=labels.class_names, model_kind="mlp", device="cpu", seconds=1.0)


@pytest.fixture(scope="module")
def runs() -> dict[str, list[Snapshot]]:
    return {o: fake_snapshots(seed=i, unit=o != "mean") for i, o in enumerate(OPTIONS)}


@pytest.fixture(scope="module")
def panels(runs) -> list[PanelFrames]:
    return [panel_frames(o, s) for o, s in runs.items()]


# --------------------------------------------------------------------------- panels


def test_a_2d_embedding_is_drawn_as_it_is_with_the_unit_circle_when_normalised() -> None:
    snaps = fake_snapshots(dim=2, unit=True)
    panel = panel_frames("norm-mean-norm", snaps)
    np.testing.assert_allclose(panel.points[3], snaps[3].embeddings, atol=1e-6)
    assert panel.unit_circle
    fig = embedding_figure([panel], fake_labels())
    assert [s["type"] for s in fig.layout.shapes] == ["circle"]


def test_panel_titles_carry_the_option_its_few_words_and_the_epoch_precision(runs) -> None:
    snaps = runs["mean"]
    fig = embedding_figure([panel_frames("mean", snaps)], fake_labels(), frame=2)
    title = fig.layout.annotations[0].text
    assert CENTROIDS.get("mean").short in title and CENTROIDS.get("mean").colour in title
    assert f"P@1 {snaps[2].metrics['precision_at_1']:.2f}" in title
    other = embedding_figure([panel_frames("not an option", snaps)], fake_labels()).layout.annotations[0].text
    assert "#333333" in other and "(" not in other.split("</b>")[1].split("P@1")[0]


# --------------------------------------------------------------------------- the four-panel animation


def test_four_panels_one_frame_per_epoch_with_play_pause_reset_and_a_slider(panels) -> None:
    fig = embedding_figure(panels, fake_labels())
    points = [t for t in fig.data if t.name == "points"]
    centres = [t for t in fig.data if t.name == "class centre"]
    assert len(points) == 4 and len(centres) == 4
    assert [t.xaxis for t in points] == ["x", "x2", "x3", "x4"]  # one panel each, 2x2
    assert len(fig.frames) == EPOCHS + 1
    for f, frame in enumerate(fig.frames):
        assert frame.name == str(f)
        assert list(frame.traces) == list(range(8))  # points and centres of the four panels move
        np.testing.assert_allclose(values(frame.data[0].x), np.round(panels[0].points[f][:, 0], 3), atol=1e-3)
        np.testing.assert_allclose(values(frame.data[7].y), np.round(panels[3].centres[f][:, 1], 3), atol=1e-3)
        assert frame.layout.title.text == f"Epoch {f}"
    labels = [b.label for b in fig.layout.updatemenus[0].buttons]
    assert labels == ["▶ Play", "❚❚ Pause", "↺ Reset"]
    slider = fig.layout.sliders[0]
    assert [list(s.args[0]) for s in slider.steps] == [[str(f)] for f in range(EPOCHS + 1)]  # a step per epoch
    assert [s.label for s in slider.steps] == [str(e) for e in range(EPOCHS + 1)]  # few epochs: all labelled
    assert slider.active == EPOCHS  # the last epoch is shown first
    assert fig.layout.uirevision == "embedding"
    titles = [a.text for a in fig.layout.annotations]
    assert all(o in t for o, t in zip(OPTIONS, titles, strict=True))
    assert CENTROIDS.get("mean").colour in titles[0]


def test_the_first_frame_shown_can_be_chosen(panels) -> None:
    fig = embedding_figure(panels, fake_labels(), frame=2)
    assert fig.layout.sliders[0].active == 2
    np.testing.assert_allclose(values(fig.data[0].x), np.round(panels[0].points[2][:, 0], 3), atol=1e-3)
    assert fig.layout.title.text == "Epoch 2"
    assert embedding_figure(panels, fake_labels(), frame=99).layout.sliders[0].active == EPOCHS


def test_each_class_has_one_colour_in_every_panel(panels) -> None:
    labels = fake_labels()
    fig = embedding_figure(panels, labels, colour_by="true")
    points = [t for t in fig.data if t.name == "points"]
    expected = [class_colour(k) for k in labels.true]
    assert all(list(t.marker.color) == expected for t in points)
    assert all(list(values(t.customdata)) == list(range(V)) for t in points)
    centres = [t for t in fig.data if t.name == "class centre"]
    assert all(list(t.marker.color) == [class_colour(k) for k in range(K)] for t in centres)
    key = [t.name for t in fig.data if t.name not in ("points", "class centre")]
    assert key == [f"class {k} ({V // K})" for k in range(K)]
    assert sum(1 for t in fig.data if t.showlegend is not False) == 1 + K  # once each, not once per panel


def test_colouring_by_given_label_or_flipped_recolours_the_flipped_points(panels) -> None:
    labels = fake_labels()
    true = list(embedding_figure(panels, labels, "true").data[0].marker.color)
    given = list(embedding_figure(panels, labels, "given").data[0].marker.color)
    changed = [i for i in range(V) if true[i] != given[i]]
    assert changed == list(np.flatnonzero(labels.flipped))
    flipped = list(embedding_figure(panels, labels, "flipped").data[0].marker.color)
    groups = {name: colour for name, colour, _ in point_groups(labels, "flipped")}
    assert [c == groups[FLIPPED] for c in flipped] == list(labels.flipped)
    assert set(flipped) == {groups[KEPT], groups[FLIPPED]}
    with pytest.raises(FatvizError, match="colour points"):
        embedding_figure(panels, labels, "size")


def test_follow_zoom_frames_each_epoch_and_fixed_keeps_one_range(panels) -> None:
    follow = embedding_figure(panels, fake_labels(), zoom="follow")
    fixed = embedding_figure(panels, fake_labels(), zoom="fixed")
    spans = [f.layout.xaxis.range[1] - f.layout.xaxis.range[0] for f in follow.frames]
    assert spans[0] > spans[-1]  # points contract toward their centres
    fixed_ranges = {tuple(f.layout.xaxis.range) for f in fixed.frames}
    assert len(fixed_ranges) == 1
    lo, hi = next(iter(fixed_ranges))
    every = np.concatenate([p[:, 0] for p in panels[0].points])
    assert lo < every.min() and every.max() < hi
    with pytest.raises(FatvizError, match="zoom"):
        embedding_figure(panels, fake_labels(), zoom="wobble")


def test_a_highlighted_point_is_ringed_in_every_panel_and_moves_with_it(panels) -> None:
    fig = embedding_figure(panels, fake_labels(), highlight=7)
    rings = [t for t in fig.data if t.legendgroup == "highlight"]
    assert len(rings) == 4 and rings[0].name == "sample 107"
    first_ring = list(fig.data).index(rings[0])
    assert list(fig.frames[1].traces)[-4:] == list(range(first_ring, first_ring + 4))
    np.testing.assert_allclose(values(fig.frames[1].data[8].x), np.round(panels[0].points[1][[7], 0], 3), atol=1e-3)
    with pytest.raises(FatvizError, match="does not exist"):
        embedding_figure(panels, fake_labels(), highlight=V)


def test_the_live_view_is_one_static_epoch(panels) -> None:
    fig = embedding_figure(panels, fake_labels(), animate=False)
    assert not fig.frames and not fig.layout.sliders and not fig.layout.updatemenus
    assert fig.layout.title.text == f"Epoch {EPOCHS}"


def test_a_stepped_batch_draws_an_arrow_from_each_centre_s_previous_place_to_its_new_one(panels) -> None:
    before = [p.centres[EPOCHS - 1].copy() for p in panels]
    before[2][1] = np.nan  # a class without a centre before the batch: no arrow
    fig = embedding_figure(panels, fake_labels(), animate=False, moved_from=before, title="epoch 4 + 1 of 9 batches")
    arrows = [a for a in fig.layout.annotations if a.showarrow]
    assert len(arrows) == len(panels) * K - 1
    for p, panel in enumerate(panels):
        axis = "" if p == 0 else str(p + 1)
        mine = [a for a in arrows if a.xref == f"x{axis}"]
        assert all(a.axref == f"x{axis}" and a.ayref == f"y{axis}" and a.yref == f"y{axis}" for a in mine)
        classes = [k for k in range(K) if not (p == 2 and k == 1)]
        assert {a.arrowcolor for a in mine} == {ARROW_COLOUR}  # dark on the class-coloured diamonds
        xr, yr = fig.layout[f"xaxis{axis}"].range, fig.layout[f"yaxis{axis}"].range
        scale = arrow_scale(before[p], panel.centres[EPOCHS], xr[1] - xr[0])
        assert scale > 1 and ("arrows ×" in fig.layout.annotations[p].text) == (scale > 1)  # these moves are short
        np.testing.assert_allclose([(a.ax, a.ay) for a in mine], before[p][classes], atol=1e-6)  # tails: before
        heads = before[p][classes] + scale * (panel.centres[EPOCHS][classes] - before[p][classes])  # along the move
        np.testing.assert_allclose([(a.x, a.y) for a in mine], heads, atol=1e-5)
        tails = before[p][classes]
        assert (xr[0] < tails[:, 0]).all() and (tails[:, 0] < xr[1]).all()  # the previous places are in view
        assert (yr[0] < tails[:, 1]).all() and (tails[:, 1] < yr[1]).all()
    ghosts = [t for t in fig.data if t.legendgroup == "previous"]
    assert len(ghosts) == len(panels) and ghosts[0].showlegend and ghosts[0].marker.symbol == "diamond-open"
    assert list(ghosts[0].marker.color) == [class_colour(k) for k in range(K)]  # the previous places say the class
    np.testing.assert_allclose(values(ghosts[3].x), np.round(before[3][:, 0], 3), atol=1e-3)
    assert fig.layout.title.text == "epoch 4 + 1 of 9 batches"
    assert not [a for a in embedding_figure(panels, fake_labels(), animate=False).layout.annotations if a.showarrow]
    with pytest.raises(FatvizError, match="previous centres for 4 panels"):
        embedding_figure(panels, fake_labels(), animate=False, moved_from=before[:3])


def test_arrows_are_drawn_as_long_as_the_moves_unless_too_short_to_see() -> None:
    before = np.zeros((4, 2))
    far = np.array([[0.1, 0.0], [0.0, 0.2], [0.1, 0.1], [np.nan, np.nan]])
    assert arrow_scale(before, far, 1.0) == 1  # a median move of 0.14 in a panel 1 wide shows as it is
    near = far / 100  # median 0.0014: 106 times would reach 15 % of the width; 100 is the largest nice factor below
    median = np.median([0.001, 0.002, np.hypot(0.001, 0.001)])
    assert arrow_scale(before, near, 1.0) == 100
    assert 100 * median <= ARROW_SHARE < 200 * median
    assert arrow_scale(before, before, 1.0) == 1 and arrow_scale(before, far, 0.0) == 1  # nothing moved, no panel


def test_the_placeholder_has_the_panels_titles_and_a_message() -> None:
    fig = placeholder_figure(OPTIONS, "Press the button", columns=4)
    texts = [a.text for a in fig.layout.annotations]
    assert texts[-1] == "Press the button"
    assert all(o in t for o, t in zip(OPTIONS, texts, strict=False))
    assert fig.layout.yaxis.domain == fig.layout.yaxis4.domain  # one row of four
    assert len(fig.data) == 4 and not fig.frames


def test_presentation_mode_enlarges_text_and_markers(panels) -> None:
    small = embedding_figure(panels, fake_labels())
    large = embedding_figure(panels, fake_labels(), presentation=True)
    assert large.layout.font.size > small.layout.font.size
    assert large.data[0].marker.size > small.data[0].marker.size


def test_the_animation_stays_light(runs) -> None:
    """500 points x 4 panels x 31 epochs must stay a few megabytes of JSON at most."""
    big = {o: fake_snapshots(seed=i, epochs=30) for i, o in enumerate(OPTIONS)}
    for snaps in big.values():
        for s in snaps:
            object.__setattr__(s, "embeddings", np.repeat(s.embeddings, 13, axis=0)[:500])
    labels = PointLabels(np.arange(500), np.arange(500) % K, np.arange(500) % K, np.zeros(500, bool),
                         [str(k) for k in range(K)])
    fig = embedding_figure([panel_frames(o, s) for o, s in big.items()], labels)
    assert len(fig.to_json()) < 2_500_000


def test_embedding_animation_of_one_run_or_of_four_and_its_html_export(runs, tmp_path) -> None:
    labels = fake_labels()
    one = embedding_animation(fake_result("norm-mean", runs["norm-mean"], labels))
    assert sum(t.name == "points" for t in one.data) == 1 and len(one.frames) == EPOCHS + 1
    four = embedding_animation({o: fake_result(o, s, labels) for o, s in runs.items()}, colour_by="flipped")
    assert sum(t.name == "points" for t in four.data) == 4
    html = four.to_html(include_plotlyjs=True, full_html=True, auto_play=False)
    assert "<script" in html and "Plotly.newPlot" in html and len(html) > 1_000_000  # plotly.js inside
    with pytest.raises(FatvizError):
        embedding_animation({})


def test_cli_export_writes_a_standalone_html_file(runs, tmp_path) -> None:
    folder = tmp_path / "run"
    save_run(fake_result("mean-norm", runs["mean-norm"], fake_labels()), folder)
    assert load_run(folder).snapshots[-1].epoch == EPOCHS
    out = tmp_path / "anim.html"
    assert cli_main(["export", str(folder), "--html", str(out)]) == 0
    text = out.read_text()
    assert "Plotly.newPlot" in text and '"name":"5"' in text.replace(" ", "")


# --------------------------------------------------------------------------- curves and table


def test_metric_curves_one_line_per_option_per_metric_in_the_option_colour(runs) -> None:
    fig = metric_curves(runs)
    assert len(fig.data) == 3 * 4
    first = [t for t in fig.data if t.xaxis == "x"]
    assert [t.name for t in first] == list(OPTIONS)
    assert [t.line.color for t in first] == [CENTROIDS.get(o).colour for o in OPTIONS]
    mean_p1 = next(t for t in first if t.name == "mean")
    np.testing.assert_allclose(values(mean_p1.y), [s.metrics["precision_at_1"] for s in runs["mean"]])
    assert [a.text for a in fig.layout.annotations] == ["precision@1", "mAP", "NMI"]


def test_metric_curves_take_the_colours_of_runs_that_are_not_options(runs) -> None:
    named = {"centres=epoch": runs["mean"], "centres=batch": runs["norm-mean"]}
    fig = metric_curves(named, ("map",), colours={"centres=epoch": "#111111", "centres=batch": "#222222"})
    assert [(t.name, t.line.color) for t in fig.data] == [("centres=epoch", "#111111"), ("centres=batch", "#222222")]
    np.testing.assert_allclose(values(fig.data[1].y), [s.metrics["map"] for s in runs["norm-mean"]])


def test_loss_curves_show_each_term_per_option_without_epoch_zero(runs) -> None:
    fig = loss_curves(runs)
    assert {t.name for t in fig.data} == {"total", "point-to-set", "compactness"}
    first = [t for t in fig.data if t.xaxis == "x"]
    assert list(first[0].x) == list(range(1, EPOCHS + 1))
    total = next(t for t in first if t.name == "total")
    np.testing.assert_allclose(values(total.y), [s.losses["total"] for s in runs["mean"][1:]])


def test_bound_curves_put_the_bound_above_the_exact_loss(runs) -> None:
    fig = bound_curves(runs)
    exact = [t for t in fig.data if t.name == "exact triplet loss"]
    bound = [t for t in fig.data if t.name == "FAT bound"]
    assert len(exact) == len(bound) == 4
    for e, b in zip(exact, bound, strict=True):
        assert (values(b.y) >= values(e.y)).all()


def test_metrics_table_rows_are_options_at_the_chosen_epoch(runs) -> None:
    last = metrics_table(runs)
    assert list(last.index) == list(OPTIONS) and (last["epoch"] == EPOCHS).all()
    assert last.loc["mean", "precision@1"] == pytest.approx(runs["mean"][-1].metrics["precision_at_1"])
    assert last.loc["mean-norm", "FAT bound"] == pytest.approx(runs["mean-norm"][-1].bound["bound"])
    two = metrics_table(runs, 2)
    assert (two["epoch"] == 2).all()
    with pytest.raises(FatvizError):
        metrics_table({})


def test_the_final_table_and_the_note_say_what_the_metrics_were_computed_on() -> None:
    from fatviz.figures.curves import evaluated_on, evaluation_note, final_metrics_table

    def result(test_metrics: dict, sizes: tuple[int, int]) -> RunResult:
        snap = Snapshot(epoch=1, embeddings=np.zeros((2, 2), np.float32), centres=np.zeros((1, 2), np.float32),
                        radius=np.zeros(1, np.float32), present=np.ones(1, bool), losses={}, bound={},
                        metrics={"precision_at_1": 0.1}, seconds=1.0)
        empty = np.zeros(0, int)
        return RunResult(settings=RunSettings(), snapshots=[snap], state_dict={}, vis_idx=empty, vis_true=empty,
                         vis_given=empty, vis_flipped=empty.astype(bool), class_names=["a"], model_kind="mlp",
                         device="cpu", seconds=1.0, test_metrics=test_metrics, evaluated_on=sizes)

    runs = {"mean": result({"precision_at_1": 0.7, "map": 0.6}, (2000, 10000)),
            "norm-mean-norm": result({"precision_at_1": 0.8, "map": 0.5}, (2000, 10000))}
    assert evaluated_on(runs) == (2000, 10000)
    assert evaluation_note(2000, 10000).startswith("Per-epoch metrics: evaluated on 2,000 of 10,000 test images")
    table = final_metrics_table(runs)
    assert table.loc["norm-mean-norm", "precision@1"] == 0.8 and table.loc["mean", "mAP"] == 0.6  # not the snapshot's
    assert evaluated_on({"mean": result({}, (0, 500))}) == (500, 500)
    assert evaluation_note(500, 500) == "Metrics on all 500 test images, every epoch."
    mixed = {"mean": result({}, (100, 500)), "x": result({}, (200, 500))}
    assert evaluated_on(mixed) is None and evaluated_on({}) is None


@pytest.mark.parametrize(("rows", "cols", "n"), [(2, 2, 4), (1, 4, 4), (2, 2, 3), (1, 1, 1), (3, 2, 5)])
def test_panel_axes_match_plotly_make_subplots(rows, cols, n) -> None:
    from plotly.subplots import make_subplots

    from fatviz.figures.embedding import _subplot_axes

    ref = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.05, vertical_spacing=0.13).layout
    ours = _subplot_axes(n, rows, cols)
    assert len(ours) == 2 * n
    for p in range(n):
        axis = "" if p == 0 else str(p + 1)
        for name in (f"xaxis{axis}", f"yaxis{axis}"):
            np.testing.assert_allclose(ours[name]["domain"], ref[name].domain, atol=1e-6)
            assert ours[name]["anchor"] == ref[name].anchor


def test_the_live_view_can_leave_out_hover_texts(panels) -> None:
    full = embedding_figure(panels, fake_labels(), animate=False)
    light = embedding_figure(panels, fake_labels(), animate=False, hover=False)
    points = [t for t in light.data if t.name == "points"]
    assert all(t.hovertext is None and t.customdata is None and t.hoverinfo == "skip" for t in points)
    assert all(t.hoverinfo == "skip" for t in light.data if t.name == "class centre")
    assert len(light.to_json()) < 0.7 * len(full.to_json())
    np.testing.assert_allclose(values(light.data[0].x), values(full.data[0].x))


def test_a_long_run_labels_every_fifth_epoch_on_the_slider_but_keeps_a_step_per_epoch() -> None:
    snaps = {o: fake_snapshots(seed=i, epochs=30) for i, o in enumerate(OPTIONS)}
    fig = embedding_figure([panel_frames(o, s) for o, s in snaps.items()], fake_labels())
    steps = fig.layout.sliders[0].steps
    assert [list(s.args[0]) for s in steps] == [[str(f)] for f in range(31)]
    assert [s.label for s in steps if s.label] == ["0", "5", "10", "15", "20", "25", "30"]
    assert fig.layout.sliders[0].currentvalue.visible is False
    assert [f.layout.title.text for f in fig.frames][7] == "Epoch 7"  # the title names every epoch


def test_a_row_of_panels_puts_its_legend_under_the_panels_and_titles_on_two_lines(panels) -> None:
    from fatviz.figures.embedding import LEGEND_BELOW

    fig = embedding_figure(panels, fake_labels(), columns=4).to_dict()["layout"]
    legend = fig["legend"]
    # At the figure's bottom, in a margin of its own: a long legend wraps there and covers no title.
    assert (legend["yref"], legend["y"], legend["yanchor"], legend["x"]) == ("container", 0.0, "bottom", 0.0)
    assert fig["margin"]["b"] >= LEGEND_BELOW
    titles = [a["text"] for a in fig["annotations"]]
    assert all(t.count("<br>") == 1 and "P@1" in t.split("<br>")[1] for t in titles)


