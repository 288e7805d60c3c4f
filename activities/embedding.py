"""Activities of an ``embedding_job``: prepare retrieval datasets, evaluate a candidate embedding model,
mine training triplets, fine-tune. Thin: each runs one domain or Platform call while heartbeating.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.common import get_platform, previous_details, run_with_heartbeat
from flywheel.logstore import open_logstore
from flywheel.retrieval.corpus import read_passages
from flywheel.retrieval.evaluate import PRODUCTION_SCORES, RetrievalEvalResult, production_reference
from flywheel.retrieval.prepare import PreparedRetrieval, prepare_retrieval_datasets
from flywheel.retrieval.types import CORPUS_SPLIT, MinedRefs
from flywheel.splits import InsufficientData
from flywheel.types import CustomizationResult
from workflows.embedding_models import (
    ACT_CUSTOMIZE_EMBEDDING,
    ACT_EVALUATE_RETRIEVAL,
    ACT_MINE_TRIPLETS,
    ACT_PREPARE_RETRIEVAL_DATA,
    EmbeddingCustomizeInput,
    MineInput,
    RetrievalEvaluateInput,
)
from workflows.models import PrepareDataInput, PreparedData


def _prepare(inp: PrepareDataInput) -> PreparedRetrieval:
    settings, split = inp.settings, inp.data_split_config
    corpus_path = settings.embedding_config.corpus_path
    extra = read_passages(corpus_path) if corpus_path else ()
    with open_logstore(settings) as store:
        records = store.extract(inp.workload_id, inp.client_id, limit=split.limit)
        return prepare_retrieval_datasets(records, split, settings.curation, extra_passages=extra,
                                          inputs={"workload_id": inp.workload_id, "client_id": inp.client_id,
                                                  "corpus_path": corpus_path})


@activity.defn(name=ACT_PREPARE_RETRIEVAL_DATA)
async def prepare_retrieval_data(inp: PrepareDataInput) -> PreparedData:
    async def call(progress: Any) -> PreparedData:
        progress({"phase": "extract_curate_split"})
        try:
            prepared = await asyncio.to_thread(_prepare, inp)
        except InsufficientData as exc:
            raise ApplicationError(str(exc), exc.counts, type="InsufficientData", non_retryable=True) from exc
        except ValueError as exc:  # a bad corpus export names its line
            raise ApplicationError(str(exc), type="InvalidInput", non_retryable=True) from exc
        progress({"phase": "store", "corpus": len(prepared.corpus)})
        refs = await get_platform(inp.settings).put_retrieval_datasets(
            inp.workflow_id, {**prepared.splits, CORPUS_SPLIT: prepared.corpus})
        # The gate's reference: the production retriever scored on the rankings it logged (flywheel.aggregation).
        production = production_reference(prepared.splits["eval"], corpus_size=len(prepared.corpus),
                                          ks=inp.settings.embedding_config.ks)
        curation = {**prepared.counts, "corpus_sha256": prepared.corpus_sha256,
                    PRODUCTION_SCORES: {k: round(v, 6) for k, v in production.scores.items()}}
        return PreparedData(num_records=prepared.num_records, curation=curation, datasets=dict(refs),
                            manifest_hash=prepared.manifest_hash)

    return await run_with_heartbeat(call)


@activity.defn(name=ACT_EVALUATE_RETRIEVAL)
async def evaluate_retrieval(inp: RetrievalEvaluateInput) -> RetrievalEvalResult:
    async def call(progress: Any) -> RetrievalEvalResult:
        result = await get_platform(inp.settings).evaluate_retrieval(inp.spec, progress=progress)
        return result.model_copy(update={"per_query": {}})  # scores and intervals cross Temporal, not rows

    return await run_with_heartbeat(call)


@activity.defn(name=ACT_MINE_TRIPLETS)
async def mine_triplets(inp: MineInput) -> MinedRefs:
    async def call(progress: Any) -> MinedRefs:
        return await get_platform(inp.settings).mine_triplets(inp.spec, progress=progress)

    return await run_with_heartbeat(call)


@activity.defn(name=ACT_CUSTOMIZE_EMBEDDING)
async def customize_embedding(inp: EmbeddingCustomizeInput) -> CustomizationResult:
    platform = get_platform(inp.settings)
    initial = {**previous_details(), "job": inp.spec.name, "attempt": activity.info().attempt}

    async def call(progress: Any) -> CustomizationResult:
        watcher = asyncio.create_task(_suspend_on_worker_shutdown(platform, inp.spec.name))
        try:
            return await platform.customize_embedding(inp.spec, progress=progress)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def on_cancel() -> None:
        await platform.cancel(inp.spec.name)

    return await run_with_heartbeat(call, initial=initial, on_cancel=on_cancel)


async def _suspend_on_worker_shutdown(platform: Any, name: str) -> None:
    await activity.wait_for_worker_shutdown()
    await platform.suspend(name)


