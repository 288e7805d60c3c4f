"""What NeMo's retriever jobs read and report, translated from and to ours (flywheel/retrieval/nemo_formats.py)."""

from __future__ import annotations

import json

import pytest

from flywheel.platforms.nemo_v1.datasets import repo_name
from flywheel.retrieval.nemo_formats import (
    BEIR_CORPUS,
    BEIR_QRELS,
    BEIR_QUERIES,
    beir_files,
    customizer_triplets,
    missing_notes,
    query_ids,
    requested_metrics,
    scores_from_results,
)

CORPUS = [{"id": "p1", "text": "refunds take 5 days"}, {"id": "p2", "text": "delivery to the UK"},
          {"id": "p3", "text": "returns are free"}]
EVAL = [{"record_id": "r1", "query": "how long for a refund", "positive_ids": ["p1"]},
        {"record_id": "r1", "query": "ship to london?", "positive_ids": ["p2", "p9"]},  # p9: not in the corpus
        {"query": "free returns", "positive_ids": ["p3", "p1"]}]


def test_beir_files_hold_every_passage_every_query_and_one_qrel_per_known_positive():
    files = beir_files(EVAL, CORPUS)
    corpus = [json.loads(line) for line in files[BEIR_CORPUS].decode().splitlines()]
    queries = [json.loads(line) for line in files[BEIR_QUERIES].decode().splitlines()]
    assert corpus == [{"_id": p["id"], "title": "", "text": p["text"]} for p in CORPUS]
    assert [q["_id"] for q in queries] == ["r1", "r1-1", "q2"]  # unique ids, record ids kept where possible
    assert [q["text"] for q in queries] == [r["query"] for r in EVAL]
    assert files[BEIR_QRELS].decode().splitlines() == [
        "query-id\tcorpus-id\tscore", "r1\tp1\t1", "r1-1\tp2\t1", "q2\tp3\t1", "q2\tp1\t1"]
    assert query_ids(EVAL) == ["r1", "r1-1", "q2"]


def test_a_query_without_any_positive_in_the_corpus_is_refused():
    with pytest.raises(ValueError, match="no positive passage"):
        beir_files([{"record_id": "r", "query": "q", "positive_ids": ["gone"]}], CORPUS)


def test_customizer_triplets_keep_only_query_pos_doc_neg_doc():
    data = customizer_triplets([{"record_id": "r", "query": "q", "pos_id": "p1", "pos_doc": "a",
                                 "neg_ids": ["p2"], "neg_doc": ["b"], "negatives_above_positive": 1}])
    assert [json.loads(line) for line in data.decode().splitlines()] == [{"query": "q", "pos_doc": "a",
                                                                          "neg_doc": ["b"]}]


def test_requested_metrics_are_the_pytrec_measures_we_can_map():
    assert requested_metrics([1, 5, 10]) == {"recall_5": "recall_at_5", "ndcg_cut_5": "ndcg_at_5",
                                             "recall_10": "recall_at_10", "ndcg_cut_10": "ndcg_at_10",
                                             "recip_rank": "mrr_at_10"}
    notes = missing_notes([1, 5, 10])
    assert {"recall_at_1", "ndcg_at_1", "mrr_at_1", "mrr_at_5", "production_agreement_at_10"} <= set(notes)
    assert "recall_at_5" not in notes and "mrr_at_10" not in notes


def test_scores_are_read_with_or_without_a_metric_prefix_and_unknown_ones_ignored():
    result = {"tasks": {"t": {"metrics": {
        "retriever.recall_5": {"scores": {"recall_5": {"value": 0.8, "stats": {}}}},
        "ndcg_cut_10": {"scores": {"ndcg_cut_10": {"value": 0.7}}},
        "retriever.recip_rank": {"scores": {"recip_rank": {"value": 0.6}}},
        "retriever.P_5": {"scores": {"P_5": {"value": 0.2}}},
        "retriever.recall_10": {"scores": {"recall_10": {"value": None}}}}}}}
    assert scores_from_results(result, [1, 5, 10]) == {"recall_at_5": 0.8, "ndcg_at_10": 0.7, "mrr_at_10": 0.6}


@pytest.mark.parametrize("key", ["flywheel-primary_assistant-aiva-kb-280d00f4-cand-nvidia-llama-3.2-nv-embedqa-1b-v2"
                                 "-86f0bc17-mine", "a--b..c", "x" * 200])
def test_datastore_repo_names_never_carry_double_separators(key):
    name = repo_name(key)
    assert "--" not in name and ".." not in name and len(name) <= 90
    assert repo_name(key) == name  # deterministic
