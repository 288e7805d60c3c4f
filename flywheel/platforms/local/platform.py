"""The embedded local :class:`~flywheel.platforms.base.Platform`.

* datasets: JSONL files under ``<data_dir>/datasets`` (:mod:`.datasets`)
* deploy / teardown: GGUF weights provisioned by :mod:`.weights` (cached in ``<data_dir>/models``),
  served by a llama.cpp model-server process (:mod:`.model_server`) that :mod:`.server_processes`
  starts and stops (state in ``<data_dir>/deployments``)
* evaluate: our evaluator of record, in process (:mod:`flywheel.evaluator`)
* customize: the peft LoRA trainer (:mod:`.trainer`)
* embedding_job: retrieval evaluation, triplet mining and contrastive fine-tuning
  (:mod:`.embedding_backend`); a fine-tuned embedding model is served by :mod:`.embedding_server`
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from flywheel import evaluator
from flywheel.artifacts import open_artifact_store
from flywheel.cluster import serving_hosts
from flywheel.config import NIMConfig, Settings
from flywheel.platforms.base import Platform
from flywheel.platforms.local import cleanup, datasets, embedding_backend, work_sync
from flywheel.platforms.local.embedding_trainer import EmbeddingTrainingBusy, EmbeddingTrainingError
from flywheel.platforms.local.server_processes import ModelServerManager
from flywheel.platforms.local.weights import provision
from flywheel.progress import DeploymentProgress, EvaluationProgress
from flywheel.removal import DATA_DIR, DEPLOYMENT, RemovalReport, RunResources
from flywheel.retrieval.evaluate import RetrievalEvalResult
from flywheel.retrieval.types import (
    TRIPLETS_SPLIT,
    VAL_TRIPLETS_SPLIT,
    EmbeddingCustomizationSpec,
    MinedRefs,
    MiningSpec,
    RetrievalEvalSpec,
)
from flywheel.scoring import record_scores_path
from flywheel.types import (
    CustomizationResult,
    CustomizationSpec,
    DatasetRef,
    Endpoint,
    EvalResult,
    EvalSpec,
    PlatformError,
    ProgressFn,
    WorkerShutdownProbe,
    never_shutting_down,
)
from flywheel.vocabulary import TaskQueueRole

log = logging.getLogger(__name__)


def adapter_file(adapter_uri: str) -> Path:
    """A GGUF LoRA adapter from a file path, ``file://`` URI, or a directory holding one ``*.gguf``."""
    path = datasets.uri_to_path(adapter_uri)
    if path.is_dir():
        candidates = sorted(path.glob("*.gguf"))
        preferred = [c for c in candidates if c.name == "adapter.gguf"]
        if preferred or len(candidates) == 1:
            return (preferred or candidates)[0]
        found = ", ".join(c.name for c in candidates) or "none"
        raise PlatformError(f"adapter directory {path} must hold adapter.gguf or exactly one .gguf (found: {found})",
                            retryable=False, error_type="AdapterNotFound")
    if not path.is_file():
        raise PlatformError(f"LoRA adapter not found: {path}", retryable=False, error_type="AdapterNotFound")
    return path


