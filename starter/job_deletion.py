"""Deleting a finished job: first everything its run created (on its platform, in the artifact store and in
MLflow, by the RemoveRunResources workflow on the workers that hold the platform), then its document."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from flywheel.config import Settings
from flywheel.jobdoc import JobDocument
from flywheel.jobstore import JobStore
from flywheel.vocabulary import ReviewOutcome
from starter.job_errors import JobPromotedError, JobStillRunningError, TemporalUnavailableError
from starter.job_reconciliation import execution_status
from starter.job_requests import settings_for, workflow_id_of
from workflows import models

log = structlog.get_logger("starter.job_deletion")

CLEANUP_WAIT = timedelta(seconds=60)  # DELETE waits this long for the platform clean-up


@dataclass(frozen=True)
class JobDeletion:
    doc: JobDocument
    removed: list[str]  # what the clean-up removed ("<kind>: <what>"), one line each
    removed_by_kind: dict[str, list[str]] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)  # what it left on purpose ("<kind>: <what> (kept: <why>)")


async def delete_job(settings: Settings, jobstore: JobStore, client: Client, doc: JobDocument,
                     cleanup_wait: timedelta) -> JobDeletion:
    """Refused for a running or promoted job; the document goes only after the clean-up answered."""
    execution = await execution_status(client.get_workflow_handle(workflow_id_of(doc)))
    if execution in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW):
        raise JobStillRunningError("Cannot delete a running job. Please cancel the job first.")
    review = doc.review or {}
    if review.get("decision") == ReviewOutcome.promoted:
        # Deleting it would silently drop a promotion from GET /api/workloads/{id}/promotions.
        raise JobPromotedError(f"job {doc.id} promoted {review.get('model_name')!r} for "
                               f"{doc.workload_id}/{doc.client_id}: the promotion history reads this job, "
                               "so it cannot be deleted")
    result = await remove_run_resources(settings, client, doc, cleanup_wait)
    await asyncio.to_thread(jobstore.delete, doc.id)
    log.info("job_deleted", job_id=doc.id, removed=len(result.removed), kept=len(result.kept))
    return JobDeletion(doc=doc, removed=list(result.removed), removed_by_kind=dict(result.removed_by_kind),
                       kept=list(result.kept))


async def remove_run_resources(served: Settings, client: Client, doc: JobDocument,
                               cleanup_wait: timedelta) -> models.RemoveRunResult:
    settings = settings_for(served, doc.config_name)
    resources = models.run_resources(doc, workflow_id_of(doc))
    inp = models.RemoveRunInput(settings=settings, job_id=doc.id, run_key=resources.run_key,
                                candidate_keys=resources.candidate_keys, resources=resources)
    try:
        handle = await client.start_workflow(
            models.CLEANUP_WORKFLOW, inp, id=f"remove-{workflow_id_of(doc)}",
            task_queue=settings.temporal.task_queues.orchestrator, result_type=models.RemoveRunResult,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
        result = await asyncio.wait_for(handle.result(), cleanup_wait.total_seconds())
    except TimeoutError as exc:
        raise TemporalUnavailableError(
            f"clean-up of job {doc.id} on its platform did not finish within "
            f"{cleanup_wait.total_seconds():.0f}s (are workers running?); the job was not deleted"
        ) from exc
    except RPCError as exc:
        raise TemporalUnavailableError(f"Temporal did not start the clean-up of job {doc.id}: "
                                       f"{exc.message}") from exc
    except Exception as exc:  # the workflow failed: say why, keep the document
        raise TemporalUnavailableError(f"clean-up of job {doc.id} failed: {exc}; the job was not deleted") \
            from exc
    return result
