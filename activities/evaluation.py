"""Evaluation activity: one EvalSpec (deterministic name) against one endpoint."""

from __future__ import annotations

from typing import Any

from temporalio import activity

from activities.common import get_platform, run_with_heartbeat
from flywheel.types import EvalResult
from workflows.models import ACT_EVALUATE, EvaluateInput


@activity.defn(name=ACT_EVALUATE)
async def evaluate(inp: EvaluateInput) -> EvalResult:
    platform = get_platform(inp.settings)

    async def call(progress: Any) -> EvalResult:
        progress({"job": inp.spec.name, "eval_type": inp.spec.eval_type})
        return await platform.evaluate(inp.spec, progress=progress)

    async def on_cancel() -> None:
        await platform.cancel(inp.spec.name)

    return await run_with_heartbeat(call, on_cancel=on_cancel)
