"""The reviewer's page end to end in headless Chromium (Debian's chromium, Playwright's client).

A job is started from /ui, its page shows it live until it awaits review, a reviewer promotes a
candidate with the page's button, and the page and the API show the decision. Screenshots go to
``test-artifacts/ui/`` (or ``$FLYWHEEL_SCREENSHOT_DIR``).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from tests.api.test_api import unique

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("FLYWHEEL_SCREENSHOT_DIR", REPO / "test-artifacts" / "ui"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture
def served(app):
    """The API app (already started by the ``app`` fixture) on a real port for the browser."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


async def test_reviewer_starts_watches_and_promotes_in_the_browser(served, api):
    playwright_api = pytest.importorskip("playwright.async_api", reason="Playwright's Python client is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Debian chromium not found at {CHROMIUM}")
    SHOTS.mkdir(parents=True, exist_ok=True)
    workload = unique("ui")
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(f"{served}/ui?workload_id={workload}")
            await page.fill("#start-form input[name=client_id]", "c1")
            await page.click("#start")
            await page.wait_for_url(f"{served}/ui/jobs/*")
            job_id = page.url.rsplit("/", 1)[-1]
            # Live: the page follows the run to the review stage without a manual reload.
            await page.wait_for_function("document.getElementById('stage').textContent === 'awaiting_review'",
                                         timeout=20_000)
            assert await page.is_visible("#promote") and await page.is_visible("#reject")
            await page.screenshot(path=str(SHOTS / "1-job-awaiting-review.png"), full_page=True)

            # A bad request shows the API's error, nothing changes.
            await page.evaluate("document.getElementById('candidate').add(new Option('nope', 'nope'))")
            await page.select_option("#candidate", "nope")
            await page.click("#promote")
            await page.wait_for_function("document.getElementById('message').textContent.includes('not a candidate')")
            assert (await api.get(f"/api/jobs/{job_id}")).json()["review"] is None

            await page.select_option("#candidate", "cand-b")
            await page.fill("#reviewer", "ana")
            await page.fill("#note", "cheaper at the same agreement")
            await page.click("#promote")
            await page.wait_for_function("document.getElementById('stage').textContent === 'promoted'",
                                         timeout=20_000)
            review_text = await page.inner_text("#review")
            assert "promoted" in review_text and "cand-b" in review_text
            await page.screenshot(path=str(SHOTS / "2-job-promoted.png"), full_page=True)

            doc = (await api.get(f"/api/jobs/{job_id}")).json()
            assert doc["review"]["decision"] == "promoted" and doc["review"]["model_name"] == "cand-b"

            await page.goto(f"{served}/ui?workload_id={workload}")
            row = page.locator(f"tr.job-row[data-job-id='{job_id}']")
            await row.wait_for(timeout=10_000)
            await page.wait_for_function(
                f"document.querySelector(\"tr[data-job-id='{job_id}'] td:nth-child(4)\").textContent === 'completed'",
                timeout=20_000)
            await page.screenshot(path=str(SHOTS / "3-job-list.png"), full_page=True)
        finally:
            await browser.close()
    for name in ("1-job-awaiting-review.png", "2-job-promoted.png", "3-job-list.png"):
        assert (SHOTS / name).stat().st_size > 10_000


async def test_missing_job_page_is_a_404(api):
    response = await api.get(f"/ui/jobs/{'f' * 24}")
    assert response.status_code == 404 and "not found" in response.text
    listing = await api.get("/ui")
    assert listing.status_code == 200 and 'id="jobs"' in listing.text
