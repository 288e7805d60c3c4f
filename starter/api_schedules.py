"""Schedule routes: one Temporal Schedule per (workload, client), managed through starter/schedules.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from temporalio.client import ScheduleAlreadyRunningError
from temporalio.service import RPCError, RPCStatusCode

from starter import schedules
from starter.api_errors import ApiError
from starter.api_models import ScheduleActionResponse, ScheduleRequest
from starter.api_security import audit, principal_of
from starter.ids import ScheduleIdPath, WorkloadIdQuery
from starter.job_requests import resolve_data_split_config, settings_for

schedules_router = APIRouter(prefix="/api/schedules", tags=["schedules"])


@contextmanager
def _schedule_errors(schedule_id: str | None = None) -> Iterator[None]:
    try:
        yield
    except ScheduleAlreadyRunningError as exc:
        raise ApiError(409, "a schedule for this workload and client already exists") from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise ApiError(404, f"Schedule {schedule_id} not found") from exc
        if exc.status == RPCStatusCode.ALREADY_EXISTS:
            raise ApiError(409, f"schedule already exists: {exc.message}") from exc
        if exc.status == RPCStatusCode.INVALID_ARGUMENT:
            raise ApiError(400, exc.message) from exc
        raise ApiError(503, f"Temporal error: {exc.message}") from exc
    except (ValueError, KeyError) as exc:  # bad cron spec, unknown config name
        raise ApiError(400, str(exc)) from exc


async def _client(request: Request) -> Any:
    return await request.app.state.flywheel.client()


@schedules_router.post("", status_code=201, response_model=ScheduleActionResponse)
async def create_schedule(body: ScheduleRequest, request: Request) -> ScheduleActionResponse:
    """Create the schedule that starts a flywheel run for a workload/client on a cron spec (overlap: skip).

    The runs use a snapshot of the settings taken now (``config_name`` picks a named config).
    """
    settings = settings_for(request.app.state.flywheel.settings, body.config_name)
    split = resolve_data_split_config(settings, body.data_split_config)
    client = await _client(request)
    with _schedule_errors():
        created = await schedules.create_schedule(
            client,
            settings,
            workload_id=body.workload_id,
            client_id=body.client_id,
            cron=body.cron,
            data_split_config=split,
            job_type=body.job_type,
            paused=body.paused,
            note=body.note,
            requested_by=principal_of(request).label,
        )
    audit(request, "schedule.create", schedule_id=str(created), workload_id=body.workload_id, client_id=body.client_id)
    return ScheduleActionResponse(id=str(created), message="Schedule created.")


@schedules_router.get("")
async def list_schedules(
    request: Request, workload_id: WorkloadIdQuery = None
) -> JSONResponse:
    """Flywheel schedules (visibility is eventually consistent: a new schedule can take a moment to appear)."""
    client = await _client(request)
    with _schedule_errors():
        items = await schedules.list_schedules(client, workload_id=workload_id)
    return JSONResponse(jsonable_encoder({"schedules": schedules.to_json(items)}))


@schedules_router.get("/{schedule_id}")
async def describe_schedule(schedule_id: ScheduleIdPath, request: Request) -> JSONResponse:
    """One schedule: spec, state, recent and next runs."""
    client = await _client(request)
    with _schedule_errors(schedule_id):
        described = await schedules.describe_schedule(client, schedule_id)
    return JSONResponse(jsonable_encoder(schedules.to_json(described)))


async def _act(request: Request, schedule_id: str, action: str, message: str) -> ScheduleActionResponse:
    client = await _client(request)
    with _schedule_errors(schedule_id):
        await getattr(schedules, f"{action}_schedule")(client, schedule_id)
    audit(request, f"schedule.{action}", schedule_id=schedule_id)
    return ScheduleActionResponse(id=schedule_id, message=message)


@schedules_router.post("/{schedule_id}/pause", response_model=ScheduleActionResponse)
async def pause_schedule(schedule_id: ScheduleIdPath, request: Request) -> ScheduleActionResponse:
    return await _act(request, schedule_id, "pause", "Schedule paused.")


@schedules_router.post("/{schedule_id}/unpause", response_model=ScheduleActionResponse)
async def unpause_schedule(schedule_id: ScheduleIdPath, request: Request) -> ScheduleActionResponse:
    return await _act(request, schedule_id, "unpause", "Schedule unpaused.")


@schedules_router.post("/{schedule_id}/trigger", response_model=ScheduleActionResponse)
async def trigger_schedule(schedule_id: ScheduleIdPath, request: Request) -> ScheduleActionResponse:
    client = await _client(request)
    with _schedule_errors(schedule_id):
        started = await schedules.trigger_schedule(client, schedule_id)
    audit(request, "schedule.trigger", schedule_id=schedule_id, workflow_id=started)
    if started is None:
        message = ("Trigger sent, but no run has started yet (Temporal had not recorded one after 5 s): "
                   "check the schedule's recent runs.")
    else:
        message = f"Schedule triggered: run {started} started (runs awaiting review never block it)."
    return ScheduleActionResponse(id=schedule_id, message=message, workflow_id=started)


@schedules_router.delete("/{schedule_id}", response_model=ScheduleActionResponse)
async def delete_schedule(schedule_id: ScheduleIdPath, request: Request) -> ScheduleActionResponse:
    return await _act(request, schedule_id, "delete", "Schedule deleted.")
