"""Clients for NeMo Microservices 25.x (v1 REST) and the shared polling/error helpers.

* ``sdk_create``: :class:`AsyncNeMoMicroservices` with ``max_retries=0`` – the SDK retries 408/409/429/5xx
  on POST too, with no idempotency key, which creates duplicate jobs. Every create goes through this one
  and, when its outcome is ambiguous (connection drop, 5xx), we look the entity up by name instead.
* ``sdk``: the same API with a few retries, for idempotent reads (GET) and deletes.
* Both use ``_strict_response_validation=True``: a response that does not match the SDK's types is an
  error, not silently half-parsed data.
* ``hf``: the Datastore's Hugging Face API (not part of the SDK): ``HfApi(endpoint=f"{datastore}/v1/hf")``.
* ``http``: a plain httpx client for the NIM's OpenAI ``/v1/models`` list and raw job-status reads (raw so
  an unknown state is reported instead of failing response validation).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

import httpx

from flywheel.config import Settings
from flywheel.types import PlatformError, ProgressFn

# Job states (docs/platforms.md). Anything else is "unknown": reported, never silently ignored.
NON_TERMINAL = frozenset({"created", "pending", "running", "cancelling"})
TERMINAL = frozenset({"completed", "failed", "cancelled"})
INFRA_MARKERS = ("The training job is pending", "NotEnoughResources", "Insufficient", "Unschedulable")


@dataclass
class NemoV1Timing:
    """Poll intervals and limits (seconds). Tests use ~0.05 s intervals."""

    poll_interval_s: float = 10.0
    eval_timeout_s: float = 6 * 3600.0
    customization_timeout_s: float = 24 * 3600.0
    # A job that stays ``pending``/``created`` this long is an infrastructure failure (no GPUs, PVC, quota).
    pending_timeout_s: float = 1800.0
    deploy_timeout_s: float = 3600.0
    adapter_timeout_s: float = 900.0
    request_timeout_s: float = 60.0
    read_retries: int = 3


def api_key(settings: Settings) -> str | None:
    env = settings.nmp_config.api_key_env
    return os.environ.get(env) if env else None


class NemoV1Clients:
    def __init__(self, settings: Settings, timing: NemoV1Timing) -> None:
        from huggingface_hub import HfApi
        from nemo_microservices import AsyncNeMoMicroservices

        cfg = settings.nmp_config
        self.settings = settings
        self.timing = timing
        self.namespace = cfg.nmp_namespace
        self.nemo_url = cfg.nemo_base_url.rstrip("/")
        self.nim_url = cfg.nim_base_url.rstrip("/")
        self.datastore_url = cfg.datastore_base_url.rstrip("/")
        key = api_key(settings)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.sdk_create = AsyncNeMoMicroservices(
            base_url=self.nemo_url, max_retries=0, timeout=timing.request_timeout_s,
            default_headers=headers, _strict_response_validation=True)
        self.sdk = AsyncNeMoMicroservices(
            base_url=self.nemo_url, max_retries=timing.read_retries, timeout=timing.request_timeout_s,
            default_headers=headers, _strict_response_validation=True)
        self.hf = HfApi(endpoint=f"{self.datastore_url}/v1/hf", token=key or False)
        self.http = httpx.AsyncClient(timeout=timing.request_timeout_s, headers=headers)

    async def aclose(self) -> None:
        await self.sdk_create.close()
        await self.sdk.close()
        await self.http.aclose()

    # -- raw reads -------------------------------------------------------------------------------
    async def get_json(self, url: str) -> Any:
        """GET with a few retries on connection errors/5xx; returns parsed JSON (no schema check)."""
        last: Exception | None = None
        for attempt in range(self.timing.read_retries + 1):
            try:
                resp = await self.http.get(url)
                if resp.status_code >= 500:
                    raise PlatformError(f"GET {url}: HTTP {resp.status_code}: {resp.text[:300]}")
                if resp.status_code >= 400:
                    raise PlatformError(f"GET {url}: HTTP {resp.status_code}: {resp.text[:300]}",
                                        retryable=resp.status_code in (408, 429),
                                        details={"status_code": resp.status_code})
                return resp.json()
            except (httpx.TransportError, PlatformError) as exc:
                if isinstance(exc, PlatformError) and not exc.retryable:
                    raise
                last = exc
                await asyncio.sleep(min(self.timing.poll_interval_s, 1.0) * (attempt + 1))
        raise PlatformError(f"GET {url} failed: {last}") from last

    async def nim_models(self) -> list[str]:
        """Model ids the NIM (``nim_base_url``) serves right now."""
        data = await self.get_json(f"{self.nim_url}/v1/models")
        return [m.get("id") for m in data.get("data", []) if isinstance(m, dict)]

    async def wait_for_nim_model(self, model_id: str, timeout_s: float, progress: ProgressFn | None,
                                 extra: dict[str, Any] | None = None) -> None:
        """Wait until ``model_id`` is listed by the NIM (an adapter shows up a while after training)."""
        deadline = time.monotonic() + timeout_s
        polls = 0
        while True:
            try:
                if model_id in await self.nim_models():
                    return
            except PlatformError:
                pass  # NIM restarting to load the adapter: keep waiting until the deadline
            polls += 1
            if progress:
                progress({**(extra or {}), "status": "waiting-for-model", "model": model_id, "polls": polls})
            if time.monotonic() > deadline:
                raise PlatformError(
                    f"model {model_id!r} did not appear in {self.nim_url}/v1/models within {timeout_s:.0f}s",
                    error_type="InfrastructureError", details={"model": model_id})
            await asyncio.sleep(self.timing.poll_interval_s)


def status_error(exc: Exception) -> int | None:
    """HTTP status of an SDK APIStatusError, else None."""
    return getattr(exc, "status_code", None)


def is_ambiguous(exc: Exception) -> bool:
    """A create whose outcome we cannot know: the server may have created the entity."""
    from nemo_microservices import APIConnectionError, APITimeoutError

    code = status_error(exc)
    return (isinstance(exc, (APIConnectionError, APITimeoutError, httpx.TransportError))
            or (code is not None and code >= 500))


def to_platform_error(exc: Exception, what: str) -> PlatformError:
    """Translate an SDK/HTTP exception: 4xx (except 408/409/429) are not retryable."""
    if isinstance(exc, PlatformError):
        return exc
    code = status_error(exc)
    body = getattr(exc, "body", None)
    msg = f"{what}: {type(exc).__name__}" + (f" HTTP {code}" if code else "") + f": {body if body is not None else exc}"
    retryable = code is None or code >= 500 or code in (408, 409, 429)
    return PlatformError(msg[:2000], retryable=retryable, details={"status_code": code} if code else {})
