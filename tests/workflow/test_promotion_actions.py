"""A promotion acts: the signed webhook is retried by Temporal until delivered, the report is re-rendered."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from temporalio.client import Client

from flywheel.config import PromotionConfig
from flywheel.jobdoc import RunStatus, Stage
from flywheel.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, verify
from tests.helpers.temporal_workers import make_settings, running_workers
from tests.workflow.fakes import FAKE_ACTIVITIES, calls
from tests.workflow.test_flywheel_run import replay, start, wait_stage
from workflows.models import PROMOTE_UPDATE, PromoteRequest

SECRET = "test-webhook-secret"


class Receiver(BaseHTTPRequestHandler):
    failures_left = 0
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append({"body": body, "signature": self.headers.get(SIGNATURE_HEADER),
                                    "delivery": self.headers.get(DELIVERY_HEADER)})
        status = 503 if type(self).failures_left > 0 else 200
        type(self).failures_left -= 1
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver():
    Receiver.failures_left, Receiver.received = 2, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_promotion_webhook_is_signed_retried_until_delivered_and_report_rerendered(
        client: Client, tmp_path: Path, receiver, monkeypatch) -> None:
    from activities.promotion import deliver_promotion_webhook, register_champion

    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET)
    settings = make_settings(tmp_path, ["alpha"], customize=())
    settings.promotion = PromotionConfig(webhook_url=receiver, webhook_secret_env="TEST_WEBHOOK_SECRET")
    async with running_workers(client, settings, [*FAKE_ACTIVITIES, deliver_promotion_webhook, register_champion]):
        handle = await start(client, settings, eval_types=["base-eval"])
        doc = await wait_stage(handle, Stage.awaiting_review)
        reports_before = sum(1 for c in calls(tmp_path) if c["act"] == "write_report")
        await handle.execute_update(PROMOTE_UPDATE, PromoteRequest(model_name="alpha", by="ana"))
        final = await handle.result()
    assert final.status == RunStatus.completed and final.stage == Stage.promoted
    # Two 503s, then delivered: Temporal retried the same signed event.
    assert final.review["actions"]["webhook"] == {"status": 200, "attempts": 3}
    assert len(Receiver.received) == 3
    assert {r["delivery"] for r in Receiver.received} == {doc.id}
    for attempt in Receiver.received:
        assert verify(attempt["body"], SECRET, attempt["signature"])
        assert not verify(attempt["body"], "wrong-secret", attempt["signature"])
    event = json.loads(Receiver.received[-1]["body"])
    assert (event["event"], event["job_id"], event["model_name"], event["decided_by"]) == (
        "promotion", doc.id, "alpha", "ana")
    assert event["workload_id"] == "wl" and event["evidence"]["verdict"] in ("pass", "fail", "inconclusive")
    # The report is written again after the decision, so it shows the review.
    assert sum(1 for c in calls(tmp_path) if c["act"] == "write_report") == reports_before + 1
    await replay(client, handle.id)


async def test_without_a_webhook_a_rejection_only_rerenders_the_report(client: Client, tmp_path: Path) -> None:
    from workflows.models import REJECT_UPDATE, RejectRequest

    settings = make_settings(tmp_path, ["alpha"], customize=())
    async with running_workers(client, settings):
        handle = await start(client, settings, eval_types=["base-eval"])
        await wait_stage(handle, Stage.awaiting_review)
        reports_before = sum(1 for c in calls(tmp_path) if c["act"] == "write_report")
        await handle.execute_update(REJECT_UPDATE, RejectRequest(reason="no", by="bo"))
        final = await handle.result()
    assert "actions" not in final.review
    assert sum(1 for c in calls(tmp_path) if c["act"] == "write_report") == reports_before + 1


async def test_a_local_judge_is_deployed_for_the_run_used_by_every_evaluation_and_torn_down(
        client: Client, tmp_path: Path) -> None:
    from flywheel.config import LLMJudgeConfig

    settings = make_settings(tmp_path, ["alpha", "beta"], customize=())
    settings.llm_judge_config = LLMJudgeConfig(deployment_type="local", model_name="judge-m")
    async with running_workers(client, settings):
        handle = await start(client, settings, eval_types=["base-eval"], review_timeout_s=0)
        final = await handle.result()
    judge_name = f"{handle.id}-judge"
    deploys = [c for c in calls(tmp_path) if c["act"] == "deploy" and c["phase"] == "done"]
    assert judge_name in {c["name"] for c in deploys}
    evaluations = [c for c in calls(tmp_path) if c["act"] == "evaluate" and c["phase"] == "start"]
    assert len(evaluations) == 2 and all(c["judge"] == ["http://fake/v1", "judge-m"] for c in evaluations)
    assert judge_name in {c["name"] for c in calls(tmp_path) if c["act"] == "teardown"}
    assert final.llm_judge.model_name == "judge-m" and final.llm_judge.type == "local"
    assert final.llm_judge.deployment_status.value == "completed" and final.llm_judge.error is None
    await replay(client, handle.id)
