"""Persistence activities: job store, aggregation (CIs + gate), report page, MLflow."""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from flywheel.jobdoc import JobDocument
from workflows.models import (
    ACT_AGGREGATE,
    ACT_LOG_MLFLOW,
    ACT_PERSIST_JOB,
    ACT_WRITE_REPORT,
    AggregateInput,
    PersistJobInput,
    ReportInput,
)

# The production model's responses are the ground truth, so its own agreement score is 1.0:
# the gate asks that a candidate stays within max_drop_vs_reference of it.
REFERENCE_SCORE = 1.0


def _put(inp: PersistJobInput) -> bool:
    from flywheel.jobstore import open_jobstore

    store = open_jobstore(inp.settings)
    try:
        return store.put(inp.doc)
    finally:
        close = getattr(store, "close", None)
        if close:
            close()


@activity.defn(name=ACT_PERSIST_JOB)
async def persist_job(inp: PersistJobInput) -> None:
    """Write the job document to the JobStore (it outlives Temporal's retention)."""
    try:
        stored = await asyncio.to_thread(_put, inp)
    except Exception as exc:
        if type(exc).__name__ == "ConfigError":
            raise ApplicationError(str(exc), type="ConfigError", non_retryable=True) from exc
        raise
    if stored is False:  # a newer revision is already stored (this attempt arrived late): nothing to do
        activity.logger.info("job %s revision %s is older than the stored one; not written",
                             inp.doc.id, inp.doc.revision)


def aggregate(doc: JobDocument, settings) -> JobDocument:
    """Confidence intervals per score and the promotion gate per candidate (pure)."""
    from flywheel.stats import confidence_interval, cost_per_1k_requests, gate_verdict

    doc = doc.model_copy(deep=True)
    prices = {n.model_name: n.cost_per_1k_tokens for n in settings.nims}
    for nim in doc.nims:
        costed = nim.evaluation("base-eval") or next(iter(nim.evaluations), None)
        if costed is not None and not costed.error and costed.num_records and nim.model_name in prices:
            nim.cost_per_1k_requests = cost_per_1k_requests(
                int(getattr(costed, "prompt_tokens", 0) or 0), int(getattr(costed, "completion_tokens", 0) or 0),
                costed.num_records, prices[nim.model_name])
        best = None
        for ev in nim.evaluations:
            n = ev.num_records or 0
            if ev.error or n <= 0:
                continue
            cis: dict[str, list[float]] = {}
            for metric, score in ev.scores.items():
                if score is None:
                    continue
                # Wilson needs only the mean and the count (scores are per-record 0/1).
                hits = round(float(score) * n)
                lo, hi = confidence_interval([1.0] * hits + [0.0] * (n - hits))
                cis[metric] = [round(lo, 4), round(hi, 4)]
            ev.confidence_intervals = cis
            score = ev.scores.get(settings.gate.metric)
            if score is not None and (best is None or score > best[1]):
                best = (ev, score)
        if best is None:
            nim.gate = {"passed": False, "reasons": ["no successful evaluation"], "eval_type": None}
            continue
        verdict = gate_verdict(best[0].scores, REFERENCE_SCORE, settings.gate)
        nim.gate = {**verdict, "eval_type": best[0].eval_type, "metric": settings.gate.metric,
                    "score": best[1], "reference_score": REFERENCE_SCORE}
    return doc


@activity.defn(name=ACT_AGGREGATE)
async def aggregate_results(inp: AggregateInput) -> JobDocument:
    return await asyncio.to_thread(aggregate, inp.doc, inp.settings)


@activity.defn(name=ACT_WRITE_REPORT)
async def write_report(inp: ReportInput) -> str:
    from flywheel.report import write_report as _write

    out_dir = Path(inp.settings.platform.data_dir) / "reports" / inp.doc.id
    path = await asyncio.to_thread(_write, inp.doc, out_dir)
    return str(path)


@activity.defn(name=ACT_LOG_MLFLOW)
async def log_mlflow(inp: ReportInput) -> dict[str, str]:
    """``{"<model>/<eval_type>": "runs:/<id>"}``; {} when MLflow is disabled."""
    if not inp.settings.mlflow_config.enabled:
        return {}
    from flywheel.tracking import log_job

    return await asyncio.to_thread(log_job, inp.doc, inp.settings.mlflow_config)
