"""Evaluation on NeMo Microservices v1: a ``custom`` Evaluator job with the tool-calling metric.

The target model is given INLINE by ``api_endpoint`` (url + model_id): the Evaluator then never asks the
Entity Store about the model, which is what failed for base NIMs deployed by the NIM Operator
(the Evaluator answered ``404 ... /v1/models/meta/llama-3.2-1b-instruct`` for a NIM it had not
registered). Registering the model in the Entity Store (``POST /v1/models``) is optional
(``register_models=True``).

Jobs carry our deterministic name in ``custom_fields.flywheel_name``; before creating we look the name up,
so a retried activity re-attaches to the job an earlier attempt created.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from flywheel.config import LLMJudgeConfig
from flywheel.metrics import ACCURACY_METRIC, METRICS, METRICS_BY_NAME
from flywheel.metrics import JUDGE_METRIC as JUDGE_SCORE  # ours; JUDGE_METRIC below is NeMo's metric name
from flywheel.platforms.nemo_v1.client import NemoV1Clients, status_error, to_platform_error
from flywheel.platforms.nemo_v1.jobs import cancel_if_live, create_once, find_named_job, poll_job, reusable
from flywheel.progress import EvaluationProgress
from flywheel.types import EvalResult, EvalSpec, PlatformError, ProgressFn

log = logging.getLogger(__name__)

TASK = "custom-tool-calling"
TOOL_METRIC = "tool-calling-accuracy"
JUDGE_METRIC = "correctness"
NAME_FIELD = "flywheel_name"

JUDGE_SYSTEM_PROMPT = """You compare a predicted tool call with the ground truth.
Rate 1 only if the function name matches exactly, every ground-truth argument is present, short identifiers
match exactly and natural-language values mean the same thing; otherwise rate 0.
Answer exactly:
RATING: 0 or 1
EXPLANATION: one sentence."""
JUDGE_USER_PROMPT = """*Ground Truth*: {{ item.response.choices[0].message.tool_calls | tojson }}
*Prediction*: {{ sample.response.choices[0].message.tool_calls | default(none) | tojson }}"""


def chat_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    return base if base.endswith("/chat/completions") else f"{base}/chat/completions"


def judge_endpoint(judge: LLMJudgeConfig | None, nim_url: str) -> dict[str, Any] | None:
    if judge is None or not judge.model_name:
        return None
    url = judge.url or (f"{nim_url}/v1" if judge.deployment_type == "local" else None)
    if not url:
        return None
    endpoint: dict[str, Any] = {"url": chat_url(url), "model_id": judge.model_name, "format": "openai"}
    if judge.api_key_env:
        import os

        if key := os.environ.get(judge.api_key_env):
            endpoint["api_key"] = key
    return endpoint


def build_config(spec: EvalSpec, nim_url: str) -> dict[str, Any]:
    """The custom evaluation config: one chat-completion task, tool-calling metric (+ LLM judge)."""
    metrics: dict[str, Any] = {
        TOOL_METRIC: {
            "type": "tool-calling",
            "params": {"tool_calls_ground_truth": "{{ item.response.choices[0].message.tool_calls | tojson }}"},
        }
    }
    judge = judge_endpoint(spec.judge, nim_url)
    if judge:
        metrics[JUDGE_METRIC] = {
            "type": "llm-judge",
            "params": {
                "model": {"api_endpoint": judge},
                "template": {"messages": [{"role": "system", "content": JUDGE_SYSTEM_PROMPT},
                                          {"role": "user", "content": JUDGE_USER_PROMPT}]},
                # Two digits allowed on purpose (the reference's "(\\d)" read 10 as 1).
                "scores": {"rating": {"type": "int", "parser": {"type": "regex", "pattern": r"RATING:\s*(\d+)"}}},
            },
        }
    return {
        "type": "custom",
        "params": {"parallelism": spec.concurrency, "max_tokens": spec.max_tokens, "temperature": spec.temperature,
                   "request_timeout": int(spec.request_timeout_s), "max_retries": spec.max_retries},
        "tasks": {
            TASK: {
                "type": "chat-completion",
                "dataset": {"files_url": spec.dataset.uri},
                "params": {"template": {"messages": "{{ item.request.messages | tojson }}",
                                        "tools": "{{ item.request.tools | tojson }}",
                                        "tool_choice": "required"}},
                "metrics": metrics,
            }
        },
    }


def parse_results(result: dict[str, Any], spec: EvalSpec, judged: bool) -> EvalResult:
    """``tasks.<task>.metrics.<metric>.scores.<score>.value`` → :class:`EvalResult`."""
    tasks = result.get("tasks") or {}
    task = tasks.get(TASK) or (next(iter(tasks.values())) if len(tasks) == 1 else None)
    if task is None:
        raise PlatformError(f"evaluation result for {spec.name} has no task {TASK!r} (tasks: {sorted(tasks)})",
                            retryable=False)
    metrics = task.get("metrics") or {}

    def score(metric: str, name: str) -> float | None:
        value = (((metrics.get(metric) or {}).get("scores") or {}).get(name) or {}).get("value")
        return None if value is None else float(value)

    # Each registered metric NeMo v1 reports, from the first of its score names present.
    found = {m.name: next((v for v in (score(TOOL_METRIC, n) for n in m.nemo_v1) if v is not None), None)
             for m in METRICS if m.nemo_v1}
    notes: dict[str, str] = {}
    if any(v is None for v in found.values()):
        raise PlatformError(f"evaluation result for {spec.name} lacks tool-calling scores: {metrics}", retryable=False)
    correctness = score(JUDGE_METRIC, "rating") if judged else None
    if not judged:
        notes[JUDGE_SCORE] = "no LLM judge configured"
    elif correctness is None:
        notes[JUDGE_SCORE] = "the Evaluator returned no judge rating"
    counted = METRICS_BY_NAME[ACCURACY_METRIC].nemo_v1[0]
    stats = (((metrics.get(TOOL_METRIC) or {}).get("scores") or {}).get(counted) or {}).get("stats") or {}
    return EvalResult(eval_type=spec.eval_type, num_records=int(stats.get("count") or spec.dataset.num_records),
                      scores={**found, JUDGE_SCORE: correctness}, score_notes=notes)


class EvaluationV1:
    def __init__(self, clients: NemoV1Clients, register_models: bool = False) -> None:
        self.c = clients
        self.register_models = register_models

    def job_uri(self, job_id: str) -> str:
        return f"{self.c.nemo_url}/v1/evaluation/jobs/{job_id}"

    async def find_job(self, name: str) -> dict[str, Any] | None:
        """The newest evaluation job carrying ``custom_fields.flywheel_name == name`` (raw dict)."""
        return await find_named_job(
            self.c.get_json, f"{self.c.nemo_url}/v1/evaluation/jobs?filter[namespace]={self.c.namespace}"
            f"&filter[custom_fields][{NAME_FIELD}]={name}", name, NAME_FIELD)

    async def _target(self, spec: EvalSpec) -> dict[str, Any]:
        endpoint = {"url": chat_url(spec.endpoint.base_url), "model_id": spec.endpoint.served_model, "format": "nim"}
        if not self.register_models:
            return {"type": "model", "model": {"api_endpoint": endpoint}}
        name = spec.endpoint.served_model.replace("/", "-").replace("@", "-")
        try:
            await self.c.sdk_create.models.create(name=name, namespace=self.c.namespace, api_endpoint=endpoint)
        except Exception as exc:
            if status_error(exc) != 409:
                raise to_platform_error(exc, f"register model {self.c.namespace}/{name}") from exc
        return {"type": "model", "model": f"{self.c.namespace}/{name}"}

    async def create_job(self, spec: EvalSpec) -> str:
        body_config = build_config(spec, self.c.nim_url)
        target = await self._target(spec)
        return await create_once("evaluation", spec.name, lambda: self.c.sdk_create.evaluation.jobs.create(
            config=body_config, target=target, namespace=self.c.namespace,
            custom_fields={NAME_FIELD: spec.name, "eval_type": spec.eval_type},
            description=f"flywheel {spec.eval_type} {spec.endpoint.model_name}"), self.find_job)

    async def evaluate(self, spec: EvalSpec, progress: ProgressFn | None, cleanup_on_cancel) -> EvalResult:
        t0 = time.monotonic()
        existing = reusable("evaluation", spec.name, await self.find_job(spec.name))
        job_id = str(existing["id"]) if existing else await self.create_job(spec)
        uri = self.job_uri(job_id)
        if progress:
            progress({"kind": "evaluation", "job_id": job_id, "nmp_uri": uri,
                      "status": "attached" if existing else "created"})
        result = await self.wait_job(job_id, uri, progress, cleanup_on_cancel)
        out = parse_results(result, spec, judged=judge_endpoint(spec.judge, self.c.nim_url) is not None)
        out.nmp_uri = uri
        out.runtime_seconds = time.monotonic() - t0
        return out

    async def wait_job(self, job_id: str, uri: str, progress: ProgressFn | None, cleanup_on_cancel) -> dict[str, Any]:
        """Poll an evaluation job (ours or a retriever one) until it ends; its results. A person's cancel
        (``cleanup_on_cancel()``) cancels it remotely, a worker shutdown keeps it for the retry to re-attach."""
        timing = self.c.timing

        def describe(job: dict[str, Any]) -> dict[str, Any]:
            details = job.get("status_details") or {}
            return EvaluationProgress(progress=details.get("progress"), message=details.get("message")).details()

        try:
            await poll_job(kind="evaluation", job_id=job_id, nmp_uri=uri, fetch=lambda: self.c.get_json(uri),
                           describe=describe, interval_s=timing.poll_interval_s, timeout_s=timing.eval_timeout_s,
                           pending_timeout_s=timing.pending_timeout_s, progress=progress)
        except asyncio.CancelledError:
            if cleanup_on_cancel():
                await self.cancel_job(job_id)
            raise
        except PlatformError as exc:
            if exc.error_type in ("InfrastructureError", "Timeout"):
                await self.cancel_job(job_id)  # free the queue slot; a retry then creates a fresh job
            raise
        return await self.c.get_json(f"{uri}/results")

    async def cancel_job(self, job_id: str) -> None:
        try:
            await asyncio.shield(self.c.sdk.evaluation.jobs.cancel(job_id))
        except Exception as exc:  # noqa: BLE001 - best effort: it may already be terminal
            log.info("cancel evaluation job %s: %s", job_id, exc)

    async def cancel_by_name(self, name: str) -> bool:
        return await cancel_if_live(name, self.find_job, self.cancel_job)
