"""Value types that cross the Platform seam: datasets, endpoints, evaluation and customization specs and
results, and the errors a platform raises.

Only references cross Temporal: datasets are stored by the platform and passed around as
:class:`DatasetRef` (URI + count + hash); predictions are stored and referenced by URI.
This module imports nothing from :mod:`flywheel.platforms`, so the domain core (evaluator, metrics) and
every platform depend on it, never on each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from flywheel.config import LLMJudgeConfig, LoRAConfig, NIMConfig, TrainingConfig
from flywheel.vocabulary import EvalType

# Progress callbacks receive small JSON-able dicts (see flywheel.progress for their typed shapes);
# activities turn them into heartbeats.
ProgressFn = Callable[[dict[str, Any]], None]
# Asks the host whether its worker is shutting down (then a remote job must be left running so the
# retried activity re-attaches to it, instead of being cancelled).
WorkerShutdownProbe = Callable[[], bool]


def never_shutting_down() -> bool:
    return False


class PlatformError(Exception):
    """A remote/platform failure. ``retryable`` False means retrying cannot help."""

    def __init__(self, message: str, *, retryable: bool = True, error_type: str = "PlatformError",
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.error_type = error_type
        self.details = details or {}


class CapabilityUnavailable(PlatformError):
    """The platform cannot do this (e.g. customization without a training backend)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False, error_type="CapabilityUnavailable")


class DatasetRef(BaseModel):
    name: str
    split: str
    uri: str
    num_records: int
    sha256: str = ""
    platform_uri: str | None = Field(None, description="Where the platform sees it (nmp_uri), if different.")


class Endpoint(BaseModel):
    """An OpenAI-compatible endpoint serving one model (base or customized)."""

    deployment_name: str
    model_name: str  # the candidate's configured name
    served_model: str  # the id to put in requests' "model" field
    base_url: str  # ends in /v1
    status: str = "ready"
    details: dict[str, Any] = Field(default_factory=dict)


class EvalSpec(BaseModel):
    name: str  # deterministic job name, e.g. "{workflow_id}-{model}-base-eval"
    eval_type: EvalType
    dataset: DatasetRef
    endpoint: Endpoint
    judge: LLMJudgeConfig | None = None
    concurrency: int = 8
    max_tokens: int = 256
    temperature: float = 0.0
    request_timeout_s: float = 120.0
    max_retries: int = 3


class ToolScores(BaseModel):
    function_name: float
    function_name_and_args_accuracy: float
    count: int


class EvalResult(BaseModel):
    eval_type: EvalType
    num_records: int
    num_errors: int = 0
    scores: dict[str, float | None]  # function_name, function_name_and_args_accuracy, tool_calling_correctness, ...
    score_notes: dict[str, str] = Field(default_factory=dict)  # e.g. why a score is null
    per_tool: dict[str, ToolScores] = Field(default_factory=dict)
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    predictions_uri: str | None = None
    nmp_uri: str | None = None
    runtime_seconds: float | None = None


class CustomizationSpec(BaseModel):
    name: str  # deterministic job name
    nim: NIMConfig
    train: DatasetRef
    val: DatasetRef | None = None
    training: TrainingConfig
    lora: LoRAConfig
    output_model: str  # e.g. "customized-{model}@{job_id}"
    device: str | None = None  # local trainer: "cuda:0" / "cpu"


class CustomizationResult(BaseModel):
    customized_model: str
    adapter_uri: str
    steps_completed: int
    epochs_completed: int
    final_loss: float | None = None
    nmp_uri: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
