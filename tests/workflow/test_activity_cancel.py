"""Who may cancel a remote job: a person cancelling the run, never a worker shutdown (rolling deploy).

Runs ``activities.common.run_with_heartbeat`` inside Temporal's ``ActivityEnvironment`` (real activity
context, no server): a cancellation runs ``on_cancel``; a worker shutdown that cancels the attempt does not.
The end-to-end check against the NeMo v1 contract emulator is
tests/integration/test_nemo_v1_flywheel.py::test_worker_sigterm_during_customize_and_evaluate_keeps_remote_jobs.
"""

from __future__ import annotations

import asyncio

import pytest
from temporalio.activity import ActivityCancellationDetails
from temporalio.testing import ActivityEnvironment

from activities.common import run_with_heartbeat


async def _cancelled_attempt(stop: str) -> list[str]:
    env = ActivityEnvironment()
    remote_cancels: list[str] = []
    started = asyncio.Event()

    async def call(progress) -> None:
        started.set()
        await asyncio.sleep(30)

    async def on_cancel() -> None:
        remote_cancels.append("cancel")

    async def attempt() -> None:
        await run_with_heartbeat(call, on_cancel=on_cancel, interval=0.05)

    task = asyncio.create_task(env.run(attempt))
    await asyncio.wait_for(started.wait(), 5)
    if stop == "worker_shutdown":
        env.worker_shutdown()  # the SDK then cancels the attempt (graceful timeout elapsed)
    if stop == "heartbeat_timeout":  # a loaded worker missed its heartbeats: the server timed the attempt out
        env.cancel(ActivityCancellationDetails(timed_out=True))
    else:
        env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    return remote_cancels


async def test_cancel_by_a_person_cancels_the_remote_job() -> None:
    assert await _cancelled_attempt("cancel") == ["cancel"]


async def test_worker_shutdown_never_cancels_the_remote_job() -> None:
    assert await _cancelled_attempt("worker_shutdown") == []


async def test_heartbeat_timeout_never_cancels_the_remote_job() -> None:
    assert await _cancelled_attempt("heartbeat_timeout") == []
