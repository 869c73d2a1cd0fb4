"""Your own data in a real browser: upload a zip of class folders and a table, train, see the four panels and
the flagged gallery; a second session sees none of it; hostile files get one message and the server serves on.

Skipped only when no Chromium is installed (like tests/test_browser.py).
"""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import pytest
from helpers import class_zip, feature_npz

from scripts.bench_browser import ANIMATION, CHROMIUM, SLOW, launch_browser, settle, streamlit_server

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "artifacts" / "screenshots"
VIEW = {"width": 1280, "height": 720}
UPLOADER = '[data-testid="stSidebar"] [data-testid="stFileUploaderDropzoneInput"]'


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app with one training worker and its own runs folder."""
    if CHROMIUM is None:
        pytest.skip("No Chromium browser installed (looked for `chromium` on PATH and /usr/bin/chromium).")
    tmp = tmp_path_factory.mktemp("upload")
    log = tmp / "streamlit.log"
    try:
        with streamlit_server(tmp / "runs", log, workers=1) as (url, _):
            yield url, tmp / "runs"
    finally:
        if log.exists():
            print(f"\nstreamlit log tail:\n{log.read_text()[-1500:]}")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = launch_browser(p)
        try:
            yield chromium
        finally:
            chromium.close()


def upload(page, tmp: Path, name: str, data: bytes) -> None:
    """Put one file into the sidebar's uploader, as a visitor choosing it would."""
    path = tmp / name
    path.write_bytes(data)
    page.locator(UPLOADER).set_input_files(str(path))
    settle(page, quiet=1.5)


def no_exception(page, where: str) -> None:
    shown = page.locator('[data-testid="stException"]')
    assert shown.count() == 0, f"{where}: {shown.first.inner_text()[:2000]}"


def open_page(browser, url: str):
    page = browser.new_page(viewport=VIEW)
    page.goto(url)
    page.locator(UPLOADER).wait_for(state="attached", timeout=SLOW * 1000)
    settle(page, quiet=1.0)
    return page


def test_upload_zip_and_table_train_and_stay_private(server, browser, tmp_path) -> None:
    url, runs = server
    SHOTS.mkdir(parents=True, exist_ok=True)
    # A zip of three class folders: the four panels.
    page = open_page(browser, f"{url}/centroid_explorer?epochs=3&vis_points=60")
    page.locator(ANIMATION).first.wait_for(timeout=SLOW * 1000)  # the first visit's digits run, saved
    settle(page)
    before = sorted(p.name for p in runs.iterdir()) if runs.exists() else []
    upload(page, tmp_path, "mine.zip", class_zip())
    page.get_by_text("your data (mine.zip, 36 samples, 3 classes)").first.wait_for(timeout=SLOW * 1000)
    assert "dataset=upload" in page.url and "data_root" not in page.url  # the id is never in the link
    train = page.get_by_role("button", name="Train the four options")
    if train.count():
        train.click()
    page.locator(ANIMATION).first.wait_for(timeout=SLOW * 1000)
    settle(page)
    no_exception(page, "explorer on an uploaded zip")
    page.get_by_text("Test metrics at epoch 3").wait_for(timeout=SLOW * 1000)
    for option in ("mean", "mean-norm", "norm-mean", "norm-mean-norm"):
        assert page.locator(".js-plotly-plot").get_by_text(option, exact=True).count() >= 1, option
    page.screenshot(path=str(SHOTS / "upload-1-explorer-zip.png"), full_page=True)
    shared_link = page.url
    after = sorted(p.name for p in runs.iterdir()) if runs.exists() else []
    assert before and after == before, "a run on uploaded data was saved on the server"

    # A table with its truth on Noisy labels: the flagged gallery, with the user's row ids.
    table = open_page(browser, f"{url}/noisy_labels?teacher_epochs=2&teacher_rounds=1&round_epochs=1&cv_epochs=1"
                               "&epochs=3&baselines=none")
    upload(table, tmp_path, "feats.npz", feature_npz(flip=0.15, truth=True))
    table.get_by_text("your data (feats.npz, 240 samples, 4 classes)").first.wait_for(timeout=SLOW * 1000)
    table.get_by_role("button", name="Run the teacher and the student").click()
    table.get_by_text("How well the teacher finds the flipped labels").wait_for(timeout=SLOW * 1000)
    settle(table)
    no_exception(table, "noisy labels on an uploaded table")
    table.get_by_role("tab", name="Flagged samples").click()
    table.get_by_text("nearest rows").first.wait_for(state="attached", timeout=SLOW * 1000)
    table.screenshot(path=str(SHOTS / "upload-2-noisy-labels-table.png"), full_page=True)

    # A second visitor with the first one's link: no upload of theirs, so not the first one's data.
    other = open_page(browser, shared_link)
    other.get_by_text("never part of a link").first.wait_for(timeout=SLOW * 1000)
    assert other.get_by_text("mine.zip").count() == 0 and other.get_by_text("feats.npz").count() == 0
    no_exception(other, "a second session")
    for p in (page, table, other):
        p.close()


def _hostile() -> dict[str, bytes]:
    def zipped(entries: dict[str, bytes]) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            for name, data in entries.items():
                archive.writestr(name, data)
        return out.getvalue()

    return {"climb.zip": zipped({"../evil/a.png": b"x", "ok/b.png": b"y"}),
            "cut.zip": class_zip()[:-200],
            "objects.npz": _object_npz()}


def _object_npz() -> bytes:
    import numpy as np

    out = io.BytesIO()
    np.savez(out, features=np.array([[1.0, 2.0]] * 8, dtype=object), labels=np.arange(8) % 2)
    return out.getvalue()


def test_hostile_uploads_one_message_each_then_a_good_one(server, browser, tmp_path) -> None:
    url, _ = server
    page = open_page(browser, f"{url}/centroid_explorer?epochs=2&vis_points=60")
    for name, data in _hostile().items():
        upload(page, tmp_path, name, data)
        errors = page.locator('[data-testid="stSidebar"] [data-testid="stAlertContentError"]')
        errors.first.wait_for(timeout=SLOW * 1000)
        assert errors.count() == 1, f"{name}: {errors.count()} messages"
        assert name in errors.first.inner_text()
        no_exception(page, name)
    page.screenshot(path=str(SHOTS / "upload-3-refused.png"))
    upload(page, tmp_path, "fine.npz", feature_npz())
    page.get_by_text("your data (fine.npz, 240 samples, 4 classes)").first.wait_for(timeout=SLOW * 1000)
    time.sleep(0.5)
    assert page.locator('[data-testid="stSidebar"] [data-testid="stAlertContentError"]').count() == 0
    page.close()
