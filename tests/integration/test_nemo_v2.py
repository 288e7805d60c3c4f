"""NeMo Platform (v2) against the REAL platform services, plus the cross-check with our evaluator of record.

The fixture starts ``nemo services run`` from the separate Python 3.12/3.13 venv ``.venv-nemo`` (built by
``scripts/nemo_platform_venv.sh``) and skips, naming what is missing, when that venv or its interpreter is
absent. The candidate and the judge are a tiny scripted OpenAI-compatible server on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from flywheel.config import NIMConfig, Settings
from flywheel.metrics import aggregate, score_tool_calls, tool_keys
from flywheel.platforms.base import CapabilityUnavailable, CustomizationSpec, EvalSpec
from flywheel.config import LoRAConfig, TrainingConfig
from flywheel.platforms.nemo_v2 import NO_TRAINING, NemoV2Platform, NemoV2Timing
from tests.emulators.openai_scripted import ScriptedOpenAI, free_port

pytestmark = pytest.mark.nemo_platform

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("NEMO_PLATFORM_VENV", REPO_ROOT / ".venv-nemo"))
SERVICES = "auth,models,files,inference-gateway,jobs,secrets,entities,evaluator,customization"


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
    "weather in Paris": ([call("get_weather", {"city": "Paris"})], {"tool_calls": [call("get_weather", {"city": "Paris"})]}),
    "weather in Rome": ([call("get_weather", {"city": "Rome"})], {"tool_calls": [call("get_time", {})]}),
    "weather in Oslo": ([call("get_weather", {"city": "Oslo"})], {"tool_calls": [call("get_weather", {"city": "Bergen"})]}),
    "weather in Lima, metric": ([call("get_weather", {"city": "Lima", "unit": "C"})],
                                {"tool_calls": [call("get_weather", '{"unit": "C", "city": "Lima"}')]}),
    "time and weather in Kyiv": ([call("get_time", {}), call("get_weather", {"city": "Kyiv"})],
                                 {"tool_calls": [call("get_weather", {"city": "Kyiv"}), call("get_time", {})]}),
    "weather in Cairo in F": ([call("get_weather", {"city": "Cairo", "unit": "F"})],
                              {"tool_calls": [call("get_weather", {"city": "Cairo"})]}),
    "weather in Quito": ([call("get_weather", {"city": "Quito"})],
                         {"tool_calls": [call("get_weather", {"city": "Quito", "unit": "C"})]}),
    "what time is it": ([call("get_time", {})], {"tool_calls": [call("get_time", "{}")]}),
    "track order 7": ([call("track_order", {"order_id": 7})], {"tool_calls": [call("track_order", '{"order_id": 7.0}')]}),
    "track my order": ([call("track_order", {"order_id": 9})], {"content": "Which order?"}),
}


def record(query: str, expected: list[dict]) -> dict:
    tool_calls = [{**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])}} for c in expected]
    return {"timestamp": 1.0, "workload_id": "w", "client_id": "c",
            "request": {"model": "big", "messages": [{"role": "system", "content": "You are helpful."},
                                                     {"role": "user", "content": query}],
                        "tools": [WEATHER, TIME, ORDER]},
            "response": {"choices": [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": tool_calls}}]}}


def responder(body: dict) -> dict:
    user = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    if body["model"] == "judge-model":
        return {"role": "assistant", "content": "RATING: 1"}
    answer = CASES[user][1]
    return {"role": "assistant", "content": answer.get("content"), **({"tool_calls": answer["tool_calls"]} if "tool_calls" in answer else {})}


@pytest.fixture(scope="module")
def nemo_platform(tmp_path_factory):
    nemo = VENV / "bin" / "nemo"
    python = VENV / "bin" / "python"
    if not python.exists():
        pytest.skip(f"NeMo Platform venv missing: {VENV} (run `make nemo-platform`; needs Python 3.12/3.13)")
    try:
        subprocess.run([str(python), "-c", "import sys"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"NeMo Platform venv {VENV} has no working Python 3.12/3.13 interpreter: {exc}")
    if not nemo.exists():
        pytest.skip(f"`nemo` CLI missing from {VENV}: `pip install nemo-platform[all]==0.6.0` did not complete")
    workdir = tmp_path_factory.mktemp("nemo-platform")
    port = free_port()
    log = open(workdir / "services.log", "w")
    env = {**os.environ, "NEMO_TELEMETRY_ENABLED": "false", "HOME": str(workdir)}
    proc = subprocess.Popen([str(nemo), "services", "run", "--port", str(port), "--services", SERVICES,
                             "--controllers", "jobs,models,entities"], cwd=workdir, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"nemo services exited with {proc.returncode}: {(workdir / 'services.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/apis/entities/v2/workspaces", timeout=2).status_code == 200 and \
                        httpx.get(f"{base}/apis/evaluator/v1/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"nemo services not healthy in 180 s: {(workdir / 'services.log').read_text()[-3000:]}")
            time.sleep(1)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def candidate():
    server = ScriptedOpenAI(models=["cand-model", "judge-model"], responder=responder).start()
    yield server
    server.stop()


async def test_real_platform_tool_calling_matches_evaluator_of_record(nemo_platform, candidate):
    ws = f"fw{uuid.uuid4().hex[:8]}"
    settings = Settings(nmp_config={"nemo_base_url": nemo_platform, "nim_base_url": candidate.root_url, "nmp_namespace": ws},
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

        spec = EvalSpec(name="wf-1-cand-model-base-eval", eval_type="base-eval", dataset=refs["eval"], endpoint=endpoint,
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
                (mine.function_name, mine.function_name_and_args_accuracy), f"row {query!r}: NeMo {theirs} vs ours {mine}"
            ours.append(mine)
        agg = aggregate(ours, [tool_keys(r["response"]["choices"][0]["message"]["tool_calls"]) for r in rows])
        assert result.scores["function_name"] == pytest.approx(agg["function_name"])
        assert result.scores["function_name_and_args_accuracy"] == pytest.approx(agg["function_name_and_args_accuracy"])
        # The scripted answers make the expected values known: 8/10 names, 5/10 names+args.
        assert agg["function_name"] == pytest.approx(0.8) and agg["function_name_and_args_accuracy"] == pytest.approx(0.5)

        with pytest.raises(CapabilityUnavailable, match="no training backend"):
            await platform.customize(CustomizationSpec(name="c", nim=NIMConfig(model_name="cand-model"), train=refs["eval"],
                                                       training=TrainingConfig(), lora=LoRAConfig(), output_model="x"))
        assert "Docker/Kubernetes GPU images" in NO_TRAINING
    finally:
        await platform.delete_job("wf-1-cand-model-base-eval")
        for provider in ("cand-endpoint", "judge"):
            await platform._call("DELETE", f"/apis/models/v2/workspaces/{ws}/providers/{provider}", ok=(200, 202, 204, 404))
        await platform.aclose()
