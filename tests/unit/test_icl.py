"""ICL example selection: budget, min/max, coverage, no self-selection, semantic kNN, rendering."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from flywheel.config import ICLConfig
from flywheel.icl import build_icl_rows, select_examples
from flywheel.records import tool_signature


def row(record_id, query, tool="get_weather", args=None, system="You are helpful."):
    message = {"role": "assistant", "content": None if tool else "Sure."}
    if tool:
        message["tool_calls"] = [{"id": "c", "type": "function",
                                  "function": {"name": tool, "arguments": args or {"q": query}}}]
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": query}]
    return {"record_id": record_id, "request": {"model": "m", "messages": messages},
            "response": {"choices": [{"message": message}]}}


TOOLS = ["get_weather", "book_flight", "cancel_order", None]
TRAIN = [row(f"t{t}-{i}", f"{tool or 'chat'} request number {i}", tool)
         for t, tool in enumerate(TOOLS) for i in range(5)]


def config(**kw):
    return ICLConfig(**{"max_context_length": 100_000, "reserved_tokens": 0, "max_examples": 3, "min_examples": 1,
                        **kw})


class BagOfWordsEmbedder:
    """Deterministic: hashed word counts, L2-normalised."""

    def __init__(self, dim=64):
        self.dim, self.calls = dim, 0

    def embed(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[i, sum(map(ord, word)) % self.dim] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def test_uniform_round_robin_covers_signatures_and_is_seeded():
    evals = [row(f"e{i}", f"question {i}") for i in range(20)]
    chosen = select_examples(evals, TRAIN, config(), context_length=100_000)
    for examples in chosen:
        assert len(examples) == 3
        assert len({tool_signature(e) for e in examples}) == 3
    assert chosen == select_examples(evals, TRAIN, config(), context_length=100_000)
    other = select_examples(evals, TRAIN, config(), context_length=100_000, seed=7)
    assert chosen != other
    # over many eval rows every signature gets used about equally
    counts = Counter(tool_signature(e) for examples in chosen for e in examples)
    assert set(counts) == {"get_weather", "book_flight", "cancel_order", "(no call)"}
    assert max(counts.values()) - min(counts.values()) <= 10


def test_never_selects_itself_or_the_same_query():
    train = [row("self", "What is the weather in Paris?"), row("dup", "  what is the WEATHER in paris? "),
             row("other", "Book a flight to Rome", "book_flight")]
    eval_row = row("self", "What is the weather in Paris?")
    for selection in ("uniform_distribution", "semantic_similarity"):
        chosen = select_examples([eval_row], train, config(example_selection=selection), context_length=100_000,
                                 embedder=BagOfWordsEmbedder())
        assert [e["record_id"] for e in chosen[0]] == ["other"]


def test_token_budget_and_min_examples_report():
    evals = [row("e", "q" * 40, system=None)]
    per_example = len("Example 10:\n") + len(
        'User: get_weather request number 0\nAssistant tool calls: '
        '[{"name": "get_weather", "arguments": {"q": "get_weather request number 0"}}]') + 2
    request = 200  # generous for the eval request + header
    report: dict = {}
    weather_only = [r for r in TRAIN if tool_signature(r) == "get_weather"]  # all examples cost the same
    chosen = select_examples(evals, weather_only, config(min_examples=2, example_selection="uniform_distribution"),
                             context_length=request + per_example + 10, count_tokens=len, report=report)
    assert len(chosen[0]) == 1
    assert report["below_min_examples"] == 1 and report["no_examples"] == 0
    nothing = select_examples(evals, TRAIN, config(), context_length=50, count_tokens=len, report=report)
    assert nothing == [[]] and report["no_examples"] == 1


def test_budget_uses_the_smaller_of_model_and_config_context_and_reserved_tokens():
    evals = [row("e", "short")]
    small_context = config(max_context_length=30, reserved_tokens=0)
    assert select_examples(evals, TRAIN, small_context, context_length=10_000) == [[]]
    assert select_examples(evals, TRAIN, config(reserved_tokens=99_990), context_length=200_000) == [[]]
    assert len(select_examples(evals, TRAIN, config(), context_length=10_000)[0]) == 3


def test_max_examples_zero_and_empty_train():
    evals = [row("e", "q")]
    assert select_examples(evals, TRAIN, config(max_examples=0, min_examples=0), context_length=9999) == [[]]
    assert select_examples(evals, [], config(), context_length=9999) == [[]]


def test_semantic_relevance_then_coverage():
    train = [row(f"w{i}", f"weather forecast for city {i}", "get_weather") for i in range(4)]
    train += [row("f", "book a flight ticket", "book_flight"), row("o", "cancel my order please", "cancel_order")]
    embedder = BagOfWordsEmbedder()
    eval_row = row("e", "weather forecast for city 2 tomorrow")
    # all three by similarity
    only_relevant = select_examples([eval_row], train, config(example_selection="semantic_similarity",
                                    similarity_config={"relevance_ratio": 1.0}), context_length=9999, embedder=embedder)
    assert only_relevant[0][0]["record_id"] == "w2"
    assert all(tool_signature(e) == "get_weather" for e in only_relevant[0])
    # one by similarity, two for coverage of the other tools
    mixed = select_examples([eval_row], train, config(example_selection="semantic_similarity",
                            similarity_config={"relevance_ratio": 0.34}), context_length=9999, embedder=embedder)
    assert mixed[0][0]["record_id"] == "w2"
    assert {tool_signature(e) for e in mixed[0]} == {"get_weather", "book_flight", "cancel_order"}


def test_semantic_fills_remaining_slots_by_similarity_when_all_covered():
    train = [row(f"w{i}", f"weather in town {i}") for i in range(5)]
    semantic = config(example_selection="semantic_similarity", similarity_config={"relevance_ratio": 0.0})
    chosen = select_examples([row("e", "weather in town 3 today")], train, semantic, context_length=9999,
                             embedder=BagOfWordsEmbedder())
    assert len(chosen[0]) == 3 and chosen[0][0]["record_id"] == "w3"


def test_build_icl_rows_inserts_examples_as_turns_after_the_system_message():
    evals = [row("e1", "weather?"), row("e2", "flight?", system=None)]
    before = [dict(e) for e in evals]
    rows = build_icl_rows(evals, TRAIN, config(max_examples=2), context_length=100_000)
    first = rows[0]["request"]["messages"]
    # The system message (and so the system+tools prompt prefix) is unchanged.
    assert first[0] == {"role": "system", "content": "You are helpful."}
    assert [m["role"] for m in first[1:5]] == ["user", "assistant", "user", "assistant"]
    assert first[-1] == evals[0]["request"]["messages"][-1]
    by_id = {r["record_id"]: r for r in TRAIN}
    for i, example_id in enumerate(rows[0]["icl_example_ids"]):
        example = by_id[example_id]
        assert first[1 + 2 * i]["content"] == example["request"]["messages"][-1]["content"]
        expected = example["response"]["choices"][0]["message"]
        assert first[2 + 2 * i].get("tool_calls") == expected.get("tool_calls")
    # Without a system message the examples come first.
    second = rows[1]["request"]["messages"]
    assert second[0]["role"] == "user" and second[-1] == {"role": "user", "content": "flight?"}
    assert len(rows[0]["icl_example_ids"]) == 2
    assert evals == before and evals[0]["request"]["messages"][0]["content"] == "You are helpful."  # inputs untouched
    assert rows[0]["response"] == evals[0]["response"]


@pytest.mark.slow
def test_semantic_with_real_minilm():
    from flywheel.embeddings import LocalEmbedder

    train = [row("w", "What's the weather forecast for London?", "get_weather"),
             row("f", "Book me a flight to Rome on Friday", "book_flight"),
             row("o", "Please cancel my last order", "cancel_order")]
    chosen = select_examples([row("e", "Will it rain in Paris tomorrow?")], train,
                             config(max_examples=1, example_selection="semantic_similarity",
                                    similarity_config={"relevance_ratio": 1.0}),
                             context_length=9999, embedder=LocalEmbedder())
    assert [e["record_id"] for e in chosen[0]] == ["w"]
    vectors = LocalEmbedder().embed(["a", "b"])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("n, k, block", [(10_000, 20, 128), (1000, 7, 10), (1003, 7, 10), (50, 5, 128), (5, 9, 4)])
def test_top_k_columns_matches_full_sort(n, k, block):
    from flywheel.icl import top_k_columns

    sims = np.random.default_rng(n).standard_normal((17, n)).astype(np.float32)
    got = np.sort(np.take_along_axis(sims, top_k_columns(sims, k, block), axis=1), axis=1)
    want = np.sort(sims, axis=1)[:, -min(k, n):]
    assert np.array_equal(got, want)
