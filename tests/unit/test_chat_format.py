import json
from pathlib import Path

import pytest

from flywheel.chat_format import (
    FALLBACK_END_OF_TURN,
    ChatTemplateError,
    assistant_target,
    parse_completion,
    render_prompt,
    training_pair,
)

QWEN_TEMPLATE = (Path(__file__).parent / "data" / "qwen2.5_chat_template.jinja").read_text()

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city <now> & later",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "send_email", "description": "Send an email",
        "parameters": {"type": "object", "properties": {"to": {"type": "string"}, "body": {"type": "string"}}}}},
]


def call(name, arguments, call_id="c1"):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


CONVERSATION = [
    {"role": "system", "content": "You are a travel agent."},
    {"role": "user", "content": "Weather in Paris, then mail bob?"},
    {"role": "assistant", "content": None, "tool_calls": [
        call("get_weather", '{"city": "Paris"}'), call("send_email", {"to": "bob@x.org", "body": "héllo"}, "c2")]},
]


# ----------------------------------------------------------------- rendering

def test_fallback_lists_tools_in_system_prompt_without_html_escaping():
    prompt = render_prompt(CONVERSATION[:2], TOOLS, None)
    assert prompt.startswith("<|im_start|>system\nYou are a travel agent.\n\n# Tools\n")
    assert '"description": "Weather for a city <now> & later"' in prompt
    assert "<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>" in prompt
    assert prompt.endswith("<|im_start|>user\nWeather in Paris, then mail bob?<|im_end|>\n<|im_start|>assistant\n")


def test_fallback_without_tools_or_system_is_plain_chatml():
    assert render_prompt([{"role": "user", "content": "hi"}], None, None) == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_content_parts_are_joined():
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    prompt = render_prompt([{"role": "user", "content": parts}], None, None)
    assert "<|im_start|>user\nab<|im_end|>" in prompt


def test_qwen_template_renders_tools_natively_and_arguments_once():
    prompt = render_prompt(CONVERSATION, TOOLS, QWEN_TEMPLATE, add_generation_prompt=False)
    assert "<tools>\n" + json.dumps(TOOLS[0], ensure_ascii=False) in prompt
    # A JSON-string argument is parsed first, so it is not double-encoded.
    assert '{"name": "get_weather", "arguments": {"city": "Paris"}}' in prompt
    assert '"héllo"' in prompt


def test_tool_responses_are_grouped_into_one_user_turn():
    messages = CONVERSATION + [{"role": "tool", "tool_call_id": "c1", "content": "sunny"},
                               {"role": "tool", "tool_call_id": "c2", "content": "sent"}]
    for template in (None, QWEN_TEMPLATE):
        prompt = render_prompt(messages, TOOLS, template)
        assert ("<|im_start|>user\n<tool_response>\nsunny\n</tool_response>\n<tool_response>\nsent\n"
                "</tool_response><|im_end|>\n<|im_start|>assistant\n") in prompt


def test_broken_template_raises_chat_template_error():
    with pytest.raises(ChatTemplateError):
        render_prompt([{"role": "user", "content": "x"}], None, "{{ raise_exception('no system') }}")


# ----------------------------------------------------------------- SFT targets

def test_assistant_target_content_and_calls():
    target = assistant_target({"role": "assistant", "content": "Sure.",
                               "tool_calls": [call("get_weather", {"city": "Rome"})]})
    assert target == 'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>'


@pytest.mark.parametrize("template", [None, QWEN_TEMPLATE], ids=["fallback", "qwen"])
@pytest.mark.parametrize("assistant", [
    CONVERSATION[-1],
    {"role": "assistant", "content": "It is sunny."},
    {"role": "assistant", "content": "Checking.", "tool_calls": [call("get_weather", {"city": "Oslo"})]},
])
def test_target_identity(template, assistant):
    history = CONVERSATION[:2]
    prompt = render_prompt(history, TOOLS, template, add_generation_prompt=True)
    full = render_prompt(history + [assistant], TOOLS, template, add_generation_prompt=False)
    assert full == prompt + assistant_target(assistant) + FALLBACK_END_OF_TURN
    assert training_pair(history + [assistant], TOOLS, template) == (
        prompt, assistant_target(assistant) + FALLBACK_END_OF_TURN)


def test_training_pair_requires_final_assistant_message():
    with pytest.raises(ValueError):
        training_pair(CONVERSATION[:2], TOOLS, None)


# ----------------------------------------------------------------- parsing

def names_and_args(message):
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in message["tool_calls"]]


def test_parse_tool_call_block():
    msg = parse_completion('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>')
    assert msg["content"] is None
    assert names_and_args(msg) == [("get_weather", {"city": "Paris"})]
    first = msg["tool_calls"][0]
    assert first["type"] == "function" and first["id"].startswith("call_")
    assert isinstance(first["function"]["arguments"], str)


def test_parse_multiple_blocks_with_text():
    text = ('Let me check.\n<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n'
            '<tool_call>{"name": "b", "arguments": "{\\"y\\": 2}"}</tool_call>')
    msg = parse_completion(text)
    assert names_and_args(msg) == [("a", {"x": 1}), ("b", {"y": 2})]
    assert msg["content"] == "Let me check."
    assert msg["tool_calls"][0]["id"] != msg["tool_calls"][1]["id"]


def test_parse_bare_json_object_list_and_fence():
    assert names_and_args(parse_completion('{"name": "a", "arguments": {"x": 1}}')) == [("a", {"x": 1})]
    two = parse_completion('[{"name": "a", "arguments": {}}, {"name": "b", "parameters": {"z": 3}}]')
    assert names_and_args(two) == [("a", {}), ("b", {"z": 3})]
    fenced = parse_completion('```json\n{"name": "a", "arguments": {"x": 1}}\n```')
    assert names_and_args(fenced) == [("a", {"x": 1})] and fenced["content"] is None
    inside = parse_completion('<tool_call>\n```json\n{"name": "a", "arguments": {"x": 1}}\n```\n</tool_call>')
    assert names_and_args(inside) == [("a", {"x": 1})]


def test_parse_unclosed_last_block():
    msg = parse_completion('<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n')
    assert names_and_args(msg) == [("a", {"x": 1})]


def test_malformed_json_stays_content():
    text = '<tool_call>\n{"name": "a", "arguments": {"x": 1\n</tool_call>'
    msg = parse_completion(text)
    assert "tool_calls" not in msg and msg["content"] == text.strip()
    assert parse_completion('{"city": "Paris"}') == {"role": "assistant", "content": '{"city": "Paris"}'}


def test_plain_text_and_empty():
    assert parse_completion("Hello there") == {"role": "assistant", "content": "Hello there"}
    assert parse_completion("  ") == {"role": "assistant", "content": None}


def test_parse_round_trips_assistant_target():
    msg = parse_completion(assistant_target(CONVERSATION[-1]))
    assert names_and_args(msg) == [("get_weather", {"city": "Paris"}),
                                   ("send_email", {"to": "bob@x.org", "body": "héllo"})]
    assert parse_completion(assistant_target(CONVERSATION[-1])) == msg  # deterministic ids


def test_leading_bare_call_followed_by_rambling_is_a_call():
    text = '{"name": "get_product_details", "arguments": {"product_id": "P98398"}}\n{"ok": true}\n{"response": "x"'
    message = parse_completion(text)
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["get_product_details"]
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"product_id": "P98398"}
    assert message["content"].startswith('{"ok": true}')


def test_text_starting_with_non_call_json_stays_content():
    message = parse_completion('{"ok": true} and more')
    assert "tool_calls" not in message and message["content"] == '{"ok": true} and more'
