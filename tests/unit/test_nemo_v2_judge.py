"""The NeMo v2 judge glue (flywheel.platforms.nemo_v2_judge): the questions, the parser, the rules, the job.

The templates are rendered here the way NeMo's Evaluator renders them (sandboxed Jinja with undefined
names as errors; the context is the row as ``item`` and the candidate's output as ``sample``) — a small
stand-in for the template engine; tests/integration/test_nemo_v2_judge_services.py renders the same bundle with
NeMo's own code and checks the same equalities.
"""

from __future__ import annotations

import json
import math
import re

import pytest
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from flywheel.config import LLMJudgeConfig, Settings
from flywheel.judge import similarity_judge_score, similarity_prompt
from flywheel.metrics import binary_judge_score, judge_prompt
from flywheel.platforms.nemo_v2 import NemoV2Platform, eval_row
from flywheel.platforms.nemo_v2_judge import (
    SCORE_PATTERN,
    judge_columns,
    judge_metric,
    judge_verdicts,
    workload_scores,
)
from flywheel.records import message_text, message_tool_calls, response_message
from flywheel.types import DatasetRef, Endpoint, EvalSpec

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def call(name: str, args: dict | str) -> dict:
    return {"id": f"c_{name}", "type": "function",
            "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}


def tool_row(query: str, expected: list[dict]) -> dict:
    return {"request": {"messages": [{"role": "system", "content": "You are helpful."},
                                     {"role": "user", "content": query}], "tools": [WEATHER]},
            "response": {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": expected}}]}}


def text_row(query: str, answer: str) -> dict:
    return {"request": {"messages": [{"role": "user", "content": query}]},
            "response": {"choices": [{"message": {"role": "assistant", "content": answer}}]}}


def sample(message: dict | None) -> dict:
    """What the Evaluator hands a metric: the candidate's response, or the failed-request sample."""
    if message is None:
        return {"output_text": None, "response": {}, "inference_error": "Row 0 failed inference"}
    return {"output_text": message.get("content"),
            "response": {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}}


def render_like_the_evaluator(template: dict, item: dict, candidate: dict) -> list[dict]:
    env = SandboxedEnvironment(undefined=StrictUndefined)
    context = {**item, **candidate, "item": item, "sample": candidate}
    return [{"role": m["role"], "content": env.from_string(m["content"]).render(context)}
            for m in template["messages"]]


PREDICTIONS = [
    {"role": "assistant", "content": None, "tool_calls": [call("get_weather", {"city": "Paris"})]},
    {"role": "assistant", "content": None,
     "tool_calls": [call("get_weather", {"city": "Zürich", "note": "it's <cold> & \"wet\""}), call("get_time", "")]},
    {"role": "assistant", "content": "Which city?"},
    {"role": "assistant", "content": None, "tool_calls": []},
]


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_tool_question_is_the_local_judges_question(prediction):
    row = tool_row("weather in Paris? {{ not a template }}", [call("get_weather", {"city": "Paris"})])
    item = {**eval_row(row), **judge_columns(row, tool_workload=True)}
    metric = judge_metric("http://judge/v1", "j", tool_workload=True)["payload"]["metric"]
    rendered = render_like_the_evaluator(metric["prompt_template"], item, sample(prediction))
    expected = judge_prompt(row["request"], message_tool_calls(response_message(row["response"])),
                            message_tool_calls(prediction))
    assert rendered[0] == expected[0]
    # The predicted arguments are the model's own JSON text (here json.dumps' ASCII escapes), where the local
    # judge re-serializes them: the same JSON, and the very same words around it.
    mine, local = (m["content"].partition("Predicted tool calls:\n") for m in (rendered[1], expected[1]))
    assert mine[0] == local[0]
    (mine_calls, _, mine_tail), (local_calls, _, local_tail) = (p[2].partition("\n\n") for p in (mine, local))
    assert json.loads(mine_calls) == json.loads(local_calls) and mine_tail == local_tail
    args = [c["function"]["arguments"] for c in prediction.get("tool_calls") or []]
    if all(a and a == json.dumps(json.loads(a), ensure_ascii=False) for a in args):
        assert rendered == expected  # word for word when the model writes JSON as json.dumps does


@pytest.mark.parametrize("answer", ["We open at 9.", "", None])
def test_similarity_question_is_the_local_judges_question_word_for_word(answer):
    row = text_row("when do you open?", "We open at 9.")
    item = {**eval_row(row), **judge_columns(row, tool_workload=False)}
    metric = judge_metric("http://judge/v1", "j", tool_workload=False)["payload"]["metric"]
    prediction = {"role": "assistant", "content": answer}
    rendered = render_like_the_evaluator(metric["prompt_template"], item, sample(prediction))
    assert rendered == similarity_prompt(row["request"], "We open at 9.", message_text(prediction))


def test_no_template_mentions_tojson():
    """The Evaluator json-decodes the output of any template that mentions tojson: prose must not."""
    for tools in (True, False):
        metric = judge_metric("http://judge/v1", "j", tool_workload=tools)["payload"]["metric"]
        assert "tojson" not in json.dumps(metric["prompt_template"])


def first_group(reply: str) -> float | None:
    match = re.search(SCORE_PATTERN, reply)
    return float(match.group(1)) if match else None


@pytest.mark.parametrize("reply", [
    '{"score": 1}', '{"score": 0}', "SCORE: 1", "score=0", "1", "0", " 1. ", '```json\n{"score": 1}\n```',
    '{"score": "1"}', "10", "2", '{"score": 0.5}', "I cannot tell.", "", "The answer: 1 of 2",
    '{"score": 10}', "Similarity: 7", "SIMILARITY = 10", '{"score": 8}', "11", "7/10",
])
def test_the_platforms_parser_reads_what_the_local_parser_reads(reply):
    """The regex the Evaluator runs, followed by our range check, gives the local verdict."""
    value = first_group(reply)

    def in_range(low: int, high: int) -> int | None:
        return int(value) if value is not None and value.is_integer() and low <= value <= high else None

    assert in_range(0, 1) == binary_judge_score(reply)
    assert in_range(1, 10) == similarity_judge_score(reply)


def judged(value: float | None, message: dict | None, index: int, name: str) -> dict:
    metrics = {"llm-judge": [{"name": name, "value": math.nan if value is None else value}]}
    return {"row_index": index, "sample": sample(message), "metrics": metrics}


def test_tool_verdicts_follow_the_local_rules_and_range():
    expected = [call("get_weather", {"city": "Paris"})]
    rows = [tool_row("q0", expected), tool_row("q1", expected), tool_row("q2", []), tool_row("q3", []),
            tool_row("q4", expected), tool_row("q5", expected), tool_row("q6", expected)]
    good = PREDICTIONS[0]
    scored = [judged(1, good, 0, "tool_calling_correctness"),
              judged(1, None, 1, "tool_calling_correctness"),  # failed request: 0 whatever the judge says
              judged(0, {"role": "assistant", "content": "ok"}, 2, "tool_calling_correctness"),  # no call due: 1
              judged(1, good, 3, "tool_calling_correctness"),  # a call where none was due: 0
              judged(10, good, 4, "tool_calling_correctness"),  # out of range: left out
              judged(None, good, 5, "tool_calling_correctness")]  # NaN: left out; row 6 has no result at all
    verdicts, score, note = judge_verdicts(rows, list(reversed(scored)), tool_workload=True)
    assert verdicts == [1, 0, 1, 0, None, None, None]
    assert score == pytest.approx(2 / 4)
    assert note == "judge gave no usable verdict for 3 of 7 records (excluded)"


def test_similarity_verdicts_and_a_generic_workloads_scores():
    rows = [text_row("a", "We open at 9."), text_row("b", "Closed on Sunday."), text_row("c", "Yes.")]
    scored = [judged(10, {"role": "assistant", "content": "We open at 9."}, 0, "similarity"),
              judged(10, None, 1, "similarity"),  # failed request: the minimum
              judged(7.5, {"role": "assistant", "content": "Yes"}, 2, "similarity")]  # not whole: left out
    scores, notes = workload_scores(rows, scored, tool_workload=False, judged=True)
    assert scores["similarity"] == pytest.approx(5.5) and scores["tool_calling_correctness"] is None
    assert scores["token_f1"] == pytest.approx((1.0 + 0.0 + 1.0) / 3)
    assert scores["function_name"] is None and "generic workload" in notes["function_name"]
    assert notes["tool_calling_correctness"] == "generic workload (no tools in the dataset)"
    assert notes["similarity"] == "judge gave no usable verdict for 1 of 3 records (excluded)"


def test_without_a_judge_the_scores_say_so():
    scores, notes = workload_scores([tool_row("q", [])], [], tool_workload=True, judged=False)
    assert scores == {"tool_calling_correctness": None, "similarity": None}
    assert notes == {"tool_calling_correctness": "no llm_judge_config configured",
                     "similarity": "tool workload: judged by tool_calling_correctness"}


def test_the_job_carries_the_judge_and_a_generic_workload_offers_no_tools():
    platform = NemoV2Platform(Settings(nmp_config={"nemo_base_url": "http://nmp.invalid"}))
    spec = EvalSpec(name="wf-m-base-eval", eval_type="base-eval",
                    dataset=DatasetRef(name="fs", split="eval", uri="ws/fs#eval/eval.jsonl", num_records=3),
                    endpoint=Endpoint(deployment_name="p", model_name="m", served_model="m", base_url="http://gw/v1"),
                    judge=LLMJudgeConfig(url="http://judge/v1", model_name="j"))
    judge = judge_metric("http://judge/v1", "j", tool_workload=False, api_key_secret="ws/flywheel-judge-key")
    job = platform.build_job(spec, "job", tool_workload=False, judge=judge)["spec"]
    assert [m["metric_type"] for m in job["metrics"]] == ["tool-calling", "llm-judge"]
    assert "tools" not in job["prompt_template"] and "tool_choice" not in job["prompt_template"]
    assert judge["secrets"] == {"ws_flywheel_judge_key": "ws/flywheel-judge-key"}
    model = judge["payload"]["metric"]["model"]
    assert model == {"url": "http://judge/v1", "name": "j", "api_key_secret": "ws/flywheel-judge-key"}
    tools_job = platform.build_job(spec, "job")["spec"]
    assert tools_job["prompt_template"]["tool_choice"] == "required"
    assert [m["metric_type"] for m in tools_job["metrics"]] == ["tool-calling"]
