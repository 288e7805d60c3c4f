"""Shared activity plumbing: platform cache (closed on worker shutdown), heartbeat pump, error conversion.

Activities are thin: they build the platform from the Settings in their input, run one platform
call while heartbeating the latest progress, and turn :class:`PlatformError` into Temporal
``ApplicationError``s (non-retryable when the platform says retrying cannot help).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from flywheel.config import ConfigError, Settings
from flywheel.platforms import make_platform
from flywheel.platforms.base import Platform
from flywheel.types import PlatformError

log = logging.getLogger("flywheel.activities")

T = TypeVar("T")

_platforms: dict[str, Platform] = {}


def settings_key(settings: Settings) -> str:
    return hashlib.sha256(settings.model_dump_json().encode()).hexdigest()


def in_worker_shutdown() -> bool:
    """True inside an activity whose worker is shutting down (its remote jobs must keep running)."""
    return activity.in_activity() and activity.is_worker_shutdown()


def get_platform(settings: Settings) -> Platform:
    """One Platform per settings snapshot per worker process (local servers/processes live in it)."""
    key = settings_key(settings)
    platform = _platforms.get(key)
    if platform is None:
        platform = make_platform(settings, is_worker_shutdown=in_worker_shutdown)
        _platforms[key] = platform
    return platform


async def close_platforms() -> None:
    """Close every platform this process built (worker shutdown); a failing close does not stop the rest."""
    while _platforms:
        _, platform = _platforms.popitem()
        try:
            await platform.close()
        except Exception as exc:  # noqa: BLE001 - shutdown goes on
            log.warning("closing platform failed", extra={"platform": platform.kind, "error": repr(exc)})


def to_application_error(exc: BaseException) -> BaseException:
    """PlatformError → ApplicationError (type = error_type); anything else is returned unchanged."""
    if isinstance(exc, PlatformError):
        return ApplicationError(
            str(exc) or exc.error_type,
            exc.details or None,
            type=exc.error_type,
            non_retryable=not exc.retryable,
        )
    if isinstance(exc, ConfigError):
        return ApplicationError(str(exc), type="ConfigError", non_retryable=True)
    return exc


def heartbeat_interval(default: float = 10.0) -> float:
    timeout = activity.info().heartbeat_timeout
    if timeout is None:
        return default
    return max(0.2, min(default, timeout.total_seconds() / 4))


def previous_details() -> dict[str, Any]:
    """The last heartbeat details of an earlier attempt (resume info), or {}."""
    details = activity.info().heartbeat_details
    if details:
        first = details[0]
        if isinstance(first, dict):
            return first
    return {}


class Progress:
    """Latest progress dict; the platform's ProgressFn writes it, the pump heartbeats it."""

    def __init__(self, initial: dict[str, Any] | None = None) -> None:
        self.latest: dict[str, Any] = dict(initial or {})

    def __call__(self, update: dict[str, Any]) -> None:
        self.latest = {**self.latest, **(update or {})}


async def run_with_heartbeat(
    call: Callable[[Progress], Awaitable[T]],
    *,
    initial: dict[str, Any] | None = None,
    on_cancel: Callable[[], Awaitable[None]] | None = None,
    interval: float | None = None,
) -> T:
    """Run ``call(progress)`` while heartbeating ``progress.latest`` every ``interval`` seconds.

    Heartbeating is what delivers cancellation to the activity (as ``CancelledError``); on
    cancellation ``on_cancel`` runs (best-effort remote cancel) and the error propagates.
    PlatformError becomes ApplicationError.
    """
    progress = Progress(initial)
    every = interval if interval is not None else heartbeat_interval()

    async def pump() -> None:
        while True:
            activity.heartbeat(progress.latest)
            await asyncio.sleep(every)

    if progress.latest:
        activity.heartbeat(progress.latest)  # resume info visible at once, before the call reports
    pump_task = asyncio.create_task(pump())
    try:
        return await call(progress)
    except asyncio.CancelledError:
        if on_cancel is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(on_cancel())
        raise
    except Exception as exc:  # converted, re-raised
        converted = to_application_error(exc)
        if converted is exc:
            raise
        raise converted from exc
    finally:
        pump_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump_task
        # Flush the final progress so the last details are visible (and kept for a retry).
        with contextlib.suppress(Exception):
            activity.heartbeat(progress.latest)
