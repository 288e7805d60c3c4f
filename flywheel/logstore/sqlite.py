"""Embedded SQLite log store (the default): one table, WAL mode, keyset-paginated extraction."""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

import orjson

_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY,
    workload_id TEXT,
    client_id TEXT,
    timestamp REAL,
    record TEXT NOT NULL,
    content_hash TEXT
);
CREATE INDEX IF NOT EXISTS logs_by_client_time ON logs (workload_id, client_id, timestamp);
"""
# After the column exists (stores created before content hashes get it added first). NULLs are
# distinct for a UNIQUE index: records added without a hash (add()) are never deduplicated.
_HASH_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS logs_by_content_hash ON logs (content_hash)"


def _timestamp(value: Any) -> float | None:
    """Epoch seconds from a number or an ISO 8601 string; None when unusable (stored anyway)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_TOOLS_MARKER = f"tools:{secrets.token_hex(8)}"


def _batch_encoder() -> Callable[[Any], str]:
    """Serialises the records of one materialised batch, each exactly as ``_dumps(record)`` would.

    The tool schemas are most of each record and usually one list object shared by the batch: that
    list is serialised once and spliced in. Caching by identity is exact because nothing can change
    the list between the records of a batch that is already in memory.
    """
    tools_text: dict[int, str] = {}  # id(tools list) -> JSON; the lists stay alive in the batch
    placeholder = _dumps(_TOOLS_MARKER)

    def encode(record: Any) -> str:
        request = record.get("request") if type(record) is dict else None
        tools = request.get("tools") if type(request) is dict else None
        if type(tools) is not list or not tools:
            return _dumps(record)
        text = tools_text.get(id(tools))
        if text is None:
            text = tools_text[id(tools)] = _dumps(tools)
        return _dumps({**record, "request": {**request, "tools": _TOOLS_MARKER}}).replace(placeholder, text, 1)

    return encode


