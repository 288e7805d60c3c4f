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
``/v1/models``, a create whose response is lost (500 after the job was stored), and cancel. Deletes follow the
docs: evaluation jobs and Entity Store models (a finished customization registers its output model) can be
deleted; customization jobs cannot (the v1 API has no such endpoint). Evaluation jobs
really evaluate: they call the target's OpenAI endpoint and score with our evaluator of record
(:func:`flywheel.metrics.score_tool_calls`), plus the LLM judge when one is configured (tests/emulators/
nemo_v1_custom_eval.py). Retriever jobs and
embedding customization (the ``embedding_job`` path) live in tests/emulators/nemo_v1_retriever.py: a
``retriever`` job embeds the BEIR files through the target's embedding endpoints and scores with our
retrieval metrics; an embedding training dataset must be ``{query, pos_doc, neg_doc[]}`` rows. A finished
``lora`` job's adapter appears in the NIM's ``/v1/models``; any other finetuning type (``all_weights``,
``lora_merged``) produces a model in the Entity Store that is served only once DMS deploys it.
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

from tests.emulators.nemo_v1_custom_eval import run_custom_evaluation
from tests.emulators.nemo_v1_retriever import config_errors, run_retriever_evaluation, triplet_schema_errors
from tests.emulators.openai_scripted import ScriptedOpenAI, free_port
from tests.emulators.threaded_server import ThreadedServer


def now() -> str:  # naive ISO like the real services (docs/platforms.md)
    return datetime.now(UTC).replace(tzinfo=None).isoformat()


def sdk(model: type, body: Any, status: int = 200) -> JSONResponse:
    """Validate ``body`` with the SDK's response type, then send it."""
    model.model_validate(body)
    return JSONResponse(body, status_code=status)


def error(status: int, detail: str) -> JSONResponse:
    return sdk(ErrorResponse, {"detail": detail}, status)


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
        self.deployment_requests: list[dict[str, Any]] = []  # every create body, kept after a delete
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
    def _run_evaluation(self, job: Job) -> dict[str, Any]:
        config, target = job.body["config"], job.body["target"]
        tasks = (run_retriever_evaluation(self.repos, config, target) if config["type"] == "retriever"
                 else run_custom_evaluation(self.repos, self.models, config, target))
        return {"id": f"evaluation_result-{job.id}", "job": job.id, "created_at": now(), "tasks": tasks,
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
        # The Customizer registers the output model in the Entity Store ("If not specified, no output model
        # is created"): that entity is what DELETE /v1/models/{namespace}/{name} removes.
        ns, _, name = model.partition("/")
        self.models.setdefault(model, Model.model_validate(
            {"name": name, "namespace": ns, "created_at": now(), "base_model": job.body["config"],
             "description": f"output of customization job {job.id}"}).model_dump(mode="json"))
        if job.body["hyperparameters"].get("finetuning_type") != "lora":  # full weights: a DMS deployment serves it
            return
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

        @app.get("/v1/models/{ns}/{name}")
        def get_model(ns: str, name: str):
            found = emu.models.get(f"{ns}/{name}")
            return sdk(Model, found) if found else error(404, f"model {ns}/{name} not found")

        @app.delete("/v1/models/{ns}/{name}")
        def delete_model(ns: str, name: str):
            """Entity Store docs (Delete Model): 200 with ``{"message", "id", "deleted_at"}``."""
            with emu.lock:
                found = emu.models.pop(f"{ns}/{name}", None)
            if found is None:
                return error(404, f"model {ns}/{name} not found")
            return sdk(DeleteResponse, {"message": "Resource deleted successfully.", "id": f"{ns}/{name}",
                                        "deleted_at": None})

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
            if body["config"].get("type") == "retriever":
                problems = config_errors(body["config"])
                if body["target"].get("type") != "retriever":
                    problems.append("a retriever config needs a retriever target")
                if problems:
                    return error(422, "; ".join(problems))
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

        @app.delete("/v1/evaluation/jobs/{job_id}")
        def delete_eval(job_id: str):
            """Evaluator docs (Delete Evaluation Job): ``DELETE /v1/evaluation/jobs/<job-id>`` answers JSON; they
            show no body and the SDK reads none (``cast_to=NoneType``), so the Entity Store's delete shape is used.
            The job's results go with it."""
            with emu.lock:
                job = emu.jobs.get(job_id)
                if job is None or job.kind != "evaluation":
                    return error(404, f"job {job_id} not found")
                del emu.jobs[job_id]
            return sdk(DeleteResponse, {"message": "Resource deleted successfully.", "id": job_id,
                                        "deleted_at": now()})

        @app.post("/v1/evaluation/jobs/{job_id}/cancel")
        def cancel_eval(job_id: str):
            job = emu.jobs.get(job_id)
            if job is None:
                return error(404, f"job {job_id} not found")
            job.state, job.cancelled = {"status": "cancelled"}, True
            return sdk(EvaluationJob, emu._eval_job_body(job))

        # Customizer -----------------------------------------------------------------------------
        # The Customizer v1 API has no DELETE for customization jobs (create, list, get, status, cancel only).
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
                if body.get("dataset_parameters"):  # embedding training: the dataset must exist and be triplets
                    dataset = emu.datasets.get(f"{body['dataset']['namespace']}/{body['dataset']['name']}")
                    if dataset is None:
                        return error(404, f"dataset {body['dataset']} not found")
                    repo = dataset["files_url"].removeprefix("hf://datasets/")
                    if problems := triplet_schema_errors(emu.repos.get(repo, {})):
                        return error(422, f"dataset {repo} is not an embedding dataset: {problems[:3]}")
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
                emu.deployment_requests.append(body)
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
