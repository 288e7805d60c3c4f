"""FlywheelRun: one flywheel job — prepare data, one CandidateRun child per candidate (bounded),
aggregate, report, then wait for a human's promote / reject (Updates) or the review timeout.

``job_type: embedding_job`` runs the same stages for a retriever: retrieval data preparation and one
EmbeddingCandidateRun child per ``embedding_config.candidates`` entry (no icl-eval: the document says so).

The live job document is built here (times from ``workflow.now()``), exposed by the ``status``
query and persisted to the JobStore at every stage change, so it outlives Temporal's retention.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError, is_cancelled_exception
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.data import prepare_data
    from activities.deployment import deploy, teardown
    from activities.embedding import prepare_retrieval_data
    from activities.persistence import aggregate_results, log_mlflow, persist_job, write_report
    from activities.promotion import deliver_promotion_webhook, register_champion
    from flywheel.ids import run_key
    from flywheel.jobdoc import DeploymentStatus, JobDocument, NimDoc, NimStatus, Stage
    from flywheel.judge import needs_deployment
    from flywheel.promotions import promotion_record
    from flywheel.run_document import (
        apply_candidate_update,
        apply_mlflow_uris,
        failed_candidate,
        mark_run_cancelled,
        mark_run_completed,
        mark_run_failed,
        new_run_document,
        not_reviewable_reason,
        record_prepared_data,
        run_candidates,
        unknown_candidate_reason,
    )
    from flywheel.types import Endpoint
    from flywheel.vocabulary import EvalType, JobType, ReviewOutcome
    from workflows.candidate_run import CandidateRun
    from workflows.common import (
        error_text,
        error_type,
        failure_details,
        long_options,
        retry_policy,
        short_options,
    )
    from workflows.embedding_candidate_run import EmbeddingCandidateRun
    from workflows.embedding_models import ICL_NOT_APPLICABLE, EmbeddingCandidateInput
    from workflows.models import (
        CANDIDATE_UPDATE_SIGNAL,
        FLYWHEEL_WORKFLOW,
        PATCH_COLLISION_FREE_CHILD_IDS,
        PROMOTE_UPDATE,
        REJECT_UPDATE,
        STATUS_QUERY,
        ActivityTimeouts,
        AggregateInput,
        CandidateInput,
        CandidateResult,
        DeployInput,
        FlywheelJobInput,
        PersistJobInput,
        PrepareDataInput,
        PreparedData,
        PromoteRequest,
        PromotionInput,
        RejectRequest,
        ReportInput,
        ReviewDecision,
        TeardownInput,
        candidate_workflow_id,
        job_id_from_workflow_id,
        legacy_candidate_workflow_id,
    )
    from workflows.search_attributes import KEY_CLIENT_ID, KEY_JOB_TYPE, KEY_STAGE, KEY_WORKLOAD_ID

T = TypeVar("T")
# workflow.patched ids: runs recorded before these steps existed replay without them.
PATCH_ACT_ON_REVIEW = "act-on-review"
PATCH_DEPLOY_JUDGE = "deploy-local-judge"


@workflow.defn(name=FLYWHEEL_WORKFLOW)
class FlywheelRun:
    @workflow.init
    def __init__(self, inp: FlywheelJobInput) -> None:
        self._inp, self._settings = inp, inp.settings
        self._timeouts = inp.timeouts or ActivityTimeouts()
        self._cpu = inp.settings.temporal.task_queues.cpu
        self._doc: JobDocument | None = None  # built by run(): its times come from workflow.now()
        self._decision: ReviewDecision | None = None

    # ------------------------------------------------------------------ messages
    @workflow.query(name=STATUS_QUERY)
    def status(self) -> JobDocument | None:
        return self._doc

    @workflow.signal(name=CANDIDATE_UPDATE_SIGNAL)
    def candidate_update(self, nim: NimDoc) -> None:
        if self._doc is not None:
            apply_candidate_update(self._doc, nim)

    @workflow.update(name=PROMOTE_UPDATE)
    async def promote(self, req: PromoteRequest) -> ReviewDecision:
        return self._decide(ReviewDecision(decision=ReviewOutcome.promoted, model_name=req.model_name,
                                           note=req.note, by=req.by), Stage.promoted)

    @promote.validator
    def _validate_promote(self, req: PromoteRequest) -> None:
        self._check_reviewable("promote")
        reason = unknown_candidate_reason(self._doc, req.model_name)
        if reason is not None:
            raise ApplicationError(reason, type="UnknownCandidate", non_retryable=True)

    @workflow.update(name=REJECT_UPDATE)
    async def reject(self, req: RejectRequest) -> ReviewDecision:
        return self._decide(ReviewDecision(decision=ReviewOutcome.rejected, note=req.reason, by=req.by), Stage.rejected)

    @reject.validator
    def _validate_reject(self, req: RejectRequest) -> None:
        self._check_reviewable("reject")

    def _check_reviewable(self, action: str) -> None:
        reason = not_reviewable_reason(self._doc, self._decision is not None, action)
        if reason is not None:
            raise ApplicationError(reason, type="InvalidReviewState", non_retryable=True)

    def _decide(self, decision: ReviewDecision, stage: Stage) -> ReviewDecision:
        self._decision = decision
        self._doc.review = {**decision.model_dump(mode="json"), "decided_at": workflow.now().isoformat()}
        self._doc.stage = stage
        return decision

    # ------------------------------------------------------------------ run
    @workflow.run
    async def run(self, inp: FlywheelJobInput) -> JobDocument:
        info = workflow.info()
        settings = self._settings
        job_id = inp.job_id or job_id_from_workflow_id(info.workflow_id, inp.workload_id, inp.client_id)
        self._doc = doc = new_run_document(
            settings, job_id=job_id, workflow_id=info.workflow_id, workload_id=inp.workload_id,
            client_id=inp.client_id, job_type=inp.job_type, config_name=inp.config_name,
            requested_by=inp.requested_by, started_at=workflow.now())
        embedding = inp.job_type == JobType.embedding
        if embedding:
            doc.not_applicable = {"icl-eval": ICL_NOT_APPLICABLE}
        try:
            await self._set_stage(Stage.preparing_data)
            split = inp.data_split_config or settings.data_split_config
            t = self._timeouts
            prepared = await workflow.execute_activity(
                prepare_retrieval_data if embedding else prepare_data,
                PrepareDataInput(settings=settings, workflow_id=run_key(info.workflow_id), job_id=job_id,
                                 workload_id=inp.workload_id, client_id=inp.client_id, data_split_config=split),
                **long_options(t, self._cpu, start_to_close_s=t.prepare_start_to_close_s,
                               heartbeat_s=t.evaluate_heartbeat_s, wait_for_cancellation=False),
            )
            record_prepared_data(doc, num_records=prepared.num_records, curation=prepared.curation,
                                 manifest_hash=prepared.manifest_hash, datasets=prepared.datasets)
            await self._set_stage(Stage.evaluating)
            semaphore = asyncio.Semaphore(settings.temporal.max_parallel_candidates)
            judge = None
            judged = not embedding and needs_deployment(settings.llm_judge_config, settings.platform.kind)
            if judged and workflow.patched(PATCH_DEPLOY_JUDGE):
                judge = await self._deploy_judge()
            try:
                # return_exceptions: on cancellation wait for EVERY child to finish its teardown.
                outcomes = await asyncio.gather(*(self._candidate(n, prepared, semaphore)
                                                  for n in run_candidates(self._settings, inp.job_type)),
                                                return_exceptions=True)
            except GeneratorExit:
                raise  # eviction: not an outcome; the judge stays up for the replayed run
            except BaseException:
                if judge is not None:
                    await asyncio.shield(asyncio.ensure_future(self._teardown_judge(judge)))
                raise
            if judge is not None:
                await self._teardown_judge(judge)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            await self._aggregate_and_report()
            await self._review(inp)
            if workflow.patched(PATCH_ACT_ON_REVIEW):
                await self._act_on_review()
            mark_run_completed(doc, workflow.now())
            await self._persist(final=True)
            await workflow.wait_condition(workflow.all_handlers_finished)
            return doc
        except GeneratorExit:
            raise  # evicted from the worker's cache: not an outcome of the run; replay resumes it
        except BaseException as exc:
            if is_cancelled_exception(exc):
                mark_run_cancelled(doc, workflow.now())
                # shield(ensure_future(...)): the final write must finish although this run is being cancelled.
                await asyncio.shield(asyncio.ensure_future(self._persist(final=True, stage=Stage.cancelled)))
                raise
            mark_run_failed(doc, error_text(exc), workflow.now())
            await asyncio.shield(asyncio.ensure_future(self._persist(final=True, stage=Stage.failed)))  # as above
            raise ApplicationError(doc.error, type=error_type(exc), non_retryable=True) from exc

    # ------------------------------------------------------------------ stages
    async def _set_stage(self, stage: Stage) -> None:
        self._doc.stage = stage
        await self._persist(stage=stage)

    def _upsert_search_attributes(self, stage: Stage) -> None:
        doc = self._doc
        workflow.upsert_search_attributes([
            KEY_WORKLOAD_ID.value_set(doc.workload_id),
            KEY_CLIENT_ID.value_set(doc.client_id),
            KEY_JOB_TYPE.value_set(doc.job_type),
            KEY_STAGE.value_set(stage.value),
        ])

    async def _persist(self, *, final: bool = False, stage: Stage | None = None) -> None:
        """Upsert the stage search attribute and write the doc to the JobStore (failures are logged:
        a job-store outage must not lose the run; the final write retries for longer)."""
        if stage is not None:
            self._upsert_search_attributes(stage)
        self._doc.revision += 1  # the store keeps the highest revision: a late retry of an older write loses
        try:
            await workflow.execute_activity(
                persist_job,
                PersistJobInput(settings=self._settings, doc=self._doc),
                **short_options(self._timeouts, self._cpu, retry_policy=retry_policy(self._timeouts, max_attempts=0),
                                schedule_to_close_timeout=timedelta(seconds=3600 if final else 600)),
            )
        except Exception as exc:
            if is_cancelled_exception(exc) and not final:
                raise
            workflow.logger.warning("persisting job %s failed: %s", self._doc.id, error_text(exc))

    def _child(self, nim_cfg: Any, prepared: PreparedData) -> tuple[Any, Any]:
        inp, parent = self._inp, workflow.info().workflow_id
        common = {"parent_workflow_id": parent, "job_id": self._doc.id, "settings": self._settings,
                  "datasets": prepared.datasets, "timeouts": inp.timeouts}
        if inp.job_type == JobType.embedding:
            types = [t for t in inp.eval_types if t != EvalType.icl]
            return EmbeddingCandidateRun.run, EmbeddingCandidateInput(candidate=nim_cfg, eval_types=types, **common)
        return CandidateRun.run, CandidateInput(nim=nim_cfg, eval_types=list(inp.eval_types), **common)

    async def _candidate(self, nim_cfg: Any, prepared: PreparedData, semaphore: asyncio.Semaphore) -> None:
        doc = self._doc
        index = next(i for i, n in enumerate(doc.nims) if n.model_name == nim_cfg.model_name)
        run, child_input = self._child(nim_cfg, prepared)
        async with semaphore:
            doc.nims[index].status = NimStatus.deploying
            try:
                result: CandidateResult = await workflow.execute_child_workflow(
                    run, child_input,
                    id=self._candidate_id(nim_cfg.model_name),
                    task_queue=self._settings.temporal.task_queues.orchestrator,
                    parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                )
            except Exception as exc:
                if is_cancelled_exception(exc):
                    raise
                doc.nims[index] = failed_candidate(doc.nims[index], failure_details(exc), error_text(exc))
                return
            doc.nims[index] = result.nim or doc.nims[index]

    async def _deploy_judge(self) -> Endpoint | None:
        """Deploy the local judge (``llm_judge_config.deployment_type: local`` without a url) for this run and
        point the candidates' evaluations at it. A failed deployment is recorded; the run goes on unjudged."""
        settings, doc, t = self._settings, self._doc, self._timeouts
        judge_cfg = settings.llm_judge_config
        assert judge_cfg is not None
        endpoint = await self._best_effort("judge deployment", workflow.execute_activity(
            deploy, DeployInput(settings=settings, nim=judge_cfg.as_nim(), name=f"{workflow.info().workflow_id}-judge"),
            **long_options(t, self._cpu, start_to_close_s=t.deploy_start_to_close_s, heartbeat_s=t.deploy_heartbeat_s)))
        if endpoint is None:
            if doc.llm_judge is not None:
                doc.llm_judge.deployment_status, doc.llm_judge.error = DeploymentStatus.failed, doc.warnings[-1]
            return None
        served = judge_cfg.model_copy(update={"url": endpoint.base_url, "model_name": endpoint.served_model})
        self._settings = settings.model_copy(update={"llm_judge_config": served})
        if doc.llm_judge is not None:
            doc.llm_judge.deployment_status = DeploymentStatus.ready
        return endpoint

    async def _teardown_judge(self, endpoint: Endpoint) -> None:
        t = self._timeouts
        await self._best_effort("judge teardown", workflow.execute_activity(
            teardown, TeardownInput(settings=self._settings, endpoint=endpoint),
            **short_options(t, self._cpu, heartbeat_timeout=timedelta(seconds=t.deploy_heartbeat_s))))
        if self._doc.llm_judge is not None and self._doc.llm_judge.deployment_status == DeploymentStatus.ready:
            self._doc.llm_judge.deployment_status = DeploymentStatus.completed

    async def _act_on_review(self) -> None:
        """After the decision: a promotion moves the MLflow alias and sends the signed webhook (retried by
        Temporal until delivered or ``promotion.webhook_deadline_s``); then the report is re-rendered with
        the decision in it. A failure here is a warning on the run: the decision itself stands."""
        doc, settings, t = self._doc, self._settings, self._timeouts
        record = promotion_record(doc)
        if record is not None:
            inp = PromotionInput(settings=settings, doc=doc, record=record.model_dump(mode="json"))
            actions: dict[str, Any] = {}
            if settings.mlflow_config.enabled:
                actions["mlflow"] = await self._best_effort("MLflow champion registration", workflow.execute_activity(
                    register_champion, inp, **short_options(t, self._cpu)))
            if settings.promotion.webhook_url:
                actions["webhook"] = await self._best_effort("promotion webhook", workflow.execute_activity(
                    deliver_promotion_webhook, inp, task_queue=self._cpu,
                    start_to_close_timeout=timedelta(seconds=settings.promotion.webhook_timeout_s + 30),
                    schedule_to_close_timeout=timedelta(seconds=settings.promotion.webhook_deadline_s),
                    retry_policy=retry_policy(t, max_attempts=0)))
            if actions:
                doc.review = {**(doc.review or {}), "actions": actions}
        report_uri = await self._best_effort("report after review", workflow.execute_activity(
            write_report, ReportInput(settings=settings, doc=doc), **short_options(t, self._cpu)))
        if report_uri is not None:
            doc.report_uri = report_uri

    async def _aggregate_and_report(self) -> None:
        """CIs, gate and cost (aggregation), then MLflow and the report page: each best-effort (a failure
        becomes a warning in the document; the run still reaches review)."""
        doc, options = self._doc, short_options(self._timeouts, self._cpu)
        aggregated = await self._best_effort("aggregation", workflow.execute_activity(
            aggregate_results, AggregateInput(settings=self._settings, doc=doc), **options))
        if aggregated is not None:
            doc.nims = aggregated.nims  # CIs, gate, cost; the rest of the doc stays this workflow's
            doc.gate = aggregated.gate  # the gate's verdicts, paired tests, recommendation and frontier
        if self._settings.mlflow_config.enabled:
            uris = await self._best_effort("MLflow logging", workflow.execute_activity(
                log_mlflow, ReportInput(settings=self._settings, doc=doc), **options))
            if uris is not None:
                apply_mlflow_uris(doc, uris)
        report_uri = await self._best_effort("report", workflow.execute_activity(
            write_report, ReportInput(settings=self._settings, doc=doc), **options))
        if report_uri is not None:
            doc.report_uri = report_uri

    async def _best_effort(self, stage: str, call: Awaitable[T]) -> T | None:
        """The stage's result, or None with a warning in the document when it failed (cancellation propagates)."""
        try:
            return await call
        except Exception as exc:
            if is_cancelled_exception(exc):
                raise
            self._warn(f"{stage} failed: {error_text(exc)}")
            return None

    def _warn(self, message: str) -> None:
        self._doc.warnings.append(message)
        workflow.logger.warning(message)

    def _candidate_id(self, model_name: str) -> str:
        """The child's workflow id. Runs started before ids were made collision-free (model names
        differing only in '/' vs '-') keep their old child ids when replayed (docs/versioning.md)."""
        parent = workflow.info().workflow_id
        if workflow.patched(PATCH_COLLISION_FREE_CHILD_IDS):
            return candidate_workflow_id(parent, model_name)
        return legacy_candidate_workflow_id(parent, model_name)

    async def _review(self, inp: FlywheelJobInput) -> None:
        timeout = inp.review_timeout_s if inp.review_timeout_s is not None else self._settings.temporal.review_timeout_s
        await self._set_stage(Stage.awaiting_review)
        if timeout > 0:
            try:
                await workflow.wait_condition(lambda: self._decision is not None, timeout=timedelta(seconds=timeout))
            except TimeoutError:
                pass
        if self._decision is None:
            self._decide(ReviewDecision(decision=ReviewOutcome.timed_out if timeout > 0 else ReviewOutcome.skipped),
                         Stage.completed)
        self._upsert_search_attributes(self._doc.stage)
