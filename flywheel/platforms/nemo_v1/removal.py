"""DELETE of a finished job on NeMo Microservices v1: what its run created there, removed or kept.

* Datasets: the dataset entity and the Datastore repo of the run's splits and each candidate's ICL set.
* Evaluation jobs: every job named after one of the run's evaluations (``custom_fields.flywheel_name``;
  every attempt, not only the newest) and every job id its document recorded. A job still live is
  cancelled first; then ``DELETE /v1/evaluation/jobs/{id}`` (its results go with it).
* Customized models: the output model of each of the run's customization jobs, the models its document
  recorded and the deterministic output name: ``DELETE /v1/models/{namespace}/{name}`` (Entity Store).
  The promoted candidate's model stays when it was promoted on its customized evaluation.
* Customization jobs: the Customizer v1 API has no DELETE for jobs (create, list, get, status and cancel
  only), so they stay and the report says so; one still live is cancelled.
* Deployments the run's teardown missed: ``DELETE /v1/deployment/model-deployments/{ns}/{name}``.

Shared things stay without a mention: customization configs (one per base model and options, reused by
every run) and models registered as evaluation targets. Already gone (404) is fine, so a retry after a
partial removal finishes the rest.
"""

from __future__ import annotations

from flywheel.platforms.nemo_v1.client import NemoV1Clients, status_error, to_platform_error
from flywheel.platforms.nemo_v1.customization import NAME_FIELD as CUSTOMIZATION_NAME_FIELD
from flywheel.platforms.nemo_v1.customization import CustomizationV1
from flywheel.platforms.nemo_v1.datasets import DatasetsV1
from flywheel.platforms.nemo_v1.deployment import deployment_name
from flywheel.platforms.nemo_v1.evaluation import NAME_FIELD as EVALUATION_NAME_FIELD
from flywheel.platforms.nemo_v1.evaluation import EvaluationV1
from flywheel.platforms.nemo_v1.jobs import named_jobs
from flywheel.removal import (
    CUSTOMIZATION_JOB,
    CUSTOMIZED_MODEL,
    DEPLOYMENT,
    EVALUATION_JOB,
    PROMOTED,
    CandidateResources,
    RemovalReport,
    RunResources,
)
from flywheel.types import PlatformError

NOT_DELETABLE = "not deletable: the NeMo Customizer v1 API has no DELETE for customization jobs"
LIVE = frozenset({"created", "pending", "running"})


def job_id_from_uri(uri: str, collection: str) -> str | None:
    """``<base>/v1/<collection>/<id>`` (as recorded in the job document) → ``<id>``."""
    _, sep, tail = uri.rstrip("/").rpartition(f"/v1/{collection}/")
    return tail if sep and tail and "/" not in tail else None


class RemovalV1:
    def __init__(self, clients: NemoV1Clients, datasets: DatasetsV1, evaluation: EvaluationV1,
                 customization: CustomizationV1) -> None:
        self.c = clients
        self.datasets = datasets
        self.evaluation = evaluation
        self.customization = customization

    async def remove(self, resources: RunResources) -> RemovalReport:
        report = RemovalReport()
        for name in resources.dataset_names():
            report.extend(await self.datasets.remove(name))
        await self._evaluation_jobs(resources, report)
        await self._customizations(resources, report)
        await self._deployments(resources, report)
        return report

    def _list_url(self, collection: str) -> str:
        return f"{self.c.nemo_url}/v1/{collection}?filter[namespace]={self.c.namespace}"

    async def _evaluation_jobs(self, resources: RunResources, report: RemovalReport) -> None:
        names = set(resources.evaluation_names())
        jobs = {str(j["id"]): j for j in await named_jobs(self.c.get_json, self._list_url("evaluation/jobs"),
                                                          names, EVALUATION_NAME_FIELD)}
        for uri in resources.evaluation_job_uris:
            if (job_id := job_id_from_uri(uri, "evaluation/jobs")) and job_id not in jobs:
                jobs[job_id] = {"id": job_id}
        for job_id, job in jobs.items():
            if job.get("status") in LIVE:
                await self.evaluation.cancel_job(job_id)
            try:
                await self.c.sdk.evaluation.jobs.delete(job_id)
            except Exception as exc:
                if status_error(exc) == 404:
                    continue
                raise to_platform_error(exc, f"delete evaluation job {job_id}") from exc
            label = (job.get("custom_fields") or {}).get(EVALUATION_NAME_FIELD)
            report.remove(EVALUATION_JOB, f"{job_id} ({label})" if label else job_id)

    async def _customizations(self, resources: RunResources, report: RemovalReport) -> None:
        owner: dict[str, CandidateResources] = {f"{k}-customize": c for c in resources.candidates for k in c.keys}
        jobs = await named_jobs(self.c.get_json, self._list_url("customization/jobs"), set(owner),
                                CUSTOMIZATION_NAME_FIELD)
        models: dict[str, CandidateResources] = {}
        for job in jobs:
            candidate = owner[job["custom_fields"][CUSTOMIZATION_NAME_FIELD]]
            if job.get("status") in LIVE:
                await self.customization.cancel_job(str(job["id"]))
            report.keep(CUSTOMIZATION_JOB, str(job["id"]), NOT_DELETABLE)
            if job.get("output_model"):
                models.setdefault(self._namespaced(job["output_model"]), candidate)
        for candidate in resources.candidates:
            for model in candidate.customized_models:
                models.setdefault(self._namespaced(model), candidate)
        for model, candidate in models.items():
            if candidate.keep_customized:
                if await self._model_exists(model):
                    report.keep(CUSTOMIZED_MODEL, model, PROMOTED)
            elif await self._delete_model(model):
                report.remove(CUSTOMIZED_MODEL, model)

    def _namespaced(self, model: str) -> str:
        return model if "/" in model else f"{self.c.namespace}/{model}"

    async def _model_exists(self, model: str) -> bool:
        try:
            await self.c.get_json(f"{self.c.nemo_url}/v1/models/{model}")
        except PlatformError as exc:
            if exc.details.get("status_code") == 404:
                return False
            raise
        return True

    async def _delete_model(self, model: str) -> bool:
        ns, _, name = model.partition("/")
        try:
            await self.c.sdk.models.delete(name, namespace=ns)
        except Exception as exc:
            if status_error(exc) == 404:
                return False
            raise to_platform_error(exc, f"delete customized model {model}") from exc
        return True

    async def _deployments(self, resources: RunResources, report: RemovalReport) -> None:
        ns = self.c.namespace
        for name in resources.deployment_names():
            dname = deployment_name(name)
            try:
                await self.c.sdk.deployment.model_deployments.delete(dname, namespace=ns)
            except Exception as exc:
                if status_error(exc) == 404:
                    continue
                raise to_platform_error(exc, f"delete deployment {ns}/{dname}") from exc
            report.remove(DEPLOYMENT, f"{ns}/{dname}")

