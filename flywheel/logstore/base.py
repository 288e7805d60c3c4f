"""LogStore: where production chat-completion logs live, queried per (workload_id, client_id)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class LogStore(Protocol):
    def add(self, records: Iterable[dict[str, Any]]) -> int:
        """Store raw record dicts as given (JSON), indexed by workload_id, client_id, timestamp.

        Returns the number stored.
        """

    def add_unique(self, items: Sequence[tuple[str, dict[str, Any]]]) -> list[bool]:
        """Store each ``(content_hash, record)`` whose hash is not stored yet, all in ONE transaction.

        Returns per item whether it was stored (False: a duplicate of a stored record or of an
        earlier item). On any error nothing of the call is stored. Ingest relies on this to make
        resending a batch a no-op and one request one transaction.
        """

    def extract(self, workload_id: str, client_id: str, *, start: float | None = None, end: float | None = None,
                limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Stream records of one workload/client, NEWEST FIRST (ties: latest inserted first).

        ``start <= timestamp < end`` (epoch seconds; either bound optional); ``limit`` caps the
        count, so a limit selects the most recent records. Implementations fetch in batches:
        memory does not grow with the store size.
        """

    def count(self, workload_id: str | None = None, client_id: str | None = None) -> int:
        """Number of stored records, optionally filtered."""

    def close(self) -> None:
        """Release connections. Idempotent."""

    # Usable as ``with open_logstore(settings) as store:`` (closes on exit).
    def __enter__(self) -> LogStore:
        ...

    def __exit__(self, *exc: object) -> None:
        ...
