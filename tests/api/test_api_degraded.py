"""The API keeps answering when Temporal is unreachable: /health says so, job routes answer 503."""

from __future__ import annotations

from flywheel.config import load_settings
from starter.api import create_app
from starter.auth import KeyStore
from starter.auth.authenticator import default_keys_file
from tests.helpers.api import authed_client


async def test_temporal_down(tmp_path):
    settings = load_settings(
        environ={}, overrides={"platform": {"data_dir": str(tmp_path)}, "temporal": {"address": "127.0.0.1:1"}}
    )
    app = create_app(settings)
    token, _ = KeyStore(default_keys_file(settings)).create("ops", ["operator"])
    async with app.router.lifespan_context(app), authed_client(app, token) as api:
        health = await api.get("/health")
        assert health.status_code == 200
        assert health.json() == {"status": "healthy", "temporal": "error", "jobstore": "ok"}
        created = await api.post("/api/jobs", json={"workload_id": "w", "client_id": "c"})
        assert created.status_code == 503 and "Temporal is unavailable" in created.json()["detail"]
        listed = await api.get("/api/jobs")  # the job store still answers
        assert listed.status_code == 200 and listed.json()["total"] == 0
    assert (tmp_path / "jobs.sqlite").exists()
