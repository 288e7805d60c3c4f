"""``NemoV1Platform``: the Platform protocol over NeMo Microservices 25.x (v1 REST).

``llm_job``: :mod:`.datasets`, :mod:`.deployment`, :mod:`.evaluation`, :mod:`.customization`.
``embedding_job``: :mod:`.retrieval_data` (artifact store + Datastore copies, mining),
:mod:`.retrieval_eval` (Evaluator ``retriever`` jobs), :mod:`.embedding_customization` (Customizer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flywheel.artifacts import open_artifact_store
from flywheel.artifacts.datasets import StoredDatasets
from flywheel.config import NIMConfig, Settings
from flywheel.platforms.base import Platform
from flywheel.platforms.nemo_v1.client import NemoV1Clients, NemoV1Timing
from flywheel.platforms.nemo_v1.customization import CustomizationV1
from flywheel.platforms.nemo_v1.datasets import DatasetsV1
from flywheel.platforms.nemo_v1.deployment import DeploymentV1
from flywheel.platforms.nemo_v1.embedding_customization import EmbeddingCustomizationV1
from flywheel.platforms.nemo_v1.evaluation import EvaluationV1
from flywheel.platforms.nemo_v1.removal import RemovalV1
from flywheel.platforms.nemo_v1.retrieval_data import RetrievalDataV1
from flywheel.platforms.nemo_v1.retrieval_eval import RetrievalEvaluationV1
from flywheel.removal import RemovalReport, RunResources
from flywheel.retrieval.evaluate import RetrievalEvalResult
from flywheel.retrieval.types import EmbeddingCustomizationSpec, MinedRefs, MiningSpec, RetrievalEvalSpec
from flywheel.types import (
    CustomizationResult,
    CustomizationSpec,
    DatasetRef,
    Endpoint,
    EvalResult,
    EvalSpec,
    ProgressFn,
    WorkerShutdownProbe,
    never_shutting_down,
)


def timing_from_settings(settings: Settings) -> NemoV1Timing:
    """Defaults, with ``nmp_config.poll_interval_s`` / ``pending_timeout_s`` applied when set."""
    cfg = settings.nmp_config
    timing = NemoV1Timing()
    if cfg.poll_interval_s is not None:
        timing.poll_interval_s = cfg.poll_interval_s
    if cfg.pending_timeout_s is not None:
        timing.pending_timeout_s = cfg.pending_timeout_s
    return timing


class NemoV1Platform(Platform):
    kind = "nemo_v1"

    def __init__(self, settings: Settings, timing: NemoV1Timing | None = None, *, register_models: bool = False,
                 is_worker_shutdown: WorkerShutdownProbe = never_shutting_down,
                 cleanup_on_cancel: Callable[[], bool] | None = None) -> None:
        """``cleanup_on_cancel`` decides, when an activity is cancelled, whether the remote job is cancelled
        too; by default yes, except during a worker shutdown: then the activity is retried elsewhere and
        must re-attach to the still-running job."""
        self.settings = settings
        self.timing = timing or timing_from_settings(settings)
        self.clients = NemoV1Clients(settings, self.timing)
        self.datasets = DatasetsV1(self.clients)
        self.evaluation = EvaluationV1(self.clients, register_models=register_models)
        self.customization = CustomizationV1(self.clients)
        self.deployment = DeploymentV1(self.clients)
        stored = StoredDatasets(open_artifact_store(settings), settings.data_dir / "staging")
        self.retrieval_data = RetrievalDataV1(self.datasets, stored)
        self.retrieval_eval = RetrievalEvaluationV1(self.clients, self.evaluation, self.deployment)
        self.embedding_customization = EmbeddingCustomizationV1(self.customization)
        self.cleanup_on_cancel = cleanup_on_cancel or (lambda: not is_worker_shutdown())

    async def close(self) -> None:
        await self.clients.aclose()

    async def put_datasets(self, run_key: str, splits: Mapping[str, Iterable[dict[str, Any]]]) -> dict[str, DatasetRef]:
        return await self.datasets.put(run_key, splits)

    async def read_dataset(self, ref: DatasetRef) -> list[dict[str, Any]]:
        return await self.retrieval_data.read(ref)  # the artifact store's copy when there is one, else the Datastore

    async def remove_run(self, resources: RunResources) -> RemovalReport:
        """Datasets, evaluation jobs, customized models and leaked deployments of the run; customization
        jobs stay (v1 cannot delete them): flywheel.platforms.nemo_v1.removal."""
        return await RemovalV1(self.clients, self.datasets, self.evaluation, self.customization).remove(resources)

    async def deploy(self, nim: NIMConfig, name: str, adapter_uri: str | None = None,
                     progress: ProgressFn | None = None) -> Endpoint:
        return await self.deployment.deploy(nim, name, adapter_uri, progress)

    async def teardown(self, endpoint: Endpoint) -> None:
        await self.deployment.teardown(endpoint)

    async def evaluate(self, spec: EvalSpec, progress: ProgressFn | None = None) -> EvalResult:
        return await self.evaluation.evaluate(spec, progress, self.cleanup_on_cancel)

    async def customize(self, spec: CustomizationSpec, progress: ProgressFn | None = None) -> CustomizationResult:
        return await self.customization.customize(spec, progress, self.cleanup_on_cancel)

    # ------------------------------------------------------------------ retrieval (embedding_job)
    async def put_retrieval_datasets(self, run_key: str,
                                     splits: Mapping[str, Iterable[dict[str, Any]]]) -> dict[str, DatasetRef]:
        return await self.retrieval_data.put(run_key, splits)

    async def evaluate_retrieval(self, spec: RetrievalEvalSpec,
                                 progress: ProgressFn | None = None) -> RetrievalEvalResult:
        return await self.retrieval_eval.evaluate(spec, progress, self.cleanup_on_cancel)

    async def mine_triplets(self, spec: MiningSpec, progress: ProgressFn | None = None) -> MinedRefs:
        return await self.retrieval_data.mine(spec, progress)

    async def customize_embedding(self, spec: EmbeddingCustomizationSpec,
                                  progress: ProgressFn | None = None) -> CustomizationResult:
        return await self.embedding_customization.customize(spec, progress, self.cleanup_on_cancel)

    async def cancel(self, name: str) -> None:
        """Best-effort: cancel the live customization or evaluation job named ``name``."""
        if not await self.customization.cancel_by_name(name):
            await self.evaluation.cancel_by_name(name)
