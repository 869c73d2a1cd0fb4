"""A real browser drives the app: Run the demo, then every page, with no exception shown.

Starts `streamlit run app.py` (two training workers, a temporary runs folder), drives
headless Chromium with Playwright, saves screenshots to artifacts/screenshots (and
/tmp/fatviz-shots), and prints and saves the timings: first frame after Run the demo,
the full four-panel animation, and the same demo again from the job manager's memory, and
checks that the live chart stays one DOM node from the first epoch to the last while showing
at least 25 of the 31 epochs.
Timings are reported, never asserted. Skipped only when no Chromium is installed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from scripts.bench_browser import (
    ANIMATION,
    CHROMIUM,
    SLOW,
    VIEW,
    launch_browser,
    open_home_when_ready,
    settle,
    streamlit_server,
    time_cached,
    time_demo,
)

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "artifacts" / "screenshots"
COPY = Path(tempfile.gettempdir()) / "fatviz-shots"
PAGES = (("home", ""), ("centroid_explorer", "centroid_explorer"), ("noisy_labels", "noisy_labels"),
         ("the_bound", "the_bound"), ("speed", "speed"), ("classroom", "classroom"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app in its own process group (workers included), killed in the end whatever happens."""
    if CHROMIUM is None:
        pytest.skip("No Chromium browser installed (looked for `chromium` on PATH and /usr/bin/chromium): "
                    "the real-browser test needs one.")
    tmp = tmp_path_factory.mktemp("browser")
    log = tmp / "streamlit.log"
    try:
        with streamlit_server(tmp / "runs", log) as (url, _):
            yield url
    finally:
        if log.exists():
            print(f"\nstreamlit log tail:\n{log.read_text()[-1500:]}")


