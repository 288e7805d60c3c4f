"""Settings of the retrieval flywheel (``embedding_job``): evaluation depth, mining and contrastive training.

Validated like every other section (unknown keys are errors naming the field).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from flywheel.config_sections.base import Section


class ContrastiveTrainingConfig(Section):
    """Fine-tuning an embedding model with MultipleNegativesRankingLoss (in-batch + mined negatives)."""

    finetuning_type: Literal["all_weights", "lora"] = "all_weights"
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=2, description="Triplets per step; every other triplet's passages are "
                                                   "in-batch negatives, so bigger batches are harder.")
    learning_rate: float = Field(3e-5, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_steps: int | None = Field(None, ge=1)
    max_seq_length: int = Field(128, ge=8)
    scale: float = Field(20.0, gt=0, description="Similarity scale of the loss (1 / temperature).")
    checkpoint_every_steps: int = Field(10, ge=1)
    lora_rank: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    seed: int = 42


class EmbeddingCustomizerConfig(Section):
    """NeMo Microservices (``nemo_v1``): how the Customizer fine-tunes this candidate and which embedding NIM
    serves the fine-tuned model for its evaluation (an embedding NIM serves full weights, no adapters)."""

    target: str = Field(description="Customization target, e.g. nvidia/llama-3.2-nv-embedqa-1b@v2.")
    nim_image: str = Field(description="Embedding NIM image that serves the fine-tuned model, e.g. "
                                       "nvcr.io/nim/nvidia/llama-3.2-nv-embedqa-1b-v2.")
    nim_tag: str = "latest"
    nim_gpus: int = Field(1, ge=0)
    gpus: int = Field(1, ge=1)
    num_nodes: int = Field(1, ge=1)
    tensor_parallel_size: int = Field(1, ge=1)
    micro_batch_size: int = Field(8, ge=1)
    training_precision: str = "bf16"
    max_seq_length: int = Field(2048, ge=8)


class EmbeddingCandidateConfig(Section):
    """One candidate embedding model: a local sentence-transformers directory (default: the bundled
    all-MiniLM-L6-v2) or an OpenAI-compatible ``/v1/embeddings`` endpoint. On NeMo Microservices the
    candidate is an embedding NIM (``url``, default ``nmp_config.nim_base_url``/v1) and ``customizer_configs``
    says how the Customizer fine-tunes it."""

    model_name: str = "all-MiniLM-L6-v2"
    model_dir: str | None = Field(None, description="sentence-transformers directory; None: the bundled MiniLM.")
    url: str | None = Field(None, description="An OpenAI-compatible API base (.../v1) serving model_name.")
    api_key_env: str | None = Field(None, description="Name of the env var holding the endpoint's key.")
    asymmetric: bool | None = Field(None, description="Send input_type query/passage (default: nvidia/ models).")
    customization_enabled: bool = True
    customizer_configs: EmbeddingCustomizerConfig | None = Field(
        None, description="nemo_v1: fine-tune on the NeMo Customizer (then the candidate may be an endpoint).")

    @model_validator(mode="after")
    def _one_source(self) -> EmbeddingCandidateConfig:
        if self.url and self.model_dir:
            raise ValueError("set model_dir or url, not both")
        if self.url and self.customization_enabled and self.customizer_configs is None:
            raise ValueError("customization_enabled needs local weights (model_dir or the bundled model) or "
                             "customizer_configs (NeMo Customizer), not only an endpoint url")
        return self


class RetrievalConfig(Section):
    candidates: list[EmbeddingCandidateConfig] = Field(default_factory=lambda: [EmbeddingCandidateConfig()])
    gate_metric: str = Field("ndcg_at_10", description="The metric the promotion gate reads for embedding jobs.")
    ks: list[int] = Field(default_factory=lambda: [1, 5, 10], description="Cut-offs of Recall/nDCG/MRR@k.")
    num_negatives: int = Field(3, ge=1, description="Mined hard negatives per training triplet.")
    search_depth: int = Field(50, ge=1, description="How deep the base model's ranking is searched for negatives.")
    corpus_path: str | None = Field(None, description="Optional corpus export ({id, text} JSON lines) added "
                                                      "to the passages seen in the logs.")
    training: ContrastiveTrainingConfig = ContrastiveTrainingConfig()

    @field_validator("ks")
    @classmethod
    def _positive_ks(cls, ks: list[int]) -> list[int]:
        if not ks or any(k < 1 for k in ks):
            raise ValueError("ks must be a non-empty list of positive cut-offs")
        return sorted(set(ks))

    @model_validator(mode="after")
    def _consistent(self) -> RetrievalConfig:
        if self.search_depth < max(self.ks):
            raise ValueError(f"search_depth ({self.search_depth}) must be >= the largest k ({max(self.ks)})")
        names = [c.model_name for c in self.candidates]
        if len(set(names)) != len(names):
            raise ValueError(f"candidates: duplicate model_name in {names}")
        family, _, k = self.gate_metric.rpartition("_at_")
        if family not in ("recall", "ndcg", "mrr", "production_agreement") or not k.isdigit() or int(k) not in self.ks:
            raise ValueError(f"gate_metric {self.gate_metric!r} must be recall|ndcg|mrr|production_agreement"
                             f"_at_<k> with k in ks {self.ks}")
        return self
