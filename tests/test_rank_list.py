"""Rank lists of a ReID run: the PIL grid, the embedding panel, run_rank_lists and `python -m fatviz rank-list`."""

import numpy as np
import pytest
from PIL import Image
from test_app_pages import wait_for
from test_reid_synth import reid_synth_registered

from fatviz.cli import main
from fatviz.data.reid_synth import NAME
from fatviz.errors import FatvizError
from fatviz.figures.rank_list import (
    HARDEST_COLOUR,
    MATCH_COLOUR,
    QUERY_COLOUR,
    WRONG_COLOUR,
    rank_list_embedding_figure,
    rank_list_image,
)
from fatviz.metrics import rank_lists, retrieval_metrics
from fatviz.settings import RunSettings


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


@pytest.fixture(scope="module")
def toy():
    """Four queries, eight gallery images on a line (two identities, two cameras)."""
    q = np.array([[0.0], [0.1], [5.0], [5.1]])
    g = np.arange(8, dtype=np.float64)[:, None] * 0.9
    q_lab, g_lab = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1, 0, 1, 0, 1])
    q_cam, g_cam = np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1, 0, 0, 1, 1])
    lists = rank_lists(q, q_lab, g, g_lab, query_cams=q_cam, gallery_cams=g_cam, k=3)
    rng = np.random.default_rng(0)
    q_img = rng.integers(0, 255, (4, 16, 8, 3), dtype=np.uint8)
    g_img = rng.integers(0, 255, (8, 16, 8, 3), dtype=np.uint8)
    return lists, q_img, g_img, q_cam, g_cam, g_lab


def test_image_frames_say_right_and_wrong(toy):
    lists, q_img, g_img, q_cam, g_cam, _ = toy
    image = rank_list_image(lists, q_img, g_img, queries=2, query_cams=q_cam, gallery_cams=g_cam, scale=2)
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    pixels = np.asarray(image)
    colours = {tuple(c) for c in pixels.reshape(-1, 3)}
    for colour in (QUERY_COLOUR, MATCH_COLOUR, WRONG_COLOUR, HARDEST_COLOUR):
        assert rgb(colour) in colours
    # Two rows of images: fewer rows make a shorter picture.
    one = np.asarray(rank_list_image(lists, q_img, g_img, queries=1))
    assert one.shape[1] == pixels.shape[1] and one.shape[0] < pixels.shape[0]
    # Asking for more rows than there are queries draws them all.
    assert rank_list_image(lists, q_img, g_img, queries=99).size == rank_list_image(lists, q_img, g_img,
                                                                                   queries=len(lists)).size
    with pytest.raises(FatvizError, match="at least one"):
        rank_list_image(lists, q_img, g_img, queries=0)


def test_embedding_figure_highlights_the_query_and_its_matches(toy):
    lists, *_, g_lab = toy
    points = np.random.default_rng(1).normal(size=(12, 2))
    query_idx, gallery_idx = np.arange(4), np.arange(4, 12)
    fig = rank_list_embedding_figure(points, query_idx, gallery_idx, g_lab, lists, 0)
    traces = {t.name: t for t in fig.data}
    q = int(lists.query[0])
    assert list(traces["query"].x) == [points[q, 0]]
    hard = gallery_idx[lists.hardest[0]]
    assert list(traces["hardest positive"].x) == [points[hard, 0]]
    wrong = lists.top[0][~lists.top_match[0]]
    assert sorted(traces["wrong in the top 3"].x) == sorted(points[gallery_idx[wrong], 0])
    same = np.flatnonzero(g_lab == g_lab[lists.hardest[0]])
    assert len(traces["same identity (gallery)"].x) == len(same)
    with pytest.raises(FatvizError, match="does not exist"):
        rank_list_embedding_figure(points, query_idx, gallery_idx, g_lab, lists, len(lists))


