"""What every `flywheel` command shares: the consoles, the configuration picked by the global options
(:class:`CLIState`), one event loop + job store + lazily connected Temporal client per command
(:class:`Session`), and error output."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from flywheel.config import ConfigError, Settings, load_settings
from flywheel.jobstore import open_jobstore

T = TypeVar("T")
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


@dataclass
class CLIState:
    config_path: Path | None = None
    config_name: str | None = None
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self, default_name: str | None = None) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(path=self.config_path, config_name=self.config_name or default_name)
            except ConfigError as exc:
                err_console.print(f"[red]configuration error:[/] {exc}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from exc
        return self._settings


def state(ctx: typer.Context) -> CLIState:
    root = ctx.find_root()
    if not isinstance(root.obj, CLIState):
        root.obj = CLIState()
    return root.obj


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


class Session:
    """One event loop, job store, job service and (lazily) Temporal client for a command; sync code calls
    `run`."""

    def __init__(self, settings: Settings) -> None:
        # Lazy: the job service and the connection pull in the Temporal client, which only job commands need
        # (CLI start-up time).
        from starter import job_service
        from workers.connection import connect

        self._connect, self._job_error = connect, job_service.JobError
        self.settings = settings
        self.jobstore = open_jobstore(settings)
        self.jobs = job_service.JobService(settings, self.jobstore, self._temporal)
        self.loop = asyncio.new_event_loop()
        self._client: Any = None

    async def _temporal(self) -> Any:
        if self._client is None:
            self._client = await self._connect(self.settings)
        return self._client

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else self.run(self._temporal)

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        try:
            return self.loop.run_until_complete(make())
        except typer.Exit:
            raise
        except self._job_error as exc:  # typed, with a message meant for people
            raise fail(str(exc)) from exc
        except Exception as exc:  # connection refused, RPC errors
            raise fail(f"{type(exc).__name__}: {exc} (Temporal at {self.settings.temporal.address})") from exc

    def close(self) -> None:
        self.loop.close()
        self.jobstore.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def format_ingest_error(err: Any) -> str:
    """An ingest error as 'line N: reason: detail' (IngestError, or a {line, error} dict)."""
    get = err.get if isinstance(err, dict) else (lambda k: getattr(err, k, None))
    where = f"line {get('line')}" if get("line") is not None else (
        f"record {get('index')}" if get("index") is not None else "")
    what = ": ".join(str(x) for x in (get("reason"), get("detail") or get("error") or get("message")) if x)
    return f"{where}: {what}" if where else (what or str(err))
