"""Job stores: where job documents are kept. ``open_jobstore(settings)`` picks one from config."""

from __future__ import annotations

from pathlib import Path

from flywheel.config import ConfigError, Settings
from flywheel.jobstore.base import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, JobStore, JobStoreError
from flywheel.jobstore.sqlite import SQLiteJobStore

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "JobStore",
    "JobStoreError",
    "SQLiteJobStore",
    "default_jobstore_path",
    "open_jobstore",
]


def default_jobstore_path(settings: Settings) -> Path:
    return Path(settings.jobstore.path) if settings.jobstore.path else settings.data_dir / "jobs.sqlite"


def open_jobstore(settings: Settings) -> JobStore:
    kind = settings.jobstore.kind
    if kind == "sqlite":
        return SQLiteJobStore(default_jobstore_path(settings))
    if kind == "mongo":
        try:
            import pymongo  # noqa: F401
        except ImportError:
            raise ConfigError(
                "jobstore.kind: 'mongo' needs the prod extra (pip install 'temporal-data-flywheel[prod]')"
            ) from None
        raise ConfigError("jobstore.kind: 'mongo' is not wired yet; use 'sqlite'")
    raise ConfigError(f"jobstore.kind: {kind!r} is not a job store (use 'sqlite' or 'mongo')")
