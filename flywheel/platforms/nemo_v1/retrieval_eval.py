"""Retriever evaluation on NeMo Microservices v1: an Evaluator job of type ``retriever`` over our BEIR files.

* Config: ``{type: retriever, tasks: {flywheel-retrieval: {type: beir, dataset: {files_url: <BEIR repo>},
  metrics: {recall_<k>: {type: recall_<k>}, ndcg_cut_<k>: ..., recip_rank: ...}}}}``
  (:func:`~flywheel.retrieval.nemo_formats.requested_metrics`).
* Target, inline: ``{type: retriever, retriever: {pipeline: {query_embedding_model: {api_endpoint},
  index_embedding_model: {api_endpoint}, top_k: max(ks)}}}`` with
  ``api_endpoint = {url: <base>/embeddings, model_id, format: nim, api_key}``. The base model is the
  candidate's endpoint (its ``url``, else the NIM); a customized model is the
  Customizer's output, served for the length of the evaluation by a DMS deployment of the candidate's
  embedding NIM image (``disable_lora_support``), torn down afterwards.
* Jobs carry our deterministic name in ``custom_fields.flywheel_name``: a retried activity re-attaches to the
  job (and to the deployment, whose name is derived from the same name).
* Results: ``tasks.<task>.metrics.<metric>.scores.<score>.value``, aggregate only. The result says so
  (:data:`~flywheel.retrieval.nemo_formats.AGGREGATE_ONLY`) instead of carrying empty intervals.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from flywheel.platforms.nemo_v1.client import NemoV1Clients, api_key
from flywheel.platforms.nemo_v1.deployment import DeploymentV1
from flywheel.platforms.nemo_v1.evaluation import NAME_FIELD, EvaluationV1
from flywheel.platforms.nemo_v1.jobs import create_once, reusable
from flywheel.retrieval.evaluate import RetrievalEvalResult
from flywheel.retrieval.nemo_formats import (
    AGGREGATE_ONLY,
    missing_notes,
    requested_metrics,
    scores_from_results,
)
from flywheel.retrieval.types import RetrievalEvalSpec
from flywheel.types import Endpoint, PlatformError, ProgressFn

TASK = "flywheel-retrieval"


def build_config(spec: RetrievalEvalSpec) -> dict[str, Any]:
    if not spec.eval.platform_uri:
        raise PlatformError(f"eval dataset {spec.eval.name} has no BEIR copy in the Datastore (platform_uri); it was "
                            f"not stored by this platform's put_retrieval_datasets", retryable=False,
                            error_type="DatasetNotFound")
    metrics = {name: {"type": name} for name in requested_metrics(spec.retrieval.ks)}
    return {"type": "retriever",
            "tasks": {TASK: {"type": "beir", "dataset": {"files_url": spec.eval.platform_uri}, "metrics": metrics}}}


def build_target(base_url: str, model_id: str, key: str | None, top_k: int) -> dict[str, Any]:
    endpoint = {"url": f"{base_url.rstrip('/')}/embeddings", "model_id": model_id, "format": "nim",
                "api_key": key or ""}  # an empty key, not none: some Evaluator versions then ask for NVIDIA_API_KEY
    return {"type": "retriever", "retriever": {"pipeline": {
        "query_embedding_model": {"api_endpoint": endpoint}, "index_embedding_model": {"api_endpoint": dict(endpoint)},
        "top_k": top_k}}}


class RetrievalEvaluationV1:
    def __init__(self, clients: NemoV1Clients, evaluation: EvaluationV1, deployment: DeploymentV1) -> None:
        self.c = clients
        self.evaluation = evaluation
        self.deployment = deployment

    def _base_endpoint(self, spec: RetrievalEvalSpec) -> tuple[str, str, str | None]:
        candidate = spec.candidate
        if candidate.url:
            key = os.environ.get(candidate.api_key_env) if candidate.api_key_env else None
            return candidate.url, candidate.model_name, key
        return f"{self.c.nim_url}/v1", candidate.model_name, api_key(self.c.settings)

    async def _serve_customized(self, spec: RetrievalEvalSpec, progress: ProgressFn | None) -> Endpoint:
        cc = spec.candidate.customizer_configs
        if cc is None:
            raise PlatformError(f"embedding_config.candidates[{spec.candidate.model_name}].customizer_configs is not "
                                f"set: no embedding NIM image to serve {spec.customized_model_dir}", retryable=False,
                                error_type="TrainingConfigError")
        nim_deployment = {"image_name": cc.nim_image, "image_tag": cc.nim_tag, "gpu": cc.nim_gpus,
                          "disable_lora_support": True}  # an embedding NIM serves full weights, no adapters
        try:
            return await self.deployment.deploy_model(spec.customized_model_dir, spec.name, nim_deployment, progress)
        except PlatformError:
            # A failed or stuck deployment is removed (by the name it was asked for), not left holding a GPU.
            await self.deployment.teardown(Endpoint(deployment_name=spec.name, model_name=spec.customized_model_dir,
                                                    served_model=spec.customized_model_dir, base_url="",
                                                    status="unknown"))
            raise

    async def evaluate(self, spec: RetrievalEvalSpec, progress: ProgressFn | None,
                       cleanup_on_cancel) -> RetrievalEvalResult:
        t0 = time.monotonic()
        config = build_config(spec)
        served: Endpoint | None = None
        cancelled_for_retry = False
        try:
            if spec.customized_model_dir:
                served = await self._serve_customized(spec, progress)
                base_url, model_id, key = served.base_url, served.served_model, api_key(self.c.settings)
            else:
                base_url, model_id, key = self._base_endpoint(spec)
            existing = reusable("evaluation", spec.name, await self.evaluation.find_job(spec.name))
            if existing:
                job_id = str(existing["id"])
            else:
                target = build_target(base_url, model_id, key, max(spec.retrieval.ks))
                job_id = await create_once("evaluation", spec.name, lambda: self.c.sdk_create.evaluation.jobs.create(
                    config=config, target=target, namespace=self.c.namespace,
                    custom_fields={NAME_FIELD: spec.name, "eval_type": spec.eval_type},
                    description=f"flywheel {spec.eval_type} {model_id}"), self.evaluation.find_job)
            uri = self.evaluation.job_uri(job_id)
            if progress:
                progress({"kind": "evaluation", "job_id": job_id, "nmp_uri": uri, "model": model_id,
                          "status": "attached" if existing else "created"})
            result = await self.evaluation.wait_job(job_id, uri, progress, cleanup_on_cancel)
        except asyncio.CancelledError:
            cancelled_for_retry = not cleanup_on_cancel()
            raise
        finally:
            # A worker shutdown leaves the deployment for the retried attempt (same name: it re-attaches).
            if served is not None and not cancelled_for_retry:
                await asyncio.shield(self.deployment.teardown(served))
        ks = spec.retrieval.ks
        scores = scores_from_results(result, ks)
        notes = {**missing_notes(ks), "nmp_uri": uri}
        for ours in requested_metrics(ks).values():
            if ours not in scores:
                notes[ours] = "requested from the NeMo Evaluator, absent from its results"
        if not scores:
            raise PlatformError(f"retriever evaluation {job_id} returned no scores we know: {result.get('tasks')}",
                                retryable=False, error_type="JobFailed", details={"job_id": job_id})
        return RetrievalEvalResult(model_name=model_id, num_queries=spec.eval.num_records,
                                   corpus_size=spec.corpus.num_records, scores=scores, interval_method=AGGREGATE_ONLY,
                                   notes=notes, nmp_uri=uri, timings={"runtime_s": round(time.monotonic() - t0, 2)})
