"""The LLM judge on NeMo Platform (v2): the Evaluator's own ``llm-judge`` metric, asked our questions.

The judge runs inside the evaluation job, beside the ``tool-calling`` metric, on the very answers the
candidate gave (one candidate request per row serves both metrics). What it asks and how its verdicts
count are the evaluator of record's (``flywheel.metrics`` / ``flywheel.judge``), so a score means the
same on every platform:

* **Prompts.** The fixed parts of each question (the conversation, the expected calls or the production
  answer) are computed here and uploaded as two text columns of the split's evaluator copy,
  ``judge_head`` and ``judge_tail``; the template only renders the candidate's answer between them, in
  the format the local judge shows it. No template may mention ``tojson`` (the Evaluator json-decodes
  any template that does), so predicted calls are written out with a loop.
* **Parsing.** A regex parser with one capture group that reads what :func:`flywheel.metrics.parse_judge_score`
  reads (``{"score": 1}``, ``SCORE: 1``, ``similarity: 8``, a bare number; whole numbers, so 10 is ten).
* **Rules and range.** After the job the per-row verdicts are read back (row scores): failed requests and
  records expecting no call are settled by the same rules as locally (the judge's answer for them is
  ignored), verdicts outside 0/1 (``tool_calling_correctness``) or 1-10 (``similarity``) and NaN are
  left out, and the mean and its note come from :func:`flywheel.judge.verdicts_mean`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from flywheel.judge import (
    SIMILARITY_MAX,
    SIMILARITY_MIN,
    SIMILARITY_SYSTEM_PROMPT,
    similarity_by_rule,
    similarity_prompt_parts,
    tool_verdict_by_rule,
    verdicts_mean,
)
from flywheel.metrics import JUDGE_METRIC, JUDGE_SYSTEM_PROMPT, SIMILARITY_METRIC, judge_prompt_parts
from flywheel.records import expected_calls, message_text, response_message
from flywheel.scoring import summarize

JUDGE_METRIC_TYPE = "llm-judge"  # the key of the judge's values in a row score's ``metrics``
JUDGE_MAX_TOKENS = 64  # as the local judge: a verdict is a short JSON object

# The candidate's tool calls as the local judge shows them: [{"name": …, "arguments": {…}}, …]. Arguments
# are the model's own JSON text (an OpenAI-compatible endpoint sends text); missing or empty ones are {}.
PREDICTED_CALLS = (
    "{%- set message = ((((sample.get('response') or {}).get('choices') or [{}])[0] or {}).get('message') or {}) -%}"
    "[{%- for call in (message.get('tool_calls') or []) -%}"
    "{%- set function = call.get('function') or {} -%}"
    "{%- if not loop.first %}, {% endif -%}"
    "{\"name\": \"{{ function.get('name') or '' }}\", \"arguments\": {{ function.get('arguments') or '{}' }}}"
    "{%- endfor -%}]"
)
# The candidate's text answer, "(empty)" when there is none (as the local similarity judge).
CANDIDATE_TEXT = (
    "{%- set message = ((((sample.get('response') or {}).get('choices') or [{}])[0] or {}).get('message') or {}) -%}"
    "{{ message.get('content') or '(empty)' }}"
)
# One capture group (the Evaluator takes the first); the number is validated against the range afterwards.
SCORE_PATTERN = (r'(?i)(?:"score"\s*:\s*"?\s*|\bscore\b\s*[:=]?\s*\**\s*|\bsimilarity\b\s*[:=]?\s*\**\s*'
                 r"|^\W*(?=-?\d+(?:\.\d+)?\W*$))(-?\d+(?:\.\d+)?)")
_CONTINUOUS = {"description": "Continuous numeric metric value.", "title": "ContinuousScore", "type": "number"}


def judged_metric(tool_workload: bool) -> str:
    """Which score the judge gives: ``tool_calling_correctness`` on tool workloads, else ``similarity``."""
    return JUDGE_METRIC if tool_workload else SIMILARITY_METRIC


def judge_columns(row: dict[str, Any], tool_workload: bool) -> dict[str, str]:
    """The fixed text around the candidate's answer in this row's judge question."""
    request = row.get("request") or {}
    if tool_workload:
        head, tail = judge_prompt_parts(request, expected_calls(row))
    else:
        head, tail = similarity_prompt_parts(request, message_text(response_message(row.get("response"))))
    return {"judge_head": head, "judge_tail": tail}


def _raw(text: str) -> str:
    """Literal text in a Jinja template."""
    if "{% endraw %}" in text:
        raise ValueError("a judge system prompt must not contain '{% endraw %}'")
    return "{% raw %}" + text + "{% endraw %}"


def judge_metric(url: str, model: str, tool_workload: bool, api_key_secret: str | None = None) -> dict[str, Any]:
    """The inline-bundled ``llm-judge`` metric (the shape the Evaluator SDK's inline packager produces)."""
    name = judged_metric(tool_workload)
    low, high = (0, 1) if tool_workload else (SIMILARITY_MIN, SIMILARITY_MAX)
    system, answer = (JUDGE_SYSTEM_PROMPT, PREDICTED_CALLS) if tool_workload else (SIMILARITY_SYSTEM_PROMPT,
                                                                                 CANDIDATE_TEXT)
    metric = {
        "type": JUDGE_METRIC_TYPE, "description": None, "labels": {}, "supported_job_types": ["online", "offline"],
        "model": {"url": url, "name": model, "api_key_secret": api_key_secret},
        "scores": [{"name": name, "description": None, "minimum": low, "maximum": high,
                    "parser": {"type": "regex", "pattern": SCORE_PATTERN, "method": "search"}}],
        "prompt_template": {"messages": [
            {"role": "system", "content": _raw(system)},
            {"role": "user", "content": "{{ item.judge_head }}" + answer + "{{ item.judge_tail }}"}]},
        "inference": {"temperature": 0.0, "max_tokens": JUDGE_MAX_TOKENS},
        # A judge request that fails or an unparseable reply is NaN for that row, not a failed job.
        "ignore_request_failure": True,
    }
    secrets = {api_key_secret.replace("-", "_").replace("/", "_"): api_key_secret} if api_key_secret else {}
    return {"bundle_kind": "metric-bundle", "bundle_format_version": "v1", "metric_type": JUDGE_METRIC_TYPE,
            "metadata": {"description": None, "labels": {}},
            "outputs": [{"name": name, "description": None, "value_json_schema": _CONTINUOUS}],
            "secrets": secrets, "payload": {"kind": "inline", "metric": metric}}


# -- reading a finished job's rows ---------------------------------------------------------------------
def row_prediction(scored: dict[str, Any]) -> dict[str, Any] | None:
    """The candidate's message in a row score; None when its request failed."""
    sample = scored.get("sample") or {}
    if sample.get("inference_error") or not sample.get("response"):
        return None
    return response_message(sample["response"])


def _judge_value(scored: dict[str, Any], name: str, low: int, high: int) -> int | None:
    for output in (scored.get("metrics") or {}).get(JUDGE_METRIC_TYPE) or []:
        if output.get("name") == name:
            value = output.get("value")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
                    and float(value).is_integer() and low <= value <= high:
                return int(value)
    return None


def judge_verdicts(rows: Sequence[dict[str, Any]], row_scores: Sequence[dict[str, Any]],
                   tool_workload: bool) -> tuple[list[int | None], float | None, str | None]:
    """Per-record verdicts (rules first, then the judge's in-range whole numbers), their mean and a note."""
    by_index = {int(s.get("row_index", i)): s for i, s in enumerate(row_scores)}
    name = judged_metric(tool_workload)
    low, high = (0, 1) if tool_workload else (SIMILARITY_MIN, SIMILARITY_MAX)
    verdicts: list[int | None] = []
    for i, row in enumerate(rows):
        scored = by_index.get(i)
        if scored is None:
            verdicts.append(None)
            continue
        prediction = row_prediction(scored)
        settled = (tool_verdict_by_rule(expected_calls(row), prediction) if tool_workload
                   else similarity_by_rule(prediction))
        verdicts.append(settled if settled is not None else _judge_value(scored, name, low, high))
    return (verdicts, *verdicts_mean(verdicts))


def generic_scores(rows: Sequence[dict[str, Any]],
                   row_scores: Sequence[dict[str, Any]]) -> tuple[dict[str, float | None], dict[str, str]]:
    """A workload without tools, scored as the evaluator of record does (token F1; tool metrics null with
    the "generic workload" note) on the answers the Evaluator got."""
    by_index = {int(s.get("row_index", i)): s for i, s in enumerate(row_scores)}
    predictions = [row_prediction(by_index[i]) if i in by_index else None for i in range(len(rows))]
    summary = summarize(list(rows), predictions, tool_workload=False)
    scores = {k: v for k, v in summary.items() if k not in ("num_records", "per_tool", "notes")}
    return scores, dict(summary["notes"])


def workload_scores(rows: Sequence[dict[str, Any]], row_scores: Sequence[dict[str, Any]], *, tool_workload: bool,
                    judged: bool) -> tuple[dict[str, float | None], dict[str, str]]:
    """What the rows add to the Evaluator's aggregate scores, with notes, as the evaluator of record reports
    them: the judge's score (or why there is none), the other judge score's reason, a generic workload's."""
    scores: dict[str, float | None] = {JUDGE_METRIC: None, SIMILARITY_METRIC: None}
    notes: dict[str, str] = {}
    if not tool_workload:
        generic, notes = generic_scores(rows, row_scores)
        scores.update(generic)
    name, other = judged_metric(tool_workload), judged_metric(not tool_workload)
    notes[other] = (f"tool workload: judged by {JUDGE_METRIC}" if tool_workload
                    else "generic workload (no tools in the dataset)")
    if judged:
        _, scores[name], note = judge_verdicts(rows, row_scores, tool_workload)
        if note:
            notes[name] = note
    else:
        notes[name] = "no llm_judge_config configured"
    return scores, notes
