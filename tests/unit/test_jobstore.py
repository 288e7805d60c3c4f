from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from flywheel.config import ConfigError, load_settings
from flywheel.jobdoc import DatasetDoc, JobDocument, NimDoc, RunStatus
from flywheel.jobstore import JobStore, SQLiteJobStore, default_jobstore_path, open_jobstore

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def make_doc(n: int, *, workload: str = "w1", client: str = "c1", status=RunStatus.pending) -> JobDocument:
    return JobDocument(
        id=f"{n:024x}",
        workload_id=workload,
        client_id=client,
        status=status,
        started_at=T0 + timedelta(minutes=n),
    )


@pytest.fixture
def store(tmp_path):
    s = SQLiteJobStore(tmp_path / "jobs.sqlite")
    yield s
    s.close()


def test_put_get_roundtrip_keeps_nested_document(store):
    doc = make_doc(1)
    doc.nims.append(NimDoc(model_name="m"))
    doc.datasets.append(DatasetDoc(name="eval", num_records=10, nmp_uri="file:///x"))
    doc.curation = {"kept": 10, "dropped": {"no_tool_call": 2}}
    store.put(doc)
    got = store.get(doc.id)
    assert got == doc
    assert got.started_at.tzinfo is not None


def test_get_missing_returns_none(store):
    assert store.get("nope") is None


def test_put_upserts(store):
    doc = make_doc(1)
    store.put(doc)
    doc.status = RunStatus.completed
    doc.error = "boom"
    store.put(doc)
    items, total = store.list()
    assert total == 1
    assert items[0].status is RunStatus.completed and items[0].error == "boom"
    assert store.list(status="pending") == ([], 0)
    assert store.list(status=RunStatus.completed)[1] == 1


def test_list_orders_newest_first_and_paginates(store):
    for n in range(7):
        store.put(make_doc(n))
    items, total = store.list(offset=0, limit=3)
    assert total == 7
    assert [d.id for d in items] == [f"{n:024x}" for n in (6, 5, 4)]
    items, total = store.list(offset=6, limit=3)
    assert [d.id for d in items] == [f"{0:024x}"] and total == 7
    assert store.list(offset=10, limit=3) == ([], 7)


def test_list_filters(store):
    store.put(make_doc(1, workload="a", client="x"))
    store.put(make_doc(2, workload="a", client="y", status=RunStatus.running))
    store.put(make_doc(3, workload="b", client="x", status=RunStatus.running))
    assert store.list(workload_id="a")[1] == 2
    assert store.list(client_id="x")[1] == 2
    assert store.list(workload_id="a", status="running")[0][0].id == f"{2:024x}"
    assert store.list(workload_id="zzz") == ([], 0)


def test_naive_and_aware_timestamps_sort_together(store):
    naive = make_doc(1)
    naive.started_at = datetime(2026, 11, 1, 13, 0)  # taken as UTC
    store.put(naive)
    store.put(make_doc(2))  # 12:02 UTC
    assert [d.id for d in store.list()[0]] == [naive.id, f"{2:024x}"]


def test_delete(store):
    store.put(make_doc(1))
    assert store.delete(f"{1:024x}") is True
    assert store.delete(f"{1:024x}") is False
    assert store.get(f"{1:024x}") is None


def test_persists_across_reopen_and_uses_wal(tmp_path):
    path = tmp_path / "sub" / "jobs.sqlite"
    with SQLiteJobStore(path) as s:
        s.put(make_doc(1))
        mode = s._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode.lower() == "wal"
    with SQLiteJobStore(path) as s:
        assert s.get(f"{1:024x}") is not None


def test_concurrent_writers(store):
    def write(base: int) -> None:
        for n in range(base, base + 20):
            store.put(make_doc(n))

    threads = [threading.Thread(target=write, args=(b,)) for b in (0, 100, 200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.list(limit=1)[1] == 60


def test_close_is_idempotent(tmp_path):
    s = SQLiteJobStore(tmp_path / "j.sqlite")
    s.close()
    s.close()


def test_open_jobstore_default_path(tmp_path):
    settings = load_settings(environ={}, overrides={"platform": {"data_dir": str(tmp_path)}})
    assert default_jobstore_path(settings) == tmp_path / "jobs.sqlite"
    store = open_jobstore(settings)
    try:
        assert isinstance(store, JobStore)
        store.put(make_doc(1))
        assert (tmp_path / "jobs.sqlite").exists()
    finally:
        store.close()


def test_open_jobstore_explicit_path(tmp_path):
    settings = load_settings(environ={}, overrides={"jobstore": {"path": str(tmp_path / "x.db")}})
    store = open_jobstore(settings)
    store.close()
    assert (tmp_path / "x.db").exists()


def test_open_jobstore_mongo_is_a_clear_error():
    settings = load_settings(environ={}, overrides={"jobstore": {"kind": "mongo"}})
    with pytest.raises(ConfigError, match="mongo"):
        open_jobstore(settings)


def test_open_jobstore_rejects_elasticsearch():
    settings = load_settings(environ={}, overrides={"jobstore": {"kind": "elasticsearch"}})
    with pytest.raises(ConfigError, match="not a job store"):
        open_jobstore(settings)
