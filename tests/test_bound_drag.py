"""The draggable bound view's own numbers (fatviz/web/bound_drag.js, run in Chromium) against
fatviz's on the same points: centres, radii, both sides of the bound and the hardest triplet, for
every centroid option, and the check the page applies to what a student left in the view.

The JavaScript runs in headless Chromium, served from fatviz/web by a small HTTP server (no app). Skipped only when no
Chromium is installed, like tests/test_browser.py.
"""

from __future__ import annotations

import functools
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from fatviz.bound_view import bound_terms, hardest_triplet, moved_triplet, option_space, teaching_blobs
from fatviz.centroids import CENTROIDS
from pages.ui.web import WEB
from scripts.bench_browser import CHROMIUM, launch_browser

CASES = [  # (classes, spread, outliers, seed, margin)
    (4, 1.0, 0.0, 0, 0.1), (3, 2.5, 0.2, 5, 1.0), (6, 0.4, 0.05, 9, 0.0), (2, 1.5, 0.3, 2, 0.5),
]


@pytest.fixture(scope="module")
def js():
    """A function running one of bound_drag.js's exports in Chromium on JSON arguments."""
    if CHROMIUM is None:
        pytest.skip("No Chromium browser installed (apt-get install -y chromium): the view's JavaScript runs there.")
    from playwright.sync_api import sync_playwright

    # Served over HTTP, as Streamlit serves it: the module imports its neighbour page_style.js.
    handler = functools.partial(QuietHandler, directory=str(WEB))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/bound_drag.js"
    try:
        with sync_playwright() as p:
            browser = launch_browser(p)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_port}/")
            page.evaluate(f"async () => {{ window.bound = await import({json.dumps(url)}); }}")

            def call(name: str, *args):
                return page.evaluate(f"(args) => window.bound.{name}(...args)", list(args))

            yield call
            browser.close()
    finally:
        server.shutdown()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request log in the test output
        pass


def triplets(labels: np.ndarray, rng) -> list[tuple[int, int, int]]:
    out = []
    while len(out) < 6:
        a = int(rng.integers(len(labels)))
        same = np.flatnonzero((labels == labels[a]) & (np.arange(len(labels)) != a))
        other = np.flatnonzero(labels != labels[a])
        if len(same) and len(other):
            out.append((a, int(rng.choice(same)), int(rng.choice(other))))
    return out


@pytest.mark.parametrize("case", CASES)
def test_the_browser_computes_what_fatviz_computes(js, case) -> None:
    classes, spread, outliers, seed, margin = case
    points, labels = teaching_blobs(classes, spread, outliers, seed)
    rng = np.random.default_rng(seed)
    for option in CENTROIDS.names():
        spec = CENTROIDS.get(option)
        flags = (spec.normalise_members, spec.normalise_centre)
        space = js("optionSpace", points.tolist(), labels.tolist(), *flags)
        anchors, centres, radii = option_space(points, labels, option)
        np.testing.assert_allclose(space["anchors"], anchors, atol=1e-12)
        np.testing.assert_allclose(space["centres"], centres, atol=1e-12)
        np.testing.assert_allclose(space["radii"], radii, atol=1e-12)
        for a, p, n in triplets(labels, rng):
            t = bound_terms(points, labels, a, p, n, option, margin)
            got = js("boundTerms", points.tolist(), labels.tolist(), a, p, n, *flags, margin)
            for name in ("d_ap", "d_an", "d_a_ca", "d_a_cn", "radius_a", "radius_n", "loss", "point_to_set",
                         "bound"):
                assert got[name] == pytest.approx(getattr(t, name), abs=1e-12), (option, name)
            assert got["loss"] <= got["bound"] + 1e-12
        assert js("hardestTriplet", points.tolist(), labels.tolist(), *flags, None) == \
            list(hardest_triplet(points, labels, option))
        assert js("hardestTriplet", points.tolist(), labels.tolist(), *flags, 3) == \
            list(hardest_triplet(points, labels, option, 3))


def test_the_view_holds_both_radius_circles_on_the_unit_circle(js) -> None:
    """Normalised options: the drawing widens (up to its cap) until both dashed radius circles of the
    starting triplet are whole; unnormalised ones frame the points."""
    points, labels = teaching_blobs(4, 1.0, 0.0, 0)
    for option in CENTROIDS.names():
        spec = CENTROIDS.get(option)
        flags = (spec.normalise_members, spec.normalise_centre)
        a, p, n = hardest_triplet(points, labels, option)
        view = js("viewFor", points.tolist(), labels.tolist(), a, p, n, *flags, 0.1)
        half = view["span"] / 2
        if not (spec.normalise_members or spec.normalise_centre):
            assert view["x0"] <= points[:, 0].min() and view["x0"] + view["span"] >= points[:, 0].max()
            continue
        assert 1.45 <= half <= 2.2
        t = bound_terms(points, labels, a, p, n, option, 0.1)
        _, centres, _ = option_space(points, labels, option)
        for c, r in ((labels[a], t.radius_a), (labels[n], t.radius_n)):
            reach = float(np.abs(centres[c]).max() + r)
            assert reach <= half or half == pytest.approx(2.2), (option, reach, half)


def test_labels_of_points_on_one_spot_keep_apart(js) -> None:
    """a, p and n (and a centre) drawn at one spot get labels at least a label's size apart."""
    placed: list = []
    spots = []
    for _ in range(4):
        spot = js("placeLabel", placed, 400.0, 150.0, 24.0)
        placed.append(spot)
        spots.append(np.array(spot))
    for i in range(4):
        for j in range(i):
            assert np.linalg.norm(spots[i] - spots[j]) >= 24.0, (i, j, spots)


def test_a_point_dragged_far_away_moves_the_centre_and_radius_in_both() -> None:
    # No browser needed: what the page does with the state the view reports.
    points, labels = teaching_blobs(3, 1.0, 0.0, 1)
    a, p, n = hardest_triplet(points, labels, "mean")
    before = bound_terms(points, labels, a, p, n, "mean")
    moved = points.copy()
    moved[p] = moved[p] + 40.0  # the positive dragged far out: its class radius and d(a,p) grow
    got = moved_triplet({"points": moved.tolist(), "a": a, "p": p, "n": n}, labels)
    assert got is not None and np.array_equal(got[0], moved) and got[1:] == (a, p, n)
    after = bound_terms(*got[:1], labels, *got[1:], "mean")
    assert after.radius_a > before.radius_a + 20 and after.d_ap > before.d_ap + 20
    assert after.loss <= after.bound


@pytest.mark.parametrize("state", [
    None, "points", {"points": [[0, 0]], "a": 0, "p": 1, "n": 2},  # another data set's points
    {"a": 0, "p": 1, "n": 2},  # no points
    "nan",  # a point that is not a number
    "same-class negative",
])
def test_a_state_that_is_no_triplet_of_these_points_is_ignored(state) -> None:
    points, labels = teaching_blobs(3, 1.0, 0.0, 1)
    a, p, n = hardest_triplet(points, labels, "mean")
    if state == "nan":
        bad = points.copy()
        bad[4, 0] = np.nan
        state = {"points": bad.tolist(), "a": a, "p": p, "n": n}
    elif state == "same-class negative":
        state = {"points": points.tolist(), "a": a, "p": p, "n": p}
    assert moved_triplet(state, labels) is None
