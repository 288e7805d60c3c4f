"""Scoring of (record, predicted message) pairs: shared by the evaluator and ``flywheel score``.

Both paths go through :func:`summarize`, so identical inputs give identical scores whichever
platform produced the predictions.

Tool workloads (any record has ``request.tools`` or expected tool calls) score ``function_name``,
``function_name_and_args_accuracy`` (NeMo Evaluator's meaning), ``function_name_strict``,
``function_name_and_args_strict`` and ``normalized_args_accuracy`` (see flywheel.metrics).
Generic workloads (no tools anywhere) score ``token_f1``: the mean token-F1 between the predicted
text and the reference response text (:func:`flywheel.metrics.token_f1`); the tool metrics are
``None`` with a note. (``similarity`` is the LLM judge's 1-10 rating, scored by the evaluator.)
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from flywheel.metrics import METRIC_NAMES, RecordScore, aggregate, score_tool_calls, token_f1
from flywheel.records import call_name, expected_calls, message_text, message_tool_calls, response_message


def is_tool_workload(rows: Iterable[dict[str, Any]]) -> bool:
    """True if any row offers tools or expects a tool call."""
    for row in rows:
        if (row.get("request") or {}).get("tools"):
            return True
        if expected_calls(row):
            return True
    return False


def summarize(rows: Sequence[dict[str, Any]], predictions: Sequence[dict[str, Any] | None],
              *, tool_workload: bool | None = None) -> dict[str, Any]:
    """Scores for ``rows`` given the predicted message of each (``None`` = failed request, scored 0).

    Returns ``{function_name, function_name_and_args_accuracy, normalized_args_accuracy,
    token_f1?, num_records, per_tool: {name: ToolScores}, notes: {metric: why None}}``.
    """
    if len(rows) != len(predictions):
        raise ValueError("rows and predictions must have the same length")
    if tool_workload is None:
        tool_workload = is_tool_workload(rows)
    notes: dict[str, str] = {}
    if not tool_workload:
        similarities = [
            token_f1(message_text(pred), message_text(response_message(row["response"]))) if pred is not None else 0.0
            for row, pred in zip(rows, predictions)
        ]
        result: dict[str, Any] = {name: None for name in METRIC_NAMES}
        result.update(num_records=len(rows), per_tool={},
                      token_f1=(sum(similarities) / len(similarities)) if similarities else None)
        for name in METRIC_NAMES:
            notes[name] = "generic workload (no tools in the dataset): scored by token_f1 and the judge's similarity"
        result["notes"] = notes
        return result

    scores: list[RecordScore] = []
    tools_per_record: list[list[str]] = []
    for row, pred in zip(rows, predictions):
        expected = message_tool_calls(response_message(row["response"]))
        tools_per_record.append([call_name(c) for c in expected])
        if pred is None:
            scores.append(RecordScore.uniform(0.0))
        else:
            scores.append(score_tool_calls(expected, message_tool_calls(pred)))
    result = aggregate(scores, tools_per_record)
    if not rows:
        for name in METRIC_NAMES:
            notes[name] = "no records"
    for name, count in result["undefined"].items():
        notes[name] = (f"{count} record(s) left out: predicted arguments are not JSON (NeMo Evaluator reports "
                       "NaN for them); function_name_and_args_strict counts them as wrong")
    result["notes"] = notes
    return result


def record_scores(rows: Sequence[dict[str, Any]], predictions: Sequence[dict[str, Any] | None],
                  *, tool_workload: bool | None = None) -> list[dict[str, float | None]]:
    """Each record's scores (the per-record view of :func:`summarize`, for paired tests)."""
    if len(rows) != len(predictions):
        raise ValueError("rows and predictions must have the same length")
    if tool_workload is None:
        tool_workload = is_tool_workload(rows)
    out: list[dict[str, float | None]] = []
    for row, pred in zip(rows, predictions):
        if not tool_workload:
            out.append({"token_f1": token_f1(message_text(pred), message_text(response_message(row["response"])))
                        if pred is not None else 0.0})
        elif pred is None:
            out.append(RecordScore.uniform(0.0).as_dict())
        else:
            expected = message_tool_calls(response_message(row["response"]))
            out.append(score_tool_calls(expected, message_tool_calls(pred)).as_dict())
    return out


