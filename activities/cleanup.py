"""Removing what a finished run created on its platform (DELETE of a job): one platform call."""

from __future__ import annotations

from temporalio import activity

from activities.common import get_platform, to_application_error
from workflows.models import ACT_REMOVE_RUN, RemoveRunInput, RemoveRunResult


@activity.defn(name=ACT_REMOVE_RUN)
async def remove_run_resources(inp: RemoveRunInput) -> RemoveRunResult:
    platform = get_platform(inp.settings)
    try:
        removed = await platform.remove_run(inp.run_key, inp.candidate_keys)
    except Exception as exc:
        raise to_application_error(exc) from exc
    return RemoveRunResult(removed=[f"{platform.kind}: {item}" for item in removed])
