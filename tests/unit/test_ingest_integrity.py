"""Ingest loses nothing and duplicates nothing: checked before writing, one transaction, content hashes."""

import json
import sqlite3

import pytest
from test_records import record

from flywheel.ingest import MAX_DEPTH, content_hash, ingest_records, load_jsonl
from flywheel.logstore.sqlite import SQLiteLogStore


def batch(n, start=0):
    return [record(ts=float(start + i), query=f"q{start + i}") for i in range(n)]


def test_resending_a_batch_stores_nothing_and_reports_duplicates(tmp_path):
    with SQLiteLogStore(tmp_path / "s.sqlite") as store:
        first = ingest_records(batch(2000), store)
        again = ingest_records(batch(2000), store)
        overlap = ingest_records(batch(10, start=1995), store)
        assert store.count() == 2005
    assert (first.loaded, first.duplicates) == (2000, 0)
    assert (again.loaded, again.duplicates, again.duplicate_positions[:3]) == (0, 2000, [0, 1, 2])
    assert (overlap.loaded, overlap.duplicates, overlap.duplicate_positions) == (5, 5, [0, 1, 2, 3, 4])


def test_identical_records_within_one_request_are_kept_and_resending_is_still_a_no_op(tmp_path):
    """A client retry logged twice is real traffic (curation decides about it); a resend is not."""
    with SQLiteLogStore(tmp_path / "s.sqlite") as store:
        report = ingest_records([record(), record(), record(ts=2.0)], store)
        assert (report.loaded, report.duplicates) == (3, 0) and store.count() == 3
        again = ingest_records([record(), record(), record(ts=2.0)], store)
        assert (again.loaded, again.duplicates, again.duplicate_positions) == (0, 3, [0, 1, 2])
        one_more_copy = ingest_records([record(), record(), record()], store)
        assert (one_more_copy.loaded, one_more_copy.duplicate_positions) == (1, [0, 1])
        assert store.count() == 4


def test_shipped_sample_reloads_as_a_no_op(tmp_path):
    from test_records import DATA

    path = DATA / "primary_assistant-aiva-1.jsonl"
    with SQLiteLogStore(tmp_path / "s.sqlite") as store:
        first = load_jsonl(path, store, batch_size=64)
        again = load_jsonl(path, store, batch_size=50)
        assert store.count() == 300
    assert (first.loaded, again.loaded, again.duplicates) == (300, 0, 300)


def test_key_order_does_not_defeat_the_hash():
    a = record()
    b = dict(reversed(list(a.items())))
    assert content_hash(a) == content_hash(b) != content_hash(record(ts=101.0))


def test_one_bad_record_in_the_middle_commits_the_good_ones_once(tmp_path):
    """The issue's case: 2,000 records, one unstorable one at 1,500 (a lone surrogate)."""
    records = batch(2000)
    records[1500]["request"]["messages"][0]["content"] = "bad \ud800 text"
    with SQLiteLogStore(tmp_path / "s.sqlite") as store:
        report = ingest_records(records, store)
        assert store.count() == 1999
        resent = ingest_records(records, store)
        assert store.count() == 1999
    assert (report.loaded, report.skipped) == (1999, 1)
    assert [(e.index, e.reason) for e in report.errors] == [(1500, "not_storable")]
    assert (resent.loaded, resent.duplicates, resent.skipped) == (0, 1999, 1)


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda r: r.__setitem__("timestamp", float("nan")), "not_storable"),
    (lambda r: r["request"].__setitem__("extra", float("inf")), "not_storable"),
    (lambda r: r["request"].__setitem__("deep", json.loads("[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5))),
     "too_deep"),
    (lambda r: r.__setitem__("response", "str"), "invalid_format"),
])
def test_unstorable_records_are_reported_not_raised(tmp_path, mutate, reason):
    bad = record()
    mutate(bad)
    with SQLiteLogStore(tmp_path / "s.sqlite") as store:
        report = ingest_records([record(ts=1.0), bad], store)
        assert store.count() == 1
    assert [(e.index, e.reason) for e in report.errors] == [(1, reason)]


def test_a_failing_write_stores_nothing_of_the_request(tmp_path):
    path = tmp_path / "s.sqlite"
    with SQLiteLogStore(path) as store:
        # A store-side failure on the 3rd record (e.g. disk full): the request must leave no trace.
        conn = sqlite3.connect(path)
        conn.execute("CREATE TRIGGER boom BEFORE INSERT ON logs WHEN NEW.timestamp = 3.0 "
                     "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        conn.commit()
        conn.close()
        with pytest.raises(sqlite3.IntegrityError):
            ingest_records(batch(5), store)
        assert store.count() == 0


def test_file_reload_after_a_partial_load_completes_it(tmp_path):
    path = tmp_path / "logs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in batch(50)))
    with SQLiteLogStore(tmp_path / "s.sqlite") as store:
        lines = path.read_text().splitlines(keepends=True)
        load_jsonl(lines[:20], store, batch_size=7)  # a load that stopped part-way
        report = load_jsonl(path, store, batch_size=7)
        assert store.count() == 50
    assert (report.loaded, report.duplicates) == (30, 20)


def test_invalid_utf8_in_a_file_is_reported_by_line(tmp_path):
    path = tmp_path / "logs.jsonl"
    good = json.dumps(record()).encode()
    bad = json.dumps(record(ts=2.0, query="QQQ")).encode().replace(b"QQQ", b"Q\xff\xfeQ")
    path.write_bytes(good + b"\n" + bad + b"\n")
    with SQLiteLogStore(tmp_path / "s.sqlite") as store:
        report = load_jsonl(path, store)
    assert report.loaded == 1 and [(e.line, e.reason) for e in report.errors] == [(2, "not_storable")]


def test_stores_created_before_hashes_are_migrated(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE logs (id INTEGER PRIMARY KEY, workload_id TEXT, client_id TEXT, "
                       "timestamp REAL, record TEXT NOT NULL);"
                       "INSERT INTO logs (workload_id, client_id, timestamp, record) VALUES ('w', 'c', 1, '{}');")
    conn.close()
    with SQLiteLogStore(path) as store:
        report = ingest_records(batch(3), store)
        assert report.loaded == 3 and store.count() == 4
        assert ingest_records(batch(3), store).duplicates == 3
