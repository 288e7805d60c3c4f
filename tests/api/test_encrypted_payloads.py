"""Payload encryption end to end on a real Temporal dev server: the stored history holds no plaintext
record, setting or error body; the codec routes show them to authorised callers; secrets never leak."""

from __future__ import annotations

import base64
import logging
import uuid
from datetime import timedelta

import pytest
import structlog
from temporalio import activity, workflow
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from flywheel.config import load_settings
from starter.api import create_app
from starter.auth import KeyStore
from starter.auth.authenticator import default_keys_file
from tests.api.fake_flywheel import FakeFlywheelRun
from tests.helpers.api import authed_client, awaiting_review, closed_as, create_job, wait_for
from workers.payload_codec import data_converter_for, new_key

SECRET_RECORD = "where is order ORD-SECRET-4242 for alice?"
SECRET_SETTING = "http://nim.internal.example:9443/secret-endpoint"
SECRET_ERROR = "upstream said: 500 {'customer_email': 'alice@example.com'}"


@activity.defn(name="security-test-call-upstream")
async def call_upstream(record: str) -> str:
    raise ApplicationError(f"NeMo refused: {SECRET_ERROR}", {"body": SECRET_ERROR}, non_retryable=True)


@workflow.defn(name="security-test-history")
class HistoryWorkflow:
    @workflow.run
    async def run(self, job: dict) -> dict:
        try:
            await workflow.execute_activity(call_upstream, job["record"], start_to_close_timeout=timedelta(seconds=10))
        except Exception as exc:
            if job.get("fail"):
                raise ApplicationError(f"run failed: {exc.cause}", non_retryable=True) from exc
            return {"echo": job["record"], "error": str(exc.cause)}
        return {}


def secrets_in(data: bytes) -> list[str]:
    return [s for s in (SECRET_RECORD, SECRET_SETTING, SECRET_ERROR, "alice@example.com") if s.encode() in data]


async def run_and_read_history(temporal_env, converter) -> tuple[list[History], dict]:
    """Two runs (one returns, one fails) through ``converter``; their histories as the server stores them,
    read by a client WITHOUT the codec."""
    client = await Client.connect(temporal_env.client.service_client.config.target_host,
                                  namespace=temporal_env.client.namespace, data_converter=converter)
    settings = load_settings(environ={}, overrides={"nmp_config": {"nemo_base_url": SECRET_SETTING}})
    queue = f"sec-history-{uuid.uuid4().hex[:8]}"
    ok_id, failing_id = f"sec-ok-{uuid.uuid4().hex[:8]}", f"sec-fail-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[HistoryWorkflow], activities=[call_upstream],
                      workflow_runner=UnsandboxedWorkflowRunner()):
        job = {"record": SECRET_RECORD, "settings": settings.model_dump(mode="json")}
        result = await client.execute_workflow(HistoryWorkflow.run, job, id=ok_id, task_queue=queue)
        with pytest.raises(WorkflowFailureError):
            await client.execute_workflow(HistoryWorkflow.run, {**job, "fail": True}, id=failing_id, task_queue=queue)
    histories = []
    for workflow_id in (ok_id, failing_id):
        fetched = await temporal_env.client.get_workflow_handle(workflow_id).fetch_history()
        histories.append(History(events=fetched.events))
    return histories, result


def raw_bytes(histories: list[History]) -> bytes:
    return b"".join(h.SerializeToString() for h in histories)


async def test_plain_history_shows_everything(temporal_env, monkeypatch):
    """The control: without the codec, the stored history holds the record, settings and error body."""
    histories, _ = await run_and_read_history(temporal_env, pydantic_data_converter)
    assert set(secrets_in(raw_bytes(histories))) >= {SECRET_RECORD, SECRET_SETTING, SECRET_ERROR}


