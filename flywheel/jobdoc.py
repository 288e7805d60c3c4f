"""The job document our users' notebooks read (blueprint-compatible; fields and enums: docs/api.md).

Field names and meanings are kept; extra fields are additions. Timestamps are timezone-aware UTC
datetimes serialised as ISO 8601. No defaults read the clock: these models are built inside
workflows, where time must come from ``workflow.now()``.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from flywheel.types import CustomizationResult, EvalResult
from flywheel.vocabulary import CustomizationStatus, EvalType, JobType, ReviewOutcome, SplitName


class RunStatus(str, Enum):
    pending = "pending"
    running = "running"
    completed = "completed"
    cancelled = "cancelled"
    failed = "failed"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.completed, RunStatus.cancelled, RunStatus.failed)


class NimStatus(str, Enum):
    pending = "pending"
    deploying = "deploying-nim"
    running_evals = "running-evals"
    cancelled = "cancelled"
    completed = "completed"
    failed = "failed"


class DeploymentStatus(str, Enum):
    created = "created"
    pending = "pending"
    running = "running"
    cancelled = "cancelled"
    failed = "failed"
    completed = "completed"
    ready = "ready"
    unknown = "unknown"


class Stage(str, Enum):
    """Where a run is (search attribute FlywheelStage); finer than RunStatus."""

    pending = "pending"
    preparing_data = "preparing_data"
    evaluating = "evaluating"
    awaiting_review = "awaiting_review"
    promoted = "promoted"
    rejected = "rejected"
    completed = "completed"
    cancelled = "cancelled"
    failed = "failed"


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow", use_enum_values=False)


@with_config(ConfigDict(extra="allow"))
class GateDoc(TypedDict, total=False):
    """A candidate's promotion verdict (a plain dict in the document, keys declared here)."""

    passed: bool
    reasons: list[str]
    eval_type: EvalType | None  # the evaluation the verdict is based on (the best one on the gate metric)
    metric: str
    score: float | None
    reference_score: float


@with_config(ConfigDict(extra="allow"))
class ReviewDoc(TypedDict, total=False):
    """The human decision on a run (a plain dict in the document, keys declared here)."""

    decision: ReviewOutcome
    model_name: str | None
    note: str | None
    by: str | None
    decided_at: str  # ISO 8601


class EvaluationDoc(_Doc):
    eval_type: EvalType
    scores: dict[str, float | None] = Field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    runtime_seconds: float | None = None
    progress: float = 0.0
    nmp_uri: str | None = None
    mlflow_uri: str | None = None
    error: str | None = None
    # Additions.
    num_records: int | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    predictions_uri: str | None = None
    score_notes: dict[str, str] = Field(default_factory=dict)
    per_tool: dict[str, Any] = Field(default_factory=dict)
    confidence_intervals: dict[str, list[float]] = Field(default_factory=dict)

    def record_result(self, result: EvalResult, finished_at: datetime) -> None:
        """Copy a finished evaluation's result in (scores, counts, latency, tokens, where predictions are)."""
        self.finished_at = finished_at
        self.runtime_seconds = result.runtime_seconds or (finished_at - self.started_at).total_seconds()
        self.progress = 100.0
        self.scores = dict(result.scores)
        self.score_notes = dict(result.score_notes)
        self.per_tool = {k: v.model_dump(mode="json") for k, v in result.per_tool.items()}
        self.nmp_uri = result.nmp_uri
        self.num_records = result.num_records
        self.latency_p50_ms = result.latency_p50_ms
        self.latency_p95_ms = result.latency_p95_ms
        self.predictions_uri = result.predictions_uri
        self.num_errors = result.num_errors
        self.prompt_tokens = result.prompt_tokens
        self.completion_tokens = result.completion_tokens

    def record_failure(self, message: str, finished_at: datetime) -> None:
        self.error = message
        self.finished_at = finished_at
        if self.started_at is not None:
            self.runtime_seconds = (finished_at - self.started_at).total_seconds()


class CustomizationDoc(_Doc):
    started_at: datetime | None = None
    finished_at: datetime | None = None
    runtime_seconds: float | None = None
    progress: float = 0.0
    epochs_completed: int = 0
    steps_completed: int = 0
    nmp_uri: str | None = None
    customized_model: str | None = None
    error: str | None = None
    # Additions.
    status: CustomizationStatus = CustomizationStatus.pending
    loss: float | None = None
    checkpoint: str | None = None

    def record_result(self, result: CustomizationResult, finished_at: datetime) -> None:
        """Copy a finished customization's result in (steps, epochs, final loss, the adapter it produced)."""
        self.finished_at = finished_at
        self.runtime_seconds = (finished_at - self.started_at).total_seconds()
        self.progress = 100.0
        self.status = CustomizationStatus.completed
        self.epochs_completed = result.epochs_completed
        self.steps_completed = result.steps_completed
        self.customized_model = result.customized_model
        self.nmp_uri = result.nmp_uri
        self.loss = result.final_loss
        self.checkpoint = result.adapter_uri


class NimDoc(_Doc):
    model_name: str
    status: NimStatus = NimStatus.pending
    deployment_status: DeploymentStatus = DeploymentStatus.created
    runtime_seconds: float | None = None
    evaluations: list[EvaluationDoc] = Field(default_factory=list)
    customizations: list[CustomizationDoc] = Field(default_factory=list)
    error: str | None = None
    # Additions.
    cost_per_1k_requests: float | None = None
    gate: GateDoc | None = None

    def evaluation(self, eval_type: str) -> EvaluationDoc | None:
        return next((e for e in self.evaluations if e.eval_type == eval_type), None)


class DatasetDoc(_Doc):
    name: str
    num_records: int
    nmp_uri: str | None = None
    # Additions.
    split: SplitName | None = None


class LLMJudgeDoc(_Doc):
    model_name: str | None = None
    type: str = "remote"
    deployment_status: DeploymentStatus = DeploymentStatus.unknown
    error: str | None = None


class JobDocument(_Doc):
    id: str
    workload_id: str
    client_id: str
    status: RunStatus = RunStatus.pending
    started_at: datetime | None = None
    finished_at: datetime | None = None
    num_records: int | None = None
    llm_judge: LLMJudgeDoc | None = None
    nims: list[NimDoc] = Field(default_factory=list)
    datasets: list[DatasetDoc] = Field(default_factory=list)
    error: str | None = None
    # Additions.
    workflow_id: str | None = None
    stage: Stage = Stage.pending
    config_name: str | None = None
    job_type: JobType = JobType.llm
    curation: dict[str, Any] = Field(default_factory=dict)
    manifest_hash: str | None = None
    review: ReviewDoc | None = None
    requested_by: str | None = None  # the authenticated principal that started the run (or its schedule)
    report_uri: str | None = None
    # Document version: every writer bumps it; a store never replaces a higher revision with a lower one,
    # so a late or retried write of an older state cannot undo a newer one.
    revision: int = Field(0, ge=0)
    warnings: list[str] = Field(default_factory=list)  # best-effort stages that failed (report, MLflow, ...)

    def nim(self, model_name: str) -> NimDoc | None:
        return next((n for n in self.nims if n.model_name == model_name), None)

    def summary(self) -> dict[str, Any]:
        """The list-view shape of GET /api/jobs."""
        return {
            "id": self.id,
            "workload_id": self.workload_id,
            "client_id": self.client_id,
            "status": self.status.value,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "datasets": [d.model_dump(mode="json") for d in self.datasets],
            "error": self.error,
        }
