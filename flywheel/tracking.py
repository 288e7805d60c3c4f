"""MLflow tracking: one MLflow run per (candidate, eval type), nested under one run per job.

MLflow is optional (``mlflow_config.enabled``) and imported lazily: it is heavy to import.
Returns ``runs:/<run_id>`` URIs keyed by ``"<model>/<eval_type>"`` for the job document.
"""

from __future__ import annotations

from typing import Any

from flywheel.config import MLflowConfig
from flywheel.jobdoc import JobDocument
from flywheel.removal import MLFLOW_MODEL_VERSION, MLFLOW_RUN, PROMOTED, RemovalReport


def _metrics(evaluation: Any) -> dict[str, float]:
    out = {k: float(v) for k, v in evaluation.scores.items() if v is not None}
    for name in ("latency_p50_ms", "latency_p95_ms", "runtime_seconds"):
        value = getattr(evaluation, name, None)
        if value is not None:
            out[name] = float(value)
    return out


def log_job(doc: JobDocument, config: MLflowConfig) -> dict[str, str]:
    """Log every finished evaluation of ``doc``; idempotent per job (runs are looked up by tag)."""
    if not config.enabled:
        return {}
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=config.tracking_uri)
    experiment_name = f"{config.experiment_name_prefix}-{doc.workload_id}"
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(experiment_name)

    uris: dict[str, str] = {}
    for nim in doc.nims:
        for evaluation in nim.evaluations:
            if not evaluation.scores:
                continue
            key = f"{nim.model_name}/{evaluation.eval_type}"
            existing = client.search_runs(
                [experiment_id], filter_string=f"tags.job_id = '{doc.id}' and tags.eval_key = '{key}'", max_results=1
            )
            if existing:
                run_id = existing[0].info.run_id
            else:
                run = client.create_run(
                    experiment_id,
                    run_name=f"{doc.id}-{nim.model_name}-{evaluation.eval_type}",
                    tags={"job_id": doc.id, "eval_key": key, "client_id": doc.client_id},
                )
                run_id = run.info.run_id
                params = {
                    "model_name": nim.model_name,
                    "eval_type": evaluation.eval_type,
                    "workload_id": doc.workload_id,
                    "client_id": doc.client_id,
                    "manifest_hash": doc.manifest_hash or "",
                    "num_records": str(evaluation.num_records or ""),
                }
                for name, value in params.items():
                    client.log_param(run_id, name, value)
                for name, value in _metrics(evaluation).items():
                    client.log_metric(run_id, name, value)
                client.set_terminated(run_id)
            uris[key] = f"runs:/{run_id}"
    return uris


def registered_model_name(config: MLflowConfig, workload_id: str, client_id: str) -> str:
    return f"{config.experiment_name_prefix}-{workload_id}-{client_id}"


def register_champion(doc: JobDocument, model_name: str, eval_type: str | None, config: MLflowConfig,
                      alias: str = "champion") -> dict[str, str]:
    """Register the promoted candidate as a version of the workload/client's model and point ``alias`` at it.

    The version's source is the MLflow run of the evaluation the gate judged it on (or its first
    logged evaluation). Idempotent: a retried activity finds the version it created by the job tag.
    """
    if not config.enabled:
        return {}
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.tracking_uri)
    nim = doc.nim(model_name)
    if nim is None:
        raise ValueError(f"model {model_name!r} is not a candidate of job {doc.id}")
    logged = [e for e in nim.evaluations if e.mlflow_uri]
    chosen = next((e for e in logged if e.eval_type == eval_type), logged[0] if logged else None)
    run_id = chosen.mlflow_uri.split("/")[-1] if chosen is not None and chosen.mlflow_uri else None
    name = registered_model_name(config, doc.workload_id, doc.client_id)
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(name, tags={"workload_id": doc.workload_id, "client_id": doc.client_id})
    existing = client.search_model_versions(f"name = '{name}' and tags.job_id = '{doc.id}'")
    if existing:
        version = existing[0]
    else:
        source = client.get_run(run_id).info.artifact_uri if run_id else f"flywheel-job:{doc.id}/{model_name}"
        version = client.create_model_version(
            name, source=source, run_id=run_id,
            tags={"job_id": doc.id, "model_name": model_name, "eval_type": (chosen.eval_type if chosen else "")},
            description=f"Promoted {model_name} from flywheel job {doc.id}")
    client.set_registered_model_alias(name, alias, version.version)
    return {"registered_model": name, "version": str(version.version), "alias": alias}


def remove_job_runs(job_id: str, workload_id: str, client_id: str, config: MLflowConfig) -> RemovalReport:
    """DELETE of a job: delete its MLflow runs (tagged ``job_id``), except that a model version registered
    when the job's candidate was promoted stays, with the run it was registered from (its source).

    ``delete_run`` is MLflow's soft delete (the run moves to the ``deleted`` lifecycle stage and leaves
    searches; ``mlflow gc`` purges it for good). Deleted runs are not listed again, so a retry is a no-op.
    """
    report = RemovalReport()
    if not config.enabled:
        return report
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.tracking_uri)
    name = registered_model_name(config, workload_id, client_id)
    sources: set[str] = set()
    for found in client.search_model_versions(f"name = '{name}' and tags.job_id = '{job_id}'"):
        version = client.get_model_version(name, found.version)  # search results carry no aliases
        aliases = f" (alias {', '.join(version.aliases)})" if version.aliases else ""
        report.keep(MLFLOW_MODEL_VERSION, f"{name} version {version.version}{aliases}", PROMOTED)
        if version.run_id:
            sources.add(version.run_id)
    experiment = client.get_experiment_by_name(f"{config.experiment_name_prefix}-{workload_id}")
    if experiment is None:
        return report
    for run in client.search_runs([experiment.experiment_id], filter_string=f"tags.job_id = '{job_id}'",
                                  max_results=1000):
        label = f"{run.info.run_id} ({run.info.run_name})"
        if run.info.run_id in sources:
            report.keep(MLFLOW_RUN, label, f"source of the {PROMOTED}")
        else:
            client.delete_run(run.info.run_id)
            report.remove(MLFLOW_RUN, label)
    return report
