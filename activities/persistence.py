"""Persistence activities: job store, aggregation (flywheel.aggregation), report page, MLflow."""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.common import heartbeat_on_a_timer
from flywheel.aggregation import aggregate
from flywheel.artifacts import ArtifactError, open_artifact_store
from flywheel.cluster import host_local
from flywheel.config import ConfigError, Settings
from flywheel.gate_inputs import ScoresReader
from flywheel.jobdoc import JobDocument
from flywheel.jobstore import open_jobstore
from flywheel.report import publish_report
from flywheel.scoring import parse_record_scores
from flywheel.tracking import log_job
from workflows.models import (
    ACT_AGGREGATE,
    ACT_LOG_MLFLOW,
    ACT_PERSIST_JOB,
    ACT_WRITE_REPORT,
    AggregateInput,
    PersistJobInput,
    ReportInput,
)


def _put(inp: PersistJobInput) -> bool:
    with open_jobstore(inp.settings) as store:
        return store.put(inp.doc)


@activity.defn(name=ACT_PERSIST_JOB)
@heartbeat_on_a_timer
async def persist_job(inp: PersistJobInput) -> None:
    """Write the job document to the JobStore (it outlives Temporal's retention)."""
    try:
        stored = await asyncio.to_thread(_put, inp)
    except ConfigError as exc:
        raise ApplicationError(str(exc), type="ConfigError", non_retryable=True) from exc
    if stored is False:  # a newer revision is already stored (this attempt arrived late): nothing to do
        activity.logger.info("job %s revision %s is older than the stored one; not written",
                             inp.doc.id, inp.doc.revision)


@activity.defn(name=ACT_AGGREGATE)
@heartbeat_on_a_timer
async def aggregate_results(inp: AggregateInput) -> JobDocument:
    return await asyncio.to_thread(aggregate, inp.doc, inp.settings, stored_record_scores(inp.settings))


def stored_record_scores(settings: Settings) -> ScoresReader:
    """Per-record scores beside predictions in the artifact store (``<predictions>.scores.jsonl``), for the
    gate's paired tests; {} for predictions elsewhere (a remote platform's) or without a scores file."""
    store = open_artifact_store(host_local(settings))

    def read(predictions_uri: str) -> dict[str, dict[str, float | None]]:
        try:
            key = store.key(predictions_uri)
        except ArtifactError:
            return {}
        scores_key = key.removesuffix(".jsonl") + ".scores.jsonl"
        if not key.endswith(".jsonl") or not store.exists(scores_key):
            return {}
        return parse_record_scores(store.read_bytes(scores_key).decode("utf-8"))

    return read


@activity.defn(name=ACT_WRITE_REPORT)
@heartbeat_on_a_timer
async def write_report(inp: ReportInput) -> str:
    settings = host_local(inp.settings)
    return await asyncio.to_thread(publish_report, inp.doc, open_artifact_store(settings), settings.data_dir)


@activity.defn(name=ACT_LOG_MLFLOW)
@heartbeat_on_a_timer
async def log_mlflow(inp: ReportInput) -> dict[str, str]:
    """``{"<model>/<eval_type>": "runs:/<id>"}``; {} when MLflow is disabled."""
    if not inp.settings.mlflow_config.enabled:
        return {}
    return await asyncio.to_thread(log_job, inp.doc, inp.settings.mlflow_config)
