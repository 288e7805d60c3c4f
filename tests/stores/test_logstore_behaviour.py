"""One behavioural suite for every log store: SQLite, Elasticsearch-flavoured (through the contract
emulator, see tests/emulators/es_contract_emulator.py) and OpenSearch-flavoured (osmem-server over HTTP).
Same records in, same records, order, filters and counts out."""

from __future__ import annotations

import uuid

import pytest

from flywheel.config import ElasticsearchConfig
from flywheel.logstore import LogStore
from flywheel.logstore.sqlite import SQLiteLogStore


def rec(ts, n: int, *, workload: str = "w", client: str = "c") -> dict:
    return {"timestamp": ts, "workload_id": workload, "client_id": client,
            "request": {"messages": [{"role": "user", "content": f"q{n}"}], "tools": [{"type": "function"}]},
            "response": {"choices": [{"message": {"content": f"a{n}"}}], "n": n}}


def es_config(url: str, flavor: str, **extra) -> ElasticsearchConfig:
    return ElasticsearchConfig(hosts=[url], flavor=flavor, index=f"logs-{uuid.uuid4().hex[:10]}", max_retries=0,
                               **extra)


@pytest.fixture(params=["sqlite", "opensearch", "elasticsearch"])
def make_store(request, tmp_path):
    opened = []

    def factory(**extra) -> LogStore:
        if request.param == "sqlite":
            store = SQLiteLogStore(tmp_path / f"logs{len(opened)}.sqlite", fetch_batch=extra.get("page_size", 500))
        else:
            from flywheel.logstore.elasticsearch import ElasticsearchLogStore

            url = request.getfixturevalue("opensearch_url" if request.param == "opensearch" else "es_contract_url")
            store = ElasticsearchLogStore(es_config(url, request.param, **extra))
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


def ids(records) -> list:
    return [r["response"]["n"] for r in records]


def test_records_come_back_exactly_as_given_newest_first(make_store):
    store = make_store()
    given = [rec(100 + n, n) for n in range(5)]
    assert store.add(given) == 5
    assert list(store.extract("w", "c")) == given[::-1]


def test_ties_are_latest_inserted_first_across_pages_and_calls(make_store):
    store = make_store(page_size=3)
    store.add([rec(200, n) for n in range(4)] + [rec(100, 10)])
    store.add([rec(200, n) for n in range(4, 8)] + [rec(300, 20)])
    assert ids(store.extract("w", "c")) == [20, 7, 6, 5, 4, 3, 2, 1, 0, 10]


def test_filters_bounds_and_limit(make_store):
    store = make_store(page_size=2)
    store.add([rec(100 + n, n) for n in range(10)] + [rec(150, 50, client="other"), rec(150, 51, workload="x")])
    assert ids(store.extract("w", "c", start=103, end=107)) == [6, 5, 4, 3]
    assert ids(store.extract("w", "c", start=103.5, end=106.5)) == [6, 5, 4]
    assert ids(store.extract("w", "c", start=108)) == [9, 8]
    assert ids(store.extract("w", "c", end=101)) == [0]
    assert ids(store.extract("w", "c", limit=3)) == [9, 8, 7]
    assert ids(store.extract("w", "c", start=101, limit=2)) == [9, 8]
    assert ids(store.extract("w", "other")) == [50]
    assert list(store.extract("nobody", "c")) == []
    assert store.count() == 12
    assert store.count("w") == 11
    assert store.count("w", "c") == 10
    assert store.count(client_id="other") == 1


def test_iso_timestamps_and_unusable_ones(make_store):
    store = make_store()
    store.add([rec("1970-01-01T00:01:40Z", 1), rec(101.25, 2), rec("not a time", 3), rec(None, 4),
               rec("1970-01-01T00:01:42+00:00", 5)])
    assert ids(store.extract("w", "c")) == [5, 2, 1]
    assert ids(store.extract("w", "c", start=101, end=102)) == [2]
    assert store.count("w", "c") == 5  # kept, counted, never extracted


def test_stopping_early_then_reading_again(make_store):
    store = make_store(page_size=2)
    store.add([rec(100 + n, n) for n in range(7)])
    stream = store.extract("w", "c")
    assert [next(stream)["response"]["n"] for _ in range(3)] == [6, 5, 4]
    stream.close()
    assert ids(store.extract("w", "c")) == [6, 5, 4, 3, 2, 1, 0]


def test_empty_store(make_store):
    store = make_store()
    assert isinstance(store, LogStore)
    assert list(store.extract("w", "c")) == []
    assert store.count() == 0
    assert store.add([]) == 0


def test_add_unique_stores_each_content_hash_once(make_store):
    store = make_store()
    first = store.add_unique([("h1", rec(100, 1)), ("h2", rec(101, 2)), ("h1", rec(100, 1))])
    assert first == [True, True, False]  # a repeat within the call is a duplicate too
    assert store.add_unique([("h2", rec(101, 2)), ("h3", rec(102, 3))]) == [False, True]
    assert ids(store.extract("w", "c")) == [3, 2, 1] and store.count() == 3


def test_ingest_resend_is_a_no_op_on_every_store(make_store):
    from flywheel.ingest import ingest_records
    from tests.helpers.api import log_record

    store = make_store()
    records = [log_record(n) for n in range(5)] + [log_record(0)]  # a retry logged twice is kept
    report = ingest_records(records, store, workload_id="w", client_id="c")
    again = ingest_records(records, store, workload_id="w", client_id="c")
    assert (report.loaded, report.duplicates) == (6, 0)
    assert (again.loaded, again.duplicates) == (0, 6)
    assert store.count("w", "c") == 6
