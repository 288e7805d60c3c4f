"""NeMo Platform (v2) against the REAL platform services, plus the cross-check with our evaluator of record.

The ``nemo_platform`` fixture (tests/integration/conftest.py) starts ``nemo services run`` from the separate
Python 3.12/3.13 venv ``.venv-nemo`` (built by ``scripts/nemo_platform_venv.sh``) and skips, naming what is
missing, when that venv or its interpreter is absent. The candidate and the judge are a tiny scripted
OpenAI-compatible server on 127.0.0.1.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from flywheel.config import LoRAConfig, NIMConfig, Settings, TrainingConfig
from flywheel.metrics import aggregate, score_tool_calls, tool_keys
from flywheel.platforms.nemo_v2 import NO_TRAINING, NemoV2Platform, NemoV2Timing
from flywheel.types import (
    CapabilityUnavailable,
    CustomizationSpec,
    EvalSpec,
)
from tests.emulators.openai_scripted import ScriptedOpenAI

pytestmark = pytest.mark.nemo_platform


def call(name: str, args: dict | str) -> dict:
    return {"id": f"call_{name}", "type": "function",
            "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}


WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
ORDER = {"type": "function", "function": {"name": "track_order", "parameters": {
    "type": "object", "properties": {"order_id": {"type": "integer"}}}}}

# query → (expected tool calls (arguments as objects, as stored after ingest), what the candidate answers)
CASES: dict[str, tuple[list[dict], dict]] = {
    "weather in Paris": ([call("get_weather", {"city": "Paris"})],
                         {"tool_calls": [call("get_weather", {"city": "Paris"})]}),
    "weather in Rome": ([call("get_weather", {"city": "Rome"})], {"tool_calls": [call("get_time", {})]}),
    "weather in Oslo": ([call("get_weather", {"city": "Oslo"})],
                        {"tool_calls": [call("get_weather", {"city": "Bergen"})]}),
    "weather in Lima, metric": ([call("get_weather", {"city": "Lima", "unit": "C"})],
                                {"tool_calls": [call("get_weather", '{"unit": "C", "city": "Lima"}')]}),
    "time and weather in Kyiv": ([call("get_time", {}), call("get_weather", {"city": "Kyiv"})],
                                 {"tool_calls": [call("get_weather", {"city": "Kyiv"}), call("get_time", {})]}),
    "weather in Cairo in F": ([call("get_weather", {"city": "Cairo", "unit": "F"})],
                              {"tool_calls": [call("get_weather", {"city": "Cairo"})]}),
    "weather in Quito": ([call("get_weather", {"city": "Quito"})],
                         {"tool_calls": [call("get_weather", {"city": "Quito", "unit": "C"})]}),
    "what time is it": ([call("get_time", {})], {"tool_calls": [call("get_time", "{}")]}),
    "track order 7": ([call("track_order", {"order_id": 7})],
                      {"tool_calls": [call("track_order", '{"order_id": 7.0}')]}),
    "track my order": ([call("track_order", {"order_id": 9})], {"content": "Which order?"}),
}


def record(query: str, expected: list[dict]) -> dict:
    tool_calls = [{**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])}}
                  for c in expected]
    return {"timestamp": 1.0, "workload_id": "w", "client_id": "c",
            "request": {"model": "big", "messages": [{"role": "system", "content": "You are helpful."},
                                                     {"role": "user", "content": query}],
                        "tools": [WEATHER, TIME, ORDER]},
            "response": {"choices": [{"index": 0, "message": {"role": "assistant", "content": None,
                                                              "tool_calls": tool_calls}}]}}


def responder(body: dict) -> dict:
    user = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    if body["model"] == "judge-model":
        return {"role": "assistant", "content": "RATING: 1"}
    answer = CASES[user][1]
    return {"role": "assistant", "content": answer.get("content"),
            **({"tool_calls": answer["tool_calls"]} if "tool_calls" in answer else {})}


@pytest.fixture(scope="module")
def candidate():
    server = ScriptedOpenAI(models=["cand-model", "judge-model"], responder=responder).start()
    yield server
    server.stop()


async def test_real_platform_tool_calling_matches_evaluator_of_record(nemo_platform, candidate):
    ws = f"fw{uuid.uuid4().hex[:8]}"
    settings = Settings(nmp_config={"nemo_base_url": nemo_platform, "nim_base_url": candidate.root_url,
                                    "nmp_namespace": ws},
                        nims=[{"model_name": "cand-model"}])
    platform = NemoV2Platform(settings, NemoV2Timing(poll_interval_s=1.0, eval_timeout_s=300, provider_timeout_s=120))
    rows = [record(q, exp) for q, (exp, _) in CASES.items()]
    progress: list[dict] = []
    try:
        refs = await platform.put_datasets("run-1", {"eval": rows})
        assert await platform.read_dataset(refs["eval"]) == json.loads(json.dumps(rows, sort_keys=True))

        # Providers for the candidate and the judge: models are auto-discovered by the platform.
        endpoint = await platform.deploy(settings.nims[0], "cand-endpoint", progress=progress.append)
        judge_provider = await platform.register_provider("judge", candidate.base_url, "judge-model")
        gw = httpx.post(f"{platform.gateway_url(judge_provider)}/chat/completions", timeout=30,
                        json={"model": "judge-model", "messages": [{"role": "user", "content": "what time is it"}]})
        assert gw.status_code == 200 and "RATING" in gw.text

        spec = EvalSpec(name="wf-1-cand-model-base-eval", eval_type="base-eval", dataset=refs["eval"],
                        endpoint=endpoint,
                        concurrency=2, max_retries=1, request_timeout_s=30)
        result = await platform.evaluate(spec, progress=progress.append)
        assert progress and progress[-1]["status"] == "completed" and progress[-1]["job_id"]
        assert result.num_records == len(rows)

        # Re-running the same spec (a retried activity) attaches to the finished job: same scores, no new job.
        again = await platform.evaluate(spec)
        assert again.scores == result.scores

        # CROSS-CHECK: NeMo's per-row tool-calling scores on the very predictions it got == flywheel.metrics.
        row_scores = sorted(await platform.row_scores(spec.name), key=lambda r: r["row_index"])
        assert len(row_scores) == len(rows)
        ours = []
        for row, scored in zip(rows, row_scores):
            expected = row["response"]["choices"][0]["message"]["tool_calls"]
            predicted = scored["sample"]["response"]["choices"][0]["message"].get("tool_calls") or []
            mine = score_tool_calls(expected, predicted)
            theirs = {m["name"]: m["value"] for m in scored["metrics"]["tool-calling"]}
            query = row["request"]["messages"][-1]["content"]
            assert (theirs["function_name_accuracy"], theirs["function_name_and_args_accuracy"]) == \
                (mine.function_name, mine.function_name_and_args_accuracy), \
                f"row {query!r}: NeMo {theirs} vs ours {mine}"
            ours.append(mine)
        agg = aggregate(ours, [tool_keys(r["response"]["choices"][0]["message"]["tool_calls"]) for r in rows])
        assert result.scores["function_name"] == pytest.approx(agg["function_name"])
        assert result.scores["function_name_and_args_accuracy"] == pytest.approx(agg["function_name_and_args_accuracy"])
        # The scripted answers make the expected values known: 8/10 names, 5/10 names+args.
        assert agg["function_name"] == pytest.approx(0.8)
        assert agg["function_name_and_args_accuracy"] == pytest.approx(0.5)

        with pytest.raises(CapabilityUnavailable, match="no training backend"):
            await platform.customize(CustomizationSpec(name="c", nim=NIMConfig(model_name="cand-model"),
                                                       train=refs["eval"],
                                                       training=TrainingConfig(), lora=LoRAConfig(), output_model="x"))
        assert "Docker/Kubernetes GPU images" in NO_TRAINING
    finally:
        await platform.delete_job("wf-1-cand-model-base-eval")
        for provider in ("cand-endpoint", "judge"):
            await platform._call("DELETE", f"/apis/models/v2/workspaces/{ws}/providers/{provider}",
                                 ok=(200, 202, 204, 404))
        await platform.close()
