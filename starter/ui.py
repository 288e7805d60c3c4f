"""The reviewer's page at ``/ui``: job list, job page (results, gate verdicts, plot, curation, datasets), schedules.

How it fits the API (and why it holds no data itself):

* ``/ui``, ``/ui/jobs/{id}``, ``/ui/schedules`` are server-rendered *shells* (Jinja) with no job data.
* The page's script (``static/ui/ui.js``) reads the data from the same JSON API every client uses
  (``GET /api/jobs``, ``GET /api/jobs/{id}``, ``GET /api/schedules``), sending ``Authorization: Bearer <key>``
  when the user has pasted a key, and polls it for live status.
* It hands each document it fetched to ``POST /ui/render/...``, which renders the HTML fragment with Jinja
  (autoescaped: workload ids, model names and gate reasons cannot inject markup) and the report's plot.
  Those routes only format what the caller sent, so they read nothing the caller could not already read.
* Start, cancel, promote, reject and schedule actions are plain calls to the JSON API, so whatever
  authentication and roles the API enforces apply to the page unchanged.

Every page and fragment carries a strict Content-Security-Policy (scripts and styles from this app only,
images from this app or inline ``data:``) — no CDN, nothing loaded from elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import re
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import BaseModel, Field, ValidationError

from flywheel.jobdoc import JobDocument, RunStatus, Stage
from flywheel.report import fmt_cost, fmt_ms, fmt_score, fmt_score_ci
from starter.api_models import JobsListResponse
from starter.ui_views import cached_plot_png, fmt_value, job_view, verdict_class, warm_plotting

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates" / "ui"
STATIC_DIR = HERE / "static" / "ui"
STATIC_FILES = {"ui.js": "text/javascript; charset=utf-8", "ui.css": "text/css; charset=utf-8"}
MAX_RENDER_BYTES = 4 * 1024 * 1024
# Job ids are 24 hex characters; stored documents from elsewhere may differ, so accept any plain token.
JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_Model = TypeVar("_Model", bound=BaseModel)
POLL_MS = {"jobs": 3000, "job": 2000, "schedules": 10000}


def _when(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if value.utcoffset() is not None else "")
    return str(value)


def _status_class(value: Any) -> str:
    """A CSS class from a fixed set (run statuses and stages), never the raw value."""
    return str(value) if str(value) in _KNOWN_STATES else "other"


_KNOWN_STATES = {s.value for s in RunStatus} | {s.value for s in Stage}


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(score=fmt_score, score_ci=fmt_score_ci, ms=fmt_ms, cost=fmt_cost, value=fmt_value,
                       when=_when, verdict_class=verdict_class,
                       status_class=_status_class)
    return env


templates = _environment()


def _html(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    body = templates.get_template(template).render(**context)
    return HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)


async def _read_body(request: Request, model: type[_Model]) -> _Model:
    """The JSON body as ``model``, refusing bodies over MAX_RENDER_BYTES before reading them whole.

    Errors take the API's shapes: 413 too large, 400 not JSON, 422 naming the field (via the app's handlers).
    """
    size = request.headers.get("content-length")
    if size and size.isdigit() and int(size) > MAX_RENDER_BYTES:
        raise HTTPException(413, f"request body too large: {int(size)} bytes (limit {MAX_RENDER_BYTES})")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_RENDER_BYTES:
            raise HTTPException(413, f"request body too large (limit {MAX_RENDER_BYTES} bytes)")
    try:
        return model.model_validate_json(bytes(body))
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from exc


# ---------------------------------------------------------------------------------------------- pages

pages_router = APIRouter(prefix="/ui", include_in_schema=False)


_plotting_warmed = False


def _warm_plotting() -> None:
    """Import matplotlib off the request path once: the first job fragment would otherwise wait seconds for it."""
    global _plotting_warmed
    if not _plotting_warmed:
        _plotting_warmed = True
        threading.Thread(target=warm_plotting, name="ui-warm-matplotlib", daemon=True).start()


def _page(template: str, page: str, **context: Any) -> HTMLResponse:
    if page in ("jobs", "job"):
        _warm_plotting()
    return _html(template, page=page, poll_ms=POLL_MS.get(page, 3000), **context)


@pages_router.get("", response_class=HTMLResponse)
async def jobs_page(request: Request) -> HTMLResponse:
    query = request.query_params
    status = query.get("status") or ""
    filters = {
        "workload_id": query.get("workload_id", "")[:200],
        "client_id": query.get("client_id", "")[:200],
        "status": status if status in {s.value for s in RunStatus} else "",
    }
    return _page("jobs.jinja", "jobs", filters=filters, statuses=[s.value for s in RunStatus])


@pages_router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(job_id: str) -> HTMLResponse:
    if not JOB_ID.match(job_id):
        return _html("not_found.jinja", 404, page="not_found", what="job", name=job_id[:200])
    return _page("job.jinja", "job", job_id=job_id)


@pages_router.get("/schedules", response_class=HTMLResponse)
async def schedules_page() -> HTMLResponse:
    return _page("schedules.jinja", "schedules")


@pages_router.get("/static/{name}")
async def static_file(name: str) -> Response:
    media_type = STATIC_FILES.get(name)  # a fixed list: no path from the request reaches the filesystem
    if media_type is None:
        raise HTTPException(404, f"no static file {name!r}")
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
    return Response((STATIC_DIR / name).read_bytes(), media_type=media_type, headers=headers)


# ---------------------------------------------------------------------------------------------- fragments

render_router = APIRouter(prefix="/ui/render", include_in_schema=False)


class ScheduleList(BaseModel):
    schedules: list[dict[str, Any]] = Field(default_factory=list)


@render_router.post("/jobs", response_class=HTMLResponse)
async def render_jobs(request: Request) -> HTMLResponse:
    """The job list fragment for a ``GET /api/jobs`` answer."""
    listing = await _read_body(request, JobsListResponse)
    return _html("_jobs.jinja", listing=listing, pages=_pages(listing))


def _pages(listing: JobsListResponse) -> dict[str, int | None]:
    newer = max(listing.offset - listing.limit, 0) if listing.offset > 0 else None
    older = listing.offset + listing.limit if listing.offset + listing.limit < listing.total else None
    return {"newer": newer, "older": older, "first": listing.offset + 1 if listing.jobs else 0,
            "last": listing.offset + len(listing.jobs)}


@render_router.post("/job", response_class=HTMLResponse)
async def render_job(request: Request) -> HTMLResponse:
    """The job page's live part for a ``GET /api/jobs/{id}`` answer."""
    doc = await _read_body(request, JobDocument)
    png = await asyncio.to_thread(cached_plot_png, doc)
    return _html("_job.jinja", plot_base64=base64.b64encode(png).decode("ascii"), **job_view(doc))


@render_router.post("/schedules", response_class=HTMLResponse)
async def render_schedules(request: Request) -> HTMLResponse:
    """The schedule list fragment for a ``GET /api/schedules`` answer."""
    body = await _read_body(request, ScheduleList)
    rows = [{
        "schedule_id": str(s.get("schedule_id") or ""),
        "workload_id": s.get("workload_id"),
        "client_id": s.get("client_id"),
        "cron": fmt_value(s.get("cron") or []),
        "paused": bool(s.get("paused")),
        "note": s.get("note"),
        "recent_runs": [str(r) for r in s.get("recent_runs") or []][-3:],
        "next_runs": [str(r) for r in s.get("next_runs") or []][:2],
    } for s in body.schedules]
    return _html("_schedules.jinja", schedules=rows)


# ---------------------------------------------------------------------------------------------- wiring


def include_ui(app: FastAPI, render_dependencies: Sequence[Any] = ()) -> None:
    """Serve the page. ``render_dependencies`` (e.g. the API's authentication dependency) guard the fragment
    routes as well; the data itself is always read through the JSON API with the user's own credentials."""
    app.include_router(pages_router)
    app.include_router(render_router, dependencies=list(render_dependencies))
