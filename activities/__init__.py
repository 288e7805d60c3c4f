"""Thin Temporal adapters over flywheel/ (heartbeats, cancellation, idempotency keys).

:func:`all_activities` and :func:`gpu_activities` list what each worker queue serves.
"""

from __future__ import annotations

from collections.abc import Callable

from activities.cleanup import remove_run_resources
from activities.customization import customize
from activities.data import build_icl_dataset, prepare_data
from activities.deployment import deploy, teardown
from activities.embedding import (
    customize_embedding,
    evaluate_retrieval,
    mine_triplets,
    prepare_retrieval_data,
)
from activities.evaluation import evaluate
from activities.persistence import aggregate_results, log_mlflow, persist_job, write_report
from activities.promotion import deliver_promotion_webhook, register_champion


def all_activities() -> list[Callable]:
    return [prepare_data, build_icl_dataset, deploy, teardown, evaluate, customize, persist_job,
            aggregate_results, write_report, log_mlflow, remove_run_resources, register_champion,
            deliver_promotion_webhook, prepare_retrieval_data, evaluate_retrieval, mine_triplets, customize_embedding]


def gpu_activities() -> list[Callable]:
    """What the gpu queue serves: local training (and local serving, should a workflow route it there)."""
    return [customize, deploy, teardown, evaluate, customize_embedding]
