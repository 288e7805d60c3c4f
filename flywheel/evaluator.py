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
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx

from flywheel.config import LLMJudgeConfig
from flywheel.judge import (
    similarity_by_rule,
    similarity_judge_score,
    similarity_prompt,
    tool_verdict_by_rule,
    verdicts_mean,
)
from flywheel.metrics import JUDGE_METRIC, METRICS, SIMILARITY_METRIC, binary_judge_score, judge_prompt
from flywheel.progress import EvaluationProgress
from flywheel.records import message_text, message_tool_calls, response_message
from flywheel.scoring import is_tool_workload, record_scores_path, summarize, write_record_scores
from flywheel.stats import latency_percentiles
from flywheel.types import EvalResult, EvalSpec, PlatformError, ProgressFn

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 2.0
PROGRESS_STEP_FRACTION = 0.05
BACKOFF_MAX_S = 20.0


class RequestFailed(Exception):
    def __init__(self, message: str, *, transient: bool, attempts: int) -> None:
        super().__init__(message)
        self.transient = transient
        self.attempts = attempts


def is_transient_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


def record_key(row: dict[str, Any], index: int) -> str:
    return str(row.get("record_id") or f"row-{index}")


def _wire_message(message: dict[str, Any]) -> dict[str, Any]:
    """A message as the OpenAI API wants it: tool-call arguments as JSON strings."""
    if not message.get("tool_calls"):
        return message
    out = dict(message)
    calls = []
    for call in message["tool_calls"]:
        function = dict(call.get("function") or {})
        if not isinstance(function.get("arguments"), str):
            function["arguments"] = json.dumps(function.get("arguments") or {}, ensure_ascii=False)
        calls.append({**call, "function": function})
    out["tool_calls"] = calls
    return out


def chat_request_body(spec: EvalSpec, row: dict[str, Any]) -> dict[str, Any]:
    request = row.get("request") or {}
    body: dict[str, Any] = {
        "model": spec.endpoint.served_model,
        "messages": [_wire_message(m) for m in request.get("messages", [])],
        "temperature": spec.temperature,
        "max_tokens": spec.max_tokens,
    }
    if request.get("tools"):
        body["tools"] = request["tools"]
        if request.get("tool_choice") is not None:
            body["tool_choice"] = request["tool_choice"]
    return body


def _auth_headers(api_key_env: str | None) -> dict[str, str]:
    key = os.environ.get(api_key_env) if api_key_env else None
    return {"Authorization": f"Bearer {key}"} if key else {}


async def post_json_with_retries(client: httpx.AsyncClient, url: str, body: dict[str, Any], *,
                                 headers: dict[str, str], max_retries: int,
                                 backoff_base_s: float) -> tuple[dict[str, Any], float, int]:
    """POST ``body``; returns (json, latency_ms of the successful attempt, attempts). Raises RequestFailed."""
    attempt = 0
    while True:
        attempt += 1
        retry_after: float | None = None
        started = time.perf_counter()
        try:
            response = await client.post(url, json=body, headers=headers)
            latency_ms = (time.perf_counter() - started) * 1000
            if response.status_code < 400:
                try:
                    return response.json(), latency_ms, attempt
                except ValueError as exc:
                    raise RequestFailed(f"response is not JSON: {exc}", transient=False, attempts=attempt) from exc
            message = f"HTTP {response.status_code}: {response.text[:300]}"
            if not is_transient_status(response.status_code):
                raise RequestFailed(message, transient=False, attempts=attempt)
            header = response.headers.get("retry-after", "")
            retry_after = min(float(header), BACKOFF_MAX_S) if header.replace(".", "", 1).isdigit() else None
        except httpx.TransportError as exc:  # connect/read/write errors and timeouts
            message = f"{type(exc).__name__}: {exc}"
        if attempt > max_retries:
            raise RequestFailed(message, transient=True, attempts=attempt)
        delay = retry_after if retry_after is not None else min(BACKOFF_MAX_S, backoff_base_s * 2 ** (attempt - 1))
        await asyncio.sleep(delay * (0.5 + random.random() / 2) if retry_after is None else delay)


