"""Log records: one production chat-completion request with the response the big model gave.

A record is ``{timestamp, workload_id, client_id, request, response}`` where ``request`` is an
OpenAI chat.completions request (model, messages, tools?) and ``response`` a ChatCompletion.
Tool-call ``arguments`` may arrive as a JSON string or an object; :func:`parse_record` normalises
them to objects (or raises :class:`RecordError` with a reason when they are not JSON), and
:func:`normalize_record` does the same as plain dicts, fast.

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


# --- Fast normalisation -------------------------------------------------------------------------
# Curation normalises every extracted record; going through pydantic (validate + model_dump) costs
# ~10x more than plain dict work. ``normalize_record`` handles the common well-formed shapes
# directly and falls back to the pydantic path for anything unusual, so its output and its errors
# are exactly those of ``parse_record(raw).model_dump(mode="json", exclude_none=True)``.


class _NotSimple(Exception):
    """The fast path cannot vouch for this record; use pydantic."""


def _add_extras(raw: dict[str, Any], known: frozenset[str], out: dict[str, Any]) -> None:
    for key, value in raw.items():
        if key not in known and value is not None:
            out[key] = value


_MESSAGE_FIELDS = frozenset(("role", "content", "tool_calls", "tool_call_id", "name"))
_TOOL_CALL_FIELDS = frozenset(("id", "type", "function"))
_FUNCTION_FIELDS = frozenset(("name", "arguments"))
_RECORD_FIELDS = frozenset(("timestamp", "workload_id", "client_id", "request", "response"))
_REQUEST_FIELDS = frozenset(("model", "messages", "tools"))
_RESPONSE_FIELDS = frozenset(("choices",))
_CHOICE_FIELDS = frozenset(("index", "message", "finish_reason"))
_NUMBER = (int, float)
_DICT_ONLY = frozenset((dict,))


def _fast_message(raw: Any, pending_arguments: list[dict[str, Any]]) -> dict[str, Any]:
    if type(raw) is not dict:
        raise _NotSimple
    role, content = raw.get("role"), raw.get("content")
    if type(role) is not str:
        raise _NotSimple
    if type(content) is str and len(raw) == 2:  # {role, content}: most messages
        return {"role": role, "content": content}
    out: dict[str, Any] = {"role": role}
    if type(content) is str:
        out["content"] = content
    elif type(content) is list:
        out["content"] = list(content)
    elif content is not None:
        raise _NotSimple
    calls = raw.get("tool_calls")
    if calls is not None:
        if type(calls) is not list:
            raise _NotSimple
        out["tool_calls"] = [_fast_tool_call(tc, pending_arguments) for tc in calls]
    call_id, name = raw.get("tool_call_id"), raw.get("name")
    if call_id is not None:
        if type(call_id) is not str:
            raise _NotSimple
        out["tool_call_id"] = call_id
    if name is not None:
        if type(name) is not str:
            raise _NotSimple
        out["name"] = name
    if not raw.keys() <= _MESSAGE_FIELDS:
        _add_extras(raw, _MESSAGE_FIELDS, out)
    return out


def _fast_tool_call(raw: Any, pending_arguments: list[dict[str, Any]]) -> dict[str, Any]:
    if type(raw) is not dict:
        raise _NotSimple
    fn = raw.get("function")
    call_id, call_type = raw.get("id"), raw.get("type", "function")
    if type(fn) is not dict or type(fn.get("name")) is not str or type(call_type) is not str:
        raise _NotSimple
    if call_id is not None and type(call_id) is not str:
        raise _NotSimple
    arguments = fn.get("arguments", {})
    if type(arguments) is dict:
        arguments = dict(arguments)
    elif type(arguments) is not str:
        raise _NotSimple
    function = {"name": fn["name"], "arguments": arguments}
    if not fn.keys() <= _FUNCTION_FIELDS:
        _add_extras(fn, _FUNCTION_FIELDS, function)
    pending_arguments.append(function)
    out: dict[str, Any] = {"id": call_id, "type": call_type} if call_id is not None else {"type": call_type}
    out["function"] = function
    if not raw.keys() <= _TOOL_CALL_FIELDS:
        _add_extras(raw, _TOOL_CALL_FIELDS, out)
    return out


def _fast_choice(choice: Any, pending_arguments: list[dict[str, Any]]) -> dict[str, Any]:
    if type(choice) is not dict:
        raise _NotSimple
    index, finish_reason = choice.get("index", 0), choice.get("finish_reason")
    if type(index) is not int or (finish_reason is not None and type(finish_reason) is not str):
        raise _NotSimple
    out = {"index": index, "message": _fast_message(choice.get("message"), pending_arguments)}
    if finish_reason is not None:
        out["finish_reason"] = finish_reason
    if not choice.keys() <= _CHOICE_FIELDS:
        _add_extras(choice, _CHOICE_FIELDS, out)
    return out


def _fast_normalize(raw: dict[str, Any], parse_function_arguments: bool) -> dict[str, Any]:
    ts, workload_id, client_id = raw.get("timestamp"), raw.get("workload_id"), raw.get("client_id")
    request, response = raw.get("request"), raw.get("response")
    if type(ts) not in _NUMBER or type(workload_id) is not str or type(client_id) is not str:
        raise _NotSimple
    if type(request) is not dict or type(response) is not dict:
        raise _NotSimple
    messages, tools, model = request.get("messages"), request.get("tools"), request.get("model")
    choices = response.get("choices")
    if type(messages) is not list or not messages or type(choices) is not list or not choices:
        raise _NotSimple
    if model is not None and type(model) is not str:
        raise _NotSimple
    if tools is not None and (type(tools) is not list or not _DICT_ONLY.issuperset(map(type, tools))):
        raise _NotSimple
    request_args: list[dict[str, Any]] = []  # request-side tool calls keep their arguments as given
    req: dict[str, Any] = {"model": model} if model is not None else {}
    req["messages"] = [_fast_message(m, request_args) for m in messages]
    if tools is not None:
        req["tools"] = list(tools)
    if not request.keys() <= _REQUEST_FIELDS:
        _add_extras(request, _REQUEST_FIELDS, req)
    response_args: list[dict[str, Any]] = []
    out_choices = [_fast_choice(choices[0], response_args)]
    out_choices += [_fast_choice(choice, []) for choice in choices[1:]]
    resp = {"choices": out_choices}
    if not response.keys() <= _RESPONSE_FIELDS:
        _add_extras(response, _RESPONSE_FIELDS, resp)
    row = {"timestamp": float(ts), "workload_id": workload_id, "client_id": client_id, "request": req,
           "response": resp}
    if not raw.keys() <= _RECORD_FIELDS:
        _add_extras(raw, _RECORD_FIELDS, row)
    if parse_function_arguments:  # only after the whole structure is known valid, as parse_record does
        for function in response_args:
            function["arguments"] = parse_arguments(function["arguments"])
    return row


def normalize_record(raw: Any, parse_function_arguments: bool = True) -> dict[str, Any]:
    """``parse_record(raw).model_dump(mode="json", exclude_none=True)``, fast for well-formed records.

    Raises the same :class:`RecordError` as :func:`parse_record`. The result may share leaf
    objects (tool schemas, argument values) with ``raw``: treat both as read-only.
    """
    if isinstance(raw, dict):
        try:
            return _fast_normalize(raw, parse_function_arguments)
        except _NotSimple:
            pass
    return parse_record(raw, parse_function_arguments).model_dump(mode="json", exclude_none=True)


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
