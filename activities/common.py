"""Shared activity plumbing: platform cache (closed on worker shutdown), heartbeat pump, error conversion.

Activities are thin: they build the platform from the Settings in their input, run one platform
call while heartbeating the latest progress, and turn :class:`PlatformError` into Temporal
``ApplicationError``s (non-retryable when the platform says retrying cannot help).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
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


def keep_remote_jobs() -> bool:
    """True inside an activity whose remote jobs must keep running for the retry to re-attach to.

    Only a person cancelling the run may cancel a remote job. The worker shutting down (rolling deploy,
    SIGTERM) must not, and neither may any other cancellation Temporal delivers without a request: a
    heartbeat timeout on a loaded or partitioned worker, a pause or a reset. Cancelling a multi-hour
    fine-tune there would turn a retryable hiccup into a lost run.
    """
    if not activity.in_activity():
        return False
    if activity.is_worker_shutdown():
        return True
    details = activity.cancellation_details()
    return details is not None and not details.cancel_requested


def get_platform(settings: Settings) -> Platform:
    """One Platform per settings snapshot per worker process (local servers/processes live in it)."""
    key = settings_key(settings)
    platform = _platforms.get(key)
    if platform is None:
        platform = make_platform(settings, is_worker_shutdown=keep_remote_jobs)
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


def heartbeat_on_a_timer(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """For a quick activity (persist, aggregate, report, MLflow): heartbeat every few seconds while its body
    runs, so a worker that died during it is noticed within ``short_heartbeat_s`` instead of only when
    ``short_start_to_close_s`` runs out (300 s by default). The body must not block the event loop (they
    all run their work in a thread)."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        async def tick() -> None:
            while True:
                activity.heartbeat()
                await asyncio.sleep(heartbeat_interval())

        ticker = asyncio.create_task(tick())
        try:
            return await fn(*args, **kwargs)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    return wrapper


def previous_details() -> dict[str, Any]:
    """The last heartbeat details of an earlier attempt (resume info), or {}."""
    details = activity.info().heartbeat_details
    if details:
        first = details[0]
        if isinstance(first, dict):
            return first
    return {}


class Progress:
    """Latest progress dict; the platform's ProgressFn writes it, the pump heartbeats it.

    ``changed_at`` is when the dict last changed: the same status polled again is not progress.
    """

    def __init__(self, initial: dict[str, Any] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.latest: dict[str, Any] = dict(initial or {})
        self._clock = clock
        self.changed_at = clock()

    def __call__(self, update: dict[str, Any]) -> None:
        merged = {**self.latest, **(update or {})}
        if merged != self.latest:
            self.changed_at = self._clock()
        self.latest = merged

    def stalled_for(self) -> float:
        return self._clock() - self.changed_at


def stalled_error(progress: Progress, stall_s: float) -> ApplicationError:
    """A retryable failure: the next attempt re-attaches (remote job) or resumes (checkpoint)."""
    return ApplicationError(f"no progress for {progress.stalled_for():.0f}s (stall limit {stall_s:.0f}s); "
                            f"last progress: {str(progress.latest)[:300]}", progress.latest, type="Stalled")


async def run_with_heartbeat(
    call: Callable[[Progress], Awaitable[T]],
    *,
    initial: dict[str, Any] | None = None,
    on_cancel: Callable[[], Awaitable[None]] | None = None,
    interval: float | None = None,
    stall_s: float | None = None,
) -> T:
    """Run ``call(progress)`` while heartbeating ``progress.latest`` every ``interval`` seconds.

    Heartbeating is what delivers cancellation to the activity (as ``CancelledError``). A cancellation
    asked for by a person (the workflow was cancelled) runs ``on_cancel`` (best-effort remote cancel); a
    worker shutdown (rolling deploy, SIGTERM) never does: the remote job keeps running and the retried
    attempt on another worker re-attaches to it. Either way the error propagates. PlatformError becomes
    ApplicationError.

    With ``stall_s``, an attempt whose progress has not changed for that long is stopped (the call is
    cancelled and runs its own cancel handling: the local trainer checkpoints, a NeMo job stuck remotely
    is cancelled so the retry replaces it) and fails retryably with type ``Stalled`` — a hung call no
    longer heartbeats its way to the start-to-close timeout.
    """
    progress = Progress(initial)
    every = interval if interval is not None else heartbeat_interval()
    if stall_s is not None:
        every = min(every, max(0.05, stall_s / 4))
    stalled = False

    async def pump(work: asyncio.Task[T]) -> None:
        nonlocal stalled
        while True:
            activity.heartbeat(progress.latest)
            if stall_s is not None and progress.stalled_for() > stall_s:
                stalled = True
                work.cancel()
                return
            await asyncio.sleep(every)

    if progress.latest:
        activity.heartbeat(progress.latest)  # resume info visible at once, before the call reports
    work = asyncio.ensure_future(call(progress))
    pump_task = asyncio.create_task(pump(work))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        if stalled and work.done():  # the pump stopped the call: fail this attempt, retryably
            log.warning("activity stalled", extra={"stall_s": stall_s, "progress": str(progress.latest)[:300]})
            raise stalled_error(progress, stall_s or 0) from None
        # The activity was cancelled: let the call run its own cancel handling (checkpoint, keep or cancel
        # its remote job) before anything else.
        if not work.done():
            work.cancel()
            with contextlib.suppress(BaseException):
                await work
        if on_cancel is not None and not keep_remote_jobs():
            with contextlib.suppress(Exception):
                await asyncio.shield(on_cancel())
        raise
    except Exception as exc:  # converted, re-raised
        if stalled:  # the call turned its cancellation into an error of its own
            raise stalled_error(progress, stall_s or 0) from exc
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
