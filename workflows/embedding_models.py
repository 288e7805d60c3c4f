"""What the ``embedding_job`` workflows and activities exchange (references and scores only)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from flywheel.config import Settings
from flywheel.jobdoc import NimDoc
from flywheel.retrieval.config import EmbeddingCandidateConfig
from flywheel.retrieval.types import EmbeddingCustomizationSpec, MiningSpec, RetrievalEvalSpec
from flywheel.types import DatasetRef
from flywheel.vocabulary import EvalType
from workflows.models import ActivityTimeouts

EMBEDDING_CANDIDATE_WORKFLOW = "EmbeddingCandidateRun"
ACT_PREPARE_RETRIEVAL_DATA = "prepare_retrieval_data"
ACT_EVALUATE_RETRIEVAL = "evaluate_retrieval"
ACT_MINE_TRIPLETS = "mine_triplets"
ACT_CUSTOMIZE_EMBEDDING = "customize_embedding"
ICL_NOT_APPLICABLE = ("in-context learning does not apply to embedding models: an embedding_job has no icl-eval")


class EmbeddingCandidateInput(BaseModel):
    parent_workflow_id: str
    job_id: str
    candidate: EmbeddingCandidateConfig
    settings: Settings
    datasets: dict[str, DatasetRef]  # eval / train / val / corpus
    eval_types: list[EvalType]
    timeouts: ActivityTimeouts | None = None


class EmbeddingCandidateResult(BaseModel):
    model_name: str
    nim: NimDoc | None = None
    errors: dict[str, str] = Field(default_factory=dict)


class RetrievalEvaluateInput(BaseModel):
    settings: Settings
    spec: RetrievalEvalSpec


class MineInput(BaseModel):
    settings: Settings
    spec: MiningSpec


class EmbeddingCustomizeInput(BaseModel):
    settings: Settings
    spec: EmbeddingCustomizationSpec
