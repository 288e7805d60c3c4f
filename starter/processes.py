"""Managed child processes: start with a log file, wait until ready, stop without leaving orphans.

Each child runs in its own process group (``start_new_session``), so :meth:`ManagedProcess.stop`
reaches its children too: SIGTERM to the group, a grace period, then SIGKILL to the group and to any
descendant that moved elsewhere. On Linux a child also gets SIGTERM if this process dies without
cleaning up (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
_PR_SET_PDEATHSIG = 1


class StackError(RuntimeError):
    """A managed process failed to start or become ready; the message points at its log."""


def free_port(host: str = "127.0.0.1", avoid: set[int] | None = None) -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if not avoid or port not in avoid:
            return port
    raise StackError("could not find a free TCP port")


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_responds(url: str, timeout: float = 1.0) -> bool:
    """Any HTTP answer below 500 means the server is up (a 404 on the probe path still is)."""
    try:
        return httpx.get(url, timeout=timeout).status_code < 500
    except httpx.HTTPError:
        return False


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ManagedProcess:
    """One child process with a log file, a readiness check and a reliable stop."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        *,
        cwd: str | Path | None = None,
        health_url: str | None = None,
        port: tuple[str, int] | None = None,
        ready_check: Callable[[], bool] | None = None,
        stop_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_path) if log_path else None
        self.env = dict(env) if env is not None else None
        self.cwd = str(cwd) if cwd else None
        self.health_url = health_url
        self.port = port
        self.ready_check = ready_check
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> ManagedProcess:
        if self.running():
            return self
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        out = self._log if self._log else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,  # own process group: stop() reaches grandchildren
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        except OSError as exc:
            self._close_log()
            raise StackError(f"{self.name}: cannot start {self.argv[0]}: {exc}") from exc
        return self

    def is_ready(self) -> bool:
        if self.ready_check is not None and not self.ready_check():
            return False
        if self.port is not None and not port_accepts(*self.port):
            return False
        return self.health_url is None or http_responds(self.health_url)

    def wait_ready(self, timeout: float = 60.0, interval: float = 0.2, settle: float = 1.0) -> None:
        """Block until the readiness checks pass. With no check configured, the process only has
        to survive ``settle`` seconds. Raises :class:`StackError` (with the log tail) on failure."""
        has_check = self.ready_check or self.port or self.health_url
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        while time.monotonic() < deadline:
            if not self.running():
                code = self.proc.returncode if self.proc else None
                raise StackError(f"{self.name} exited with code {code} before it was ready{self._log_hint()}")
            if has_check and self.is_ready():
                return
            if not has_check and time.monotonic() - started >= settle:
                return
            time.sleep(interval)
        raise StackError(f"{self.name} was not ready within {timeout:.0f}s{self._log_hint()}")

    def _log_hint(self) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        tail = self.log_path.read_bytes()[-1500:].decode(errors="replace").strip()
        return f"\n--- last lines of {self.log_path} ---\n{tail}" if tail else f" (log: {self.log_path})"

    def _descendants(self) -> list[Any]:
        try:
            import psutil

            return psutil.Process(self.proc.pid).children(recursive=True) if self.proc else []
        except Exception:  # noqa: BLE001 - best effort: the process may already be gone
            return []

    def _signal_group(self, sig: int) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM the process group, wait, then SIGKILL whatever is left (including descendants
        that moved to a group of their own). Returns the exit code; safe to call twice."""
        if self.proc is None:
            return None
        timeout = self.stop_timeout if timeout is None else timeout
        descendants = self._descendants()
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(timeout=10)
        # The leader is gone; anything left in its group or below it gets killed too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for child in descendants:
            with contextlib.suppress(Exception):
                if child.is_running():
                    child.kill()
        self._close_log()
        return self.proc.returncode

    def _close_log(self) -> None:
        if self._log:
            self._log.close()
            self._log = None


def child_env(base: Mapping[str, str] | None = None, **overrides: str | None) -> dict[str, str]:
    """The environment for a child: this one, the repo on PYTHONPATH, plus overrides (None removes)."""
    env = dict(os.environ if base is None else base)
    paths = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.setdefault("PYTHONUNBUFFERED", "1")
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env
