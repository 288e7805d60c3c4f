"""The local platform's retrieval operations: evaluate a candidate, mine triplets, fine-tune.

Synchronous (the platform runs them in a thread). A customized model is evaluated through the local
embeddings server (:func:`~flywheel.platforms.local.embedding_job.serve_embeddings`), started for
the evaluation and stopped after it, so the served model is what is scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flywheel.platforms.local.embedding_job import serve_embeddings
from flywheel.platforms.local.embedding_trainer import EmbeddingTrainingResult, train_embedding_model
from flywheel.retrieval.candidates import (
    EndpointEmbedder,
    RetrievalEmbedder,
    SentenceTransformerEmbedder,
    bundled_model_path,
)
from flywheel.retrieval.config import EmbeddingCandidateConfig, RetrievalConfig
from flywheel.retrieval.corpus import Corpus
from flywheel.retrieval.evaluate import RetrievalEvalResult, evaluate_embedder
from flywheel.retrieval.prepare import MinedDatasets, mine_datasets

Progress = Callable[[dict[str, Any]], None]


def base_embedder(candidate: EmbeddingCandidateConfig) -> RetrievalEmbedder:
    if candidate.url:
        return EndpointEmbedder(candidate.url, candidate.model_name, candidate.api_key_env,
                                asymmetric=candidate.asymmetric)
    return SentenceTransformerEmbedder(candidate.model_dir, name=candidate.model_name)


def base_model_dir(candidate: EmbeddingCandidateConfig) -> Path:
    return Path(candidate.model_dir) if candidate.model_dir else bundled_model_path()


def evaluate_candidate(candidate: EmbeddingCandidateConfig, eval_rows: Sequence[dict[str, Any]],
                       corpus_rows: Sequence[dict[str, str]], config: RetrievalConfig, *,
                       customized_model_dir: str | None = None, served_name: str | None = None,
                       work_dir: Path | None = None, progress: Progress | None = None) -> RetrievalEvalResult:
    """Score the base candidate, or (``customized_model_dir``) its fine-tuned model served over HTTP."""
    emit = progress or (lambda _info: None)
    corpus = Corpus.from_rows(corpus_rows)
    emit({"phase": "embedding", "queries": len(eval_rows), "corpus": len(corpus)})
    if customized_model_dir is None:
        return evaluate_embedder(base_embedder(candidate), eval_rows, corpus, ks=config.ks)
    alias = served_name or f"customized-{candidate.model_name}"
    log_path = (work_dir / "embedding-server.log") if work_dir else None
    if work_dir:
        work_dir.mkdir(parents=True, exist_ok=True)
    with serve_embeddings(customized_model_dir, alias, log_path=log_path) as url:
        emit({"phase": "served", "url": url})
        result = evaluate_embedder(EndpointEmbedder(url, alias), eval_rows, corpus, ks=config.ks)
    result.model_name = alias
    return result


def mine(candidate: EmbeddingCandidateConfig, train_rows: Sequence[dict[str, Any]],
         val_rows: Sequence[dict[str, Any]], corpus_rows: Sequence[dict[str, str]],
         config: RetrievalConfig) -> MinedDatasets:
    return mine_datasets(base_embedder(candidate), Corpus.from_rows(corpus_rows), train_rows, val_rows, config)


def customize(candidate: EmbeddingCandidateConfig, triplets: Sequence[dict[str, Any]],
              val_triplets: Sequence[dict[str, Any]], config: RetrievalConfig, work_dir: Path, *,
              progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
              device: str | None = None) -> EmbeddingTrainingResult:
    return train_embedding_model(triplets, base_model=base_model_dir(candidate), work_dir=work_dir,
                                 config=config.training, val_triplets=val_triplets, progress=progress,
                                 should_stop=should_stop, device=device)