def _loads_exact(data: bytes) -> Any:
    """``json.loads(data)``, via orjson (~3x faster) when that provably gives the same value."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:  # NaN, 1e400, lone surrogates: json accepts them
        return json.loads(data.decode())
    # orjson turns integers beyond 64 bits into floats: a value that serialises back to the
    # stored text (as any record written by add() does) was read exactly.
    return value if orjson.dumps(value) == data else json.loads(data.decode())


class _RecordDecoder:
    """Parses stored records, sharing one parsed ``request.tools`` list among records whose tools JSON is the same.

    The tool schemas are most of each record's JSON and are usually identical across a workload:
    a known tools array is cut out of the text, the rest parsed, and the shared list put in its
    place. Anything unexpected (the first ``"tools":[`` belongs to another object, text orjson
    would not read exactly) gets a full parse instead. At most ``max_tools`` arrays are kept.
    """

    _KEY = b'"tools":['

    def __init__(self, max_tools: int = 8) -> None:
        self.max_tools = max_tools
        self._tools: dict[bytes, list[Any]] = {}  # compact JSON text -> parsed list
        self._marker = f"tools:{secrets.token_hex(8)}"
        self._placeholder = f'"{self._marker}"'.encode()

    def decode(self, data: bytes) -> Any:
        found = data.find(self._KEY)
        at = found + len(self._KEY) - 1 if found >= 0 else -1  # where the array starts
        if at >= 0:
            for text, tools in self._tools.items():
                if data.startswith(text, at):
                    record = self._without_tools(data[:at] + self._placeholder + data[at + len(text):])
                    if record is not None:
                        record["request"]["tools"] = tools
                        return record
                    break
        record = _loads_exact(data)
        if at >= 0:
            self._remember(record, data, at)
        return record

    def _without_tools(self, data: bytes) -> dict[str, Any] | None:
        try:
            record = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        request = record.get("request") if type(record) is dict else None
        if type(request) is not dict or request.get("tools") != self._marker or orjson.dumps(record) != data:
            return None
        return record

    def _remember(self, record: Any, data: bytes, at: int) -> None:
        request = record.get("request") if type(record) is dict else None
        tools = request.get("tools") if type(request) is dict else None
        if type(tools) is not list:
            return
        text = _dumps(tools).encode()
        if data.startswith(text, at) and text not in self._tools:
            if len(self._tools) >= self.max_tools:
                self._tools.clear()
            self._tools[text] = tools


class SQLiteLogStore:
    """Thread-safe; one connection guarded by a lock. Each extract batch is its own short read."""

    def __init__(self, path: str | Path, *, insert_batch: int = 1000, fetch_batch: int = 500) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.insert_batch = insert_batch
        self.fetch_batch = fetch_batch
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(logs)")}
        if "content_hash" not in columns:
            self._conn.execute("ALTER TABLE logs ADD COLUMN content_hash TEXT")
        self._conn.execute(_HASH_INDEX)

    def add(self, records: Iterable[dict[str, Any]]) -> int:
        total = 0
        it = iter(records)
        while batch := list(islice(it, self.insert_batch)):
            encode = _batch_encoder()
            rows = [(_text(r.get("workload_id")), _text(r.get("client_id")), _timestamp(r.get("timestamp")), encode(r))
                    for r in batch]
            with self._lock:
                self._conn.execute("BEGIN")
                try:
                    self._conn.executemany(
                        "INSERT INTO logs (workload_id, client_id, timestamp, record) VALUES (?, ?, ?, ?)", rows)
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
            total += len(rows)
        return total

    def add_unique(self, items: Sequence[tuple[str, dict[str, Any]]]) -> list[bool]:
        """Store each (content_hash, record) whose hash is not stored yet, ALL in one transaction.

        Returns, per item, whether it was stored (False: a duplicate, of a stored record or of an
        earlier item). Either every new record is stored or, on any error, none is.
        """
        encode = _batch_encoder()
        rows = [(_text(r.get("workload_id")), _text(r.get("client_id")), _timestamp(r.get("timestamp")), encode(r), h)
                for h, r in items]
        stored: list[bool] = []
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for row in rows:
                    cursor = self._conn.execute(
                        "INSERT OR IGNORE INTO logs (workload_id, client_id, timestamp, record, content_hash) "
                        "VALUES (?, ?, ?, ?, ?)", row)
                    stored.append(cursor.rowcount == 1)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return stored

    def extract(self, workload_id: str, client_id: str, *, start: float | None = None, end: float | None = None,
                limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Newest first. Keyset pagination on (timestamp, id): no read transaction stays open between batches.

        Records with the same tools JSON share one ``request.tools`` list: treat records as read-only.
        """
        where = ["workload_id = ?", "client_id = ?", "timestamp IS NOT NULL"]
        params: list[Any] = [workload_id, client_id]
        if start is not None:
            where.append("timestamp >= ?")
            params.append(float(start))
        if end is not None:
            where.append("timestamp < ?")
            params.append(float(end))
        base = " AND ".join(where)
        remaining = limit
        cursor: tuple[float, int] | None = None
        decoder = _RecordDecoder()
        while remaining is None or remaining > 0:
            size = self.fetch_batch if remaining is None else min(self.fetch_batch, remaining)
            # As bytes: orjson parses UTF-8 directly, and the tools array is found without decoding.
            sql, args = f"SELECT timestamp, id, CAST(record AS BLOB) FROM logs WHERE {base}", list(params)
            if cursor is not None:
                # A row value, unlike the equivalent OR, lets SQLite seek the index instead of rescanning it.
                sql += " AND (timestamp, id) < (?, ?)"
                args += [cursor[0], cursor[1]]
            sql += " ORDER BY timestamp DESC, id DESC LIMIT ?"
            args.append(size)
            with self._lock:
                batch = self._conn.execute(sql, args).fetchall()
            for _, _, data in batch:
                yield decoder.decode(data)
            if len(batch) < size:
                return
            cursor = (batch[-1][0], batch[-1][1])
            if remaining is not None:
                remaining -= len(batch)

    def count(self, workload_id: str | None = None, client_id: str | None = None) -> int:
        where, params = [], []
        if workload_id is not None:
            where.append("workload_id = ?")
            params.append(workload_id)
        if client_id is not None:
            where.append("client_id = ?")
            params.append(client_id)
        sql = "SELECT COUNT(*) FROM logs" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            return int(self._conn.execute(sql, params).fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SQLiteLogStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
