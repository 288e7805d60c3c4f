"""Tool-call metrics (docs/metrics.md) and judge parsing."""

import pytest

from flywheel.metrics import (
    NO_CALL,
    RecordScore,
    aggregate,
    binary_judge_score,
    judge_prompt,
    parse_judge_score,
    score_tool_calls,
    token_f1,
)


def call(name, arguments=None):
    return {"id": "c", "type": "function", "function": {"name": name, "arguments": arguments or {}}}


def test_exact_match_scores_one_everywhere():
    s = score_tool_calls([call("get_weather", {"city": "Paris"})], [call("get_weather", {"city": "Paris"})])
    assert s == RecordScore(1.0, 1.0, 1.0)


def test_string_arguments_are_parsed_before_comparison():
    s = score_tool_calls([call("f", {"a": 1, "b": "x"})], [call("f", '{"b": "x", "a": 1}')])
    assert s.function_name_and_args_accuracy == 1.0


def test_unparseable_string_arguments_do_not_match():
    s = score_tool_calls([call("f", {"a": 1})], [call("f", "{not json")])
    assert (s.function_name, s.function_name_and_args_accuracy, s.normalized_args_accuracy) == (1.0, 0.0, 0.0)


def test_names_are_case_sensitive():
    assert score_tool_calls([call("GetWeather")], [call("getweather")]).function_name == 0.0


def test_multiple_calls_are_order_insensitive():
    expected = [call("a", {"x": 1}), call("b", {"y": 2})]
    predicted = [call("b", {"y": 2}), call("a", {"x": 1})]
    assert score_tool_calls(expected, predicted) == RecordScore(1.0, 1.0, 1.0)


def test_missing_or_extra_call_is_a_name_mismatch():
    expected = [call("a"), call("b")]
    assert score_tool_calls(expected, [call("a")]).function_name == 0.0
    assert score_tool_calls(expected, [call("a"), call("b"), call("c")]).function_name == 0.0
    # the same tool called twice when expected once is a mismatch (multiset keyed by name)
    assert score_tool_calls([call("a")], [call("a"), call("a")]).function_name == 0.0


def test_same_tool_twice_pairs_arguments_one_to_one():
    expected = [call("w", {"city": "Paris"}), call("w", {"city": "Rome"})]
    swapped = [call("w", {"city": "Rome"}), call("w", {"city": "Paris"})]
    assert score_tool_calls(expected, swapped).function_name_and_args_accuracy == 1.0
    s = score_tool_calls(expected, [call("w", {"city": "Paris"}), call("w", {"city": "Paris"})])
    assert (s.function_name, s.function_name_and_args_accuracy) == (1.0, 0.0)


def test_right_name_wrong_args():
    s = score_tool_calls([call("f", {"a": 1})], [call("f", {"a": 2})])
    assert (s.function_name, s.function_name_and_args_accuracy, s.normalized_args_accuracy) == (1.0, 0.0, 0.0)


def test_missing_argument_is_not_exact():
    assert score_tool_calls([call("f", {"a": 1, "b": 2})], [call("f", {"a": 1})]).function_name_and_args_accuracy == 0.0


def test_no_call_expected_cases():
    assert score_tool_calls([], []) == RecordScore(1.0, 1.0, 1.0)
    assert score_tool_calls(None, None) == RecordScore(1.0, 1.0, 1.0)
    assert score_tool_calls([], [call("f")]) == RecordScore(0.0, 0.0, 0.0)
    assert score_tool_calls([call("f")], []) == RecordScore(0.0, 0.0, 0.0)


def test_exact_comparison_keeps_types_but_normalized_coerces():
    s = score_tool_calls([call("f", {"n": 5, "s": "New York"})], [call("f", {"n": "5", "s": "  new   york "})])
    assert (s.function_name_and_args_accuracy, s.normalized_args_accuracy) == (0.0, 1.0)
    assert score_tool_calls([call("f", {"n": 1})], [call("f", {"n": 1.0})]).function_name_and_args_accuracy == 1.0
    assert score_tool_calls([call("f", {"n": 1})], [call("f", {"n": True})]).normalized_args_accuracy == 0.0


def test_nested_objects_ignore_key_order():
    expected = [call("f", {"filter": {"a": [1, 2], "b": {"c": "x"}}})]
    predicted = [call("f", '{"filter": {"b": {"c": "x"}, "a": [1, 2]}}')]
    assert score_tool_calls(expected, predicted).function_name_and_args_accuracy == 1.0


def test_aggregate_means_and_per_tool():
    scores = [RecordScore(1, 1, 1), RecordScore(1, 0, 1), RecordScore(0, 0, 0), RecordScore(1, 1, 1)]
    tools = [["a"], ["a"], ["b"], []]
    out = aggregate(scores, tools)
    assert out["num_records"] == 4
    assert out["function_name"] == 0.75
    assert out["function_name_and_args_accuracy"] == 0.5
    assert out["per_tool"]["a"].function_name_and_args_accuracy == 0.5
    assert out["per_tool"]["a"].count == 2
    assert out["per_tool"]["b"].function_name == 0.0
    assert out["per_tool"][NO_CALL].count == 1


def test_aggregate_empty_gives_none():
    out = aggregate([], [])
    assert out["function_name"] is None and out["per_tool"] == {}


@pytest.mark.parametrize("text, expected", [
    ("10", 10), ("1", 1), ("0", 0), (" 1\n", 1), ('{"score": 1}', 1), ('{"score": 0}', 0),
    ('```json\n{"score": 10}\n```', 10), ("SCORE: 1", 1), ("Score: 0", 0), ("score=10", 10),
    ("The prediction is correct.\nSCORE: 1", 1), ('{"score": "1"}', 1), ("**Score:** 1", 1),
    ("", None), (None, None), ("I cannot tell", None),
])
def test_parse_judge_score(text, expected):
    assert parse_judge_score(text) == expected


def test_binary_judge_score_rejects_out_of_range():
    assert binary_judge_score("10") is None
    assert binary_judge_score('{"score": 1}') == 1
    assert binary_judge_score("SCORE: 0") == 0


def test_judge_prompt_contains_calls_and_asks_for_json():
    conversation = [{"role": "system", "content": "sys"}, {"role": "user", "content": "weather in Paris?"}]
    messages = judge_prompt({"messages": conversation},
                            [call("get_weather", {"city": "Paris"})], [call("get_weather", '{"city": "paris"}')])
    assert messages[0]["role"] == "system" and "score" in messages[0]["content"]
    user = messages[1]["content"]
    assert "weather in Paris?" in user and '"city": "Paris"' in user and '"city": "paris"' in user
    assert "sys" not in user


def test_token_f1():
    assert token_f1("the cat sat", "the cat sat") == 1.0
    assert token_f1("", "") == 1.0
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("The cat", "the cat sat down") == pytest.approx(2 * 1 * 0.5 / 1.5)
