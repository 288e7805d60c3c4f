"""The promotion webhook: an HMAC-signed JSON POST a serving layer can act on.

Headers: ``X-Flywheel-Event: promotion``, ``X-Flywheel-Delivery: <job id>`` (the same on every retry,
so a receiver can ignore duplicates) and, when a secret is configured, ``X-Flywheel-Signature:
sha256=<hex HMAC-SHA256 of the exact body>``. The secret is read from the environment variable the
config names; it is never logged or stored. Delivery is retried by Temporal until it succeeds (see
``promotion.webhook_deadline_s``), so :func:`deliver` only makes one attempt and raises on failure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

import httpx

SIGNATURE_HEADER = "X-Flywheel-Signature"
EVENT_HEADER = "X-Flywheel-Event"
DELIVERY_HEADER = "X-Flywheel-Delivery"


class WebhookConfigError(ValueError):
    """The webhook cannot be sent as configured (retrying will not help)."""


class WebhookFailed(RuntimeError):
    """One delivery attempt failed (network error or a non-2xx answer); Temporal retries it."""


def body_bytes(payload: dict[str, Any]) -> bytes:
    """The exact bytes that are signed and sent (compact, keys sorted: stable across retries)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, signature: str | None) -> bool:
    """What a receiver does: constant-time comparison of the signature header with its own."""
    return bool(signature) and hmac.compare_digest(sign(body, secret), signature or "")


def promotion_payload(record: dict[str, Any]) -> dict[str, Any]:
    """The event a serving layer receives: which model now serves which workload/client, and why."""
    return {"event": "promotion", **record}


def deliver(url: str, payload: dict[str, Any], *, delivery_id: str, secret_env: str | None = None,
            timeout_s: float = 10.0, transport: httpx.BaseTransport | None = None) -> dict[str, Any]:
    """POST ``payload`` once; returns ``{"status": code}``. Raises WebhookFailed (retry) or WebhookConfigError."""
    headers = {"Content-Type": "application/json", EVENT_HEADER: "promotion", DELIVERY_HEADER: delivery_id}
    body = body_bytes(payload)
    if secret_env:
        secret = os.environ.get(secret_env)
        if not secret:
            raise WebhookConfigError(f"promotion.webhook_secret_env: environment variable {secret_env} is not set")
        headers[SIGNATURE_HEADER] = sign(body, secret)
    try:
        with httpx.Client(timeout=timeout_s, transport=transport) as client:
            response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise WebhookFailed(f"webhook {url}: {type(exc).__name__}: {exc}") from exc
    if not 200 <= response.status_code < 300:
        raise WebhookFailed(f"webhook {url} answered {response.status_code}")
    return {"status": response.status_code}
