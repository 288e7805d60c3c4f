"""Loading logs into a LogStore: record batches (POST /api/logs) and JSON lines files (CLI, demo).

Nothing lost, nothing duplicated:

- every record is checked BEFORE anything is written: it must validate (chat records with
  :func:`flywheel.records.parse_record`, retrieval records — a ``retrieval`` object, see
  :mod:`flywheel.retrieval.records` — with :func:`~flywheel.retrieval.records.parse_retrieval_record`) and be
  storable (JSON without NaN/Infinity, valid UTF-8,
  nested at most ``MAX_DEPTH`` deep); a record that is not is reported with its position and reason;
- the records of one batch are written in one transaction (``LogStore.add_unique``): all or none;
- each record's content hash (SHA-256 of its canonical JSON) is stored with it, so sending the same
  records again stores nothing and reports them as duplicates. A file is written in batches of
  ``batch_size``; a load that stopped half-way is completed by loading the file again.

Identical records inside ONE request or file are kept (the n-th copy is keyed ``<hash>#n``): real
traffic has them (a client retry logged twice), and deciding what is a duplicate for training is
curation's job, which counts them. What ingest guarantees is that sending the same request or file
again is a no-op.

The raw dict is stored as given (with workload_id / client_id filled in when the caller names them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from flywheel.ids import InvalidId, check_id
from flywheel.logstore.base import LogStore
from flywheel.records import RecordError, parse_record
from flywheel.retrieval.records import is_retrieval_record, parse_retrieval_record

MAX_REPORTED_ERRORS = 100  # files: the first ones are listed, every one is counted in ``reasons``
MAX_DEPTH = 100  # real records nest ~10 deep (tool schemas); deeper is hostile and breaks JSON readers


class IngestError(BaseModel):
    line: int | None = None  # 1-based line number (files)
    index: int | None = None  # 0-based position (record batches)
    reason: str
    detail: str = ""


class IngestReport(BaseModel):
    loaded: int = 0  # newly stored
    duplicates: int = 0  # already stored (or repeated within the request): not stored again
    skipped: int = 0  # rejected; each one is in ``errors`` (batches) and counted in ``reasons``
    errors: list[IngestError] = Field(default_factory=list)
    duplicate_positions: list[int] = Field(default_factory=list)  # index (batches) or line (files)
    reasons: dict[str, int] = Field(default_factory=dict)  # every rejection, counted by reason

    def _skip(self, reason: str, detail: str, *, max_errors: int | None, line: int | None = None,
              index: int | None = None) -> None:
        self.skipped += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if max_errors is None or len(self.errors) < max_errors:
            self.errors.append(IngestError(line=line, index=index, reason=reason, detail=detail[:300]))


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Iterative (a recursive walk is what deep nesting attacks)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > limit:
                return True
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def content_hash(record: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, compact, UTF-8). Raises RecordError if not storable."""
    try:
        text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates ("\ud800"): not UTF-8, no store takes them
        raise RecordError("not_storable", f"invalid unicode (lone surrogate) at character {exc.start}") from exc
    except ValueError as exc:  # NaN / Infinity: not JSON
        raise RecordError("not_storable", str(exc)) from exc
    except TypeError as exc:  # a value JSON has no form for (only reachable from Python callers)
        raise RecordError("not_storable", str(exc)) from exc
    return hashlib.sha256(data).hexdigest()


