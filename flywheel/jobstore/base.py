"""JobStore: where job documents live between (and after) workflow runs.

The API lists and reads jobs from here; the workflow's persist activity writes here.

Two faces of one contract:

* :class:`JobStore` is synchronous and thread-safe; async callers run it via ``asyncio.to_thread``.
  Every store offers it (the API, CLI and activities use it).
* :class:`AsyncJobStore` is the same contract as coroutines, for stores whose driver is async
  (MongoDB's ``AsyncMongoClient``). :class:`flywheel.jobstore.sync.SyncJobStore` turns one into a
  :class:`JobStore` by running it on a private event loop thread.

Versioning: ``JobDocument.revision`` is bumped by every writer. ``put`` stores a document only when
the stored copy's revision is not higher, atomically in the store, and reports whether it did.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from flywheel.jobdoc import JobDocument, RunStatus

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


class JobStoreError(RuntimeError):
    """The job store could not be opened or used."""


@runtime_checkable
class JobStore(Protocol):
    def put(self, doc: JobDocument) -> bool:
        """Insert, or replace the stored document with ``doc.id`` unless its revision is higher.

        True when ``doc`` was stored; False when a newer revision was already there (nothing changed).
        """

    def get(self, job_id: str) -> JobDocument | None:
        """The stored document, or None."""

    def list(
        self,
        *,
        workload_id: str | None = None,
        client_id: str | None = None,
        status: str | None = None,
        offset: int = 0,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> tuple[list[JobDocument], int]:
        """One page of documents, newest first, and the total number matching the filters."""

    def delete(self, job_id: str) -> bool:
        """Remove the document; True when it existed."""

    def close(self) -> None:
        """Release connections. Idempotent."""

    # Usable as ``with open_jobstore(settings) as store:`` (closes on exit).
    def __enter__(self) -> JobStore:
        ...

    def __exit__(self, *exc: object) -> None:
        ...

@runtime_checkable
class AsyncJobStore(Protocol):
    """:class:`JobStore`'s contract as coroutines (same semantics, method for method)."""

    async def put(self, doc: JobDocument) -> bool: ...

    async def get(self, job_id: str) -> JobDocument | None: ...

    async def list(
        self,
        *,
        workload_id: str | None = None,
        client_id: str | None = None,
        status: str | None = None,
        offset: int = 0,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> tuple[list[JobDocument], int]: ...

    async def delete(self, job_id: str) -> bool: ...

    async def close(self) -> None: ...


def next_revision(doc: JobDocument, stored: JobDocument | None = None) -> JobDocument:
    """``doc`` with a revision above both its own and the stored copy's (for writers outside the workflow)."""
    floor = max(doc.revision, stored.revision if stored is not None else 0)
    return doc.model_copy(update={"revision": floor + 1})


def status_value(status: str | RunStatus | None) -> str | None:
    if status is None:
        return None
    return status.value if isinstance(status, RunStatus) else str(status)


def sortable_utc(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC so string order is time order (naive datetimes are taken as UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()
