"""Job stores: where job documents are kept. ``open_jobstore(settings)`` picks one from config."""

from __future__ import annotations

from pathlib import Path

from flywheel.config import ConfigError, Settings
from flywheel.jobstore.base import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    AsyncJobStore,
    JobStore,
    JobStoreError,
    next_revision,
)
from flywheel.jobstore.sqlite import SQLiteJobStore

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "AsyncJobStore",
    "JobStore",
    "JobStoreError",
    "SQLiteJobStore",
    "default_jobstore_path",
    "next_revision",
    "open_jobstore",
]


def default_jobstore_path(settings: Settings) -> Path:
    return Path(settings.jobstore.path) if settings.jobstore.path else settings.data_dir / "jobs.sqlite"


def open_jobstore(settings: Settings) -> JobStore:
    kind = settings.jobstore.kind
    if kind == "sqlite":
        return SQLiteJobStore(default_jobstore_path(settings))
    if kind == "mongo":
        return open_mongo_jobstore(settings)
    raise ConfigError(f"jobstore.kind: {kind!r} is not a job store (use 'sqlite' or 'mongo')")


def open_mongo_jobstore(settings: Settings, environ: dict[str, str] | None = None) -> JobStore:
    """The MongoDB store behind the synchronous interface; indexes ensured (so an unreachable server fails here)."""
    try:
        from flywheel.jobstore.mongo import AsyncMongoJobStore
    except ImportError:
        raise ConfigError(
            "jobstore.kind: 'mongo' needs the prod extra (pip install 'temporal-data-flywheel[prod]')"
        ) from None
    from flywheel.jobstore.sync import SyncJobStore

    inner = AsyncMongoJobStore.from_config(settings.jobstore.mongo, environ)
    store = SyncJobStore(inner, name="mongo-jobstore")
    try:
        store.call(inner.ensure_indexes())
    except BaseException:
        store.close()
        raise
    return store
