"""Schedule routes against the real Temporal dev server (starter/schedules.py underneath)."""

from __future__ import annotations

import asyncio
import uuid


async def _eventually_listed(api, workload: str, expect_present: bool = True, timeout: float = 10.0) -> list[dict]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        items = (await api.get("/api/schedules", params={"workload_id": workload})).json()["schedules"]
        if bool(items) == expect_present or asyncio.get_running_loop().time() > deadline:
            return items
        await asyncio.sleep(0.2)


async def test_schedule_lifecycle(api):
    workload = f"sched-{uuid.uuid4().hex[:8]}"
    body = {"workload_id": workload, "client_id": "c1", "cron": "0 3 * * *", "data_split_config": {"eval_size": 5}}
    created = await api.post("/api/schedules", json=body)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    assert workload in sid

    duplicate = await api.post("/api/schedules", json=body)
    assert duplicate.status_code == 409 and "already exists" in duplicate.json()["detail"]

    items = await _eventually_listed(api, workload)
    assert [i["schedule_id"] for i in items] == [sid]

    described = (await api.get(f"/api/schedules/{sid}")).json()
    assert described["paused"] is False and described["workload_id"] == workload
    assert described["cron"] and described["next_runs"]

    assert (await api.post(f"/api/schedules/{sid}/pause")).status_code == 200
    assert (await api.get(f"/api/schedules/{sid}")).json()["paused"] is True
    assert (await api.post(f"/api/schedules/{sid}/unpause")).status_code == 200
    assert (await api.get(f"/api/schedules/{sid}")).json()["paused"] is False
    triggered = await api.post(f"/api/schedules/{sid}/trigger")
    assert triggered.status_code == 200
    started = triggered.json()["workflow_id"]  # the trigger says which run it started
    assert started and started.startswith(f"flywheel-{workload}-") and started in triggered.json()["message"]

    deleted = await api.delete(f"/api/schedules/{sid}")
    assert deleted.status_code == 200
    missing = await api.get(f"/api/schedules/{sid}")
    assert missing.status_code == 404 and sid in missing.json()["detail"]
    assert (await api.post(f"/api/schedules/{sid}/pause")).status_code == 404


async def test_schedule_bad_requests(api):
    response = await api.post("/api/schedules", json={"workload_id": "w", "client_id": "c"})
    assert response.status_code == 422 and "cron" in response.json()["detail"]
    response = await api.post("/api/schedules", json={"workload_id": "w", "client_id": "c", "cron": "not a cron"})
    assert response.status_code == 400, response.text
    response = await api.post(
        "/api/schedules",
        json={"workload_id": "w", "client_id": "c", "cron": "0 3 * * *", "data_split_config": {"eval_size": -1}},
    )
    assert response.status_code == 422 and "eval_size" in response.json()["detail"]
