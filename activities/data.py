"""Data activities: extract + curate + split + store (prepare_data), ICL dataset (build_icl_dataset).

Rows never cross Temporal: the activities store them through the platform and return DatasetRefs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.common import get_platform, run_with_heartbeat
from flywheel.embeddings import make_embedder
from flywheel.icl import build_icl_rows
from flywheel.logstore import open_logstore
from flywheel.prepare import prepare_datasets
from flywheel.types import DatasetRef
from workflows.models import ACT_BUILD_ICL, ACT_PREPARE_DATA, BuildICLInput, PrepareDataInput, PreparedData


def _extract_and_prepare(inp: PrepareDataInput) -> Any:
    """Stream the log store straight into curation/splitting (one thread: sqlite-safe, bounded memory)."""
    split = inp.data_split_config
    with open_logstore(inp.settings) as store:
        records = store.extract(inp.workload_id, inp.client_id, limit=split.limit)
        return prepare_datasets(records, split, inp.settings.curation,
                                inputs={"workload_id": inp.workload_id, "client_id": inp.client_id})


def _insufficient(exc: BaseException) -> ApplicationError:
    counts = getattr(exc, "counts", None)
    message = str(exc)
    if counts and str(counts) not in message:
        message = f"{message} (counts: {counts})"
    return ApplicationError(message, counts, type="InsufficientData", non_retryable=True)


@activity.defn(name=ACT_PREPARE_DATA)
async def prepare_data(inp: PrepareDataInput) -> PreparedData:
    settings = inp.settings

    async def call(progress: Any) -> PreparedData:
        progress({"phase": "extract_curate_split"})
        try:
            prepared = await asyncio.to_thread(_extract_and_prepare, inp)
        except ValueError as exc:
            if type(exc).__name__ == "InsufficientData":
                raise _insufficient(exc) from exc
            raise ApplicationError(str(exc), type="InvalidInput", non_retryable=True) from exc
        progress({"phase": "store", "counts": {k: len(v) for k, v in prepared.splits.items()}})
        refs = await get_platform(settings).put_datasets(inp.workflow_id, prepared.splits)
        counts = prepared.counts
        if hasattr(counts, "model_dump"):
            counts = counts.model_dump(mode="json")
        return PreparedData(
            num_records=prepared.num_records,
            curation=dict(counts or {}),
            datasets=dict(refs),
            manifest_hash=prepared.manifest_hash,
        )

    return await run_with_heartbeat(call)


@activity.defn(name=ACT_BUILD_ICL)
async def build_icl_dataset(inp: BuildICLInput) -> DatasetRef:
    settings = inp.settings

    async def call(progress: Any) -> DatasetRef:
        platform = get_platform(settings)
        eval_rows = await platform.read_dataset(inp.eval_dataset)
        train_rows = await platform.read_dataset(inp.train_dataset)
        progress({"phase": "select", "eval": len(eval_rows), "train": len(train_rows)})
        embedder = None
        icl = settings.icl_config
        if icl.example_selection.value == "semantic_similarity":
            embedder = make_embedder(icl.similarity_config.embedding_nim_config)
        rows = await asyncio.to_thread(build_icl_rows, eval_rows, train_rows, icl, inp.context_length, embedder)
        refs = await platform.put_datasets(inp.name, {"icl": rows})
        return refs["icl"]

    return await run_with_heartbeat(call)
