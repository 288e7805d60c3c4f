"""Corpus snapshot, leakage-free splits and hard-negative mining (vectors built by hand, no model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flywheel.config import CurationConfig, DataSplitConfig
from flywheel.retrieval.corpus import Corpus, build_corpus, read_passages
from flywheel.retrieval.mining import mine_triplets
from flywheel.retrieval.prepare import prepare_retrieval_datasets
from flywheel.retrieval.splits import groups_of, shared_across_splits, split_retrieval_rows
from flywheel.splits import InsufficientData

DATA = Path(__file__).resolve().parents[2] / "data"


def row(i, query, positives, results=None, ts=None):
    results = results or [{"id": p, "text": f"text of {p}"} for p in positives]
    return {"record_id": f"r{i}", "timestamp": float(ts if ts is not None else i), "query": query,
            "positive_ids": positives, "results": results}


def test_corpus_newest_logged_text_wins_and_export_wins_over_logs():
    rows = [row(1, "q", ["a"], [{"id": "a", "text": "new"}], ts=5),
            row(2, "q2", ["a"], [{"id": "a", "text": "old"}], ts=1), row(3, "q3", ["b"])]
    corpus = build_corpus(rows)
    assert corpus.texts[corpus.position["a"]] == "new" and corpus.counts["text_changed"] == 1
    exported = build_corpus(rows, [{"id": "a", "text": "export"}, {"id": "z", "text": "only in export"}])
    assert exported.ids == ["a", "b", "z"] and exported.texts[0] == "export"
    assert exported.sha256 != corpus.sha256
    assert Corpus.from_rows(exported.rows()).sha256 == exported.sha256


def test_read_passages_names_the_bad_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "a", "text": "x"}\n{"id": 3}\n')
    with pytest.raises(ValueError, match=r"c\.jsonl:2"):
        read_passages(path)


def test_groups_join_rows_sharing_a_query_or_a_positive():
    rows = [row(0, "Q one", ["a"]), row(1, "q ONE.", ["b"]), row(2, "other", ["b"]), row(3, "alone", ["c"])]
    assert groups_of(rows) == [[0, 1, 2], [3]]


def test_split_has_no_leakage_and_is_seeded():
    # Queries repeat (q0..q149) and now and then a row cites the next query's passage: groups of 2-8 rows.
    rows = [row(i, f"query {i % 150}", [f"p{(i + (i % 37 == 0)) % 150}"]) for i in range(400)]
    config = DataSplitConfig(eval_size=80, val_ratio=0.1, min_total_records=10, random_seed=7)
    result = split_retrieval_rows(rows, config)
    assert shared_across_splits(result.splits) == {"queries": set(), "positives": set()}
    assert sum(len(v) for v in result.splits.values()) == 400
    assert 80 <= result.counts["eval"] < 80 + result.counts["largest_group"]
    assert result.counts["train"] > result.counts["val"] > 0
    again = split_retrieval_rows(rows, config)
    assert again.record_ids() == result.record_ids()
    other = split_retrieval_rows(rows, config.model_copy(update={"random_seed": 8}))
    assert other.record_ids() != result.record_ids()


def test_split_refuses_too_few_rows():
    with pytest.raises(InsufficientData):
        split_retrieval_rows([row(0, "q", ["a"])], DataSplitConfig(min_total_records=5))


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_mining_prefers_negatives_ranked_above_the_positive_and_skips_same_text():
    corpus = Corpus(["pos", "dup", "n1", "n2", "n3", "far"],
                    ["The answer.", "the   ANSWER.", "near 1", "near 2", "near 3", "far away"])
    vectors = _unit([[1, 0.0, 0], [1, 0.05, 0], [1, 0.1, 0], [1, 0.2, 0], [1, 0.3, 0], [0, 0, 1]])
    # The query sits closest to n1 and n2 (ranked above the positive), then dup, pos, n3.
    query = _unit([[1, 0.14, 0]])
    rows = [{"record_id": "r", "query": "q", "positive_ids": ["pos"]}]
    mined = mine_triplets(rows, corpus, vectors, query, num_negatives=3, search_depth=6)
    (t,) = mined.triplets
    assert t["neg_ids"][:2] == ["n1", "n2"] and t["negatives_above_positive"] == 2
    assert "dup" not in t["neg_ids"] and "pos" not in t["neg_ids"]
    assert t["neg_ids"][2] == "n3"  # filled with the nearest one below the positive
    assert mined.counts["identical_text_skipped"] == 1 and mined.counts["triplets_with_negative_above"] == 1


def test_mining_counts_positives_missing_from_the_corpus():
    corpus = Corpus(["a", "b"], ["a", "b"])
    mined = mine_triplets([{"query": "q", "positive_ids": ["gone"]}], corpus, _unit([[1, 0], [0, 1]]),
                          _unit([[1, 0]]), num_negatives=1)
    assert mined.triplets == [] and mined.counts["positive_not_in_corpus"] == 1


def test_prepare_on_the_shipped_sample():
    records = [json.loads(line) for line in (DATA / "primary_assistant-aiva-kb.jsonl").read_text().splitlines()]
    export = read_passages(DATA / "primary_assistant-aiva-kb-corpus.jsonl")
    config = DataSplitConfig(eval_size=150, min_total_records=50)
    prepared = prepare_retrieval_datasets(records, config, CurationConfig(redact_pii=True),
                                          inputs={"workload_id": "primary_assistant"}, extra_passages=export)
    assert len(prepared.corpus) >= 2000
    assert shared_across_splits(prepared.splits) == {"queries": set(), "positives": set()}
    ids = {p["id"] for p in prepared.corpus}
    assert all(pid in ids for rows in prepared.splits.values() for r in rows for pid in r["positive_ids"])
    again = prepare_retrieval_datasets(records, config, CurationConfig(redact_pii=True),
                                       inputs={"workload_id": "primary_assistant"}, extra_passages=export)
    assert again.manifest_hash == prepared.manifest_hash
