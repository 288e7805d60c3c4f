"""Requests to an OpenAI-compatible endpoint: the chat request body, auth by env var name, retries with
backoff, and the per-slot client pool (shared by the evaluator and the LLM judge client).

Transient failures (connect errors, timeouts, HTTP 408/429/5xx) are retried with exponential backoff and
jitter (or the server's ``Retry-After``); other 4xx answers are not retried.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import ssl
import time
from typing import Any

import httpx

from flywheel.types import EvalSpec

BACKOFF_MAX_S = 20.0


class RequestFailed(Exception):
    def __init__(self, message: str, *, transient: bool, attempts: int) -> None:
        super().__init__(message)
        self.transient = transient
        self.attempts = attempts


def is_transient_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


def wire_message(message: dict[str, Any]) -> dict[str, Any]:
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
        "messages": [wire_message(m) for m in request.get("messages", [])],
        "temperature": spec.temperature,
        "max_tokens": spec.max_tokens,
    }
    if request.get("tools"):
        body["tools"] = request["tools"]
        if request.get("tool_choice") is not None:
            body["tool_choice"] = request["tool_choice"]
    return body


def auth_headers(api_key_env: str | None) -> dict[str, str]:
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


def client_pool(spec: EvalSpec, transport: httpx.AsyncBaseTransport | None) -> tuple[asyncio.Queue, list]:
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
