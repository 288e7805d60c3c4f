"""Chat prompt rendering and tool-call parsing shared by the model server and the LoRA trainer.

``render_prompt`` renders OpenAI-style messages (+ tools) with the model's own Jinja chat template
when the GGUF has one (Qwen2.5's handles ``tools`` natively) or with a ChatML fallback that lists
the tools in the system prompt and asks for Qwen-style ``<tool_call>`` blocks.
``assistant_target`` is the text a model should produce for an assistant message (the SFT target);
``parse_completion`` turns generated text back into an OpenAI assistant message.

Tool-call arguments are rendered as single-line JSON objects with the standard ``", "``/``": "``
separators, exactly what Qwen's template (``tojson``) produces, so training targets match the
format the model was pre-trained on.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from typing import Any

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

FALLBACK_END_OF_TURN = "<|im_end|>\n"
# Strings that end an assistant turn in the templates we meet (ChatML/Qwen, Gemma, Llama 3).
STOP_SEQUENCES = ["<|im_end|>", "<|im_start|>", "<|endoftext|>", "<end_of_turn>", "<|eot_id|>"]

DEFAULT_SYSTEM_WITH_TOOLS = "You are a helpful assistant."

FALLBACK_TEMPLATE = """\
{%- set ns = namespace(start=0) -%}
{%- if messages and messages[0].role == 'system' -%}
  {%- set ns.start = 1 -%}
  {%- set system = messages[0].content or '' -%}
{%- else -%}
  {%- set system = '' -%}
{%- endif -%}
{%- if tools -%}
<|im_start|>system
{{ system or default_system }}

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% elif system -%}
<|im_start|>system
{{ system }}<|im_end|>
{% endif -%}
{%- for message in messages[ns.start:] -%}
  {%- if message.role == 'assistant' -%}
<|im_start|>assistant
{{ assistant_target(message) }}<|im_end|>
{% elif message.role == 'tool' -%}
    {%- if loop.first or loop.previtem.role != 'tool' -%}<|im_start|>user{%- endif %}
<tool_response>
{{ message.content or '' }}
</tool_response>
    {%- if loop.last or loop.nextitem.role != 'tool' -%}<|im_end|>
{% endif -%}
  {%- else -%}
<|im_start|>{{ message.role }}
{{ message.content or '' }}<|im_end|>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<|im_start|>assistant
{% endif -%}
"""


class ChatTemplateError(ValueError):
    """The chat template failed to render these messages (bad input or a broken template)."""


def _tojson(value: Any, indent: int | None = None, separators: Any = None, sort_keys: bool = False,
            ensure_ascii: bool = False) -> str:
    # Jinja's built-in tojson HTML-escapes <, >, & and ': wrong for prompts. This mirrors
    # the filter HF transformers registers for chat templates.
    if separators is not None:
        separators = tuple(separators)
    return json.dumps(value, indent=indent, separators=separators, sort_keys=sort_keys, ensure_ascii=ensure_ascii)


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    from datetime import datetime

    return datetime.now().strftime(fmt)


@lru_cache(maxsize=16)
def _compile(template: str):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(template)


@lru_cache(maxsize=1)
def _compile_fallback():
    # The fallback is written with explicit whitespace, so no trim/lstrip here.
    env = ImmutableSandboxedEnvironment(keep_trailing_newline=True)
    env.filters["tojson"] = _tojson
    env.globals["assistant_target"] = assistant_target
    env.globals["default_system"] = DEFAULT_SYSTEM_WITH_TOOLS
    return env.from_string(FALLBACK_TEMPLATE)


def _content_text(content: Any) -> str | None:
    """OpenAI content may be a string, None, or a list of parts; templates want a string."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
        return "".join(parts)
    return str(content)


