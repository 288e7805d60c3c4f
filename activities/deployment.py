"""Deployment activities: deploy (idempotent by name, heartbeats while waiting) and teardown."""

from __future__ import annotations

from typing import Any

from temporalio import activity

from activities.common import get_platform, run_with_heartbeat
from flywheel.types import Endpoint
from workflows.models import ACT_DEPLOY, ACT_TEARDOWN, DeployInput, TeardownInput


@activity.defn(name=ACT_DEPLOY)
async def deploy(inp: DeployInput) -> Endpoint:
    platform = get_platform(inp.settings)

    async def call(progress: Any) -> Endpoint:
        progress({"deployment_name": inp.name, "phase": "deploying"})
        return await platform.deploy(inp.nim, inp.name, adapter_uri=inp.adapter_uri, progress=progress)

    # The deployment is named deterministically: a retry re-attaches instead of deploying twice.
    return await run_with_heartbeat(call)


@activity.defn(name=ACT_TEARDOWN)
async def teardown(inp: TeardownInput) -> None:
    platform = get_platform(inp.settings)

    async def call(progress: Any) -> None:
        await platform.teardown(inp.endpoint)

    await run_with_heartbeat(call)
