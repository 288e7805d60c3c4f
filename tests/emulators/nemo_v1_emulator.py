"""A CONTRACT EMULATOR of NeMo Microservices 25.x (v1 REST) for tests: a real HTTP server (FastAPI + uvicorn
on 127.0.0.1, in a thread) serving the Entity Store, Datastore (HF API), Evaluator, Customizer and DMS
endpoints that :mod:`flywheel.platforms.nemo_v1` calls.

Contract: EVERY JSON body it sends from a NeMo endpoint is first validated with the ``nemo-microservices``
SDK's own pydantic response type for that endpoint (``EvaluationJob``, ``CustomizationStatusDetails``,
``ModelDeployment``, ``ErrorResponse`` ...) — a body the real SDK could not parse fails here, loudly.
The Datastore speaks the Hugging Face Hub API (no SDK type): it is exercised by ``huggingface_hub``'s own
client, which validates what it reads.

Jobs are scripted state machines: each status read advances one step; the last state repeats forever. The
seeds' failure modes are scriptable: 409 ``uq_customization_config``, duplicate-deployment 500, pending
forever, failed with status logs, an ``unknown`` state, an adapter that appears late in the NIM's
``/v1/models``, a create whose response is lost (500 after the job was stored), and cancel. Evaluation jobs
really evaluate: they call the target's OpenAI endpoint and score with our evaluator of record
(:func:`flywheel.metrics.score_tool_calls`), plus the LLM judge when one is configured.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from nemo_microservices.types import Dataset, Model, Namespace
from nemo_microservices.types.customization import CustomizationJob, CustomizationStatusDetails
from nemo_microservices.types.customization.customization_job_outputs_page import CustomizationJobOutputsPage
from nemo_microservices.types.customization_config import CustomizationConfig
from nemo_microservices.types.deployment import ModelDeployment
from nemo_microservices.types.evaluation import EvaluationJob
from nemo_microservices.types.evaluation.evaluation_jobs_page import EvaluationJobsPage
from nemo_microservices.types.evaluation_result import EvaluationResult
from nemo_microservices.types.shared.delete_response import DeleteResponse
from nemo_microservices.types.shared.error_response import ErrorResponse

from flywheel.metrics import score_tool_calls
from tests.emulators.openai_scripted import ScriptedOpenAI, free_port
from tests.emulators.threaded_server import ThreadedServer

JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined)
JINJA.filters["tojson"] = lambda v: json.dumps(v)


def now() -> str:  # naive ISO like the real services (docs/platforms.md)
    return datetime.now(UTC).replace(tzinfo=None).isoformat()


def sdk(model: type, body: Any, status: int = 200) -> JSONResponse:
    """Validate ``body`` with the SDK's response type, then send it."""
    model.model_validate(body)
    return JSONResponse(body, status_code=status)


def error(status: int, detail: str) -> JSONResponse:
    return sdk(ErrorResponse, {"detail": detail}, status)


def render(template: Any, ctx: dict[str, Any]) -> Any:
    if isinstance(template, dict):
        return {k: render(v, ctx) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, ctx) for v in template]
    if isinstance(template, str) and "{{" in template:
        out = JINJA.from_string(template).render(ctx)
        whole = template.strip()
        single = whole.startswith("{{") and whole.endswith("}}") and whole.count("{{") == 1
        return json.loads(out) if single and "tojson" in whole else out
    return template


class Job:
    def __init__(self, kind: str, body: dict[str, Any], script: list[dict[str, Any]]) -> None:
        prefix = {"evaluation": "eval", "customization": "cust"}[kind]
        self.id = f"{prefix}-{uuid.uuid4().hex[:16]}"
        self.kind, self.body, self.script, self.step = kind, body, script, 0
        self.created_at = now()
        self.state: dict[str, Any] = dict(script[0])
        self.cancelled = False
        self.result: dict[str, Any] | None = None

    def advance(self) -> dict[str, Any]:
        if not self.cancelled:
            self.state = dict(self.script[min(self.step, len(self.script) - 1)])
            self.step += 1
        return self.state


