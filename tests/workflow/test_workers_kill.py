"""Durability is a feature we test: SIGKILL the worker process mid-run, restart it, the run completes
and activities that had finished are not executed again."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid
from collections import Counter
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from flywheel.jobdoc import JobDocument, NimStatus, RunStatus
from tests.helpers.polling import wait_for
from tests.helpers.temporal_workers import FAST, make_settings, spawn_activity_worker
from tests.workflow.fakes import calls
from workflows.flywheel_run import FlywheelRun
from workflows.models import FlywheelJobInput, flywheel_workflow_id


def spawn_worker(settings_path: Path, log: Path) -> subprocess.Popen:
    return spawn_activity_worker("tests.workflow.fake_worker", settings_path, log)


async def test_sigkill_worker_mid_run_and_restart(temporal_env: WorkflowEnvironment, client: Client,
                                                  tmp_path: Path) -> None:
    address = client.service_client.config.target_host
    settings = make_settings(tmp_path, ["slow-k"], customize=(), address=address)
    settings_path = tmp_path / "settings.json"
    settings_path.write_text(settings.model_dump_json())
    log = tmp_path / "worker.log"
    timeouts = FAST.model_copy(update={"evaluate_heartbeat_s": 2})
    job_id = uuid.uuid4().hex[:8]
    inp = FlywheelJobInput(job_id=job_id, workload_id="wk", client_id="cl", settings=settings, review_timeout_s=0,
                           eval_types=["base-eval", "icl-eval"], timeouts=timeouts)
    first = spawn_worker(settings_path, log)
    second = None
    try:
        handle = await client.start_workflow(FlywheelRun.run, inp, id=flywheel_workflow_id("wk", "cl", job_id),
                                             task_queue=settings.temporal.task_queues.orchestrator,
                                             result_type=JobDocument)
        # Both evaluations are running in the first worker: kill it without any chance to clean up.
        await wait_for(lambda: len({c["name"] for c in calls(tmp_path)
                                    if c["act"] == "evaluate" and c["phase"] == "start"}) == 2, timeout=60)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = spawn_worker(settings_path, log)
        (tmp_path / "release").touch()
        doc = await asyncio.wait_for(handle.result(), 90)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    assert doc.status == RunStatus.completed, log.read_text()[-3000:]
    nim = doc.nim("slow-k")
    assert nim.status == NimStatus.completed
    assert {e.eval_type for e in nim.evaluations if e.scores} == {"base-eval", "icl-eval"}

    done = Counter(c["act"] for c in calls(tmp_path) if c["phase"] == "done")
    # Finished before the kill: exactly once.
    assert done["prepare_data"] == 1 and done["deploy"] == 1 and done["build_icl_dataset"] == 1
    # Interrupted evaluations were retried by the new worker (attempt 2) and finished once each.
    starts = [c for c in calls(tmp_path) if c["act"] == "evaluate" and c["phase"] == "start"]
    assert done["evaluate"] == 2
    assert {c["attempt"] for c in starts if c["pid"] == second.pid} == {2}
    assert {c["pid"] for c in calls(tmp_path) if c["act"] == "teardown"} == {second.pid}
