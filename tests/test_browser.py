"""A real browser drives the app: Run the demo, then every page, with no exception shown.

Starts `streamlit run app.py` (two training workers, a temporary runs folder), drives
headless Chromium with Playwright, saves screenshots to artifacts/screenshots (and
/tmp/fatviz-shots), and prints and saves the timings: first frame after Run the demo,
the full four-panel animation, and the same demo again from the job manager's memory.
Timings are reported, never asserted. Skipped only when no Chromium is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "artifacts" / "screenshots"
COPY = Path("/tmp/fatviz-shots")
CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and Path(p).exists()), None)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
PAGES = (("home", ""), ("centroid_explorer", "centroid_explorer"), ("noisy_labels", "noisy_labels"),
         ("the_bound", "the_bound"), ("speed", "speed"), ("classroom", "classroom"))
SLOW = 180_000  # ms: generous, a busy two-core laptop trains the demo in well under this
VIEW = {"width": 1600, "height": 1000}
LIVE = ".js-plotly-plot .gtitle"  # "Epoch n": the live view and the animation, not the empty placeholder
ANIMATION = ".js-plotly-plot g.slider-container"  # only the finished animation has an epoch slider


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"streamlit did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app in its own process group (workers included), killed in the end whatever happens."""
    if CHROMIUM is None:
        pytest.skip("No Chromium browser installed (looked for `chromium` on PATH and /usr/bin/chromium): "
                    "the real-browser test needs one.")
    tmp = tmp_path_factory.mktemp("browser")
    log = tmp / "streamlit.log"
    port = free_port()
    env = {**os.environ, "FATVIZ_WORKERS": "2", "FATVIZ_RUNS_DIR": str(tmp / "runs"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, log)
        yield url
    finally:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                pass
        print(f"\nstreamlit log tail:\n{log.read_text()[-1500:]}")


def settle(page, quiet: float = 2.0, timeout: float = 90.0) -> None:
    """Wait until the script stops running (the status widget hides) for `quiet` seconds in a row."""
    deadline = time.monotonic() + timeout
    still_since = None
    while time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        if running:
            still_since = None
        elif still_since is None:
            still_since = time.monotonic()
        elif time.monotonic() - still_since >= quiet:
            return
        time.sleep(0.2)


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
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport=VIEW)
            page.goto(server)
            demo = page.get_by_role("button", name="Run the demo")
            demo.wait_for(timeout=SLOW)
            # A class: the teacher opens the app, talks, then clicks. Time the click once the
            # worker processes have warmed up (the page says so), and say how long that took.
            opened = time.perf_counter()
            while page.get_by_text("Training workers ready.").count() == 0:
                assert time.perf_counter() - opened < SLOW / 1000, "the training workers never became ready"
                time.sleep(1.0)
                page.reload()
                demo = page.get_by_role("button", name="Run the demo")
                demo.wait_for(timeout=SLOW)
            timings["workers_ready_s"] = round(time.perf_counter() - opened, 2)
            settle(page)
            no_exception(page, "home")
            shoot(page, "01-home")

            start = time.perf_counter()
            demo.click()
            page.locator(LIVE).first.wait_for(timeout=SLOW)
            timings["first_frame_s"] = round(time.perf_counter() - start, 2)
            shoot(page, "02-home-live")
            page.locator(ANIMATION).first.wait_for(timeout=2 * SLOW)
            timings["full_animation_s"] = round(time.perf_counter() - start, 2)
            settle(page)
            no_exception(page, "home after the demo")
            caption = page.get_by_text("Four runs, same data and seed")
            timings["server_caption"] = caption.first.inner_text() if caption.count() else None
            shoot(page, "03-home-animation")

            # Play: the animation starts over from epoch 0 and moves.
            title = page.locator(".js-plotly-plot .gtitle").first
            last = title.text_content()
            page.locator(".js-plotly-plot .updatemenu-button").first.click()
            time.sleep(2.0)
            assert title.text_content() != last, "Play did not move the animation"
            shoot(page, "04-home-playing")

            # The same demo in a new session: answered from the job manager's memory.
            again = browser.new_page(viewport=VIEW)
            again.goto(server)
            button = again.get_by_role("button", name="Run the demo")
            button.wait_for(timeout=SLOW)
            settle(again)
            start = time.perf_counter()
            button.click()
            again.locator(ANIMATION).first.wait_for(timeout=SLOW)
            timings["cached_animation_s"] = round(time.perf_counter() - start, 2)
            no_exception(again, "home, cached demo")
            again.close()

            for i, (name, path) in enumerate(PAGES[1:], start=5):
                page.goto(f"{server}/{path}")
                page.locator("h1").first.wait_for(timeout=SLOW)
                settle(page)
                if name in ("centroid_explorer", "classroom"):
                    page.locator(ANIMATION).first.wait_for(timeout=SLOW)
                    settle(page)
                no_exception(page, name)
                shoot(page, f"{i:02d}-{name}")

            # Presentation mode, as a teacher's link opens it.
            page.goto(f"{server}/classroom?present=1")
            page.locator(ANIMATION).first.wait_for(timeout=SLOW)
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
