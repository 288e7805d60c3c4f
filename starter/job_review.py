"""The review actions on a run awaiting review: promote a candidate or reject them all (workflow Updates)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from flywheel.jobdoc import JobDocument
from starter.job_errors import ReviewRejectedError, TemporalUnavailableError
from starter.job_requests import workflow_id_of

log = structlog.get_logger("starter.job_review")

UPDATE_TIMEOUT = timedelta(seconds=30)


async def review_update(client: Client, doc: JobDocument, update_name: str, request: Any) -> Any:
    """Send the review Update to the job's run; the workflow's validator decides (its refusal is a 409)."""
    job_id = doc.id
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
