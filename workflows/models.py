"""What workflows, activities, the starter API and the CLI exchange. References and scores only.

Shared constants (workflow names, query/update names, search attributes, id format) live here so
the starter and the workers cannot disagree.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from flywheel.config import DataSplitConfig, NIMConfig, Settings
from flywheel.platforms.base import CustomizationResult, DatasetRef, Endpoint, EvalResult

FLYWHEEL_WORKFLOW = "FlywheelRun"
CANDIDATE_WORKFLOW = "CandidateRun"
STATUS_QUERY = "status"
PROMOTE_UPDATE = "promote"
REJECT_UPDATE = "reject"

SA_WORKLOAD_ID = "WorkloadId"
SA_CLIENT_ID = "ClientId"
SA_STAGE = "FlywheelStage"
SA_JOB_TYPE = "JobType"


def flywheel_workflow_id(workload_id: str, client_id: str, job_id: str) -> str:
    return f"flywheel-{workload_id}-{client_id}-{job_id}"


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
    job_type: str = "llm_job"
    eval_types: list[str] = Field(default_factory=lambda: ["base-eval", "icl-eval", "customized-eval"])
    review_timeout_s: int | None = None  # None: settings.temporal.review_timeout_s


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
    eval_types: list[str]


class CandidateResult(BaseModel):
    model_name: str
    evaluations: dict[str, EvalResult] = Field(default_factory=dict)
    customization: CustomizationResult | None = None
    errors: dict[str, str] = Field(default_factory=dict)


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
    decision: str  # promoted | rejected | timed_out
    model_name: str | None = None
    note: str | None = None
    by: str | None = None
