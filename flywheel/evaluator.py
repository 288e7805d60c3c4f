"""The evaluator of record: concurrent OpenAI-compatible requests to a candidate, scored by flywheel.metrics.

* Requests go to ``{endpoint.base_url}/chat/completions`` with the record's messages and tools,
  at most ``spec.concurrency`` in flight.
* Transient failures (connect errors, timeouts, HTTP 408/429/5xx) are retried with exponential
  backoff and jitter, up to ``spec.max_retries`` times; other 4xx answers are not retried. A record
  whose request finally fails is recorded with its error, scored 0 and counted in ``num_errors``.
* Every outcome is appended to ``predictions_path`` (JSONL: record_id, prediction, latency_ms,
  usage, error) as soon as it arrives. A retried activity reuses the rows already there (successes
  and permanent errors; transient failures are tried again), so it never pays twice for a record.
* The LLM judge (when ``spec.judge`` has url and model_name) scores ``tool_calling_correctness`` (0/1)
  on tool workloads and ``similarity`` (1-10, flywheel.judge) on workloads without tools; its
  verdicts are cached beside the predictions (``*.judge.jsonl``) the same way.
* If every request of an attempt failed transiently, the endpoint is down: a retryable
  :class:`PlatformError` is raised instead of reporting a score of 0.

The pieces: requests and retries in :mod:`flywheel.openai_http`, the judge in :mod:`flywheel.eval_judging`,
the resumable rows in :mod:`flywheel.jsonl_cache`; here the two phases, requesting and scoring.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import httpx

from flywheel.eval_judging import JudgeClient, OpenAIJudge, judge_configured, judge_records
from flywheel.jsonl_cache import JsonlCache
from flywheel.metrics import JUDGE_METRIC, METRICS, SIMILARITY_METRIC
from flywheel.openai_http import (
    RequestFailed,
    auth_headers,
    chat_request_body,
    client_pool,
    post_json_with_retries,
)
from flywheel.progress import EvaluationProgress
from flywheel.records import response_message
from flywheel.scoring import is_tool_workload, record_scores_path, summarize, write_record_scores
from flywheel.stats import latency_percentiles
from flywheel.types import EvalResult, EvalSpec, PlatformError, ProgressFn

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 2.0
PROGRESS_STEP_FRACTION = 0.05


def record_key(row: dict[str, Any], index: int) -> str:
    return str(row.get("record_id") or f"row-{index}")


class ProgressReporter:
    """Calls ``fn({done, total, errors})`` at every 5% step, every 2 s while work is pending, and at the end."""

    def __init__(self, fn: ProgressFn | None, total: int, done: int = 0, errors: int = 0) -> None:
        self.fn, self.total, self.done, self.errors = fn, total, done, errors
        self._step = max(1, int(total * PROGRESS_STEP_FRACTION))
        self._next_mark = done + self._step
        self._last_emit = time.monotonic()

    def emit(self) -> None:
        self._last_emit = time.monotonic()
        if self.fn is not None:
            self.fn(EvaluationProgress(done=self.done, total=self.total, errors=self.errors).details())

    def record(self, error: bool) -> None:
        self.done += 1
        self.errors += int(error)
        if self.done >= self._next_mark or self.done == self.total:
            self._next_mark = self.done + self._step
            self.emit()

    async def tick_forever(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, PROGRESS_INTERVAL_S - (time.monotonic() - self._last_emit)))
            if time.monotonic() - self._last_emit >= PROGRESS_INTERVAL_S:
                self.emit()


async def evaluate(spec: EvalSpec, rows: list[dict[str, Any]], *, predictions_path: Path,
                   progress: ProgressFn | None = None, judge_client: JudgeClient | None = None,
                   backoff_base_s: float = 0.5, transport: httpx.AsyncBaseTransport | None = None) -> EvalResult:
    """Evaluate ``spec.endpoint`` on ``rows``; see the module docstring for the guarantees."""
    started = time.monotonic()
    predictions_path = Path(predictions_path)
    keys = [record_key(row, i) for i, row in enumerate(rows)]
    outcomes = await _request_predictions(spec, rows, keys, predictions_path, progress=progress,
                                          backoff_base_s=backoff_base_s, transport=transport)
    predictions = [None if outcomes[k].get("error") else outcomes[k].get("prediction") for k in keys]
    summary, scores, notes = await _score_predictions(spec, rows, keys, predictions, predictions_path,
                                                      judge_client=judge_client, backoff_base_s=backoff_base_s)

    latencies = [o["latency_ms"] for k in keys if (o := outcomes[k]).get("latency_ms") is not None]
    p50, p95 = latency_percentiles(latencies)
    usages = [outcomes[k].get("usage") or {} for k in keys]
    num_errors = sum(1 for k in keys if outcomes[k].get("error"))
    if num_errors:
        log.warning("%s: %d of %d requests failed (scored 0)", spec.name, num_errors, len(rows))
    return EvalResult(
        eval_type=spec.eval_type,
        num_records=len(rows),
        num_errors=num_errors,
        scores=scores,
        score_notes=notes,
        per_tool=summary["per_tool"],
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        prompt_tokens=sum(int(u.get("prompt_tokens") or 0) for u in usages),
        completion_tokens=sum(int(u.get("completion_tokens") or 0) for u in usages),
        predictions_uri=str(predictions_path),
        runtime_seconds=round(time.monotonic() - started, 3),
    )


async def _request_predictions(spec: EvalSpec, rows: list[dict[str, Any]], keys: list[str], predictions_path: Path,
                               *, progress: ProgressFn | None, backoff_base_s: float,
                               transport: httpx.AsyncBaseTransport | None) -> dict[str, dict[str, Any]]:
    """Every record's outcome (prediction or error, latency, usage), reusing the ones already stored."""
    store = JsonlCache(predictions_path)
    existing = store.load()
    outcomes: dict[str, dict[str, Any]] = {
        key: row for key, row in existing.items() if not (row.get("error") and row.get("error_transient"))
    }
    first_index = {key: i for i, key in reversed(list(enumerate(keys)))}  # duplicate ids share one request
    todo = sorted(i for key, i in first_index.items() if key not in outcomes)
    reporter = ProgressReporter(progress, len(first_index), done=len(first_index) - len(todo),
                                errors=sum(1 for k in first_index if k in outcomes and outcomes[k].get("error")))
    reporter.emit()
    url = spec.endpoint.base_url.rstrip("/") + "/chat/completions"
    headers = auth_headers(spec.endpoint.details.get("api_key_env"))
    semaphore = asyncio.Semaphore(spec.concurrency)
    clients, distinct_clients = client_pool(spec, transport)
    transient_failures = 0

    async def predict(i: int) -> None:
        nonlocal transient_failures
        async with semaphore:
            client = clients.get_nowait()  # never empty: one client per semaphore slot
            outcome: dict[str, Any] = {"record_id": keys[i], "prediction": None, "latency_ms": None,
                                       "usage": None, "error": None, "error_transient": False, "attempts": 0}
            try:
                data, latency_ms, attempts = await post_json_with_retries(
                    client, url, chat_request_body(spec, rows[i]), headers=headers,
                    max_retries=spec.max_retries, backoff_base_s=backoff_base_s)
                outcome.update(prediction=response_message(data), latency_ms=round(latency_ms, 3),
                               usage=data.get("usage"), attempts=attempts)
            except RequestFailed as exc:
                outcome.update(error=str(exc), error_transient=exc.transient, attempts=exc.attempts)
                transient_failures += int(exc.transient)
            except ValueError as exc:  # a 2xx answer without choices[0].message
                outcome.update(error=f"malformed response: {exc}")
            finally:
                clients.put_nowait(client)
        outcomes[keys[i]] = outcome
        store.append(outcome)
        reporter.record(error=outcome["error"] is not None)

    ticker = asyncio.create_task(reporter.tick_forever())
    try:
        async with asyncio.TaskGroup() as group:
            for i in todo:
                group.create_task(predict(i))
    finally:
        ticker.cancel()
        store.close()
        for client in distinct_clients:
            await client.aclose()
    if todo and transient_failures == len(todo):
        raise PlatformError(f"every request to {url} failed with a transient error; is the endpoint up?",
                            retryable=True, error_type="EndpointUnavailable")
    reporter.emit()
    return outcomes


