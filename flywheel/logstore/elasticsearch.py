"""Elasticsearch / OpenSearch log store: the blueprint's index of production logs.

Documents keep the blueprint's shape (``timestamp, workload_id, client_id, request, response``) plus
``flywheel_ingest_seq``, a per-write sequence that orders records sharing a timestamp latest-first, as
the SQLite store's row id does (it is removed again when records are read back).

Extraction streams: one point in time (a consistent snapshot) and ``search_after`` pages of
``page_size`` hits sorted ``timestamp desc, flywheel_ingest_seq desc, _shard_doc desc``; only one page
is in memory at a time, and the last sort key is unique so no record is skipped or repeated.
Filters match the SQLite store: one workload and client, ``start <= timestamp < end``, records without
a usable timestamp never extracted but counted.

:class:`AsyncElasticsearchLogStore` is the async store; :class:`ElasticsearchLogStore` is the
synchronous :class:`~flywheel.logstore.base.LogStore` over it (a private loop thread, as the MongoDB
job store does), which the activities and the API use.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from elasticsearch import ApiError, TransportError

from flywheel.config import ElasticsearchConfig
from flywheel.logstore.es_wire import SEQ_FIELD, Wire, build_client, build_wire, index_template
from flywheel.loop_thread import LoopThread


def template_name(index: str) -> str:
    return f"flywheel-logs-{index}"


class LogStoreError(RuntimeError):
    """The log store could not be reached or refused a request."""


@dataclass
class IngestError:
    position: int  # 0-based position of the record in the input
    status: int
    type: str
    reason: str


@dataclass
class IngestReport:
    stored: int = 0
    errors: list[IngestError] = field(default_factory=list)


class LogIngestError(LogStoreError):
    """Some records were refused; ``report`` says which (the others are stored)."""

    def __init__(self, report: IngestReport) -> None:
        self.report = report
        first = "; ".join(f"#{e.position}: {e.type}: {e.reason}" for e in report.errors[:3])
        super().__init__(f"{len(report.errors)} record(s) refused, {report.stored} stored ({first})")


class _Sequence:
    """Strictly increasing nanosecond stamps (a later write always gets a larger one in this process)."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> int:
        """The first of ``n`` consecutive values."""
        with self._lock:
            first = max(time.time_ns(), self._last + 1)
            self._last = first + n - 1
            return first


_SEQUENCE = _Sequence()


def _epoch_millis_bound(seconds: float) -> int:
    # Stored dates have millisecond resolution; for both ``gte`` and ``lt`` the exact bound is the ceiling.
    return math.ceil(float(seconds) * 1000)


