"""Retrieval log records: parsing reasons, normalisation, curation rules and the shipped sample."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

from flywheel.config import CurationConfig
from flywheel.records import RecordError
from flywheel.retrieval.curation import curate
from flywheel.retrieval.records import is_retrieval_record, normalize_retrieval_record

DATA = Path(__file__).resolve().parents[2] / "data"
SAMPLE = DATA / "primary_assistant-aiva-kb.jsonl"
CORPUS = DATA / "primary_assistant-aiva-kb-corpus.jsonl"


def record(**retrieval):
    base = {"query": "How long do I have to return earbuds in Toronto?",
            "results": [{"id": "a", "text": "Return window Canada audio: 30 days.", "score": 0.9},
                        {"id": "b", "text": "Return window US audio: 60 days.", "score": 0.8}],
            "cited_ids": ["a"]}
    base.update(retrieval)
    return {"timestamp": 1.0, "workload_id": "w", "client_id": "c", "retrieval": {k: v for k, v in base.items()
                                                                                 if v is not None}}


def reason(raw) -> str:
    with pytest.raises(RecordError) as info:
        normalize_retrieval_record(raw)
    return info.value.reason


def test_normalised_row_uses_citations_when_no_explicit_label():
    row = normalize_retrieval_record(record())
    assert row["positive_ids"] == ["a"] and row["label_source"] == "cited"
    assert [p["id"] for p in row["results"]] == ["a", "b"]


def test_explicit_label_wins_over_citations():
    row = normalize_retrieval_record(record(relevant_ids=["b"], cited_ids=["a"]))
    assert row["positive_ids"] == ["b"] and row["label_source"] == "explicit"


@pytest.mark.parametrize("change, expected", [
    (dict(query="  "), "empty_query"),
    (dict(results=[]), "no_results"),
    (dict(cited_ids=None), "no_relevance_signal"),
    (dict(cited_ids=["zzz"]), "positive_not_in_results"),
    (dict(results=[{"id": "a", "text": "x", "score": "high"}]), "invalid_format"),
    (dict(results=[{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]), "duplicate_result_ids"),
])
def test_bad_records_have_countable_reasons(change, expected):
    assert reason(record(**change)) == expected


def test_missing_fields_and_non_objects():
    raw = record()
    del raw["client_id"]
    assert reason(raw) == "missing_field"
    assert reason([1, 2]) == "not_an_object"


def test_shape_detection_tells_retrieval_from_chat_records():
    assert is_retrieval_record(record())
    assert not is_retrieval_record({"request": {}, "response": {}, "retrieval": {}})


def test_curation_counts_every_rule_and_redacts_query_and_passages():
    pii = record(query="returns for earbuds? mail me at jane.doe@example.com")
    pii["retrieval"]["results"][1]["text"] += " Call 415-555-0100."
    rows, counts = curate([record(), copy.deepcopy(record()), record(query=""), pii, record(relevant_ids=["b"])],
                          CurationConfig(redact_pii=True))
    assert counts["total_in"] == 5 and counts["kept"] == 3
    assert counts["duplicate"] == 1 and counts["invalid_format"] == 1
    assert counts["invalid_by_reason"] == {"empty_query": 1}
    assert counts["pii_redacted"] == 1 and counts["label_explicit"] == 1 and counts["label_cited"] == 2
    redacted = rows[1]
    assert "[EMAIL]" in redacted["query"] and "example.com" not in redacted["query"]
    assert "[PHONE]" in redacted["results"][1]["text"]
    assert len({r["record_id"] for r in rows}) == 3


def test_same_query_relying_on_other_passages_is_not_a_duplicate():
    rows, counts = curate([record(), record(cited_ids=["b"])], CurationConfig())
    assert counts["duplicate"] == 0 and len(rows) == 2


def test_shipped_sample_is_what_the_generator_writes(tmp_path):
    sys.path.insert(0, str(DATA))
    try:
        import generate_retrieval_samples as gen
    finally:
        sys.path.remove(str(DATA))
    logs, corpus = gen.write_sample(tmp_path)
    assert logs.read_bytes() == SAMPLE.read_bytes()
    assert corpus.read_bytes() == CORPUS.read_bytes()


def test_shipped_sample_curates_with_every_rule_exercised():
    records = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    assert 500 <= len(records) <= 1000
    rows, counts = curate(records, CurationConfig(redact_pii=True))
    assert counts["duplicate"] > 0 and counts["invalid_format"] > 0 and counts["pii_redacted"] > 0
    assert counts["label_explicit"] > 0 and counts["label_cited"] > 0
    assert len(rows) == counts["kept"] >= 0.9 * len(records)
    assert not any("@" in row["query"] for row in rows)


def test_retrieval_logs_go_through_the_same_ingest_and_log_store(tmp_path):
    from flywheel.ingest import ingest_records, load_jsonl
    from flywheel.logstore.sqlite import SQLiteLogStore

    with SQLiteLogStore(tmp_path / "logs.sqlite") as store:
        report = load_jsonl(SAMPLE, store, workload_id="primary_assistant", client_id="aiva-kb")
        assert report.loaded + report.skipped == 640 and report.loaded >= 620
        assert set(report.reasons) <= {"empty_query", "no_results", "no_relevance_signal",
                                       "positive_not_in_results", "invalid_format", "duplicate_result_ids"}
        batch = ingest_records([record(), record(cited_ids=None)], store, workload_id="w2", client_id="c2")
        assert batch.loaded == 1 and batch.reasons == {"no_relevance_signal": 1}
        extracted = list(store.extract("primary_assistant", "aiva-kb"))
    assert len(extracted) == report.loaded
    rows, counts = curate(extracted, CurationConfig(redact_pii=True))
    assert counts["invalid_format"] == 0 and counts["duplicate"] > 0 and rows
