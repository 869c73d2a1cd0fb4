"""A real browser walks the Lesson at 1280x720, a projector's size: with the Next button, with the
arrow keys, and by deep link (`/lesson?step=K`), and opens two bad links.

Every step must render without an exception, say "Step K of N", and fit the screen: the page
does not scroll and the step's instrument lies inside the viewport. Screenshots of every step go
to artifacts/screenshots/lesson-K.png (and lesson-K-present.png, with ?present=1). Uses
tests/test_browser.py's server (two training workers) and helpers. Skipped only without Chromium.
"""

from __future__ import annotations

import time

from test_browser import SHOTS, no_exception, server  # noqa: F401 - `server` is the fixture this module uses

from fatviz.lesson import STEPS
from scripts.bench_browser import ANIMATION, SLOW, launch_browser, settle

PROJECTOR = {"width": 1280, "height": 720}
COUNT = len(STEPS)
INSTRUMENT = ".st-key-lesson_instrument"
# What shows that a step's instrument is ready, and the button a step needs pressed first.
READY = {"demo": ANIMATION, "bound": ".fvz-bound svg", "whole_set": ".js-plotly-plot",
         "options": ANIMATION, "noisy": "[data-testid='stImage']", "speed": ".js-plotly-plot",
         "centres": ".js-plotly-plot"}
PRESS = {"speed": "Time the losses", "centres": "Train one run per choice"}
# The page's own measure of fitting: how far the document and Streamlit's main area scroll, and
# where the instrument's box ends.
FIT = f"""() => {{
    const main = document.querySelector('[data-testid="stMain"]');
    const box = document.querySelector('{INSTRUMENT}').getBoundingClientRect();
    return {{document: document.scrollingElement.scrollHeight, main: main ? main.scrollHeight : 0,
             main_view: main ? main.clientHeight : 0, top: box.top, bottom: box.bottom, height: box.height}};
}}"""


def shows_step(page, k: int) -> None:
    page.get_by_text(f"Step {k} of {COUNT}").first.wait_for(timeout=SLOW * 1000)


def ready(page, k: int, press: bool = True) -> None:
    """Wait until step k's instrument is drawn (pressing its button first where it has one)."""
    step = STEPS[k - 1]
    if press and step.key in PRESS:
        page.get_by_role("button", name=PRESS[step.key]).click()
    page.locator(f"{INSTRUMENT} {READY[step.key]}").first.wait_for(timeout=2 * SLOW * 1000)
    settle(page)


def fits(page, where: str) -> None:
    """No vertical scroll on a 1280x720 screen, and the instrument inside the viewport."""
    m = page.evaluate(FIT)
    height = PROJECTOR["height"]
    assert m["document"] <= height + 1, f"{where}: the page scrolls ({m})"
    assert m["main"] <= m["main_view"] + 1, f"{where}: the main area scrolls ({m})"
    assert m["height"] > 50 and m["top"] >= 0 and m["bottom"] <= height + 1, f"{where}: instrument off screen ({m})"


def shoot(page, name: str) -> None:
    """What the projector shows, with no tooltip or hover mark left in the picture."""
    page.mouse.move(PROJECTOR["width"] - 5, PROJECTOR["height"] - 5)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def check(page, k: int, where: str, shot: str | None = None) -> None:
    """Step k is shown with its instrument drawn, without an exception, and fits the screen (the
    screenshot `shot` taken before the measuring, so a step that does not fit is seen)."""
    shows_step(page, k)
    ready(page, k)
    if shot:
        shoot(page, shot)
    no_exception(page, where)
    fits(page, where)


def test_the_lesson_by_button_by_arrow_key_and_by_link(server) -> None:  # noqa: F811 - the imported fixture
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch_browser(p)
        try:
            page = browser.new_page(viewport=PROJECTOR)
            page.goto(f"{server}/lesson")
            for k in range(1, COUNT + 1):  # Next, step by step: every instrument drawn and on screen
                check(page, k, f"step {k} by Next", f"lesson-{k}")
                assert page.get_by_text("Presenter notes").count() == 1
                nxt = page.get_by_role("button", name="Next ▶")
                if k == COUNT:
                    assert nxt.is_disabled()
                else:
                    nxt.click()
            assert page.url.endswith(f"step={COUNT}")

            page.goto(f"{server}/lesson?step=1")  # the arrow keys, both ways
            shows_step(page, 1)
            settle(page)
            for k in range(2, COUNT + 1):
                page.keyboard.press("ArrowRight")
                check(page, k, f"step {k} by the right arrow")
            page.keyboard.press("ArrowRight")  # past the end: stays
            time.sleep(1.0)
            check(page, COUNT, "right arrow past the end")
            for k in range(COUNT - 1, 0, -1):
                page.keyboard.press("ArrowLeft")
                check(page, k, f"step {k} by the left arrow")
            assert page.url.endswith("step=1")

            for k in range(1, COUNT + 1):  # deep links, as a projector (notes hidden) and as the teacher sees it
                page.goto(f"{server}/lesson?step={k}&present=1")
                check(page, k, f"/lesson?step={k}&present=1", f"lesson-{k}-present")
                assert page.get_by_text("Presenter notes").count() == 0
                assert not page.locator('[data-testid="stSidebar"]').is_visible()
                page.goto(f"{server}/lesson?step={k}")
                check(page, k, f"/lesson?step={k}")

            for bad, shown, words in (("99", COUNT, "There is no step 99"), ("x", 1, "not a step number"),
                                      ("0", 1, "There is no step 0")):
                page.goto(f"{server}/lesson?step={bad}")
                shows_step(page, shown)
                settle(page)
                no_exception(page, f"?step={bad}")
                assert page.get_by_text(words).count() == 1, f"?step={bad}: no message"
                shoot(page, f"lesson-bad-{bad}")
        finally:
            browser.close()
