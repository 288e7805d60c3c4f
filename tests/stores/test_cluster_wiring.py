"""No shared disk: two hosts' platforms with private data_dirs share one S3 artifact root (moto over HTTP).

What one worker writes (datasets, predictions, reports, deployment records) another worker on another host
reads; a deployment recorded by one host is found, health-checked and torn down by another."""

from __future__ import annotations

import json
import os
import threading

import httpx
import pytest

from flywheel.jobdoc import JobDocument
from flywheel.platforms.local import LocalPlatform
from flywheel.platforms.local.model_server import ChatService, create_app
from flywheel.platforms.local.server_processes import ModelServerManager
from flywheel.report import publish_report
from flywheel.types import PlatformError
from tests.emulators.threaded_server import ThreadedServer
from tests.helpers.store_servers import free_port
from tests.stores.cluster_settings import host_settings
from tests.unit.test_model_server import FakeLlama

ROWS = [{"request": {"messages": [{"role": "user", "content": f"q{i}"}]}, "i": i} for i in range(4)]


async def test_datasets_written_on_one_host_are_read_on_another(tmp_path, s3_root):
    a = LocalPlatform(host_settings(tmp_path, "a", s3_root, "10.0.0.1"))
    b = LocalPlatform(host_settings(tmp_path, "b", s3_root, "10.0.0.2"))
    refs = await a.put_datasets("job-1", {"eval": ROWS, "train": ROWS[:3]})
    assert refs["eval"].uri == s3_root["root"] + "/datasets/job-1/eval.jsonl"
    assert await b.read_dataset(refs["eval"]) == ROWS and await b.read_dataset(refs["train"]) == ROWS[:3]
    assert not (tmp_path / "b" / "datasets").exists()  # nothing came through b's disk but the store
    again = await b.put_datasets("job-1", {"eval": ROWS})  # idempotent from any host
    assert again["eval"] == refs["eval"]
    # A ref whose bytes changed in the store is refused, not silently evaluated.
    a.artifacts.put("datasets/job-1/eval.jsonl", b'{"x": 1}\n')
    with pytest.raises(PlatformError) as err:
        await b.read_dataset(refs["eval"])
    assert err.value.error_type == "DatasetIntegrityError"


def test_predictions_published_by_one_host_resume_on_another(tmp_path, s3_root):
    a = LocalPlatform(host_settings(tmp_path, "a", s3_root, "10.0.0.1"))
    b = LocalPlatform(host_settings(tmp_path, "b", s3_root, "10.0.0.2"))
    path_a = a.data_dir / "predictions" / "job-1-base.jsonl"
    path_a.parent.mkdir(parents=True)
    path_a.write_text('{"record_id": "r1", "prediction": {}}\n')
    uri = a._push_predictions(path_a)
    assert uri == s3_root["root"] + "/predictions/job-1-base.jsonl"
    path_b = b.data_dir / "predictions" / "job-1-base.jsonl"
    b._pull_predictions(path_b)
    assert path_b.read_text() == path_a.read_text()


def test_report_is_published_to_the_store(tmp_path, s3_root):
    store = LocalPlatform(host_settings(tmp_path, "a", s3_root, "10.0.0.1")).artifacts
    doc = JobDocument(id="job-9", workload_id="w", client_id="c")
    uri = publish_report(doc, store, tmp_path / "scratch")
    assert uri == s3_root["root"] + "/reports/job-9/report.html"
    assert b"<html" in store.read_bytes(uri).lower()
    assert json.loads(store.read_bytes("reports/job-9/job.json"))["id"] == "job-9"


def test_a_deployment_recorded_by_one_host_is_found_and_torn_down_by_another(tmp_path, s3_root):
    """Host A's record (its advertised address, port, pid, token) is all host B needs."""
    store = LocalPlatform(host_settings(tmp_path, "a", s3_root, "10.0.0.1")).artifacts
    stopped = threading.Event()
    port = free_port()
    server = ThreadedServer(create_app(ChatService(FakeLlama("hi"), "tiny"), shutdown_token="s3cret",
                                       on_shutdown=stopped.set), port, "model-server")
    server.start_server()
    try:
        host_a = ModelServerManager(tmp_path / "a", advertise_host="127.0.0.1", shared=store)
        host_a._write_state("cand-base", {
            "name": "cand-base", "pid": os.getpid(), "host": "127.0.0.1", "node": "127.0.0.1", "port": port,
            "model": "/a/models/m.gguf", "lora": None, "alias": "tiny", "n_ctx": 512, "log": "/a/log",
            "started_at": 0.0, "shutdown_token": "s3cret"})
        host_b = ModelServerManager(tmp_path / "b", advertise_host="10.0.0.2", shared=store)
        assert not host_b.is_here(host_b.read_state("cand-base"))
        assert host_b.is_alive("cand-base")  # over HTTP: /health answers with the recorded pid
        endpoint = host_b.endpoint("cand-base")
        assert endpoint.base_url == f"http://127.0.0.1:{port}/v1" and "shutdown_token" not in endpoint.details
        assert httpx.get(f"{endpoint.base_url}/models").json()["data"][0]["id"] == "tiny"
        # A wrong token is refused by the server; the right one (from the shared record) stops it.
        assert httpx.post(f"http://127.0.0.1:{port}/admin/shutdown",
                          headers={"X-Shutdown-Token": "guess"}).status_code == 403
        import asyncio

        asyncio.run(host_b.teardown("cand-base"))
        assert stopped.wait(5)
        assert host_b.read_state("cand-base") is None and not store.exists("deployments/cand-base.json")
    finally:
        server.stop()
    # Unreachable (its host is gone): not alive, so the next deploy starts it where it runs.
    host_a._write_state("gone", {"name": "gone", "pid": 1, "host": "127.0.0.1", "node": "10.9.9.9",
                                 "port": free_port(), "alias": "tiny", "n_ctx": 512})
    assert not host_b.is_alive("gone")


def test_remote_shutdown_is_off_without_a_token():
    from fastapi.testclient import TestClient

    client = TestClient(create_app(ChatService(FakeLlama("hi"), "tiny")))
    assert client.post("/admin/shutdown", headers={"X-Shutdown-Token": "x"}).status_code == 404
