"""EmbeddingCandidateRun: one candidate embedding model of an ``embedding_job`` —
base-eval, then (customization enabled) mine triplets -> contrastive fine-tuning -> customized-eval.

There is no deployment step: the base model is evaluated where it runs (in process or at its own
endpoint) and the platform serves a customized model only for the length of its evaluation. Names
are derived from the workflow id, so a retried activity finds its datasets, checkpoints and results.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.embedding import customize_embedding, evaluate_retrieval, mine_triplets
    from flywheel.jobdoc import CustomizationDoc, DeploymentStatus, EvaluationDoc, NimDoc, NimStatus
    from flywheel.platforms import customization_queue
    from flywheel.retrieval.evaluate import RetrievalEvalResult
    from flywheel.retrieval.types import (
        CORPUS_SPLIT,
        TRIPLETS_SPLIT,
        VAL_TRIPLETS_SPLIT,
        EmbeddingCustomizationSpec,
        MiningSpec,
        RetrievalEvalSpec,
    )
    from flywheel.vocabulary import CustomizationStatus, EvalType, SplitName, TaskQueueRole
    from workflows.common import error_text, error_type, long_options
    from workflows.embedding_models import (
        EMBEDDING_CANDIDATE_WORKFLOW,
        EmbeddingCandidateInput,
        EmbeddingCandidateResult,
        EmbeddingCustomizeInput,
        MineInput,
        RetrievalEvaluateInput,
    )
    from workflows.models import (
        CANDIDATE_UPDATE_SIGNAL,
        STATUS_QUERY,
        ActivityTimeouts,
        customized_model_name,
    )


@workflow.defn(name=EMBEDDING_CANDIDATE_WORKFLOW)
class EmbeddingCandidateRun:
    @workflow.init
    def __init__(self, inp: EmbeddingCandidateInput) -> None:
        self._inp = inp
        self._t = inp.timeouts or ActivityTimeouts()
        self._wf_id = workflow.info().workflow_id
        queues = inp.settings.temporal.task_queues
        self._cpu = queues.cpu
        self._train_queue = queues.gpu if customization_queue(inp.settings) == TaskQueueRole.gpu else queues.cpu
        self._nim = NimDoc(model_name=inp.candidate.model_name, status=NimStatus.running_evals,
                           deployment_status=DeploymentStatus.ready)
        self._result = EmbeddingCandidateResult(model_name=inp.candidate.model_name)

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> NimDoc | None:
        return self._nim

    @workflow.run
    async def run(self, inp: EmbeddingCandidateInput) -> EmbeddingCandidateResult:
        nim = self._nim
        started = workflow.now()
        await self._notify()
        try:
            if EvalType.base in inp.eval_types:
                await self._evaluate(EvalType.base, None)
            if EvalType.customized in inp.eval_types and inp.candidate.customization_enabled:
                await self._customized()
        except BaseException as exc:
            if is_cancelled_exception(exc):
                nim.status = NimStatus.cancelled
                for ev in nim.evaluations:
                    if ev.finished_at is None and ev.error is None:
                        ev.error = "cancelled"
                for cust in nim.customizations:
                    if cust.status == CustomizationStatus.running:
                        cust.status, cust.finished_at = CustomizationStatus.cancelled, workflow.now()
                raise
            nim.status, nim.error = NimStatus.failed, error_text(exc)
            raise ApplicationError(nim.error, nim.model_dump(mode="json"), type="EmbeddingCandidateFailed",
                                   non_retryable=True) from exc
        finally:
            nim.runtime_seconds = (workflow.now() - started).total_seconds()
        ok = [e for e in nim.evaluations if e.error is None and e.finished_at is not None]
        if nim.evaluations and not ok:
            nim.status = NimStatus.failed
            nim.error = "; ".join(f"{e.eval_type}: {e.error}" for e in nim.evaluations if e.error)
        else:
            nim.status = NimStatus.completed
        nim.deployment_status = DeploymentStatus.completed
        await self._notify()
        self._result.nim = nim
        return self._result

    async def _notify(self) -> None:
        try:
            parent = workflow.get_external_workflow_handle(self._inp.parent_workflow_id)
            await parent.signal(CANDIDATE_UPDATE_SIGNAL, self._nim)
        except Exception as exc:
            if is_cancelled_exception(exc):
                raise
            workflow.logger.debug("candidate progress signal failed: %s", exc)

    async def _evaluate(self, eval_type: EvalType, model_dir: str | None, served_name: str | None = None) -> bool:
        inp = self._inp
        doc = EvaluationDoc(eval_type=eval_type, started_at=workflow.now())
        self._nim.evaluations.append(doc)
        await self._notify()
        spec = RetrievalEvalSpec(name=f"{self._wf_id}-{eval_type}", eval_type=eval_type, candidate=inp.candidate,
                                 eval=inp.datasets[SplitName.eval], corpus=inp.datasets[CORPUS_SPLIT],
                                 retrieval=inp.settings.embedding_config, customized_model_dir=model_dir,
                                 served_name=served_name)
        try:
            res: RetrievalEvalResult = await workflow.execute_activity(
                evaluate_retrieval, RetrievalEvaluateInput(settings=inp.settings, spec=spec),
                **long_options(self._t, self._cpu, start_to_close_s=self._t.evaluate_start_to_close_s,
                               heartbeat_s=self._t.evaluate_heartbeat_s))
        except Exception as exc:
            if is_cancelled_exception(exc):
                raise
            doc.record_failure(error_text(exc), workflow.now())
            self._result.errors[eval_type] = doc.error or ""
            await self._notify()
            return False
        doc.finished_at = workflow.now()
        doc.runtime_seconds = (doc.finished_at - doc.started_at).total_seconds()
        doc.progress = 100.0
        doc.num_records = res.num_queries
        doc.scores = dict(res.scores)
        doc.confidence_intervals = {k: [round(v[0], 4), round(v[1], 4)] for k, v in res.confidence_intervals.items()}
        # A platform that reports aggregate scores only says so here (interval_method) instead of empty intervals.
        doc.score_notes = {"intervals": res.interval_method, "corpus_size": str(res.corpus_size), **res.notes}
        doc.nmp_uri = res.nmp_uri
        await self._notify()
        return True

    async def _customized(self) -> None:
        inp, s = self._inp, self._inp.settings
        cust = CustomizationDoc(started_at=workflow.now(), status=CustomizationStatus.running)
        self._nim.customizations.append(cust)
        await self._notify()
        try:
            mined = await workflow.execute_activity(
                mine_triplets,
                MineInput(settings=s, spec=MiningSpec(
                    name=f"{self._wf_id}-mine", candidate=inp.candidate, train=inp.datasets[SplitName.train],
                    val=inp.datasets.get(SplitName.val), corpus=inp.datasets[CORPUS_SPLIT],
                    retrieval=s.embedding_config)),
                **long_options(self._t, self._cpu, start_to_close_s=self._t.evaluate_start_to_close_s,
                               heartbeat_s=self._t.evaluate_heartbeat_s))
            cust.mining = {**mined.counts, "seconds": mined.mining_seconds}
            output = customized_model_name(inp.candidate.model_name, inp.job_id)
            result = await workflow.execute_activity(
                customize_embedding,
                EmbeddingCustomizeInput(settings=s, spec=EmbeddingCustomizationSpec(
                    name=f"{self._wf_id}-customize", candidate=inp.candidate,
                    triplets=mined.datasets[TRIPLETS_SPLIT], val_triplets=mined.datasets.get(VAL_TRIPLETS_SPLIT),
                    retrieval=s.embedding_config, output_model=output)),
                **long_options(self._t, self._train_queue, start_to_close_s=self._t.customize_start_to_close_s,
                               heartbeat_s=self._t.customize_heartbeat_s))
        except Exception as exc:
            if is_cancelled_exception(exc):
                raise
            unavailable = error_type(exc) == "CapabilityUnavailable"
            cust.status = CustomizationStatus.unavailable if unavailable else CustomizationStatus.failed
            cust.error, cust.finished_at = error_text(exc), workflow.now()
            failed = EvaluationDoc(eval_type=EvalType.customized)
            failed.record_failure(f"customization {'unavailable' if unavailable else 'failed'}: {cust.error}",
                                  workflow.now())
            self._nim.evaluations.append(failed)
            self._result.errors["customization"] = cust.error
            await self._notify()
            return
        cust.record_result(result, workflow.now())
        cust.training = {k: result.details.get(k) for k in ("train_seconds", "val_loss", "finetuning_type")}
        await self._notify()
        await self._evaluate(EvalType.customized, result.adapter_uri, output)
