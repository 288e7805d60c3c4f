"""Long activities: retried without an attempt cap, bounded by schedule-to-close; a stalled attempt fails
retryably ("Stalled") instead of heartbeating until its start-to-close timeout."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.common import run_with_heartbeat
from flywheel.jobdoc import JobDocument, NimStatus, RunStatus
from tests.helpers.temporal_workers import FAST, make_settings, running_workers
from tests.workflow.fakes import calls
from workflows.flywheel_run import FlywheelRun
from workflows.models import FlywheelJobInput, flywheel_workflow_id


async def _run(client: Client, settings, timeouts) -> JobDocument:
    inp = FlywheelJobInput(job_id="j1", workload_id="wl", client_id="cl", settings=settings, review_timeout_s=0,
                           timeouts=timeouts, eval_types=["base-eval"])
    async with running_workers(client, settings):
        handle = await client.start_workflow(FlywheelRun.run, inp, id=flywheel_workflow_id("wl", "cl", "j1"),
                                             task_queue=settings.temporal.task_queues.orchestrator,
                                             result_type=JobDocument)
        return await asyncio.wait_for(handle.result(), 60)


async def test_long_activity_outlives_the_quick_activity_attempt_cap(client: Client, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, models=("flaky",), customize=(), review_timeout_s=0)
    assert FAST.max_attempts == 3  # quick activities stop after 3; evaluate needs 5 here
    doc = await _run(client, settings, FAST)
    assert doc.status == RunStatus.completed, doc.error
    nim = doc.nim("flaky")
    assert nim.status == NimStatus.completed and nim.evaluations[0].error is None, nim
    attempts = [c["attempt"] for c in calls(tmp_path) if c["act"] == "evaluate" and c["phase"] == "start"]
    assert attempts == [1, 2, 3, 4, 5]


async def test_long_activity_retries_end_at_schedule_to_close(client: Client, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, models=("broken",), customize=(), review_timeout_s=0)
    timeouts = FAST.model_copy(update={"evaluate_schedule_to_close_s": 6, "retry_max_interval_s": 0.2})
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    doc = await _run(client, settings, timeouts)
    elapsed = loop.time() - t0
    (ev,) = doc.nim("broken").evaluations
    # Temporal ends it with a schedule-to-close timeout, or with the last attempt's error when the next
    # retry could not start before the deadline.
    assert ev.error and ("Timeout" in ev.error or "Unreachable" in ev.error), ev.error
    attempts = [c["attempt"] for c in calls(tmp_path) if c["act"] == "evaluate" and c["phase"] == "start"]
    assert len(attempts) > FAST.max_attempts  # no attempt cap: time, not count, ended it
    assert elapsed < 6 + 20, elapsed  # ...and it did end, near schedule-to-close


async def _attempt(call, stall_s: float):
    return await ActivityEnvironment().run(run_with_heartbeat, call, stall_s=stall_s, interval=0.05)


async def test_an_attempt_without_progress_fails_retryably_as_stalled() -> None:
    cancelled = []

    async def hung(progress) -> str:
        progress({"status": "running", "percentage_done": 10.0})
        try:
            while True:
                progress({"status": "running", "percentage_done": 10.0})  # the same poll again: not progress
                await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(ApplicationError) as err:
        await _attempt(hung, stall_s=0.5)
    assert err.value.type == "Stalled" and not err.value.non_retryable
    assert "percentage_done" in str(err.value)
    assert cancelled == [True]  # the platform call ran its own cancel handling
    assert 0.5 <= loop.time() - t0 < 3


async def test_an_attempt_that_keeps_progressing_is_not_stalled() -> None:
    async def steady(progress) -> str:
        for step in range(30):  # 1.5 s in all, far past the 0.3 s stall limit
            progress({"step": step})
            await asyncio.sleep(0.05)
        return "done"

    assert await _attempt(steady, stall_s=0.3) == "done"