async def test_encrypted_history_shows_nothing_and_the_codec_routes_decrypt(
        temporal_env, monkeypatch, api_settings):
    monkeypatch.setenv("FW_SEC_TEST_KEY", new_key())
    encryption = {"keys": [{"id": "k1", "env": "FW_SEC_TEST_KEY"}], "codec_cors_origins": ["http://localhost:8233"]}
    settings = load_settings(environ={}, overrides={
        "platform": {"data_dir": api_settings.platform.data_dir},
        "security": {"payload_encryption": encryption}})
    converter = data_converter_for(settings, pydantic_data_converter)
    histories, result = await run_and_read_history(temporal_env, converter)
    assert len(histories[0].events) > 5 and secrets_in(raw_bytes(histories)) == []
    assert result["echo"] == SECRET_RECORD and SECRET_ERROR in result["error"]  # readable with the key

    # an authorised person decrypts a stored payload through the codec route; a viewer cannot
    started = histories[0].events[0].workflow_execution_started_event_attributes
    history_payload = started.input.payloads[0]
    assert history_payload.metadata["encoding"] == b"binary/encrypted"
    app = create_app(settings, temporal_client=temporal_env.client)
    store = KeyStore(default_keys_file(settings))
    reviewer, viewer = store.create("sec-reviewer", ["reviewer"])[0], store.create("sec-viewer", ["viewer"])[0]
    body = {"payloads": [{"metadata": {k: base64.b64encode(v).decode() for k, v in history_payload.metadata.items()},
                          "data": base64.b64encode(history_payload.data).decode()}]}
    async with app.router.lifespan_context(app):
        async with authed_client(app, reviewer) as http:
            decoded = await http.post("/codec/decode", json=body)
            assert decoded.status_code == 200, decoded.text
            plain = base64.b64decode(decoded.json()["payloads"][0]["data"])
            assert SECRET_RECORD.encode() in plain and SECRET_SETTING.encode() in plain
            encoded = await http.post("/codec/encode", json={"payloads": [{"data": base64.b64encode(b'"x"').decode(),
                                                                           "metadata": {}}]})
            assert base64.b64decode(encoded.json()["payloads"][0]["metadata"]["encoding"]) == b"binary/encrypted"
            preflight = await http.options("/codec/decode", headers={
                "origin": "http://localhost:8233", "access-control-request-method": "POST",
                "access-control-request-headers": "authorization,content-type,x-namespace"})
            assert preflight.headers["access-control-allow-origin"] == "http://localhost:8233"
        async with authed_client(app, viewer) as http:
            assert (await http.post("/codec/decode", json=body)).status_code == 403
        async with authed_client(app, None) as http:
            assert (await http.post("/codec/decode", json=body)).status_code == 401


async def test_secrets_are_never_logged_nor_stored(temporal_env, api_settings, monkeypatch, capfd):
    """A job run with keys configured: no key value in any log line, the job document or the history."""
    previous = structlog.get_config()  # other tests (the CLI) raise the level; this one reads every line
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
                        logger_factory=structlog.PrintLoggerFactory(), cache_logger_on_first_use=False)
    try:
        await _run_job_and_scan(temporal_env, api_settings, monkeypatch, capfd)
    finally:
        structlog.configure(**previous)


async def _run_job_and_scan(temporal_env, api_settings, monkeypatch, capfd) -> None:
    payload_key, ngc_key = new_key(), f"nvapi-{uuid.uuid4().hex}SECRET"
    monkeypatch.setenv("FW_SEC_PAYLOAD_KEY", payload_key)
    monkeypatch.setenv("FW_SEC_NGC_KEY", ngc_key)
    queue = f"sec-secrets-{uuid.uuid4().hex[:8]}"
    settings = load_settings(environ={}, overrides={
        "platform": {"data_dir": api_settings.platform.data_dir},
        "temporal": {"task_queues": {"orchestrator": queue}},
        "nims": [{"model_name": "cand-a"}],
        "nmp_config": {"api_key_env": "FW_SEC_NGC_KEY"},
        "security": {"payload_encryption": {"keys": [{"id": "k1", "env": "FW_SEC_PAYLOAD_KEY"}]}}})
    client = await Client.connect(temporal_env.client.service_client.config.target_host,
                                  namespace=temporal_env.client.namespace,
                                  data_converter=data_converter_for(settings, pydantic_data_converter))
    store = KeyStore(default_keys_file(settings))
    operator, reviewer = store.create("sec-op", ["operator"])[0], store.create("sec-rev", ["reviewer"])[0]
    app = create_app(settings, temporal_client=client)
    async with (Worker(client, task_queue=queue, workflows=[FakeFlywheelRun]), app.router.lifespan_context(app),
                authed_client(app, operator) as op, authed_client(app, reviewer) as rev):
        job_id = await create_job(op)
        await wait_for(op, job_id, awaiting_review)
        assert (await rev.post(f"/api/jobs/{job_id}/promote", json={"model_name": "cand-a"})).status_code == 200
        doc = await wait_for(op, job_id, closed_as("completed"))
        bad = await op.get("/api/jobs", headers={"authorization": f"Bearer {operator[:-4]}beef"})
        assert bad.status_code == 401
        stored = app.state.flywheel.jobstore.get(job_id).model_dump_json()
        workflow_id = doc["workflow_id"]
    history = History(events=(await temporal_env.client.get_workflow_handle(workflow_id).fetch_history()).events)
    captured = capfd.readouterr()
    haystacks = {"logs": (captured.out + captured.err).encode(), "job document": (str(doc) + stored).encode(),
                 "history": history.SerializeToString()}
    needles = {"operator key": operator, "reviewer key": reviewer, "payload key": payload_key,
               "payload key bytes": base64.b64decode(payload_key), "NGC key": ngc_key}
    assert len(haystacks["logs"]) > 0 and b"audit" in haystacks["logs"]  # the scan saw the log lines
    for where, data in haystacks.items():
        for what, secret in needles.items():
            needle = secret if isinstance(secret, bytes) else secret.encode()
            assert needle not in data, f"{what} found in {where}"
    assert b"FW_SEC_NGC_KEY" not in haystacks["history"]  # even the env var NAME is inside the encrypted input
