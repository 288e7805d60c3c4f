"""NeMo Platform (v2, the open-source successor) over its REST API with httpx.

Paths are ``/apis/<service>/v2/workspaces/{ws}/...``; the workspace is ``nmp_config.nmp_namespace``.

* datasets → a fileset per run; each split is uploaded twice: ``{split}/{split}.jsonl`` (the rows as given,
  read back by :meth:`read_dataset`) and ``{split}/{split}.nemo-eval.jsonl`` (JSON-text columns for the
  Evaluator). Why: when the Evaluator loads a fileset it unifies nested structs across rows, so a row whose
  ground-truth arguments are ``{}`` becomes ``{"a": null}`` when another row has ``{"a": 1}`` (found by the
  cross-check test; inline rows are not affected). JSON-text columns keep every row exactly as logged.
* deploy → a model provider pointing at the OpenAI-compatible endpoint (``nim_base_url``); the platform
  auto-discovers its models; requests go through the inference gateway.
* evaluate → ``POST /apis/evaluator/v2/workspaces/{ws}/evaluate/jobs`` with a ``spec`` holding the inline
  ``tool-calling`` metric; ``params`` always carries ``max_retries`` (without it the job is a bare 500).
  Jobs are named deterministically (``spec.name``): a retry finds the job instead of creating another.
* the LLM judge → the Evaluator's own ``llm-judge`` metric in the same job, asked our questions and read
  back per row with our rules (:mod:`flywheel.platforms.nemo_v2_judge`); a judge API key becomes a
  workspace secret. A workload without tools gets a plain chat request, token F1 and ``similarity``.
* customize → :class:`CapabilityUnavailable` (training needs Docker/Kubernetes GPU images).
* remove_run (DELETE of a job) → ``DELETE`` of the run's evaluation jobs (the Jobs service deletes each
  job's own ``job-fileset-<job>`` with it; a job not yet terminal answers 409), its filesets, and the
  providers its teardown missed, all by their deterministic names; 404 = already gone.
* ``embedding_job`` (:mod:`flywheel.platforms.nemo_v2_retrieval`): datasets in the artifact store plus a BEIR
  fileset, evaluation by the Evaluator's ``retrieve-eval`` jobs scored from their per-query rankings; embedding
  fine-tuning (and mining for it) → :class:`CapabilityUnavailable`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from flywheel.artifacts import open_artifact_store
from flywheel.artifacts.datasets import StoredDatasets
from flywheel.config import NIMConfig, Settings
from flywheel.metrics import METRICS
from flywheel.platforms.base import Platform
from flywheel.platforms.nemo_v2_judge import judge_columns, judge_metric, workload_scores
from flywheel.platforms.nemo_v2_retrieval import NO_EMBEDDING_TRAINING, RetrievalV2
from flywheel.platforms.nemo_v2_shapes import JSON_TEXT, entity_name, eval_row, job_name, tool_calling_metric
from flywheel.progress import EvaluationProgress
from flywheel.removal import DEPLOYMENT, EVALUATION_JOB, FILESET, RemovalReport, RunResources
from flywheel.retrieval.evaluate import RetrievalEvalResult
from flywheel.retrieval.types import EmbeddingCustomizationSpec, MinedRefs, MiningSpec, RetrievalEvalSpec
from flywheel.scoring import is_tool_workload
from flywheel.types import (
    CapabilityUnavailable,
    CustomizationResult,
    CustomizationSpec,
    DatasetRef,
    Endpoint,
    EvalResult,
    EvalSpec,
    PlatformError,
    ProgressFn,
    WorkerShutdownProbe,
    never_shutting_down,
)

log = logging.getLogger(__name__)
NO_TRAINING = "NeMo Platform has no training backend here: customization needs Docker/Kubernetes GPU images"
RUNNING = frozenset({"created", "pending", "active", "running", "cancelling", "paused", "pausing", "resuming"})


@dataclass
class NemoV2Timing:
    poll_interval_s: float = 2.0
    eval_timeout_s: float = 6 * 3600.0
    provider_timeout_s: float = 120.0
    request_timeout_s: float = 60.0


class NemoV2Platform(Platform):
    kind = "nemo_v2"

    def __init__(self, settings: Settings, timing: NemoV2Timing | None = None, *,
                 is_worker_shutdown: WorkerShutdownProbe = never_shutting_down) -> None:
        self.settings = settings
        self.is_worker_shutdown = is_worker_shutdown
        if timing is None:
            timing = NemoV2Timing()
            if settings.nmp_config.poll_interval_s is not None:
                timing.poll_interval_s = settings.nmp_config.poll_interval_s
        self.timing = timing
        self.base = settings.nmp_config.nemo_base_url.rstrip("/")
        self.ws = settings.nmp_config.nmp_namespace
        self.http = httpx.AsyncClient(base_url=self.base, timeout=self.timing.request_timeout_s)
        self._workspace_ready = False
        self.retrieval = RetrievalV2(self, StoredDatasets(open_artifact_store(settings), settings.data_dir / "staging"))

    async def close(self) -> None:
        await self.http.aclose()

    # -- plumbing --------------------------------------------------------------------------------
    async def _call(self, method: str, path: str, ok: tuple[int, ...] = (200, 201), **kw: Any) -> httpx.Response:
        try:
            resp = await self.http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise PlatformError(f"{method} {path}: {exc!r}") from exc
        if resp.status_code not in ok:
            raise PlatformError(f"{method} {path}: HTTP {resp.status_code}: {resp.text[:500]}",
                                retryable=resp.status_code >= 500 or resp.status_code in (408, 409, 429),
                                details={"status_code": resp.status_code})
        return resp

    async def ensure_workspace(self) -> None:
        if not self._workspace_ready:
            await self._call("POST", "/apis/entities/v2/workspaces", ok=(200, 201, 409), json={"name": self.ws})
            self._workspace_ready = True

    # -- datasets --------------------------------------------------------------------------------
    async def put_datasets(self, run_key: str, splits: Mapping[str, Iterable[dict[str, Any]]]) -> dict[str, DatasetRef]:
        await self.ensure_workspace()
        fileset = entity_name(run_key)
        await self._call("POST", f"/apis/files/v2/workspaces/{self.ws}/filesets", ok=(200, 201, 409),
                         json={"name": fileset, "purpose": "dataset", "description": f"flywheel run {run_key}"[:255]})
        refs: dict[str, DatasetRef] = {}
        for split, rows in splits.items():
            rows = list(rows)
            tools = is_tool_workload(rows)
            raw = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()
            nemo = "".join(json.dumps({**eval_row(r), **judge_columns(r, tools)}, sort_keys=True) + "\n"
                           for r in rows).encode()
            for path, data in ((f"{split}/{split}.jsonl", raw), (f"{split}/{split}.nemo-eval.jsonl", nemo)):
                await self._call("PUT", f"/apis/files/v2/workspaces/{self.ws}/filesets/{fileset}/-/{path}",
                                 content=data, headers={"content-type": "application/octet-stream"})
            refs[split] = DatasetRef(name=fileset, split=split, uri=f"{self.ws}/{fileset}#{split}/{split}.jsonl",
                                     num_records=len(rows), sha256=hashlib.sha256(raw).hexdigest(),
                                     platform_uri=f"{self.ws}/{fileset}#{split}/{split}.nemo-eval.jsonl")
        return refs

    async def upload_fileset(self, key: str, files: Mapping[str, bytes]) -> str:
        """``files`` (path -> bytes) in the fileset for ``key`` (created if missing); returns ``ws/fileset``."""
        await self.ensure_workspace()
        fileset = entity_name(key)
        await self._call("POST", f"/apis/files/v2/workspaces/{self.ws}/filesets", ok=(200, 201, 409),
                         json={"name": fileset, "purpose": "dataset", "description": f"flywheel {key}"[:255]})
        for path, data in files.items():
            await self._call("PUT", f"/apis/files/v2/workspaces/{self.ws}/filesets/{fileset}/-/{path}",
                             content=data, headers={"content-type": "application/octet-stream"})
        return f"{self.ws}/{fileset}"

    async def read_dataset(self, ref: DatasetRef) -> list[dict[str, Any]]:
        return await self.retrieval.read(ref)  # the artifact store's copy when there is one, else the fileset

    async def read_fileset(self, ref: DatasetRef) -> list[dict[str, Any]]:
        ws_name, _, path = ref.uri.partition("#")
        ws, _, fileset = ws_name.partition("/")
        resp = await self._call("GET", f"/apis/files/v2/workspaces/{ws}/filesets/{fileset}/-/{path}")
        return [json.loads(line) for line in resp.text.splitlines() if line.strip()]

    # -- providers (deploy) ----------------------------------------------------------------------
    async def register_provider(self, name: str, host_url: str, model: str, progress: ProgressFn | None = None,
                                api_key_secret: str | None = None) -> str:
        """Register (idempotently) a provider for ``host_url``; wait until it serves ``model``."""
        await self.ensure_workspace()
        provider = entity_name(name)
        body: dict[str, Any] = {"name": provider, "host_url": host_url.rstrip("/").removesuffix("/v1")}
        if api_key_secret:
            body["api_key_secret_name"] = api_key_secret
        path = f"/apis/models/v2/workspaces/{self.ws}/providers"
        await self._call("POST", path, ok=(200, 201, 409), json=body)
        deadline = time.monotonic() + self.timing.provider_timeout_s
        while True:
            info = (await self._call("GET", f"{path}/{provider}")).json()
            served = [m.get("served_model_name") for m in info.get("served_models") or []]
            if progress:
                progress({"kind": "provider", "provider": provider, "status": info.get("status"),
                          "served_models": served})
            if info.get("status") == "READY" and model in served:
                return provider
            if str(info.get("status")).upper() in ("ERROR", "FAILED"):
                raise PlatformError(f"provider {provider} failed: {info.get('status_message')}", retryable=False)
            if time.monotonic() > deadline:
                raise PlatformError(f"provider {provider} did not serve {model!r} "
                                    f"within {self.timing.provider_timeout_s:.0f}s "
                                    f"(status {info.get('status')}, served {served})", error_type="InfrastructureError")
            await asyncio.sleep(self.timing.poll_interval_s)

    def gateway_url(self, provider: str) -> str:
        return f"{self.base}/apis/inference-gateway/v2/workspaces/{self.ws}/provider/{provider}/-/v1"

    async def deploy(self, nim: NIMConfig, name: str, adapter_uri: str | None = None,
                     progress: ProgressFn | None = None) -> Endpoint:
        model = adapter_uri or nim.model_name
        provider = await self.register_provider(name, self.settings.nmp_config.nim_base_url, model, progress)
        return Endpoint(deployment_name=provider, model_name=nim.model_name, served_model=model,
                        base_url=self.gateway_url(provider), details={"provider": provider, "workspace": self.ws})

    async def teardown(self, endpoint: Endpoint) -> None:
        # A placeholder (deploy cancelled or failed) has no details: its name is the workflow's, which
        # register_provider maps with entity_name.
        provider = endpoint.details.get("provider") or entity_name(endpoint.deployment_name)
        await self._call("DELETE", f"/apis/models/v2/workspaces/{self.ws}/providers/{provider}",
                         ok=(200, 202, 204, 404))

    # -- evaluation ------------------------------------------------------------------------------
    def job_path(self, job: str, collection: str = "evaluate") -> str:
        """``collection``: ``evaluate`` (metric jobs) or ``retrieve-eval`` (BEIR retrieval jobs)."""
        return f"/apis/evaluator/v2/workspaces/{self.ws}/{collection}/jobs/{job}"

    async def create_job_once(self, collection: str, job: str, body: dict[str, Any]) -> None:
        """Create the job named ``job`` unless it exists (a retried activity re-attaches to it)."""
        await self.ensure_workspace()
        existing = await self._call("GET", self.job_path(job, collection), ok=(200, 404))
        if existing.status_code != 404:
            return
        created = await self._call("POST", f"/apis/evaluator/v2/workspaces/{self.ws}/{collection}/jobs",
                                   ok=(200, 201, 409), json=body)
        log.info("%s job %s/%s: HTTP %s", collection, self.ws, job, created.status_code)
        if created.status_code == 409 and \
                (await self._call("GET", self.job_path(job, collection), ok=(200, 404))).status_code == 404:
            raise PlatformError(f"{collection} job {self.ws}/{job}: create answered 409 but no such job exists: "
                                f"{created.text[:300]}", retryable=False, error_type="JobCreateConflict",
                                details={"job_id": job})

    async def wait_job(self, collection: str, job: str, progress: ProgressFn | None) -> str:
        """Poll the job until ``completed`` (returns its URI); failures raise, naming the job."""
        uri = f"{self.base}{self.job_path(job, collection)}"
        deadline = time.monotonic() + self.timing.eval_timeout_s
        try:
            while True:
                st = (await self._call("GET", f"{self.job_path(job, collection)}/status")).json()
                state = str(st.get("status"))
                info = EvaluationProgress(kind="evaluation", job_id=job, nmp_uri=uri, status=state,
                                          message=(st.get("status_details") or {}).get("message")).details()
                if state not in RUNNING and state not in ("completed", "failed", "cancelled", "error"):
                    info["unknown_state"] = state
                if progress:
                    progress(info)
                if state == "completed":
                    return uri
                if state in ("failed", "cancelled", "error"):
                    raise PlatformError(f"evaluation job {job} {state}: {info['message']} "
                                        f"{st.get('error_details') or ''}",
                                        retryable=False, error_type="JobFailed",
                                        details={"job_id": job, "nmp_uri": uri, "status": state})
                if time.monotonic() > deadline:
                    raise PlatformError(f"evaluation job {job} did not finish in {self.timing.eval_timeout_s:.0f}s",
                                        error_type="Timeout", details={"job_id": job, "status": state})
                await asyncio.sleep(self.timing.poll_interval_s)
        except asyncio.CancelledError:
            # A worker shutdown leaves the job running: the retried attempt re-attaches to it by name.
            if not self.is_worker_shutdown():
                await asyncio.shield(self._call("POST", f"{self.job_path(job, collection)}/cancel",
                                                ok=(200, 201, 202, 404, 409, 422)))
            raise

    def build_job(self, spec: EvalSpec, job: str, *, tool_workload: bool = True,
                  judge: dict[str, Any] | None = None) -> dict[str, Any]:
        """The job: the tool-calling metric (and the judge's ``llm-judge`` metric, nemo_v2_judge), with the
        record's tools offered and a call required on tool workloads, a plain chat request otherwise."""
        prompt: dict[str, Any] = {"messages": JSON_TEXT + "{{ item.messages_json }}"}
        if tool_workload:
            prompt.update(tools=JSON_TEXT + "{{ item.tools_json }}", tool_choice="required")
        return {
            "name": job, "description": f"flywheel {spec.eval_type} {spec.endpoint.model_name}"[:255],
            "custom_fields": {"flywheel_name": spec.name, "eval_type": spec.eval_type},
            "spec": {
                "dataset": spec.dataset.platform_uri or spec.dataset.uri,
                "metrics": [tool_calling_metric(), *([judge] if judge else [])],
                "target": {"url": spec.endpoint.base_url, "name": spec.endpoint.served_model},
                "prompt_template": {**prompt, "max_tokens": spec.max_tokens, "temperature": spec.temperature},
                "params": {"parallelism": spec.concurrency, "max_retries": spec.max_retries,
                           "request_timeout": int(spec.request_timeout_s), "ignore_request_failure": True},
            },
        }

    async def judge_secret(self, api_key_env: str | None) -> str | None:
        """A workspace secret holding the judge's API key (read from ``api_key_env`` here, never logged);
        None without a key, as the local judge then sends none."""
        value = os.environ.get(api_key_env) if api_key_env else None
        if not api_key_env or not value:
            return None
        name = entity_name(f"flywheel-judge-{api_key_env}")
        path = f"/apis/secrets/v2/workspaces/{self.ws}/secrets"
        if (await self._call("POST", path, ok=(200, 201, 409), json={"name": name, "value": value})).status_code == 409:
            await self._call("PATCH", f"{path}/{name}", json={"value": value})  # the key may have been rotated
        return f"{self.ws}/{name}"

    async def evaluate(self, spec: EvalSpec, progress: ProgressFn | None = None) -> EvalResult:
        t0 = time.monotonic()
        await self.ensure_workspace()
        job = job_name(spec.name)
        rows = await self.read_dataset(spec.dataset)
        tool_workload = is_tool_workload(rows)
        judge = None
        if spec.judge is not None and spec.judge.url and spec.judge.model_name:
            judge = judge_metric(spec.judge.url, spec.judge.model_name, tool_workload,
                                 await self.judge_secret(spec.judge.api_key_env))
        await self.create_job_once("evaluate", job, self.build_job(spec, job, tool_workload=tool_workload, judge=judge))
        uri = await self.wait_job("evaluate", job, progress)
        agg = (await self._call("GET", f"{self.job_path(job)}/results/aggregate-scores/download")).json()
        ours = {m.nemo_v2: m.name for m in METRICS if m.nemo_v2}  # NeMo Platform score name → registered metric
        scores: dict[str, float | None] = {name: None for name in ours.values()}
        notes: dict[str, str] = {}
        count = spec.dataset.num_records
        for s in agg.get("scores") or []:
            key = ours.get(s.get("name"))
            if key:
                scores[key] = s.get("mean")
                count = int(s.get("count") or 0) + int(s.get("nan_count") or 0) or count
                if s.get("nan_count"):
                    notes[key] = f"{s['nan_count']} row(s) scored NaN (request failure or unparseable arguments)"
        judged = spec.judge is not None and bool(spec.judge.url) and bool(spec.judge.model_name)
        # The judge's verdicts and a generic workload's scores come from the rows (rules, range, token F1).
        row_scores = await self.row_scores(spec.name) if judged or not tool_workload else []
        more, more_notes = workload_scores(rows, row_scores, tool_workload=tool_workload, judged=judged)
        scores.update(more)
        notes = {**{k: v for k, v in notes.items() if k not in more}, **more_notes}
        return EvalResult(eval_type=spec.eval_type, num_records=count, scores=scores, score_notes=notes, nmp_uri=uri,
                          runtime_seconds=time.monotonic() - t0)

    async def row_scores(self, spec_name: str) -> list[dict[str, Any]]:
        """Per-row results (item, sample response, metric values) of a finished evaluation job."""
        resp = await self._call("GET", f"{self.job_path(job_name(spec_name))}/results/row-scores/download")
        return [json.loads(line) for line in resp.text.splitlines() if line.strip()]

    # -- customization / cancel ------------------------------------------------------------------
    async def customize(self, spec: CustomizationSpec, progress: ProgressFn | None = None) -> CustomizationResult:
        raise CapabilityUnavailable(NO_TRAINING)

    # -- retrieval (embedding_job) ---------------------------------------------------------------
    async def put_retrieval_datasets(self, run_key: str,
                                     splits: Mapping[str, Iterable[dict[str, Any]]]) -> dict[str, DatasetRef]:
        return await self.retrieval.put(run_key, splits)

    async def evaluate_retrieval(self, spec: RetrievalEvalSpec,
                                 progress: ProgressFn | None = None) -> RetrievalEvalResult:
        return await self.retrieval.evaluate(spec, job_name(spec.name), progress)

    async def mine_triplets(self, spec: MiningSpec, progress: ProgressFn | None = None) -> MinedRefs:
        raise CapabilityUnavailable(NO_EMBEDDING_TRAINING)

    async def customize_embedding(self, spec: EmbeddingCustomizationSpec,
                                  progress: ProgressFn | None = None) -> CustomizationResult:
        raise CapabilityUnavailable(NO_EMBEDDING_TRAINING)

    async def cancel(self, name: str) -> None:
        for collection in ("evaluate", "retrieve-eval"):  # whichever holds a job of that name
            await self._call("POST", f"{self.job_path(job_name(name), collection)}/cancel",
                             ok=(200, 201, 202, 404, 409, 422))

    async def delete_job(self, name: str, collection: str = "evaluate") -> bool:
        """Delete the ``collection`` job for spec ``name`` (the Jobs service deletes the job's own fileset with
        it); False if there was none. A job not yet terminal answers 409: cancelled, then retried later."""
        path = self.job_path(job_name(name), collection)
        resp = await self._call("DELETE", path, ok=(200, 202, 204, 404, 409))
        if resp.status_code == 409:
            await self.cancel(name)
            raise PlatformError(f"{collection} job {self.ws}/{job_name(name)} is not finished; cancel sent, "
                                f"delete again: {resp.text[:300]}", error_type="JobNotFinished")
        return resp.status_code != 404

    # -- DELETE of a job -------------------------------------------------------------------------
    async def remove_run(self, resources: RunResources) -> RemovalReport:
        """The run's filesets (splits, ICL sets), evaluation jobs and providers its teardown missed, by the
        same deterministic names it created them under. Nothing is kept: no customization runs here."""
        report = RemovalReport()
        for name in resources.evaluation_names():
            for collection in ("evaluate", "retrieve-eval"):  # an embedding_job's evaluations are retrieve-eval jobs
                if await self.delete_job(name, collection):
                    report.remove(EVALUATION_JOB, f"{self.ws}/{collection}/{job_name(name)}")
        for kind, collection, names in ((FILESET, "/apis/files/v2/workspaces/{ws}/filesets",
                                         resources.dataset_names()),
                                        (DEPLOYMENT, "/apis/models/v2/workspaces/{ws}/providers",
                                         resources.deployment_names())):
            for name in names:
                resp = await self._call("DELETE", f"{collection.format(ws=self.ws)}/{entity_name(name)}",
                                        ok=(200, 202, 204, 404))
                if resp.status_code != 404:
                    report.remove(kind, f"{self.ws}/{entity_name(name)}")
        return report
