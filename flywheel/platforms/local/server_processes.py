"""Start, find and stop local model-server processes (:mod:`.model_server`), idempotent by name.

Each deployment has a state file ``<state_dir>/deployments/<name>.json`` (pid, port, model, lora,
started_at) written atomically, and a log ``<name>.log`` with the server's stdout/stderr. Deploying a
name whose server is alive, healthy and serving the same model/adapter returns that server; anything
else (dead process, different model) starts a fresh one. Servers run in their own process group and
receive SIGTERM when the worker that started them dies (``PR_SET_PDEATHSIG``), so a killed worker
never leaks model servers; the next attempt sees the dead pid and redeploys.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from flywheel.progress import DeploymentProgress
from flywheel.types import Endpoint, PlatformError, ProgressFn

SERVER_MODULE = "flywheel.platforms.local.model_server"
HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _die_with_parent(parent_pid: int):
    """preexec_fn: SIGTERM this child when the spawning thread's process goes away.

    PDEATHSIG is tied to the *thread* that forked, so spawn from a long-lived thread (the event
    loop's); :meth:`ModelServerManager.deploy` does that.
    """

    def _preexec() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return _preexec


def _is_model_server(pid: int) -> bool:
    """True if ``pid`` is a running (non-zombie) model server, not some process that reused the pid."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return SERVER_MODULE in " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _tail(path: Path, max_chars: int = 3000) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_chars))
            return handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


