"""The data sections: splitting, curation and in-context example selection (with its embeddings)."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import Field, model_validator

from flywheel.config_sections.base import Section


class DataSplitConfig(Section):
    eval_size: int = Field(100, ge=1)
    val_ratio: float = Field(0.1, ge=0, lt=1)
    min_total_records: int = Field(50, ge=1)
    # Fixed default: a run must be reproducible (the reference defaults to null).
    random_seed: int = 42
    limit: int = Field(10000, ge=1)
    parse_function_arguments: bool = True
    stratify: bool = True


class CurationConfig(Section):
    dedup: bool = True
    redact_pii: bool = False


class EmbeddingConfig(Section):
    deployment_type: Literal["local", "remote"] = "local"
    url: str | None = None
    model_name: str = "all-MiniLM-L6-v2"
    api_key_env: str | None = None


class SimilarityConfig(Section):
    relevance_ratio: float = Field(0.7, ge=0, le=1)
    embedding_nim_config: EmbeddingConfig = EmbeddingConfig()


class ExampleSelection(str, Enum):
    uniform_distribution = "uniform_distribution"
    semantic_similarity = "semantic_similarity"


class ICLConfig(Section):
    max_context_length: int = Field(32768, gt=0)
    reserved_tokens: int = Field(4096, ge=0)
    max_examples: int = Field(3, ge=0)
    min_examples: int = Field(1, ge=0)
    example_selection: ExampleSelection = ExampleSelection.uniform_distribution
    similarity_config: SimilarityConfig = SimilarityConfig()

    @model_validator(mode="after")
    def _min_le_max(self) -> ICLConfig:
        if self.min_examples > self.max_examples:
            raise ValueError("min_examples must be <= max_examples")
        return self
