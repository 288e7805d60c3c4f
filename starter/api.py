"""Starter API: the blueprint's /api/jobs (same paths, bodies and document) plus review, ingest and schedules.

``create_app(settings)`` builds the app; its lifespan connects to Temporal and opens the stores. The API
keeps serving (``/health`` says ``temporal: error``; job routes answer 503) while Temporal is down and
reconnects on the next request. Run with ``python -m starter.serve [--config PATH | --config-name NAME]``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import Client

from flywheel.config import Settings
from flywheel.ingest import ingest_records
from flywheel.jobdoc import JobDocument, RunStatus
from flywheel.jobstore import MAX_PAGE_SIZE, JobStore, open_jobstore
from flywheel.logstore import open_logstore
from starter import job_service as jobs
from starter.api_errors import ApiError
from starter.api_models import (
    HealthResponse,
    JobActionResponse,
    JobListItem,
    JobRequest,
    JobResponse,
    JobsListResponse,
    LogBatch,
    PromoteBody,
    RejectBody,
    ReviewResponse,
)
from starter.api_promotions import promotions_router
from starter.api_schedules import schedules_router
from starter.api_security import audit, authorize, principal_of, secure_app
from starter.ids import ClientIdQuery, JobIdPath, WorkloadIdQuery
from starter.job_service import JobService
from starter.ui import include_ui
from workers.connection import connect

log = structlog.get_logger("starter.api")

MAX_LOG_BATCH_BYTES = 16 * 1024 * 1024
MAX_LOG_BATCH_RECORDS = 10_000
HEALTH_TIMEOUT_S = 3.0

_ERROR_STATUS: dict[type[jobs.JobError], int] = {
    jobs.JobNotFoundError: 404,
    jobs.JobAlreadyFinishedError: 400,
    jobs.JobStillRunningError: 400,
    jobs.ReviewRejectedError: 409,
    jobs.JobPromotedError: 409,
    jobs.InvalidJobRequestError: 422,
    jobs.TemporalUnavailableError: 503,
}


# ---------------------------------------------------------------------------------------------- state


class AppState:
    """What the routes share: settings, the (lazily re-)connected Temporal client and the stores."""

    def __init__(self, settings: Settings, temporal_client: Client | None, jobstore: JobStore | None, logstore: Any):
        self.settings = settings
        self.temporal_client = temporal_client
        self.jobstore = jobstore
        self.logstore = logstore
        self.logstore_error: str | None = None
        self.max_log_batch_records = MAX_LOG_BATCH_RECORDS
        self.max_log_batch_bytes = MAX_LOG_BATCH_BYTES
        self._connect_lock = asyncio.Lock()

    async def client(self) -> Client:
        if self.temporal_client is not None:
            return self.temporal_client
        async with self._connect_lock:
            if self.temporal_client is None:
                try:
                    self.temporal_client = await connect(self.settings)
                except Exception as exc:
                    log.warning("temporal_connect_failed", address=self.settings.temporal.address, error=str(exc))
                    raise ApiError(503, f"Temporal is unavailable at {self.settings.temporal.address}") from exc
        return self.temporal_client

    def store(self) -> JobStore:
        if self.jobstore is None:
            raise ApiError(503, "job store is not open")
        return self.jobstore

    def jobs(self) -> JobService:
        return JobService(self.settings, self.store(), self.client)


def _state(request: Request) -> AppState:
    return request.app.state.flywheel


def _open_logstore(settings: Settings) -> tuple[Any, str | None]:
    try:
        return open_logstore(settings), None
    except Exception as exc:  # noqa: BLE001 - missing extra, bad path: ingest answers 503, the rest works
        log.warning("logstore_unavailable", error=str(exc))
        return None, str(exc)


# ---------------------------------------------------------------------------------------------- errors


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return JSONResponse({"detail": "request body is not valid JSON"}, status_code=400)
    messages = [f"{_field_name(e.get('loc', ()))}: {e.get('msg')}" for e in errors]
    fields = [{"field": _field_name(e.get("loc", ())), "message": e.get("msg"), "type": e.get("type")} for e in errors]
    return JSONResponse({"detail": "; ".join(messages), "errors": fields}, status_code=422)


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)


async def _job_error(_: Request, exc: jobs.JobError) -> JSONResponse:
    status = next((code for kind, code in _ERROR_STATUS.items() if isinstance(exc, kind)), 500)
    return JSONResponse({"detail": str(exc)}, status_code=status)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", path=request.url.path, error_type=type(exc).__name__)
    return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, status_code=500)


# ---------------------------------------------------------------------------------------------- jobs

jobs_router = APIRouter(prefix="/api", tags=["jobs"])


@jobs_router.post("/jobs", response_model=JobResponse)
async def create_job(body: JobRequest, request: Request) -> JobResponse:
    """Start a flywheel run for a workload/client (blueprint-compatible)."""
    state = _state(request)
    doc = await state.jobs().start(
        workload_id=body.workload_id,
        client_id=body.client_id,
        data_split_config=body.data_split_config,
        job_type=body.job_type,
        config_name=body.config_name,
        requested_by=principal_of(request).label,
    )
    audit(request, "job.create", job_id=doc.id, workload_id=body.workload_id, client_id=body.client_id)
    # "queued" / "NIM workflow started" are what the blueprint answers; GET shows the run status.
    return JobResponse(id=doc.id, status="queued", message="NIM workflow started")


@jobs_router.get("/jobs", response_model=JobsListResponse)
async def list_jobs(
    request: Request,
    offset: int = Query(0, ge=0, description="Jobs to skip (newest first)."),
    limit: int = Query(50, ge=1, le=MAX_PAGE_SIZE, description="Page size."),
    workload_id: WorkloadIdQuery = None,
    client_id: ClientIdQuery = None,
    status: RunStatus | None = Query(None, description="Run status filter."),
) -> JobsListResponse:
    """Recent jobs, newest first, with pagination and filters."""
    filters = jobs.JobFilters(workload_id=workload_id, client_id=client_id, status=status.value if status else None)
    docs, total = await _state(request).jobs().list(filters, offset, limit)
    items = [JobListItem.model_validate(d.summary()) for d in docs]
    return JobsListResponse(jobs=items, total=total, offset=offset, limit=limit)


@jobs_router.get("/jobs/{job_id}", response_model=JobDocument)
async def get_job(job_id: JobIdPath, request: Request) -> JSONResponse:
    """The full job document (live while the run is in progress)."""
    state = _state(request)
    doc = await state.jobs().get(job_id)
    if doc is None:
        raise ApiError(404, f"Job with ID {job_id} not found")
    return JSONResponse(doc.model_dump(mode="json"))


@jobs_router.post("/jobs/{job_id}/cancel", response_model=JobActionResponse)
async def cancel_job(job_id: JobIdPath, request: Request) -> JobActionResponse:
    """Cancel a running job (400 if it has already finished)."""
    await _state(request).jobs().cancel(job_id)
    audit(request, "job.cancel", job_id=job_id)
    return JobActionResponse(id=job_id, message="Job cancellation initiated successfully.")


@jobs_router.delete("/jobs/{job_id}", response_model=JobActionResponse)
async def delete_job(job_id: JobIdPath, request: Request) -> JobActionResponse:
    """Delete a finished job (400 while running: cancel it first): everything its run created on its platform,
    in the artifact store and in MLflow, then its document. The answer lists what was removed, by kind, and
    what was kept and why."""
    state = _state(request)
    deletion = await state.jobs().delete(job_id)
    audit(request, "job.delete", job_id=job_id, removed=len(deletion.removed), kept=len(deletion.kept))
    counts = ", ".join(f"{len(names)} {kind}" for kind, names in deletion.removed_by_kind.items())
    message = f"Job deleted. Removed {counts}." if counts else "Job deleted. Nothing of it was left to remove."
    if deletion.kept:
        message += f" Kept: {'; '.join(deletion.kept)}."
    return JobActionResponse(id=job_id, message=message, removed=deletion.removed,
                             removed_by_kind=deletion.removed_by_kind, kept=deletion.kept)


@jobs_router.post("/jobs/{job_id}/promote", response_model=ReviewResponse)
async def promote_job(job_id: JobIdPath, body: PromoteBody, request: Request) -> ReviewResponse:
    """Promote a candidate of a run awaiting review (409 when the workflow refuses). The decision is
    recorded as made by the authenticated caller."""
    state = _state(request)
    by = principal_of(request).label
    result = await state.jobs().promote(job_id, model_name=body.model_name, note=body.note, by=by)
    audit(request, "job.promote", job_id=job_id, model_name=body.model_name)
    return ReviewResponse(
        id=job_id, decision="promoted", model_name=body.model_name, message="Candidate promoted.", result=_plain(result)
    )


@jobs_router.post("/jobs/{job_id}/reject", response_model=ReviewResponse)
async def reject_job(job_id: JobIdPath, request: Request, body: RejectBody | None = None) -> ReviewResponse:
    """Reject the candidates of a run awaiting review (409 when the workflow refuses)."""
    state = _state(request)
    body = body or RejectBody()
    by = principal_of(request).label
    result = await state.jobs().reject(job_id, reason=body.reason, by=by)
    audit(request, "job.reject", job_id=job_id)
    return ReviewResponse(id=job_id, decision="rejected", message="Candidates rejected.", result=_plain(result))


def _plain(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(value)
    return value


# ---------------------------------------------------------------------------------------------- logs + health

misc_router = APIRouter()


@misc_router.post("/api/logs", tags=["logs"])
async def ingest_logs(body: LogBatch, request: Request) -> JSONResponse:
    """Store a batch of production log records. Bad records are reported by index with the reason."""
    state = _state(request)
    if not body.records:
        raise ApiError(400, "records: must contain at least one record")
    if len(body.records) > state.max_log_batch_records:
        raise ApiError(413, f"records: at most {state.max_log_batch_records} records per batch "
                            f"(got {len(body.records)})")
    if state.logstore is None:
        raise ApiError(503, f"log store unavailable: {state.logstore_error or 'not configured'}")
    report = await asyncio.to_thread(
        ingest_records, body.records, state.logstore, workload_id=body.workload_id, client_id=body.client_id
    )
    audit(request, "logs.ingest", records=len(body.records), loaded=report.loaded, duplicates=report.duplicates,
          skipped=report.skipped, workload_id=body.workload_id, client_id=body.client_id)
    return JSONResponse(_jsonable(report))


def _jsonable(value: Any) -> Any:
    return jsonable_encoder(_plain(value))


@misc_router.get("/health", response_model=HealthResponse, tags=["health"])
async def health(request: Request) -> HealthResponse:
    """Liveness of the API and whether Temporal and the job store answer."""
    state = _state(request)
    temporal = "error"
    try:
        client = await asyncio.wait_for(state.client(), HEALTH_TIMEOUT_S)
        if await asyncio.wait_for(client.service_client.check_health(), HEALTH_TIMEOUT_S):
            temporal = "ok"
    except Exception:  # noqa: BLE001 - any failure means Temporal is not usable
        temporal = "error"
    jobstore = "ok"
    try:
        await asyncio.to_thread(state.store().list, limit=1)
    except Exception:  # noqa: BLE001 - any failure means the job store is not usable
        jobstore = "error"
    return HealthResponse(status="healthy", temporal=temporal, jobstore=jobstore)


# ---------------------------------------------------------------------------------------------- app


def create_app(
    settings: Settings,
    *,
    temporal_client: Client | None = None,
    jobstore: JobStore | None = None,
    logstore: Any = None,
    max_log_batch_records: int = MAX_LOG_BATCH_RECORDS,
    max_log_batch_bytes: int = MAX_LOG_BATCH_BYTES,
    bind_host: str | None = None,
) -> FastAPI:
    """The starter API. Stores passed in are used as they are (and not closed); otherwise opened from settings.

    Every route but /health needs a principal with the route's permission (starter/api_security.py).
    ``bind_host`` (default ``api.host``) is where it will listen: anonymous reads need a loopback bind.
    Raises ConfigError for insecure or incomplete security settings.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned_jobstore = jobstore is None
        state = AppState(settings, temporal_client, jobstore or open_jobstore(settings), logstore)
        owned_logstore = logstore is None
        if owned_logstore:
            state.logstore, state.logstore_error = _open_logstore(settings)
        state.max_log_batch_records = max_log_batch_records
        state.max_log_batch_bytes = max_log_batch_bytes
        app.state.flywheel = state
        if state.temporal_client is None:
            try:
                await state.client()
            except ApiError:
                pass  # logged; /health reports it and requests retry the connection
        log.info("api_started", temporal=settings.temporal.address, namespace=settings.temporal.namespace,
                 jobstore=settings.jobstore.kind, logstore=settings.logstore.kind)
        try:
            yield
        finally:
            if owned_jobstore and state.jobstore is not None:
                state.jobstore.close()
            if owned_logstore and state.logstore is not None and hasattr(state.logstore, "close"):
                state.logstore.close()
            log.info("api_stopped")

    app = FastAPI(
        title="Temporal Data Flywheel",
        description="Blueprint-compatible job API (/api/jobs) running flywheel jobs as Temporal workflows.",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(authorize)],
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(jobs.JobError, _job_error)
    app.add_exception_handler(Exception, _unexpected_error)

    @app.middleware("http")
    async def access_log_and_body_limit(request: Request, call_next: Any) -> Any:
        started = time.perf_counter()
        if request.url.path == "/api/logs":
            state = getattr(request.app.state, "flywheel", None)
            limit = state.max_log_batch_bytes if state else max_log_batch_bytes
            size = request.headers.get("content-length")
            if size and size.isdigit() and int(size) > limit:
                return JSONResponse(
                    {"detail": f"request body too large: {int(size)} bytes (limit {limit})"}, status_code=413
                )
        response = await call_next(request)
        log.info("http_request", method=request.method, path=request.url.path, status=response.status_code,
                 duration_ms=round((time.perf_counter() - started) * 1000, 1))
        return response

    app.include_router(jobs_router)
    app.include_router(schedules_router)
    app.include_router(promotions_router)
    app.include_router(misc_router)
    include_ui(app)  # the reviewer's page at /ui (reads and acts through the routes above)
    secure_app(app, settings, bind_host=bind_host)
    return app

