"""Retrieval log records: one query the production retriever answered, and what the pipeline relied on.

A record is ``{timestamp, workload_id, client_id, retrieval}`` where ``retrieval`` is::

    {"query": "How long do I have to return my earbuds? I live in Toronto.",
     "retriever": "nvidia/llama-3.2-nv-embedqa-1b-v2",        # optional, informative
     "results": [{"id": "kb-17", "text": "...", "score": 0.91}, ...],   # the retriever's ranking, best first
     "relevant_ids": ["kb-17"],    # an explicit relevance label (a reviewer, a thumbs-up), or
     "cited_ids": ["kb-17"]}       # the passages the answering model cited

Which passages count as relevant (the *positives*): ``relevant_ids`` when present (an explicit label
wins), otherwise ``cited_ids``. Every positive must be one of the ``results`` (its text comes from
there). :func:`normalize_retrieval_record` returns the flat row the datasets use, or raises
:class:`~flywheel.records.RecordError` with a countable reason.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flywheel.records import RecordError, normalize_query

LABEL_EXPLICIT = "explicit"
LABEL_CITED = "cited"


class Passage(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1)
    text: str
    score: float | None = None

    @field_validator("score", mode="before")
    @classmethod
    def _numeric_score(cls, value: Any) -> Any:
        if isinstance(value, bool) or (value is not None and not isinstance(value, (int, float))):
            raise ValueError("score must be a number")  # "0.9" strings are not silently coerced
        return value


class Retrieval(BaseModel):
    model_config = ConfigDict(extra="allow")
    query: str
    retriever: str | None = None
    results: list[Passage]
    relevant_ids: list[str] | None = None
    cited_ids: list[str] | None = None


class RetrievalRecord(BaseModel):
    model_config = ConfigDict(extra="allow")
    timestamp: float
    workload_id: str
    client_id: str
    retrieval: Retrieval


def is_retrieval_record(raw: Any) -> bool:
    """True for the retrieval shape (a ``retrieval`` object instead of ``request``/``response``)."""
    return isinstance(raw, dict) and "retrieval" in raw and "request" not in raw


def parse_retrieval_record(raw: Any) -> RetrievalRecord:
    """Validate one raw retrieval record. Raises RecordError with a countable reason."""
    if not isinstance(raw, dict):
        raise RecordError("not_an_object", f"got {type(raw).__name__}")
    for name in ("timestamp", "workload_id", "client_id", "retrieval"):
        if raw.get(name) is None:
            raise RecordError("missing_field", name)
    try:
        record = RetrievalRecord.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise RecordError("invalid_format", f"{loc}: {first['msg']}") from exc
    retrieval = record.retrieval
    if not retrieval.query.strip():
        raise RecordError("empty_query")
    if not retrieval.results:
        raise RecordError("no_results")
    ids = [p.id for p in retrieval.results]
    if len(set(ids)) != len(ids):
        raise RecordError("duplicate_result_ids", ", ".join(sorted({i for i in ids if ids.count(i) > 1}))[:200])
    label = retrieval.relevant_ids if retrieval.relevant_ids else retrieval.cited_ids
    if not label:
        raise RecordError("no_relevance_signal", "neither relevant_ids nor cited_ids names a passage")
    unknown = sorted(set(label) - set(ids))
    if unknown:
        raise RecordError("positive_not_in_results", ", ".join(unknown)[:200])
    return record


def normalize_retrieval_record(raw: Any) -> dict[str, Any]:
    """The dataset row of a valid record::

        {timestamp, workload_id, client_id, query, retriever?, label_source: "explicit" | "cited",
         positive_ids: [...], results: [{id, text, score?}, ...]}

    Raises RecordError (see :func:`parse_retrieval_record`).
    """
    record = parse_retrieval_record(raw)
    retrieval = record.retrieval
    explicit = bool(retrieval.relevant_ids)
    positives = list(dict.fromkeys(retrieval.relevant_ids if explicit else retrieval.cited_ids or []))
    row: dict[str, Any] = {
        "timestamp": record.timestamp,
        "workload_id": record.workload_id,
        "client_id": record.client_id,
        "query": retrieval.query,
        "label_source": LABEL_EXPLICIT if explicit else LABEL_CITED,
        "positive_ids": positives,
        "results": [p.model_dump(exclude_none=True) for p in retrieval.results],
    }
    if retrieval.retriever:
        row["retriever"] = retrieval.retriever
    return row


def query_key(row: dict[str, Any]) -> str:
    """Case- and whitespace-insensitive query (dedup and leakage key)."""
    return normalize_query(row["query"])