def prepare(raw: Any, workload_id: str | None, client_id: str | None) -> tuple[str, dict[str, Any]]:
    """(content hash, dict to store) for a raw record; raises RecordError if it cannot be stored."""
    if not isinstance(raw, dict):
        raise RecordError("not_an_object", f"got {type(raw).__name__}")
    if _depth_exceeds(raw, MAX_DEPTH):
        raise RecordError("too_deep", f"nested more than {MAX_DEPTH} levels")
    record = dict(raw)
    if workload_id is not None:
        record["workload_id"] = workload_id
    if client_id is not None:
        record["client_id"] = client_id
    for kind in ("workload_id", "client_id"):  # they become dataset and workflow names: same shape as the API's
        if isinstance(record.get(kind), str):
            try:
                check_id(kind, record[kind])
            except InvalidId as exc:
                raise RecordError("invalid_id", str(exc)) from exc
    digest = content_hash(record)  # before validation: parse_record assumes valid text
    try:
        # Validation only; neither parser mutates its input.
        if is_retrieval_record(record):
            parse_retrieval_record(record)
        else:
            parse_record(record)
    except RecordError:
        raise
    except (ValueError, TypeError, RecursionError) as exc:  # anything else the validator trips on
        raise RecordError("invalid_format", f"{type(exc).__name__}: {exc}") from exc
    return digest, record


def _store(store: LogStore, pending: list[tuple[int, str, dict[str, Any]]], report: IngestReport,
           max_errors: int | None) -> None:
    if not pending:
        return
    stored = store.add_unique([(digest, record) for _, digest, record in pending])
    for (pos, _, _), was_stored in zip(pending, stored):
        if was_stored:
            report.loaded += 1
        else:
            report.duplicates += 1
            if max_errors is None or len(report.duplicate_positions) < max_errors:
                report.duplicate_positions.append(pos)


def _load(items: Iterable[tuple[int, Any, str | None]], store: LogStore, *, workload_id: str | None,
          client_id: str | None, batch_size: int | None, position: str, max_errors: int | None) -> IngestReport:
    report = IngestReport()
    pending: list[tuple[int, str, dict[str, Any]]] = []
    copies: dict[str, int] = {}  # content hash -> copies seen so far in this request / file
    for pos, raw, parse_error in items:
        where = {position: pos}
        if parse_error is not None:
            report._skip("bad_json", parse_error, max_errors=max_errors, **where)
            continue
        try:
            digest, record = prepare(raw, workload_id, client_id)
        except RecordError as exc:
            report._skip(exc.reason, exc.detail, max_errors=max_errors, **where)
            continue
        seen = copies.get(digest, 0)
        copies[digest] = seen + 1
        pending.append((pos, digest if seen == 0 else f"{digest}#{seen}", record))
        if batch_size is not None and len(pending) >= batch_size:
            _store(store, pending, report, max_errors)
            pending = []
    _store(store, pending, report, max_errors)
    return report


def _lines(path_or_lines: str | Path | Iterable[str]) -> Iterator[str]:
    if isinstance(path_or_lines, (str, Path)):
        with open(path_or_lines, encoding="utf-8", errors="surrogateescape") as fh:
            yield from fh
    else:
        yield from path_or_lines


def _parsed_lines(lines: Iterable[str]) -> Iterator[tuple[int, Any, str | None]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue  # blank lines (e.g. a trailing newline) are not records
        try:
            yield number, json.loads(line), None
        except (json.JSONDecodeError, RecursionError) as exc:
            yield number, None, f"{type(exc).__name__}: {exc}"


def load_jsonl(path_or_lines: str | Path | Iterable[str], store: LogStore, *, workload_id: str | None = None,
               client_id: str | None = None, batch_size: int = 1000) -> IngestReport:
    """Load a JSON-lines file (or an iterable of lines); one transaction per ``batch_size`` records.

    Errors carry 1-based line numbers (the first MAX_REPORTED_ERRORS listed, all counted).
    """
    return _load(_parsed_lines(_lines(path_or_lines)), store, workload_id=workload_id, client_id=client_id,
                 batch_size=batch_size, position="line", max_errors=MAX_REPORTED_ERRORS)


def ingest_records(records: Iterable[Any], store: LogStore, *, workload_id: str | None = None,
                   client_id: str | None = None) -> IngestReport:
    """Load already-decoded records (POST /api/logs) in ONE transaction; EVERY rejection is listed with
    its 0-based index and reason, every duplicate's index in ``duplicate_positions``."""
    return _load(((i, raw, None) for i, raw in enumerate(records)), store, workload_id=workload_id,
                 client_id=client_id, batch_size=None, position="index", max_errors=None)
