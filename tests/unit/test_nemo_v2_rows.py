"""The NeMo v2 Evaluator row built from a log record (JSON-text columns; ground-truth arguments as objects)."""

import json

from test_records import record

from flywheel.platforms.nemo_v2 import eval_row


def test_eval_row_holds_messages_tools_and_calls_with_parsed_arguments():
    raw = record(arguments='{"order_id": "ORD-1"}')
    calls = raw["response"]["choices"][0]["message"]["tool_calls"]
    calls += [{"id": "c2", "type": "function", "function": {"name": "f", "arguments": {"a": [1]}}},
              {"id": "c3", "type": "function", "function": {"name": "g", "arguments": "{not json"}}]
    row = eval_row(raw)
    assert json.loads(row["messages_json"]) == raw["request"]["messages"]
    assert json.loads(row["tools_json"]) == raw["request"]["tools"]
    got = json.loads(row["tool_calls_json"])
    assert [c["function"]["arguments"] for c in got] == [{"order_id": "ORD-1"}, {"a": [1]}, "{not json"]
    assert [(c["id"], c["function"]["name"]) for c in got] == [("call_1", "get_order_status"), ("c2", "f"), ("c3", "g")]


def test_eval_row_of_a_reply_or_a_malformed_response_expects_no_call():
    assert json.loads(eval_row(record(tool=None))["tool_calls_json"]) == []
    assert json.loads(eval_row({"request": {}, "response": {"choices": []}})["tool_calls_json"]) == []