class NemoV1Emulator:
    def __init__(self, nim: ScriptedOpenAI) -> None:
        self.nim = nim
        self.lock = threading.RLock()
        self.calls: list[tuple[str, str]] = []
        self.call_times: list[float] = []  # time.time() of each entry of ``calls`` (fault tests window them)
        self.namespaces: set[str] = set()
        self.ds_namespaces: set[str] = set()
        self.repos: dict[str, dict[str, bytes]] = {}
        self.datasets: dict[str, dict[str, Any]] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.configs: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, Job] = {}
        self.deployments: dict[str, dict[str, Any]] = {}
        # Scripts for the next job/deployment created (tests set them).
        self.eval_script = [{"status": "created"}, {"status": "pending"}, {"status": "running", "progress": 50.0},
                            {"status": "completed", "progress": 100.0}]
        # Per eval type: a job whose flywheel_name ends with a key here gets that script instead.
        self.eval_scripts: dict[str, list[dict[str, Any]]] = {}
        self.customization_script = [{"status": "created"}, {"status": "pending"},
                                     {"status": "running", "percentage_done": 50.0, "epochs_completed": 1,
                                      "steps_completed": 5},
                                     {"status": "completed", "percentage_done": 100.0, "epochs_completed": 2,
                                      "steps_completed": 10, "train_loss": 0.25}]
        self.deployment_script = ["pending", "pending", "ready"]
        self.adapter_delay_s = 0.0  # how long after "completed" the adapter shows up in the NIM /v1/models
        self.lose_next_create_response = False  # store the job, then answer 500 (response lost)
        self.deploy_models_on_ready = True
        self.port = free_port()
        self.app = self._build()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for m, p in self.calls if m == method and re.fullmatch(pattern, p))

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> NemoV1Emulator:
        self._runner = ThreadedServer(self.app, self.port, "emulator")
        self._runner.start_server()
        return self

    def stop(self) -> None:
        self._runner.stop()

    # -- evaluation ------------------------------------------------------------------------------
    def _dataset_rows(self, files_url: str) -> list[dict[str, Any]]:
        repo_path = files_url.removeprefix("hf://datasets/")
        ns, repo, path = repo_path.split("/", 2)
        data = self.repos[f"{ns}/{repo}"][path]
        return [json.loads(line) for line in data.decode().splitlines() if line.strip()]

    def _run_evaluation(self, job: Job) -> dict[str, Any]:
        config, target = job.body["config"], job.body["target"]
        model = target["model"]
        if isinstance(model, str):  # an Entity Store reference: it must be registered (else the real 404)
            model = self.models[model]
        endpoint = model["api_endpoint"]
        tasks_out: dict[str, Any] = {}
        for task_name, task in config["tasks"].items():
            rows = self._dataset_rows(task["dataset"]["files_url"])
            values: dict[tuple[str, str], list[float]] = {}
            for item in rows:
                request = render(task["params"]["template"], {"item": item})
                request["model"] = endpoint["model_id"]
                response = httpx.post(endpoint["url"], json=request, timeout=30).json()
                sample = {"response": response}
                for metric_name, metric in task["metrics"].items():
                    if metric["type"] == "tool-calling":
                        expected = render(metric["params"]["tool_calls_ground_truth"], {"item": item}) or []
                        predicted = response["choices"][0]["message"].get("tool_calls") or []
                        score = score_tool_calls(expected, predicted)
                        values.setdefault((metric_name, "function_name_accuracy"), []).append(score.function_name)
                        values.setdefault((metric_name, "function_name_and_args_accuracy"), []).append(
                            score.function_name_and_args_accuracy)
                    elif metric["type"] == "llm-judge":
                        params = metric["params"]
                        judge = params["model"]["api_endpoint"]
                        messages = render(params["template"]["messages"], {"item": item, "sample": sample})
                        text = httpx.post(judge["url"], json={"model": judge["model_id"], "messages": messages},
                                          timeout=30).json()["choices"][0]["message"]["content"]
                        for score_name, spec in params["scores"].items():
                            found = re.search(spec["parser"]["pattern"], text or "")
                            if found:
                                values.setdefault((metric_name, score_name), []).append(float(found.group(1)))
            metrics: dict[str, Any] = {}
            for (metric_name, score_name), vals in values.items():
                metrics.setdefault(metric_name, {"scores": {}})["scores"][score_name] = {
                    "value": sum(vals) / len(vals), "stats": {"count": len(vals), "sum": sum(vals)}}
            tasks_out[task_name] = {"metrics": metrics}
        return {"id": f"evaluation_result-{job.id}", "job": job.id, "created_at": now(), "tasks": tasks_out,
                "namespace": job.body.get("namespace")}

    def _eval_job_body(self, job: Job) -> dict[str, Any]:
        st = job.state
        details = {k: st[k] for k in ("message", "progress") if k in st}
        return {**job.body, "id": job.id, "created_at": job.created_at, "updated_at": now(), "status": st["status"],
                "status_details": details}

    # -- customization ---------------------------------------------------------------------------
    def _cust_status(self, job: Job) -> dict[str, Any]:
        st = dict(job.state)
        logs = st.pop("status_logs", [])
        return {**st, "created_at": job.created_at, "updated_at": now(),
                "status_logs": [{"updated_at": now(), **entry} for entry in logs]}

    def _cust_job_body(self, job: Job) -> dict[str, Any]:
        body = {k: v for k, v in job.body.items() if k != "name"}  # CustomizationJob has no name field
        return {**body, "id": job.id, "created_at": job.created_at, "updated_at": now(),
                "status": job.state["status"], "status_details": self._cust_status(job)}

    def _on_customization_completed(self, job: Job) -> None:
        if job.result is not None:
            return
        job.result = {}
        model = job.body["output_model"]
        if self.adapter_delay_s <= 0:
            self.nim.add_model(model)
        else:
            timer = threading.Timer(self.adapter_delay_s, self.nim.add_model, args=(model,))
            timer.daemon = True
            timer.start()

    # -- app -------------------------------------------------------------------------------------
    def _build(self) -> FastAPI:  # noqa: C901 - one route table
        app = FastAPI()
        emu = self

        @app.middleware("http")
        async def record(request: Request, call_next):
            with emu.lock:
                emu.calls.append((request.method, request.url.path))
                emu.call_times.append(time.time())
            return await call_next(request)

        # Entity Store ---------------------------------------------------------------------------
        @app.post("/v1/namespaces")
        def create_namespace(body: dict[str, Any]):
            with emu.lock:
                if body["id"] in emu.namespaces:
                    return error(409, f"namespace {body['id']} already exists")
                emu.namespaces.add(body["id"])
            return sdk(Namespace, {"id": body["id"], "created_at": now()})

        @app.get("/v1/namespaces/{ns}")
        def get_namespace(ns: str):
            return sdk(Namespace, {"id": ns}) if ns in emu.namespaces else error(404, f"namespace {ns} not found")

        @app.post("/v1/datasets")
        def create_dataset(body: dict[str, Any]):
            key = f"{body['namespace']}/{body['name']}"
            with emu.lock:
                if key in emu.datasets:
                    return error(409, f"dataset {key} already exists")
                emu.datasets[key] = {**body, "id": f"dataset-{uuid.uuid4().hex[:12]}", "created_at": now()}
                return sdk(Dataset, emu.datasets[key])

        @app.get("/v1/datasets/{ns}/{name}")
        def get_dataset(ns: str, name: str):
            found = emu.datasets.get(f"{ns}/{name}")
            return sdk(Dataset, found) if found else error(404, f"dataset {ns}/{name} not found")

        @app.delete("/v1/datasets/{ns}/{name}")
        def delete_dataset(ns: str, name: str):
            with emu.lock:
                found = emu.datasets.pop(f"{ns}/{name}", None)
            if found is None:
                return error(404, f"dataset {ns}/{name} not found")
            return sdk(DeleteResponse, {"id": found["id"], "deleted_at": now(), "message": "Resource deleted"})

        @app.post("/v1/models")
        def create_model(body: dict[str, Any]):
            key = f"{body['namespace']}/{body['name']}"
            with emu.lock:
                if key in emu.models:
                    return error(409, f"model {key} already exists")
                emu.models[key] = {**body, "created_at": now()}
                return sdk(Model, emu.models[key])

        # Datastore (HF Hub API) -----------------------------------------------------------------
        @app.post("/v1/datastore/namespaces")
        async def ds_namespace(request: Request):
            ns = parse_qs((await request.body()).decode())["namespace"][0]  # form-encoded, no python-multipart
            with emu.lock:
                status = 409 if ns in emu.ds_namespaces else 201
                emu.ds_namespaces.add(str(ns))
            return JSONResponse({"namespace": ns}, status_code=status)

        @app.post("/v1/hf/api/repos/create")
        def hf_create_repo(body: dict[str, Any]):
            repo_id = f"{body.get('organization')}/{body['name']}"
            with emu.lock:
                if repo_id in emu.repos:
                    return JSONResponse({"error": "You already created this dataset repo",
                                         "url": f"{emu.url}/v1/hf/datasets/{repo_id}"}, 409)
                emu.repos[repo_id] = {}
            return JSONResponse({"url": f"{emu.url}/v1/hf/datasets/{repo_id}"})

        @app.delete("/v1/hf/api/repos/delete")
        def hf_delete_repo(body: dict[str, Any]):
            with emu.lock:
                found = emu.repos.pop(f"{body.get('organization')}/{body['name']}", None)
            return JSONResponse({}) if found is not None else JSONResponse({"error": "Repository not found"}, 404)

        @app.post("/v1/hf/api/datasets/{ns}/{repo}/preupload/{revision}")
        def hf_preupload(ns: str, repo: str, revision: str, body: dict[str, Any]):
            return JSONResponse({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                           for f in body["files"]]})

        @app.post("/v1/hf/api/datasets/{ns}/{repo}/commit/{revision}")
        async def hf_commit(ns: str, repo: str, revision: str, request: Request):
            repo_id = f"{ns}/{repo}"
            if repo_id not in emu.repos:
                return JSONResponse({"error": "Repository not found"}, 404)
            for line in (await request.body()).decode().splitlines():
                entry = json.loads(line)
                if entry["key"] == "file":
                    value = entry["value"]
                    with emu.lock:
                        emu.repos[repo_id][value["path"]] = base64.b64decode(value["content"])
            oid = uuid.uuid4().hex + "0" * 8
            return JSONResponse({"commitUrl": f"{emu.url}/v1/hf/datasets/{repo_id}/commit/{oid}", "commitOid": oid,
                                 "pullRequestUrl": None})

        @app.get("/v1/hf/datasets/{ns}/{repo}/resolve/{revision}/{path:path}")
        def hf_resolve(ns: str, repo: str, revision: str, path: str):
            data = emu.repos.get(f"{ns}/{repo}", {}).get(path)
            if data is None:
                return JSONResponse({"error": "Entry not found"}, 404)
            return Response(data, media_type="application/octet-stream")

        # Evaluator ------------------------------------------------------------------------------
        @app.post("/v1/evaluation/jobs")
        def create_eval(body: dict[str, Any]):
            target = body["target"].get("model")
            if isinstance(target, str) and target not in emu.models:
                return error(404, f"Not Found: {emu.url}/v1/models/{target}")  # as the real Evaluator
            name = str((body.get("custom_fields") or {}).get("flywheel_name") or "")
            script = next((s for suffix, s in emu.eval_scripts.items() if name.endswith(suffix)), emu.eval_script)
            with emu.lock:
                job = Job("evaluation", body, [dict(s) for s in script])
                emu.jobs[job.id] = job
                return sdk(EvaluationJob, emu._eval_job_body(job))

        @app.get("/v1/evaluation/jobs")
        def list_eval(request: Request):
            q = request.query_params
            name = q.get("filter[custom_fields][flywheel_name]")
            with emu.lock:
                data = [emu._eval_job_body(j) for j in emu.jobs.values() if j.kind == "evaluation"
                        and (name is None or (j.body.get("custom_fields") or {}).get("flywheel_name") == name)]
            return sdk(EvaluationJobsPage, {"object": "list", "data": data,
                                            "pagination": {"page": 1, "page_size": 100, "current_page_size": len(data),
                                                           "total_pages": 1, "total_results": len(data)}})

        @app.get("/v1/evaluation/jobs/{job_id}")
        def get_eval(job_id: str):
            job = emu.jobs.get(job_id)
            if job is None:
                return error(404, f"job {job_id} not found")
            with emu.lock:
                st = job.advance()
                if st["status"] == "completed" and job.result is None:
                    job.result = emu._run_evaluation(job)
                return sdk(EvaluationJob, emu._eval_job_body(job))

        @app.get("/v1/evaluation/jobs/{job_id}/results")
        def eval_results(job_id: str):
            job = emu.jobs.get(job_id)
            if job is None or job.result is None:
                return error(404, f"results for {job_id} not found")
            return sdk(EvaluationResult, job.result)

        @app.post("/v1/evaluation/jobs/{job_id}/cancel")
        def cancel_eval(job_id: str):
            job = emu.jobs.get(job_id)
            if job is None:
                return error(404, f"job {job_id} not found")
            job.state, job.cancelled = {"status": "cancelled"}, True
            return sdk(EvaluationJob, emu._eval_job_body(job))

        # Customizer -----------------------------------------------------------------------------
        @app.post("/v1/customization/configs")
        def create_config(body: dict[str, Any]):
            key = f"{body['namespace']}/{body['name']}"
            with emu.lock:
                if key in emu.configs:  # the seed's IntegrityError, surfaced as 409
                    return error(409, f'duplicate key value violates unique constraint "uq_customization_config" '
                                      f"DETAIL: Key (namespace, name)=({body['namespace']}, {body['name']}) "
                                      "already exists.")
                emu.configs[key] = {**body, "created_at": now()}
                return sdk(CustomizationConfig, emu.configs[key])

        @app.get("/v1/customization/configs/{ns}/{name}")
        def get_config(ns: str, name: str):
            found = emu.configs.get(f"{ns}/{name}")
            return sdk(CustomizationConfig, found) if found else error(404, f"config {ns}/{name} not found")

        @app.post("/v1/customization/jobs")
        def create_customization(body: dict[str, Any]):
            with emu.lock:
                if body["config"] not in emu.configs:
                    return error(404, f"customization config {body['config']} not found")
                job = Job("customization", body, [dict(s) for s in emu.customization_script])
                emu.jobs[job.id] = job
                if emu.lose_next_create_response:
                    emu.lose_next_create_response = False
                    return error(500, "upstream connect error or disconnect/reset before headers")
                return sdk(CustomizationJob, emu._cust_job_body(job))

        @app.get("/v1/customization/jobs")
        def list_customization(request: Request):
            ns = request.query_params.get("filter[namespace]")
            with emu.lock:
                data = [emu._cust_job_body(j) for j in emu.jobs.values()
                        if j.kind == "customization" and (ns is None or j.body.get("namespace") == ns)]
            return sdk(CustomizationJobOutputsPage, {"object": "list", "data": data,
                                                     "pagination": {"page": 1, "page_size": 100, "total_pages": 1,
                                                                    "current_page_size": len(data),
                                                                    "total_results": len(data)}})

        @app.get("/v1/customization/jobs/{job_id}/status")
        def customization_status(job_id: str):
            job = emu.jobs.get(job_id)
            if job is None:
                return error(404, f"job {job_id} not found")
            with emu.lock:
                if job.advance()["status"] == "completed":
                    emu._on_customization_completed(job)
                return sdk(CustomizationStatusDetails, emu._cust_status(job))

        @app.post("/v1/customization/jobs/{job_id}/cancel")
        def cancel_customization(job_id: str):
            job = emu.jobs.get(job_id)
            if job is None:
                return error(404, f"job {job_id} not found")
            job.state, job.cancelled = {"status": "cancelled", "status_logs": [{"message": "Cancelled by user"}]}, True
            return sdk(CustomizationJob, emu._cust_job_body(job))

        # DMS ------------------------------------------------------------------------------------
        def dep_body(key: str) -> dict[str, Any]:
            dep = emu.deployments[key]
            return {**dep["body"], "url": f"{emu.nim.root_url}", "created_at": dep["created_at"],
                    "status_details": {"status": dep["state"], "description": dep.get("description", "")}}

        @app.post("/v1/deployment/model-deployments")
        def create_deployment(body: dict[str, Any]):
            key = f"{body['namespace']}/{body['name']}"
            with emu.lock:
                if key in emu.deployments:  # what DMS really answers for a duplicate
                    return error(500, f"model deployment already exists: {key}")
                emu.deployments[key] = {"body": body, "script": list(emu.deployment_script), "step": 0,
                                        "state": "created", "created_at": now()}
                return sdk(ModelDeployment, dep_body(key))

        @app.get("/v1/deployment/model-deployments/{ns}/{name}")
        def get_deployment(ns: str, name: str):
            key = f"{ns}/{name}"
            with emu.lock:
                dep = emu.deployments.get(key)
                if dep is None:
                    return error(404, f"model deployment {key} not found")
                step = dep["script"][min(dep["step"], len(dep["script"]) - 1)]
                dep["step"] += 1
                dep["state"], dep["description"] = (step, "") if isinstance(step, str) else (step[0], step[1])
                if dep["state"] == "ready" and emu.deploy_models_on_ready:
                    emu.nim.add_model(dep["body"]["config"]["model"])
                return sdk(ModelDeployment, dep_body(key))

        @app.delete("/v1/deployment/model-deployments/{ns}/{name}")
        def delete_deployment(ns: str, name: str):
            with emu.lock:
                dep = emu.deployments.pop(f"{ns}/{name}", None)
            if dep is None:
                return error(404, f"model deployment {ns}/{name} not found")
            emu.nim.remove_model(dep["body"]["config"]["model"])
            return sdk(DeleteResponse, {"id": name, "deleted_at": now(), "message": "deleted"})

        return app


__all__ = ["NemoV1Emulator"]
