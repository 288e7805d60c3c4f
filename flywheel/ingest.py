"""Loading logs into a LogStore: JSON lines files (CLI, demo) and record batches (POST /api/logs).

Every record is validated before it is stored — chat records with :func:`flywheel.records.parse_record`,
retrieval records (a ``retrieval`` object, see :mod:`flywheel.retrieval.records`) with
:func:`~flywheel.retrieval.records.parse_retrieval_record`; the raw
dict is stored as given (with workload_id / client_id filled in when the caller names them). A bad
record is skipped and reported with its position and reason; it never aborts the load.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from flywheel.logstore.base import LogStore
from flywheel.records import RecordError, parse_record
from flywheel.retrieval.records import is_retrieval_record, parse_retrieval_record

MAX_REPORTED_ERRORS = 100


class IngestError(BaseModel):
    line: int | None = None  # 1-based line number (files)
    index: int | None = None  # 0-based position (record batches)
    reason: str
    detail: str = ""


class IngestReport(BaseModel):
    loaded: int = 0
    skipped: int = 0
    errors: list[IngestError] = Field(default_factory=list)  # the first MAX_REPORTED_ERRORS
    reasons: dict[str, int] = Field(default_factory=dict)  # every skip, counted by reason

    def _skip(self, reason: str, detail: str, *, line: int | None = None, index: int | None = None) -> None:
        self.skipped += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(IngestError(line=line, index=index, reason=reason, detail=detail[:300]))


def _prepared(raw: Any, workload_id: str | None, client_id: str | None) -> dict[str, Any]:
    """The dict to store; raises RecordError if it does not validate."""
    if not isinstance(raw, dict):
        raise RecordError("not_an_object", f"got {type(raw).__name__}")
    record = dict(raw)
    if workload_id is not None:
        record["workload_id"] = workload_id
    if client_id is not None:
        record["client_id"] = client_id
    # Validation only; neither parser mutates its input.
    if is_retrieval_record(record):
        parse_retrieval_record(record)
    else:
        parse_record(record)
    return record


def _load(items: Iterable[tuple[int, Any, str | None]], store: LogStore, *, workload_id: str | None,
          client_id: str | None, batch_size: int, position: str) -> IngestReport:
    report = IngestReport()
    batch: list[dict[str, Any]] = []
    for pos, raw, parse_error in items:
        where = {position: pos}
        if parse_error is not None:
            report._skip("bad_json", parse_error, **where)
            continue
        try:
            batch.append(_prepared(raw, workload_id, client_id))
        except RecordError as exc:
            report._skip(exc.reason, exc.detail, **where)
            continue
        if len(batch) >= batch_size:
            report.loaded += store.add(batch)
            batch = []
    if batch:
        report.loaded += store.add(batch)
    return report


def _lines(path_or_lines: str | Path | Iterable[str]) -> Iterator[str]:
    if isinstance(path_or_lines, (str, Path)):
        with open(path_or_lines, encoding="utf-8") as fh:
            yield from fh
    else:
        yield from path_or_lines


def _parsed_lines(lines: Iterable[str]) -> Iterator[tuple[int, Any, str | None]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue  # blank lines (e.g. a trailing newline) are not records
        try:
            yield number, json.loads(line), None
        except json.JSONDecodeError as exc:
            yield number, None, str(exc)


def load_jsonl(path_or_lines: str | Path | Iterable[str], store: LogStore, *, workload_id: str | None = None,
               client_id: str | None = None, batch_size: int = 1000) -> IngestReport:
    """Load a JSON-lines file (or an iterable of lines) into ``store``; errors carry 1-based line numbers."""
    return _load(_parsed_lines(_lines(path_or_lines)), store, workload_id=workload_id, client_id=client_id,
                 batch_size=batch_size, position="line")


def ingest_records(records: Iterable[Any], store: LogStore, *, workload_id: str | None = None,
                   client_id: str | None = None, batch_size: int = 1000) -> IngestReport:
    """Load already-decoded records (the API's batched POST /api/logs); errors carry 0-based indexes."""
    return _load(((i, raw, None) for i, raw in enumerate(records)), store, workload_id=workload_id,
                 client_id=client_id, batch_size=batch_size, position="index")
