"""Run an :class:`AsyncJobStore` behind the synchronous :class:`JobStore` interface.

The async store lives on a private loop thread (see :mod:`flywheel.loop_thread` for why), so the
API, CLI and activities keep calling the synchronous interface through ``asyncio.to_thread``.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from flywheel.jobdoc import JobDocument
from flywheel.jobstore.base import DEFAULT_PAGE_SIZE, AsyncJobStore, JobStoreError
from flywheel.loop_thread import LoopClosedError, LoopThread

T = TypeVar("T")


class SyncJobStore:
    """A :class:`JobStore` whose calls run on ``inner``'s own event loop thread. Thread-safe."""

    def __init__(self, inner: AsyncJobStore, *, name: str = "jobstore", call_timeout_s: float | None = None):
        self.inner = inner
        self.call_timeout_s = call_timeout_s
        self._loop = LoopThread(name)
        self._closed = False

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one of ``inner``'s coroutines on its loop and wait for the result."""
        try:
            return self._loop.run(coro, self.call_timeout_s)
        except LoopClosedError:
            raise JobStoreError("job store is closed") from None

    def put(self, doc: JobDocument) -> bool:
        return self.call(self.inner.put(doc))

    def get(self, job_id: str) -> JobDocument | None:
        return self.call(self.inner.get(job_id))

    def list(
        self,
        *,
        workload_id: str | None = None,
        client_id: str | None = None,
        status: str | None = None,
        offset: int = 0,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> tuple[list[JobDocument], int]:
        return self.call(self.inner.list(workload_id=workload_id, client_id=client_id, status=status,
                                         offset=offset, limit=limit))

    def delete(self, job_id: str) -> bool:
        return self.call(self.inner.delete(job_id))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.run(self.inner.close())
        finally:
            self._loop.stop()

    def __enter__(self) -> SyncJobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
