"""The one backend seam: the :class:`Platform` protocol. Local (embedded), NeMo Microservices 25.x (v1) and
NeMo Platform (v2) implement it; activities call only this protocol. The value types it exchanges live in
:mod:`flywheel.types`; the registry that builds an implementation from settings is :mod:`flywheel.platforms`.

Every remote side effect takes a deterministic ``name`` derived from the workflow id so a retried
activity finds what an earlier attempt created instead of creating a second one.

Capabilities that differ between platforms have defaults here (implementations subclass
:class:`Platform` to inherit them), so no caller ever branches on which platform it holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

from flywheel.config import NIMConfig
from flywheel.removal import RemovalReport, RunResources
from flywheel.retrieval.evaluate import RetrievalEvalResult
from flywheel.retrieval.types import EmbeddingCustomizationSpec, MinedRefs, MiningSpec, RetrievalEvalSpec
from flywheel.types import (
    CapabilityUnavailable,
    CustomizationResult,
    CustomizationSpec,
    DatasetRef,
    Endpoint,
    EvalResult,
    EvalSpec,
    ProgressFn,
)
from flywheel.vocabulary import TaskQueueRole


@runtime_checkable
class Platform(Protocol):
    kind: ClassVar[str]
    # Which worker pool runs customize(): "gpu" when training runs in the worker process on its devices
    # (one slot per device), "cpu" when it only drives a remote job.
    customization_queue: ClassVar[TaskQueueRole] = TaskQueueRole.cpu

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

    async def remove_run(self, resources: RunResources) -> RemovalReport:
        """Delete what a finished run created on this platform under the names in ``resources`` (datasets,
        jobs, models, training work, deployments left running) and report it: each thing removed by kind,
        each thing kept with the reason. Idempotent: what is gone already is not listed. The artifact store
        and MLflow are cleaned by the caller (flywheel.run_removal). Default: nothing is known to remove."""
        return RemovalReport()

    async def cancel(self, name: str) -> None:
        """Best-effort cancel of a remote job named ``name`` (no-op where nothing runs remotely)."""

    # ---------------------------------------------------------------- capabilities with defaults
    async def suspend(self, name: str) -> None:
        """Worker shutdown while ``customize(name)`` runs: checkpoint and stop so the retried attempt
        resumes. Default: nothing to do (a remote job keeps running and the retry re-attaches to it)."""
        return

    async def close(self) -> None:
        """Release connections and processes this instance holds (worker shutdown). Default: nothing."""
        return

    # ---------------------------------------------------------------- retrieval (job_type embedding_job)
    async def put_retrieval_datasets(self, run_key: str,
                                     splits: Mapping[str, Iterable[dict[str, Any]]]) -> dict[str, DatasetRef]:
        """Store an ``embedding_job``'s datasets (corpus snapshot, splits, triplets) in the artifact store, plus
        the copies the platform's own jobs read. Default: :meth:`put_datasets` (the local platform's datasets
        are artifact-store objects already)."""
        return await self.put_datasets(run_key, splits)

    async def evaluate_retrieval(self, spec: RetrievalEvalSpec,
                                 progress: ProgressFn | None = None) -> RetrievalEvalResult:
        """Score a candidate embedding model (base, or its fine-tuned model) on the eval split over the corpus."""
        raise CapabilityUnavailable(f"the {self.kind} platform does not evaluate retrievers yet")

    async def mine_triplets(self, spec: MiningSpec, progress: ProgressFn | None = None) -> MinedRefs:
        """Mine hard-negative triplets for the train and val splits with the candidate's base model; store them."""
        raise CapabilityUnavailable(f"the {self.kind} platform does not mine retrieval triplets yet")

    async def customize_embedding(self, spec: EmbeddingCustomizationSpec,
                                  progress: ProgressFn | None = None) -> CustomizationResult:
        """Contrastive fine-tuning of an embedding model; idempotent by ``spec.name`` like :meth:`customize`."""
        raise CapabilityUnavailable(f"the {self.kind} platform does not fine-tune embedding models yet")
