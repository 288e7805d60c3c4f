import json

from test_records import DATA, record

from flywheel.ingest import MAX_REPORTED_ERRORS, ingest_records, load_jsonl
from flywheel.logstore.sqlite import SQLiteLogStore


def lines_of(*records):
    return [r if isinstance(r, str) else json.dumps(r) for r in records]


def test_malformed_lines_are_skipped_with_line_numbers(tmp_path):
    bad_args = record()
    bad_args["response"]["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = "{not json"
    missing = record()
    del missing["response"]
    good = [record(ts=float(i), query=f"q{i}") for i in range(4)]
    path = tmp_path / "logs.jsonl"
    path.write_text("\n".join(lines_of(good[0], "{oops", good[1], missing, "", good[2], bad_args, good[3], "[1, 2]"))
                    + "\n")
    with SQLiteLogStore(tmp_path / "s.sqlite") as store:
        report = load_jsonl(path, store)
        stored = list(store.extract("w", "c"))
    assert report.loaded == 4 and report.skipped == 4
    assert [(e.line, e.reason) for e in report.errors] == [
        (2, "bad_json"), (4, "missing_field"), (7, "arguments_not_json"), (9, "not_an_object")]
    assert report.reasons == {"bad_json": 1, "missing_field": 1, "arguments_not_json": 1, "not_an_object": 1}
    assert "response" in report.errors[1].detail
    # nothing else is lost, and the raw record is stored as given (string arguments stay strings)
    assert sorted(r["request"]["messages"][0]["content"] for r in stored) == ["q0", "q1", "q2", "q3"]
    assert isinstance(stored[0]["response"]["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], str)


def test_ids_are_overridden_and_filled(tmp_path):
    missing_client = record(ts=2.0)  # not identical to record() once the ids are overridden (else a duplicate)
    del missing_client["client_id"]
    with SQLiteLogStore(tmp_path / "s.sqlite") as store:
        report = load_jsonl(lines_of(record(), missing_client), store, workload_id="wl", client_id="cl")
        assert report.loaded == 2
        assert store.count("wl", "cl") == 2 and store.count("w") == 0
        assert {r["client_id"] for r in store.extract("wl", "cl")} == {"cl"}
        # without an override, a record lacking client_id is rejected
        report = load_jsonl(lines_of(missing_client), store)
        assert report.loaded == 0 and report.errors[0].reason == "missing_field"


def test_error_list_is_capped_but_all_counted(tmp_path):
    with SQLiteLogStore(tmp_path / "s.sqlite") as store:
        report = load_jsonl(["{bad"] * (MAX_REPORTED_ERRORS + 25) + lines_of(record()), store, batch_size=1)
    assert report.skipped == MAX_REPORTED_ERRORS + 25
    assert len(report.errors) == MAX_REPORTED_ERRORS
    assert report.loaded == 1


def test_ingest_records_reports_indexes(tmp_path):
    with SQLiteLogStore(tmp_path / "s.sqlite") as store:
        report = ingest_records([record(), {"timestamp": 1}, "nope", record(ts=5)], store)
        assert store.count() == 2
    assert report.loaded == 2
    assert [(e.index, e.line, e.reason) for e in report.errors] == [(1, None, "missing_field"),
                                                                     (2, None, "not_an_object")]


def test_shipped_sample_loads_completely(tmp_path):
    with SQLiteLogStore(tmp_path / "s.sqlite") as store:
        report = load_jsonl(DATA / "primary_assistant-aiva-1.jsonl", store, batch_size=64)
        assert (report.loaded, report.skipped) == (300, 0)
        assert store.count("primary_assistant", "aiva-1") == 300
