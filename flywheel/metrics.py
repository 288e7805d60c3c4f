"""The metric registry, the tool-call metrics (meanings: docs/metrics.md), and the LLM-judge prompt and parser.

Per record, comparing the ground-truth tool calls with the predicted ones:

* ``function_name`` / ``function_name_and_args_accuracy`` mean exactly what NeMo Evaluator's
  ``tool-calling`` metric reports (``function_name_accuracy`` / ``function_name_and_args_accuracy``),
  so our numbers and the blueprint's agree on the same data (see :func:`nemo_tool_calling`):
  names compared as *sets* (a duplicated call is not a mismatch); arguments compared per name, the
  last call of a name standing for it; Python equality, so ``true == 1`` and ``1 == 1.0``; a
  predicted ``arguments`` string that is not JSON makes the record's argument score undefined
  (``None`` here, NaN there) and such records are left out of the mean, as NeMo does.
* ``function_name_strict`` / ``function_name_and_args_strict``: our stricter reading, for gates —
  names compared as a *multiset* (a second call is a second side effect), calls paired one-to-one
  with exactly equal arguments, ``true != 1``, unparseable arguments are wrong (0).
* ``normalized_args_accuracy`` = the strict pairing after normalising every leaf value: strings are
  trimmed, whitespace-collapsed and lower-cased, numeric strings become numbers (``"5" == 5``).

Names are case-sensitive and order does not matter in every metric. No call expected and none
predicted scores 1 everywhere; no call expected but some predicted scores 0 (the argument score is
undefined if those arguments do not parse), and so does a missing prediction when calls were expected.
All metrics are averaged over the records where they are defined by :func:`aggregate`.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from flywheel.records import NO_CALL, call_arguments, call_dict, call_name
from flywheel.types import ToolScores

# ---------------------------------------------------------------------------------------------
# The registry: every score an evaluation can report. The evaluator, the report, the CLI and the
# NeMo result mappings read it; adding a metric = one entry here (plus how it is computed).


@dataclass(frozen=True)
class Metric:
    name: str  # key in EvalResult.scores and the job document
    label: str  # short label in tables
    source: str  # "record": per-record tool-call score (RecordScore); "judge": LLM judge; "generic": token F1;
    # "retrieval": an embedding_job's per-query ranking score (flywheel.retrieval.metrics; every k is reported,
    # the table shows these)
    nemo_v1: tuple[str, ...] = ()  # NeMo v1 tool-calling score names that carry it (first found wins)
    nemo_v2: str | None = None  # NeMo Platform aggregate score name that carries it
    shown: bool = True  # a line in the results table cell


METRICS: tuple[Metric, ...] = (
    Metric("function_name", "function_name", "record", nemo_v1=("function_name_accuracy", "function_name"),
           nemo_v2="tool-calling.function_name_accuracy"),
    Metric("function_name_and_args_accuracy", "name+args", "record", nemo_v1=("function_name_and_args_accuracy",),
           nemo_v2="tool-calling.function_name_and_args_accuracy"),
    Metric("normalized_args_accuracy", "normalized args", "record", shown=False),
    # Our stricter reading (docs/metrics.md): names as a multiset, calls paired one-to-one, true != 1.
    Metric("function_name_strict", "names (strict)", "record", shown=False),
    Metric("function_name_and_args_strict", "name+args (strict)", "record"),
    Metric("tool_calling_correctness", "judge", "judge"),
    Metric("similarity", "similarity 1-10", "judge"),  # the judge's rating for workloads without tools
    Metric("token_f1", "token F1", "generic"),
    Metric("recall_at_5", "Recall@5", "retrieval"),
    Metric("ndcg_at_10", "nDCG@10", "retrieval"),
    Metric("mrr_at_10", "MRR@10", "retrieval"),
    Metric("production_agreement_at_10", "agreement@10", "retrieval"),
)
METRICS_BY_NAME = {m.name: m for m in METRICS}
METRIC_NAMES = tuple(m.name for m in METRICS if m.source == "record")  # the per-record tool-call scores
JUDGE_METRIC = next(m.name for m in METRICS if m.source == "judge")
SIMILARITY_METRIC = "similarity"
TOKEN_F1_METRIC = next(m.name for m in METRICS if m.source == "generic")
ACCURACY_METRIC = "function_name_and_args_accuracy"  # the headline score (gate default, demo, CI column)


@dataclass(frozen=True)
class RecordScore:
    function_name: float
    function_name_and_args_accuracy: float | None  # None: undefined (NeMo's NaN), left out of the mean
    normalized_args_accuracy: float
    function_name_strict: float
    function_name_and_args_strict: float

    @classmethod
    def uniform(cls, value: float) -> RecordScore:
        """The same score on every metric (no call expected and none made: 1; a failed request: 0)."""
        return cls(value, value, value, value, value)

    def as_dict(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in METRIC_NAMES}


# ---------------------------------------------------------------------------------------------
# Canonical (hashable) forms of argument values


def _exact_key(value: Any) -> Any:
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("num", value)
    if isinstance(value, dict):
        return ("obj", tuple(sorted((str(k), _exact_key(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return ("arr", tuple(_exact_key(v) for v in value))
    if value is None:
        return ("null",)
    return ("str", str(value))


_WHITESPACE = re.compile(r"\s+")


def _normalized_key(value: Any) -> Any:
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("num", float(value))
    if isinstance(value, str):
        text = _WHITESPACE.sub(" ", value.strip()).lower()
        try:
            number = float(text)
        except ValueError:
            return ("str", text)
        return ("num", number) if math.isfinite(number) else ("str", text)
    if isinstance(value, dict):
        return ("obj", tuple(sorted((str(k), _normalized_key(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return ("arr", tuple(_normalized_key(v) for v in value))
    if value is None:
        return ("null",)
    return ("str", str(value))


def _calls_match(expected: Sequence[Any], predicted: Sequence[Any], key_fn: Any) -> bool:
    """Multiset equality of (name, canonical arguments): a one-to-one pairing exists."""
    def keyed(calls: Sequence[Any]) -> Counter:
        return Counter((call_name(c), key_fn(call_arguments(c))) for c in calls)

    return keyed(expected) == keyed(predicted)


_UNPARSEABLE = object()


def _function_part(call: Any) -> dict[str, Any]:
    data = call_dict(call)
    return data["function"] if isinstance(data.get("function"), dict) else data


def _wire_arguments(arguments: Any) -> Any:
    """A predicted call's arguments as NeMo reads them: JSON text parsed, absent as ``{}``.

    An object is taken as already parsed: an OpenAI-compatible endpoint always sends text, so this
    only happens for predictions handed to ``flywheel score`` directly.
    """
    if arguments is None:
        return {}
    if isinstance(arguments, (dict, list)):
        return arguments
    try:
        return json.loads(arguments)
    except (json.JSONDecodeError, TypeError):
        return _UNPARSEABLE


def nemo_tool_calling(expected: Sequence[Any], predicted: Sequence[Any]) -> tuple[float, float | None]:
    """(function_name, function_name_and_args_accuracy) with NeMo Evaluator's tool-calling semantics.

    Ground-truth arguments are compared as the dataset holds them (the data preparation parses JSON
    strings into objects). Predicted calls without a ``function.name`` are ignored.
    """
    expected_args = {_function_part(c).get("name"): _function_part(c).get("arguments") for c in expected}
    predicted_args: dict[Any, Any] = {}
    unparseable = False
    for c in predicted:
        function = call_dict(c).get("function")
        if not isinstance(function, dict) or "name" not in function:
            continue
        parsed = _wire_arguments(function.get("arguments"))
        unparseable = unparseable or parsed is _UNPARSEABLE
        predicted_args[function["name"]] = parsed
    names = 1.0 if set(expected_args) == set(predicted_args) else 0.0
    if unparseable:
        return names, None
    if not names:
        return names, 0.0
    return names, float(all(predicted_args.get(name) == args for name, args in expected_args.items()))


def score_tool_calls(expected: Sequence[Any] | None, predicted: Sequence[Any] | None) -> RecordScore:
    """Score one record. ``expected``/``predicted`` are OpenAI tool calls (dicts or pydantic models)."""
    expected = [call_dict(c) for c in expected or []]
    predicted = [call_dict(c) for c in predicted or []]
    name_compat, args_compat = nemo_tool_calling(expected, predicted)
    if not expected:
        strict = 1.0 if not predicted else 0.0
        return RecordScore(name_compat, args_compat, strict, strict, strict)
    if Counter(map(call_name, expected)) != Counter(map(call_name, predicted)):
        return RecordScore(name_compat, args_compat, 0.0, 0.0, 0.0)
    exact = _calls_match(expected, predicted, _exact_key)
    normalized = exact or _calls_match(expected, predicted, _normalized_key)
    return RecordScore(name_compat, args_compat, float(normalized), 1.0, float(exact))


def tool_keys(expected: Sequence[Any] | None) -> list[str]:
    """The per-tool breakdown keys a record contributes to: its distinct expected names, or "(no call)"."""
    names = sorted({call_name(c) for c in expected or []})
    return names or [NO_CALL]


def _mean(values: Iterable[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def aggregate(record_scores: Sequence[RecordScore], tools_per_record: Sequence[Iterable[str]]) -> dict[str, Any]:
    """Means over records plus ``per_tool`` (ToolScores keyed by expected tool name or "(no call)").

    ``tools_per_record[i]`` are the expected tool names of record ``i`` (empty = no call expected);
    a record expecting two different tools counts towards both. A metric's mean leaves out records
    where it is undefined; ``undefined`` counts them per metric. Empty input gives ``None`` means.
    """
    if len(record_scores) != len(tools_per_record):
        raise ValueError("record_scores and tools_per_record must have the same length")
    count = len(record_scores)
    result: dict[str, Any] = {"num_records": count}
    undefined: dict[str, int] = {}
    for metric in METRIC_NAMES:
        values = [getattr(s, metric) for s in record_scores]
        result[metric] = _mean(values)
        if any(v is None for v in values):
            undefined[metric] = sum(1 for v in values if v is None)
    result["undefined"] = undefined
    groups: dict[str, list[RecordScore]] = {}
    for score, tools in zip(record_scores, tools_per_record):
        for key in sorted(set(tools)) or [NO_CALL]:
            groups.setdefault(key, []).append(score)
    result["per_tool"] = {
        key: ToolScores(
            function_name=_mean(s.function_name for s in scores),
            function_name_and_args_accuracy=_mean(s.function_name_and_args_accuracy for s in scores),
            count=len(scores),
        )
        for key, scores in sorted(groups.items())
    }
    return result


# ---------------------------------------------------------------------------------------------
# Generic (non-tool) workloads


_TOKEN = re.compile(r"\w+", re.UNICODE)


def token_f1(prediction: str | None, reference: str | None) -> float:
    """SQuAD-style token F1 on lower-cased word tokens (multiset overlap). Both empty scores 1."""
    predicted_tokens = _TOKEN.findall((prediction or "").lower())
    reference_tokens = _TOKEN.findall((reference or "").lower())
    if not predicted_tokens and not reference_tokens:
        return 1.0
    overlap = sum((Counter(predicted_tokens) & Counter(reference_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted_tokens)
    recall = overlap / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)


# ---------------------------------------------------------------------------------------------
# LLM judge (tool_calling_correctness, 0/1)


JUDGE_SYSTEM_PROMPT = """You grade whether an AI assistant's tool calls are correct.
You are given the conversation, the ground-truth tool calls and the predicted tool calls.
The prediction is correct (score 1) only if ALL of these hold:
- the set of called function names is exactly the ground truth's (names must match exactly);
- every ground-truth argument is present in the matching predicted call;
- short identifiers, codes, ids, enums, numbers and dates are exactly equal;
- natural-language values (queries, descriptions, messages) are semantically equivalent.
Extra predicted arguments with sensible default values are acceptable. Otherwise the score is 0.
Answer with a JSON object only, for example {"score": 1} or {"score": 0}."""


def _compact_calls(calls: Sequence[Any] | None) -> list[dict[str, Any]]:
    return [{"name": call_name(c), "arguments": call_arguments(c)} for c in calls or []]


def judge_conversation(request: dict[str, Any]) -> str:
    """The conversation a judge is shown: every turn but the system prompt, as indented JSON."""
    conversation = [
        {"role": m.get("role"), "content": m.get("content")}
        for m in request.get("messages", []) if isinstance(m, dict) and m.get("role") != "system"
    ]
    return json.dumps(conversation, ensure_ascii=False, indent=1)


def judge_prompt_parts(request: dict[str, Any], expected: Sequence[Any] | None) -> tuple[str, str]:
    """The judge's user message around the predicted calls: ``head + predicted calls (JSON) + tail``.
    (A platform that renders the prediction itself — NeMo v2's judge template — gets the same text.)"""
    head = ("Conversation:\n" + judge_conversation(request)
            + "\n\nGround-truth tool calls:\n" + json.dumps(_compact_calls(expected), ensure_ascii=False)
            + "\n\nPredicted tool calls:\n")
    return head, '\n\nIs the prediction correct? Reply {"score": 1} or {"score": 0}.'


def judge_prompt(request: dict[str, Any], expected: Sequence[Any] | None,
                 predicted: Sequence[Any] | None) -> list[dict[str, str]]:
    """Chat messages asking a judge model for a 0/1 tool_calling_correctness verdict."""
    head, tail = judge_prompt_parts(request, expected)
    user = head + json.dumps(_compact_calls(predicted), ensure_ascii=False) + tail
    return [{"role": "system", "content": JUDGE_SYSTEM_PROMPT}, {"role": "user", "content": user}]


_JSON_SCORE = re.compile(r'"score"\s*:\s*"?\s*(-?\d+(?:\.\d+)?)')
_LABELLED_SCORE = re.compile(r"\bscore\b\s*[:=]?\s*\**\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_BARE_NUMBER = re.compile(r"^\W*(-?\d+(?:\.\d+)?)\W*$")


def _as_int(text: str) -> int | None:
    value = float(text)
    return int(value) if value.is_integer() else None


def parse_judge_score(text: str | None) -> int | None:
    """The integer score in a judge reply, or None. Reads whole numbers ("10" is 10, not 1).

    Accepts a JSON object with ``score`` (also inside prose or a code fence), ``SCORE: 1`` and a
    bare number. The caller decides which values are valid (tool_calling_correctness wants 0/1).
    """
    if not text:
        return None
    match = _JSON_SCORE.search(text) or _LABELLED_SCORE.search(text) or _BARE_NUMBER.match(text.strip())
    return _as_int(match.group(1)) if match else None


def binary_judge_score(text: str | None) -> int | None:
    """tool_calling_correctness from a judge reply: 0 or 1, None when unparseable or out of range."""
    score = parse_judge_score(text)
    return score if score in (0, 1) else None
