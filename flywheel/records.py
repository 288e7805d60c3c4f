"""Log records: one production chat-completion request with the response the big model gave.

A record is ``{timestamp, workload_id, client_id, request, response}`` where ``request`` is an
OpenAI chat.completions request (model, messages, tools?) and ``response`` a ChatCompletion.
Tool-call ``arguments`` may arrive as a JSON string or an object; :func:`parse_record` normalises
them to objects (or raises :class:`RecordError` with a reason when they are not JSON), and
:func:`flywheel.record_normalize.normalize_record` does the same as plain dicts, fast.

This module is the one place that knows the shape: the accessors at the end (the expected answer
and calls, the user query and its normaliser, tool names and signature, content text) are what
curation, splits, ICL, scoring, SFT data and the platforms read records with.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class RecordError(ValueError):
    """A record that cannot be used; ``reason`` is a short stable code for counting."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str | None = None
    type: str = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[Any] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[ChatMessage]
    tools: list[dict[str, Any]] | None = None


class Choice(BaseModel):
    model_config = ConfigDict(extra="allow")
    index: int = 0
    message: ChatMessage
    finish_reason: str | None = None


class ChatResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    choices: list[Choice]

    @property
    def message(self) -> ChatMessage:
        return self.choices[0].message


class LogRecord(BaseModel):
    model_config = ConfigDict(extra="allow")
    timestamp: float
    workload_id: str
    client_id: str
    request: ChatRequest
    response: ChatResponse


def parse_arguments(arguments: dict[str, Any] | str | None) -> dict[str, Any]:
    """Tool-call arguments as an object. Raises RecordError('arguments_not_json') otherwise."""
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments)
    except (TypeError, json.JSONDecodeError) as exc:
        raise RecordError("arguments_not_json", str(exc)) from exc
    if not isinstance(value, dict):
        raise RecordError("arguments_not_object", f"got {type(value).__name__}")
    return value


def parse_record(raw: Any, parse_function_arguments: bool = True) -> LogRecord:
    """Validate one raw record. Raises RecordError with a countable reason."""
    if not isinstance(raw, dict):
        raise RecordError("not_an_object", f"got {type(raw).__name__}")
    for field in ("timestamp", "workload_id", "client_id", "request", "response"):
        if field not in raw or raw[field] is None:
            raise RecordError("missing_field", field)
    try:
        record = LogRecord.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise RecordError("invalid_format", f"{loc}: {first['msg']}") from exc
    if not record.response.choices:
        raise RecordError("no_choices")
    if not record.request.messages:
        raise RecordError("no_messages")
    if parse_function_arguments:
        for tc in record.response.message.tool_calls or []:
            tc.function.arguments = parse_arguments(tc.function.arguments)
    return record


# --- Reading the record shape -------------------------------------------------------------------
# The one set of accessors every consumer uses (curation, splits, ICL, scoring, SFT data, platforms).
# They read plain dicts, raw or normalised, and read a missing piece as empty; only
# :func:`response_message` raises, for callers that must reject a malformed response.

NO_CALL = "(no call)"
CONTEXT_ROLES = frozenset(("system", "developer"))  # the workload's setting, not a turn of the conversation


def content_text(content: Any) -> str:
    """Text of an OpenAI ``content``: a string as is, a list of parts as their texts joined by spaces."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    return ""


def response_message(response: Any) -> dict[str, Any]:
    """``choices[0].message`` of a ChatCompletion; a bare message dict is accepted as is.

    Raises ValueError when ``response`` is neither.
    """
    if not isinstance(response, dict):
        raise ValueError(f"expected an object, got {type(response).__name__}")
    if "choices" in response:
        choices = response["choices"]
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ValueError("choices is empty or malformed")
        message = choices[0].get("message")
        if not isinstance(message, dict):
            raise ValueError("choices[0].message is missing")
        return message
    if "role" in response or "content" in response or "tool_calls" in response:
        return response
    raise ValueError("neither a ChatCompletion (choices) nor a message")


def message_tool_calls(message: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A message's tool calls (only the well-formed dict entries); empty when it calls nothing."""
    calls = (message or {}).get("tool_calls") or []
    return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def message_text(message: dict[str, Any] | None) -> str:
    return content_text((message or {}).get("content"))


def call_dict(call: Any) -> dict[str, Any]:
    """A tool call as a dict: pydantic :class:`ToolCall` objects are dumped, anything else not a dict is empty."""
    if hasattr(call, "model_dump"):
        return call.model_dump()
    return call if isinstance(call, dict) else {}


def call_name(call: Any) -> str:
    """The function name of an OpenAI tool call (``{"function": {"name"}}``) or of a flat ``{"name"}``."""
    call = call_dict(call)
    function = call.get("function")
    name = (function if isinstance(function, dict) else call).get("name")
    return name if isinstance(name, str) else ""


def call_arguments(call: Any) -> Any:
    """A tool call's arguments as parsed JSON (missing or empty: ``{}``); text that is not JSON is kept as is."""
    call = call_dict(call)
    function = call.get("function")
    arguments = (function if isinstance(function, dict) else call).get("arguments")
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    return arguments


def expected_message(row: dict[str, Any]) -> dict[str, Any]:
    """The production model's answer in a record (``response.choices[0].message``); ``{}`` when malformed."""
    try:
        return response_message(row.get("response"))
    except ValueError:
        return {}


def expected_calls(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The ground-truth tool calls of a record (empty: no call expected)."""
    return message_tool_calls(expected_message(row))


def tool_names(row: dict[str, Any]) -> list[str]:
    """The names of the expected tool calls, sorted (a tool called twice appears twice)."""
    return sorted(call_name(call) for call in expected_calls(row))


def tool_signature(row: dict[str, Any]) -> str:
    """What kind of answer a record expects: its sorted tool names joined by '|', or ``NO_CALL``.

    The split's strata and ICL's coverage groups. ``NO_CALL`` sorts before any tool name, like ''.
    """
    return "|".join(tool_names(row)) or NO_CALL


def request_messages(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's messages (the well-formed dict entries)."""
    messages = (row.get("request") or {}).get("messages") or []
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def conversation_turns(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's user, assistant and tool turns: every message but the system/developer prompt."""
    return [m for m in request_messages(row) if m.get("role") not in CONTEXT_ROLES]


def user_query(row: dict[str, Any]) -> str:
    """The text of the request's last user message ('' when there is none)."""
    for message in reversed(request_messages(row)):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def normalize_query(text: str) -> str:
    """The one normaliser of user queries: case, whitespace and trailing ``.!?`` do not count."""
    return " ".join(text.casefold().split()).rstrip(" .!?")


def query_key(row: dict[str, Any]) -> str:
    """The normalised last user query: the split's leakage key and ICL's self-exclusion key."""
    return normalize_query(user_query(row))
