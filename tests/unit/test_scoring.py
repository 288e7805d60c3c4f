"""``flywheel score`` over {request, response, prediction} JSONL."""

import json

from flywheel.scoring import score_triples, summarize


def completion(name=None, arguments=None, content=None):
    message = {"role": "assistant", "content": content}
    if name:
        message["tool_calls"] = [{"id": "1", "type": "function", "function": {"name": name, "arguments": arguments}}]
    return {"choices": [{"message": message}]}


REQUEST = {"model": "m", "messages": [{"role": "user", "content": "hi"}],
           "tools": [{"type": "function", "function": {"name": "f"}}]}


def line(response, prediction, request=REQUEST):
    return json.dumps({"request": request, "response": response, "prediction": prediction})


def test_scores_and_per_tool():
    lines = [
        line(completion("f", {"a": 1}), completion("f", '{"a": 1}')),
        line(completion("f", {"a": 1}), completion("f", {"a": "1"})),
        line(completion("g", {}), completion("f", {})),
        line(completion(content="no tool"), completion(content="ok")),
    ]
    out = score_triples(lines)
    assert out["num_records"] == 4 and out["skipped"] == 0
    assert out["function_name"] == 0.75
    assert out["function_name_and_args_accuracy"] == 0.5
    assert out["normalized_args_accuracy"] == 0.75
    assert out["per_tool"]["f"] == {"function_name": 1.0, "function_name_and_args_accuracy": 0.5, "count": 2}
    assert out["per_tool"]["(no call)"]["count"] == 1
    json.dumps(out)  # serialisable


def test_bad_lines_are_counted_with_line_numbers():
    lines = [
        line(completion("f", {}), completion("f", {})),
        "{not json",
        "",
        json.dumps({"request": REQUEST, "response": completion("f", {})}),
        json.dumps([1, 2]),
        line(completion("f", {}), {"choices": []}),
    ]
    out = score_triples(lines)
    assert out["num_records"] == 1 and out["skipped"] == 4
    assert [b["line"] for b in out["bad_lines"]] == [2, 4, 5, 6]
    assert "prediction" in out["bad_lines"][1]["error"]


def test_prediction_may_be_a_bare_message():
    calls = completion("f", {"a": 1})["choices"][0]["message"]["tool_calls"]
    out = score_triples([line(completion("f", {"a": 1}), {"role": "assistant", "tool_calls": calls})])
    assert out["function_name_and_args_accuracy"] == 1.0


def test_generic_workload_scores_similarity():
    request = {"messages": [{"role": "user", "content": "say hi"}]}
    rows = [{"request": request, "response": completion(content="hello there friend")}]
    out = summarize(rows, [{"role": "assistant", "content": "hello friend"}])
    assert out["function_name"] is None and "generic" in out["notes"]["function_name"]
    assert 0 < out["similarity"] < 1


def test_failed_prediction_scores_zero():
    rows = [{"request": REQUEST, "response": completion("f", {})}] * 2
    out = summarize(rows, [completion("f", {})["choices"][0]["message"], None])
    assert out["function_name"] == 0.5
