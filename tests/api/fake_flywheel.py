"""A small stand-in registered as "FlywheelRun": the API is tested without the real pipeline.

It exposes the same contract the API relies on: the ``status`` query (blueprint-shaped document),
``promote`` / ``reject`` updates with validators, Temporal cancellation, and a JobDocument result.
The run goes straight to ``awaiting_review`` with the configured candidates.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from flywheel.jobdoc import JobDocument, NimDoc, RunStatus, Stage
    from workflows.models import (
        FLYWHEEL_WORKFLOW,
        PROMOTE_UPDATE,
        REJECT_UPDATE,
        STATUS_QUERY,
        FlywheelJobInput,
        PromoteRequest,
        RejectRequest,
    )

# The candidates the API tests configure (``api_settings``); the stand-in reports whatever is configured.
FAKE_CANDIDATES = ["cand-a", "cand-b"]


@workflow.defn(name=FLYWHEEL_WORKFLOW)
class FakeFlywheelRun:
    @workflow.init
    def __init__(self, job: FlywheelJobInput) -> None:
        self._doc = JobDocument(
            id=job.job_id,
            workload_id=job.workload_id,
            client_id=job.client_id,
            status=RunStatus.running,
            stage=Stage.awaiting_review,
            started_at=workflow.now(),
            workflow_id=workflow.info().workflow_id,
            job_type=job.job_type,
            config_name=job.config_name,
            nims=[NimDoc(model_name=n.model_name) for n in job.settings.nims],
        )
        split = job.data_split_config
        self._doc.curation = {"data_split_config": split.model_dump() if split else None}
        self._decided = False
        # Like the real run before it has built its document: the status query answers None.
        self._hide_document = job.workload_id.startswith("nodoc-")

    @workflow.run
    async def run(self, job: FlywheelJobInput) -> JobDocument:
        try:
            await workflow.wait_condition(lambda: self._decided)
        except asyncio.CancelledError:
            self._doc.status, self._doc.stage = RunStatus.cancelled, Stage.cancelled
            raise
        self._doc.status = RunStatus.completed
        self._doc.finished_at = workflow.now()
        return self._doc

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> JobDocument | None:
        return None if self._hide_document else self._doc

    def _check_awaiting_review(self) -> None:
        if self._doc.stage is not Stage.awaiting_review:
            raise ValueError(f"job is not awaiting review (stage: {self._doc.stage.value})")

    @workflow.update(name=PROMOTE_UPDATE)
    def promote(self, request: PromoteRequest) -> dict:
        self._doc.stage = Stage.promoted
        self._doc.review = {"decision": "promoted", "model_name": request.model_name, "note": request.note,
                            "by": request.by}
        self._decided = True
        return self._doc.review

    @promote.validator
    def _validate_promote(self, request: PromoteRequest) -> None:
        self._check_awaiting_review()
        names = [n.model_name for n in self._doc.nims]
        if request.model_name not in names:
            raise ValueError(f"{request.model_name!r} is not a candidate of this run (candidates: {', '.join(names)})")

    @workflow.update(name=REJECT_UPDATE)
    def reject(self, request: RejectRequest) -> dict:
        self._doc.stage = Stage.rejected
        self._doc.review = {"decision": "rejected", "reason": request.reason, "by": request.by}
        self._decided = True
        return self._doc.review

    @reject.validator
    def _validate_reject(self, request: RejectRequest) -> None:
        self._check_awaiting_review()
