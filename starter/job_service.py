"""The job service: start, read, list, cancel, delete and review flywheel jobs (shared by the API and the CLI).

The job store is the system of record for documents; Temporal is the system of record for whether a
run is still alive. Reads of a running job ask the workflow itself (``status`` query) and fall back to
the stored document; finished jobs are served from the store, corrected when the store lags behind
Temporal (e.g. a run that was terminated before it could persist its final state).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from flywheel.config import ConfigError, DataSplitConfig, Settings, format_validation_error, load_settings
from flywheel.jobdoc import JobDocument, RunStatus, Stage
from flywheel.jobstore import DEFAULT_PAGE_SIZE, JobStore, next_revision
from flywheel.vocabulary import JobType, ReviewOutcome
from starter.live_progress import overlay_live_progress
from workflows import models
from workflows.search_attributes import KEY_CLIENT_ID, KEY_JOB_TYPE, KEY_STAGE, KEY_WORKLOAD_ID

log = structlog.get_logger("starter.job_service")

QUERY_TIMEOUT = timedelta(seconds=5)
UPDATE_TIMEOUT = timedelta(seconds=30)
# A stored pending/running document whose run Temporal does not know is only declared lost after this long
# (a start may be in progress: the document is written before the workflow starts).
UNKNOWN_RUN_GRACE = timedelta(minutes=5)
CLEANUP_WAIT = timedelta(seconds=60)  # DELETE waits this long for the platform clean-up

JOB_TYPES = tuple(JobType)

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


# ---------------------------------------------------------------------------------------------- errors


class JobError(Exception):
    """Base of the typed errors the API maps to HTTP statuses."""


class JobNotFoundError(JobError):
    """No such job (404)."""


class JobAlreadyFinishedError(JobError):
    """The job has finished; it cannot be cancelled (400)."""


class JobStillRunningError(JobError):
    """The job is still running; it cannot be deleted (400)."""


class JobPromotedError(JobError):
    """The job's candidate was promoted: the promotion history reads its document, so it is kept (409)."""


class ReviewRejectedError(JobError):
    """The workflow refused a promote/reject update (409); the message is the validator's."""


class InvalidJobRequestError(JobError):
    """The request cannot start a job (bad override, unknown config_name, unknown job_type) (422)."""


class TemporalUnavailableError(JobError):
    """Temporal did not answer (503)."""


# ---------------------------------------------------------------------------------------------- ids


def new_job_id() -> str:
    """24 lowercase hex characters, the shape of the blueprint's Mongo ObjectId."""
    return secrets.token_hex(12)


def is_job_id(value: str) -> bool:
    return len(value) == 24 and all(c in "0123456789abcdef" for c in value)


def workflow_id_of(doc: JobDocument) -> str:
    return doc.workflow_id or models.flywheel_workflow_id(doc.workload_id, doc.client_id, doc.id)


def job_search_attributes(workload_id: str, client_id: str, job_type: str, stage: Stage) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(KEY_WORKLOAD_ID, workload_id),
            SearchAttributePair(KEY_CLIENT_ID, client_id),
            SearchAttributePair(KEY_STAGE, stage.value),
            SearchAttributePair(KEY_JOB_TYPE, job_type),
        ]
    )


def resolve_data_split_config(settings: Settings, override: DataSplitConfig | dict[str, Any] | None,
                              ) -> DataSplitConfig | None:
    """A per-job override merged over the configured split settings (fields not given keep config values)."""
    if override is None:
        return None
    given = override.model_dump(exclude_unset=True) if isinstance(override, DataSplitConfig) else dict(override)
    merged = {**settings.data_split_config.model_dump(), **given}
    try:
        return DataSplitConfig.model_validate(merged)
    except ValueError as exc:  # pydantic ValidationError is a ValueError
        detail = format_validation_error(exc) if hasattr(exc, "errors") else str(exc)
        raise InvalidJobRequestError(f"data_split_config: {detail}") from exc


