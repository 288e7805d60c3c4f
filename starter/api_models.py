"""Request and response bodies of the starter API (blueprint-compatible where the blueprint has them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flywheel.jobdoc import DatasetDoc
from starter.ids import ClientId, ConfigName, ModelName, WorkloadId


class JobRequest(BaseModel):
    """``POST /api/jobs``. Unknown keys are ignored, as the blueprint does."""

    workload_id: WorkloadId = Field(description="Workload (agent node) whose logs to use.")
    client_id: ClientId = Field(description="Client (application) whose logs to use.")
    data_split_config: dict[str, Any] | None = Field(
        None, description="Per-job override of data_split_config; fields not given keep the configured values."
    )
    job_type: Literal["llm_job", "embedding_job"] = "llm_job"
    config_name: ConfigName | None = Field(None, description="One of the named configs (config/<name>.yaml).")


class JobResponse(BaseModel):
    id: str
    status: str
    message: str


class JobListItem(BaseModel):
    id: str
    workload_id: str
    client_id: str
    status: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    datasets: list[DatasetDoc] = Field(default_factory=list)
    error: str | None = None


class JobsListResponse(BaseModel):
    jobs: list[JobListItem]
    total: int
    offset: int
    limit: int


class JobActionResponse(BaseModel):
    """Cancel and delete (the blueprint's JobCancelResponse / JobDeleteResponse)."""

    id: str
    message: str
    # delete: what was removed ("<kind>: <what>"), the same grouped by kind, and what was kept and why
    removed: list[str] = []
    removed_by_kind: dict[str, list[str]] = {}
    kept: list[str] = []


class PromoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_name: ModelName = Field(description="The candidate to promote.")
    note: str | None = Field(None, max_length=4000)
    # No "by": who decided is the authenticated caller, never a field anyone can fill in.


class RejectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=4000)


class ReviewResponse(BaseModel):
    id: str
    decision: Literal["promoted", "rejected"]
    model_name: str | None = None
    message: str
    result: Any = None


class LogBatch(BaseModel):
    """``POST /api/logs``: raw log records; ids given here fill records that lack them."""

    records: list[Any] = Field(description="Log records ({timestamp, workload_id, client_id, request, response}).")
    workload_id: WorkloadId | None = None
    client_id: ClientId | None = None


class ScheduleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workload_id: WorkloadId
    client_id: ClientId
    cron: str = Field(min_length=1, max_length=200, description="Cron spec, e.g. '0 3 * * *'.")
    data_split_config: dict[str, Any] | None = Field(
        None, description="Override of data_split_config for every scheduled run (merged over the config)."
    )
    config_name: ConfigName | None = Field(None, description="Named config the runs use.")
    job_type: Literal["llm_job", "embedding_job"] = "llm_job"
    paused: bool = False
    note: str | None = Field(None, max_length=1000)


class ScheduleActionResponse(BaseModel):
    id: str
    message: str
    workflow_id: str | None = None  # trigger: the run it started (None: none started yet)


class HealthResponse(BaseModel):
    status: Literal["healthy"]
    temporal: Literal["ok", "error"]
    jobstore: Literal["ok", "error"] = "ok"
