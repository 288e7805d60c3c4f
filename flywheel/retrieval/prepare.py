"""Data preparation of an ``embedding_job``: retrieval logs -> curated rows -> corpus snapshot, splits,
then (with the base model) mined training triplets.

The manifest hash covers the run's inputs, the split config, the split membership and the corpus
snapshot's sha256, so two runs with the same hash trained and evaluated on the same data.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from flywheel.config import CurationConfig, DataSplitConfig
from flywheel.retrieval.candidates import RetrievalEmbedder
from flywheel.retrieval.config import RetrievalConfig
from flywheel.retrieval.corpus import Corpus, build_corpus
from flywheel.retrieval.curation import iter_curated, new_counts
from flywheel.retrieval.mining import mine_triplets
from flywheel.retrieval.splits import split_retrieval_rows
from flywheel.splits import manifest_hash


class PreparedRetrieval(BaseModel):
    splits: dict[str, list[dict[str, Any]]]  # eval / train / val rows
    corpus: list[dict[str, str]]  # the snapshot, {id, text} sorted by id
    corpus_sha256: str
    counts: dict[str, Any]
    num_records: int
    manifest_hash: str


def prepare_retrieval_datasets(records: Iterable[dict[str, Any]], split_config: DataSplitConfig,
                               curation_config: CurationConfig, *, inputs: dict[str, Any],
                               extra_passages: Iterable[dict[str, str]] = ()) -> PreparedRetrieval:
    """Curate, snapshot the corpus and split. Raises :class:`~flywheel.splits.InsufficientData`."""
    counts = new_counts()
    rows = list(iter_curated(islice(records, split_config.limit), curation_config, counts))
    corpus = build_corpus(rows, extra_passages, redact_pii=curation_config.redact_pii)
    result = split_retrieval_rows(rows, split_config, curation_counts=counts)
    config = {"data_split_config": split_config.model_dump(mode="json"),
              "curation": curation_config.model_dump(mode="json"), "corpus_sha256": corpus.sha256}
    digest = manifest_hash(inputs, config, result.record_ids())
    all_counts = {**counts, **result.counts, "corpus": corpus.counts}
    return PreparedRetrieval(splits=result.splits, corpus=corpus.rows(), corpus_sha256=corpus.sha256,
                             counts=all_counts, num_records=counts["total_in"], manifest_hash=digest)


class MinedDatasets(BaseModel):
    train: list[dict[str, Any]]
    val: list[dict[str, Any]]
    counts: dict[str, Any] = Field(default_factory=dict)
    mining_seconds: float = 0.0


def mine_datasets(base: RetrievalEmbedder, corpus: Corpus, train_rows: Sequence[dict[str, Any]],
                  val_rows: Sequence[dict[str, Any]], config: RetrievalConfig, *,
                  corpus_vectors: np.ndarray | None = None) -> MinedDatasets:
    """Triplets for the train and val splits, negatives mined with the ``base`` model over ``corpus``.

    ``corpus_vectors`` (the base model's passage vectors, e.g. from the base evaluation) skips
    re-embedding the corpus; ``mining_seconds`` then covers the queries and the search only.
    """
    started = time.perf_counter()
    if corpus_vectors is None:
        corpus_vectors = base.embed_passages(corpus.texts)
    out: dict[str, Any] = {}
    counts: dict[str, Any] = {}
    for name, rows in (("train", train_rows), ("val", val_rows)):
        if not rows:
            out[name], counts[name] = [], {"rows": 0, "triplets": 0}
            continue
        query_vectors = base.embed_queries([row["query"] for row in rows])
        mined = mine_triplets(rows, corpus, corpus_vectors, query_vectors, num_negatives=config.num_negatives,
                              search_depth=config.search_depth)
        out[name], counts[name] = mined.triplets, mined.counts
    return MinedDatasets(train=out["train"], val=out["val"], counts=counts,
                         mining_seconds=round(time.perf_counter() - started, 2))