def settings_for(settings: Settings, config_name: str | None) -> Settings:
    """The settings a job runs with: the served ones, or the named config when one is asked for."""
    if not config_name or config_name == settings.config_name:
        return settings
    try:
        return load_settings(config_name=config_name)
    except ConfigError as exc:
        raise InvalidJobRequestError(str(exc)) from exc


# ---------------------------------------------------------------------------------------------- jobs


async def _execution_status(handle: WorkflowHandle) -> WorkflowExecutionStatus | None:
    """The run's status, or None when Temporal no longer (or never) knew it."""
    try:
        return (await handle.describe()).status
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise TemporalUnavailableError(f"Temporal did not describe {handle.id}: {exc.message}") from exc


def _mark_finished(doc: JobDocument, status: RunStatus, reason: str | None = None) -> JobDocument:
    doc = doc.model_copy(deep=True)
    doc.status = status
    doc.stage = _FINISHED_STAGE[status]
    doc.finished_at = doc.finished_at or datetime.now(UTC)
    if status is RunStatus.failed and not doc.error:
        doc.error = reason or "workflow ended without recording a result"
    return doc


@dataclass(frozen=True)
class JobDeletion:
    doc: JobDocument
    removed: list[str]  # what the clean-up removed ("<kind>: <what>"), one line each
    removed_by_kind: dict[str, list[str]] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)  # what it left on purpose ("<kind>: <what> (kept: <why>)")


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
            execution = await _execution_status(handle)
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
        return await self._reconcile_finished(client, doc, execution)

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
        return await self._reconcile_page(docs), total

    async def _reconcile_page(self, docs: list[JobDocument]) -> list[JobDocument]:
        """Documents on this page that still say pending/running, checked against Temporal: a run that was
        terminated (Temporal UI), failed or timed out without recording it, or that Temporal no longer
        knows (retention passed), is stored with its real outcome. Without Temporal the stored page answers."""
        stale = [i for i, d in enumerate(docs) if not d.status.finished]
        if not stale:
            return docs
        try:
            client = await self._client()
        except Exception as exc:  # noqa: BLE001 - listing works from the store alone
            log.warning("job_list_reconcile_skipped", error=str(exc))
            return docs
        out = list(docs)

        async def one(i: int) -> None:
            try:
                out[i] = await self._reconcile(client, docs[i])
            except TemporalUnavailableError as exc:
                log.warning("job_status_unavailable", job_id=docs[i].id, error=str(exc))

        await asyncio.gather(*(one(i) for i in stale))
        return out

    async def _reconcile(self, client: Client, doc: JobDocument) -> JobDocument:
        execution = await _execution_status(client.get_workflow_handle(workflow_id_of(doc)))
        if execution is None:
            return await self._reconcile_unknown(doc)
        return await self._reconcile_finished(client, doc, execution)

    async def _reconcile_unknown(self, doc: JobDocument) -> JobDocument:
        """Temporal does not know the run: past retention, or its start never reached Temporal. A document
        younger than the grace period may be a start in progress and is left alone."""
        started = doc.started_at
        if started is not None and started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        if doc.status.finished or (started is not None and datetime.now(UTC) - started < UNKNOWN_RUN_GRACE):
            return doc
        reason = ("the run is no longer known to Temporal (its history passed retention, or it never started); "
                  f"last recorded stage: {getattr(doc.stage, 'value', doc.stage)}")
        fixed = next_revision(_mark_finished(doc, RunStatus.failed, reason=reason), doc)
        await asyncio.to_thread(self._jobstore.put, fixed)
        log.info("job_reconciled", job_id=doc.id, status=fixed.status.value, reason="unknown_to_temporal")
        return fixed

    async def cancel(self, job_id: str) -> JobDocument:
        """Request cancellation of a running job (children and heartbeating activities follow)."""
        client = await self._client()
        doc = await self._stored(job_id)
        handle = client.get_workflow_handle(workflow_id_of(doc))
        execution = await _execution_status(handle)
        if execution is None:
            if doc.status.finished:
                raise JobAlreadyFinishedError("Cannot cancel a job that has already finished.")
            doc = next_revision(_mark_finished(doc, RunStatus.cancelled), doc)  # never reached Temporal
            await asyncio.to_thread(self._jobstore.put, doc)
            return doc
        if execution not in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW):
            await self._reconcile_finished(client, doc, execution)
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
        execution = await _execution_status(client.get_workflow_handle(workflow_id_of(doc)))
        if execution in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.CONTINUED_AS_NEW):
            raise JobStillRunningError("Cannot delete a running job. Please cancel the job first.")
        review = doc.review or {}
        if review.get("decision") == ReviewOutcome.promoted:
            # Deleting it would silently drop a promotion from GET /api/workloads/{id}/promotions.
            raise JobPromotedError(f"job {job_id} promoted {review.get('model_name')!r} for "
                                   f"{doc.workload_id}/{doc.client_id}: the promotion history reads this job, "
                                   "so it cannot be deleted")
        result = await self._remove_run_resources(client, doc)
        await asyncio.to_thread(self._jobstore.delete, job_id)
        log.info("job_deleted", job_id=job_id, removed=len(result.removed), kept=len(result.kept))
        return JobDeletion(doc=doc, removed=list(result.removed), removed_by_kind=dict(result.removed_by_kind),
                           kept=list(result.kept))

    async def _remove_run_resources(self, client: Client, doc: JobDocument) -> models.RemoveRunResult:
        settings = settings_for(self._settings, doc.config_name)
        resources = models.run_resources(doc, workflow_id_of(doc))
        inp = models.RemoveRunInput(settings=settings, job_id=doc.id, run_key=resources.run_key,
                                    candidate_keys=resources.candidate_keys, resources=resources)
        try:
            handle = await client.start_workflow(
                models.CLEANUP_WORKFLOW, inp, id=f"remove-{workflow_id_of(doc)}",
                task_queue=settings.temporal.task_queues.orchestrator, result_type=models.RemoveRunResult,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
            result = await asyncio.wait_for(handle.result(), self.cleanup_wait.total_seconds())
        except TimeoutError as exc:
            raise TemporalUnavailableError(
                f"clean-up of job {doc.id} on its platform did not finish within "
                f"{self.cleanup_wait.total_seconds():.0f}s (are workers running?); the job was not deleted"
            ) from exc
        except RPCError as exc:
            raise TemporalUnavailableError(f"Temporal did not start the clean-up of job {doc.id}: "
                                           f"{exc.message}") from exc
        except Exception as exc:  # the workflow failed: say why, keep the document
            raise TemporalUnavailableError(f"clean-up of job {doc.id} failed: {exc}; the job was not deleted") \
                from exc
        return result

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

    async def _reconcile_finished(
        self, client: Client, doc: JobDocument, execution: WorkflowExecutionStatus
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
            fixed = _mark_finished(doc, status, reason=f"workflow {execution.name.lower()}")
        fixed = next_revision(fixed, doc)
        await asyncio.to_thread(self._jobstore.put, fixed)
        log.info("job_reconciled", job_id=doc.id, status=fixed.status.value)
        return fixed

    async def _review_update(self, job_id: str, update_name: str, request: Any) -> Any:
        client = await self._client()
        doc = await self._stored(job_id)
        handle = client.get_workflow_handle(workflow_id_of(doc))
        try:
            result = await handle.execute_update(update_name, request, rpc_timeout=UPDATE_TIMEOUT)
        except WorkflowUpdateFailedError as exc:
            reason = getattr(exc.cause, "message", None) or str(exc.cause or exc)
            log.info("job_review_rejected", job_id=job_id, update=update_name, reason=reason)
            raise ReviewRejectedError(reason) from exc
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise ReviewRejectedError(f"job {job_id} is not awaiting review: it has already finished") from exc
            if exc.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.UNAVAILABLE):
                raise TemporalUnavailableError(f"no answer from job {job_id} (is a worker running?)") from exc
            raise ReviewRejectedError(exc.message) from exc
        log.info("job_reviewed", job_id=job_id, update=update_name)
        return result