def shoot(page, name: str) -> list[Path]:
    """What the projector shows (the viewport), and the whole page (a tall viewport)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    paths = [SHOTS / f"{name}.png", SHOTS / f"{name}-full.png"]
    page.mouse.move(VIEW["width"] - 5, VIEW["height"] - 5)  # no tooltip or hover mark left in the picture
    page.screenshot(path=str(paths[0]))
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]')?.scrollHeight || 1000")
    page.set_viewport_size({"width": VIEW["width"], "height": int(min(max(height, 1000), 6000))})
    time.sleep(1.0)  # plotly resizes to the new viewport
    page.screenshot(path=str(paths[1]))
    page.set_viewport_size(VIEW)
    return paths


def no_exception(page, where: str) -> None:
    shown = page.locator('[data-testid="stException"]')
    assert shown.count() == 0, f"{where}: {shown.first.inner_text()[:2000]}"


def test_run_the_demo_and_visit_every_page(server) -> None:
    from playwright.sync_api import sync_playwright

    timings: dict[str, float | str | None] = {}
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch_browser(p)
        try:
            # A class: the teacher opens the app, talks, then clicks. Time the click once the
            # worker processes have warmed up (the page says so), and say how long that took.
            # The workers line turns to "ready" by itself: the helper waits without reloading.
            page, ready = open_home_when_ready(browser, server, timings)
            timings["workers_ready_s"] = round(ready, 2)
            assert timings["first_paint_s"] < ready
            settle(page)
            no_exception(page, "home")
            shoot(page, "01-home")

            live = SHOTS / "02-home-live.png"  # the live view (one viewport shot: it runs inside the timing)
            timings.update(time_demo(page, on_first_frame=lambda pg: pg.screenshot(path=str(live))))
            settle(page)
            no_exception(page, "home after the demo")
            caption = page.get_by_text("Four runs, same data and seed")
            timings["server_caption"] = caption.first.inner_text() if caption.count() else None
            shoot(page, "03-home-animation")

            # The live chart: one DOM node from the first epoch to the finished animation, and it
            # showed (nearly) every epoch as it was trained, not a picture every few seconds.
            assert timings["same_node"], "the live chart was remounted during the demo"
            assert timings["epochs_shown"] >= 25, f"the live chart showed only {timings['epochs_shown']} epochs"
            assert timings["frames"] == 31
            # The chart's own stylesheet is in the page (its controls, sized for a projector).
            assert page.locator(".fvz-bar").first.evaluate("el => getComputedStyle(el).display") == "flex"

            # Play: the animation starts over from epoch 0 and moves; Pause stops it.
            host = page.locator("[data-live='0']").first
            last = host.get_attribute("data-epoch")
            page.locator(".fvz-play").first.click()
            time.sleep(2.0)
            assert host.get_attribute("data-epoch") != last, "Play did not move the animation"
            shoot(page, "04-home-playing")
            button = page.locator(".fvz-play").first
            button.click()
            time.sleep(1.0)
            if "Pause" in button.inner_text():
                # A late rerun of the page re-rendered the chart, which stops playback, so this click
                # started it again (seen once on a slow machine): press Pause once more.
                button.click()
                time.sleep(1.0)
            assert "Play" in button.inner_text(), "the button does not offer Play after Pause"
            paused = host.get_attribute("data-epoch")
            time.sleep(1.5)
            assert host.get_attribute("data-epoch") == paused, "Pause did not stop the animation"
            # Scrubbing the chart's own slider shows that epoch.
            page.locator(".fvz-slider").first.evaluate(
                "el => { el.value = '3'; el.dispatchEvent(new Event('input', {bubbles: true})); }")
            time.sleep(0.5)
            assert host.get_attribute("data-epoch") == "3"

            # The same demo in a new session: answered from the job manager's memory.
            timings["cached_animation_s"] = time_cached(browser, server)

            for i, (name, path) in enumerate(PAGES[1:], start=5):
                page.goto(f"{server}/{path}")
                page.locator("h1").first.wait_for(timeout=SLOW * 1000)
                settle(page)
                if name in ("centroid_explorer", "classroom"):
                    page.locator(ANIMATION).first.wait_for(timeout=SLOW * 1000)
                    settle(page)
                no_exception(page, name)
                shoot(page, f"{i:02d}-{name}")

            # Presentation mode, as a teacher's link opens it.
            page.goto(f"{server}/classroom?present=1")
            page.locator(ANIMATION).first.wait_for(timeout=SLOW * 1000)
            settle(page)
            no_exception(page, "classroom presentation")
            assert not page.locator('[data-testid="stSidebar"]').is_visible()
            shoot(page, "11-classroom-presentation")
        finally:
            browser.close()

    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "timings.json").write_text(json.dumps(timings, indent=2))
    COPY.mkdir(parents=True, exist_ok=True)
    for shot in SHOTS.iterdir():
        shutil.copy2(shot, COPY / shot.name)
    print("\nbrowser timings (2 workers):", json.dumps(timings))
    assert timings["first_frame_s"] is not None and timings["full_animation_s"] is not None


def test_step_a_batch_in_the_explorer_at_projector_size(server) -> None:
    """Three batches stepped after a short run, at 1280 x 720: the counter moves, the arrows are drawn."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_browser(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(f"{server}/centroid_explorer?epochs=3&seed=7")
            page.locator(ANIMATION).first.wait_for(timeout=SLOW * 1000)
            settle(page)
            for _ in range(3):
                page.get_by_role("button", name="Step a batch").click()
                settle(page, quiet=1.0)
            no_exception(page, "explorer after stepping")
            counter = page.get_by_text("Stepped: ").first.inner_text()
            assert counter.startswith("Stepped: epoch 3 + 3 of "), counter
            chart = page.locator(".js-plotly-plot", has_text="After one more batch").first
            assert chart.locator(".annotation-arrow-g").count() == 4 * 10  # every digit's centre, every panel
            chart.scroll_into_view_if_needed()
            shoot(page, "12-explorer-step-a-batch")
        finally:
            browser.close()
