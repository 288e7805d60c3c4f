"""Fast normalisation of log records: :func:`normalize_record` equals
``parse_record(raw).model_dump(mode="json", exclude_none=True)`` (output and errors) without pydantic
for the common well-formed shapes. The record shape itself lives in :mod:`flywheel.records`.
"""

from __future__ import annotations

from typing import Any

from flywheel.records import parse_arguments, parse_record

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
