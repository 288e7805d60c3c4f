"""What workflows, activities, the starter API and the CLI exchange. References and scores only.

Every model here is :class:`~flywheel.carried.Carried`: it decodes across one version of the code up or
down (unknown fields ignored at every depth, the strict Settings snapshot included; new fields need
defaults). See docs/versioning.md.

Shared constants (workflow names, query/update names, id format; search attributes in
workflows/search_attributes.py) live here so
the starter and the workers cannot disagree.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from flywheel.activity_timeouts import ActivityTimeouts
from flywheel.carried import Carried
from flywheel.config import DataSplitConfig, NIMConfig, Settings
from flywheel.ids import is_safe_key, model_slug, run_key
from flywheel.jobdoc import JobDocument, NimDoc
from flywheel.promotions import promotion_record
from flywheel.removal import CandidateResources, RunResources
from flywheel.types import CustomizationResult, CustomizationSpec, DatasetRef, Endpoint, EvalResult, EvalSpec
from flywheel.vocabulary import ALL_EVAL_TYPES, EvalType, JobType, ReviewOutcome

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
    """Distinct for every model name (``org/m`` and ``org-m`` differ: see :func:`flywheel.ids.model_slug`)."""
    return f"{parent_id}-cand-{model_slug(model_name)}"


def legacy_candidate_workflow_id(parent_id: str, model_name: str) -> str:
    """Child ids before PATCH_COLLISION_FREE_CHILD_IDS: ``org/m`` and ``org-m`` collided. Replay only."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in model_name)
    return f"{parent_id}-cand-{safe}"


# Workflow code changes gated by workflow.patched (docs/versioning.md lists them and when each may go).
PATCH_COLLISION_FREE_CHILD_IDS = "collision-free-child-ids"


class FlywheelJobInput(Carried):
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
    timeouts: ActivityTimeouts | None = None  # None: production defaults (the starter passes the configured ones)
    requested_by: str | None = None  # principal that started the run / created its schedule (audit trail)


class PreparedData(Carried):
    """Result of the data-prep activity."""

    num_records: int  # records extracted
    curation: dict[str, Any]  # per-rule counts, kept/dropped
    datasets: dict[str, DatasetRef]  # eval/train/val
    manifest_hash: str


class CandidateInput(Carried):
    parent_workflow_id: str
    job_id: str
    nim: NIMConfig
    settings: Settings
    datasets: dict[str, DatasetRef]
    eval_types: list[EvalType]
    timeouts: ActivityTimeouts | None = None


class CandidateResult(Carried):
    model_name: str
    evaluations: dict[str, EvalResult] = Field(default_factory=dict)
    customization: CustomizationResult | None = None
    errors: dict[str, str] = Field(default_factory=dict)
    nim: NimDoc | None = None  # the candidate's finished job-document entry


class DeployInput(Carried):
    settings: Settings
    nim: NIMConfig
    name: str
    adapter_uri: str | None = None
    stall_s: float | None = None  # fail the attempt after this long without progress (None: never)


class TeardownInput(Carried):
    settings: Settings
    endpoint: Endpoint


class PromoteRequest(Carried):
    model_name: str
    note: str | None = None
    by: str | None = None


class RejectRequest(Carried):
    reason: str | None = None
    by: str | None = None


class ReviewDecision(Carried):
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
ACT_REMOVE_RUN = "remove_run_resources"
CLEANUP_WORKFLOW = "RemoveRunResources"
ACT_REGISTER_CHAMPION = "register_champion"
ACT_DELIVER_WEBHOOK = "deliver_promotion_webhook"
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


class PrepareDataInput(Carried):
    settings: Settings
    workflow_id: str  # the run key (flywheel.ids.run_key of the workflow id): datasets are stored under it
    job_id: str
    workload_id: str
    client_id: str
    data_split_config: DataSplitConfig  # effective config (override already applied)


class BuildICLInput(Carried):
    settings: Settings
    name: str  # deterministic: "{candidate_wf_id}-icl"
    eval_dataset: DatasetRef
    train_dataset: DatasetRef
    context_length: int  # the candidate's context length (per model, not global)


class EvaluateInput(Carried):
    settings: Settings
    spec: EvalSpec
    stall_s: float | None = None  # fail the attempt after this long without progress (None: never)


class CustomizeInput(Carried):
    settings: Settings
    spec: CustomizationSpec
    stall_s: float | None = None  # fail the attempt after this long without progress (None: never)


class RemoveRunInput(Carried):
    """DELETE of a finished job: what to remove from the platform the run used, the artifact store and MLflow."""

    settings: Settings
    job_id: str
    run_key: str
    candidate_keys: list[str] = Field(default_factory=list)
    # Every name the run created things under (built by run_resources); None in inputs from before it.
    resources: RunResources | None = None


class RemoveRunResult(Carried):
    removed: list[str] = Field(default_factory=list)  # "<kind>: <what>", one per thing removed
    errors: list[str] = Field(default_factory=list)
    removed_by_kind: dict[str, list[str]] = Field(default_factory=dict)
    kept: list[str] = Field(default_factory=list)  # "<kind>: <what> (kept: <reason>)"


def run_resource_keys(workflow_id: str, model_names: list[str]) -> tuple[str, list[str]]:
    """The run key and the candidate keys a run (``workflow_id``, candidates ``model_names``) stored its
    things under — both child-id generations, since runs from before the patch used the legacy ids."""
    keys: list[str] = []
    for model in model_names:
        for child in (candidate_workflow_id(workflow_id, model), legacy_candidate_workflow_id(workflow_id, model)):
            if run_key(child) not in keys:
                keys.append(run_key(child))
    return run_key(workflow_id), keys


def run_resources(doc: JobDocument, workflow_id: str) -> RunResources:
    """The names everything of the run behind ``doc`` was created under (see flywheel.removal), with
    the remote job URIs and customized models its document recorded."""
    promoted = promotion_record(doc)
    key, _ = run_resource_keys(workflow_id, [])
    candidates = []
    eval_types = list(ALL_EVAL_TYPES)
    for nim in doc.nims:
        _, keys = run_resource_keys(workflow_id, [nim.model_name])
        # The embedding candidate names its things after its raw workflow id, where that differs.
        keys += [c for c in (candidate_workflow_id(workflow_id, nim.model_name),) if c not in keys and is_safe_key(c)]
        recorded = [c.customized_model for c in nim.customizations if c.customized_model]
        eval_types += [e.eval_type for e in nim.evaluations if e.eval_type not in eval_types]
        keep = (promoted is not None and promoted.model_name == nim.model_name
                and promoted.evidence.get("eval_type") == EvalType.customized)
        candidates.append(CandidateResources(
            model_name=nim.model_name, keys=keys, keep_customized=keep,
            customized_models=[*recorded, customized_model_name(nim.model_name, doc.id)]))
    return RunResources(
        job_id=doc.id, workflow_id=workflow_id, workload_id=doc.workload_id, client_id=doc.client_id,
        run_key=key, candidates=candidates, eval_types=eval_types,
        evaluation_job_uris=[e.nmp_uri for n in doc.nims for e in n.evaluations if e.nmp_uri],
        customization_job_uris=[c.nmp_uri for n in doc.nims for c in n.customizations if c.nmp_uri])


class PersistJobInput(Carried):
    settings: Settings
    doc: JobDocument


class AggregateInput(Carried):
    settings: Settings
    doc: JobDocument


class ReportInput(Carried):
    settings: Settings
    doc: JobDocument


class PromotionInput(Carried):
    settings: Settings
    doc: JobDocument
    record: dict[str, Any]  # flywheel.promotions.PromotionRecord, as JSON


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
