"""One behavioural suite for every job store: SQLite (embedded) and MongoDB (over the real wire protocol,
against SecantusDB). Same documents in, same pages, order, totals and revision rule out."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from flywheel.jobdoc import DatasetDoc, EvaluationDoc, JobDocument, NimDoc, RunStatus
from flywheel.jobstore import JobStore, SQLiteJobStore, next_revision

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def make_doc(n: int, *, workload: str = "w1", client: str = "c1", status=RunStatus.pending,
             started: datetime | str | None = "auto", revision: int = 0) -> JobDocument:
    return JobDocument(id=f"{n:024x}", workload_id=workload, client_id=client, status=status,
                       started_at=T0 + timedelta(minutes=n) if started == "auto" else started, revision=revision)


def open_mongo(uri: str, database: str) -> JobStore:
    from flywheel.jobstore.mongo import AsyncMongoJobStore
    from flywheel.jobstore.sync import SyncJobStore

    inner = AsyncMongoJobStore(uri, database=database, serverSelectionTimeoutMS=5000)
    store = SyncJobStore(inner, name="test-mongo")
    store.call(inner.ensure_indexes())
    return store


@pytest.fixture(params=["sqlite", "mongo"])
def store_factory(request, tmp_path):
    """A function opening the store under test on the same backing data each time (to test reopening)."""
    opened: list[JobStore] = []
    if request.param == "sqlite":
        def factory() -> JobStore:
            opened.append(SQLiteJobStore(tmp_path / "jobs.sqlite"))
            return opened[-1]
    else:
        uri = request.getfixturevalue("mongo_uri")
        database = f"t{uuid.uuid4().hex[:12]}"

        def factory() -> JobStore:
            opened.append(open_mongo(uri, database))
            return opened[-1]
    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory) -> JobStore:
    return store_factory()


def test_is_a_jobstore(store):
    assert isinstance(store, JobStore)


def test_roundtrip_keeps_the_whole_document(store):
    doc = make_doc(1)
    doc.nims.append(NimDoc(model_name="m", evaluations=[EvaluationDoc(eval_type="base-eval", scores={"f": 0.5},
                                                                      per_tool={"pkg.fn": {"n": 3}})]))
    doc.datasets.append(DatasetDoc(name="eval", num_records=10, nmp_uri="file:///x"))
    doc.curation = {"kept": 10, "dropped": {"no_tool_call": 2}}
    assert store.put(doc) is True
    got = store.get(doc.id)
    assert got == doc
    assert got.started_at.tzinfo is not None
    assert store.get("missing") is None


def test_list_newest_first_undated_last_id_breaks_ties(store):
    same = T0 + timedelta(hours=5)
    docs = [make_doc(1), make_doc(3), make_doc(2), make_doc(7, started=None), make_doc(5, started=same),
            make_doc(6, started=same), make_doc(8, started=None)]
    for doc in random.Random(4).sample(docs, len(docs)):
        store.put(doc)
    items, total = store.list()
    assert total == 7
    assert [d.id for d in items] == [make_doc(n).id for n in (6, 5, 3, 2, 1, 8, 7)]


def test_list_filters_and_total(store):
    for n in range(1, 7):
        store.put(make_doc(n, workload="wa" if n % 2 else "wb", client="c1" if n < 4 else "c2",
                           status=RunStatus.completed if n in (2, 5) else RunStatus.running))
    assert {d.id for d in store.list(workload_id="wa")[0]} == {make_doc(n).id for n in (1, 3, 5)}
    assert store.list(workload_id="wa", client_id="c2")[1] == 1
    assert [d.id for d in store.list(status="completed")[0]] == [make_doc(5).id, make_doc(2).id]
    assert store.list(status=RunStatus.running)[1] == 4
    assert store.list(workload_id="nobody") == ([], 0)


def test_paging(store):
    for n in range(10):
        store.put(make_doc(n))
    page1, total = store.list(limit=4)
    page2, _ = store.list(offset=4, limit=4)
    page3, _ = store.list(offset=8, limit=4)
    assert total == 10
    assert [d.id for d in page1 + page2 + page3] == [make_doc(n).id for n in range(9, -1, -1)]
    assert store.list(offset=20) == ([], 10)
    assert store.list(limit=0) == ([], 10)


def test_delete(store):
    store.put(make_doc(1))
    assert store.delete(make_doc(1).id) is True
    assert store.delete(make_doc(1).id) is False
    assert store.get(make_doc(1).id) is None
    assert store.list() == ([], 0)


def test_a_stale_write_never_overwrites_a_newer_revision(store):
    newer = make_doc(1, status=RunStatus.completed, revision=5)
    assert store.put(newer) is True
    late = make_doc(1, status=RunStatus.running, revision=4)
    assert store.put(late) is False
    assert store.get(newer.id) == newer
    assert store.list(status="running") == ([], 0)  # the indexed copies were not touched either
    again = newer.model_copy(update={"error": "same revision, rewritten"})
    assert store.put(again) is True  # the same revision may be rewritten (an idempotent retry)
    assert store.get(newer.id).error == "same revision, rewritten"
    assert store.put(next_revision(late, store.get(late.id))) is True
    assert store.get(late.id).revision == 6 and store.get(late.id).status is RunStatus.running


def test_concurrent_writers_leave_the_highest_revision(store):
    revisions = list(range(1, 41))
    random.Random(7).shuffle(revisions)
    results: dict[int, bool] = {}

    def write(chunk: list[int]) -> None:
        for rev in chunk:
            results[rev] = store.put(make_doc(1, revision=rev, status=RunStatus.running).model_copy(
                update={"error": f"rev {rev}"}))

    threads = [threading.Thread(target=write, args=(revisions[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = store.get(make_doc(1).id)
    assert got.revision == 40 and got.error == "rev 40"
    assert results[40] is True
    assert store.list()[1] == 1


def test_documents_survive_reopening(store_factory):
    first = store_factory()
    first.put(make_doc(1, revision=3))
    first.close()
    first.close()  # idempotent
    second = store_factory()
    assert second.get(make_doc(1).id).revision == 3
    assert second.put(make_doc(1, revision=2)) is False


def test_sqlite_store_from_before_revisions_gains_the_column(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    old = make_doc(1)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, workload_id TEXT NOT NULL, client_id TEXT NOT NULL, "
                 "status TEXT NOT NULL, started_at TEXT, document TEXT NOT NULL)")
    conn.execute("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?)",
                 (old.id, old.workload_id, old.client_id, "pending", None, old.model_dump_json()))
    conn.commit()
    conn.close()
    with SQLiteJobStore(path) as store:
        assert store.get(old.id) == old
        assert store.put(make_doc(1, revision=1, status=RunStatus.running)) is True
        assert store.put(make_doc(1, revision=0)) is False
        assert store.get(old.id).status is RunStatus.running
