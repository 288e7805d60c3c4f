"""CandidateRun: one candidate model — deploy base, base-eval ‖ icl-eval ‖ customize→deploy→customized-eval,
and always tear down everything it deployed (also on cancellation).

Remote names are derived from the workflow id (``{wf_id}-base``, ``{wf_id}-base-eval``, ...) so a
retried activity re-attaches to what an earlier attempt created.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.customization import customize
    from activities.data import build_icl_dataset
    from activities.deployment import deploy, teardown
    from activities.evaluation import evaluate
    from flywheel.jobdoc import CustomizationDoc, DeploymentStatus, EvaluationDoc, NimDoc, NimStatus
    from flywheel.platforms import customization_queue
    from flywheel.types import CustomizationSpec, DatasetRef, Endpoint, EvalSpec
    from flywheel.vocabulary import CustomizationStatus, EvalType, SplitName, TaskQueueRole
    from workflows.common import error_text, error_type, long_options, short_options
    from workflows.models import (
        CANDIDATE_UPDATE_SIGNAL,
        CANDIDATE_WORKFLOW,
        STATUS_QUERY,
        ActivityTimeouts,
        BuildICLInput,
        CandidateInput,
        CandidateResult,
        CustomizeInput,
        DeployInput,
        EvaluateInput,
        TeardownInput,
        customized_model_name,
    )


@workflow.defn(name=CANDIDATE_WORKFLOW)
class CandidateRun:
    @workflow.init
    def __init__(self, inp: CandidateInput) -> None:
        self._inp = inp
        self._timeouts = inp.timeouts or ActivityTimeouts()
        self._wf_id = workflow.info().workflow_id
        queues = inp.settings.temporal.task_queues
        self._cpu = queues.cpu
        self._train_queue = queues.gpu if customization_queue(inp.settings) == TaskQueueRole.gpu else queues.cpu
        self._result = CandidateResult(model_name=inp.nim.model_name)
        self._deployed: dict[str, Endpoint] = {}
        self._nim = NimDoc(model_name=inp.nim.model_name, status=NimStatus.deploying,
                           deployment_status=DeploymentStatus.pending)

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> NimDoc | None:
        return self._nim

    # ------------------------------------------------------------------ run
    @workflow.run
    async def run(self, inp: CandidateInput) -> CandidateResult:
        nim = self._nim
        started = workflow.now()
        await self._notify()
        tasks: list[asyncio.Task[None]] = []
        evicted = False
        try:
            try:
                base = await self._deploy(f"{self._wf_id}-base", None)
            except Exception as exc:
                if is_cancelled_exception(exc):
                    raise
                nim.deployment_status = DeploymentStatus.failed
                raise ApplicationError(f"deploy of {inp.nim.model_name} failed: {error_text(exc)}",
                                       type=error_type(exc), non_retryable=True) from exc
            nim.deployment_status = DeploymentStatus.ready
            nim.status = NimStatus.running_evals
            await self._notify()
            tasks = [asyncio.create_task(c) for c in self._branches(base)]
            await asyncio.gather(*tasks)
            ok = [e for e in nim.evaluations if e.error is None and e.finished_at is not None]
            errors = [f"{e.eval_type}: {e.error}" for e in nim.evaluations if e.error]
            if nim.evaluations and not ok:
                nim.status = NimStatus.failed
                nim.error = "; ".join(errors) or "no evaluation succeeded"
            else:
                nim.status = NimStatus.completed
            nim.deployment_status = DeploymentStatus.completed
        except GeneratorExit:
            evicted = True  # dropped from the worker's cache, not an outcome: replay resumes the run
            raise
        except BaseException as exc:
            await self._stop(tasks)
            if is_cancelled_exception(exc):
                nim.status = NimStatus.cancelled
                nim.deployment_status = DeploymentStatus.cancelled
                raise
            nim.status = NimStatus.failed
            nim.error = nim.error or (exc.message if isinstance(exc, ApplicationError) else error_text(exc))
            raise ApplicationError(nim.error, nim.model_dump(mode="json"),
                                   type=error_type(exc) if not isinstance(exc, ApplicationError) else exc.type,
                                   non_retryable=True) from exc
        finally:
            if not evicted:
                nim.runtime_seconds = (workflow.now() - started).total_seconds()
                # shield(ensure_future(...)): the teardown runs to the end even though this run is being
                # cancelled (an awaited coroutine would be cancelled with it and leak the deployments).
                await asyncio.shield(asyncio.ensure_future(self._teardown_all()))
        await self._notify()
        self._result.nim = nim
        return self._result

    def _branches(self, base: Endpoint) -> list[Any]:
        types, datasets = self._inp.eval_types, self._inp.datasets
        out = []
        if SplitName.eval not in datasets:
            self._fail_eval(self._add_eval(EvalType.base), "no eval dataset")
            return out
        if EvalType.base in types:
            out.append(self._evaluate(EvalType.base, datasets[SplitName.eval], base))
        if EvalType.icl in types:
            if SplitName.train in datasets:
                out.append(self._icl(base))
            else:
                self._fail_eval(self._add_eval(EvalType.icl), "no train dataset to draw ICL examples from")
        if EvalType.customized in types and self._inp.nim.customization_enabled:
            if SplitName.train in datasets:
                out.append(self._customized())
            else:
                self._fail_eval(self._add_eval(EvalType.customized), "no train dataset to customize on")
        return out

    def _add_eval(self, eval_type: EvalType) -> EvaluationDoc:
        doc = EvaluationDoc(eval_type=eval_type, started_at=workflow.now())
        self._nim.evaluations.append(doc)
        return doc

    @staticmethod
    async def _stop(tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            if not task.done():
                task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _notify(self) -> None:
        """Best-effort live progress to the parent's job document."""
        try:
            parent = workflow.get_external_workflow_handle(self._inp.parent_workflow_id)
            await parent.signal(CANDIDATE_UPDATE_SIGNAL, self._nim)
        except Exception as exc:  # progress is optional
            if is_cancelled_exception(exc):
                raise
            workflow.logger.debug("candidate progress signal failed: %s", exc)

    # ------------------------------------------------------------------ steps
    async def _deploy(self, name: str, adapter_uri: str | None) -> Endpoint:
        nim = self._inp.nim
        # Recorded before the call: a cancelled/failed deploy may have created something.
        self._deployed[name] = Endpoint(deployment_name=name, model_name=nim.model_name,
                                        served_model=nim.model_name, base_url="", status="unknown")
        t = self._timeouts
        endpoint = await workflow.execute_activity(
            deploy,
            DeployInput(settings=self._inp.settings, nim=nim, name=name, adapter_uri=adapter_uri),
            **long_options(t, self._cpu, start_to_close_s=t.deploy_start_to_close_s, heartbeat_s=t.deploy_heartbeat_s),
        )
        self._deployed[name] = endpoint
        return endpoint

    async def _teardown_all(self) -> None:
        for name, endpoint in list(self._deployed.items()):
            try:
                await workflow.execute_activity(
                    teardown,
                    TeardownInput(settings=self._inp.settings, endpoint=endpoint),
                    **short_options(self._timeouts, self._cpu, heartbeat_timeout=timedelta(
                        seconds=self._timeouts.deploy_heartbeat_s)),
                )
            except Exception as exc:  # noqa: BLE001 - recorded, never masks the run's outcome
                self._result.errors[f"teardown:{name}"] = error_text(exc)
                workflow.logger.warning("teardown of %s failed: %s", name, error_text(exc))

    async def _evaluate(self, eval_type: EvalType, dataset: DatasetRef, endpoint: Endpoint,
                        doc: EvaluationDoc | None = None) -> None:
        if doc is None:
            doc = self._add_eval(eval_type)
        await self._notify()
        s = self._inp.settings
        spec = EvalSpec(
            name=f"{self._wf_id}-{eval_type}", eval_type=eval_type, dataset=dataset, endpoint=endpoint,
            judge=s.llm_judge_config, concurrency=s.evaluation.concurrency, max_tokens=s.evaluation.max_tokens,
            temperature=s.evaluation.temperature, request_timeout_s=s.evaluation.request_timeout_s,
            max_retries=s.evaluation.max_retries,
        )
        t = self._timeouts
        try:
            res = await workflow.execute_activity(
                evaluate,
                EvaluateInput(settings=s, spec=spec),
                **long_options(t, self._cpu, start_to_close_s=t.evaluate_start_to_close_s,
                               heartbeat_s=t.evaluate_heartbeat_s),
            )
        except Exception as exc:
            if is_cancelled_exception(exc):
                doc.error = "cancelled"
                raise
            self._fail_eval(doc, error_text(exc))
            return
        doc.record_result(res, workflow.now())
        self._result.evaluations[eval_type] = res
        await self._notify()

    def _fail_eval(self, doc: EvaluationDoc, message: str) -> None:
        doc.record_failure(message, workflow.now())
        self._result.errors[doc.eval_type] = message

    async def _icl(self, base: Endpoint) -> None:
        doc = self._add_eval(EvalType.icl)
        datasets = self._inp.datasets
        try:
            ref = await workflow.execute_activity(
                build_icl_dataset,
                BuildICLInput(settings=self._inp.settings, name=f"{self._wf_id}-icl",
                              eval_dataset=datasets[SplitName.eval], train_dataset=datasets[SplitName.train],
                              context_length=self._inp.nim.context_length),
                **short_options(self._timeouts, self._cpu, heartbeat_timeout=timedelta(
                    seconds=self._timeouts.evaluate_heartbeat_s)),
            )
        except Exception as exc:
            if is_cancelled_exception(exc):
                raise
            self._fail_eval(doc, f"building the ICL dataset failed: {error_text(exc)}")
            return
        await self._evaluate(EvalType.icl, ref, base, doc)

    async def _customized(self) -> None:
        inp, s = self._inp, self._inp.settings
        cust = CustomizationDoc(started_at=workflow.now(), status=CustomizationStatus.running)
        self._nim.customizations.append(cust)
        eval_doc = self._add_eval(EvalType.customized)
        eval_doc.started_at = None  # starts when the customized model is deployed
        await self._notify()
        spec = CustomizationSpec(
            name=f"{self._wf_id}-customize", nim=inp.nim, train=inp.datasets[SplitName.train],
            val=inp.datasets.get(SplitName.val),
            training=s.training_config, lora=s.lora_config,
            output_model=customized_model_name(inp.nim.model_name, inp.job_id),
        )
        t = self._timeouts
        try:
            res = await workflow.execute_activity(
                customize,
                CustomizeInput(settings=s, spec=spec),
                **long_options(t, self._train_queue, start_to_close_s=t.customize_start_to_close_s,
                               heartbeat_s=t.customize_heartbeat_s),
            )
        except Exception as exc:
            if is_cancelled_exception(exc):
                cust.status = CustomizationStatus.cancelled
                raise
            unavailable = error_type(exc) == "CapabilityUnavailable"
            cust.status = CustomizationStatus.unavailable if unavailable else CustomizationStatus.failed
            cust.error = error_text(exc)
            cust.finished_at = workflow.now()
            self._result.errors["customization"] = cust.error
            self._fail_eval(eval_doc, f"customization {'unavailable' if unavailable else 'failed'}: {cust.error}")
            await self._notify()
            return
        cust.record_result(res, workflow.now())
        self._result.customization = res
        eval_doc.started_at = workflow.now()
        await self._notify()
        try:
            endpoint = await self._deploy(f"{self._wf_id}-customized", res.adapter_uri)
        except Exception as exc:
            if is_cancelled_exception(exc):
                raise
            self._fail_eval(eval_doc, f"deploying the customized model failed: {error_text(exc)}")
            return
        await self._evaluate(EvalType.customized, inp.datasets[SplitName.eval], endpoint, eval_doc)

