"""How candidates are evaluated and judged: request limits, MLflow tracking, the promotion gate, promotion."""

from __future__ import annotations

from pydantic import Field, field_validator

from flywheel.config_sections.base import Section


class EvaluationConfig(Section):
    concurrency: int = Field(8, ge=1)
    request_timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(3, ge=0)
    max_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0)


class MLflowConfig(Section):
    enabled: bool = False
    tracking_uri: str = "sqlite:///.flywheel/mlflow.db"
    experiment_name_prefix: str = "data-flywheel"


# Per-record metrics the gate can judge on (agreement with the production model's responses).
GATE_METRICS = (
    "function_name", "function_name_and_args_accuracy", "normalized_args_accuracy",
    "function_name_strict", "function_name_and_args_strict", "tool_calling_correctness", "similarity", "token_f1",
)


class ReferenceModelConfig(Section):
    """The production model the candidates must replace: its responses are the ground truth."""

    model_name: str = "production"
    cost_per_1k_tokens: float | None = Field(None, ge=0, description="Price of the production model per 1k tokens.")
    latency_p95_ms: float | None = Field(
        None, gt=0, description="Production p95 latency; None: taken from the logs when they carry it.")


class GateConfig(Section):
    """Promotion gate (flywheel.gate): non-inferiority of agreement with the reference, plus latency and cost.

    A candidate configuration passes when the lower bound of its agreement interval (at ``confidence``)
    clears ``1 - max_drop_vs_reference`` and every configured constraint holds.
    """

    metric: str = "function_name_and_args_accuracy"
    min_score: float = Field(0.0, ge=0, le=1)
    max_drop_vs_reference: float = Field(0.05, ge=0, lt=1, description="The non-inferiority margin.")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Two-sided level of the agreement interval.")
    reference: ReferenceModelConfig = ReferenceModelConfig()
    max_latency_p95_ratio: float | None = Field(
        None, gt=0, description="Candidate p95 latency at most this multiple of the reference's.")
    max_latency_p95_ms: float | None = Field(None, gt=0, description="Candidate p95 latency at most this (ms).")
    max_cost_ratio: float | None = Field(
        1.0, gt=0, description="Candidate cost per request at most this multiple of the reference's.")
    paired_alpha: float = Field(0.05, gt=0, lt=1, description="Significance level of the paired McNemar tests.")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in GATE_METRICS:
            raise ValueError(f"unknown metric {metric!r} (one of: {', '.join(GATE_METRICS)})")
        return metric


class PromotionConfig(Section):
    """What a promotion does besides recording the decision."""

    webhook_url: str | None = Field(None, description="POSTed an HMAC-signed event on every promotion.")
    webhook_secret_env: str | None = Field(None, description="Env var holding the HMAC secret (never the secret).")
    webhook_timeout_s: float = Field(10.0, gt=0, description="One delivery attempt's timeout.")
    webhook_deadline_s: int = Field(24 * 3600, ge=1, description="How long Temporal keeps retrying delivery.")
    mlflow_alias: str = Field("champion", min_length=1, description="Alias of the promoted model version in MLflow.")
