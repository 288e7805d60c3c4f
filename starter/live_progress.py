"""Live progress for running jobs, read from Temporal's pending activities.

Long activities (evaluation, training) report progress in their heartbeat details; workflows never
see those, and must not (they hold orchestration only). When a job is read while it runs, the
starter describes each candidate's child workflow and overlays the heartbeat details of its pending
``evaluate`` / ``customize`` activities onto the job document: evaluation ``progress`` (0..100),
customization ``progress``, ``steps_completed``, ``epochs_completed``, ``loss`` and ``checkpoint``. The
details are read through the typed reports of :mod:`flywheel.progress`, which every platform emits.
"""

from __future__ import annotations

from typing import Any

import structlog
from temporalio.client import Client

from flywheel.jobdoc import CustomizationDoc, JobDocument, NimDoc
from flywheel.progress import EvaluationProgress, TrainingProgress
from flywheel.vocabulary import CustomizationStatus
from workflows import models
from workflows.embedding_models import ACT_CUSTOMIZE_EMBEDDING

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


def apply_evaluation_progress(nim: NimDoc, details: dict[str, Any]) -> None:
    report = EvaluationProgress.read(details)
    if report is None:
        return
    evaluation = nim.evaluation(str(report.eval_type or ""))
    percent = report.percent_done()
    if evaluation is not None and percent is not None and evaluation.finished_at is None:
        evaluation.progress = percent


def apply_customization_progress(nim: NimDoc, details: dict[str, Any]) -> None:
    report = TrainingProgress.read(details)
    if report is None:
        return
    if not nim.customizations:
        nim.customizations.append(CustomizationDoc(status=CustomizationStatus.running))
    customization = nim.customizations[-1]
    if customization.finished_at is not None:
        return
    if (percent := report.percent_done()) is not None:
        customization.progress = float(percent)
    if (steps := report.steps()) is not None:
        customization.steps_completed = steps
    if (epochs := report.epochs()) is not None:
        customization.epochs_completed = epochs
    if report.loss is not None:
        customization.loss = report.loss
    if report.checkpoint:
        customization.checkpoint = report.checkpoint
    customization.status = CustomizationStatus.running


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
            elif activity_type in (models.ACT_CUSTOMIZE, ACT_CUSTOMIZE_EMBEDDING):
                apply_customization_progress(nim, details)
    return doc
