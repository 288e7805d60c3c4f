"""A rolling deploy on the REAL NeMo Platform (v2): a worker shutting down while it waits on an evaluation job
leaves that job running, and the retry (a new worker) re-attaches to the same job by name instead of creating a
second one; a person's cancel does cancel it. ``nemo_platform`` lane (the services start from .venv-nemo).

The activity-level rule (only a cancel a person requested reaches the platform) is tested with Temporal in
tests/workflow/test_activity_cancel.py; this is the platform's side of it against the real services."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid

import pytest

from flywheel.config import Settings
from flywheel.platforms.nemo_v2 import NemoV2Platform, NemoV2Timing, job_name
from flywheel.types import EvalSpec
from tests.emulators.openai_scripted import ScriptedOpenAI
from tests.integration.test_nemo_v2 import CASES, record, responder

pytestmark = pytest.mark.nemo_platform

TIMING = NemoV2Timing(poll_interval_s=0.5, eval_timeout_s=300, provider_timeout_s=120)


async def _wait_for(predicate, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


async def _job(platform: NemoV2Platform, spec_name: str) -> dict:
    return (await platform._call("GET", platform.job_path(job_name(spec_name)))).json()


async def _status(platform: NemoV2Platform, spec_name: str) -> str:
    return str((await platform._call("GET", f"{platform.job_path(job_name(spec_name))}/status")).json()["status"])


async def test_worker_shutdown_keeps_the_job_and_the_retry_reattaches(nemo_platform):
    release = threading.Event()  # the candidate answers only once the first worker is gone

    def held(body: dict) -> dict:
        release.wait(90)
        return responder(body)

    candidate = ScriptedOpenAI(models=["cand-model"], responder=held).start()
    ws = f"fw{uuid.uuid4().hex[:8]}"
    settings = Settings(nmp_config={"nemo_base_url": nemo_platform, "nim_base_url": candidate.root_url,
                                    "nmp_namespace": ws}, nims=[{"model_name": "cand-model"}])
    old_worker = NemoV2Platform(settings, TIMING, is_worker_shutdown=lambda: True)  # its worker is shutting down
    new_worker = NemoV2Platform(settings, TIMING)
    person = NemoV2Platform(settings, TIMING)  # the probe says no shutdown: a cancel is a person's
    rows = [record(q, exp) for q, (exp, _) in list(CASES.items())[:3]]
    try:
        refs = await old_worker.put_datasets("wf-sd", {"eval": rows})
        endpoint = await old_worker.deploy(settings.nims[0], "wf-sd-cand-m-base")
        spec = EvalSpec(name="wf-sd-cand-m-base-eval", eval_type="base-eval", dataset=refs["eval"],
                        endpoint=endpoint, concurrency=1, max_retries=1, request_timeout_s=120)

        attempt = asyncio.create_task(old_worker.evaluate(spec))
        await _wait_for(lambda: len(candidate.requests) >= 1)  # the job runs and asks the candidate
        created = await _job(old_worker, spec.name)
        attempt.cancel()  # the worker shuts down: the attempt is cancelled
        with contextlib.suppress(asyncio.CancelledError):
            await attempt
        assert await _status(old_worker, spec.name) not in ("cancelled", "cancelling")

        release.set()
        result = await new_worker.evaluate(spec)  # the retry on another worker
        after = await _job(new_worker, spec.name)
        assert after.get("id") == created.get("id") and after.get("created_at") == created.get("created_at")
        assert await _status(new_worker, spec.name) == "completed"
        assert result.num_records == len(rows) and result.scores["function_name_and_args_accuracy"] is not None

        # A person's cancel of another evaluation reaches the platform.
        release.clear()
        other = spec.model_copy(update={"name": "wf-sd-cand-m-icl-eval", "eval_type": "icl-eval"})
        seen = len(candidate.requests)
        attempt = asyncio.create_task(person.evaluate(other))
        await _wait_for(lambda: len(candidate.requests) > seen)
        attempt.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await attempt
        release.set()
        deadline = time.monotonic() + 60
        while (status := await _status(person, other.name)) not in ("cancelled", "cancelling", "completed", "failed") \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        assert status in ("cancelled", "cancelling"), status
    finally:
        release.set()
        for platform in (old_worker, new_worker, person):
            await platform.close()
        candidate.stop()
