"""Evaluate one candidate embedding model on the eval split: embed, search exactly, score.

The candidate embeds the corpus snapshot and the eval queries; :class:`ExactIndex` ranks the
corpus for every query; :mod:`flywheel.retrieval.metrics` scores the rankings against the rows'
positives and against the production retriever's own ranking (agreement). The production
retriever is also scored as a reference from the rankings it logged (:func:`production_reference`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from flywheel.retrieval.candidates import RetrievalEmbedder
from flywheel.retrieval.corpus import Corpus
from flywheel.retrieval.index import ExactIndex
from flywheel.retrieval.metrics import DEFAULT_KS, per_query_table, summarize

INTERVAL_METHOD = "percentile bootstrap over queries, 2000 resamples, 95%"
# Where an embedding_job's document keeps the production retriever's own scores (``curation``): the gate's reference.
PRODUCTION_SCORES = "production_scores"


class RetrievalEvalResult(BaseModel):
    model_name: str
    num_queries: int
    corpus_size: int
    scores: dict[str, float]
    confidence_intervals: dict[str, list[float]] = Field(default_factory=dict)
    interval_method: str = INTERVAL_METHOD
    per_query: dict[str, list[float]] = Field(default_factory=dict)
    record_ids: list[str] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    notes: dict[str, str] = Field(default_factory=dict)
    nmp_uri: str | None = None  # the platform job that computed the scores, when one did


def production_rankings(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [[p["id"] for p in row["results"]] for row in rows]


def score_rankings(model_name: str, rows: Sequence[dict[str, Any]], rankings: Sequence[Sequence[str]], *,
                   corpus_size: int, ks: Sequence[int] = DEFAULT_KS, agreement: bool = True,
                   seed: int = 0) -> RetrievalEvalResult:
    table = per_query_table(rankings, [row["positive_ids"] for row in rows], ks,
                            production_rankings(rows) if agreement else None)
    means, intervals = summarize(table, seed=seed)
    return RetrievalEvalResult(model_name=model_name, num_queries=len(rows), corpus_size=corpus_size, scores=means,
                               confidence_intervals=intervals, per_query=table,
                               record_ids=[str(row.get("record_id", i)) for i, row in enumerate(rows)])


def evaluate_embedder(embedder: RetrievalEmbedder, rows: Sequence[dict[str, Any]], corpus: Corpus, *,
                      ks: Sequence[int] = DEFAULT_KS, corpus_vectors: np.ndarray | None = None,
                      seed: int = 0) -> RetrievalEvalResult:
    """Recall/nDCG/MRR/agreement of ``embedder`` on ``rows`` over ``corpus``.

    ``corpus_vectors`` (the embedder's own passage vectors) skips re-embedding the corpus.
    """
    if not rows:
        raise ValueError("no eval queries")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if corpus_vectors is None:
        corpus_vectors = embedder.embed_passages(corpus.texts)
        timings["embed_corpus_s"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    query_vectors = embedder.embed_queries([row["query"] for row in rows])
    timings["embed_queries_s"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    indices, _ = ExactIndex(corpus_vectors).search(query_vectors, max(ks))
    rankings = [[corpus.ids[j] for j in row] for row in indices]
    timings["search_s"] = round(time.perf_counter() - started, 4)
    result = score_rankings(embedder.name, rows, rankings, corpus_size=len(corpus), ks=ks, seed=seed)
    timings["queries_per_s"] = round(len(rows) / max(timings["embed_queries_s"] + timings["search_s"], 1e-9), 1)
    result.timings = timings
    return result


def production_reference(rows: Sequence[dict[str, Any]], *, corpus_size: int, ks: Sequence[int] = DEFAULT_KS,
                         seed: int = 0) -> RetrievalEvalResult:
    """The production retriever scored on its own logged rankings (agreement is 1 by definition, so
    it is left out). Its recall is optimistic: the positives were chosen from what it returned."""
    result = score_rankings("production", rows, production_rankings(rows), corpus_size=corpus_size, ks=ks,
                            agreement=False, seed=seed)
    result.notes["recall"] = ("positives come from the passages the production retriever returned, so its recall "
                              "at its own top_k is 1 by construction")
    return result
