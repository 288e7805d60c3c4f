"""Customization activity: LoRA fine-tune, resumable.

The spec's name is derived from the workflow id, so a retried attempt (after a worker crash)
finds the trainer's own checkpoints / the remote job it already created. The previous attempt's
last heartbeat (``{step, epoch, loss, checkpoint, job}``) seeds this attempt's heartbeats, so the
resume point stays visible even before the trainer reports again.
"""

from __future__ import annotations

import logging
from typing import Any

from temporalio import activity

from activities.common import get_platform, previous_details, run_with_heartbeat
from flywheel.platforms.base import CustomizationResult
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
        return await platform.customize(inp.spec, progress=progress)

    async def on_cancel() -> None:
        await platform.cancel(inp.spec.name)

    return await run_with_heartbeat(call, initial=initial, on_cancel=on_cancel)
