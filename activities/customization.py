"""Customization activity: LoRA fine-tune, resumable.

The spec's name is derived from the workflow id, so a retried attempt (after a worker crash)
finds the trainer's own checkpoints / the remote job it already created. The previous attempt's
last heartbeat (``{step, epoch, loss, checkpoint, job}``) seeds this attempt's heartbeats, so the
resume point stays visible even before the trainer reports again.

On worker shutdown (SIGTERM) the platform is asked to suspend: the local trainer checkpoints and stops at
once, so the attempt fails retryably and the next worker resumes from that checkpoint with no step
repeated. Remote platforms keep their job running (their suspend does nothing) and the next attempt
re-attaches to it. Training that runs on this worker's devices (customization on the gpu queue) holds
one device from the pool while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from temporalio import activity

from activities.common import get_platform, previous_details, run_with_heartbeat
from activities.devices import device_pool
from flywheel.platforms.base import Platform
from flywheel.types import CustomizationResult
from flywheel.vocabulary import TaskQueueRole
from workflows.models import ACT_CUSTOMIZE, CustomizeInput

log = logging.getLogger("flywheel.activities.customization")


@activity.defn(name=ACT_CUSTOMIZE)
async def customize(inp: CustomizeInput) -> CustomizationResult:
    platform = get_platform(inp.settings)
    resume = previous_details()
    info = activity.info()
    if resume:
        log.info(
            "customize resuming",
            extra={"job": inp.spec.name, "attempt": info.attempt, "checkpoint": resume.get("checkpoint"),
                   "step": resume.get("step")},
        )
    initial = {**resume, "job": inp.spec.name, "attempt": info.attempt}

    async def call(progress: Any) -> CustomizationResult:
        watcher = asyncio.create_task(_suspend_on_worker_shutdown(platform, inp.spec.name))
        try:
            if inp.spec.device is not None or platform.customization_queue != TaskQueueRole.gpu:
                return await platform.customize(inp.spec, progress=progress)
            async with device_pool().hold() as device:
                progress({"device": device})
                return await platform.customize(inp.spec.model_copy(update={"device": device}), progress=progress)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def on_cancel() -> None:
        await platform.cancel(inp.spec.name)

    return await run_with_heartbeat(call, initial=initial, on_cancel=on_cancel)


async def _suspend_on_worker_shutdown(platform: Platform, name: str) -> None:
    await activity.wait_for_worker_shutdown()
    log.info("customize suspending for worker shutdown", extra={"job": name})
    await platform.suspend(name)
