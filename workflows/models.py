"""What workflows, activities, the starter API and the CLI exchange. References and scores only.

Shared constants (workflow names, query/update names, id format; search attributes in
workflows/search_attributes.py) live here so
the starter and the workers cannot disagree.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from flywheel.config import DataSplitConfig, NIMConfig, Settings
from flywheel.jobdoc import JobDocument, NimDoc
from flywheel.types import CustomizationResult, CustomizationSpec, DatasetRef, Endpoint, EvalResult, EvalSpec
from flywheel.vocabulary import EvalType, JobType, ReviewOutcome

FLYWHEEL_WORKFLOW = "FlywheelRun"
CANDIDATE_WORKFLOW = "CandidateRun"
STATUS_QUERY = "status"
PROMOTE_UPDATE = "promote"
REJECT_UPDATE = "reject"


def flywheel_workflow_id(workload_id: str, client_id: str, job_id: str) -> str:
    return f"flywheel-{workload_id}-{client_id}-{job_id}"


def customized_model_name(model_name: str, job_id: str) -> str:
    """``customized-{model}@{job}`` like the reference, with ``/`` (a namespace separator on NeMo) made ``-``."""
    return f"customized-{model_name.replace('/', '-')}@{job_id}"


def candidate_workflow_id(parent_id: str, model_name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in model_name)
    return f"{parent_id}-cand-{safe}"


class FlywheelJobInput(BaseModel):
    job_id: str
    workload_id: str
    client_id: str
    # The full settings snapshot: workers on any host run the job with the config it started with.
    settings: Settings
    data_split_config: DataSplitConfig | None = None  # per-job override, honoured completely
    job_type: JobType = JobType.llm
    eval_types: list[EvalType] = Field(default_factory=lambda: list(EvalType))
    review_timeout_s: int | None = None  # None: settings.temporal.review_timeout_s
    config_name: str | None = None
    timeouts: ActivityTimeouts | None = None  # None: production defaults
    requested_by: str | None = None  # principal that started the run / created its schedule (audit trail)


class PreparedData(BaseModel):
    """Result of the data-prep activity."""

    num_records: int  # records extracted
    curation: dict[str, Any]  # per-rule counts, kept/dropped
    datasets: dict[str, DatasetRef]  # eval/train/val
    manifest_hash: str


class CandidateInput(BaseModel):
    parent_workflow_id: str
    job_id: str
    nim: NIMConfig
    settings: Settings
    datasets: dict[str, DatasetRef]
    eval_types: list[EvalType]
    timeouts: ActivityTimeouts | None = None


class CandidateResult(BaseModel):
    model_name: str
    evaluations: dict[str, EvalResult] = Field(default_factory=dict)
    customization: CustomizationResult | None = None
    errors: dict[str, str] = Field(default_factory=dict)
    nim: NimDoc | None = None  # the candidate's finished job-document entry


class DeployInput(BaseModel):
    settings: Settings
    nim: NIMConfig
    name: str
    adapter_uri: str | None = None


class TeardownInput(BaseModel):
    settings: Settings
    endpoint: Endpoint


class PromoteRequest(BaseModel):
    model_name: str
    note: str | None = None
    by: str | None = None


class RejectRequest(BaseModel):
    reason: str | None = None
    by: str | None = None


class ReviewDecision(BaseModel):
    decision: ReviewOutcome
    model_name: str | None = None
    note: str | None = None
    by: str | None = None


# --------------------------------------------------------------------------------------------
# Additions (Temporal engineer): timeouts, activity inputs, review values, activity names.
# --------------------------------------------------------------------------------------------

# Activity names (fakes in tests register under the same names).
ACT_PREPARE_DATA = "prepare_data"
ACT_BUILD_ICL = "build_icl_dataset"
ACT_DEPLOY = "deploy"
ACT_TEARDOWN = "teardown"
ACT_EVALUATE = "evaluate"
ACT_CUSTOMIZE = "customize"
ACT_PERSIST_JOB = "persist_job"
ACT_WRITE_REPORT = "write_report"
ACT_AGGREGATE = "aggregate_results"
ACT_LOG_MLFLOW = "log_mlflow"
CANDIDATE_UPDATE_SIGNAL = "candidate_update"  # child → parent: live NimDoc


def job_id_from_workflow_id(workflow_id: str, workload_id: str, client_id: str) -> str:
    """Inverse of :func:`flywheel_workflow_id` (used when a Schedule starts a run with no job id)."""
    prefix = f"flywheel-{workload_id}-{client_id}-"
    has_prefix = workflow_id.startswith(prefix) and len(workflow_id) > len(prefix)
    return workflow_id[len(prefix):] if has_prefix else workflow_id


def schedule_id(workload_id: str, client_id: str) -> str:
    return f"flywheel-schedule-{workload_id}-{client_id}"


def schedule_workflow_id_prefix(workload_id: str, client_id: str) -> str:
    """Temporal appends ``-<timestamp>`` → ``flywheel-{w}-{c}-sched-<ts>``; job id ``sched-<ts>``."""
    return flywheel_workflow_id(workload_id, client_id, "sched")


class ActivityTimeouts(BaseModel):
    """Per-activity timeouts (seconds). Defaults are for production; tests pass small ones."""

    prepare_start_to_close_s: int = 2 * 3600
    deploy_start_to_close_s: int = 2 * 3600
    deploy_heartbeat_s: int = 60
    evaluate_start_to_close_s: int = 12 * 3600
    evaluate_heartbeat_s: int = 120
    customize_start_to_close_s: int = 48 * 3600
    customize_heartbeat_s: int = 120  # heartbeats every 10 s; a dead worker is noticed within 2 min
    short_start_to_close_s: int = 300  # teardown, persist, report, aggregate, icl
    retry_initial_interval_s: float = 1.0
    retry_max_interval_s: float = 60.0
    max_attempts: int = 5  # 0 = unlimited


class PrepareDataInput(BaseModel):
    settings: Settings
    workflow_id: str  # run key: datasets are stored under it (idempotent on retry)
    job_id: str
    workload_id: str
    client_id: str
    data_split_config: DataSplitConfig  # effective config (override already applied)


class BuildICLInput(BaseModel):
    settings: Settings
    name: str  # deterministic: "{candidate_wf_id}-icl"
    eval_dataset: DatasetRef
    train_dataset: DatasetRef
    context_length: int  # the candidate's context length (per model, not global)


class EvaluateInput(BaseModel):
    settings: Settings
    spec: EvalSpec


class CustomizeInput(BaseModel):
    settings: Settings
    spec: CustomizationSpec


class PersistJobInput(BaseModel):
    settings: Settings
    doc: JobDocument


class AggregateInput(BaseModel):
    settings: Settings
    doc: JobDocument


class ReportInput(BaseModel):
    settings: Settings
    doc: JobDocument


FlywheelJobInput.model_rebuild()
CandidateInput.model_rebuild()

# Permanent error types (ApplicationError.type): never retried.
NON_RETRYABLE_ERROR_TYPES = [
    "CapabilityUnavailable",
    "InsufficientData",
    "ConfigError",
    "InvalidInput",
    "NotFound",
]
