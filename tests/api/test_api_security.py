"""Who may do what: the route x role table, checked against the real app (real Temporal dev server).

Allowed means the request got past authentication and authorisation (any status but 401/403, never 5xx);
denied means 403 for a known principal without the permission and 401 without valid credentials.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from temporalio.client import Schedule, ScheduleActionStartWorkflow, ScheduleSpec, ScheduleState

from flywheel.config import load_settings
from starter.api import create_app
from tests.helpers.api import ROLES, authed_client, awaiting_review, create_job, wait_for

JOB = "0123456789abcdef01234567"  # well-formed, never created: allowed calls answer 404 without side effects
SID = "flywheel-schedule-nobody-none"
VIEWER, OPERATOR, REVIEWER, ADMIN = "viewer", "operator", "reviewer", "admin"
EVERYONE = {VIEWER, OPERATOR, REVIEWER, ADMIN}

# (method, path, json body, roles allowed) — written out here, independently of starter/api_security.py.
TABLE = [
    ("GET", "/api/jobs", None, EVERYONE),
    ("GET", f"/api/jobs/{JOB}", None, EVERYONE),
    ("POST", "/api/jobs", {"workload_id": "w", "client_id": "c", "config_name": "no-such-config"}, {OPERATOR, ADMIN}),
    ("POST", f"/api/jobs/{JOB}/cancel", None, {OPERATOR, ADMIN}),
    ("DELETE", f"/api/jobs/{JOB}", None, {OPERATOR, ADMIN}),
    ("POST", f"/api/jobs/{JOB}/promote", {"model_name": "cand-a"}, {REVIEWER, ADMIN}),
    ("POST", f"/api/jobs/{JOB}/reject", {"reason": "no"}, {REVIEWER, ADMIN}),
    ("POST", "/api/logs", {"records": []}, {OPERATOR, ADMIN}),
    ("GET", "/api/schedules", None, EVERYONE),
    ("GET", f"/api/schedules/{SID}", None, EVERYONE),
    ("POST", "/api/schedules", {"workload_id": "w", "client_id": "c", "cron": "not a cron"}, {OPERATOR, ADMIN}),
    ("POST", f"/api/schedules/{SID}/pause", None, {OPERATOR, ADMIN}),
    ("POST", f"/api/schedules/{SID}/unpause", None, {OPERATOR, ADMIN}),
    ("POST", f"/api/schedules/{SID}/trigger", None, {OPERATOR, ADMIN}),
    ("DELETE", f"/api/schedules/{SID}", None, {OPERATOR, ADMIN}),
    ("POST", "/codec/encode", {"payloads": []}, {OPERATOR, REVIEWER, ADMIN}),
    ("POST", "/codec/decode", {"payloads": []}, {OPERATOR, REVIEWER, ADMIN}),
    ("GET", "/openapi.json", None, EVERYONE),
    ("GET", "/docs", None, EVERYONE),
    ("GET", "/health", None, EVERYONE | {"anonymous", "none"}),
    ("GET", "/ui", None, EVERYONE | {"anonymous", "none"}),  # page shells: no data in them
    ("GET", f"/ui/jobs/{JOB}", None, EVERYONE | {"anonymous", "none"}),
    ("GET", "/ui/schedules", None, EVERYONE | {"anonymous", "none"}),
    ("GET", "/ui/static/ui.js", None, EVERYONE | {"anonymous", "none"}),
    ("POST", "/ui/render/jobs", {"jobs": [], "total": 0, "offset": 0, "limit": 50}, EVERYONE),
    ("POST", "/ui/render/job", {"id": "x"}, EVERYONE),
    ("POST", "/ui/render/schedules", {"schedules": []}, EVERYONE),
]


async def call(app, token, method, path, body):
    async with authed_client(app, token) as http:
        return await http.request(method, path, json=body) if body is not None else await http.request(method, path)


@pytest.mark.parametrize("role", [*ROLES, "none", "anonymous"])
@pytest.mark.parametrize(("method", "path", "body", "allowed"), TABLE, ids=[f"{m} {p}" for m, p, _, _ in TABLE])
async def test_route_role_table(app, role_keys, role, method, path, body, allowed):
    token = None if role == "anonymous" else role_keys[role]
    response = await call(app, token, method, path, body)
    assert response.status_code < 500, response.text
    if role in allowed:
        assert response.status_code not in (401, 403), response.text
    elif role in ("none", "anonymous"):
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer" and response.json()["detail"]
    else:
        assert response.status_code == 403, response.text
        assert f"api_key:test-{role}" in response.json()["detail"]


def test_every_route_is_in_the_table(app):
    """A route added later must be added to the table above (and to ROUTE_PERMISSIONS) deliberately."""
    templated = {(m, r.path) for r in app.routes for m in getattr(r, "methods", ()) or () if m != "HEAD"}
    table = {(m, p.replace(JOB, "{job_id}").replace(SID, "{schedule_id}").replace("ui.js", "{name}"))
             for m, p, _, _ in TABLE}
    missing = {(m, p) for m, p in templated - table if p not in ("/docs/oauth2-redirect", "/redoc")}
    assert not missing, missing


async def test_anonymous_read_only_on_loopback(api_settings, temporal_env, tmp_path):
    settings = api_settings.model_copy(update={"security": api_settings.security.model_copy(
        update={"anonymous_read": True})})
    app = create_app(settings, temporal_client=temporal_env.client, bind_host="127.0.0.1")
    async with app.router.lifespan_context(app):
        assert (await call(app, None, "GET", "/api/jobs", None)).status_code == 200
        refused = await call(app, None, "POST", "/api/jobs", {"workload_id": "w", "client_id": "c"})
        assert refused.status_code == 403 and "anonymous" in refused.json()["detail"]
        remote = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("192.0.2.7", 5555)),
                                   base_url="http://api.test")
        async with remote:
            assert (await remote.get("/api/jobs")).status_code == 401
    with pytest.raises(Exception, match=r"security\.anonymous_read"):
        create_app(settings, temporal_client=temporal_env.client, bind_host="0.0.0.0")


# ---------------------------------------------------------------------------------------------- audit trail


async def test_review_by_and_requested_by_come_from_the_token(app, role_keys, jobstore):
    async with authed_client(app, role_keys[OPERATOR]) as operator, authed_client(app, role_keys[REVIEWER]) as reviewer:
        job_id = await create_job(operator)
        assert jobstore.get(job_id).requested_by == "api_key:test-operator"
        await wait_for(operator, job_id, awaiting_review)
        forged = await reviewer.post(f"/api/jobs/{job_id}/promote", json={"model_name": "cand-a", "by": "mallory"})
        assert forged.status_code == 422 and "by" in forged.json()["detail"]
        promoted = await reviewer.post(f"/api/jobs/{job_id}/promote", json={"model_name": "cand-a"})
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["result"]["by"] == "api_key:test-reviewer"


# ---------------------------------------------------------------------------------------------- hygiene


async def test_non_json_posts_are_415(api):
    job_id = await create_job(api)
    for headers, content in (({"content-type": "text/plain"}, b"{}"), ({"content-type": ""}, b"")):
        response = await api.post(f"/api/jobs/{job_id}/cancel", headers=headers, content=content)
        assert response.status_code == 415 and "application/json" in response.json()["detail"]
    form = await api.post("/api/jobs", data={"workload_id": "w", "client_id": "c"},
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415


async def test_config_name_must_name_an_existing_config_and_never_leaks_files(api, tmp_path):
    secret_file = tmp_path / "x.yaml"
    secret_file.write_text("db_password: hunter2-secret\nnims: 5\n")
    for name in ["../" * 10 + str(secret_file.with_suffix(""))[1:], "/etc/passwd", "..", "demo/../default"]:
        response = await api.post("/api/jobs", json={"workload_id": "w", "client_id": "c", "config_name": name})
        assert response.status_code == 422, response.text
        assert "hunter2" not in response.text and "db_password" not in response.text
        assert "config_name" in response.json()["detail"]


@pytest.mark.parametrize("bad", ["../x", "a b", "x" * 300, "é"])
async def test_ids_are_validated(api, bad):
    response = await api.post("/api/jobs", json={"workload_id": bad, "client_id": "c"})
    assert response.status_code == 422 and "workload_id" in response.json()["detail"]
    assert (await api.get("/api/jobs", params={"workload_id": bad})).status_code == 422


async def test_schedule_routes_refuse_other_teams_schedules(api, temporal_env):
    other = f"payroll-nightly-{uuid.uuid4().hex[:6]}"
    await temporal_env.client.create_schedule(other, Schedule(
        action=ScheduleActionStartWorkflow("PayrollRun", id="payroll", task_queue="payroll"),
        spec=ScheduleSpec(cron_expressions=["0 1 * * *"]), state=ScheduleState(paused=False)))
    try:
        for method, suffix in (("GET", ""), ("POST", "/pause"), ("POST", "/trigger"), ("DELETE", "")):
            response = await api.request(method, f"/api/schedules/{other}{suffix}")
            assert response.status_code == 422, (method, suffix, response.text)
            assert "flywheel-schedule-" in response.json()["detail"] or "schedule_id" in response.json()["detail"]
        described = await temporal_env.client.get_schedule_handle(other).describe()
        assert described.schedule.state.paused is False  # untouched
        listed = (await api.get("/api/schedules")).json()["schedules"]
        assert other not in {s["schedule_id"] for s in listed}
    finally:
        await temporal_env.client.get_schedule_handle(other).delete()


async def test_cors_off_by_default(api):
    response = await api.get("/api/jobs", headers={"origin": "https://evil.example"})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
    preflight = await api.options("/api/jobs", headers={"origin": "https://evil.example",
                                                        "access-control-request-method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


def test_settings_field_names_in_errors(tmp_path):
    with pytest.raises(Exception, match=r"security\.cors_origins"):
        load_settings(environ={}, overrides={"security": {"cors_origins": ["*"]}})
