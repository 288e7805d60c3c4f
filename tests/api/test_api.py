"""Starter API against a real Temporal dev server (stand-in FlywheelRun, see fake_flywheel.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from flywheel.jobdoc import JobDocument, RunStatus
from tests.api.fake_flywheel import FAKE_CANDIDATES
from tests.helpers.api import awaiting_review, closed_as, create_job, log_record, unique, wait_for

JOB_DOC_KEYS = {
    "id", "workload_id", "client_id", "status", "started_at", "finished_at", "num_records",
    "llm_judge", "nims", "datasets", "error",
}
NIM_KEYS = {"model_name", "status", "deployment_status", "runtime_seconds", "evaluations", "customizations", "error"}
SUMMARY_KEYS = {"id", "workload_id", "client_id", "status", "started_at", "finished_at", "datasets", "error"}


# ---------------------------------------------------------------------------------------------- jobs


async def test_create_list_get_document_shape(api):
    workload = unique("wl")
    response = await api.post("/api/jobs", json={"workload_id": workload, "client_id": "c1"})
    assert response.status_code == 200
    created = response.json()
    assert set(created) == {"id", "status", "message"}
    assert len(created["id"]) == 24 and int(created["id"], 16) >= 0
    job_id = created["id"]

    listing = (await api.get("/api/jobs", params={"workload_id": workload})).json()
    assert listing["total"] == 1 and listing["offset"] == 0 and listing["limit"] == 50
    assert set(listing["jobs"][0]) == SUMMARY_KEYS
    assert listing["jobs"][0]["id"] == job_id

    doc = await wait_for(api, job_id, awaiting_review)  # live, from the workflow's status query
    assert set(doc) >= JOB_DOC_KEYS
    assert doc["status"] == "running" and doc["workload_id"] == workload and doc["client_id"] == "c1"
    assert [n["model_name"] for n in doc["nims"]] == FAKE_CANDIDATES
    assert set(doc["nims"][0]) >= NIM_KEYS
    assert doc["workflow_id"] == f"flywheel-{workload}-c1-{job_id}"
    JobDocument.model_validate(doc)


async def test_running_job_without_live_document_falls_back_to_stored(api):
    job_id = await create_job(api, workload_id=unique("nodoc"))
    response = await api.get(f"/api/jobs/{job_id}")
    assert response.status_code == 200
    assert response.json()["id"] == job_id and response.json()["status"] == "pending"


async def test_data_split_override_is_merged_with_config(api):
    job_id = await create_job(api, data_split_config={"eval_size": 7})
    doc = await wait_for(api, job_id, awaiting_review)
    split = doc["curation"]["data_split_config"]
    assert split["eval_size"] == 7 and split["random_seed"] == 42  # the rest keeps the configured values


async def test_invalid_data_split_override_names_the_field(api):
    response = await api.post(
        "/api/jobs", json={"workload_id": "w", "client_id": "c", "data_split_config": {"eval_size": 0}}
    )
    assert response.status_code == 422
    assert "data_split_config" in response.json()["detail"] and "eval_size" in response.json()["detail"]
    response = await api.post(
        "/api/jobs", json={"workload_id": "w", "client_id": "c", "data_split_config": {"eval_sise": 5}}
    )
    assert response.status_code == 422 and "eval_sise" in response.json()["detail"]


async def test_unknown_config_name_is_422(api):
    response = await api.post("/api/jobs", json={"workload_id": "w", "client_id": "c", "config_name": "nope"})
    assert response.status_code == 422
    assert "config_name" in response.json()["detail"]


async def test_list_pagination_and_filters(api, jobstore):
    workload = unique("page")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(5):
        jobstore.put(JobDocument(
            id=f"{n:024x}"[:-8] + uuid.uuid4().hex[:8], workload_id=workload, client_id="x" if n % 2 else "y",
            status=RunStatus.completed if n < 3 else RunStatus.failed, started_at=start + timedelta(hours=n),
        ))
    page1 = (await api.get("/api/jobs", params={"workload_id": workload, "limit": 2})).json()
    page3 = (await api.get("/api/jobs", params={"workload_id": workload, "limit": 2, "offset": 4})).json()
    assert page1["total"] == 5 and len(page1["jobs"]) == 2 and (page1["offset"], page1["limit"]) == (0, 2)
    assert len(page3["jobs"]) == 1
    starts = [j["started_at"] for j in page1["jobs"]]
    assert starts == sorted(starts, reverse=True)  # newest first
    assert (await api.get("/api/jobs", params={"workload_id": workload, "client_id": "x"})).json()["total"] == 2
    failed = (await api.get("/api/jobs", params={"workload_id": workload, "status": "failed"})).json()
    assert failed["total"] == 2 and {j["status"] for j in failed["jobs"]} == {"failed"}


async def test_list_rejects_bad_query_params(api):
    response = await api.get("/api/jobs", params={"status": "bogus"})
    assert response.status_code == 422 and "status" in response.json()["detail"]
    response = await api.get("/api/jobs", params={"limit": 0})
    assert response.status_code == 422 and "limit" in response.json()["detail"]
    response = await api.get("/api/jobs", params={"offset": -1})
    assert response.status_code == 422 and "offset" in response.json()["detail"]


async def test_unknown_job_is_404_everywhere(api):
    missing = "f" * 24
    for method, path in [
        ("GET", f"/api/jobs/{missing}"),
        ("POST", f"/api/jobs/{missing}/cancel"),
        ("DELETE", f"/api/jobs/{missing}"),
    ]:
        response = await api.request(method, path)
        assert response.status_code == 404, (method, path)
        assert isinstance(response.json()["detail"], str) and missing in response.json()["detail"]
    response = await api.post(f"/api/jobs/{missing}/promote", json={"model_name": "cand-a"})
    assert response.status_code == 404


async def test_cancel_then_400_when_already_finished(api):
    job_id = await create_job(api)
    await wait_for(api, job_id, awaiting_review)
    response = await api.post(f"/api/jobs/{job_id}/cancel")
    assert response.status_code == 200 and response.json()["id"] == job_id
    doc = await wait_for(api, job_id, closed_as("cancelled"))
    assert doc["stage"] == "cancelled"
    again = await api.post(f"/api/jobs/{job_id}/cancel")
    assert again.status_code == 400 and "already finished" in again.json()["detail"]


async def test_delete_is_400_while_running_then_works_after_cancel(api):
    job_id = await create_job(api)
    await wait_for(api, job_id, awaiting_review)
    response = await api.delete(f"/api/jobs/{job_id}")
    assert response.status_code == 400 and "running" in response.json()["detail"]
    assert (await api.post(f"/api/jobs/{job_id}/cancel")).status_code == 200
    await wait_for(api, job_id, closed_as("cancelled"))
    deleted = await api.delete(f"/api/jobs/{job_id}")
    assert deleted.status_code == 200
    # The platform clean-up ran (the fake run stored nothing on the platform) and the answer says so.
    assert deleted.json()["removed"] == [] and "Nothing of it was left" in deleted.json()["message"]
    assert (await api.get(f"/api/jobs/{job_id}")).status_code == 404


async def test_promote_409_on_validator_rejection_then_200(api):
    job_id = await create_job(api)
    await wait_for(api, job_id, awaiting_review)
    rejected = await api.post(f"/api/jobs/{job_id}/promote", json={"model_name": "not-a-candidate"})
    assert rejected.status_code == 409
    assert "not-a-candidate" in rejected.json()["detail"] and "is not a candidate" in rejected.json()["detail"]

    promoted = await api.post(f"/api/jobs/{job_id}/promote", json={"model_name": "cand-b", "note": "cheaper"})
    assert promoted.status_code == 200, promoted.text
    body = promoted.json()
    assert body["decision"] == "promoted" and body["model_name"] == "cand-b"
    assert body["result"]["model_name"] == "cand-b"

    # The run completes; the stored document is reconciled from the workflow's result.
    doc = await wait_for(api, job_id, closed_as("completed"))
    assert doc["review"]["decision"] == "promoted" and doc["stage"] == "promoted"
    listed = (await api.get("/api/jobs", params={"workload_id": doc["workload_id"]})).json()
    assert listed["jobs"][0]["status"] == "completed"

    # Reviewing a finished run is a conflict too.
    late = await api.post(f"/api/jobs/{job_id}/reject", json={"reason": "too late"})
    assert late.status_code == 409

    # The promotion history reads this document: deleting it is refused, and the document stays.
    refused = await api.delete(f"/api/jobs/{job_id}")
    assert refused.status_code == 409 and "promotion history" in refused.json()["detail"]
    assert (await api.get(f"/api/jobs/{job_id}")).status_code == 200


async def test_reject(api):
    job_id = await create_job(api)
    await wait_for(api, job_id, awaiting_review)
    response = await api.post(f"/api/jobs/{job_id}/reject", json={"reason": "not good enough"})
    assert response.status_code == 200 and response.json()["decision"] == "rejected"
    again = await api.post(f"/api/jobs/{job_id}/reject", json={})
    assert again.status_code == 409 and "not awaiting review" in again.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"client_id": "c"}, "workload_id"),
        ({"workload_id": "w"}, "client_id"),
        ({"workload_id": 123, "client_id": "c"}, "workload_id"),
        ({"workload_id": "w", "client_id": ["c"]}, "client_id"),
        ({"workload_id": "", "client_id": "c"}, "workload_id"),
        ({"workload_id": "w", "client_id": "c", "data_split_config": "big"}, "data_split_config"),
        ({"workload_id": "w", "client_id": "c", "job_type": "other"}, "job_type"),
    ],
)
async def test_bad_job_bodies_are_422_naming_the_field(api, body, field):
    response = await api.post("/api/jobs", json=body)
    assert response.status_code == 422
    payload = response.json()
    assert isinstance(payload["detail"], str) and field in payload["detail"]
    assert payload["errors"][0]["field"] == field


async def test_malformed_json_is_400(api):
    response = await api.post("/api/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "JSON" in response.json()["detail"]


async def test_promote_body_requires_model_name(api):
    response = await api.post(f"/api/jobs/{'a' * 24}/promote", json={})
    assert response.status_code == 422 and "model_name" in response.json()["detail"]


# ---------------------------------------------------------------------------------------------- misc


async def test_health(api):
    response = await api.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy", "temporal": "ok", "jobstore": "ok"}


async def test_openapi_docs(api):
    assert (await api.get("/docs")).status_code == 200
    paths = (await api.get("/openapi.json")).json()["paths"]
    assert {"/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/cancel", "/api/logs", "/health"} <= set(paths)


# ---------------------------------------------------------------------------------------------- logs


async def test_post_logs_stores_good_and_reports_bad_by_index(api, app):
    workload = unique("logs")
    records = [log_record(0), {"timestamp": 1.0}, "not an object", log_record(3)]
    response = await api.post("/api/logs", json={"records": records, "workload_id": workload, "client_id": "c9"})
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["loaded"] == 2 and report["skipped"] == 2
    assert [e["index"] for e in report["errors"]] == [1, 2]
    assert all(e["reason"] for e in report["errors"])
    assert app.state.flywheel.logstore.count(workload, "c9") == 2


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        ({"records": []}, 400, "records"),
        ({}, 422, "records"),
        ({"records": {"a": 1}}, 422, "records"),
        ({"records": [log_record(0)], "workload_id": 5}, 422, "workload_id"),
        ({"records": [log_record(i) for i in range(51)]}, 413, "at most 50"),
    ],
)
async def test_post_logs_bad_bodies(api, body, status, text):
    response = await api.post("/api/logs", json=body)
    assert response.status_code == status
    assert text in response.json()["detail"]


async def test_post_logs_too_large_by_content_length(api, app):
    limit = 1024
    original = app.state.flywheel.max_log_batch_bytes
    app.state.flywheel.max_log_batch_bytes = limit
    try:
        response = await api.post("/api/logs", json={"records": [log_record(i) for i in range(20)]})
    finally:
        app.state.flywheel.max_log_batch_bytes = original
    assert response.status_code == 413 and "too large" in response.json()["detail"]
