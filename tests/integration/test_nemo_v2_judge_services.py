"""The LLM judge on NeMo Platform (v2), against NeMo's own code and the REAL platform services.

* NeMo's ``llm-judge`` metric, hydrated from our bundle the way the Evaluator's job does it
  (``nemo_judge_metric_driver.py``, run in ``.venv-nemo``), asks the local judge's questions and its parser
  reads what our parser reads.
* On the real services (``nemo_platform`` fixture, tests/integration/conftest.py; it skips naming what is
  missing): a remote judge called directly with an API key (which reaches the judge as a workspace secret)
  on a tool workload, and a judge behind the inference gateway on a workload without tools. The scores,
  per-record rules and notes equal the evaluator of record's on the same candidate and judge.

The candidate and the judge are one scripted OpenAI-compatible server (tests/helpers/scripted_judge.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from fastapi import HTTPException

from flywheel.config import LLMJudgeConfig, Settings
from flywheel.evaluator import evaluate as evaluate_locally
from flywheel.judge import similarity_judge_score, similarity_prompt
from flywheel.metrics import binary_judge_score, judge_prompt
from flywheel.platforms.nemo_v2 import NemoV2Platform, NemoV2Timing, eval_row
from flywheel.platforms.nemo_v2_judge import judge_columns, judge_metric
from flywheel.records import message_text, message_tool_calls, response_message
from flywheel.types import Endpoint, EvalSpec
from tests.emulators.openai_scripted import ScriptedOpenAI
from tests.helpers import REPO_ROOT
from tests.helpers.scripted_judge import JUDGE_MODEL, judge_message, judge_reply_text

pytestmark = pytest.mark.nemo_platform

DRIVER = Path(__file__).with_name("nemo_judge_metric_driver.py")
NEMO_VENV = Path(os.environ.get("NEMO_PLATFORM_VENV", REPO_ROOT / ".venv-nemo"))
CANDIDATE = "cand-model"
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}}}}
KEY_ENV = "FLYWHEEL_TEST_JUDGE_KEY"


def call(name: str, args: dict) -> dict:
    return {"id": f"call_{name}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def weather(city: str, **more: str) -> list[dict]:
    return [call("get_weather", {"city": city, **more})]


# Tool workload: query → (expected calls, the candidate's answer: calls, text, or None = its request fails).
# The verdicts follow the local rules: judge, judge, judge, rule (no call due; the judge would say 0),
# rule (failed request), out-of-range reply (left out), judge, labelled reply.
TOOL_CASES: dict[str, tuple[list[dict], list[dict] | str | None]] = {
    "weather in Paris": (weather("Paris"), weather("Paris")),
    "weather in Rome": (weather("Rome"), weather("Milan")),
    "weather in Oslo": (weather("Oslo"), "Which Oslo?"),
    "thanks! JUDGE-SAYS-ZERO": ([], "You're welcome."),
    "weather in Lima": (weather("Lima"), None),
    "weather in Kyiv JUDGE-SAYS-TEN": (weather("Kyiv"), weather("Kyiv")),
    "weather in Quito, metric": (weather("Quito", unit="C"), [call("get_weather", {"unit": "C", "city": "Quito"})]),
    "weather in Cairo JUDGE-SAYS-LABELLED-ONE": (weather("Cairo"), weather("Giza")),
}
TOOL_VERDICTS = [1, 0, 0, 1, 0, None, 1, 1]
# Workload without tools: query → (production answer, the candidate's answer or None = its request fails).
TEXT_CASES: dict[str, tuple[str, str | None]] = {
    "when do you open?": ("We open at 9.", "We open at 9."),
    "are you open on Sunday?": ("No, closed on Sundays.", "Yes, all week."),
    "where are you?": ("Main street 5.", None),
    "do you deliver? JUDGE-SAYS-SIMILARITY-SEVEN": ("Yes, within 5 km.", "Yes, nearby."),
    "can I pay by card?": ("Yes.", ""),
}
TEXT_VERDICTS = [10, 2, 1, 7, 2]
FAILING = {"weather in Lima", "where are you?"}  # the rows whose candidate request fails


def tool_record(query: str, expected: list[dict]) -> dict:
    calls = [{**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])}}
             for c in expected]
    message = {"role": "assistant", "content": None if calls else "You're welcome.", "tool_calls": calls}
    return {"request": {"messages": [{"role": "system", "content": "You are helpful."},
                                     {"role": "user", "content": query}], "tools": [WEATHER]},
            "response": {"choices": [{"index": 0, "message": message}]}}


def text_record(query: str, answer: str) -> dict:
    return {"request": {"messages": [{"role": "user", "content": query}]},
            "response": {"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]}}


def candidate_message(query: str) -> dict:
    answer = TOOL_CASES[query][1] if query in TOOL_CASES else TEXT_CASES[query][1]
    if answer is None:
        raise HTTPException(503, "scripted failure")  # a failed request (retried, then given up)
    if isinstance(answer, str):
        return {"role": "assistant", "content": answer}
    return {"role": "assistant", "content": None, "tool_calls": answer}


def responder(body: dict) -> dict:
    if body["model"] == JUDGE_MODEL:
        return judge_message(body)
    return candidate_message([m for m in body["messages"] if m["role"] == "user"][-1]["content"])


# -- NeMo's own llm-judge metric on our bundle (no services) ---------------------------------------------
def run_driver(bundle: dict, cases: list[dict], tmp_path: Path) -> list[dict]:
    python = NEMO_VENV / "bin" / "python"
    if not python.exists():
        pytest.skip(f"NeMo Platform venv missing: {NEMO_VENV} (run `make nemo-platform`; needs Python 3.12/3.13)")
    path = tmp_path / "judge-cases.json"
    path.write_text(json.dumps({"bundle": bundle, "cases": cases}))
    done = subprocess.run([str(python), str(DRIVER), str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def nemo_sample(message: dict | None) -> dict:
    if message is None:
        return {"output_text": None, "response": {}}
    return {"output_text": message.get("content"), "response": {"choices": [{"index": 0, "message": message}]}}


REPLIES = ['{"score": 1}', '{"score": 0}', "SCORE: 1", "1", "10", "Similarity: 7", '```json\n{"score": 8}\n```',
           "I cannot tell.", '{"score": 0.5}', "11"]


def test_nemos_judge_metric_asks_our_question_and_reads_our_scores(tmp_path):
    for tools, records, answers in (
            (True, [tool_record(q, exp) for q, (exp, _) in TOOL_CASES.items()],
             [a for _, a in TOOL_CASES.values()]),
            (False, [text_record(q, ref) for q, (ref, _) in TEXT_CASES.items()],
             [a for _, a in TEXT_CASES.values()])):
        messages = [None if a is None else candidate_message(q) for q, a in
                    zip((r["request"]["messages"][-1]["content"] for r in records), answers)]
        cases = [{"item": {**eval_row(r), **judge_columns(r, tools)}, "sample": nemo_sample(m), "reply": reply}
                 for r, m in zip(records, messages) for reply in REPLIES]
        results = run_driver(judge_metric("http://judge.invalid/v1", JUDGE_MODEL, tools), cases, tmp_path)
        for n, (case, result) in enumerate(zip(cases, results)):
            assert "error" not in result, result
            i = n // len(REPLIES)
            record, message = records[i], messages[i]
            if tools:
                local = judge_prompt(record["request"], message_tool_calls(response_message(record["response"])),
                                     message_tool_calls(message))
                parse = binary_judge_score
            else:
                local = similarity_prompt(record["request"], message_text(response_message(record["response"])),
                                          message_text(message))
                parse = similarity_judge_score
            assert result["request"]["messages"] == local  # the scripted candidate writes JSON as json.dumps
            assert (result["request"]["max_tokens"], result["request"]["temperature"]) == (64, 0.0)
            value = result["value"]
            in_range = value if value is not None and float(value).is_integer() and \
                (0 <= value <= 1 if tools else 1 <= value <= 10) else None
            assert in_range == parse(case["reply"]), case["reply"]


# -- the real platform ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server():
    scripted = ScriptedOpenAI(models=[CANDIDATE, JUDGE_MODEL], responder=responder).start()
    yield scripted
    scripted.stop()


async def test_judge_on_the_real_platform_scores_as_the_evaluator_of_record(nemo_platform, server, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-judge-test")
    ws = f"fw{uuid.uuid4().hex[:8]}"
    settings = Settings(nmp_config={"nemo_base_url": nemo_platform, "nim_base_url": server.root_url,
                                    "nmp_namespace": ws}, nims=[{"model_name": CANDIDATE}])
    platform = NemoV2Platform(settings, NemoV2Timing(poll_interval_s=1.0, eval_timeout_s=300, provider_timeout_s=120))
    tool_rows = [tool_record(q, exp) for q, (exp, _) in TOOL_CASES.items()]
    text_rows = [text_record(q, ref) for q, (ref, _) in TEXT_CASES.items()]
    names = ["wf-j-cand-model-base-eval", "wf-j-cand-model-icl-eval"]
    try:
        refs = await platform.put_datasets("run-judge", {"eval": tool_rows, "icl": text_rows})
        endpoint = await platform.deploy(settings.nims[0], "cand-endpoint")
        gateway_judge = platform.gateway_url(await platform.register_provider("judge", server.base_url, JUDGE_MODEL))
        remote = LLMJudgeConfig(url=server.base_url, model_name=JUDGE_MODEL, api_key_env=KEY_ENV)
        behind_gateway = LLMJudgeConfig(deployment_type="local", url=gateway_judge, model_name=JUDGE_MODEL)
        runs = [(remote, refs["eval"], tool_rows, "tool_calling_correctness", TOOL_VERDICTS),
                (behind_gateway, refs["icl"], text_rows, "similarity", TEXT_VERDICTS)]
        for (judge, ref, rows, metric, verdicts), name in zip(runs, names):
            spec = EvalSpec(name=name, eval_type="base-eval", dataset=ref, endpoint=endpoint, judge=judge,
                            concurrency=2, max_retries=1, request_timeout_s=30)
            before = len(server.requests)
            result = await platform.evaluate(spec)
            sent, keys = server.requests[before:], server.authorizations[before:]
            usable = [v for v in verdicts if v is not None]
            assert result.scores[metric] == pytest.approx(sum(usable) / len(usable)), result.score_notes
            # One candidate request per row serves both metrics (the failed row is retried once).
            asked = [r for r in sent if r["model"] == CANDIDATE]
            assert len(asked) == len(rows) + 1, [r["messages"][-1]["content"] for r in asked]
            # The judge was asked our question once about every row whose request succeeded (the Evaluator may
            # also ask about the failed one; the rule settles that row whatever the judge says).
            questions = [q["messages"][-1]["content"] for q in sent if q["model"] == JUDGE_MODEL]
            queries = [r["request"]["messages"][-1]["content"] for r in rows]
            failed = next(q for q in queries if q in FAILING)
            assert sorted(q for q in queries if q != failed) == \
                sorted(q for q in queries for text in questions if json.dumps(q) in text and q != failed)
            assert all(judge_reply_text(text) for text in questions)
            # A judge's API key reaches it from the workspace secret the platform made of it.
            assert {k for r, k in zip(sent, keys) if r["model"] == JUDGE_MODEL} == \
                ({"Bearer sk-judge-test"} if judge.api_key_env else {None})

            # CROSS-CHECK: the evaluator of record on the same candidate and judge gives the same score and notes.
            local_spec = spec.model_copy(update={
                "endpoint": Endpoint(deployment_name="direct", model_name=CANDIDATE, served_model=CANDIDATE,
                                     base_url=server.base_url),
                "judge": judge.model_copy(update={"url": server.base_url})})
            local = await evaluate_locally(local_spec, rows, predictions_path=tmp_path / f"{name}.jsonl",
                                           backoff_base_s=0.01)
            assert result.scores[metric] == pytest.approx(local.scores[metric])
            assert result.score_notes.get(metric) == local.score_notes.get(metric)
            other = "similarity" if metric == "tool_calling_correctness" else "tool_calling_correctness"
            assert result.scores[other] is None and result.score_notes[other] == local.score_notes[other]
            print(f"\nnemo_v2 {metric} = {result.scores[metric]:.4f} (local {local.scores[metric]:.4f}), "
                  f"note: {result.score_notes.get(metric)}")
            if metric == "similarity":
                assert result.scores["token_f1"] == pytest.approx(local.scores["token_f1"])
                assert result.scores["function_name"] is None
                assert result.score_notes["function_name"] == local.score_notes["function_name"]
    finally:
        for name in names:
            await platform.delete_job(name)
        for provider in ("cand-endpoint", "judge"):
            await platform._call("DELETE", f"/apis/models/v2/workspaces/{ws}/providers/{provider}",
                                 ok=(200, 202, 204, 404))
        await platform.close()
