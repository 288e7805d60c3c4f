"""Activity plumbing in an ActivityEnvironment: heartbeat pump, error conversion, cancellation, resume."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import common
from flywheel.config import NIMConfig, Settings
from flywheel.types import CapabilityUnavailable, CustomizationResult, DatasetRef, PlatformError


async def test_pump_heartbeats_latest_progress_and_converts_errors() -> None:
    beats: list = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details[0] if details else None)

    async def ok() -> int:
        async def call(progress):
            progress({"step": 1})
            await asyncio.sleep(0.05)
            progress({"step": 2, "loss": 0.5})
            await asyncio.sleep(0.05)
            return 7

        return await common.run_with_heartbeat(call, interval=0.01)

    assert await env.run(ok) == 7
    assert beats[-1] == {"step": 2, "loss": 0.5}

    async def permanent() -> None:
        async def call(progress):
            raise PlatformError("model not found", retryable=False, error_type="NotFound")

        await common.run_with_heartbeat(call, interval=0.01)

    with pytest.raises(ApplicationError) as err:
        await env.run(permanent)
    assert err.value.type == "NotFound" and err.value.non_retryable and "model not found" in err.value.message

    async def unavailable() -> None:
        async def call(progress):
            raise CapabilityUnavailable("no trainer")

        await common.run_with_heartbeat(call, interval=0.01)

    with pytest.raises(ApplicationError) as err:
        await env.run(unavailable)
    assert err.value.type == "CapabilityUnavailable" and err.value.non_retryable


async def test_cancellation_runs_remote_cancel() -> None:
    env = ActivityEnvironment()
    cancelled: list[str] = []
    started = asyncio.Event()

    async def long() -> None:
        async def call(progress):
            started.set()
            await asyncio.sleep(30)

        async def on_cancel():
            cancelled.append("job-1")

        await common.run_with_heartbeat(call, on_cancel=on_cancel, interval=0.01)

    task = asyncio.create_task(env.run(long))
    await started.wait()
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled == ["job-1"]


async def test_customize_resumes_with_previous_heartbeat(monkeypatch) -> None:
    from activities.customization import customize
    from flywheel.config import LoRAConfig, TrainingConfig
    from flywheel.types import CustomizationSpec
    from workflows.models import CustomizeInput

    seen: dict = {}

    from flywheel.platforms.base import Platform as PlatformProtocol
    from flywheel.vocabulary import TaskQueueRole

    class Platform(PlatformProtocol):
        kind = "fake"
        customization_queue = TaskQueueRole.gpu  # like the local trainer: holds a device from the pool

        async def customize(self, spec, progress=None):
            seen["name"] = spec.name
            progress({"step": 6, "checkpoint": "file:///ckpt/6"})
            return CustomizationResult(customized_model="m", adapter_uri="file:///a", steps_completed=6,
                                       epochs_completed=1)

        async def cancel(self, name):
            pass

    monkeypatch.setattr(common, "get_platform", lambda settings: Platform())
    monkeypatch.setattr("activities.customization.get_platform", lambda settings: Platform())
    beats: list = []
    env = ActivityEnvironment()
    env.info = env.info.__class__(**{**env.info.__dict__, "heartbeat_details": [{"step": 5, "checkpoint": "file:///ckpt/5"}],
                                     "attempt": 2})
    env.on_heartbeat = lambda *d: beats.append(d[0] if d else None)
    ref = DatasetRef(name="t", split="train", uri="file:///t", num_records=10)
    spec = CustomizationSpec(name="wf-cand-m-customize", nim=NIMConfig(model_name="m"), train=ref,
                             training=TrainingConfig(), lora=LoRAConfig(), output_model="customized-m@j")
    result = await env.run(customize, CustomizeInput(settings=Settings(), spec=spec))
    assert result.steps_completed == 6 and seen["name"] == "wf-cand-m-customize"
    assert beats[0]["checkpoint"] == "file:///ckpt/5" and beats[0]["attempt"] == 2  # resume point visible at once
    assert beats[-1]["checkpoint"] == "file:///ckpt/6"
