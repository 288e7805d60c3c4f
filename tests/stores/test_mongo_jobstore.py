"""MongoDB specifics: indexes, the async face, config and connection errors (SecantusDB over TCP)."""

from __future__ import annotations

import uuid

import pytest

from flywheel.config import ConfigError, MongoConfig, load_settings
from flywheel.jobdoc import JobDocument, RunStatus
from flywheel.jobstore import AsyncJobStore, JobStoreError, open_jobstore

pytest.importorskip("pymongo", reason="pymongo (prod extra) is not installed")


def _doc(n: int, revision: int = 0) -> JobDocument:
    return JobDocument(id=f"job{n}", workload_id="w", client_id="c", status=RunStatus.running, revision=revision)


async def test_async_store_indexes_and_revision(mongo_uri):
    from pymongo import AsyncMongoClient

    from flywheel.jobstore.mongo import AsyncMongoJobStore

    database = f"t{uuid.uuid4().hex[:12]}"
    store = AsyncMongoJobStore(mongo_uri, database=database)
    assert isinstance(store, AsyncJobStore)
    try:
        await store.ensure_indexes()
        await store.ensure_indexes()  # idempotent
        assert await store.put(_doc(1, revision=2)) is True
        assert await store.put(_doc(1, revision=1)) is False
        assert (await store.get("job1")).revision == 2
        raw = AsyncMongoClient(mongo_uri)
        try:
            names = {ix["name"] async for ix in await raw[database]["jobs"].list_indexes()}
            stored = await raw[database]["jobs"].find_one({"_id": "job1"})
        finally:
            await raw.close()
        assert {"by_workload_client", "by_status", "by_started_at"} <= names
        assert stored["revision"] == 2 and stored["status"] == "running" and stored["document"]["id"] == "job1"
    finally:
        await store.close()
        await store.close()


def test_open_jobstore_mongo_from_settings(mongo_uri, monkeypatch):
    monkeypatch.setenv("TEST_MONGO_URI", mongo_uri)
    settings = load_settings(environ={}, overrides={"jobstore": {"kind": "mongo", "mongo": {
        "uri_env": "TEST_MONGO_URI", "database": f"t{uuid.uuid4().hex[:12]}", "server_selection_timeout_s": 5}}})
    store = open_jobstore(settings)
    try:
        assert store.put(_doc(1)) is True
        assert store.list(workload_id="w")[1] == 1
    finally:
        store.close()
    with pytest.raises(JobStoreError, match="closed"):
        store.get("job1")


def test_missing_or_bad_uri_names_the_field(monkeypatch):
    monkeypatch.delenv("FLYWHEEL_MONGO_URI", raising=False)
    settings = load_settings(environ={}, overrides={"jobstore": {"kind": "mongo"}})
    with pytest.raises(ConfigError, match=r"jobstore\.mongo\.uri_env.*FLYWHEEL_MONGO_URI"):
        open_jobstore(settings)
    monkeypatch.setenv("FLYWHEEL_MONGO_URI", "http://not-mongo")
    with pytest.raises(ConfigError, match=r"jobstore\.mongo\.uri_env"):
        open_jobstore(settings)


def test_unreachable_server_fails_at_open(monkeypatch):
    from tests.helpers.store_servers import free_port

    monkeypatch.setenv("FLYWHEEL_MONGO_URI", f"mongodb://127.0.0.1:{free_port()}/")
    settings = load_settings(environ={}, overrides={"jobstore": {"kind": "mongo", "mongo": {
        "server_selection_timeout_s": 0.5, "connect_timeout_s": 0.5}}})
    with pytest.raises(JobStoreError, match="cannot prepare MongoDB"):
        open_jobstore(settings)


@pytest.mark.parametrize("field,value,needle", [
    ("uri_env", "MONGO URI", "environment variable name"),
    ("database", "my.db", "invalid MongoDB name"),
    ("collection", "", "invalid MongoDB name"),
    ("server_selection_timeout_s", 0, "greater than 0"),
])
def test_config_is_validated_naming_the_field(field, value, needle):
    with pytest.raises(ConfigError, match=rf"jobstore\.mongo\.{field}.*{needle}"):
        load_settings(environ={}, overrides={"jobstore": {"kind": "mongo", "mongo": {field: value}}})
    assert MongoConfig().uri_env == "FLYWHEEL_MONGO_URI"
