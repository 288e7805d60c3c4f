"""Embedded SQLite log store (the default): one table, WAL mode, keyset-paginated extraction."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY,
    workload_id TEXT,
    client_id TEXT,
    timestamp REAL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_client_time ON logs (workload_id, client_id, timestamp);
"""


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

    def add(self, records: Iterable[dict[str, Any]]) -> int:
        total = 0
        it = iter(records)
        while batch := list(islice(it, self.insert_batch)):
            rows = [(_text(r.get("workload_id")), _text(r.get("client_id")), _timestamp(r.get("timestamp")),
                     json.dumps(r, separators=(",", ":"), ensure_ascii=False)) for r in batch]
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

    def extract(self, workload_id: str, client_id: str, *, start: float | None = None, end: float | None = None,
                limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Newest first. Keyset pagination on (timestamp, id): no read transaction stays open between batches."""
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
        while remaining is None or remaining > 0:
            size = self.fetch_batch if remaining is None else min(self.fetch_batch, remaining)
            sql, args = f"SELECT timestamp, id, record FROM logs WHERE {base}", list(params)
            if cursor is not None:
                sql += " AND (timestamp < ? OR (timestamp = ? AND id < ?))"
                args += [cursor[0], cursor[0], cursor[1]]
            sql += " ORDER BY timestamp DESC, id DESC LIMIT ?"
            args.append(size)
            with self._lock:
                batch = self._conn.execute(sql, args).fetchall()
            for _, _, text in batch:
                yield json.loads(text)
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

    def __enter__(self) -> "SQLiteLogStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
