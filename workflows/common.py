"""Workflow-side helpers: retry policies, activity options, error text.

Deterministic code only (imported by the workflow sandbox).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    FailureError,
)
from temporalio.exceptions import (
    TimeoutError as TemporalTimeoutError,
)
from temporalio.workflow import ActivityCancellationType

from workflows.models import NON_RETRYABLE_ERROR_TYPES, ActivityTimeouts


def retry_policy(t: ActivityTimeouts, max_attempts: int | None = None) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=t.retry_initial_interval_s),
        maximum_interval=timedelta(seconds=t.retry_max_interval_s),
        maximum_attempts=t.max_attempts if max_attempts is None else max_attempts,
        non_retryable_error_types=list(NON_RETRYABLE_ERROR_TYPES),
    )


def short_options(t: ActivityTimeouts, task_queue: str, **extra: Any) -> dict[str, Any]:
    """Options of a quick activity (persist, aggregate, report, teardown, ICL selection). Every activity run
    with them heartbeats (activities.common.heartbeat_on_a_timer, or its own progress)."""
    heartbeat = {"heartbeat_timeout": timedelta(seconds=t.short_heartbeat_s)} if t.short_heartbeat_s else {}
    return {
        "task_queue": task_queue,
        "start_to_close_timeout": timedelta(seconds=t.short_start_to_close_s),
        "retry_policy": retry_policy(t),
        **heartbeat,
        **extra,
    }


def long_options(t: ActivityTimeouts, task_queue: str, *, start_to_close_s: float, heartbeat_s: float,
                 schedule_to_close_s: float | None = None, wait_for_cancellation: bool = True) -> dict[str, Any]:
    """Options of a long, heartbeating activity (prepare data, deploy, evaluate, customize).

    With ``schedule_to_close_s`` the activity is retried without an attempt cap (``t.long_max_attempts``,
    0 by default) until that much time has passed since it was first scheduled: worker restarts during a
    long training must not use up its attempts.
    ``wait_for_cancellation``: on cancel the workflow waits until the activity has finished cancelling
    (remote job cancelled, trainer checkpointed) before it tears down what the activity was using.
    """
    options: dict[str, Any] = {
        "task_queue": task_queue,
        "start_to_close_timeout": timedelta(seconds=start_to_close_s),
        "heartbeat_timeout": timedelta(seconds=heartbeat_s),
        "retry_policy": retry_policy(t),
    }
    if schedule_to_close_s is not None:
        options["schedule_to_close_timeout"] = timedelta(seconds=schedule_to_close_s)
        options["retry_policy"] = retry_policy(t, max_attempts=t.long_max_attempts)
    if wait_for_cancellation:
        options["cancellation_type"] = ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
    return options


def stall_seconds(value: int) -> float | None:
    """An ActivityTimeouts ``*_stall_s`` as an activity input (0 → never)."""
    return float(value) if value > 0 else None


def root_failure(exc: BaseException) -> BaseException:
    """Innermost meaningful failure of an Activity/ChildWorkflow error chain."""
    current: BaseException = exc
    while isinstance(current, (ActivityError, ChildWorkflowError)) and current.cause is not None:
        current = current.cause
    # An ApplicationError raised by a child may itself wrap an activity failure.
    while isinstance(current, ApplicationError) and isinstance(current.cause, (ActivityError, ChildWorkflowError)):
        current = root_failure(current.cause)
    return current


def error_type(exc: BaseException) -> str:
    root = root_failure(exc)
    if isinstance(root, ApplicationError):
        return root.type or "ApplicationError"
    if isinstance(root, TemporalTimeoutError):
        return "Timeout"
    return type(root).__name__


def error_text(exc: BaseException) -> str:
    """``"<Type>: <message>"`` of the root cause, for the job document."""
    root = root_failure(exc)
    if isinstance(root, TemporalTimeoutError):
        return f"Timeout: activity timed out ({root.type.name if root.type else 'unknown'})"
    message = root.message if isinstance(root, FailureError) else str(root)
    return f"{error_type(exc)}: {message or 'failed'}"


def failure_details(exc: BaseException) -> list[Any]:
    root = exc
    while isinstance(root, (ActivityError, ChildWorkflowError)) and root.cause is not None:
        root = root.cause
    if isinstance(root, ApplicationError):
        return list(root.details or [])
    return []
