"""MLflow tracking: one MLflow run per (candidate, eval type), nested under one run per job.

MLflow is optional (``mlflow_config.enabled``) and imported lazily: it is heavy to import.
Returns ``runs:/<run_id>`` URIs keyed by ``"<model>/<eval_type>"`` for the job document.
"""

from __future__ import annotations

from typing import Any

from flywheel.config import MLflowConfig
from flywheel.jobdoc import JobDocument


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
