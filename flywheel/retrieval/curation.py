"""Curation of retrieval logs: validate, redact, de-duplicate, counting every rule.

Rules, in order, each counted in the counts dict (:func:`new_counts`):

- ``invalid_format``: the record does not parse; ``invalid_by_reason`` breaks it down by
  :class:`~flywheel.records.RecordError` reason (``empty_query``, ``no_results``,
  ``no_relevance_signal``, ``positive_not_in_results``, ...);
- ``pii_redacted``: records changed by redaction (e-mail addresses and phone numbers in the query
  and in passage texts, with :func:`flywheel.curation.redact_text`) when ``config.redact_pii``;
- ``duplicate``: same normalised query relying on the same passages as an earlier record (first kept).

Kept rows are counted by where their relevance came from (``label_explicit`` / ``label_cited``)
and get a stable ``record_id``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

from flywheel.config import CurationConfig
from flywheel.curation import canonical_bytes, redact_text
from flywheel.records import RecordError
from flywheel.retrieval.records import LABEL_EXPLICIT, normalize_retrieval_record, query_key


def new_counts() -> dict[str, Any]:
    return {"total_in": 0, "invalid_format": 0, "duplicate": 0, "pii_redacted": 0, "label_explicit": 0,
            "label_cited": 0, "kept": 0, "invalid_by_reason": {}}


def redact_row(row: dict[str, Any]) -> bool:
    """Redact the query and the passage texts of a normalised row in place. True if anything changed."""
    changed = False
    query = redact_text(row["query"])
    if query != row["query"]:
        row["query"], changed = query, True
    for passage in row["results"]:
        text = redact_text(passage["text"])
        if text != passage["text"]:
            passage["text"], changed = text, True
    return changed


def dedup_key(row: dict[str, Any]) -> bytes:
    return hashlib.blake2b(canonical_bytes([query_key(row), sorted(row["positive_ids"])]), digest_size=8).digest()


def record_id(row: dict[str, Any]) -> str:
    """First 16 hex digits of the sha256 of the row's canonical JSON (without ``record_id``)."""
    return hashlib.sha256(canonical_bytes({k: v for k, v in row.items() if k != "record_id"})).hexdigest()[:16]


def iter_curated(records: Iterable[Any], config: CurationConfig, counts: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Streaming curation: yields kept rows, updating ``counts`` in place."""
    seen: set[bytes] = set()
    by_reason: dict[str, int] = counts["invalid_by_reason"]
    for raw in records:
        counts["total_in"] += 1
        try:
            row = normalize_retrieval_record(raw)
        except RecordError as exc:
            by_reason[exc.reason] = by_reason.get(exc.reason, 0) + 1
            counts["invalid_format"] += 1
            continue
        if config.redact_pii and redact_row(row):
            counts["pii_redacted"] += 1
        if config.dedup:
            key = dedup_key(row)
            if key in seen:
                counts["duplicate"] += 1
                continue
            seen.add(key)
        counts["label_explicit" if row["label_source"] == LABEL_EXPLICIT else "label_cited"] += 1
        row["record_id"] = record_id(row)
        counts["kept"] += 1
        yield row


def curate(records: Iterable[Any], config: CurationConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Curated rows and the counts."""
    counts = new_counts()
    rows = list(iter_curated(records, config, counts))
    return rows, counts
