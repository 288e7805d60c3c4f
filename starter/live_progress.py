"""Live progress for running jobs, read from Temporal's pending activities.

Long activities (evaluation, training) report progress in their heartbeat details; workflows never
see those, and must not (they hold orchestration only). When a job is read while it runs, the
starter describes each candidate's child workflow and overlays the heartbeat details of its pending
``evaluate`` / ``customize`` activities onto the job document: evaluation ``progress`` (0..100),
customization ``progress``, ``steps_completed``, ``epochs_completed``, ``loss`` and ``checkpoint``.
"""

from __future__ import annotations

from typing import Any

import structlog
from temporalio.client import Client

from flywheel.jobdoc import CustomizationDoc, JobDocument, NimDoc
from workflows import models

log = structlog.get_logger(__name__)


async def pending_activity_details(client: Client, workflow_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(activity type, latest heartbeat details) for each pending activity of ``workflow_id``."""
    description = await client.get_workflow_handle(workflow_id).describe()
    out: list[tuple[str, dict[str, Any]]] = []
    for pending in description.raw_description.pending_activities:
        details: dict[str, Any] = {}
        if pending.heartbeat_details.payloads:
            decoded = await client.data_converter.decode(pending.heartbeat_details.payloads)
            if decoded and isinstance(decoded[0], dict):
                details = decoded[0]
        out.append((pending.activity_type.name, details))
    return out


def _percent(done: Any, total: Any) -> float | None:
    if isinstance(done, (int, float)) and isinstance(total, (int, float)) and total > 0:
        return round(100.0 * min(done, total) / total, 1)
    return None


def apply_evaluation_progress(nim: NimDoc, details: dict[str, Any]) -> None:
    evaluation = nim.evaluation(str(details.get("eval_type", "")))
    percent = _percent(details.get("done"), details.get("total"))
    if evaluation is not None and percent is not None and evaluation.finished_at is None:
        evaluation.progress = percent


def apply_customization_progress(nim: NimDoc, details: dict[str, Any]) -> None:
    if not nim.customizations:
        nim.customizations.append(CustomizationDoc(status="running"))
    customization = nim.customizations[-1]
    if customization.finished_at is not None:
        return
    percent = _percent(details.get("step"), details.get("total_steps"))
    if percent is None:
        percent = details.get("progress") if isinstance(details.get("progress"), (int, float)) else None
    if percent is not None:
        customization.progress = float(percent)
    for source, target in (("step", "steps_completed"), ("steps_completed", "steps_completed"),
                           ("epoch", "epochs_completed"), ("epochs_completed", "epochs_completed")):
        if isinstance(details.get(source), (int, float)):
            setattr(customization, target, int(details[source]))
    if isinstance(details.get("loss"), (int, float)):
        customization.loss = float(details["loss"])
    if details.get("checkpoint"):
        customization.checkpoint = str(details["checkpoint"])
    customization.status = "running"


async def overlay_live_progress(client: Client, doc: JobDocument) -> JobDocument:
    """``doc`` with heartbeat progress of its candidates' running activities applied (best effort)."""
    if not doc.workflow_id:
        return doc
    for nim in doc.nims:
        child_id = models.candidate_workflow_id(doc.workflow_id, nim.model_name)
        try:
            pending = await pending_activity_details(client, child_id)
        except Exception as exc:  # noqa: BLE001 - child not started yet or already gone: nothing live to show
            log.debug("live_progress_unavailable", workflow_id=child_id, error=str(exc))
            continue
        for activity_type, details in pending:
            if activity_type == models.ACT_EVALUATE:
                apply_evaluation_progress(nim, details)
            elif activity_type == models.ACT_CUSTOMIZE:
                apply_customization_progress(nim, details)
    return doc
