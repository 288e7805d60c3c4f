"""The reviewer's page end to end in headless Chromium (Debian's package, driven by Playwright's Python client).

A job started from the page runs the REAL FlywheelRun workflow with fake activities (tests/workflow/fakes.py)
on the real Temporal dev server, served by uvicorn on a free port. The page shows it live (no reload), a
reviewer promotes a candidate with the button, and both the page and the API show the decision.
Screenshots go to ``$FLYWHEEL_TEST_OUTPUT/ui-browser`` (default ``test-output/ui-browser``); their paths
are printed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import httpx
import pytest

from starter.api import create_app
from starter.auth import KeyStore
from starter.auth.authenticator import default_keys_file
from tests.helpers import REPO_ROOT
from tests.helpers.temporal_workers import make_settings, running_workers

CHROMIUM = Path(os.environ.get("FLYWHEEL_CHROMIUM", "/usr/bin/chromium"))
OUTPUT = Path(os.environ.get("FLYWHEEL_TEST_OUTPUT", REPO_ROOT / "test-output")) / "ui-browser"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SLOW_CANDIDATE, FAST_CANDIDATE = "alpha-slow", "beta"  # "slow": its evaluations wait for <data_dir>/release
TIMEOUT_MS = 30_000


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (scripts/install_chromium.sh installs Debian's "
                    "chromium); the browser test needs it")
    pytest.importorskip("playwright.async_api", reason="Playwright's Python client is not installed (dev extra)")
    return CHROMIUM


@pytest.fixture
async def served(temporal_env, tmp_path):
    """The starter API (real FlywheelRun, fake activities) on a free local port: (base_url, settings)."""
    import uvicorn

    settings = make_settings(tmp_path / "data", models=(SLOW_CANDIDATE, FAST_CANDIDATE), customize=())
    # Loopback only: the page reads without a key (as in the demo); acting needs the key the test pastes.
    settings = settings.model_copy(update={"security": settings.security.model_copy(update={"anonymous_read": True})})
    app = create_app(settings, temporal_client=temporal_env.client, bind_host="127.0.0.1")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    async with running_workers(temporal_env.client, settings):
        task = asyncio.create_task(server.serve())
        try:
            for _ in range(300):
                if server.started or task.done():
                    break
                await asyncio.sleep(0.05)
            assert server.started, "uvicorn did not start"
            port = server.servers[0].sockets[0].getsockname()[1]
            yield f"http://127.0.0.1:{port}", settings
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 15)


async def test_reviewer_watches_a_job_live_and_promotes_it(chromium, served, tmp_path, monkeypatch):
    from playwright.async_api import async_playwright, expect

    monkeypatch.setattr("starter.ui.POLL_MS", {"jobs": 500, "job": 500, "schedules": 500})  # the page's data-poll-ms
    base, settings = served
    expect.set_options(timeout=TIMEOUT_MS)
    # Ids with markup are refused by the API (422); their escaping is tested in test_ui_pages.py.
    workload, client = f"ui-e2e-{uuid.uuid4().hex[:6]}", "team-x"
    key, _ = KeyStore(default_keys_file(settings)).create("ada", ["operator", "reviewer"])
    shutil.rmtree(OUTPUT, ignore_errors=True)
    OUTPUT.mkdir(parents=True)
    shots: list[Path] = []
    api_requests: list[tuple[str, str | None]] = []

    async def shot(page, name: str) -> None:
        path = OUTPUT / f"{len(shots) + 1:02d}-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        shots.append(path)

    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.on("request", lambda r: api_requests.append((r.url, r.headers.get("authorization")))
                    if "/api/" in r.url else None)
            page_errors: list[str] = []
            page.on("pageerror", lambda e: page_errors.append(str(e)))

            # Without a key the page reads (anonymous, loopback) and sends no Authorization header.
            await page.goto(f"{base}/ui")
            await expect(page.locator("#auth-state")).to_contain_text("no key")
            await expect(page.locator("#live-state")).to_contain_text("job(s)")  # the list loaded
            assert api_requests and all(auth is None for _, auth in api_requests)
            # A pasted key goes on every later API call.
            await page.fill("#api-key", key)
            await page.click("#api-key-save")
            await expect(page.locator("#auth-state")).to_contain_text("key set")
            sent_before = len(api_requests)

            # Start the job from the list page; the page goes to the job's page.
            await page.fill("#start-job input[name=workload_id]", workload)
            await page.fill("#start-job input[name=client_id]", client)
            await page.click("#start-button")
            await page.wait_for_url(f"{base}/ui/jobs/*")
            job_id = page.url.rsplit("/", 1)[1]

            # Live: the slow candidate holds the run in "evaluating"; the page shows it without a reload.
            await expect(page.locator("#job-stage")).to_have_text("evaluating")
            await expect(page.locator("#job-client")).to_have_text(client)
            assert await page.locator("#job-client b").count() == 0
            await page.evaluate("window.__sameDocument = true")
            await expect(page.locator("#live-state")).to_contain_text("live · evaluating")
            await shot(page, "job-evaluating")

            (Path(settings.platform.data_dir) / "release").touch()
            await expect(page.locator("#job-stage")).to_have_text("awaiting_review")
            assert await page.evaluate("window.__sameDocument === true"), "the page reloaded instead of updating"
            await expect(page.locator("#results tr.result-row")).to_have_count(6)
            await expect(page.locator("#gate-verdicts tr.gate-row")).to_have_count(2)
            await expect(page.locator("#gate-verdicts .reason").first).not_to_be_empty()
            await expect(page.locator("#datasets")).to_contain_text(f"flywheel-{workload}")
            await expect(page.locator("#curation")).to_contain_text("dropped.invalid")
            assert (await page.locator("#plot").get_attribute("src")).startswith("data:image/png;base64,")
            await expect(page.locator("#review-controls")).to_be_visible()
            await shot(page, "job-awaiting-review")

            await page.select_option("#promote-model", FAST_CANDIDATE)
            await page.fill("#review-note", "as good for a fraction of the cost")
            await page.click("#promote-button")
            await expect(page.locator("#flash")).to_contain_text("Promote: Candidate promoted.")
            await expect(page.locator("#job-stage")).to_have_text("promoted")
            await expect(page.locator("#review")).to_contain_text(FAST_CANDIDATE)
            await expect(page.locator("#review")).to_contain_text("api_key:ada")  # who: from the key
            await expect(page.locator("#review-closed")).to_contain_text(f"Decision: promoted ({FAST_CANDIDATE})")
            await shot(page, "job-promoted")
            later = api_requests[sent_before:]
            assert later and all(auth == f"Bearer {key}" for _, auth in later)
            assert any(url.endswith(f"/api/jobs/{job_id}/promote") for url, _ in later)

            # The list shows the job with its filters applied.
            await page.goto(f"{base}/ui?workload_id={workload}")
            await expect(page.locator("#jobs-table tr.job-row")).to_have_count(1)
            await expect(page.locator(f'tr.job-row[data-job-id="{job_id}"]')).to_contain_text(client)
            await shot(page, "jobs-list")
            assert page_errors == []
        finally:
            await context.close()

    async with httpx.AsyncClient(base_url=base, timeout=30) as api:
        doc = (await api.get(f"/api/jobs/{job_id}")).json()
    assert doc["stage"] == "promoted"
    assert doc["review"]["decision"] == "promoted" and doc["review"]["model_name"] == FAST_CANDIDATE
    assert doc["review"]["by"] == "api_key:ada" and doc["review"]["note"] == "as good for a fraction of the cost"
    for path in shots:
        assert path.stat().st_size > 10_000
        print(f"screenshot: {path}")
