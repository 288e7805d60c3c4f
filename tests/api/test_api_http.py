"""The real app behind uvicorn (real HTTP, chunked bodies): body limits hold on the streamed body."""

from __future__ import annotations

import json

import httpx
import pytest

from flywheel.config import load_settings
from starter.api import create_app
from starter.auth import KeyStore
from starter.auth.authenticator import default_keys_file
from tests.helpers.api import log_record
from tests.helpers.live_server import serve

INGEST_LIMIT = 256 * 1024
DEFAULT_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("http-api")
    settings = load_settings(environ={}, overrides={
        "platform": {"data_dir": str(data_dir)},
        "temporal": {"address": "127.0.0.1:1"},  # not needed: ingest and limits work without Temporal
        "security": {"max_body_bytes": DEFAULT_LIMIT, "max_ingest_body_bytes": INGEST_LIMIT}})
    token, _ = KeyStore(default_keys_file(settings)).create("ingest-bot", ["operator"])
    with serve(create_app(settings)) as base_url, httpx.Client(
            base_url=base_url, timeout=30,
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"}) as client:
        yield client


def chunked(data: bytes, size: int = 8192):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def test_chunked_ingest_within_limit_is_stored(served):
    body = json.dumps({"records": [log_record(i) for i in range(20)], "workload_id": "http", "client_id": "c1"})
    assert len(body) < INGEST_LIMIT
    response = served.post("/api/logs", content=chunked(body.encode()))
    assert "content-length" not in response.request.headers
    assert response.status_code == 200, response.text
    assert response.json()["loaded"] == 20
    again = served.post("/api/logs", content=chunked(body.encode()))
    assert again.json()["loaded"] == 0 and again.json()["duplicates"] == 20


def test_chunked_body_over_the_limit_is_413(served):
    records = [log_record(i) for i in range(600)]
    body = json.dumps({"records": records, "workload_id": "http", "client_id": "big"}).encode()
    assert len(body) > INGEST_LIMIT
    response = served.post("/api/logs", content=chunked(body))
    assert response.status_code == 413 and "too large" in response.json()["detail"]
    # the 22 MB chunked body of the report, on a route with the default limit
    response = served.post("/api/jobs", content=chunked(b" " * (22 * 1024 * 1024), 1 << 20))
    assert response.status_code == 413


def test_nothing_of_a_refused_body_is_stored(served):
    before = served.get("/api/jobs").status_code  # the server still answers after refusals
    body = json.dumps({"records": [log_record(i) for i in range(600)], "workload_id": "http",
                       "client_id": "refused"}).encode()
    assert served.post("/api/logs", content=chunked(body)).status_code == 413
    small = json.dumps({"records": [log_record(0)], "workload_id": "http", "client_id": "refused"})
    assert served.post("/api/logs", content=small).json()["loaded"] == 1  # first time this record is seen
    assert before == 200


def test_deeply_nested_json_is_a_4xx(served):
    body = '{"records": [' + "[" * 100_000 + "]" * 100_000 + "]}"
    response = served.post("/api/logs", content=body)
    assert 400 <= response.status_code < 500 and response.json()["detail"]
