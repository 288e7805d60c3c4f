"""The one backend seam. Local (embedded), NeMo Microservices 25.x (v1) and NeMo Platform (v2)
implement :class:`Platform`; activities call only this protocol.

Only references cross Temporal: datasets are stored by the platform and passed around as
:class:`DatasetRef` (URI + count + hash); predictions are stored and referenced by URI.
Every remote side effect takes a deterministic ``name`` derived from the workflow id so a retried
activity finds what an earlier attempt created instead of creating a second one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from flywheel.config import LLMJudgeConfig, LoRAConfig, NIMConfig, Settings, TrainingConfig

EvalType = Literal["base-eval", "icl-eval", "customized-eval"]
SplitName = Literal["eval", "train", "val"]
# Progress callbacks receive small JSON-able dicts; activities turn them into heartbeats.
ProgressFn = Callable[[dict[str, Any]], None]


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
    function_name: float | None
    function_name_and_args_accuracy: float | None  # None when every record's arguments were unparseable
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


@runtime_checkable
class Platform(Protocol):
    kind: str

    async def put_datasets(self, run_key: str, splits: Mapping[str, Iterable[dict[str, Any]]]) -> dict[str, DatasetRef]:
        """Store each split's rows (OpenAI-format records) under ``run_key``; idempotent."""

    async def read_dataset(self, ref: DatasetRef) -> list[dict[str, Any]]:
        """Load a stored split's rows (used by our evaluator and ICL selection)."""

    async def deploy(self, nim: NIMConfig, name: str, adapter_uri: str | None = None,
                     progress: ProgressFn | None = None) -> Endpoint:
        """Make ``nim`` (optionally with a LoRA adapter) reachable; idempotent by ``name``; waits until ready."""

    async def teardown(self, endpoint: Endpoint) -> None:
        """Release what :meth:`deploy` created. Must tolerate an already-gone deployment."""

    async def evaluate(self, spec: EvalSpec, progress: ProgressFn | None = None) -> EvalResult:
        """Run one evaluation; idempotent by ``spec.name``."""

    async def customize(self, spec: CustomizationSpec, progress: ProgressFn | None = None) -> CustomizationResult:
        """Fine-tune; idempotent by ``spec.name`` (resumes or re-attaches to an existing job)."""

    async def cancel(self, name: str) -> None:
        """Best-effort cancel of a remote job named ``name`` (no-op where nothing runs remotely)."""


def make_platform(settings: Settings) -> Platform:
    """The configured Platform implementation."""
    kind = settings.platform.kind
    if kind == "local":
        from flywheel.platforms.local import LocalPlatform

        return LocalPlatform(settings)
    if kind == "nemo_v1":
        from flywheel.platforms.nemo_v1 import NemoV1Platform

        return NemoV1Platform(settings)
    if kind == "nemo_v2":
        from flywheel.platforms.nemo_v2 import NemoV2Platform

        return NemoV2Platform(settings)
    raise ValueError(f"platform.kind: unknown platform {kind!r}")