class LocalPlatform(Platform):
    kind = "local"
    customization_queue = TaskQueueRole.gpu  # trains in the worker process, one slot per device

    def __init__(self, settings: Settings, *, is_worker_shutdown: WorkerShutdownProbe = never_shutting_down) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        self.models_dir = self.data_dir / "models"
        bind_host, advertise_host = serving_hosts(settings)
        # In a cluster, deployment records live in the shared artifact store (any worker can find,
        # reuse, tear down or revive a deployment); on one host, in <data_dir>/deployments.
        self.artifacts = open_artifact_store(settings)
        self.servers = ModelServerManager(self.data_dir, bind_host=bind_host, advertise_host=advertise_host,
                                          shared=self.artifacts if settings.cluster.active else None)
        # A llama.cpp server answers one request at a time: evaluations of one deployment take turns,
        # one request in flight, so measured latency is service time, not time queued behind others.
        self._eval_turns: dict[str, asyncio.Lock] = {}
        self._training_stops: dict[str, threading.Event] = {}

    # ------------------------------------------------------------------ datasets

    async def put_datasets(self, run_key: str, splits: Mapping[str, Iterable[dict[str, Any]]]) -> dict[str, DatasetRef]:
        return await asyncio.to_thread(datasets.put_splits, self.artifacts, self.data_dir / "staging", run_key,
                                       splits)

    async def read_dataset(self, ref: DatasetRef) -> list[dict[str, Any]]:
        return await asyncio.to_thread(datasets.read_split, self.artifacts, ref)

    async def remove_run(self, resources: RunResources) -> RemovalReport:
        """Stop the run's model servers still running (a teardown that failed), then delete its files
        under data_dir (flywheel.platforms.local.cleanup). Before the artifact store is cleaned: the
        deployment records and adapter checksums are read from it."""
        report = RemovalReport()
        for name in resources.deployment_names():
            try:
                state = await asyncio.to_thread(self.servers.read_state, name)
            except ValueError:  # not a deployment name (a workflow id with '/'): never deployed
                continue
            if state is not None:
                await self.servers.teardown(name)
                report.remove(DEPLOYMENT, name)
        paths = cleanup.run_paths(self.data_dir, resources)
        paths += await asyncio.to_thread(cleanup.adapter_cache_paths, self.data_dir, self.artifacts, resources)
        return report.remove(DATA_DIR, await asyncio.to_thread(cleanup.remove_paths, self.data_dir, paths))

    # ------------------------------------------------------------------ serving

    async def _weights(self, nim: NIMConfig, progress: ProgressFn | None) -> Path:
        """The candidate's GGUF (served and fine-tuned from the same verified file)."""
        if nim.source is None:
            raise PlatformError(
                f"nims[{nim.model_name}].source is not set: the local platform needs a GGUF path or a pinned package",
                retryable=False, error_type="ModelSourceMissing")
        return await asyncio.to_thread(provision, nim.source, self.models_dir, progress)

    async def deploy(self, nim: NIMConfig, name: str, adapter_uri: str | None = None,
                     progress: ProgressFn | None = None) -> Endpoint:
        model_path = await self._weights(nim, progress)
        lora_path = await asyncio.to_thread(self._adapter_path, adapter_uri) if adapter_uri else None
        # The server process is spawned from this (event-loop) thread: see serving._die_with_parent.
        endpoint = await self.servers.deploy(
            name, model_path, alias=nim.model_name, lora_path=lora_path, n_ctx=nim.context_length,
            progress=progress, model_name=nim.model_name)
        # What evaluate() needs to bring the server back if it died with an earlier worker.
        endpoint.details["redeploy"] = {"nim": nim.model_dump(mode="json"), "adapter_uri": adapter_uri}
        return endpoint

    def _adapter_path(self, adapter_uri: str) -> Path:
        """A local GGUF for ``adapter_uri``: downloaded (once per host) when it lives in the artifact store."""
        if adapter_uri.startswith(self.artifacts.root_uri + "/"):
            return work_sync.local_adapter(self.artifacts, adapter_uri, self.data_dir / "adapters")
        return adapter_file(adapter_uri)

    async def teardown(self, endpoint: Endpoint) -> None:
        await self.servers.teardown(endpoint.deployment_name)

    async def ensure_serving(self, endpoint: Endpoint, progress: ProgressFn | None = None) -> Endpoint:
        """``endpoint`` if its server is healthy, else the same deployment started again (new port)."""
        if await asyncio.to_thread(self.servers.is_alive, endpoint.deployment_name):
            current = self.servers.endpoint(endpoint.deployment_name, endpoint.model_name)
            if current is not None and current.base_url == endpoint.base_url:
                return endpoint
        redeploy = endpoint.details.get("redeploy")
        if not redeploy:
            raise PlatformError(f"model server {endpoint.deployment_name!r} is gone and the endpoint carries no "
                                f"redeploy information", retryable=False, error_type="EndpointGone")
        log.info("model server %s is not serving; redeploying", endpoint.deployment_name)
        if progress:
            progress(DeploymentProgress(stage="redeploying", deployment=endpoint.deployment_name).details())
        nim = NIMConfig.model_validate(redeploy["nim"])
        return await self.deploy(nim, endpoint.deployment_name, redeploy.get("adapter_uri"), progress)

    # ------------------------------------------------------------------ evaluation and customization

    async def evaluate(self, spec: EvalSpec, progress: ProgressFn | None = None) -> EvalResult:
        endpoint = await self.ensure_serving(spec.endpoint, progress)
        if endpoint is not spec.endpoint:
            spec = spec.model_copy(update={"endpoint": endpoint})
        rows = await self.read_dataset(spec.dataset)
        predictions_path = self.data_dir / "predictions" / f"{spec.name}.jsonl"
        spec = spec.model_copy(update={"concurrency": 1})
        turn = self._eval_turns.setdefault(spec.endpoint.deployment_name, asyncio.Lock())
        if turn.locked() and progress:
            progress(EvaluationProgress(status="queued",
                                        detail="waiting for another evaluation of this deployment").details())
        async with turn:
            # The predictions cache is shared through the artifact store: a retry on another host
            # resumes from what this one published, and never pays twice for a record.
            await asyncio.to_thread(self._pull_predictions, predictions_path)
            try:
                result = await evaluator.evaluate(spec, rows, predictions_path=predictions_path, progress=progress)
            finally:
                uri = await asyncio.to_thread(self._push_predictions, predictions_path)
            return result.model_copy(update={"predictions_uri": uri}) if uri else result

    def _prediction_files(self, predictions_path: Path) -> list[tuple[str, Path]]:
        """The predictions, the judge's verdicts and the per-record scores (the gate's paired tests read them)."""
        judge = predictions_path.with_name(predictions_path.stem + ".judge.jsonl")
        return [(f"predictions/{p.name}", p) for p in (predictions_path, judge, record_scores_path(predictions_path))]

    def _pull_predictions(self, predictions_path: Path) -> None:
        for key, path in self._prediction_files(predictions_path):
            if not path.exists() and self.artifacts.exists(key):
                self.artifacts.get(key, path)

    def _push_predictions(self, predictions_path: Path) -> str | None:
        for key, path in self._prediction_files(predictions_path):
            if path.exists():
                self.artifacts.put(key, path)
        main_key = self._prediction_files(predictions_path)[0][0]
        return self.artifacts.uri(main_key) if predictions_path.exists() else None

    async def _share_dequantised_weights(self, model_path: Path, *, pull: bool) -> None:
        """In a cluster (no shared disk) the trainer's dequantised base weights go through the artifact store:
        pulled before training when this host has none, published after it when the store has none. Best
        effort: without them the trainer dequantises the GGUF itself."""
        if not self.settings.cluster.active:
            return
        from flywheel.platforms.local import hf_model, weights_cache

        sync = weights_cache.pull if pull else weights_cache.push
        try:
            await asyncio.to_thread(sync, self.artifacts, model_path, hf_model.cache_dir(model_path.resolve()))
        except Exception as exc:  # noqa: BLE001 - a cache must never fail a training
            log.warning("dequantised weights of %s not %s the artifact store: %s", model_path.name,
                        "pulled from" if pull else "published to", exc)

    async def customize(self, spec: CustomizationSpec, progress: ProgressFn | None = None) -> CustomizationResult:
        """LoRA-train in a thread; ``work_dir`` is keyed by the spec's deterministic name, so a retried
        attempt resumes from the trainer's newest complete checkpoint."""
        # lazy: the trainer pulls in torch/transformers/peft, which only training needs.
        from flywheel.platforms.local.trainer import TrainingStopped, train

        # Checkpoints and the finished adapter are published to the artifact store (work_sync), so a
        # retry on any host resumes from the newest checkpoint or returns the stored result.
        if (done := await asyncio.to_thread(work_sync.read_result, self.artifacts, spec.name)) is not None:
            return done
        model_path = await self._weights(spec.nim, progress)
        rows_train = await self.read_dataset(spec.train)
        rows_val = await self.read_dataset(spec.val) if spec.val else None
        work_dir = self.data_dir / "customizations" / spec.name
        await asyncio.to_thread(work_sync.pull_newest_checkpoint, self.artifacts, spec.name, work_dir)
        await self._share_dequantised_weights(model_path, pull=True)
        stop = self._training_stops[spec.name] = threading.Event()
        job = asyncio.ensure_future(asyncio.to_thread(
            train, spec, model_path=model_path, work_dir=work_dir, rows_train=rows_train, rows_val=rows_val,
            progress=progress, should_stop=stop.is_set,
            on_checkpoint=lambda ckpt: work_sync.push_checkpoint(self.artifacts, spec.name, ckpt)))
        try:
            # shield: a cancelled activity must wait for the trainer's checkpoint, not abandon the thread.
            result = await asyncio.shield(job)
            await self._share_dequantised_weights(model_path, pull=False)
            return await asyncio.to_thread(work_sync.push_result, self.artifacts, spec.name, result)
        except asyncio.CancelledError:
            stop.set()
            with contextlib.suppress(BaseException):
                await job
            raise
        except TrainingStopped as exc:
            raise PlatformError(f"training {spec.name} suspended at step {exc.step} ({exc.reason}); the next attempt "
                                f"resumes from {exc.checkpoint}", retryable=True, error_type="TrainingSuspended",
                                details={"step": exc.step, "checkpoint": exc.checkpoint}) from exc
        finally:
            self._training_stops.pop(spec.name, None)

    # ------------------------------------------------------------------ retrieval (embedding_job)

    async def evaluate_retrieval(self, spec: RetrievalEvalSpec, progress: ProgressFn | None = None
                                 ) -> RetrievalEvalResult:
        """Embed + exact search + metrics in a thread; a customized model is served by a local embeddings
        server for the length of the evaluation."""
        eval_rows = await self.read_dataset(spec.eval)
        corpus_rows = await self.read_dataset(spec.corpus)
        return await asyncio.to_thread(
            embedding_backend.evaluate_candidate, spec.candidate, eval_rows, corpus_rows, spec.retrieval,
            customized_model_dir=spec.customized_model_dir, served_name=spec.served_name,
            work_dir=self.data_dir / "embedding-evals" / spec.name, progress=progress)

    async def mine_triplets(self, spec: MiningSpec, progress: ProgressFn | None = None) -> MinedRefs:
        train = await self.read_dataset(spec.train)
        val = await self.read_dataset(spec.val) if spec.val else []
        corpus = await self.read_dataset(spec.corpus)
        if progress:
            progress({"phase": "mining", "train": len(train), "val": len(val), "corpus": len(corpus)})
        mined = await asyncio.to_thread(embedding_backend.mine, spec.candidate, train, val, corpus, spec.retrieval)
        refs = await self.put_retrieval_datasets(spec.name,
                                                 {TRIPLETS_SPLIT: mined.train, VAL_TRIPLETS_SPLIT: mined.val})
        return MinedRefs(datasets=refs, counts=mined.counts, mining_seconds=mined.mining_seconds)

    async def customize_embedding(self, spec: EmbeddingCustomizationSpec, progress: ProgressFn | None = None
                                  ) -> CustomizationResult:
        """Contrastive fine-tuning in a thread, resumable and stoppable like :meth:`customize`."""
        # Lazy, as in customize(): the trainer module pulls in torch, which only training needs.
        from flywheel.platforms.local.trainer import TrainingStopped
        if spec.candidate.url:
            raise PlatformError(f"{spec.candidate.model_name}: the local platform fine-tunes local weights (model_dir "
                                f"or the bundled model), not the endpoint {spec.candidate.url}", retryable=False,
                                error_type="TrainingConfigError")
        triplets = await self.read_dataset(spec.triplets)
        val = await self.read_dataset(spec.val_triplets) if spec.val_triplets else []
        stop = self._training_stops[spec.name] = threading.Event()
        job = asyncio.ensure_future(asyncio.to_thread(
            embedding_backend.customize, spec.candidate, triplets, val, spec.retrieval,
            self.data_dir / "customizations" / spec.name, progress=progress, should_stop=stop.is_set,
            device=spec.device))
        try:
            result = await asyncio.shield(job)
        except asyncio.CancelledError:
            stop.set()
            with contextlib.suppress(BaseException):
                await job
            raise
        except TrainingStopped as exc:
            raise PlatformError(f"training {spec.name} suspended at step {exc.step} ({exc.reason}); the next attempt "
                                f"resumes from {exc.checkpoint}", retryable=True, error_type="TrainingSuspended",
                                details={"step": exc.step, "checkpoint": exc.checkpoint}) from exc
        except EmbeddingTrainingError as exc:
            raise PlatformError(str(exc), retryable=False, error_type="TrainingConfigError") from exc
        except EmbeddingTrainingBusy as exc:
            raise PlatformError(str(exc), retryable=True, error_type="TrainingBusy") from exc
        finally:
            self._training_stops.pop(spec.name, None)
        return CustomizationResult(
            customized_model=spec.output_model, adapter_uri=result.model_dir, steps_completed=result.steps_completed,
            epochs_completed=result.epochs_completed, final_loss=result.final_loss,
            details={"train_seconds": result.train_seconds, "val_loss": result.val_loss,
                     "finetuning_type": result.finetuning_type, "num_triplets": result.num_triplets})

    async def suspend(self, name: str) -> None:
        """Worker shutdown: checkpoint now and stop (within one micro-batch); a retry resumes."""
        if (stop := self._training_stops.get(name)) is not None:
            stop.set()

    async def cancel(self, name: str) -> None:
        """Nothing runs remotely; a local training run named ``name`` stops at its next micro-batch."""
        await self.suspend(name)

    def shutdown(self) -> list[str]:
        """Stop the model servers this process started (worker shutdown); returns their names."""
        return self.servers.teardown_all_started_here()

    async def close(self) -> None:
        """Worker shutdown: stop the model servers this process started (they would die with it anyway);
        the next evaluation anywhere revives a deployment from its recorded state."""
        await asyncio.to_thread(self.shutdown)
