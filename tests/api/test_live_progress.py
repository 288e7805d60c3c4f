"""Live progress: heartbeat details of a candidate's running activities show up in the job document."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.worker import Worker

from flywheel.jobdoc import EvaluationDoc, JobDocument, NimDoc
from starter.live_progress import overlay_live_progress
from workflows import models

release = asyncio.Event()


@activity.defn(name=models.ACT_EVALUATE)
async def heartbeating_evaluate(eval_type: str) -> None:
    activity.heartbeat({"eval_type": eval_type, "done": 3, "total": 12, "errors": 0})
    await release.wait()


@activity.defn(name=models.ACT_CUSTOMIZE)
async def heartbeating_customize() -> None:
    activity.heartbeat({"step": 5, "total_steps": 20, "epoch": 0, "loss": 1.25, "checkpoint": "file:///ck/step-5"})
    await release.wait()


@workflow.defn(name="LiveProgressCandidate", sandboxed=False)
class LiveProgressCandidate:
    @workflow.run
    async def run(self) -> None:
        opts = {"start_to_close_timeout": timedelta(seconds=60)}
        await asyncio.gather(workflow.execute_activity(models.ACT_EVALUATE, "icl-eval", **opts),
                             workflow.execute_activity(models.ACT_CUSTOMIZE, **opts))


async def test_heartbeat_details_overlay_the_document(temporal_env):
    client, queue = temporal_env.client, f"live-{uuid.uuid4().hex[:8]}"
    parent_id = f"flywheel-w-c-{uuid.uuid4().hex[:8]}"
    doc = JobDocument(id="j", workload_id="w", client_id="c", workflow_id=parent_id, nims=[
        NimDoc(model_name="m", evaluations=[EvaluationDoc(eval_type="base-eval"), EvaluationDoc(eval_type="icl-eval")]),
        NimDoc(model_name="not-started"),
    ])
    async with Worker(client, task_queue=queue, workflows=[LiveProgressCandidate],
                      activities=[heartbeating_evaluate, heartbeating_customize]):
        handle = await client.start_workflow("LiveProgressCandidate", task_queue=queue,
                                             id=models.candidate_workflow_id(parent_id, "m"))
        try:
            for _ in range(100):
                live = await overlay_live_progress(client, doc.model_copy(deep=True))
                nim = live.nims[0]
                if nim.evaluation("icl-eval").progress and nim.customizations:
                    break
                await asyncio.sleep(0.1)
            assert nim.evaluation("icl-eval").progress == 25.0
            assert nim.evaluation("base-eval").progress == 0.0  # no activity for it: untouched
            customization = nim.customizations[0]
            assert (customization.progress, customization.steps_completed, customization.loss) == (25.0, 5, 1.25)
            assert customization.checkpoint == "file:///ck/step-5"
            assert live.nims[1].evaluations == [] and live.nims[1].customizations == []
        finally:
            release.set()
            await handle.result()