class JsonlCache:
    """Append-only JSONL rows keyed by ``record_id``; reading tolerates a torn last line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: Any = None

    def load(self) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return rows
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a crash mid-write
                if isinstance(row, dict) and "record_id" in row:
                    rows[str(row["record_id"])] = row
        return rows

    def append(self, row: dict[str, Any]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            needs_newline = (self.path.exists() and self.path.stat().st_size > 0
                             and not self.path.read_bytes().endswith(b"\n"))
            self._file = self.path.open("a", encoding="utf-8")
            if needs_newline:
                self._file.write("\n")
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


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


class JudgeClient(Protocol):
    async def complete(self, messages: list[dict[str, Any]]) -> str:
        """The judge model's reply text."""


class OpenAIJudge:
    """An OpenAI-compatible judge. ``url`` is the API base (``.../v1``) or the full chat/completions URL."""

    def __init__(self, config: LLMJudgeConfig, *, timeout_s: float = 120.0, max_retries: int = 3,
                 backoff_base_s: float = 0.5, max_tokens: int = 64) -> None:
        if not config.url or not config.model_name:
            raise ValueError("llm_judge_config needs url and model_name")
        base = config.url.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.model_name = config.model_name
        self._headers = _auth_headers(config.api_key_env)
        self._client = httpx.AsyncClient(timeout=timeout_s)
        self._max_retries, self._backoff_base_s, self._max_tokens = max_retries, backoff_base_s, max_tokens

    async def complete(self, messages: list[dict[str, Any]]) -> str:
        body = {"model": self.model_name, "messages": messages, "temperature": 0.0, "max_tokens": self._max_tokens}
        data, _, _ = await post_json_with_retries(self._client, self.url, body, headers=self._headers,
                                                  max_retries=self._max_retries, backoff_base_s=self._backoff_base_s)
        return str(response_message(data).get("content") or "")

    async def aclose(self) -> None:
        await self._client.aclose()


def _client_pool(spec: EvalSpec, transport: httpx.AsyncBaseTransport | None) -> tuple[asyncio.Queue, list]:
    """One single-connection client per concurrency slot.

    httpcore's shared pool re-checks every connection on each request (O(connections) socket polls
    per request), which costs more CPU than the request itself at 32+ in flight; a private
    connection per slot keeps the orchestration overhead flat. The TLS context is built once.
    """
    if transport is not None:  # tests: one client over the injected transport
        clients = [httpx.AsyncClient(timeout=spec.request_timeout_s, transport=transport)] * spec.concurrency
    else:
        tls = ssl.create_default_context()
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        clients = [httpx.AsyncClient(timeout=spec.request_timeout_s, limits=limits, verify=tls)
                   for _ in range(spec.concurrency)]
    pool: asyncio.Queue = asyncio.Queue()
    for client in clients:
        pool.put_nowait(client)
    return pool, list({id(c): c for c in clients}.values())


def _judge_configured(spec: EvalSpec) -> bool:
    return spec.judge is not None and bool(spec.judge.url) and bool(spec.judge.model_name)


async def _run_judge(spec: EvalSpec, keys: list[str], judge: JudgeClient, cache: JsonlCache, *,
                     by_rule: Callable[[int], int | None], ask: Callable[[int], list[dict[str, Any]]],
                     parse: Callable[[str], int | None]) -> tuple[list[int | None], float | None, str | None]:
    """Per-record judge verdicts and their mean. ``by_rule(i)`` settles a record without asking (or None)."""
    cached = cache.load()
    semaphore = asyncio.Semaphore(spec.concurrency)
    verdicts: list[int | None] = [None] * len(keys)

    async def judge_one(i: int) -> None:
        settled = by_rule(i)
        if settled is not None:
            verdicts[i] = settled
            return
        if keys[i] in cached and (score := cached[keys[i]].get("score")) is not None and parse(str(score)) == score:
            verdicts[i] = score
            return
        async with semaphore:
            try:
                reply = await judge.complete(ask(i))
            except (RequestFailed, ValueError, httpx.HTTPError) as exc:
                cache.append({"record_id": keys[i], "score": None, "error": str(exc)[:300]})
                return
        verdicts[i] = parse(reply)
        cache.append({"record_id": keys[i], "score": verdicts[i], "reply": reply[:300]})

    try:
        async with asyncio.TaskGroup() as group:
            for i in range(len(keys)):
                group.create_task(judge_one(i))
    finally:
        cache.close()
    return (verdicts, *verdicts_mean(verdicts))


