"""The v1 job state machine shared by evaluation and customization polling.

``created|pending|running|cancelling`` are non-terminal (``pending`` is NOT a failure, but a job that stays
pending/created longer than ``pending_timeout_s`` is an infrastructure failure: no GPU, PVC, quota).
``completed|failed|cancelled`` are terminal. Any other state is reported in the progress dict
(``unknown_state``) on every poll and polling continues until the overall timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from flywheel.platforms.nemo_v1.client import (
    INFRA_MARKERS,
    NON_TERMINAL,
    TERMINAL,
    is_ambiguous,
    to_platform_error,
)
from flywheel.types import PlatformError, ProgressFn

log = logging.getLogger(__name__)
WAITING = frozenset({"created", "pending"})


async def named_jobs(get_json: Callable[[str], Awaitable[dict[str, Any]]], list_url: str, names: set[str],
                     name_field: str) -> list[dict[str, Any]]:
    """Every job whose ``custom_fields[name_field]`` is one of ``names``, across every page of ``list_url``,
    oldest first."""
    found: list[dict[str, Any]] = []
    page = 1
    while True:
        data = await get_json(f"{list_url}&page={page}&page_size=100")
        found += [j for j in data.get("data") or [] if (j.get("custom_fields") or {}).get(name_field) in names]
        total = ((data.get("pagination") or {}).get("total_pages")) or 1
        if page >= total or not data.get("data"):
            break
        page += 1
    return sorted(found, key=lambda j: str(j.get("created_at") or ""))


async def find_named_job(get_json: Callable[[str], Awaitable[dict[str, Any]]], list_url: str, name: str,
                         name_field: str) -> dict[str, Any] | None:
    """The newest job whose ``custom_fields[name_field] == name``, across every page of ``list_url``."""
    found = await named_jobs(get_json, list_url, {name}, name_field)
    return found[-1] if found else None


def reusable(kind: str, name: str, existing: dict[str, Any] | None) -> dict[str, Any] | None:
    """An earlier attempt's job to re-attach to; a failed or cancelled one is replaced (that is what a retry
    after a retryable failure is for)."""
    if existing and existing.get("status") in ("failed", "cancelled"):
        log.info("%s %s: earlier job %s is %s; creating a new one", kind, name, existing["id"], existing["status"])
        return None
    return existing


async def create_once(kind: str, name: str, create: Callable[[], Awaitable[Any]],
                      find: Callable[[str], Awaitable[dict[str, Any] | None]]) -> str:
    """Create a job with SDK retries off; an ambiguous failure (connection drop, 5xx) is resolved by looking the
    name up, so a create whose response was lost never becomes a second job."""
    try:
        job = await create()
    except Exception as exc:
        if is_ambiguous(exc) and (existing := await find(name)):
            log.warning("%s create for %s failed ambiguously (%s); found job %s", kind, name, exc, existing["id"])
            return str(existing["id"])
        raise to_platform_error(exc, f"create {kind} job {name}") from exc
    if not job.id:
        raise PlatformError(f"{kind} job {name} created without an id", retryable=False)
    return job.id


async def cancel_if_live(name: str, find: Callable[[str], Awaitable[dict[str, Any] | None]],
                         cancel: Callable[[str], Awaitable[None]]) -> bool:
    """Cancel the job named ``name`` unless it is already terminal; True if a cancel was sent."""
    job = await find(name)
    if job and job.get("status") not in TERMINAL:
        await cancel(str(job["id"]))
        return True
    return False


def log_messages(status_logs: list[dict[str, Any]] | None, last: int = 5) -> list[str]:
    out = []
    for entry in (status_logs or [])[-last:]:
        text = " - ".join(str(entry[k]) for k in ("message", "detail") if entry.get(k))
        if text:
            out.append(text)
    return out


def looks_like_infra(messages: list[str]) -> bool:
    return any(marker.lower() in m.lower() for m in messages for marker in INFRA_MARKERS)


async def poll_job(
    *,
    kind: str,
    job_id: str,
    nmp_uri: str,
    fetch: Callable[[], Awaitable[dict[str, Any]]],
    describe: Callable[[dict[str, Any]], dict[str, Any]],
    interval_s: float,
    timeout_s: float,
    pending_timeout_s: float,
    progress: ProgressFn | None,
) -> dict[str, Any]:
    """Poll ``fetch()`` (a raw status dict with ``status``) until a terminal state.

    Returns the final status dict when ``completed``; raises :class:`PlatformError` otherwise.
    ``describe`` turns a status dict into the progress fields (percentage, epochs, status logs ...).
    """
    started = time.monotonic()
    waiting_since: float | None = None
    last: dict[str, Any] = {}
    while True:
        last = await fetch()
        state = str(last.get("status") or "")
        now = time.monotonic()
        info = {"kind": kind, "job_id": job_id, "nmp_uri": nmp_uri, "status": state, **describe(last)}
        if state not in NON_TERMINAL and state not in TERMINAL:
            info["unknown_state"] = state
            log.warning("%s job %s is in unknown state %r; still polling", kind, job_id, state)
        if progress:
            progress(info)
        if state == "completed":
            return last
        if state in ("failed", "cancelled"):
            messages = info.get("status_logs") or []
            message = info.get("message") or (messages[-1] if messages else "") or "no status message"
            infra = looks_like_infra(messages + [str(message)])
            raise PlatformError(
                f"{kind} job {job_id} {state}: {message}",
                retryable=infra,
                error_type=("InfrastructureError" if infra
                            else "JobCancelled" if state == "cancelled" else "JobFailed"),
                details={"job_id": job_id, "nmp_uri": nmp_uri, "status": state, "status_logs": messages})
        if state in WAITING:
            waiting_since = waiting_since or now
            if now - waiting_since > pending_timeout_s:
                messages = info.get("status_logs") or []
                raise PlatformError(
                    f"{kind} job {job_id} stayed {state!r} for more than {pending_timeout_s:.0f}s "
                    f"(no resources scheduled it); last status logs: {messages or ['(none)']}",
                    retryable=True, error_type="InfrastructureError",
                    details={"job_id": job_id, "nmp_uri": nmp_uri, "status": state, "status_logs": messages})
        else:
            waiting_since = None
        if now - started > timeout_s:
            raise PlatformError(f"{kind} job {job_id} did not finish within {timeout_s:.0f}s (last state {state!r})",
                                error_type="Timeout",
                                details={"job_id": job_id, "nmp_uri": nmp_uri, "status": state})
        await asyncio.sleep(interval_s)
