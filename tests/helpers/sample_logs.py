"""The shipped sample logs the end-to-end runs start from (the first ``NUM_SAMPLE_RECORDS`` lines)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

from flywheel.ingest import load_jsonl
from flywheel.logstore import open_logstore
from tests.helpers import REPO_ROOT

SAMPLE_LOGS = REPO_ROOT / "data" / "primary_assistant-aiva-1.jsonl"
SAMPLE_WORKLOAD, SAMPLE_CLIENT = "primary_assistant", "aiva-1"
NUM_SAMPLE_RECORDS = 60


def last_user(messages: Sequence[dict[str, Any]]) -> str:
    return next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")


def sample_lines() -> list[str]:
    with SAMPLE_LOGS.open() as fh:
        return list(itertools.islice(fh, NUM_SAMPLE_RECORDS))


def load_sample_logs(settings: Any) -> None:
    """Load the sample records into the settings' log store (SQLite under ``platform.data_dir``)."""
    store = open_logstore(settings)
    try:
        report = load_jsonl(sample_lines(), store)
    finally:
        store.close()
    assert report.loaded == NUM_SAMPLE_RECORDS, report


def logged_answers() -> dict[str, list[dict[str, Any]]]:
    """Last user message → the production model's logged tool calls (OpenAI wire format: JSON-text arguments)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for line in sample_lines():
        rec = json.loads(line)
        calls = rec["response"]["choices"][0]["message"].get("tool_calls") or []
        out[last_user(rec["request"]["messages"])] = [
            {**c, "function": {**c["function"], "arguments": c["function"]["arguments"]
                               if isinstance(c["function"]["arguments"], str)
                               else json.dumps(c["function"]["arguments"])}} for c in calls]
    return out
