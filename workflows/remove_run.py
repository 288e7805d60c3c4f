"""RemoveRunResources: the platform clean-up behind DELETE /api/jobs/{id}, run where the platform lives
(the cpu queue's workers hold the local data directory / the NeMo credentials), retried durably."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.cleanup import remove_run_resources
    from workflows.common import retry_policy
    from workflows.models import CLEANUP_WORKFLOW, ActivityTimeouts, RemoveRunInput, RemoveRunResult


@workflow.defn(name=CLEANUP_WORKFLOW)
class RemoveRunResources:
    @workflow.run
    async def run(self, inp: RemoveRunInput) -> RemoveRunResult:
        t = ActivityTimeouts()
        return await workflow.execute_activity(
            remove_run_resources, inp, task_queue=inp.settings.temporal.task_queues.cpu,
            start_to_close_timeout=timedelta(seconds=t.short_start_to_close_s), retry_policy=retry_policy(t),
        )