@pytest.fixture(scope="module")
def reid_run(tmp_path_factory):
    """A one-epoch reid-synth run on a few identities, saved; reid-synth registered meanwhile."""
    from fatviz.runs import save_run
    from fatviz.train import train

    with reid_synth_registered():
        settings = RunSettings(dataset=NAME, subsample=64, epochs=1, embedding_dim=8, vis_points=30, device="cpu")
        result = train(settings)
        folder = tmp_path_factory.mktemp("reid") / "run"
        save_run(result, folder)
        yield result, folder


def test_run_rank_lists_agree_with_the_run_metrics(reid_run):
    from fatviz.retrieval import run_rank_lists

    result, _ = reid_run
    ranked = run_rank_lists(result)
    ds = ranked.dataset
    assert len(ranked.query_idx) + len(ranked.gallery_idx) == len(ds.y_test)
    assert ranked.projected().shape == (len(ds.y_test), 2)
    m = result.final_metrics
    assert len(ranked.lists) == m["num_valid_queries"]
    assert ranked.lists.ap.mean() == pytest.approx(m["map"], abs=1e-5)
    assert ranked.lists.inp.mean() == pytest.approx(m["minp"], abs=1e-5)
    e = ranked.embeddings
    again = retrieval_metrics(e[ranked.query_idx], ds.y_test[ranked.query_idx], e[ranked.gallery_idx],
                              ds.y_test[ranked.gallery_idx], query_cams=ds.cam_test[ranked.query_idx],
                              gallery_cams=ds.cam_test[ranked.gallery_idx])
    assert again["map"] == pytest.approx(m["map"], abs=1e-5)


def test_cli_writes_a_png(reid_run, tmp_path, capsys):
    _, folder = reid_run
    out = tmp_path / "rank.png"
    assert main(["rank-list", str(folder), "--png", str(out), "--queries", "3"]) == 0
    assert "wrote" in capsys.readouterr().out
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 500


def test_cli_mistakes_are_one_line(reid_run, tmp_path, capsys):
    _, folder = reid_run
    assert main(["rank-list", str(folder), "--png", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["rank-list", str(folder), "--png", str(tmp_path / "x.png"), "--queries", "0"]) == 2
    assert "--queries" in capsys.readouterr().err


# -- the page ---------------------------------------------------------------------------------


@pytest.fixture
def registered():
    with reid_synth_registered():
        yield


def test_page_trains_and_shows_rank_lists(registered):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file("../pages/rank_list.py", default_timeout=180)
    at.query_params.update({"dataset": NAME, "subsample": "64", "epochs": "1", "embedding_dim": "8",
                            "vis_points": "30", "seed": "11"})
    at.run()
    assert not at.exception and not at.error
    train = next(b for b in at.button if b.label == "Train")
    train.click()
    wait_for(at, lambda a: a.exception or a.error or len(a.get("image")) > 0)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("image")) == 1
    assert {m.label for m in at.metric} >= {"Rank-1", "mAP", "mINP"}
    assert at.get("plotly_chart")
    at.selectbox(key="rl_row").set_value(1).run()
    assert not at.exception


def test_page_points_a_non_reid_dataset_to_reid_synth(registered):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file("../pages/rank_list.py", default_timeout=60)
    at.query_params.update({"dataset": "digits"})
    at.run()
    assert not at.exception
    assert any("queries, a gallery and cameras" in i.value for i in at.info)
    next(b for b in at.button if b.label.startswith("Use reid-synth")).click().run()
    assert not at.exception
    assert at.session_state["w_dataset"] == NAME


def test_cli_refuses_a_run_without_queries(tmp_path, capsys):
    from fatviz.runs import save_run
    from fatviz.train import train

    folder = tmp_path / "blobs"
    save_run(train(RunSettings(dataset="blobs", epochs=1, embedding_dim=4, vis_points=30, device="cpu")), folder)
    assert main(["rank-list", str(folder), "--png", str(tmp_path / "x.png")]) == 2
    assert "no query/gallery split" in capsys.readouterr().err