def _tool_judge(rows: list[dict[str, Any]], predictions: list[dict[str, Any] | None]) -> dict[str, Any]:
    """tool_calling_correctness (0/1). No-call records and failed predictions are scored by rule, not asked."""
    def expected(i: int) -> list[Any]:
        return message_tool_calls(response_message(rows[i]["response"]))

    def by_rule(i: int) -> int | None:
        return tool_verdict_by_rule(expected(i), predictions[i])

    def ask(i: int) -> list[dict[str, Any]]:
        return judge_prompt(rows[i].get("request") or {}, expected(i), message_tool_calls(predictions[i]))

    return {"by_rule": by_rule, "ask": ask, "parse": binary_judge_score}


def _similarity_judge(rows: list[dict[str, Any]], predictions: list[dict[str, Any] | None]) -> dict[str, Any]:
    """similarity (1–10) of the candidate's answer to the production answer. A failed request scores 1."""
    def by_rule(i: int) -> int | None:
        return similarity_by_rule(predictions[i])

    def ask(i: int) -> list[dict[str, Any]]:
        return similarity_prompt(rows[i].get("request") or {}, message_text(response_message(rows[i]["response"])),
                                 message_text(predictions[i]))

    return {"by_rule": by_rule, "ask": ask, "parse": similarity_judge_score}


async def evaluate(spec: EvalSpec, rows: list[dict[str, Any]], *, predictions_path: Path,
                   progress: ProgressFn | None = None, judge_client: JudgeClient | None = None,
                   backoff_base_s: float = 0.5, transport: httpx.AsyncBaseTransport | None = None) -> EvalResult:
    """Evaluate ``spec.endpoint`` on ``rows``; see the module docstring for the guarantees."""
    started = time.monotonic()
    predictions_path = Path(predictions_path)
    keys = [record_key(row, i) for i, row in enumerate(rows)]
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
    headers = _auth_headers(spec.endpoint.details.get("api_key_env"))
    semaphore = asyncio.Semaphore(spec.concurrency)
    clients, distinct_clients = _client_pool(spec, transport)
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

    predictions = [None if outcomes[k].get("error") else outcomes[k].get("prediction") for k in keys]
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
    if judge_client is None and not _judge_configured(spec):
        notes[judged] = "no llm_judge_config configured"
    else:
        own_judge = None
        if judge_client is None:
            assert spec.judge is not None
            judge_client = own_judge = OpenAIJudge(spec.judge, timeout_s=spec.request_timeout_s,
                                                   max_retries=spec.max_retries, backoff_base_s=backoff_base_s)
        judge_cache = JsonlCache(predictions_path.with_name(predictions_path.stem + ".judge.jsonl"))
        kind = _tool_judge(rows, predictions) if tool_workload else _similarity_judge(rows, predictions)
        try:
            verdicts, score, note = await _run_judge(spec, keys, judge_client, judge_cache, **kind)
        finally:
            if own_judge is not None:
                await own_judge.aclose()
        scores[judged] = score
        judge_columns[judged] = verdicts
        if note:
            notes[judged] = note
    # Per-record scores beside the predictions: the gate's paired tests need them (same records).
    write_record_scores(record_scores_path(predictions_path), keys, rows, predictions, extra=judge_columns)

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


__all__ = ["JudgeClient", "OpenAIJudge", "chat_request_body", "evaluate", "post_json_with_retries"]
