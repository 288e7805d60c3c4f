"""SFT example building: prompt in the serving format, loss only on the assistant target, drops."""

from __future__ import annotations

from flywheel.chat_format import render_prompt
from flywheel.platforms.local.sft_data import IGNORE_INDEX, GGUFPromptInfo, build_examples, encode_example

TOOLS = [{"type": "function", "function": {"name": "get_order_status", "parameters": {
    "type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}}]


class CharTokenizer:
    """One token per character; BOS = 1."""

    bos_token_id = 1
    eos_token = "<eos>"

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        assert add_special_tokens is False
        return [ord(c) + 10 for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i - 10) for i in ids if i >= 10)


def row(content="Where is ORD-1?", args=None) -> dict:
    call = {"id": "c1", "type": "function",
            "function": {"name": "get_order_status", "arguments": args or {"order_id": "ORD-1"}}}
    return {"request": {"messages": [{"role": "user", "content": content}], "tools": TOOLS},
            "response": {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [call]}}]}}


def test_prompt_matches_server_rendering_and_loss_is_on_target_only() -> None:
    tok = CharTokenizer()
    ex = encode_example(row(), tok, GGUFPromptInfo(chat_template=None, add_bos=True), 4096)
    prompt = render_prompt(row()["request"]["messages"], TOOLS, None, add_generation_prompt=True, eos_token="<eos>")
    n_prompt = 1 + len(prompt)
    assert ex.input_ids[0] == 1 and tok.decode(ex.input_ids[1:n_prompt]) == prompt
    assert ex.labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    target = tok.decode([t for t in ex.labels if t != IGNORE_INDEX])
    assert target.startswith('<tool_call>\n{"name": "get_order_status", "arguments": {"order_id": "ORD-1"}}')
    assert target.rstrip().endswith("<|im_end|>")  # the template's end of turn is learned too
    assert ex.labels[n_prompt:] == ex.input_ids[n_prompt:]


def test_no_bos_when_gguf_does_not_add_one() -> None:
    ex = encode_example(row(), CharTokenizer(), GGUFPromptInfo(chat_template=None, add_bos=False), 4096)
    assert ex.input_ids[0] != 1


def test_too_long_and_malformed_are_dropped_and_counted() -> None:
    tok = CharTokenizer()
    info = GGUFPromptInfo(chat_template=None, add_bos=True)
    short = encode_example(row(), tok, info, 4096)
    limit = len(short.input_ids)
    data = build_examples([row(), row(content="x" * 50), {"request": {}}], tok, info, limit)
    assert len(data.examples) == 1
    assert dict(data.dropped) == {"too_long": 1, "malformed": 1}


def _tools(*names):
    return [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n in names]


def test_prune_tools_keeps_called_tools_plus_seeded_distractors_in_order():
    from flywheel.platforms.local.sft_data import prune_tools

    tools = _tools("a", "b", "c", "d", "e")
    messages = [{"role": "user", "content": "q"},
                {"role": "assistant", "tool_calls": [{"function": {"name": "d", "arguments": {}}}]}]
    pruned = prune_tools(tools, messages, 2, seed=1)
    names = [t["function"]["name"] for t in pruned]
    assert len(names) == 2 and "d" in names
    assert names == sorted(names, key="abcde".index)  # original order kept
    assert prune_tools(tools, messages, 2, seed=1) == pruned  # deterministic
    assert prune_tools(tools, messages, None, seed=1) is tools and prune_tools(tools, messages, 9, seed=1) is tools
    # A conversation calling more tools than the cap keeps all of them (the answer must stay explicable).
    both = [messages[0],
            {"role": "assistant", "tool_calls": [{"function": {"name": n, "arguments": {}}} for n in "ace"]}]
    assert [t["function"]["name"] for t in prune_tools(tools, both, 2, seed=1)] == ["a", "c", "e"]


def test_multi_turn_record_trains_on_the_prompt_the_customized_model_is_evaluated_with():
    """A kept multi-turn record (earlier call with JSON-*string* arguments, as logged) renders the same
    prompt for the trainer as the evaluator → model server path does, the earlier call's arguments
    once-encoded; pruning keeps both the earlier and the answered tool."""
    from flywheel.evaluator import chat_request_body
    from flywheel.platforms.local.model_server import ChatCompletionRequest, ChatService
    from flywheel.platforms.local.sft_data import prune_tools
    from flywheel.types import DatasetRef, Endpoint, EvalSpec

    tools = TOOLS + _tools("track_shipment", "cancel_order", "search_products")
    earlier = {"id": "c0", "type": "function",
               "function": {"name": "track_shipment", "arguments": '{"tracking_number": "1Z9", "carrier": "ups"}'}}
    record = row(content="and order ORD-1?")
    record["request"] = {"messages": [{"role": "system", "content": "You are Aiva."},
                                      {"role": "user", "content": "Track 1Z9 with UPS"},
                                      {"role": "assistant", "content": None, "tool_calls": [earlier]},
                                      {"role": "tool", "content": '{"ok": true}', "tool_call_id": "c0"},
                                      {"role": "user", "content": "and order ORD-1?"}], "tools": tools}
    tok = CharTokenizer()
    ex = encode_example(record, tok, GGUFPromptInfo(chat_template=None, add_bos=True), 8192)
    n_target = sum(1 for t in ex.labels if t != IGNORE_INDEX)
    trained_prompt = tok.decode(ex.input_ids[1:len(ex.input_ids) - n_target])

    spec = EvalSpec(name="t-customized-eval", eval_type="customized-eval",
                    dataset=DatasetRef(name="d", split="eval", uri="file:///d", num_records=1),
                    endpoint=Endpoint(deployment_name="d", model_name="m", served_model="m", base_url="http://x/v1"))
    served_prompt, _ = ChatService(None, "m", eos_token="<eos>").build_prompt(
        ChatCompletionRequest(**chat_request_body(spec, record)))
    assert trained_prompt == served_prompt
    assert '{"name": "track_shipment", "arguments": {"tracking_number": "1Z9", "carrier": "ups"}}' in trained_prompt
    assert '\\"tracking_number' not in trained_prompt  # not double-encoded
    target = tok.decode([t for t in ex.labels if t != IGNORE_INDEX])
    assert target.startswith('<tool_call>\n{"name": "get_order_status", "arguments": {"order_id": "ORD-1"}}')

    messages = record["request"]["messages"] + [record["response"]["choices"][0]["message"]]
    for seed in range(10):  # not a lucky distractor: the earlier call's tool is kept for every seed
        kept = [t["function"]["name"] for t in prune_tools(tools, messages, 2, seed=seed)]
        assert kept == ["get_order_status", "track_shipment"]
