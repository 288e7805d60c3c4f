"""The LLM judge during an evaluation: its client, cached per-record verdicts, and what it is asked per
workload (``tool_calling_correctness`` 0/1 on tool workloads, ``similarity`` 1-10 on the others).

Records a rule settles (no expected call, a failed prediction) are not asked. Verdicts are cached beside
the predictions (``*.judge.jsonl``), so a retried evaluation asks only what is not answered yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx

from flywheel.config import LLMJudgeConfig
from flywheel.jsonl_cache import JsonlCache
from flywheel.judge import (
    similarity_by_rule,
    similarity_judge_score,
    similarity_prompt,
    tool_verdict_by_rule,
    verdicts_mean,
)
from flywheel.metrics import binary_judge_score, judge_prompt
from flywheel.openai_http import RequestFailed, auth_headers, post_json_with_retries
from flywheel.records import message_text, message_tool_calls, response_message
from flywheel.types import EvalSpec


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
        self._headers = auth_headers(config.api_key_env)
        self._client = httpx.AsyncClient(timeout=timeout_s)
        self._max_retries, self._backoff_base_s, self._max_tokens = max_retries, backoff_base_s, max_tokens

    async def complete(self, messages: list[dict[str, Any]]) -> str:
        body = {"model": self.model_name, "messages": messages, "temperature": 0.0, "max_tokens": self._max_tokens}
        data, _, _ = await post_json_with_retries(self._client, self.url, body, headers=self._headers,
                                                  max_retries=self._max_retries, backoff_base_s=self._backoff_base_s)
        return str(response_message(data).get("content") or "")

    async def aclose(self) -> None:
        await self._client.aclose()


def judge_configured(spec: EvalSpec) -> bool:
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


def judge_cache_path(predictions_path: Path) -> Path:
    return predictions_path.with_name(predictions_path.stem + ".judge.jsonl")


async def judge_records(spec: EvalSpec, rows: list[dict[str, Any]], keys: list[str],
                        predictions: list[dict[str, Any] | None], *, tool_workload: bool, predictions_path: Path,
                        judge_client: JudgeClient | None, backoff_base_s: float,
                        ) -> tuple[list[int | None], float | None, str | None]:
    """Per-record verdicts, their mean and a note, from ``judge_client`` or (None) a client for ``spec.judge``
    that is closed afterwards."""
    own_judge = None
    if judge_client is None:
        assert spec.judge is not None
        judge_client = own_judge = OpenAIJudge(spec.judge, timeout_s=spec.request_timeout_s,
                                               max_retries=spec.max_retries, backoff_base_s=backoff_base_s)
    judge_cache = JsonlCache(judge_cache_path(predictions_path))
    kind = _tool_judge(rows, predictions) if tool_workload else _similarity_judge(rows, predictions)
    try:
        return await _run_judge(spec, keys, judge_client, judge_cache, **kind)
    finally:
        if own_judge is not None:
            await own_judge.aclose()