def _arguments_object(arguments: Any) -> Any:
    """Arguments as an object: JSON strings are parsed (templates would otherwise double-encode)."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            return arguments
    return {} if arguments is None else arguments


def normalize_message(message: dict[str, Any]) -> dict[str, Any]:
    out = dict(message)
    # None → "": templates concatenate content ('\n' + message.content) and would fail on None.
    out["content"] = _content_text(message.get("content")) or ""
    if message.get("tool_calls"):
        calls = []
        for call in message["tool_calls"]:
            function = dict(call.get("function") or {})
            function["arguments"] = _arguments_object(function.get("arguments"))
            calls.append({**call, "type": call.get("type", "function"), "function": function})
        out["tool_calls"] = calls
    else:
        out.pop("tool_calls", None)
    return out


def render_prompt(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                  chat_template: str | None, *, add_generation_prompt: bool = True,
                  bos_token: str = "", eos_token: str = "") -> str:
    """Render ``messages`` (+ ``tools``) into the prompt text for a completion model.

    Uses ``chat_template`` (the GGUF's ``tokenizer.chat_template``) when given, else the ChatML
    fallback. Raises :class:`ChatTemplateError` when the template rejects the input.
    """
    normalized = [normalize_message(m) for m in messages]
    context = {
        "messages": normalized,
        "tools": tools or None,
        "add_generation_prompt": add_generation_prompt,
        "bos_token": bos_token,
        "eos_token": eos_token,
    }
    try:
        template = _compile(chat_template) if chat_template else _compile_fallback()
        return template.render(**context)
    except TemplateError as exc:
        raise ChatTemplateError(f"chat template failed to render the messages: {exc}") from exc
    except (TypeError, KeyError, AttributeError) as exc:
        raise ChatTemplateError(f"messages do not fit the chat template: {exc}") from exc


def format_tool_call(name: str, arguments: Any) -> str:
    payload = json.dumps({"name": name, "arguments": _arguments_object(arguments)}, ensure_ascii=False)
    return f"<tool_call>\n{payload}\n</tool_call>"


def assistant_target(message: dict[str, Any]) -> str:
    """The text the model should generate for an assistant ``message``: content, then one
    ``<tool_call>`` block per call, separated by newlines (no end-of-turn marker)."""
    message = normalize_message(message)
    pieces = []
    if message.get("content"):
        pieces.append(message["content"])
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        pieces.append(format_tool_call(function.get("name", ""), function.get("arguments")))
    return "\n".join(pieces)


def training_pair(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                  chat_template: str | None, *, bos_token: str = "", eos_token: str = "") -> tuple[str, str]:
    """Split a conversation ending in an assistant message into (prompt, target) for SFT.

    The target is whatever the template renders after the generation prompt (so it includes the
    template's own end-of-turn), falling back to ``assistant_target`` + end-of-turn when the
    template's rendering of the history does not start with the generation prompt.
    """
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("training_pair needs a conversation that ends with an assistant message")
    kwargs = {"bos_token": bos_token, "eos_token": eos_token}
    prompt = render_prompt(messages[:-1], tools, chat_template, add_generation_prompt=True, **kwargs)
    full = render_prompt(messages, tools, chat_template, add_generation_prompt=False, **kwargs)
    if full.startswith(prompt):
        return prompt, full[len(prompt):]
    return prompt, assistant_target(messages[-1]) + FALLBACK_END_OF_TURN


# ---------------------------------------------------------------- parsing

_TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)\n?\s*```", re.DOTALL)


def _strip_fence(text: str) -> str:
    text = text.strip()
    match = _FENCE.fullmatch(text)
    return match.group(1).strip() if match else text


def _as_call(obj: Any) -> dict[str, Any] | None:
    """``{"name": str, "arguments": {...}}`` (or ``parameters``) → normalized call, else None."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return None
    if "function" in obj and isinstance(obj["function"], dict):  # an OpenAI-shaped call
        return _as_call(obj["function"])
    arguments = obj.get("arguments", obj.get("parameters", {}))
    arguments = _arguments_object(arguments)
    if not isinstance(arguments, dict):
        return None
    return {"name": obj["name"], "arguments": arguments}


def _calls_from_json_text(text: str) -> list[dict[str, Any]] | None:
    """Calls from text that is entirely JSON: one object, a list of objects, or several objects
    one after another. None if any part is not a call."""
    text = _strip_fence(text)
    if not text or text[0] not in "[{":
        return None
    decoder = json.JSONDecoder()
    values, pos = [], 0
    while pos < len(text):
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return None
        values.extend(value if isinstance(value, list) else [value])
        pos = end
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
    calls = [_as_call(v) for v in values]
    if not calls or any(c is None for c in calls):
        return None
    return calls  # type: ignore[return-value]


def _leading_calls(text: str) -> tuple[list[dict[str, Any]], str]:
    """Calls at the very start of ``text`` followed by anything else (small models often keep
    writing after a bare JSON call - an imagined tool result, say). Returns (calls, the rest)."""
    stripped = text.lstrip()
    decoder = json.JSONDecoder()
    calls: list[dict[str, Any]] = []
    pos = 0
    while pos < len(stripped) and stripped[pos] in "[{":
        try:
            value, end = decoder.raw_decode(stripped, pos)
        except json.JSONDecodeError:
            break
        parsed = [_as_call(v) for v in (value if isinstance(value, list) else [value])]
        if not parsed or any(c is None for c in parsed):
            break
        calls.extend(parsed)  # type: ignore[arg-type]
        pos = end
        while pos < len(stripped) and stripped[pos] in " \t\r\n,":
            pos += 1
    return calls, stripped[pos:].strip() if calls else text.strip()


def _call_id(index: int, call: dict[str, Any]) -> str:
    # Deterministic ids: identical outputs give identical messages (reproducible evaluations).
    digest = hashlib.sha1(f"{index}:{call['name']}:{json.dumps(call['arguments'], sort_keys=True)}".encode())
    return f"call_{digest.hexdigest()[:16]}"


def _openai_tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"id": _call_id(i, c), "type": "function",
         "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
        for i, c in enumerate(calls)
    ]


def parse_completion(text: str) -> dict[str, Any]:
    """Generated text → OpenAI assistant message ``{role, content, tool_calls?}``.

    Accepts ``<tool_call>{json}</tool_call>`` blocks (several allowed; an unclosed last block is
    accepted when its JSON is complete), or the whole output being a bare JSON call / list of calls,
    optionally in a ```json fence, or bare JSON calls at the start followed by other text (the text is
    kept in ``content``). Anything that does not parse stays in ``content``.
    """
    calls: list[dict[str, Any]] = []
    remaining: list[str] = []
    cursor = 0
    for match in _TOOL_CALL_BLOCK.finditer(text):
        parsed = _calls_from_json_text(match.group(1))
        if parsed is None:
            continue
        calls.extend(parsed)
        remaining.append(text[cursor:match.start()])
        cursor = match.end()
    remaining.append(text[cursor:])
    content = "".join(remaining).strip()

    if not calls:
        bare = _calls_from_json_text(text)
        if bare is not None:
            calls, content = bare, ""
        else:
            fenced = list(_FENCE.finditer(text))
            fenced_calls = [_calls_from_json_text(m.group(1)) for m in fenced]
            if fenced and all(c is not None for c in fenced_calls):
                calls = [c for group in fenced_calls for c in group]  # type: ignore[union-attr]
                content = _FENCE.sub("", text).strip()
            else:
                calls, content = _leading_calls(text)

    message: dict[str, Any] = {"role": "assistant", "content": content or None}
    if calls:
        message["tool_calls"] = _openai_tool_calls(calls)
    return message
