"""Log records: one production chat-completion request with the response the big model gave.

A record is ``{timestamp, workload_id, client_id, request, response}`` where ``request`` is an
OpenAI chat.completions request (model, messages, tools?) and ``response`` a ChatCompletion.
Tool-call ``arguments`` may arrive as a JSON string or an object; :func:`parse_record` normalises
them to objects (or raises :class:`RecordError` with a reason when they are not JSON).
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


def expected_tool_calls(record: LogRecord) -> list[ToolCall]:
    """The ground-truth tool calls (empty list means 'no call expected')."""
    return list(record.response.message.tool_calls or [])


def first_user_query(record: LogRecord) -> str:
    """The last user message's text: the key for dedup, leakage checks and ICL similarity."""
    for msg in reversed(record.request.messages):
        if msg.role == "user":
            if isinstance(msg.content, str):
                return msg.content
            if isinstance(msg.content, list):
                return " ".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in msg.content)
    return ""


def tool_names(record: LogRecord) -> list[str]:
    """Stratification key parts: the names of the expected tool calls (sorted)."""
    return sorted(tc.function.name for tc in expected_tool_calls(record))
