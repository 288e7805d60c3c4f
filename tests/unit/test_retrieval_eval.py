"""Exact index and retrieval metrics, checked against brute force and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flywheel.retrieval.corpus import Corpus
from flywheel.retrieval.evaluate import evaluate_embedder, production_reference
from flywheel.retrieval.index import ExactIndex
from flywheel.retrieval.metrics import compare, per_query_table, query_metrics, summarize


def test_exact_index_matches_a_full_sort():
    rng = np.random.default_rng(1)
    corpus = rng.standard_normal((503, 16)).astype(np.float32)
    queries = rng.standard_normal((37, 16)).astype(np.float32)
    indices, scores = ExactIndex(corpus, block=8).search(queries, 10)
    full = queries @ corpus.T
    expected = np.argsort(-full, axis=1, kind="stable")[:, :10]
    assert np.array_equal(indices, expected)
    assert np.allclose(scores, np.take_along_axis(full, expected, axis=1), atol=1e-5)


def test_exact_index_k_larger_than_corpus_and_bad_shapes():
    index = ExactIndex(np.eye(3, dtype=np.float32))
    indices, _ = index.search(np.array([[0, 1, 0]], dtype=np.float32), 10)
    assert indices.tolist() == [[1, 0, 2]]
    with pytest.raises(ValueError):
        index.search(np.zeros((1, 4), dtype=np.float32), 1)


def test_query_metrics_by_hand():
    m = query_metrics(["x", "a", "y", "b"], {"a", "b"}, ks=(1, 2, 4), production=["a", "b", "z"])
    assert m["recall_at_1"] == 0 and m["recall_at_2"] == 0.5 and m["recall_at_4"] == 1
    assert m["mrr_at_1"] == 0 and m["mrr_at_4"] == 0.5
    ideal = 1 + 1 / math.log2(3)
    assert m["ndcg_at_4"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)
    assert m["production_agreement_at_2"] == 0.5  # {x, a} vs {a, b}
    assert m["production_agreement_at_4"] == pytest.approx(2 / 3)  # production returned 3


def test_summary_interval_contains_the_mean_and_compare_is_paired():
    table = per_query_table([["a"], ["b"], ["a"], ["c"]], [{"a"}, {"a"}, {"a"}, {"a"}], ks=(1,))
    means, intervals = summarize(table)
    assert means["recall_at_1"] == 0.5
    lo, hi = intervals["recall_at_1"]
    assert 0 <= lo <= 0.5 <= hi <= 1
    better = per_query_table([["a"]] * 4, [{"a"}] * 4, ks=(1,))
    diff = compare(table, better)["recall_at_1"]
    assert diff["delta"] == 0.5 and 0 < diff["p_value"] <= 1


class KeywordEmbedder:
    """Embeds by counting a few keywords: good enough to make rankings predictable."""

    name = "keywords"
    words = ("return", "warranty", "canada", "us")

    def _embed(self, texts):
        v = np.array([[t.lower().count(w) + 0.01 for w in self.words] for t in texts], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    embed_queries = embed_passages = _embed


def test_evaluate_embedder_end_to_end_without_a_model():
    corpus = Corpus(["r-ca", "r-us", "w-ca"], ["return canada", "return us", "warranty canada"])
    rows = [{"record_id": "1", "query": "return in canada", "positive_ids": ["r-ca"],
             "results": [{"id": "r-us"}, {"id": "r-ca"}]},
            {"record_id": "2", "query": "warranty canada", "positive_ids": ["w-ca"],
             "results": [{"id": "w-ca"}, {"id": "r-ca"}]}]
    result = evaluate_embedder(KeywordEmbedder(), rows, corpus, ks=(1, 2))
    assert result.scores["recall_at_1"] == 1.0 and result.num_queries == 2 and result.corpus_size == 3
    assert result.scores["production_agreement_at_1"] == 0.5
    assert set(result.confidence_intervals) == set(result.scores)
    reference = production_reference(rows, corpus_size=3, ks=(1, 2))
    assert reference.scores["mrr_at_2"] == 0.75 and "production_agreement_at_1" not in reference.scores


def test_retrieval_config_validates_fields_by_name():
    from pydantic import ValidationError

    from flywheel.retrieval.config import RetrievalConfig

    assert RetrievalConfig(ks=[10, 1, 5, 5]).ks == [1, 5, 10]
    for bad, field in [({"ks": [0]}, "ks"), ({"search_depth": 5, "ks": [10]}, "search_depth"),
                       ({"training": {"finetuning_type": "qlora"}}, "finetuning_type"),
                       ({"training": {"batch_size": 1}}, "batch_size"), ({"num_negatives": 0}, "num_negatives"),
                       ({"typo": 1}, "typo")]:
        with pytest.raises(ValidationError, match=field):
            RetrievalConfig.model_validate(bad)


def test_candidate_and_gate_metric_validation():
    from pydantic import ValidationError

    from flywheel.retrieval.config import EmbeddingCandidateConfig, RetrievalConfig

    assert RetrievalConfig().candidates[0].model_name == "all-MiniLM-L6-v2"
    with pytest.raises(ValidationError, match="not both"):
        EmbeddingCandidateConfig(model_dir="/m", url="http://x/v1", customization_enabled=False)
    with pytest.raises(ValidationError, match="local weights"):
        EmbeddingCandidateConfig(url="http://x/v1")
    assert EmbeddingCandidateConfig(url="http://x/v1", customization_enabled=False).url
    with pytest.raises(ValidationError, match="duplicate model_name"):
        RetrievalConfig(candidates=[{"model_name": "a"}, {"model_name": "a"}])
    with pytest.raises(ValidationError, match="gate_metric"):
        RetrievalConfig(gate_metric="ndcg_at_3")
    with pytest.raises(ValidationError, match="gate_metric"):
        RetrievalConfig(gate_metric="accuracy")


def test_an_endpoint_candidate_may_be_fine_tuned_by_the_nemo_customizer_only():
    from pydantic import ValidationError

    from flywheel.config import ConfigError, load_settings
    from flywheel.retrieval.config import EmbeddingCandidateConfig

    nemo = {"target": "nvidia/llama-3.2-nv-embedqa-1b@v2", "nim_image": "nvcr.io/nim/nvidia/llama-3.2-nv-embedqa-1b-v2"}
    candidate = EmbeddingCandidateConfig(model_name="nvidia/llama-3.2-nv-embedqa-1b-v2", url="http://nim/v1",
                                         customizer_configs=nemo)
    assert candidate.customization_enabled and candidate.customizer_configs.micro_batch_size == 8
    with pytest.raises(ValidationError, match="customizer_configs"):
        EmbeddingCandidateConfig(url="http://nim/v1")
    # A customizer section must say what to train and which NIM image serves the result; typos are errors.
    with pytest.raises(ConfigError, match="nim_image"):
        load_settings(environ={}, overrides={"embedding_config": {"candidates": [
            {"model_name": "e", "customizer_configs": {"target": "t"}}]}})
    with pytest.raises(ConfigError, match="gpu_count"):
        load_settings(environ={}, overrides={"embedding_config": {"candidates": [
            {"model_name": "e", "customizer_configs": {**nemo, "gpu_count": 2}}]}})