class AsyncElasticsearchLogStore:
    def __init__(self, config: ElasticsearchConfig, *, environ: Any = None) -> None:
        self.config = config
        self.index = config.index
        self.client = build_client(config, environ)
        self.wire: Wire = build_wire(config, self.client, environ)
        self._fields = {"workload_id": "workload_id", "client_id": "client_id"}

    async def prepare(self) -> None:
        """Install the index template (when configured) and adapt to an existing index's mapping."""
        try:
            if self.config.create_template:
                await self.wire.put_index_template(template_name(self.index), index_template(self.index))
            mappings = await self.wire.mapping(self.index)
        except (ApiError, TransportError) as exc:
            raise LogStoreError(f"log store {self.config.hosts} index {self.index!r}: {exc}") from exc
        for mapping in mappings.values():
            properties = mapping.get("mappings", {}).get("properties", {})
            for name in self._fields:
                spec = properties.get(name, {})
                # An index created by dynamic mapping has text + a .keyword sub-field: filter on the keyword.
                if spec.get("type") == "text" and spec.get("fields", {}).get("keyword", {}).get("type") == "keyword":
                    self._fields[name] = f"{name}.keyword"

    async def ingest(self, records: Iterable[dict[str, Any]]) -> IngestReport:
        """Bulk-index ``records`` in chunks; every refused record is reported, the others stored.

        The last chunk waits for a refresh, so records are searchable when this returns (as in SQLite).
        """
        report = IngestReport()
        position = 0
        it = iter(records)
        chunk = list(islice(it, self.config.bulk_chunk))
        while chunk:
            following = list(islice(it, self.config.bulk_chunk))
            seq = _SEQUENCE.take(len(chunk))
            operations: list[dict[str, Any]] = []
            for i, record in enumerate(chunk):
                operations.append({"index": {"_index": self.index}})
                operations.append({**record, SEQ_FIELD: seq + i})
            try:
                answer = await self.wire.bulk(operations, refresh=not following)
            except (ApiError, TransportError) as exc:
                raise LogStoreError(f"bulk ingest into {self.index!r} failed after {report.stored} "
                                    f"stored: {exc}") from exc
            for i, item in enumerate(answer.get("items", [])):
                result = next(iter(item.values()))
                if 200 <= int(result.get("status", 500)) < 300:
                    report.stored += 1
                else:
                    error = result.get("error") or {}
                    report.errors.append(IngestError(
                        position=position + i, status=int(result.get("status", 0)),
                        type=str(error.get("type", "error")) if isinstance(error, dict) else "error",
                        reason=str(error.get("reason", error)) if isinstance(error, dict) else str(error)))
            position += len(chunk)
            chunk = following
        return report

    async def add_unique(self, items: Sequence[tuple[str, dict[str, Any]]]) -> list[bool]:
        """Create each record under its content hash as document id; an existing id is a duplicate (409).

        Elasticsearch has no multi-document transaction. The ids make a request idempotent instead: if a
        chunk fails part-way (raised as :class:`LogIngestError`, after the rest is stored), resending the
        same records stores exactly what is missing, never a second copy.
        """
        stored: list[bool] = []
        report = IngestReport()
        for start in range(0, len(items), self.config.bulk_chunk):
            chunk = items[start:start + self.config.bulk_chunk]
            seq = _SEQUENCE.take(len(chunk))
            operations: list[dict[str, Any]] = []
            for i, (content_hash, record) in enumerate(chunk):
                operations.append({"create": {"_index": self.index, "_id": content_hash}})
                operations.append({**record, SEQ_FIELD: seq + i})
            last = start + self.config.bulk_chunk >= len(items)
            try:
                answer = await self.wire.bulk(operations, refresh=last)
            except (ApiError, TransportError) as exc:
                raise LogStoreError(f"bulk ingest into {self.index!r} failed after {sum(stored)} "
                                    f"stored: {exc}") from exc
            for i, item in enumerate(answer.get("items", [])):
                result = next(iter(item.values()))
                status = int(result.get("status", 500))
                stored.append(200 <= status < 300)
                if status == 409 or 200 <= status < 300:
                    continue
                error = result.get("error") or {}
                report.errors.append(IngestError(
                    position=start + i, status=status,
                    type=str(error.get("type", "error")) if isinstance(error, dict) else "error",
                    reason=str(error.get("reason", error)) if isinstance(error, dict) else str(error)))
        report.stored = sum(stored)
        if report.errors:
            raise LogIngestError(report)
        return stored

    def _filter(self, workload_id: str | None, client_id: str | None) -> list[dict[str, Any]]:
        return [{"term": {self._fields[name]: value}}
                for name, value in (("workload_id", workload_id), ("client_id", client_id)) if value is not None]

    async def extract_pages(self, workload_id: str, client_id: str, *, start: float | None = None,
                            end: float | None = None, limit: int | None = None) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of records, newest first (see the module doc); the point in time is closed at the end."""
        span: dict[str, Any] = {"format": "epoch_millis"}
        if start is not None:
            span["gte"] = _epoch_millis_bound(start)
        if end is not None:
            span["lt"] = _epoch_millis_bound(end)
        time_filter = {"range": {"timestamp": span}} if len(span) > 1 else {"exists": {"field": "timestamp"}}
        query = {"bool": {"filter": [*self._filter(workload_id, client_id), time_filter]}}
        sort = [{"timestamp": {"order": "desc"}},
                {SEQ_FIELD: {"order": "desc", "missing": "_last", "unmapped_type": "long"}},
                {"_shard_doc": "desc"}]
        keep_alive = self.config.pit_keep_alive
        remaining = limit
        try:
            pit_id = await self.wire.open_pit(self.index, keep_alive)
        except (ApiError, TransportError) as exc:
            if isinstance(exc, ApiError) and exc.meta.status == 404:
                return  # nothing ingested yet: no index, no records
            raise LogStoreError(f"cannot open a point in time on {self.index!r}: {exc}") from exc
        try:
            search_after: list[Any] | None = None
            while remaining is None or remaining > 0:
                size = self.config.page_size if remaining is None else min(self.config.page_size, remaining)
                body: dict[str, Any] = {"size": size, "query": query, "sort": sort, "track_total_hits": False,
                                        "pit": {"id": pit_id, "keep_alive": keep_alive}}
                if search_after is not None:
                    body["search_after"] = search_after
                try:
                    answer = await self.wire.search(body)
                except (ApiError, TransportError) as exc:
                    raise LogStoreError(f"search on {self.index!r} failed: {exc}") from exc
                pit_id = answer.get("pit_id") or pit_id  # the server may hand out a new id: use the latest
                hits = answer["hits"]["hits"]
                page = []
                for hit in hits:
                    record = hit["_source"]
                    record.pop(SEQ_FIELD, None)
                    page.append(record)
                if page:
                    yield page
                if len(hits) < size:
                    return
                search_after = hits[-1]["sort"]
                if remaining is not None:
                    remaining -= len(hits)
        finally:
            try:
                await self.wire.close_pit(pit_id)
            except (ApiError, TransportError):
                pass  # it expires after keep_alive anyway

    async def extract(self, workload_id: str, client_id: str, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        async for page in self.extract_pages(workload_id, client_id, **kwargs):
            for record in page:
                yield record

    async def count(self, workload_id: str | None = None, client_id: str | None = None) -> int:
        try:
            return await self.wire.count(self.index, {"bool": {"filter": self._filter(workload_id, client_id)}})
        except (ApiError, TransportError) as exc:
            if isinstance(exc, ApiError) and exc.meta.status == 404:
                return 0  # nothing ingested yet
            raise LogStoreError(f"count on {self.index!r} failed: {exc}") from exc

    async def close(self) -> None:
        await self.client.close()


class ElasticsearchLogStore:
    """The synchronous :class:`~flywheel.logstore.base.LogStore` over :class:`AsyncElasticsearchLogStore`."""

    def __init__(self, config: ElasticsearchConfig, *, environ: Any = None) -> None:
        self._loop = LoopThread("es-logstore")
        try:
            self.inner = self._loop.run(self._create(config, environ))
        except BaseException:
            self._loop.stop()
            raise
        try:
            self._loop.run(self.inner.prepare())
        except BaseException:
            self._loop.run(self.inner.close())
            self._loop.stop()
            raise
        self._closed = False

    @staticmethod
    async def _create(config: ElasticsearchConfig, environ: Any) -> AsyncElasticsearchLogStore:
        return AsyncElasticsearchLogStore(config, environ=environ)  # the client binds to the running loop

    def ingest(self, records: Iterable[dict[str, Any]]) -> IngestReport:
        return self._loop.run(self.inner.ingest(records))

    def add(self, records: Iterable[dict[str, Any]]) -> int:
        """Store records; raises :class:`LogIngestError` (after storing the rest) when any was refused."""
        report = self.ingest(records)
        if report.errors:
            raise LogIngestError(report)
        return report.stored

    def add_unique(self, items: Sequence[tuple[str, dict[str, Any]]]) -> list[bool]:
        return self._loop.run(self.inner.add_unique(list(items)))

    def extract(self, workload_id: str, client_id: str, *, start: float | None = None, end: float | None = None,
                limit: int | None = None) -> Iterator[dict[str, Any]]:
        pages = self.inner.extract_pages(workload_id, client_id, start=start, end=end, limit=limit)
        try:
            while True:
                try:
                    page = self._loop.run(pages.__anext__())
                except StopAsyncIteration:
                    return
                yield from page
        finally:
            if not self._closed:
                self._loop.run(pages.aclose())  # closes the point in time when the caller stops early

    def count(self, workload_id: str | None = None, client_id: str | None = None) -> int:
        return self._loop.run(self.inner.count(workload_id, client_id))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.run(self.inner.close())
        finally:
            self._loop.stop()

    def __enter__(self) -> ElasticsearchLogStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
