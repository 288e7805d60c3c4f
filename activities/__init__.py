"""Thin Temporal adapters over flywheel/ (heartbeats, cancellation, idempotency keys).

Imports are lazy so ``import activities`` stays cheap; :func:`all_activities` returns the callables.
"""

from __future__ import annotations

from collections.abc import Callable


def all_activities() -> list[Callable]:
    from activities.customization import customize
    from activities.data import build_icl_dataset, prepare_data
    from activities.deployment import deploy, teardown
    from activities.evaluation import evaluate
    from activities.persistence import aggregate_results, log_mlflow, persist_job, write_report
    from activities.promotion import deliver_promotion_webhook, register_champion

    return [prepare_data, build_icl_dataset, deploy, teardown, evaluate, customize, persist_job,
            aggregate_results, write_report, log_mlflow, register_champion, deliver_promotion_webhook]


def gpu_activities() -> list[Callable]:
    """What the gpu queue serves: local training (and local serving, should a workflow route it there)."""
    from activities.customization import customize
    from activities.deployment import deploy, teardown
    from activities.evaluation import evaluate

    return [customize, deploy, teardown, evaluate]