async def _score_predictions(spec: EvalSpec, rows: list[dict[str, Any]], keys: list[str],
                             predictions: list[dict[str, Any] | None], predictions_path: Path, *,
                             judge_client: JudgeClient | None, backoff_base_s: float,
                             ) -> tuple[dict[str, Any], dict[str, float | None], dict[str, str]]:
    """The summary, scores and notes of the predictions (the judge's too); per-record scores are written
    beside the predictions."""
    summary = summarize(rows, predictions)
    # Every registered metric the summary computed (per-record tool-call scores, token F1); the judge's below.
    scores: dict[str, float | None] = {m.name: summary[m.name] for m in METRICS if m.name in summary}
    notes: dict[str, str] = dict(summary["notes"])
    # The judge: tool_calling_correctness for tool workloads, similarity (1-10) for the others.
    tool_workload = is_tool_workload(rows)
    judged, unjudged = ((JUDGE_METRIC, SIMILARITY_METRIC) if tool_workload else (SIMILARITY_METRIC, JUDGE_METRIC))
    scores[JUDGE_METRIC] = scores[SIMILARITY_METRIC] = None
    judge_columns: dict[str, list[int | None]] = {}
    notes[unjudged] = (f"tool workload: judged by {JUDGE_METRIC}" if tool_workload
                       else "generic workload (no tools in the dataset)")
    if judge_client is None and not judge_configured(spec):
        notes[judged] = "no llm_judge_config configured"
    else:
        verdicts, score, note = await judge_records(
            spec, rows, keys, predictions, tool_workload=tool_workload, predictions_path=predictions_path,
            judge_client=judge_client, backoff_base_s=backoff_base_s)
        scores[judged] = score
        judge_columns[judged] = verdicts
        if note:
            notes[judged] = note
    # Per-record scores beside the predictions: the gate's paired tests need them (same records).
    write_record_scores(record_scores_path(predictions_path), keys, rows, predictions, extra=judge_columns)
    return summary, scores, notes


__all__ = ["JudgeClient", "OpenAIJudge", "chat_request_body", "evaluate", "post_json_with_retries"]
