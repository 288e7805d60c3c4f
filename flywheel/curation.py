"""Curation: turn raw log records into normalised, de-duplicated dataset rows, counting every rule.

Rules, in order, each counted in ``CurationResult.counts``:

- ``invalid_format``: the record does not parse (``invalid_by_reason`` breaks it down by
  :class:`~flywheel.records.RecordError` reason);
- ``arguments_not_json``: a tool call's arguments are not a JSON object (only when arguments are parsed);
- ``pii_redacted``: records changed by redaction (emails -> ``[EMAIL]``, phone numbers -> ``[PHONE]``)
  when ``config.redact_pii``; such records are kept;
- ``duplicate``: same conversation and same expected tool calls as an earlier record (first kept). The
  conversation is every user, assistant and tool turn of the request (user turns compared with
  :func:`~flywheel.records.normalize_query`); two multi-turn records that share only their last
  question are different records.

Unlike the reference, records whose response calls no tool are kept ("no call expected";
counted as ``no_tool_call``) and tools with many properties are kept.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from flywheel.config import CurationConfig
from flywheel.record_normalize import normalize_record
from flywheel.records import (
    RecordError,
    call_arguments,
    call_name,
    content_text,
    conversation_turns,
    expected_calls,
    message_tool_calls,
    normalize_query,
)

_ARGUMENT_REASONS = ("arguments_not_json", "arguments_not_object")

EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# Separators are required between digit groups so order numbers and SKUs are never mistaken for phones.
PHONE_RE = re.compile(
    r"(?<![\w-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])\d{3,4}[\s.-]\d{3,4}(?![\w-])"
)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_ORJSON_CANONICAL = (orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME
                     | orjson.OPT_PASSTHROUGH_DATACLASS)
_SHORT_EXPONENT = re.compile(rb"\de-")


def _not_json(value: Any) -> Any:
    raise TypeError(type(value).__name__)


def canonical_bytes(value: Any) -> bytes:
    """``canonical_json(value).encode()``, computed by orjson (~5x faster) wherever the bytes are the same.

    orjson writes NaN and infinities as ``null`` and floats below 1e-4 as ``0.00001`` / ``1e-7`` where
    json writes ``1e-05``; it rejects integers beyond 64 bits, non-str keys and lone surrogates. Output
    that may hold any of these is redone by json, so hashes (record ids, dedup keys) never change.
    """
    try:
        out = orjson.dumps(value, default=_not_json, option=_ORJSON_CANONICAL)
    except TypeError:
        return canonical_json(value).encode()
    if b"null" in out or b"0.0000" in out or (b"e-" in out and _SHORT_EXPONENT.search(out)):
        return canonical_json(value).encode()
    return out


class _SharedTools:
    """The last distinct tools list seen, with its sha256; thread-safe (the state is swapped as one tuple).

    Every record of a workload repeats the same ~3 KB of tool schemas (~25 KB as Python objects).
    Comparing with the previous list is several times cheaper than serialising it again, and
    curated rows then share one list instead of each keeping its own copy. ``alias`` is the last
    list found equal: the log store hands out one tools list per distinct value, so comparing with
    it is a few identity checks even when ``shared`` came from another extraction.
    """

    def __init__(self) -> None:
        self._state: tuple[Any, str, Any] = (None, "", None)

    def lookup(self, tools: Any) -> tuple[Any, str]:
        shared, digest, alias = self._state
        if tools is shared or tools is alias:
            return shared, digest
        if tools in (alias, shared):
            self._state = (shared, digest, tools)
            return shared, digest
        digest = hashlib.sha256(canonical_bytes(tools)).hexdigest()
        self._state = (tools, digest, None)
        return tools, digest


_shared_tools = _SharedTools()


def record_id(row: dict[str, Any]) -> str:
    """Stable id of a normalised row, first 16 hex digits of a sha256.

    It covers the row's canonical JSON with ``request.tools`` replaced by the tools' own sha256.
    """
    request = row["request"]
    if "tools" in request:
        row = {**row, "request": {**request, "tools": _shared_tools.lookup(request["tools"])[1]}}
    return hashlib.sha256(canonical_bytes(row)).hexdigest()[:16]


def redact_text(text: str) -> str:
    return PHONE_RE.sub("[PHONE]", EMAIL_RE.sub("[EMAIL]", text))


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(v) for v in value]
    return value


def _redact_message(msg: dict[str, Any]) -> bool:
    """Redact a normalised message in place (it is curation's own copy). True if anything changed."""
    changed = False
    if "content" in msg:
        new = _redact_value(msg["content"])
        changed = new != msg["content"]
        msg["content"] = new
    # Ground-truth arguments must stay consistent with the redacted prompt; a new object is built
    # because argument dicts may be shared with the caller's raw record.
    for tc in msg.get("tool_calls") or []:
        args = tc["function"]["arguments"]
        new_args = _redact_value(args)
        if new_args != args:
            tc["function"]["arguments"] = new_args
            changed = True
    return changed


def redact_row(row: dict[str, Any]) -> bool:
    changed = False
    for msg in row["request"]["messages"]:
        changed |= _redact_message(msg)
    for choice in row["response"]["choices"]:
        changed |= _redact_message(choice["message"])
    return changed


def _turn_key(message: dict[str, Any]) -> list[Any]:
    """What counts of one conversation turn: role, text (user text normalised) and the calls made.

    Call ids are left out: they are random per request, so two identical conversations never share them.
    """
    role = message.get("role")
    text = content_text(message.get("content"))
    if role == "user":
        return [role, normalize_query(text)]
    calls = message_tool_calls(message)
    if not calls:
        return [role, text]
    return [role, text, [[call_name(c), call_arguments(c)] for c in calls]]


def dedup_parts(row: dict[str, Any]) -> list[Any]:
    """What makes two records duplicates: ``[turns, expected calls]``.

    ``turns``: :func:`_turn_key` of every user, assistant and tool turn of the request (system prompt
    and tool schemas are the workload's setting, not the conversation); expected calls: ``[name,
    arguments]`` sorted by name and canonical arguments, so their order does not count.
    """
    calls = [[tc["function"]["name"], tc["function"]["arguments"]] for tc in expected_calls(row)]
    if len(calls) > 1:
        calls.sort(key=lambda call: (call[0], canonical_bytes(call[1])))
    return [[_turn_key(m) for m in conversation_turns(row)], calls]


def dedup_key(row: dict[str, Any]) -> int:
    """64-bit digest of :func:`dedup_parts` in canonical JSON.

    64 bits keep the dedup set small (~60 B per kept record); a collision is ~1e-8 likely at 1M records.
    """
    return int.from_bytes(hashlib.blake2b(canonical_bytes(dedup_parts(row)), digest_size=8).digest(), "big")


def new_counts() -> dict[str, Any]:
    return {"total_in": 0, "invalid_format": 0, "arguments_not_json": 0, "duplicate": 0, "pii_redacted": 0,
            "no_tool_call": 0, "kept": 0, "invalid_by_reason": {}}


def iter_curated(records: Iterable[dict[str, Any]], config: CurationConfig, counts: dict[str, Any], *,
                 parse_function_arguments: bool = True) -> Iterator[dict[str, Any]]:
    """Streaming curation: yields kept rows and updates ``counts`` (see :func:`new_counts`) in place.

    Memory is constant in the input size except for the dedup set (~60 bytes per kept record).
    Rows whose tools are equal share one tools list object: treat rows as read-only.
    """
    seen: set[int] = set()
    by_reason: dict[str, int] = counts["invalid_by_reason"]
    for raw in records:
        counts["total_in"] += 1
        try:
            row = normalize_record(raw, parse_function_arguments)
        except RecordError as exc:
            by_reason[exc.reason] = by_reason.get(exc.reason, 0) + 1
            counts["arguments_not_json" if exc.reason in _ARGUMENT_REASONS else "invalid_format"] += 1
            continue
        request = row["request"]
        if "tools" in request:
            request["tools"] = _shared_tools.lookup(request["tools"])[0]
        if config.redact_pii and redact_row(row):
            counts["pii_redacted"] += 1
        if config.dedup:
            key = dedup_key(row)
            if key in seen:
                counts["duplicate"] += 1
                continue
            seen.add(key)
        if not expected_calls(row):
            counts["no_tool_call"] += 1
        row["record_id"] = record_id(row)
        counts["kept"] += 1
        yield row


@dataclass
class CurationResult:
    rows: list[dict[str, Any]]
    counts: dict[str, Any] = field(default_factory=new_counts)
    total_in: int = 0


def curate(records: Iterable[dict[str, Any]], config: CurationConfig, *,
           parse_function_arguments: bool = True) -> CurationResult:
    """Curate ``records`` (raw log dicts) into normalised rows with a stable ``record_id`` each."""
    counts = new_counts()
    rows = list(iter_curated(records, config, counts, parse_function_arguments=parse_function_arguments))
    return CurationResult(rows=rows, counts=counts, total_in=counts["total_in"])
