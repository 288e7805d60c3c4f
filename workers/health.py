"""Worker health endpoint for Kubernetes probes: ``flywheel-worker --health-port 8081``.

- ``GET /healthz`` (liveness): 200 while the worker's event loop is alive (the monitor task beat within
  ``stale_after_s``). A Temporal outage alone never fails it: restarting a worker does not bring
  Temporal back, and a restart would cost a running training its progress since the last checkpoint.
- ``GET /readyz`` (readiness): 200 once the workers are polling and Temporal answered its last health
  check; 503 otherwise.

Both answer the same JSON document: Temporal connectivity (``temporal``: ok | error | connecting, the
last error and when it was checked) and slot usage per task queue (activities running out of the
slots the worker offers; the orchestrator's workflow-task slots).

The HTTP server runs in a daemon thread (standard library ``ThreadingHTTPServer``) and only reads a
snapshot the worker's event loop keeps up to date, so a probe never touches the Temporal client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

log = logging.getLogger("flywheel.workers.health")

CHECK_INTERVAL_S = 5.0
CHECK_TIMEOUT_S = 5.0


@dataclass
class QueueSlots:
    kind: str  # "activity" or "workflow_task"
    capacity: int
    in_use: int = 0


@dataclass
class WorkerHealth:
    """State the probes report; mutated only on the worker's event loop (reads take the lock)."""

    stale_after_s: float = 30.0
    temporal: str = "connecting"
    temporal_error: str | None = None
    checked_at: float | None = None
    polling: bool = False
    beat_at: float = field(default_factory=time.monotonic)
    slots: dict[str, QueueSlots] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- updates (event loop) ---------------------------------------------------------------------
    def beat(self) -> None:
        self.beat_at = time.monotonic()

    def set_temporal(self, ok: bool, error: str | None = None) -> None:
        with self._lock:
            self.temporal = "ok" if ok else "error"
            self.temporal_error = None if ok else error
            self.checked_at = time.time()

    def add_queue(self, task_queue: str, kind: str, capacity: int) -> None:
        with self._lock:
            self.slots[task_queue] = QueueSlots(kind, capacity)

    def activity_started(self, task_queue: str) -> None:
        with self._lock:
            if task_queue in self.slots:
                self.slots[task_queue].in_use += 1

    def activity_finished(self, task_queue: str) -> None:
        with self._lock:
            if task_queue in self.slots:
                self.slots[task_queue].in_use = max(0, self.slots[task_queue].in_use - 1)

    def interceptor(self) -> Interceptor:
        """A worker interceptor counting running activities per task queue (the slot usage /readyz reports)."""
        return _SlotCounter(self)

    # -- reads (probe thread) ---------------------------------------------------------------------
    def alive(self) -> bool:
        return time.monotonic() - self.beat_at <= self.stale_after_s

    def ready(self) -> bool:
        return self.alive() and self.polling and self.temporal == "ok"

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "alive": self.alive(),
                "ready": self.ready(),
                "polling": self.polling,
                "temporal": self.temporal,
                "temporal_error": self.temporal_error,
                "temporal_checked_at": self.checked_at,
                "slots": {q: {"kind": s.kind, "capacity": s.capacity, "in_use": s.in_use,
                              "free": max(0, s.capacity - s.in_use)} for q, s in self.slots.items()},
            }


class _SlotCounter(Interceptor):
    def __init__(self, health: WorkerHealth) -> None:
        self._health = health

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _CountingActivityInbound(next, self._health)


class _CountingActivityInbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, health: WorkerHealth) -> None:
        super().__init__(next)
        self._health = health

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        queue = activity.info().task_queue
        self._health.activity_started(queue)
        try:
            return await super().execute_activity(input)
        finally:
            self._health.activity_finished(queue)


async def monitor(health: WorkerHealth, client: Client | None, *, interval_s: float = CHECK_INTERVAL_S,
                  timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """Beat (liveness) and check Temporal (readiness) every ``interval_s`` until cancelled."""
    while True:
        health.beat()
        if client is not None:
            try:
                ok = await asyncio.wait_for(client.service_client.check_health(), timeout_s)
                health.set_temporal(bool(ok), None if ok else "health check answered not serving")
            except Exception as exc:  # noqa: BLE001 - any failure means "not connected"; reported, not raised
                health.set_temporal(False, f"{type(exc).__name__}: {exc}"[:300])
        await asyncio.sleep(interval_s)


class _Handler(BaseHTTPRequestHandler):
    health: WorkerHealth  # set on the subclass made per server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            ok = self.health.alive()
        elif path == "/readyz":
            ok = self.health.ready()
        else:
            self._send(404, {"detail": f"not found: {path} (try /healthz or /readyz)"})
            return
        self._send(200 if ok else 503, self.health.snapshot())

    def _send(self, status: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: not worth a log line
        pass


class HealthServer:
    """``/healthz`` and ``/readyz`` on ``host:port`` in a daemon thread. ``port=0`` picks a free port."""

    def __init__(self, health: WorkerHealth, port: int, host: str = "0.0.0.0") -> None:
        handler = type("HealthHandler", (_Handler,), {"health": health})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("health endpoint listening", extra={"port": self.port})
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
