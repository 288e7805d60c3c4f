"""SQLite job store: the whole document as JSON plus indexed columns for filtering and ordering."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from flywheel.jobdoc import JobDocument, RunStatus
from flywheel.jobstore.base import DEFAULT_PAGE_SIZE, JobStoreError, sortable_utc, status_value

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    workload_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT,
    document TEXT NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_workload_client ON jobs (workload_id, client_id);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
CREATE INDEX IF NOT EXISTS jobs_started_at ON jobs (started_at);
"""

_UPSERT = """
INSERT INTO jobs (id, workload_id, client_id, status, started_at, document, revision)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(id) DO UPDATE SET
    workload_id = excluded.workload_id,
    client_id = excluded.client_id,
    status = excluded.status,
    started_at = excluded.started_at,
    document = excluded.document,
    revision = excluded.revision
WHERE excluded.revision >= jobs.revision
"""


class SQLiteJobStore:
    """Embedded default. One connection guarded by a lock; WAL so readers never block the writer."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                str(path), check_same_thread=False, timeout=30, isolation_level=None
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._add_revision_column()
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise JobStoreError(f"cannot open job store at {path}: {exc}") from exc

    def _add_revision_column(self) -> None:
        """Stores created before documents had revisions gain the column (existing rows: revision 0)."""
        assert self._conn is not None
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(jobs)")}
        if columns and "revision" not in columns:
            self._conn.execute("ALTER TABLE jobs ADD COLUMN revision INTEGER NOT NULL DEFAULT 0")

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise JobStoreError("job store is closed")
        return self._conn

    def put(self, doc: JobDocument) -> bool:
        """Upsert unless the stored revision is higher (one statement, so atomic against other writers)."""
        started_at = sortable_utc(doc.started_at)
        row = (
            doc.id,
            doc.workload_id,
            doc.client_id,
            status_value(doc.status),
            started_at,
            doc.model_dump_json(),
            doc.revision,
        )
        with self._lock:
            cursor = self._db.execute(_UPSERT, row)
        return cursor.rowcount > 0

    def get(self, job_id: str) -> JobDocument | None:
        with self._lock:
            row = self._db.execute("SELECT document FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return JobDocument.model_validate_json(row[0]) if row else None

    def list(
        self,
        *,
        workload_id: str | None = None,
        client_id: str | None = None,
        status: str | RunStatus | None = None,
        offset: int = 0,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> tuple[list[JobDocument], int]:
        clauses: list[str] = []
        params: list[object] = []
        for column, value in (
            ("workload_id", workload_id),
            ("client_id", client_id),
            ("status", status_value(status)),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        # Newest first; undated (never started) rows last; id breaks ties so pages are stable.
        order = "ORDER BY started_at IS NULL, started_at DESC, id DESC"
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) FROM jobs {where}", params).fetchone()[0]
            rows = self._db.execute(
                f"SELECT document FROM jobs {where} {order} LIMIT ? OFFSET ?",
                [*params, max(0, limit), max(0, offset)],
            ).fetchall()
        return [JobDocument.model_validate_json(r[0]) for r in rows], total

    def delete(self, job_id: str) -> bool:
        with self._lock:
            cursor = self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return cursor.rowcount > 0

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SQLiteJobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
