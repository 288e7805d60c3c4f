"""MongoDB job store on pymongo's ``AsyncMongoClient`` (motor is deprecated).

One document per job::

    {_id: job id, revision, workload_id, client_id, status, started_at, document: {...the job document...}}

The top-level fields are copies used for filtering and ordering (indexed); ``started_at`` is the same
UTC ISO 8601 text the SQLite store orders by, so both stores list in exactly the same order. ``document``
is the JSON form of :class:`JobDocument`, readable by anyone querying the collection.

A write is one conditional upsert: "replace where ``_id`` matches and the stored revision is not higher".
When a higher revision is stored, the filter matches nothing, the upsert tries to insert a second
``_id`` and the server refuses with a duplicate-key error: that is the stale-write signal, decided
atomically by the server, never read-then-write in the client.
"""

from __future__ import annotations

import os
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.errors import DuplicateKeyError, PyMongoError

from flywheel.config import ConfigError, MongoConfig
from flywheel.jobdoc import JobDocument, RunStatus
from flywheel.jobstore.base import DEFAULT_PAGE_SIZE, JobStoreError, sortable_utc, status_value

# Newest first, never-started last (null sorts lowest, so last in a descending sort), id breaks ties.
_ORDER = [("started_at", DESCENDING), ("_id", DESCENDING)]

_INDEXES = [
    IndexModel([("workload_id", ASCENDING), ("client_id", ASCENDING), *_ORDER], name="by_workload_client"),
    IndexModel([("status", ASCENDING), *_ORDER], name="by_status"),
    IndexModel(_ORDER, name="by_started_at"),
]


def mongo_uri(config: MongoConfig, environ: dict[str, str] | None = None) -> str:
    """The URI from the configured env var; a ConfigError naming the field when it is unusable."""
    env = os.environ if environ is None else environ
    uri = env.get(config.uri_env, "")
    if not uri:
        raise ConfigError(f"jobstore.mongo.uri_env: environment variable {config.uri_env} is not set "
                          "(it must hold a mongodb:// or mongodb+srv:// URI)")
    if not uri.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError(f"jobstore.mongo.uri_env: {config.uri_env} does not hold a mongodb:// or "
                          "mongodb+srv:// URI")
    return uri


def client_options(config: MongoConfig) -> dict[str, Any]:
    options: dict[str, Any] = {
        "tz_aware": True,
        "appname": "temporal-data-flywheel",
        "connectTimeoutMS": int(config.connect_timeout_s * 1000),
        "serverSelectionTimeoutMS": int(config.server_selection_timeout_s * 1000),
    }
    if config.socket_timeout_s is not None:
        options["socketTimeoutMS"] = int(config.socket_timeout_s * 1000)
    if config.tls_ca_file:
        options["tls"] = True
        options["tlsCAFile"] = config.tls_ca_file
    return options


class AsyncMongoJobStore:
    """The :class:`~flywheel.jobstore.base.AsyncJobStore` over MongoDB. Use it on one event loop."""

    def __init__(self, uri: str, *, database: str = "flywheel", collection: str = "jobs",
                 **client_kwargs: Any) -> None:
        self._client: AsyncMongoClient | None = AsyncMongoClient(uri, **{"tz_aware": True, **client_kwargs})
        self._jobs = self._client[database][collection]

    @classmethod
    def from_config(cls, config: MongoConfig, environ: dict[str, str] | None = None) -> AsyncMongoJobStore:
        return cls(mongo_uri(config, environ), database=config.database, collection=config.collection,
                   **client_options(config))

    async def ensure_indexes(self) -> None:
        """Create the list indexes (idempotent). Also proves the server answers."""
        try:
            await self._jobs.create_indexes(_INDEXES)
        except PyMongoError as exc:
            raise JobStoreError(f"cannot prepare MongoDB job collection: {exc}") from exc

    async def put(self, doc: JobDocument) -> bool:
        fields = {
            "revision": doc.revision,
            "workload_id": doc.workload_id,
            "client_id": doc.client_id,
            "status": status_value(doc.status),
            "started_at": sortable_utc(doc.started_at),
            "document": doc.model_dump(mode="json"),
        }
        try:
            await self._jobs.update_one(
                {"_id": doc.id, "revision": {"$lte": doc.revision}}, {"$set": fields}, upsert=True)
        except DuplicateKeyError:
            return False  # a higher revision is stored: this write is stale
        except PyMongoError as exc:
            raise JobStoreError(f"cannot write job {doc.id}: {exc}") from exc
        return True

    async def get(self, job_id: str) -> JobDocument | None:
        try:
            row = await self._jobs.find_one({"_id": job_id}, {"document": 1})
        except PyMongoError as exc:
            raise JobStoreError(f"cannot read job {job_id}: {exc}") from exc
        return JobDocument.model_validate(row["document"]) if row else None

    async def list(
        self,
        *,
        workload_id: str | None = None,
        client_id: str | None = None,
        status: str | RunStatus | None = None,
        offset: int = 0,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> tuple[list[JobDocument], int]:
        query = {k: v for k, v in (("workload_id", workload_id), ("client_id", client_id),
                                   ("status", status_value(status))) if v is not None}
        try:
            total = await self._jobs.count_documents(query)
            if limit <= 0:  # MongoDB reads limit 0 as "no limit"
                return [], total
            cursor = self._jobs.find(query, {"document": 1}).sort(_ORDER).skip(max(0, offset)).limit(limit)
            rows = await cursor.to_list()
        except PyMongoError as exc:
            raise JobStoreError(f"cannot list jobs: {exc}") from exc
        return [JobDocument.model_validate(r["document"]) for r in rows], total

    async def delete(self, job_id: str) -> bool:
        try:
            result = await self._jobs.delete_one({"_id": job_id})
        except PyMongoError as exc:
            raise JobStoreError(f"cannot delete job {job_id}: {exc}") from exc
        return result.deleted_count > 0

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
