"""Stored documents corrected from Temporal, the system of record for whether a run is still alive.

A document that still says pending/running while Temporal says the run finished (terminated from the
Temporal UI, failed or timed out before it could record it) or no longer knows it (retention passed, or
the start never reached Temporal) is stored again with its real outcome, one revision higher.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import structlog
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from flywheel.jobdoc import JobDocument, RunStatus, Stage
from flywheel.jobstore import JobStore, next_revision
from starter.job_errors import TemporalUnavailableError
from starter.job_requests import workflow_id_of

log = structlog.get_logger("starter.job_reconciliation")

QUERY_TIMEOUT = timedelta(seconds=5)
# A stored pending/running document whose run Temporal does not know is only declared lost after this long
# (a start may be in progress: the document is written before the workflow starts).
UNKNOWN_RUN_GRACE = timedelta(minutes=5)

_FINISHED_STATUS = {
    WorkflowExecutionStatus.COMPLETED: RunStatus.completed,
    WorkflowExecutionStatus.CANCELED: RunStatus.cancelled,
    WorkflowExecutionStatus.FAILED: RunStatus.failed,
    WorkflowExecutionStatus.TERMINATED: RunStatus.failed,
    WorkflowExecutionStatus.TIMED_OUT: RunStatus.failed,
}
_FINISHED_STAGE = {
    RunStatus.completed: Stage.completed, RunStatus.cancelled: Stage.cancelled, RunStatus.failed: Stage.failed,
}


async def execution_status(handle: WorkflowHandle) -> WorkflowExecutionStatus | None:
    """The run's status, or None when Temporal no longer (or never) knew it."""
    try:
        return (await handle.describe()).status
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise TemporalUnavailableError(f"Temporal did not describe {handle.id}: {exc.message}") from exc


def mark_finished(doc: JobDocument, status: RunStatus, reason: str | None = None) -> JobDocument:
    doc = doc.model_copy(deep=True)
    doc.status = status
    doc.stage = _FINISHED_STAGE[status]
    doc.finished_at = doc.finished_at or datetime.now(UTC)
    if status is RunStatus.failed and not doc.error:
        doc.error = reason or "workflow ended without recording a result"
    return doc


async def reconcile_page(jobstore: JobStore, connect: Callable[[], Awaitable[Client]],
                         docs: list[JobDocument]) -> list[JobDocument]:
    """Documents on this page that still say pending/running, checked against Temporal: a run that was
    terminated (Temporal UI), failed or timed out without recording it, or that Temporal no longer
    knows (retention passed), is stored with its real outcome. Without Temporal the stored page answers."""
    stale = [i for i, d in enumerate(docs) if not d.status.finished]
    if not stale:
        return docs
    try:
        client = await connect()
    except Exception as exc:  # noqa: BLE001 - listing works from the store alone
        log.warning("job_list_reconcile_skipped", error=str(exc))
        return docs
    out = list(docs)

    async def one(i: int) -> None:
        try:
            out[i] = await reconcile(jobstore, client, docs[i])
        except TemporalUnavailableError as exc:
            log.warning("job_status_unavailable", job_id=docs[i].id, error=str(exc))

    await asyncio.gather(*(one(i) for i in stale))
    return out


async def reconcile(jobstore: JobStore, client: Client, doc: JobDocument) -> JobDocument:
    execution = await execution_status(client.get_workflow_handle(workflow_id_of(doc)))
    if execution is None:
        return await reconcile_unknown(jobstore, doc)
    return await reconcile_finished(jobstore, client, doc, execution)


async def reconcile_unknown(jobstore: JobStore, doc: JobDocument) -> JobDocument:
    """Temporal does not know the run: past retention, or its start never reached Temporal. A document
    younger than the grace period may be a start in progress and is left alone."""
    started = doc.started_at
    if started is not None and started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    if doc.status.finished or (started is not None and datetime.now(UTC) - started < UNKNOWN_RUN_GRACE):
        return doc
    reason = ("the run is no longer known to Temporal (its history passed retention, or it never started); "
              f"last recorded stage: {getattr(doc.stage, 'value', doc.stage)}")
    fixed = next_revision(mark_finished(doc, RunStatus.failed, reason=reason), doc)
    await asyncio.to_thread(jobstore.put, fixed)
    log.info("job_reconciled", job_id=doc.id, status=fixed.status.value, reason="unknown_to_temporal")
    return fixed


async def reconcile_finished(
    jobstore: JobStore, client: Client, doc: JobDocument, execution: WorkflowExecutionStatus
) -> JobDocument:
    """A finished run whose stored document still says pending/running: take the truth from Temporal."""
    status = _FINISHED_STATUS.get(execution)
    if status is None or doc.status.finished:
        return doc
    fixed: JobDocument | None = None
    if execution == WorkflowExecutionStatus.COMPLETED:
        typed = client.get_workflow_handle(workflow_id_of(doc), result_type=JobDocument)
        try:
            fixed = await typed.result(rpc_timeout=QUERY_TIMEOUT)
        except Exception:  # noqa: BLE001 - the workflow may return something else; then the store copy is best
            fixed = None
    if not isinstance(fixed, JobDocument) or fixed.id != doc.id or not fixed.status.finished:
        fixed = mark_finished(doc, status, reason=f"workflow {execution.name.lower()}")
    fixed = next_revision(fixed, doc)
    await asyncio.to_thread(jobstore.put, fixed)
    log.info("job_reconciled", job_id=doc.id, status=fixed.status.value)
    return fixed
