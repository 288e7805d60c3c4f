"""The models: candidates (NIMs) and where their weights come from, the LLM judge, and how they are trained."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from flywheel.config_sections.base import Section


class ModelSource(Section):
    """Where the local platform gets a candidate's weights. Never a hub download."""

    path: str | None = Field(None, description="A local GGUF file.")
    package: str | None = Field(
        None, description="A pinned registry package known to flywheel.platforms.local.weights.")
    sha256: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        if not self.path and not self.package:
            raise ValueError("set either path or package")
        return self


class CustomizerConfig(Section):
    target: str | None = None
    gpus: int = 1
    num_nodes: int = 1
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    use_sequence_parallel: bool = False
    micro_batch_size: int = 1
    training_precision: str = "bf16-mixed"
    max_seq_length: int = 4096


class NIMConfig(Section):
    model_name: str
    context_length: int = Field(8192, gt=0)
    gpus: int = 0
    pvc_size: str | None = None
    tag: str | None = None
    registry_base: str | None = None
    customization_enabled: bool = False
    customizer_configs: CustomizerConfig | None = None
    # Local platform only.
    source: ModelSource | None = None
    # Relative cost of serving this model, per 1k tokens (used for the cost column and the gate).
    cost_per_1k_tokens: float = Field(0.0, ge=0)
    max_concurrency: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _customizer_when_enabled(self) -> NIMConfig:
        if self.customization_enabled and self.customizer_configs is None:
            self.customizer_configs = CustomizerConfig()
        return self


class LLMJudgeConfig(Section):
    deployment_type: Literal["remote", "local"] = "remote"
    url: str | None = None
    model_name: str | None = None
    api_key_env: str | None = None
    # deployment_type local without a url: the platform deploys the judge for the run (local platform:
    # a llama.cpp model from this source; nemo_v1 serves it from the NIM endpoint).
    source: ModelSource | None = None
    context_length: int = Field(8192, gt=0)

    def as_nim(self) -> NIMConfig:
        """The judge as a model the platform can deploy."""
        return NIMConfig(model_name=self.model_name or "judge", context_length=self.context_length, source=self.source)


class TrainingConfig(Section):
    training_type: str = "sft"
    finetuning_type: str = "lora"
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    # Local trainer.
    max_steps: int | None = Field(None, ge=1, description="Cap on optimizer steps (local trainer).")
    max_seq_length: int = Field(1024, ge=32)
    checkpoint_every_steps: int = Field(5, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_tools_per_example: int | None = Field(
        None, ge=1, description="Local trainer: keep the called tools plus distractors up to this many per prompt.")


class LoRAConfig(Section):
    adapter_dim: int = Field(32, ge=1)
    adapter_dropout: float = Field(0.1, ge=0, lt=1)
    alpha: int | None = None
