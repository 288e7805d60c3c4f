"""What crosses the Platform seam for an ``embedding_job``: references and settings, never rows."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from flywheel.retrieval.config import EmbeddingCandidateConfig, RetrievalConfig
from flywheel.types import DatasetRef
from flywheel.vocabulary import SplitName

CORPUS_SPLIT = SplitName.corpus
TRIPLETS_SPLIT = "triplets"
VAL_TRIPLETS_SPLIT = "val_triplets"


class RetrievalEvalSpec(BaseModel):
    name: str  # deterministic, e.g. "{candidate_wf_id}-base-eval"
    eval_type: str
    candidate: EmbeddingCandidateConfig
    eval: DatasetRef
    corpus: DatasetRef
    retrieval: RetrievalConfig
    customized_model_dir: str | None = None  # set for customized-eval: served over HTTP, then scored
    served_name: str | None = None


class MiningSpec(BaseModel):
    name: str  # deterministic run key under which the triplets are stored
    candidate: EmbeddingCandidateConfig
    train: DatasetRef
    val: DatasetRef | None = None
    corpus: DatasetRef
    retrieval: RetrievalConfig


class EmbeddingCustomizationSpec(BaseModel):
    name: str  # deterministic; the trainer's work dir is keyed by it (a retry resumes)
    candidate: EmbeddingCandidateConfig
    triplets: DatasetRef
    val_triplets: DatasetRef | None = None
    retrieval: RetrievalConfig
    output_model: str
    device: str | None = None


class MinedRefs(BaseModel):
    """Where a mining run stored its triplets (``triplets``, ``val_triplets``), with its counts."""

    datasets: dict[str, DatasetRef]
    counts: dict[str, Any] = Field(default_factory=dict)
    mining_seconds: float = 0.0
