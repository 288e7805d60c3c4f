"""The job service: start, read, list, cancel, delete and review flywheel jobs (shared by the API and the CLI).

The job store is the system of record for documents; Temporal is the system of record for whether a
run is still alive. Reads of a running job ask the workflow itself (``status`` query) and fall back to
the stored document; finished jobs are served from the store, corrected when the store lags behind
Temporal (e.g. a run that was terminated before it could persist its final state).

The pieces live beside it: the errors (``job_errors``), ids and inputs (``job_requests``), the corrections
from Temporal (``job_reconciliation``), deletion (``job_deletion``) and the review Updates (``job_review``).
Their public names are importable from here too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from flywheel.config import DataSplitConfig, Settings
from flywheel.jobdoc import JobDocument, RunStatus, Stage
from flywheel.jobstore import DEFAULT_PAGE_SIZE, JobStore, next_revision
from flywheel.vocabulary import JobType
from starter.job_deletion import CLEANUP_WAIT, JobDeletion, delete_job
from starter.job_errors import (
    InvalidJobRequestError,
    JobAlreadyFinishedError,
    JobError,
    JobNotFoundError,
    JobPromotedError,
    JobStillRunningError,
    ReviewRejectedError,
    TemporalUnavailableError,
)
from starter.job_reconciliation import (
    QUERY_TIMEOUT,
    UNKNOWN_RUN_GRACE,
    execution_status,
    mark_finished,
    reconcile_finished,
    reconcile_page,
)
from starter.job_requests import (
    JOB_TYPES,
    is_job_id,
    job_search_attributes,
    new_job_id,
    resolve_data_split_config,
    settings_for,
    workflow_id_of,
)
from starter.job_review import UPDATE_TIMEOUT, review_update
from starter.live_progress import overlay_live_progress
from workflows import models

__all__ = [
    "CLEANUP_WAIT", "JOB_TYPES", "QUERY_TIMEOUT", "UNKNOWN_RUN_GRACE", "UPDATE_TIMEOUT",
    "InvalidJobRequestError", "JobAlreadyFinishedError", "JobDeletion", "JobError", "JobFilters",
    "JobNotFoundError", "JobPromotedError", "JobService", "JobStillRunningError", "ReviewRejectedError",
    "TemporalUnavailableError",
    "is_job_id", "job_search_attributes", "new_job_id", "resolve_data_split_config", "settings_for",
    "workflow_id_of",
]

log = structlog.get_logger("starter.job_service")


@dataclass(frozen=True)
class JobFilters:
    workload_id: str | None = None
    client_id: str | None = None
    status: str | None = None


class JobService:
    """Jobs as users see them: the job store holds the documents, Temporal runs them.

    The Temporal client is asked for (``client()``, which may connect lazily) only by the operations
    that need a run; listing works from the store alone.
    """

    def __init__(self, settings: Settings, jobstore: JobStore, client: Callable[[], Awaitable[Client]]) -> None:
        self._settings = settings
        self._jobstore = jobstore
        self._client = client
        self.cleanup_wait = CLEANUP_WAIT

    async def start(
        self,
        *,
        workload_id: str,
        client_id: str,
        data_split_config: DataSplitConfig | dict[str, Any] | None = None,
        job_type: str = JobType.llm,
        config_name: str | None = None,
        requested_by: str | None = None,
    ) -> JobDocument:
        """Persist a pending job document, then start its FlywheelRun workflow (``requested_by``: the
        authenticated principal, recorded in the document and the run's input).

        The document is written first so the job is listable even if the start fails; on a failed start
        it is marked ``failed`` with the reason and the error is raised.
        """
        client = await self._client()
        if job_type not in JOB_TYPES:
            raise InvalidJobRequestError(f"job_type: must be one of {', '.join(JOB_TYPES)} (got {job_type!r})")
        job_settings = settings_for(self._settings, config_name)
        split_override = resolve_data_split_config(job_settings, data_split_config)
        job_id = new_job_id()
        workflow_id = models.flywheel_workflow_id(workload_id, client_id, job_id)
        doc = JobDocument(
            id=job_id,
            workload_id=workload_id,
            client_id=client_id,
            status=RunStatus.pending,
            started_at=datetime.now(UTC),
            workflow_id=workflow_id,
            stage=Stage.pending,
            config_name=job_settings.config_name,
            job_type=job_type,
            requested_by=requested_by,
        )
        await asyncio.to_thread(self._jobstore.put, doc)
        job_input = models.FlywheelJobInput(
            job_id=job_id,
            workload_id=workload_id,
            client_id=client_id,
            settings=job_settings,
            data_split_config=split_override,
            job_type=job_type,
            config_name=job_settings.config_name,
            timeouts=job_settings.temporal.activity_timeouts,
            requested_by=requested_by,
        )
        try:
            await client.start_workflow(
                models.FLYWHEEL_WORKFLOW,
                job_input,
                id=workflow_id,
                task_queue=job_settings.temporal.task_queues.orchestrator,
                search_attributes=job_search_attributes(workload_id, client_id, job_type, Stage.pending),
            )
        except Exception as exc:
            doc.status, doc.stage = RunStatus.failed, Stage.failed
            doc.finished_at = datetime.now(UTC)
            doc.error = f"could not start workflow: {exc}"
            doc.revision += 1
            await asyncio.to_thread(self._jobstore.put, doc)
            log.error("job_start_failed", job_id=job_id, workflow_id=workflow_id, error=str(exc))
            if isinstance(exc, RPCError):
                raise TemporalUnavailableError(f"Temporal refused to start job {job_id}: {exc.message}") from exc
            raise
        log.info("job_started", job_id=job_id, workflow_id=workflow_id, workload_id=workload_id, client_id=client_id)
        return doc

    async def get(self, job_id: str) -> JobDocument | None:
        """Live document for a running job (``status`` query), stored document otherwise."""
        client = await self._client()
        doc = await asyncio.to_thread(self._jobstore.get, job_id)
        if doc is None:
            return None
        handle = client.get_workflow_handle(workflow_id_of(doc))
        try:
            execution = await execution_status(handle)
        except TemporalUnavailableError as exc:
            log.warning("job_status_unavailable", job_id=job_id, error=str(exc))
            return doc
        if execution is None:
            return doc  # listing declares it lost (after a grace period): GET stays a read of the store
        if execution in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW):
            try:
                live = await handle.query(models.STATUS_QUERY, result_type=JobDocument, rpc_timeout=QUERY_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - no worker polling, query failed: the stored copy still answers
                log.warning("job_status_query_failed", job_id=job_id, error=str(exc))
                return doc
            if not isinstance(live, JobDocument):
                return doc  # None before the run has built its document
            return await overlay_live_progress(client, live)
        return await reconcile_finished(self._jobstore, client, doc, execution)

    async def list(
        self,
        filters: JobFilters | dict[str, Any] | None = None,
        offset: int = 0,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> tuple[list[JobDocument], int]:
        """One page of stored jobs, newest first, and the number matching the filters."""
        if isinstance(filters, dict):
            filters = JobFilters(**filters)
        filters = filters or JobFilters()
        docs, total = await asyncio.to_thread(
            self._jobstore.list,
            workload_id=filters.workload_id,
            client_id=filters.client_id,
            status=filters.status,
            offset=offset,
            limit=limit,
        )
        return await reconcile_page(self._jobstore, self._client, docs), total

    async def cancel(self, job_id: str) -> JobDocument:
        """Request cancellation of a running job (children and heartbeating activities follow)."""
        client = await self._client()
        doc = await self._stored(job_id)
        handle = client.get_workflow_handle(workflow_id_of(doc))
        execution = await execution_status(handle)
        if execution is None:
            if doc.status.finished:
                raise JobAlreadyFinishedError("Cannot cancel a job that has already finished.")
            doc = next_revision(mark_finished(doc, RunStatus.cancelled), doc)  # never reached Temporal
            await asyncio.to_thread(self._jobstore.put, doc)
            return doc
        if execution not in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW):
            await reconcile_finished(self._jobstore, client, doc, execution)
            raise JobAlreadyFinishedError("Cannot cancel a job that has already finished.")
        try:
            await handle.cancel()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise JobAlreadyFinishedError("Cannot cancel a job that has already finished.") from exc
            raise TemporalUnavailableError(f"Temporal did not cancel job {job_id}: {exc.message}") from exc
        log.info("job_cancel_requested", job_id=job_id, workflow_id=handle.id)
        return doc

    async def delete(self, job_id: str) -> JobDeletion:
        """Delete a finished job: first everything its run created — on its platform, in the artifact store
        and in MLflow (flywheel.run_removal, by the RemoveRunResources workflow on the workers that hold
        the platform) — then its stored document. Running jobs must be cancelled first; nothing is terminated.
        If the clean-up has not answered within ``cleanup_wait``, the document stays and the error says so
        (DELETE again later: the clean-up is idempotent)."""
        client = await self._client()
        doc = await self._stored(job_id)
        return await delete_job(self._settings, self._jobstore, client, doc, self.cleanup_wait)

    async def promote(self, job_id: str, *, model_name: str, note: str | None = None, by: str | None = None) -> Any:
        """Promote a candidate of a run awaiting review; returns the update's result."""
        request = models.PromoteRequest(model_name=model_name, note=note, by=by)
        return await self._review_update(job_id, models.PROMOTE_UPDATE, request)

    async def reject(self, job_id: str, *, reason: str | None = None, by: str | None = None) -> Any:
        """Reject all candidates of a run awaiting review; returns the update's result."""
        request = models.RejectRequest(reason=reason, by=by)
        return await self._review_update(job_id, models.REJECT_UPDATE, request)

    async def _stored(self, job_id: str) -> JobDocument:
        doc = await asyncio.to_thread(self._jobstore.get, job_id)
        if doc is None:
            raise JobNotFoundError(f"Job with ID {job_id} not found")
        return doc

    async def _review_update(self, job_id: str, update_name: str, request: Any) -> Any:
        client = await self._client()
        doc = await self._stored(job_id)
        return await review_update(client, doc, update_name, request)
