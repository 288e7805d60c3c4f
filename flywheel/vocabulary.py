"""The project's fixed words: evaluation types, job types, dataset split names, customization statuses.

``StrEnum``s, so they serialize, format and hash as the plain strings the blueprint's job document and API use
(``"base-eval"``, ``"llm_job"``, ...) and compare equal to them.
"""

from __future__ import annotations

from enum import StrEnum


class EvalType(StrEnum):
    base = "base-eval"
    icl = "icl-eval"
    customized = "customized-eval"


ALL_EVAL_TYPES: tuple[str, ...] = tuple(t.value for t in EvalType)


class JobType(StrEnum):
    llm = "llm_job"
    embedding = "embedding_job"


class SplitName(StrEnum):
    eval = "eval"
    train = "train"
    val = "val"
    corpus = "corpus"  # embedding_job: the passages retrieval is evaluated over (no rows of its own)


class CustomizationStatus(StrEnum):
    pending = "pending"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    unavailable = "unavailable"  # the platform has no training backend


TERMINAL_CUSTOMIZATION_STATUSES = (CustomizationStatus.completed, CustomizationStatus.failed,
                                   CustomizationStatus.cancelled, CustomizationStatus.unavailable)


class ReviewOutcome(StrEnum):
    """How a run's human review ended (``review.decision`` in the job document)."""

    promoted = "promoted"
    rejected = "rejected"
    timed_out = "timed_out"
    skipped = "skipped"  # review timeout 0: nobody was asked


class TaskQueueRole(StrEnum):
    """The worker pools of ``temporal.task_queues`` (their names are configurable)."""

    orchestrator = "orchestrator"
    cpu = "cpu"
    gpu = "gpu"
