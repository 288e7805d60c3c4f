"""Helpers for the API tests: authenticated clients, job creation and polling, a sample log record."""

from __future__ import annotations

import asyncio
import uuid

import httpx

ROLES = ("viewer", "operator", "reviewer", "admin")
NEVER_ISSUED_KEY = "fwk_000000000000_" + "0" * 64  # well-formed, never created


def authed_client(app, token: str | None) -> httpx.AsyncClient:
    """An in-process client of ``app`` sending ``token`` (if any) and JSON content type (every POST needs it)."""
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test", timeout=30,
                             headers=headers)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def create_job(api, workload_id: str | None = None, client_id: str = "client-1", **extra) -> str:
    body = {"workload_id": workload_id or unique("wl"), "client_id": client_id, **extra}
    response = await api.post("/api/jobs", json=body)
    assert response.status_code == 200, response.text
    return response.json()["id"]


async def wait_for(api, job_id: str, predicate, timeout: float = 15.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        doc = (await api.get(f"/api/jobs/{job_id}")).json()
        if predicate(doc):
            return doc
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting on job {job_id}: {doc}")
        await asyncio.sleep(0.1)


def awaiting_review(doc: dict) -> bool:
    return doc.get("stage") == "awaiting_review"


def closed_as(status: str):
    """The run has ended (not just marked) with this status."""
    return lambda doc: doc["status"] == status and doc["finished_at"] is not None


def log_record(n: int) -> dict:
    return {
        "timestamp": 1767229491.0 + n,
        "request": {
            "model": "prod-model",
            "messages": [{"role": "user", "content": f"where is order ORD-{n:06d}?"}],
            "tools": [{"type": "function", "function": {
                "name": "get_order_status",
                "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
            }}],
        },
        "response": {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{n}", "type": "function",
             "function": {"name": "get_order_status", "arguments": f'{{"order_id": "ORD-{n:06d}"}}'}},
        ]}}]},
    }
