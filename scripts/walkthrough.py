"""A ten-minute classroom lesson, played in a real browser, with a screenshot at every step.

Starts a fresh `streamlit run app.py` (two training workers, a temporary runs folder), drives
headless Chromium through Playwright at a projector's 1280x720, and plays the lesson a teacher
would give:

1. home      Home: wait until the workers are ready, Run the demo, the live chart while it
             trains and the finished animation.
2. explorer  Centroid explorer: the four options trained, points coloured by "flipped by label
             noise", a click on a point and the point inspector under the chart.
3. bound     The bound: the page, a real mouse drag of the negative in the draggable 2-D view
             (the numbers must change), then "Hardest triplet".
4. speed     Speed: the benchmark with the page's defaults.
5. noisy     Noisy labels: the teacher and student (with the page's suggested 40% pairflip
             noise), the scores and the flagged gallery.
6. present   Presentation mode (?present=1): Home and the Centroid explorer.
7. extras    FAT vs triplet and Rank lists trained once, so the sweep finds content there.
8. sweep     Every page of app.py's PAGES at 1280x720, 1024x768 and 1280x720 with ?present=1:
             one screenshot at the top, and one a screen further down where the page is longer.

Not in the lesson, asked for with `--only real`: a folder of 6,000 + 1,000 synthetic 28x28
images in torchvision's MNIST layout, the four options compared on it for 10 epochs in the
explorer (progress line with the time left, which test images the metrics used) and a point
inspected (its image at least 5x its size, pixel for pixel); then 2,000 of the images with 40%
symmetric noise on Noisy labels, and its flagged gallery (images at least 80 px, pixel for pixel).

Every page visited is checked: no Streamlit exception or error box, nothing wider than the
main area (no horizontal scrolling), and the step's own expectations (the chart trained, the
drag moved the numbers...). The smallest text on screen is measured for each screenshot and
written to report.json beside the screenshots. Prints one line per screenshot, a summary
table, then one JSON line; exits 1 if any check failed.

    python scripts/walkthrough.py                  # the whole lesson, into walkthrough/
    python scripts/walkthrough.py --only bound     # one step (or several: --only home,sweep)
    python scripts/walkthrough.py --out /tmp/shots

Needs Debian's chromium at /usr/bin/chromium (`apt-get install -y chromium`); never run
`playwright install`. Takes about ten minutes on a two-core laptop.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_browser import (  # noqa: E402  (the import needs the path above)
    ANIMATION,
    CHROMIUM,
    LIVE,
    READY,
    ROOT,
    TITLE,
    chart_state,
    launch_browser,
    settle,
    streamlit_server,
)

sys.path.insert(0, str(ROOT))
from app import PAGES  # noqa: E402

PROJECTOR = {"width": 1280, "height": 720}
SMALL_SCREEN = {"width": 1024, "height": 768}
STEPS = ("home", "explorer", "bound", "speed", "noisy", "present", "extras", "sweep")
EXTRA_STEPS = ("real",)  # not in the ten-minute lesson: asked for with --only
REAL_TRAIN, REAL_TEST = 6000, 1000  # the "real" step's MNIST-layout folder of 28x28 images
SHOT_NAME = re.compile(r"^\d{2,3}-.+\.png$")  # what this script writes (and clears) in --out
SMALL_PX = 12.0  # text below this many CSS pixels is listed as small in the report
MINUTE = 60_000  # ms

# Page path (as st.navigation derives it from the file name) -> title, in app.py's order.
PAGE_PATHS = {("" if i == 0 else Path(path).stem): title for i, (path, title, _) in enumerate(PAGES)}
PAGE_SLUGS = {("" if i == 0 else Path(path).stem): Path(path).stem for i, (path, _, _) in enumerate(PAGES)}


# -- what the browser is asked ------------------------------------------------------------------

# The element that scrolls the page content (Streamlit scrolls an inner container, not the window).
SCROLLER_JS = """() => {
    const cands = [document.querySelector('[data-testid="stMain"]'),
                   document.querySelector('[data-testid="stAppViewContainer"]'),
                   document.scrollingElement];
    for (const el of cands) {
        if (!el) continue;
        const oy = getComputedStyle(el).overflowY;
        if (el === document.scrollingElement || oy === 'auto' || oy === 'scroll') {
            if (el.scrollHeight > el.clientHeight + 1 || el === document.scrollingElement) return el;
        }
    }
    return document.scrollingElement;
}"""

SCROLL_STATE_JS = f"""() => {{
    const el = ({SCROLLER_JS})();
    return {{top: el.scrollTop, height: el.scrollHeight, client: el.clientHeight}};
}}"""

SCROLL_TO_JS = f"""(y) => {{ const el = ({SCROLLER_JS})(); el.scrollTop = y; return el.scrollTop; }}"""

# Horizontal overflow: the main area (and the document) wider than the window, with the
# outermost elements that stick out; inner boxes that scroll sideways on their own.
OVERFLOW_JS = """() => {
    const name = (el) => {
        const id = el.closest('[data-testid]');
        const cls = (el.getAttribute('class') || '').toString().split(/\\s+/).slice(0, 2).join('.');
        return `${id ? id.dataset.testid + ' > ' : ''}${el.tagName.toLowerCase()}${cls ? '.' + cls : ''}`;
    };
    const main = document.querySelector('[data-testid="stMain"]');
    const doc = document.scrollingElement;
    const out = {main: main ? [main.scrollWidth, main.clientWidth] : null,
                 doc: [doc.scrollWidth, doc.clientWidth], sticking_out: [], inner_scroll: []};
    if (!main) return out;
    const limit = Math.min(main.getBoundingClientRect().right, innerWidth) + 1;
    for (const el of main.querySelectorAll('*')) {
        const r = el.getBoundingClientRect();
        if (!r.width || !r.height) continue;
        const st = getComputedStyle(el);
        if ((st.overflowX === 'auto' || st.overflowX === 'scroll') && el.clientWidth > 40
                && el.scrollWidth > el.clientWidth + 2 && r.top < innerHeight && r.bottom > 0)
            out.inner_scroll.push(`${name(el)} (${el.scrollWidth} > ${el.clientWidth} px)`);
        if (r.right > limit && !el.closest('.katex-mathml') && st.visibility !== 'hidden' && Number(st.opacity) > 0) {
            const p = el.parentElement;
            if (p && p.getBoundingClientRect().right > limit) continue;
            let cut = false;  // a box that clips its content hides what sticks out of it
            for (let a = p; a && a !== main; a = a.parentElement) {
                if (getComputedStyle(a).overflowX !== 'visible' && a.getBoundingClientRect().right <= limit) {
                    cut = true;
                    break;
                }
            }
            if (!cut) out.sticking_out.push(`${name(el)} (right edge ${Math.round(r.right)} px)`);
        }
    }
    out.sticking_out = out.sticking_out.slice(0, 6);
    out.inner_scroll = [...new Set(out.inner_scroll)].slice(0, 6);
    return out;
}"""

# The text on screen and its size in CSS pixels (SVG text scaled by its drawing), smallest first.
TEXT_SIZES_JS = """() => {
    const seen = [];
    const visit = (root) => {
        const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
        for (let node = walk.nextNode(); node; node = walk.nextNode()) {
            const text = node.nodeValue.trim();
            const el = node.parentElement;
            if (!text || !el || el.closest('style, script, noscript')) continue;
            const range = document.createRange();
            range.selectNodeContents(node);
            const r = range.getBoundingClientRect();
            if (!r.width || !r.height || r.bottom < 0 || r.top > innerHeight || r.right < 0 || r.left > innerWidth)
                continue;
            const st = getComputedStyle(el);
            if (st.visibility === 'hidden' || Number(st.opacity) === 0) continue;
            let px = parseFloat(st.fontSize);
            if (el instanceof SVGElement && el.getScreenCTM) {
                const m = el.getScreenCTM();
                if (m) px *= Math.hypot(m.a, m.b);
            }
            const where = el.closest('[data-testid]');
            seen.push({px: Math.round(px * 10) / 10, text: text.slice(0, 40),
                       where: where ? where.dataset.testid : el.tagName.toLowerCase()});
        }
        for (const el of root.querySelectorAll('*')) if (el.shadowRoot) visit(el.shadowRoot);
    };
    visit(document.body);
    seen.sort((a, b) => a.px - b.px);
    return seen;
}"""

# A point of the explorer's first panel near its middle, on screen: its centre in the window.
PICK_POINT_JS = """() => {
    const plot = document.querySelector('.fvz-live .js-plotly-plot');
    if (!plot) return null;
    const group = [...plot.querySelectorAll('.scatterlayer .trace')]
        .find((g) => g.__data__ && g.__data__[0] && g.__data__[0].trace && g.__data__[0].trace.index === 0);
    if (!group) return null;
    const boxes = [...group.querySelectorAll('path.point')].map((p) => p.getBoundingClientRect())
        .filter((r) => r.width > 0 && r.top > 60 && r.bottom < innerHeight - 10);
    if (!boxes.length) return null;
    const xs = boxes.map((r) => r.left + r.width / 2), ys = boxes.map((r) => r.top + r.height / 2);
    const cx = xs.reduce((a, b) => a + b) / xs.length, cy = ys.reduce((a, b) => a + b) / ys.length;
    let best = 0;
    xs.forEach((x, i) => { if (Math.hypot(x - cx, ys[i] - cy) < Math.hypot(xs[best] - cx, ys[best] - cy)) best = i; });
    return {x: xs[best], y: ys[best], points: boxes.length};
}"""


# -- the walkthrough's record ---------------------------------------------------------------------

@dataclass
class Step:
    name: str
    seconds: float = 0.0
    shots: list[str] = field(default_factory=list)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    def check(self, what: str, ok: bool, detail: str = "") -> bool:
        self.checks.append((what, bool(ok), detail))
        if not ok:
            print(f"    FAILED {what}: {detail}", flush=True)
        return bool(ok)


@dataclass
class Walk:
    browser: object
    url: str
    out: Path
    shots: int = 0
    steps: list[Step] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)  # page path -> the address the lesson left it at
    data_root: Path | None = None  # the "real" step's image folder
    report: list[dict] = field(default_factory=list)  # per screenshot: small text, overflow

    def new_page(self, view: dict | None = None):
        return self.browser.new_page(viewport=view or PROJECTOR)

    def shoot(self, page, step: Step, what: str, full_page: bool = False) -> Path:
        """A screenshot named NN-step-what.png, with the text sizes and overflow on screen noted."""
        self.shots += 1
        path = self.out / f"{self.shots:02d}-{step.name}-{what}.png"
        view = page.viewport_size or PROJECTOR
        page.mouse.move(view["width"] - 3, view["height"] - 3)  # no hover label left in the picture
        time.sleep(0.4)
        page.screenshot(path=str(path), full_page=full_page)
        sizes = page.evaluate(TEXT_SIZES_JS)
        small = [s for s in sizes if s["px"] < SMALL_PX]
        overflow = page.evaluate(OVERFLOW_JS)
        self.report.append({"file": path.name, "url": page.url, "viewport": view,
                            "smallest_px": sizes[0]["px"] if sizes else None, "small_text": small[:25],
                            "small_count": len(small), "overflow": overflow})
        step.shots.append(path.name)
        note = f"smallest text {sizes[0]['px']:g} px" if sizes else "no text"
        if small:
            note += f", {len(small)} under {SMALL_PX:g} px (e.g. {small[0]['text']!r} in {small[0]['where']})"
        print(f"  {step.name:<9} {time.perf_counter() - T0:7.1f} s  {path}  [{note}]", flush=True)
        return path


T0 = time.perf_counter()


# -- small browser helpers -----------------------------------------------------------------------

def scroll_state(page) -> dict:
    return page.evaluate(SCROLL_STATE_JS)


def scroll_top(page) -> None:
    page.evaluate(SCROLL_TO_JS, 0)
    time.sleep(0.4)


def wheel(page, dy: int) -> None:
    """Scroll the content by dy pixels with the mouse wheel over the main area (as a person does)."""
    view = page.viewport_size or PROJECTOR
    box = page.locator('[data-testid="stMain"]').bounding_box()
    x = (box["x"] + box["width"] / 2) if box else view["width"] * 0.6
    page.mouse.move(x, view["height"] / 2)
    page.mouse.wheel(0, dy)
    time.sleep(0.8)


def bring_to_top(page, locator, margin: int = 70) -> None:
    """Scroll so that the element's top sits just under Streamlit's header bar."""
    locator.scroll_into_view_if_needed(timeout=10_000)
    locator.evaluate("(el) => el.scrollIntoView({block: 'start'})")
    top = scroll_state(page)["top"]
    page.evaluate(SCROLL_TO_JS, max(0, top - margin))
    time.sleep(0.6)


def page_health(page, step: Step, where: str) -> None:
    """No exception box, no error box, nothing wider than the window."""
    exc = page.locator('[data-testid="stException"]')
    step.check(f"{where}: no exception shown", exc.count() == 0,
               exc.first.inner_text()[:300].replace("\n", " ") if exc.count() else "")
    errors = page.evaluate("""() => [...document.querySelectorAll('[data-testid="stAlertContentError"]')]
        .filter((el) => !el.closest('[data-testid="stException"]')).map((el) => el.innerText)""")
    step.check(f"{where}: no error box", not errors, errors[0][:300].replace("\n", " ") if errors else "")
    o = page.evaluate(OVERFLOW_JS)
    wide = (o["main"] is not None and o["main"][0] > o["main"][1] + 1) or o["doc"][0] > o["doc"][1] + 1
    step.check(f"{where}: no horizontal overflow", not wide,
               f"main {o['main']}, document {o['doc']}; sticking out: {'; '.join(o['sticking_out']) or '-'}")


def open_path(walk: Walk, page, path: str, query: str = "") -> None:
    """Open an app page by its address (a new Streamlit session) and wait for its title."""
    page.goto(f"{walk.url}/{path}{query}")
    page.locator("h1").first.wait_for(timeout=3 * MINUTE)


def via_sidebar(walk: Walk, page, path: str) -> None:
    """Go to a page with the sidebar's link (the session and its settings stay), or by address
    when this tab is not on the app yet."""
    title = PAGE_PATHS[path]
    if not page.url.startswith(walk.url):
        open_path(walk, page, path)
    else:
        link = page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=True)
        link.click()
        page.wait_for_function("(p) => location.pathname.replace(/^\\//, '') === p", arg=path, timeout=MINUTE)
    heading = TITLE if path == "" else title
    page.get_by_role("heading", name=heading).first.wait_for(timeout=3 * MINUTE)


def visible(locator, timeout: float) -> bool:
    try:
        locator.first.wait_for(timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - Playwright's timeout: the check says what did not appear
        return False


def texts(page, selector: str) -> list[str]:
    return [t.strip() for t in page.locator(selector).all_inner_texts()]


# -- the lesson ---------------------------------------------------------------------------------

def step_home(walk: Walk, page, step: Step) -> None:
    opened = time.perf_counter()
    open_path(walk, page, "")
    page.get_by_role("button", name="Run the demo").wait_for(timeout=3 * MINUTE)
    step.check("Home says the training workers are ready", visible(page.get_by_text(READY), 3 * MINUTE),
               f"no {READY!r} within 3 min")
    step.check("workers ready within 60 s", time.perf_counter() - opened < 60,
               f"{time.perf_counter() - opened:.1f} s")
    settle(page, timeout=30)
    page_health(page, step, "Home")
    walk.shoot(page, step, "before")
    clicked = time.perf_counter()
    page.get_by_role("button", name="Run the demo").click()
    page.locator(LIVE).first.wait_for(timeout=3 * MINUTE)
    first = time.perf_counter() - clicked
    live = page.locator(".fvz-live").first.evaluate("(el) => el.parentElement.dataset.live")
    bring_to_top(page, page.locator(".fvz-live").first, margin=110)
    walk.shoot(page, step, "training")
    step.check("the live chart showed the first epoch while training", live == "1",
               f"data-live={live!r} at the first frame ({first:.1f} s after the click)")
    page.locator(ANIMATION).first.wait_for(timeout=6 * MINUTE)
    done = time.perf_counter() - clicked
    settle(page, timeout=30)
    state = chart_state(page) or {}
    step.check("the live chart stayed one DOM node", state.get("same_node") is True, json.dumps(state))
    step.check("the demo's caption is shown", visible(page.get_by_text("Four runs, same data and seed"), 20_000))
    print(f"    first epoch {first:.1f} s after the click, finished animation after {done:.1f} s, "
          f"{state.get('shown')} epochs shown", flush=True)
    page_health(page, step, "Home after the demo")
    walk.shoot(page, step, "finished")
    scroll_top(page)
    walk.shoot(page, step, "finished-top")


def step_explorer(walk: Walk, page, step: Step) -> None:
    via_sidebar(walk, page, "centroid_explorer")
    settle(page, quiet=1.5, timeout=20)
    train = page.get_by_role("button", name="Train the four options")
    if train.count():
        train.click()
    page.locator(ANIMATION).first.wait_for(timeout=6 * MINUTE)
    settle(page, timeout=30)
    page_health(page, step, "Centroid explorer")
    walk.shoot(page, step, "trained")

    from fatviz.figures.embedding import COLOUR_BY_LABELS  # the segmented control's labels

    flipped = COLOUR_BY_LABELS["flipped"]
    # A segmented control's options are radio buttons (role "radio") in a row that may scroll sideways.
    option = page.get_by_role("radiogroup", name="Colour points by").get_by_role("radio", name=flipped, exact=True)
    clipped = option.evaluate("""(el) => { const g = el.closest('[role=radiogroup]'), r = el.getBoundingClientRect();
        return g.dataset.canScrollEnd !== undefined || r.right > g.getBoundingClientRect().right + 1; }""")
    step.check(f"the {flipped!r} option is fully visible without scrolling the control", not clipped,
               "the segmented control is wider than its column: its last option is cut off")
    option.click()
    legend = page.locator(".fvz-live .legendtitletext", has_text=flipped)
    step.check(f"the chart's legend says {flipped!r}", visible(legend, 30_000),
               "the legend title did not change to the new colouring")
    settle(page, timeout=30)
    bring_to_top(page, page.locator(".fvz-live").first, margin=120)
    walk.shoot(page, step, "flipped")

    # A click on a point of the first panel: the inspector opens under the chart.
    bring_to_top(page, page.locator(".fvz-live").first, margin=90)
    spot = page.evaluate(PICK_POINT_JS)
    if not step.check("a point of the first panel is on screen to click", spot is not None, "none found"):
        return
    page.mouse.move(spot["x"] - 6, spot["y"] - 6)
    page.mouse.move(spot["x"], spot["y"], steps=4)
    time.sleep(0.5)
    page.mouse.click(spot["x"], spot["y"])
    heading = page.get_by_role("heading", name=re.compile(r"^Sample \d+ in the "))
    if step.check("a click on a point opens the point inspector", visible(heading, 30_000),
                  f"clicked at ({spot['x']:.0f}, {spot['y']:.0f}); no 'Sample n in the ...' heading"):
        settle(page, timeout=30)
        walk.shoot(page, step, "point-highlighted")
        bring_to_top(page, heading)
        walk.shoot(page, step, "inspector")
        wheel(page, 600)
        walk.shoot(page, step, "metrics")
    page_health(page, step, "Centroid explorer after the click")
    walk.urls["centroid_explorer"] = page.url


def step_bound(walk: Walk, page, step: Step) -> None:
    via_sidebar(walk, page, "the_bound")
    view = page.locator(".fvz-bound svg").first
    step.check("the draggable view is drawn", visible(view, MINUTE), "no .fvz-bound svg")
    settle(page, timeout=30)
    page_health(page, step, "The bound")
    walk.shoot(page, step, "top")

    bring_to_top(page, page.locator(".fvz-bound").first, margin=80)
    host = page.locator("[data-triplet]").first
    a, p, n = (int(v) for v in host.get_attribute("data-triplet").split(","))
    sides_before = page.locator(".fvz-bound .sides").first.inner_text()
    metrics_before = texts(page, '[data-testid="stMetricValue"]')
    walk.shoot(page, step, "view")
    point = page.locator(f'.fvz-bound circle.pt[data-index="{n}"]').first
    box = point.bounding_box()
    svg = view.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    # Towards the drawing's middle: the negative moves closer to the anchor's side of things.
    tx = x + (80 if x < svg["x"] + svg["width"] / 2 else -80)
    ty = y + (60 if y < svg["y"] + svg["height"] / 2 else -60)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(tx, ty, steps=15)
    time.sleep(0.2)
    sides_during = page.locator(".fvz-bound .sides").first.inner_text()
    page.mouse.up()
    step.check("dragging the negative changes the view's numbers", sides_during != sides_before,
               f"before {sides_before!r}, after {sides_during!r}")
    settle(page, timeout=30)
    moved_caption = page.get_by_text("You moved points")
    step.check("the page knows the points moved", visible(moved_caption, 20_000), "no 'You moved points' caption")
    metrics_after = texts(page, '[data-testid="stMetricValue"]')
    step.check("the page's loss / bound / gap metrics follow the drag", metrics_after != metrics_before,
               f"before {metrics_before}, after {metrics_after}")
    print(f"    dragged n=#{n} by ({tx - x:+.0f}, {ty - y:+.0f}) px: metrics {metrics_before} -> {metrics_after}",
          flush=True)
    walk.shoot(page, step, "dragged")
    scroll_top(page)
    walk.shoot(page, step, "dragged-top")

    bring_to_top(page, page.locator(".fvz-bound").first, margin=80)
    triplet_before = host.get_attribute("data-triplet")
    page.locator(".fvz-bound button.hardest").first.click()
    settle(page, timeout=30)
    triplet_after = page.locator("[data-triplet]").first.get_attribute("data-triplet")
    print(f"    Hardest triplet: {triplet_before} -> {triplet_after}", flush=True)
    page_health(page, step, "The bound after Hardest triplet")
    walk.shoot(page, step, "hardest")
    wheel(page, 700)
    walk.shoot(page, step, "all-triplets")
    page.locator(".fvz-bound button.reset").first.click()  # leave the blobs as they were
    settle(page, timeout=30)


def step_speed(walk: Walk, page, step: Step) -> None:
    via_sidebar(walk, page, "speed")
    settle(page, timeout=30)
    walk.shoot(page, step, "before")
    started = time.perf_counter()
    page.get_by_role("button", name="Run the benchmark").click()
    done = visible(page.get_by_text("Milliseconds per step"), 4 * MINUTE)
    took = time.perf_counter() - started
    step.check("the benchmark finishes within 60 s", done and took < 60, f"{took:.1f} s, finished: {done}")
    print(f"    benchmark: {took:.1f} s", flush=True)
    settle(page, timeout=30)
    page_health(page, step, "Speed")
    bring_to_top(page, page.locator('[data-testid="stPlotlyChart"]').first)
    walk.shoot(page, step, "chart")
    bring_to_top(page, page.get_by_text("Milliseconds per step").first)
    walk.shoot(page, step, "tables")


def step_noisy(walk: Walk, page, step: Step) -> None:
    via_sidebar(walk, page, "noisy_labels")
    settle(page, timeout=30)
    walk.shoot(page, step, "before")
    # The lesson never touched the sidebar: its settings (mirrored in the address) must still be the defaults.
    query = page.url.partition("?")[2]
    if not step.check("the sidebar keeps the default settings across pages without a sidebar", not query,
                      f"arrived with ?{query}"):
        open_path(walk, page, "noisy_labels")  # a new session: the defaults, as the lesson means them
        settle(page, timeout=30)
        walk.shoot(page, step, "before-fresh")
    suggest = page.get_by_role("button", name="Use 40% pairflip noise")
    if suggest.count():
        suggest.click()
        settle(page, timeout=30)
    started = time.perf_counter()
    page.get_by_role("button", name="Run the teacher and the student").click()
    if visible(page.get_by_text("Training…"), 30_000):
        walk.shoot(page, step, "running")
    scores = page.get_by_text("How well the teacher finds the flipped labels")
    done = visible(scores, 5 * MINUTE)
    took = time.perf_counter() - started
    step.check("the distillation finishes within 5 min", done, f"{took:.0f} s")
    print(f"    distillation: {took:.1f} s", flush=True)
    if not done:
        return
    settle(page, timeout=30)
    page_health(page, step, "Noisy labels")
    bring_to_top(page, scores)
    walk.shoot(page, step, "scores")
    tab = page.get_by_role("tab", name=re.compile(r"^Flagged samples"))
    bring_to_top(page, tab)
    images = page.locator('[data-testid="stImage"]')
    step.check("the flagged gallery shows images", visible(images, 20_000), "no image under Flagged samples")
    walk.shoot(page, step, "gallery")
    wheel(page, 650)
    walk.shoot(page, step, "gallery-more")
    walk.urls["noisy_labels"] = page.url


def step_present(walk: Walk, page, step: Step) -> None:
    tab = walk.new_page()
    try:
        open_path(walk, tab, "", "?present=1")
        settle(tab, timeout=30)
        width = tab.evaluate("() => document.querySelector('[data-testid=\"stSidebar\"]')?.getBoundingClientRect().width || 0")
        step.check("presentation mode hides the sidebar", width == 0, f"the sidebar is {width:.0f} px wide")
        walk.shoot(tab, step, "home")
        tab.get_by_role("button", name="Run the demo").click()
        tab.locator(ANIMATION).first.wait_for(timeout=6 * MINUTE)
        settle(tab, timeout=30)
        page_health(tab, step, "Home ?present=1")
        bring_to_top(tab, tab.locator(".fvz-live").first, margin=20)
        walk.shoot(tab, step, "home-animation")

        query = walk.urls.get("centroid_explorer", "").partition("?")[2]
        query = "&".join(q for q in query.split("&") if q and not q.startswith("present=")) if query else ""
        open_path(walk, tab, "centroid_explorer", "?" + "&".join(filter(None, [query, "present=1"])))
        tab.locator(ANIMATION).first.wait_for(timeout=6 * MINUTE)
        settle(tab, timeout=30)
        page_health(tab, step, "Centroid explorer ?present=1")
        walk.shoot(tab, step, "explorer")
        wheel(tab, 600)
        walk.shoot(tab, step, "explorer-down")
    finally:
        tab.close()


def train_and_wait(page, step: Step, button, result, where: str, what: str) -> bool:
    """Press `button`, wait up to 5 minutes for `result`, check the page; True if it came."""
    started = time.perf_counter()
    button.click()
    done = visible(result, 5 * MINUTE)
    step.check(f"{where}: {what} finishes within 5 min", done, f"{time.perf_counter() - started:.0f} s")
    print(f"    {where}: {time.perf_counter() - started:.1f} s", flush=True)
    settle(page, timeout=30)
    page_health(page, step, where)
    return done


def step_extras(walk: Walk, page, step: Step) -> None:
    """The two pages the lesson does not train on, trained once so the sweep shows their content."""
    via_sidebar(walk, page, "losses")
    settle(page, timeout=30)
    done = train_and_wait(page, step, page.get_by_role("button", name="Compare the losses"),
                          page.locator('[data-testid="stPlotlyChart"]'), "FAT vs triplet", "the comparison")
    if done:
        bring_to_top(page, page.locator('[data-testid="stPlotlyChart"]').first)
        walk.shoot(page, step, "losses")

    via_sidebar(walk, page, "rank_list")
    settle(page, timeout=30)
    page_health(page, step, "Rank lists from the sidebar")
    if page.locator('[data-testid="stException"]').count():
        walk.shoot(page, step, "rank-lists-exception")
        open_path(walk, page, "rank_list")  # a new session, to go on with the lesson
        settle(page, timeout=30)
    use = page.get_by_role("button", name=re.compile(r"^Use reid-synth"))
    if use.count():
        use.click()
        settle(page, timeout=30)
    done = train_and_wait(page, step, page.get_by_role("button", name="Train", exact=True),
                          page.get_by_text("Worst queries first"), "Rank lists", "reid-synth")
    if done:
        walk.urls["rank_list"] = page.url
        bring_to_top(page, page.get_by_text("Worst queries first").first)
        walk.shoot(page, step, "rank-lists")


# What each page needs pressed (in a new session) and what shows that its content is there.
SWEEP_PRESS = {"": "Run the demo", "speed": "Run the benchmark", "losses": "Compare the losses"}
SWEEP_CONTENT = {
    "": ANIMATION, "centroid_explorer": ANIMATION, "classroom": ANIMATION, "the_bound": ".fvz-bound svg",
    "speed": "text=Milliseconds per step", "losses": '[data-testid="stPlotlyChart"]',
    "noisy_labels": "text=How well the teacher finds the flipped labels", "rank_list": "text=Worst queries first",
}


def step_sweep(walk: Walk, page, step: Step) -> None:
    variants = (("1280", PROJECTOR, False), ("1024", SMALL_SCREEN, False), ("present", PROJECTOR, True))
    for label, view, present in variants:
        for path in PAGE_PATHS:
            slug = PAGE_SLUGS[path]
            query = walk.urls.get(path, "").partition("?")[2]
            params = [q for q in query.split("&") if q and not q.startswith("present=")]
            if present:
                params.append("present=1")
            tab = walk.new_page(view)
            where = f"{PAGE_PATHS[path]} at {label}"
            try:
                open_path(walk, tab, path, ("?" + "&".join(params)) if params else "")
                settle(tab, quiet=1.5, timeout=20)
                if path in SWEEP_PRESS and tab.get_by_role("button", name=SWEEP_PRESS[path]).count():
                    tab.get_by_role("button", name=SWEEP_PRESS[path]).click()
                wanted = SWEEP_CONTENT[path]
                needs_run = path in ("rank_list", "noisy_labels") and path not in walk.urls
                if not needs_run:
                    step.check(f"{where}: content shown", visible(tab.locator(wanted), 3 * MINUTE), f"no {wanted}")
                settle(tab, timeout=30)
                page_health(tab, step, where)
                scroll_top(tab)
                walk.shoot(tab, step, f"{slug}-{label}-top")
                s = scroll_state(tab)
                if s["height"] > s["client"] + 40:
                    wheel(tab, s["client"] - 80)
                    walk.shoot(tab, step, f"{slug}-{label}-down")
            except Exception as exc:  # noqa: BLE001 - one page's failure is recorded, the sweep goes on
                step.check(f"{where}: visited", False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
                try:
                    walk.shoot(tab, step, f"{slug}-{label}-error")
                except Exception:  # noqa: BLE001
                    pass
            finally:
                tab.close()


def write_real_images(root: Path) -> Path:
    """REAL_TRAIN + REAL_TEST 28x28 stroke images (scripts/bench_real.py's) in torchvision's MNIST
    layout (MNIST/raw/*-ubyte) under `root`, as a user's downloaded MNIST folder looks."""
    from bench_real import stroke_images

    from fatviz.data.readers import write_idx

    ds = stroke_images(REAL_TRAIN, REAL_TEST, seed=4).dataset

    def to_bytes(x):
        x = x[:, 0]
        return np.clip((x - x.min()) / (x.max() - x.min()) * 255, 0, 255).astype(np.uint8)

    raw = root / "MNIST" / "raw"
    for name, array in (("train-images-idx3-ubyte", to_bytes(ds.x_train)), ("train-labels-idx1-ubyte", ds.y_train),
                        ("t10k-images-idx3-ubyte", to_bytes(ds.x_test)), ("t10k-labels-idx1-ubyte", ds.y_test)):
        write_idx(raw / name, np.asarray(array, dtype=np.uint8))
    return root


def step_real(walk: Walk, page, step: Step) -> None:
    """A researcher's own 28x28 images: the explorer compares the four options on 6,000 of them for 10
    epochs with a progress line and an ETA, then the point inspector shows a real image, large and crisp."""
    query = f"?dataset=mnist&data_root={walk.data_root}&epochs=10"
    started = time.perf_counter()
    open_path(walk, page, "centroid_explorer", query)
    train = page.get_by_role("button", name="Train the four options")
    if visible(train, 5_000):  # the explorer may start training these settings by itself
        train.click()
    bar = page.locator('[data-testid="stProgress"]', has_text="Training")
    step.check("a progress line appears while the four options train", visible(bar, 3 * MINUTE), "none")
    eta = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "left" not in eta:
        time.sleep(2)
        eta = bar.first.inner_text() if bar.count() else ""
    step.check("the progress line gives the time left", "left" in eta, eta or "no progress line")
    walk.shoot(page, step, "training")
    print(f"    progress: {eta!r}", flush=True)
    done = visible(page.locator(ANIMATION), 15 * MINUTE)
    seconds = time.perf_counter() - started
    step.check("6,000 images x 10 epochs x 4 options finish within 15 min", done, f"{seconds:.0f} s")
    print(f"    trained in {seconds:.1f} s", flush=True)
    settle(page, timeout=60)
    page_health(page, step, "Centroid explorer on real images")
    walk.shoot(page, step, "trained")
    note = page.get_by_text(re.compile(r"evaluated on [\d,]+ of [\d,]+ test images|Metrics on all [\d,]+ test"))
    step.check("the page says which test images the metrics used", visible(note, 30_000), "no such caption")
    bring_to_top(page, page.locator(".fvz-live").first, margin=90)
    spot = page.evaluate(PICK_POINT_JS)
    if not step.check("a point of the first panel is on screen to click", spot is not None, "none found"):
        return
    page.mouse.click(spot["x"], spot["y"])
    heading = page.get_by_role("heading", name=re.compile(r"^Sample \d+ in the "))
    if not step.check("a click opens the point inspector", visible(heading, 30_000), "no inspector"):
        return
    settle(page, timeout=30)
    bring_to_top(page, heading)
    image = page.locator('[data-testid="stImage"] img').first
    box = image.bounding_box() or {"width": 0}
    rendering = image.evaluate("(el) => getComputedStyle(el).imageRendering")
    step.check("the sample's 28x28 image is shown at least 5x its size", box["width"] >= 140, f"{box['width']:.0f} px")
    step.check("and pixel for pixel (no smoothing)", rendering == "pixelated", rendering)
    walk.shoot(page, step, "inspector")

    # The flagged gallery on the same images: 2,000 of them with 40% symmetric noise, no baselines.
    open_path(walk, page, "noisy_labels", f"?dataset=mnist&data_root={walk.data_root}&subsample=2000"
                                          "&noise=symmetric:0.4&baselines=none")
    settle(page, quiet=1.5, timeout=60)
    started = time.perf_counter()
    page.get_by_role("button", name="Run the teacher and the student").click()
    scores = page.get_by_text("How well the teacher finds the flipped labels")
    done = visible(scores, 10 * MINUTE)
    step.check("the distillation of 2,000 28x28 images finishes within 10 min", done,
               f"{time.perf_counter() - started:.0f} s")
    print(f"    distillation: {time.perf_counter() - started:.1f} s", flush=True)
    if not done:
        return
    settle(page, timeout=30)
    page_health(page, step, "Noisy labels on real images")
    bring_to_top(page, page.get_by_role("tab", name=re.compile(r"^Flagged samples")))
    image = page.locator('[data-testid="stImage"] img').first
    if step.check("the flagged gallery shows images", visible(image, 20_000), "none"):
        box = image.bounding_box() or {"width": 0}
        rendering = image.evaluate("(el) => getComputedStyle(el).imageRendering")
        step.check("a flagged 28x28 image is at least 80 px wide, pixel for pixel",
                   box["width"] >= 80 and rendering == "pixelated", f"{box['width']:.0f} px, {rendering}")
    walk.shoot(page, step, "gallery")


LESSON = {"home": step_home, "explorer": step_explorer, "bound": step_bound, "speed": step_speed,
          "noisy": step_noisy, "present": step_present, "extras": step_extras, "sweep": step_sweep,
          "real": step_real}


# -- running it -----------------------------------------------------------------------------------

def run_step(walk: Walk, page, name: str) -> Step:
    step = Step(name)
    walk.steps.append(step)
    print(f"step {name}", flush=True)
    started = time.perf_counter()
    try:
        LESSON[name](walk, page, step)
    except Exception as exc:  # noqa: BLE001 - a step that breaks is a failed check; the lesson goes on
        step.check(f"{name}: the step ran to its end", False,
                   f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}")
        traceback.print_exc(limit=3)
        try:
            walk.shoot(page, step, "error")
        except Exception:  # noqa: BLE001
            pass
    step.seconds = round(time.perf_counter() - started, 1)
    return step


def summary(walk: Walk, seconds: float) -> dict:
    print(f"\n{'step':<10}{'seconds':>9}{'shots':>7}{'checks':>8}{'failed':>8}")
    for s in walk.steps:
        failed = sum(not ok for _, ok, _ in s.checks)
        print(f"{s.name:<10}{s.seconds:>9.1f}{len(s.shots):>7}{len(s.checks):>8}{failed:>8}")
    failed = [{"step": s.name, "check": what, "detail": detail}
              for s in walk.steps for what, ok, detail in s.checks if not ok]
    if failed:
        print("\nfailed checks:")
        for f in failed:
            print(f"  [{f['step']}] {f['check']}: {f['detail']}")
    return {"steps": [{"step": s.name, "seconds": s.seconds, "screenshots": s.shots,
                       "checks": len(s.checks), "failed": sum(not ok for _, ok, _ in s.checks)} for s in walk.steps],
            "failed": failed, "screenshots": walk.shots, "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "walkthrough",
                        help="folder for the screenshots, report.json and the server log (default walkthrough/)")
    parser.add_argument("--only", default="", help=f"run only these steps, comma-separated: {', '.join(STEPS)} "
                        f"(and, not in the lesson, {', '.join(EXTRA_STEPS)}: 6,000 28x28 images in the explorer)")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()] or list(STEPS)
    unknown = [s for s in only if s not in STEPS + EXTRA_STEPS]
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}: choose from {', '.join(STEPS + EXTRA_STEPS)}")
    if CHROMIUM is None:
        print("No Chromium found (apt-get install -y chromium); nothing walked through.", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.iterdir():
        if SHOT_NAME.match(old.name):
            old.unlink()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fatviz-walkthrough-") as tmp, sync_playwright() as p:
        log = args.out / "streamlit.log"
        data_root = write_real_images(Path(tmp) / "data") if "real" in only else None
        if data_root is not None:
            os.environ["FATVIZ_DATA_DIRS"] = str(data_root)  # the server reads data under it only
        with streamlit_server(Path(tmp) / "runs", log) as (url, _):
            browser = launch_browser(p)
            try:
                walk = Walk(browser, url, args.out, data_root=data_root)
                page = walk.new_page(PROJECTOR)
                page.set_default_timeout(60_000)
                for name in STEPS + EXTRA_STEPS:
                    if name in only:
                        run_step(walk, page, name)
            finally:
                browser.close()
    result = summary(walk, time.perf_counter() - started)
    (args.out / "report.json").write_text(json.dumps({**result, "per_screenshot": walk.report}, indent=1))
    print(json.dumps(result))
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
