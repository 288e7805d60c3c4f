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
