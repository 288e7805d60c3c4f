"""What the ``embedding_job`` workflows and activities exchange (references and scores only). Like every model
Temporal carries, they are :class:`~flywheel.carried.Carried`: a Settings snapshot from the next version (one more
config field, e.g. in ``embedding_config.candidates``) decodes here."""

from __future__ import annotations

from pydantic import Field

from flywheel.carried import Carried
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


class EmbeddingCandidateInput(Carried):
    parent_workflow_id: str
    job_id: str
    candidate: EmbeddingCandidateConfig
    settings: Settings
    datasets: dict[str, DatasetRef]  # eval / train / val / corpus
    eval_types: list[EvalType]
    timeouts: ActivityTimeouts | None = None


class EmbeddingCandidateResult(Carried):
    model_name: str
    nim: NimDoc | None = None
    errors: dict[str, str] = Field(default_factory=dict)


class RetrievalEvaluateInput(Carried):
    settings: Settings
    spec: RetrievalEvalSpec


class MineInput(Carried):
    settings: Settings
    spec: MiningSpec


class EmbeddingCustomizeInput(Carried):
    settings: Settings
    spec: EmbeddingCustomizationSpec
