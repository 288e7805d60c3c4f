"""A flywheel run's job document as the FlywheelRun workflow builds and updates it.

Pure functions over the document: the workflow passes in what only it may read (``workflow.now()``,
its workflow id, the activities' results), so the workflow itself stays orchestration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from flywheel.config import Settings
from flywheel.jobdoc import DatasetDoc, JobDocument, NimDoc, NimStatus, RunStatus, Stage
from flywheel.judge import llm_judge_doc
from flywheel.types import DatasetRef
from flywheel.vocabulary import TERMINAL_CUSTOMIZATION_STATUSES, CustomizationStatus, JobType

TERMINAL_NIM_STATUSES = (NimStatus.completed, NimStatus.failed, NimStatus.cancelled)


def run_candidates(settings: Settings, job_type: str) -> list[Any]:
    """The job type's candidates: chat models (``nims``) or embedding models (``embedding_config``)."""
    if job_type == JobType.embedding:
        return list(settings.embedding_config.candidates)
    return list(settings.nims)


def new_run_document(settings: Settings, *, job_id: str, workflow_id: str, workload_id: str, client_id: str,
                     job_type: str, config_name: str | None, requested_by: str | None,
                     started_at: datetime) -> JobDocument:
    """The running job's document at its start: one pending entry per candidate, the judge's entry."""
    return JobDocument(
        id=job_id, workload_id=workload_id, client_id=client_id, status=RunStatus.running,
        started_at=started_at, workflow_id=workflow_id, job_type=job_type,
        config_name=config_name or settings.config_name,
        nims=[NimDoc(model_name=n.model_name) for n in run_candidates(settings, job_type)],
        llm_judge=llm_judge_doc(settings.llm_judge_config, settings.platform.kind),
        requested_by=requested_by,
    )


def record_prepared_data(doc: JobDocument, *, num_records: int, curation: dict[str, Any], manifest_hash: str,
                         datasets: Mapping[str, DatasetRef]) -> None:
    doc.num_records = num_records
    doc.curation = curation
    doc.manifest_hash = manifest_hash
    doc.datasets = [DatasetDoc(name=r.name, num_records=r.num_records, nmp_uri=r.platform_uri or r.uri,
                               split=split_name) for split_name, r in datasets.items()]


def apply_candidate_update(doc: JobDocument, nim: NimDoc) -> None:
    """A child's report replaces its entry, unless the entry already has its final status."""
    for i, current in enumerate(doc.nims):
        if current.model_name == nim.model_name and current.status not in TERMINAL_NIM_STATUSES:
            doc.nims[i] = nim


def failed_candidate(current: NimDoc, details: Sequence[Any], error: str) -> NimDoc:
    """A failed child's entry: the document it sent with its failure (else the last one it reported), failed."""
    failed = NimDoc.model_validate(details[0]) if details and isinstance(details[0], dict) else None
    nim = failed or current.model_copy()
    nim.status = NimStatus.failed
    nim.error = nim.error or error
    return nim


def apply_mlflow_uris(doc: JobDocument, uris: Mapping[str, str]) -> None:
    """The MLflow run of each evaluation (``uris`` keyed ``<model_name>/<eval_type>``)."""
    for nim in doc.nims:
        for ev in nim.evaluations:
            ev.mlflow_uri = uris.get(f"{nim.model_name}/{ev.eval_type}", ev.mlflow_uri)


def models_with_results(doc: JobDocument) -> list[str]:
    return [n.model_name for n in doc.nims if any(e.scores and e.error is None for e in n.evaluations)]


def not_reviewable_reason(doc: JobDocument | None, decided: bool, action: str) -> str | None:
    """Why ``action`` (promote/reject) is refused now, or None when the run awaits review."""
    if doc is None or doc.stage != Stage.awaiting_review or decided:
        stage = doc.stage.value if doc is not None else "pending"
        return (f"{action}: job {doc.id if doc else '?'} is in stage {stage!r}; "
                f"promote/reject is only possible in stage 'awaiting_review'")
    return None


def unknown_candidate_reason(doc: JobDocument, model_name: str) -> str | None:
    """Why ``model_name`` cannot be promoted (not a candidate with results), or None."""
    with_results = models_with_results(doc)
    if model_name not in with_results:
        return (f"promote: model {model_name!r} is not a candidate with results in job {doc.id} "
                f"(candidates with results: {', '.join(with_results) or 'none'})")
    return None


def mark_run_completed(doc: JobDocument, now: datetime) -> None:
    doc.status = RunStatus.completed
    doc.finished_at = now


def mark_run_failed(doc: JobDocument, error: str, now: datetime) -> None:
    doc.status, doc.stage = RunStatus.failed, Stage.failed
    doc.error = error
    doc.finished_at = now


def mark_run_cancelled(doc: JobDocument, now: datetime) -> None:
    """The run and whatever a child last reported as running are cancelled (a cancelled child does not
    report again), so the stored document never shows a dead run's steps as running."""
    doc.status, doc.stage = RunStatus.cancelled, Stage.cancelled
    doc.error = doc.error or "cancelled"
    doc.finished_at = now
    for nim in doc.nims:
        if nim.status not in TERMINAL_NIM_STATUSES:
            nim.status = NimStatus.cancelled
        for cust in nim.customizations:
            if cust.status not in TERMINAL_CUSTOMIZATION_STATUSES:
                cust.status, cust.finished_at = CustomizationStatus.cancelled, cust.finished_at or now
        for evaluation in nim.evaluations:
            if evaluation.finished_at is None and evaluation.error is None:
                evaluation.error = "cancelled"
