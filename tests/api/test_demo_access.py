"""The demo profile: a local key `make demo` creates and prints, anonymous reads on loopback only."""

from __future__ import annotations

import httpx
from rich.console import Console

from flywheel.config import load_settings
from starter.api import create_app
from starter.demo import DemoAPI, demo_api_key, print_key_usage
from tests.helpers.live_server import serve


def test_demo_key_and_anonymous_reads(tmp_path):
    settings = load_settings(config_name="demo", environ={}, overrides={
        "platform": {"data_dir": str(tmp_path)}, "temporal": {"address": "127.0.0.1:1"}})
    assert settings.security.anonymous_read is True
    first = demo_api_key(settings)
    key = demo_api_key(settings)  # a new demo revokes the previous demo's key
    console = Console(record=True, width=200)
    with serve(create_app(settings, bind_host="127.0.0.1")) as base_url:
        print_key_usage(key, base_url, console)
        printed = console.export_text()
        assert f"export FLYWHEEL_API_KEY={key}" in printed and f"{base_url}/api/jobs" in printed
        demo = DemoAPI(base_url, key)
        try:
            assert demo.http.get("/api/jobs").status_code == 200
            # with the key, starting a job gets past auth (503 here: no Temporal in this test)
            assert demo.http.post("/api/jobs", json={"workload_id": "w", "client_id": "c"}).status_code == 503
        finally:
            demo.close()
        assert httpx.get(f"{base_url}/api/jobs").status_code == 200  # the notebook's anonymous read
        anonymous_write = httpx.post(f"{base_url}/api/jobs", json={"workload_id": "w", "client_id": "c"})
        assert anonymous_write.status_code == 403
        stale = httpx.get(f"{base_url}/api/jobs", headers={"authorization": f"Bearer {first}"})
        assert stale.status_code == 401
