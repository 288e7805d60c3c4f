import inspect

import pytest
from test_records import record

from flywheel.config import ConfigError, Settings
from flywheel.logstore import LogStore, open_logstore
from flywheel.logstore.sqlite import SQLiteLogStore


@pytest.fixture
def store(tmp_path):
    s = SQLiteLogStore(tmp_path / "logs.sqlite", fetch_batch=7)
    s.add([record(ts=float(t), query=f"q{t}") for t in range(50)])
    s.add([record(ts=float(t), client_id="other") for t in range(5)])
    s.add([record(ts=3.0, workload_id="w2")])
    yield s
    s.close()


def queries(records):
    return [r["request"]["messages"][0]["content"] for r in records]


def test_extract_is_a_lazy_generator_newest_first(store):
    result = store.extract("w", "c")
    assert inspect.isgenerator(result)
    first = next(result)
    assert first["timestamp"] == 49.0
    rest = list(result)
    assert [r["timestamp"] for r in rest] == [float(t) for t in range(48, -1, -1)]  # across 8 fetch batches


def test_filters_window_and_limit(store):
    assert queries(store.extract("w", "c", start=10, end=13)) == ["q12", "q11", "q10"]
    assert queries(store.extract("w", "c", limit=3)) == ["q49", "q48", "q47"]
    assert len(list(store.extract("w", "c", limit=10))) == 10  # limit larger than a fetch batch
    assert len(list(store.extract("w", "c", start=45, limit=100))) == 5
    assert len(list(store.extract("w", "other"))) == 5
    assert list(store.extract("nope", "c")) == []


def test_equal_timestamps_are_not_lost_across_batches(tmp_path):
    with SQLiteLogStore(tmp_path / "s.sqlite", fetch_batch=3) as s:
        s.add([record(ts=1.0, query=f"q{i}") for i in range(10)])
        assert sorted(queries(s.extract("w", "c"))) == sorted(f"q{i}" for i in range(10))


def test_count(store):
    assert store.count() == 56
    assert store.count("w") == 55
    assert store.count("w", "c") == 50
    assert store.count(client_id="other") == 5


def test_records_are_stored_as_given_and_iso_timestamps_indexed(tmp_path):
    raw = record()
    raw["timestamp"] = "1970-01-01T00:01:40Z"
    raw["custom"] = {"keep": [1, None]}
    with SQLiteLogStore(tmp_path / "s.sqlite") as s:
        assert s.add([raw]) == 1
        assert list(s.extract("w", "c", start=99, end=101)) == [raw]


def test_open_logstore_defaults_to_data_dir(tmp_path):
    settings = Settings.model_validate({"platform": {"data_dir": str(tmp_path)}})
    s = open_logstore(settings)
    try:
        assert isinstance(s, LogStore)
        assert s.path == str(tmp_path / "logs.sqlite")
    finally:
        s.close()


def test_open_logstore_unavailable_kind():
    settings = Settings.model_validate({"logstore": {"kind": "mongo"}})
    with pytest.raises(ConfigError, match=r"logstore.kind"):
        open_logstore(settings)
