"""A failed teardown (a deployment that may still be running) shows in the candidate's entry of the job
document — for a candidate that completed and for one that failed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.client import Client

from flywheel.jobdoc import JobDocument, NimStatus, RunStatus
from tests.helpers.temporal_workers import FAST, make_settings, running_workers
from workflows.flywheel_run import FlywheelRun
from workflows.models import FlywheelJobInput, flywheel_workflow_id


async def test_teardown_errors_and_leaked_deployments_are_in_the_candidate_entry(client: Client,
                                                                                  tmp_path: Path) -> None:
    settings = make_settings(tmp_path, models=("leak-ok", "leak-fail-deploy"), customize=(), review_timeout_s=0)
    inp = FlywheelJobInput(job_id="t1", workload_id="wl", client_id="cl", settings=settings, review_timeout_s=0,
                           timeouts=FAST, eval_types=["base-eval"])
    async with running_workers(client, settings):
        handle = await client.start_workflow(FlywheelRun.run, inp, id=flywheel_workflow_id("wl", "cl", "t1"),
                                             task_queue=settings.temporal.task_queues.orchestrator,
                                             result_type=JobDocument)
        doc = await asyncio.wait_for(handle.result(), 60)
    assert doc.status == RunStatus.completed, doc.error
    ok, failed = doc.nim("leak-ok"), doc.nim("leak-fail-deploy")
    assert ok.status == NimStatus.completed and failed.status == NimStatus.failed
    for nim in (ok, failed):
        (error,) = nim.teardown_errors
        assert "TeardownFailed" in error and "-base" in error, error
        (leaked,) = nim.leaked_resources
        assert leaked.startswith("deployment:") and leaked.endswith("-base"), leaked
