"""JobStore: where job documents live between (and after) workflow runs.

The API lists and reads jobs from here; the workflow's persist activity writes here. Implementations
are synchronous and thread-safe: async callers run them via ``asyncio.to_thread``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from flywheel.jobdoc import JobDocument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


class JobStoreError(RuntimeError):
    """The job store could not be opened or used."""


@runtime_checkable
class JobStore(Protocol):
    def put(self, doc: JobDocument) -> None:
        """Insert or replace the document with ``doc.id``."""

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