class ModelServerManager:
    """Model-server processes keyed by deployment name, with their state under ``state_dir``."""

    def __init__(self, state_dir: Path | str) -> None:
        self.dir = Path(state_dir) / "deployments"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._started: dict[str, subprocess.Popen] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------------ state files

    def state_path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"invalid deployment name {name!r}")
        return self.dir / f"{name}.json"

    def log_path(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    def read_state(self, name: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_path(name).read_text())
        except (FileNotFoundError, ValueError):
            return None

    def _write_state(self, name: str, state: dict[str, Any]) -> None:
        path = self.state_path(name)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, path)

    # ------------------------------------------------------------------ queries

    def _healthy(self, state: dict[str, Any], timeout_s: float = 2.0) -> bool:
        try:
            resp = httpx.get(f"http://{state['host']}:{state['port']}/health", timeout=timeout_s)
            return resp.status_code == 200 and resp.json().get("pid") == state["pid"]
        except (httpx.HTTPError, ValueError):
            return False

    def is_alive(self, name: str) -> bool:
        """The named server's process runs and answers /health."""
        state = self.read_state(name)
        return bool(state) and _is_model_server(state["pid"]) and self._healthy(state)

    def endpoint(self, name: str, model_name: str | None = None) -> Endpoint | None:
        state = self.read_state(name)
        if not state:
            return None
        return Endpoint(
            deployment_name=name, model_name=model_name or state["alias"], served_model=state["alias"],
            base_url=f"http://{state['host']}:{state['port']}/v1", status="ready",
            details={k: state[k] for k in ("pid", "port", "model", "lora", "n_ctx", "log", "started_at")},
        )

    # ------------------------------------------------------------------ deploy / teardown

    async def deploy(self, name: str, model_path: Path | str, *, alias: str, lora_path: Path | str | None = None,
                     n_ctx: int, threads: int | None = None, ready_timeout_s: float = 300,
                     progress: ProgressFn | None = None, model_name: str | None = None) -> Endpoint:
        """A healthy server named ``name`` serving ``model_path`` (+ ``lora_path``) as ``alias``.

        Idempotent: an existing live server with the same model/adapter/context is reused.
        Call from the event-loop thread (see :func:`_die_with_parent`).
        """
        wanted = {
            "model": str(Path(model_path).resolve()),
            "lora": str(Path(lora_path).resolve()) if lora_path else None,
            "alias": alias,
            "n_ctx": n_ctx,
        }
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            state = self.read_state(name)
            if state and _is_model_server(state["pid"]):
                if all(state.get(k) == v for k, v in wanted.items()):
                    # Same deployment: healthy → reuse; still loading (an earlier attempt) → wait for it.
                    try:
                        await self._wait_ready(name, state, ready_timeout_s, progress)
                    except BaseException:
                        await self.teardown(name)  # hung or broken: the retry starts afresh
                        raise
                    return self.endpoint(name, model_name)  # type: ignore[return-value]
                await self.teardown(name)
            elif state:
                self.state_path(name).unlink(missing_ok=True)
            state = self._spawn(name, wanted, threads)
            if progress:
                progress(DeploymentProgress(stage="model_server_starting", deployment=name, pid=state["pid"],
                                            port=state["port"]).details())
            try:
                await self._wait_ready(name, state, ready_timeout_s, progress)
            except BaseException:
                await self.teardown(name)
                raise
            return self.endpoint(name, model_name)  # type: ignore[return-value]

    def _spawn(self, name: str, wanted: dict[str, Any], threads: int | None) -> dict[str, Any]:
        port = _free_port()
        cmd = [sys.executable, "-m", SERVER_MODULE, "--model", wanted["model"], "--alias", wanted["alias"],
               "--host", HOST, "--port", str(port), "--n-ctx", str(wanted["n_ctx"])]
        if wanted["lora"]:
            cmd += ["--lora", wanted["lora"]]
        if threads:
            cmd += ["--threads", str(threads)]
        # OpenMP's default spin-wait makes llama.cpp collapse when cores are shared (parallel
        # candidates, a trainer): measured decode 0.4 tok/s spinning vs 6.5 tok/s passive under load.
        env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
        log_path = self.log_path(name)
        with log_path.open("ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                process_group=0, preexec_fn=_die_with_parent(os.getpid()), close_fds=True)
        self._started[name] = proc
        state = {"name": name, "pid": proc.pid, "host": HOST, "port": port, **wanted, "threads": threads,
                 "started_at": time.time(), "log": str(log_path), "parent_pid": os.getpid()}
        self._write_state(name, state)
        return state

    async def _wait_ready(self, name: str, state: dict[str, Any], timeout_s: float,
                          progress: ProgressFn | None) -> None:
        started = time.monotonic()
        url = f"http://{state['host']}:{state['port']}/health"
        last_report = 0.0
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                try:
                    resp = await client.get(url)
                    if resp.status_code == 200 and resp.json().get("pid") == state["pid"]:
                        if progress:
                            progress(DeploymentProgress(stage="model_server_ready", deployment=name,
                                                        seconds=round(time.monotonic() - started, 1)).details())
                        return
                except (httpx.HTTPError, ValueError):
                    pass
                proc = self._started.get(name)
                exited = proc.poll() is not None if proc and proc.pid == state["pid"] else not _is_model_server(
                    state["pid"])
                if exited:
                    self._raise_start_failure(name, state)
                elapsed = time.monotonic() - started
                if elapsed > timeout_s:
                    raise PlatformError(
                        f"model server {name!r} (pid {state['pid']}) not healthy after {timeout_s:.0f}s; "
                        f"log tail:\n{_tail(self.log_path(name))}", retryable=True,
                        error_type="ModelServerTimeout", details={"deployment": name, "log": state["log"]})
                if progress and elapsed - last_report >= 5:
                    last_report = elapsed
                    progress(DeploymentProgress(stage="model_server_loading", deployment=name,
                                                elapsed_s=round(elapsed)).details())
                await asyncio.sleep(0.25)

    def _raise_start_failure(self, name: str, state: dict[str, Any]) -> None:
        tail = _tail(self.log_path(name))
        self.state_path(name).unlink(missing_ok=True)
        proc = self._started.pop(name, None)
        code = proc.poll() if proc else None
        # A lost port race is worth retrying; a model that fails to load is not.
        retryable = "address already in use" in tail.lower()
        raise PlatformError(
            f"model server {name!r} exited during startup (exit code {code}); log tail:\n{tail}",
            retryable=retryable, error_type="ModelServerStartFailed",
            details={"deployment": name, "exit_code": code, "log": state["log"]})

    async def teardown(self, name: str, grace_s: float = 10.0) -> None:
        """Stop the named server (SIGTERM, then SIGKILL after ``grace_s``); tolerates already-gone."""
        state = self.read_state(name)
        proc = self._started.pop(name, None)
        pid = state["pid"] if state else (proc.pid if proc else None)
        if pid is not None and _is_model_server(pid):
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while _is_model_server(pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if _is_model_server(pid):
                _signal_group(pid, signal.SIGKILL)
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.state_path(name).unlink(missing_ok=True)

    def teardown_all_started_here(self, grace_s: float = 5.0) -> list[str]:
        """Synchronously stop every server this process started (worker shutdown). Returns their names."""
        names = list(self._started)
        procs = {name: self._started.pop(name) for name in names}
        for proc in procs.values():
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for name, proc in procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            state = self.read_state(name)
            if state and state.get("pid") == proc.pid:
                self.state_path(name).unlink(missing_ok=True)
        return names


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the server leads its own process group
        return
    except (ProcessLookupError, PermissionError):
        pass
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
