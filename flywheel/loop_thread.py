"""A private asyncio event loop on a daemon thread, for synchronous facades over async clients.

Async drivers (pymongo's ``AsyncMongoClient``, ``AsyncElasticsearch``) keep their connection pools
on the loop they first ran on. Our synchronous store interfaces are called from many threads
(``asyncio.to_thread`` in the API and activities), so each store owns one long-lived loop, runs the
client there, and every call is submitted to it: one pool per store, usable from any thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopClosedError(RuntimeError):
    """The loop thread was already stopped."""


class LoopThread:
    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"{name}-loop", daemon=True)
        self._thread.start()
        self._stopped = False

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result (from any thread but the loop's own)."""
        if self._stopped:
            coro.close()
            raise LoopClosedError("the store's event loop is stopped (store closed)")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("called from the store's own loop: await the async store instead")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout_s)
        except BaseException:
            future.cancel()
            raise

    def stop(self) -> None:
        """Stop the loop and join the thread. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()
