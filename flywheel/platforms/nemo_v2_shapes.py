"""What the NeMo Platform (v2) accepts, as pure functions: valid entity and job names, the inline
``tool-calling`` metric bundle, and a log record as an Evaluator row. Used by :mod:`flywheel.platforms.nemo_v2`."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from flywheel.records import call_arguments, expected_calls

# Marks a template whose single expression yields JSON text: the Evaluator json-decodes templates mentioning tojson.
JSON_TEXT = "{# tojson: this column holds JSON text #}"
_OUTPUT_SCHEMA = {"description": "Continuous numeric metric value.", "title": "ContinuousScore", "type": "number"}


def tool_calling_metric() -> dict[str, Any]:
    """The inline-bundled built-in ``tool-calling`` metric (what the Evaluator SDK's packager produces)."""
    return {
        "bundle_kind": "metric-bundle", "bundle_format_version": "v1", "metric_type": "tool-calling",
        "metadata": {"description": None, "labels": {}},
        "outputs": [{"name": n, "description": None, "value_json_schema": _OUTPUT_SCHEMA}
                    for n in ("function_name_accuracy", "function_name_and_args_accuracy")],
        "secrets": {},
        "payload": {"kind": "inline", "metric": {"type": "tool-calling", "description": None, "labels": {},
                                                  "supported_job_types": ["online", "offline"],
                                                  "reference": JSON_TEXT + "{{ item.tool_calls_json }}"}},
    }


def entity_name(raw: str, max_len: int = 63) -> str:
    """A valid platform name (lowercase, 2-``max_len`` chars, no ``--``), deterministic for ``raw``."""
    name = re.sub(r"[^a-z0-9\-.]+", "-", raw.lower())
    name = re.sub(r"-{2,}", "-", name).strip("-.")
    if not name or not name[0].isalpha():
        name = f"f-{name}"
    if len(name) > max_len or name != raw:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{name[:max_len - 9].rstrip('-.')}-{digest}"
    return name


# The Jobs service creates a fileset ``job-fileset-{job name}`` (≤ 63 chars) for every job; a longer job name
# makes the create fail with a generic 409 "conflicts with existing platform state" (found by the end-to-end test).
JOB_NAME_MAX = 63 - len("job-fileset-")


def job_name(spec_name: str) -> str:
    """The platform job name for our deterministic spec name (≤ JOB_NAME_MAX chars)."""
    return entity_name(spec_name, JOB_NAME_MAX)


def eval_row(row: dict[str, Any]) -> dict[str, Any]:
    """A log record → the Evaluator's row: JSON-text columns for messages, tools and expected tool calls."""
    request = row.get("request") or {}
    calls = [{**call, "function": {**(call.get("function") or {}), "arguments": call_arguments(call)}}
             for call in expected_calls(row)]
    return {"messages_json": json.dumps(request.get("messages") or []),
            "tools_json": json.dumps(request.get("tools") or []),
            "tool_calls_json": json.dumps(calls)}
