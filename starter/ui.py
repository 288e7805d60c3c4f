"""The reviewer's page, served by the starter API: ``/ui`` (jobs) and ``/ui/jobs/{id}`` (one job).

Server-rendered (Jinja) with a few lines of inline script that poll the JSON API for live status and
send the buttons' requests to the same ``/api`` routes every other client uses — no bundle, no CDN.
"""

from __future__ import annotations

import base64
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from flywheel.report import (
    ACCURACY,
    _flatten,
    fmt_cost,
    fmt_ms,
    fmt_score,
    fmt_score_ci,
    plot_png,
    results_rows,
)
from starter import client as jobs

TEMPLATES = Path(__file__).resolve().parent / "templates"
_env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "jinja"]))
_env.filters.update(score=fmt_score, score_ci=fmt_score_ci, ms=fmt_ms, cost=fmt_cost)

ui_router = APIRouter(include_in_schema=False)


@ui_router.get("/ui", response_class=HTMLResponse)
async def jobs_page(request: Request, workload_id: str | None = None, client_id: str | None = None,
                    status: str | None = None) -> HTMLResponse:
    """Job list with filters; the rows refresh themselves from ``GET /api/jobs``."""
    filters = {"workload_id": workload_id or "", "client_id": client_id or "", "status": status or ""}
    return HTMLResponse(_env.get_template("ui_jobs.html.jinja").render(filters=filters))


@ui_router.get("/ui/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(job_id: str, request: Request) -> HTMLResponse:
    state = request.app.state.flywheel
    doc = await jobs.get_job(await state.client(), state.store(), job_id)
    if doc is None:
        page = _env.get_template("ui_missing.html.jinja").render(job_id=job_id)
        return HTMLResponse(page, status_code=404)
    with_results = [n.model_name for n in doc.nims if any(e.scores and e.error is None for e in n.evaluations)]
    page = _env.get_template("ui_job.html.jinja").render(
        doc=doc, rows=results_rows(doc), accuracy=ACCURACY, gate=doc.gate, curation=_flatten(doc.curation),
        review=_flatten(doc.review or {}), candidates=with_results or [n.model_name for n in doc.nims],
        plot_base64=base64.b64encode(plot_png(doc)).decode("ascii"))
    return HTMLResponse(page)
