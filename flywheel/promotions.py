"""Promotion records: who promoted which candidate of which job for a workload/client, on what evidence.

The job documents are the source of truth (a review decision is written into the document the run
persists), so the history is read from the JobStore rather than kept in a second table that could
drift from it. The evidence is the gate's verdict for the promoted model and the job's recommendation.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from flywheel.jobdoc import JobDocument
from flywheel.jobstore.base import JobStore

DECISION_PROMOTED = "promoted"
_PAGE = 200


class PromotionRecord(BaseModel):
    workload_id: str
    client_id: str
    job_id: str
    model_name: str
    decided_by: str | None = None
    decided_at: str | None = None
    note: str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict, description="The gate's verdict for the promoted model.")


def promotion_record(doc: JobDocument) -> PromotionRecord | None:
    """The promotion a job's review made, or None when it was not a promotion."""
    review = doc.review or {}
    if review.get("decision") != DECISION_PROMOTED or not review.get("model_name"):
        return None
    model = review["model_name"]
    nim = doc.nim(model)
    evidence: dict[str, Any] = dict(nim.gate or {}) if nim is not None else {}
    if doc.gate:
        evidence["recommendation"] = doc.gate.get("recommendation")
        evidence["recommendation_reason"] = doc.gate.get("recommendation_reason")
        evidence["configurations"] = [v for v in doc.gate.get("verdicts", []) if v.get("model_name") == model]
    return PromotionRecord(workload_id=doc.workload_id, client_id=doc.client_id, job_id=doc.id, model_name=model,
                           decided_by=review.get("by"), decided_at=review.get("decided_at"), note=review.get("note"),
                           evidence=evidence)


def promotion_history(store: JobStore, workload_id: str, client_id: str | None = None) -> list[PromotionRecord]:
    """Every promotion for the workload (and client), the most recent decision first."""
    records: list[PromotionRecord] = []
    offset = 0
    while True:
        docs, total = store.list(workload_id=workload_id, client_id=client_id, offset=offset, limit=_PAGE)
        records += [r for doc in docs if (r := promotion_record(doc)) is not None]
        offset += len(docs)
        if not docs or offset >= total:
            break
    return sorted(records, key=lambda r: r.decided_at or "", reverse=True)
