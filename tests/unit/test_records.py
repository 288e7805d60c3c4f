import copy
import importlib.util
import json
from pathlib import Path

import pytest

from flywheel.record_normalize import normalize_record
from flywheel.records import (
    NO_CALL,
    RecordError,
    content_text,
    expected_calls,
    expected_message,
    normalize_query,
    parse_arguments,
    parse_record,
    query_key,
    response_message,
    tool_names,
    tool_signature,
    user_query,
)

DATA = Path(__file__).resolve().parents[2] / "data"


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_samples", DATA / "generate_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(query="Where is ORD-1?", tool="get_order_status", arguments='{"order_id": "ORD-1"}', ts=100.0,
           workload_id="w", client_id="c"):
    message = {"role": "assistant", "content": None}
    if tool:
        message["tool_calls"] = [{"id": "call_1", "type": "function",
                                  "function": {"name": tool, "arguments": arguments}}]
    else:
        message["content"] = "Happy to help."
    return {"timestamp": ts, "workload_id": workload_id, "client_id": client_id,
            "request": {"model": "big", "messages": [{"role": "user", "content": query}],
                        "tools": [{"type": "function", "function": {"name": "get_order_status"}}]},
            "response": {"choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}}


def test_parse_record_parses_string_arguments():
    parsed = parse_record(record())
    assert parsed.response.message.tool_calls[0].function.arguments == {"order_id": "ORD-1"}


def test_parse_record_keeps_string_arguments_when_asked():
    parsed = parse_record(record(), parse_function_arguments=False)
    assert parsed.response.message.tool_calls[0].function.arguments == '{"order_id": "ORD-1"}'


@pytest.mark.parametrize("mutate, reason", [
    (lambda r: r.pop("request"), "missing_field"),
    (lambda r: r.__setitem__("timestamp", None), "missing_field"),
    (lambda r: r["response"].__setitem__("choices", []), "no_choices"),
    (lambda r: r["request"].__setitem__("messages", []), "no_messages"),
    (lambda r: r["request"]["messages"][0].pop("role"), "invalid_format"),
    (lambda r: r["response"]["choices"][0]["message"]["tool_calls"][0]["function"].__setitem__("arguments", "{x"),
     "arguments_not_json"),
    (lambda r: r["response"]["choices"][0]["message"]["tool_calls"][0]["function"].__setitem__("arguments", "[1]"),
     "arguments_not_object"),
])
def test_parse_record_reasons(mutate, reason):
    raw = record()
    mutate(raw)
    with pytest.raises(RecordError) as info:
        parse_record(raw)
    assert info.value.reason == reason
    with pytest.raises(RecordError) as fast:
        normalize_record(raw)
    assert fast.value.reason == reason


def test_parse_arguments_object_and_empty():
    assert parse_arguments({"a": 1}) == {"a": 1}
    assert parse_arguments("") == {}
    with pytest.raises(RecordError):
        parse_arguments("not json")


def _slow(raw, parse_function_arguments=True):
    return parse_record(raw, parse_function_arguments).model_dump(mode="json", exclude_none=True)


@pytest.mark.parametrize("parse_args", [True, False])
def test_normalize_record_equals_pydantic_path_on_samples(parse_args):
    generator = load_generator()
    raws = list(generator.generate(300, "aiva-x", 7))
    before = copy.deepcopy(raws)
    assert [normalize_record(r, parse_args) for r in raws] == [_slow(r, parse_args) for r in raws]
    assert raws == before  # inputs are not mutated


@pytest.mark.parametrize("tweak", [
    lambda r: r.__setitem__("timestamp", "123.5"),  # lax coercion: handled by the pydantic fallback
    lambda r: r.__setitem__("extra_field", {"x": None}),
    lambda r: r["request"]["messages"][0].__setitem__("content", [{"type": "text", "text": "hi"}]),
    lambda r: r["response"]["choices"][0]["message"]["tool_calls"][0].pop("type"),
    lambda r: r["response"]["choices"][0].pop("index"),
    lambda r: r["response"]["choices"][0]["message"].__setitem__("name", None),
])
def test_normalize_record_edge_shapes_match_pydantic(tweak):
    raw = record()
    tweak(raw)
    assert normalize_record(raw) == _slow(raw)


def test_accessors_read_normalised_rows_and_validated_records_alike():
    raw = record(query="  Where IS my order?  ")
    raw["request"]["messages"].insert(0, {"role": "user", "content": "earlier"})
    parsed, row = parse_record(raw).model_dump(mode="json", exclude_none=True), normalize_record(raw)
    assert user_query(row) == user_query(parsed) == "  Where IS my order?  "
    assert tool_names(row) == tool_names(parsed) == ["get_order_status"]
    assert query_key(row) == "where is my order"
    # no call expected: its own signature, sorting before every tool name as '' did
    assert tool_signature(normalize_record(record(tool=None))) == NO_CALL < "a"


def test_content_text_of_strings_parts_and_nothing():
    assert content_text("hi") == "hi"
    parts = [{"type": "text", "text": "where is"}, "ORD-1", {"type": "image_url"}]
    assert content_text(parts) == "where is ORD-1 "
    assert content_text(None) == content_text(5) == ""
    row = record()
    row["request"]["messages"][0]["content"] = [{"type": "text", "text": "Where is"},
                                                {"type": "text", "text": "ORD-1?"}]
    assert user_query(row) == "Where is ORD-1?"


def test_response_message_is_strict_and_expected_message_lenient():
    message = {"role": "assistant", "content": "ok"}
    assert response_message({"choices": [{"message": message}]}) is message
    assert response_message(message) is message  # a bare message is accepted
    for bad in ({"choices": []}, {"choices": [{}]}, {"id": "x"}, [], None):
        with pytest.raises(ValueError):
            response_message(bad)
        assert expected_message({"response": bad}) == {} and expected_calls({"response": bad}) == []
    assert expected_calls({}) == [] and user_query({}) == "" and tool_signature({}) == NO_CALL


def test_tool_signature_counts_every_call_in_name_order():
    row = record(tool="b_tool")
    calls = row["response"]["choices"][0]["message"]["tool_calls"]
    calls += [{"function": {"name": "a_tool", "arguments": "{}"}}, {"function": {"name": "b_tool"}}]
    assert tool_names(row) == ["a_tool", "b_tool", "b_tool"]
    assert tool_signature(row) == "a_tool|b_tool|b_tool"


def test_normalize_query():
    assert normalize_query("  Where IS   my order?  ") == normalize_query("where is my order") == "where is my order"


def test_shipped_samples_are_valid_and_shaped():
    for name, expected in {"aiva-1": 300, "aiva-2": 500, "aiva-3": 1000}.items():
        lines = (DATA / f"primary_assistant-{name}.jsonl").read_text().splitlines()
        assert len(lines) == expected
        records = [json.loads(line) for line in lines]
        assert all(parse_record(r).client_id == name for r in records)
    tools = records[0]["request"]["tools"]
    assert len(tools) == 7
    assert max(len(t["function"]["parameters"]["properties"]) for t in tools) > 8
    assert {r["request"]["model"] for r in records} == {"meta/llama-3.3-70b-instruct"}
    no_tool = sum(1 for r in records if not r["response"]["choices"][0]["message"].get("tool_calls"))
    assert 0.05 < no_tool / len(records) < 0.2
    kinds = {type(tc["function"]["arguments"]) for r in records
             for tc in r["response"]["choices"][0]["message"].get("tool_calls") or []}
    assert kinds == {str, dict}
    assert max(r["timestamp"] for r in records) - min(r["timestamp"] for r in records) > 3 * 86400


def test_generator_is_deterministic():
    generator = load_generator()
    assert list(generator.generate(50, "c", 1)) == list(generator.generate(50, "c", 1))
    assert list(generator.generate(50, "c", 1)) != list(generator.generate(50, "c", 2))
