"""Data preparation for one run: extracted records -> curated rows -> eval / train / val + manifest hash.

The Temporal data activity calls :func:`prepare_datasets` on ``logstore.extract(..., limit=split_config.limit)``.
Every field of the job's ``data_split_config`` is honoured (seed, limit, parse_function_arguments,
sizes, stratify), including per-job overrides that the reference ignored for seed and limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import Any

from pydantic import BaseModel, Field

from flywheel.config import CurationConfig, DataSplitConfig
from flywheel.curation import iter_curated, new_counts
from flywheel.splits import manifest_hash, split_records


class PreparedSplits(BaseModel):
    splits: dict[str, list[dict[str, Any]]]  # "eval", "train", "val"
    counts: dict[str, Any]  # curation counts + split counts
    num_records: int  # records extracted (before curation)
    manifest_hash: str
    strata: dict[str, dict[str, int]] = Field(default_factory=dict)


def prepare_datasets(records: Iterable[dict[str, Any]], split_config: DataSplitConfig,
                     curation_config: CurationConfig, *, inputs: dict[str, Any]) -> PreparedSplits:
    """Curate and split ``records``. Raises :class:`~flywheel.splits.InsufficientData` when too few survive.

    ``inputs`` identifies the data (workload_id, client_id, window, ...) for the manifest hash.
    """
    counts = new_counts()
    limited = islice(records, split_config.limit)  # in case the caller did not apply the limit
    rows = list(iter_curated(limited, curation_config, counts,
                             parse_function_arguments=split_config.parse_function_arguments))
    result = split_records(rows, split_config, curation_counts=counts)
    config = {"data_split_config": split_config.model_dump(mode="json"),
              "curation": curation_config.model_dump(mode="json")}
    digest = manifest_hash(inputs, config, result.record_ids())
    return PreparedSplits(splits=result.splits, counts={**counts, **result.counts}, num_records=counts["total_in"],
                          manifest_hash=digest, strata=result.strata)