def record_scores_path(predictions_path: Path) -> Path:
    """Where the per-record scores of a predictions file live: ``<stem>.scores.jsonl`` beside it."""
    predictions_path = Path(predictions_path)
    return predictions_path.with_name(predictions_path.stem + ".scores.jsonl")


def write_record_scores(path: Path, keys: Sequence[str], rows: Sequence[dict[str, Any]],
                        predictions: Sequence[dict[str, Any] | None],
                        extra: dict[str, Sequence[Any]] | None = None) -> None:
    """``{"record_id", <metric>: score}`` per line, written atomically (a retry rewrites it whole).

    ``extra`` adds per-record columns computed elsewhere (the judge's verdicts), in ``keys`` order.
    """
    extra = extra or {}
    lines = [json.dumps({"record_id": key, **scores, **{name: column[i] for name, column in extra.items()}})
             for i, (key, scores) in enumerate(zip(keys, record_scores(rows, predictions)))]
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(path)


def read_record_scores(path: Path) -> dict[str, dict[str, float | None]]:
    """Per-record scores keyed by record id; {} when the file does not exist."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return parse_record_scores(text)


def parse_record_scores(text: str) -> dict[str, dict[str, float | None]]:
    """The lines of a ``.scores.jsonl`` file, keyed by record id."""
    out: dict[str, dict[str, float | None]] = {}
    for line in text.splitlines():
        if line.strip():
            row = json.loads(line)
            out[str(row.pop("record_id"))] = row
    return out


def _jsonable(summary: dict[str, Any]) -> dict[str, Any]:
    out = dict(summary)
    out["per_tool"] = {k: v.model_dump() if hasattr(v, "model_dump") else v for k, v in summary["per_tool"].items()}
    return out


def _with_parsed_ground_truth(triple: dict[str, Any]) -> dict[str, Any]:
    """The expected calls' JSON-string arguments parsed, as data preparation stores them in a dataset
    (``parse_function_arguments``), so offline scores equal the scores of a flywheel run."""
    from flywheel.records import RecordError, parse_arguments

    triple = copy.deepcopy(triple)
    for call in message_tool_calls(response_message(triple["response"])):
        function = call.get("function")
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            try:
                function["arguments"] = parse_arguments(function["arguments"])
            except RecordError:
                pass  # kept as text: a flywheel run would have dropped this record during curation
    return triple


def score_triples(lines: Iterable[str]) -> dict[str, Any]:
    """Score JSONL lines ``{request, response, prediction}`` (prediction: ChatCompletion or message).

    Bad lines are skipped and reported as ``bad_lines: [{line, error}]`` (1-based line numbers);
    blank lines are ignored. The result is JSON-serialisable.
    """
    rows: list[dict[str, Any]] = []
    predictions: list[dict[str, Any]] = []
    bad_lines: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            triple = json.loads(line)
            if not isinstance(triple, dict):
                raise ValueError(f"expected an object, got {type(triple).__name__}")
            missing = [k for k in ("request", "response", "prediction") if k not in triple]
            if missing:
                raise ValueError(f"missing field(s): {', '.join(missing)}")
            if not isinstance(triple["request"], dict):
                raise ValueError("request must be an object")
            response_message(triple["response"])
            prediction = response_message(triple["prediction"])
        except (json.JSONDecodeError, ValueError) as exc:
            bad_lines.append({"line": number, "error": str(exc)})
            continue
        rows.append(_with_parsed_ground_truth(triple))
        predictions.append(prediction)
    summary = _jsonable(summarize(rows, predictions))
    summary["skipped"] = len(bad_lines)
    summary["bad_lines"] = bad_lines
    return summary
