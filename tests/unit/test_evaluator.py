"""The evaluator against a real local OpenAI-compatible HTTP server (uvicorn in a thread)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from flywheel.config import LLMJudgeConfig
from flywheel.evaluator import evaluate
from flywheel.types import DatasetRef, Endpoint, EvalSpec, PlatformError

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


class ScriptedModel:
    """Answers by the last user message: ``script[text]`` is a list of (status, tool_name|None, args, delay_s)
    consumed in order (the last one repeats); unscripted text answers get_weather(city=<text>)."""

    def __init__(self) -> None:
        self.script: dict[str, list[tuple]] = {}
        self.calls: dict[str, int] = {}
        self.bodies: list[dict] = []
        self.judge_auth: list[str | None] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self.chat)
        self.app.post("/judge/v1/chat/completions")(self.judge)

    def reset(self) -> None:
        self.script.clear()
        self.calls.clear()
        self.bodies.clear()
        self.judge_auth.clear()
        self.max_in_flight = 0

    async def chat(self, request: Request):
        body = await request.json()
        self.bodies.append(body)
        text = body["messages"][-1]["content"]
        n = self.calls[text] = self.calls.get(text, 0) + 1
        steps = self.script.get(text, [(200, "get_weather", {"city": text}, 0.0)])
        status, name, args, delay = steps[min(n, len(steps)) - 1]
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(delay)
        finally:
            self.in_flight -= 1
        if status != 200:
            return JSONResponse({"error": {"message": f"scripted {status}"}}, status_code=status)
        message = {"role": "assistant", "content": None if name else "plain answer"}
        if name:
            message["tool_calls"] = [{"id": "call_1", "type": "function",
                                      "function": {"name": name, "arguments": json.dumps(args)}}]
        return {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": message}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}

    async def judge(self, request: Request):
        self.judge_auth.append(request.headers.get("authorization"))
        return {"choices": [{"message": {"role": "assistant", "content": '{"score": 1}'}}]}


@pytest.fixture(scope="module")
def model_server():
    model = ScriptedModel()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(model.app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    model.base_url = f"http://127.0.0.1:{port}"
    yield model
    server.should_exit = True
    thread.join(timeout=5)
    sock.close()


@pytest.fixture
def model(model_server):
    model_server.reset()
    return model_server


def row(record_id: str, text: str, tool: str | None = "get_weather", args: dict | None = None) -> dict:
    message = {"role": "assistant", "content": None if tool else "plain answer"}
    if tool:
        arguments = args if args is not None else {"city": text}
        message["tool_calls"] = [{"id": "c", "type": "function",
                                  "function": {"name": tool, "arguments": arguments}}]
    return {"record_id": record_id, "timestamp": 0, "workload_id": "w", "client_id": "c",
            "request": {"model": "big", "messages": [{"role": "user", "content": text}], "tools": TOOLS},
            "response": {"choices": [{"message": message}]}}


def spec_for(model: ScriptedModel, n: int, **kwargs) -> EvalSpec:
    return EvalSpec(name="t-base-eval", eval_type="base-eval",
                    dataset=DatasetRef(name="d", split="eval", uri="file:///d", num_records=n),
                    endpoint=Endpoint(deployment_name="d", model_name="cand", served_model="cand-served",
                                      base_url=model.base_url + "/v1"),
                    **{"concurrency": 4, "max_retries": 2, "request_timeout_s": 5.0, **kwargs})


async def run(model, rows, tmp_path: Path, **kwargs):
    spec_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in EvalSpec.model_fields}
    return await evaluate(spec_for(model, len(rows), **spec_kwargs), rows,
                          predictions_path=tmp_path / "pred.jsonl", backoff_base_s=0.01, **kwargs)


def read_predictions(tmp_path: Path) -> dict[str, dict]:
    rows = {}
    for line in (tmp_path / "pred.jsonl").read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # the torn line a test planted
        rows[row["record_id"]] = row
    return rows


async def test_scores_latency_tokens_and_request_shape(model, tmp_path):
    rows = [row(f"r{i}", f"city{i}") for i in range(8)]
    rows.append(row("wrong-args", "Oslo", args={"city": "Bergen"}))
    rows.append(row("no-call", "hello", tool=None))
    model.script["hello"] = [(200, None, None, 0.0)]
    for i in range(8):
        model.script[f"city{i}"] = [(200, "get_weather", {"city": f"city{i}"}, 0.02 * (i + 1))]
    progress = []
    result = await run(model, rows, tmp_path, progress=progress.append)
    assert result.num_records == 10 and result.num_errors == 0
    assert result.scores["function_name"] == 1.0
    assert result.scores["function_name_and_args_accuracy"] == pytest.approx(0.9)
    assert result.scores["tool_calling_correctness"] is None
    assert result.score_notes["tool_calling_correctness"] == "no llm_judge_config configured"
    assert result.per_tool["get_weather"].count == 9 and result.per_tool["(no call)"].function_name == 1.0
    assert result.prompt_tokens == 100 and result.completion_tokens == 50
    assert 20 <= result.latency_p50_ms < result.latency_p95_ms
    assert result.latency_p95_ms >= 140
    body = model.bodies[0]
    assert body["model"] == "cand-served" and body["tools"] == TOOLS and body["max_tokens"] == 256
    assert progress[-1] == {"done": 10, "total": 10, "errors": 0}
    assert len(read_predictions(tmp_path)) == 10


async def test_transient_errors_are_retried_and_4xx_are_not(model, tmp_path):
    model.script["flaky"] = [(500, None, None, 0), (503, None, None, 0), (200, "get_weather", {"city": "flaky"}, 0)]
    model.script["rate"] = [(429, None, None, 0), (200, "get_weather", {"city": "rate"}, 0)]
    model.script["bad"] = [(400, None, None, 0)]
    model.script["down"] = [(502, None, None, 0)]
    rows = [row("flaky", "flaky"), row("rate", "rate"), row("bad", "bad"), row("down", "down"), row("ok", "ok")]
    result = await run(model, rows, tmp_path)
    assert model.calls == {"flaky": 3, "rate": 2, "bad": 1, "down": 3, "ok": 1}
    assert result.num_errors == 2
    assert result.scores["function_name"] == pytest.approx(3 / 5)
    preds = read_predictions(tmp_path)
    assert preds["flaky"]["attempts"] == 3 and preds["flaky"]["error"] is None
    assert "HTTP 400" in preds["bad"]["error"] and preds["bad"]["error_transient"] is False
    assert preds["down"]["error_transient"] is True


async def test_resumes_from_existing_predictions(model, tmp_path):
    rows = [row(f"r{i}", f"c{i}") for i in range(6)]
    done = {"record_id": "r0", "prediction": {"role": "assistant", "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "c0"}'}}]},
        "latency_ms": 12.0, "usage": {"prompt_tokens": 1, "completion_tokens": 1}, "error": None}
    permanent = {"record_id": "r1", "prediction": None, "error": "HTTP 400: no", "error_transient": False}
    transient = {"record_id": "r2", "prediction": None, "error": "HTTP 503", "error_transient": True}
    (tmp_path / "pred.jsonl").write_text("\n".join(json.dumps(r) for r in (done, permanent, transient))
                                         + '\n{"record_id": "r3", "predic')  # torn by a crash
    result = await run(model, rows, tmp_path)
    assert sorted(model.calls) == ["c2", "c3", "c4", "c5"]  # r0 and r1 reused
    assert result.num_errors == 1 and result.scores["function_name"] == pytest.approx(5 / 6)
    assert result.prompt_tokens == 1 + 4 * 10
    # a second attempt finds everything and sends nothing
    model.reset()
    again = await run(model, rows, tmp_path)
    assert model.calls == {} and again.scores == result.scores
    assert len(read_predictions(tmp_path)) == 6


async def test_concurrency_is_bounded(model, tmp_path):
    rows = [row(f"r{i}", f"q{i}") for i in range(12)]
    for i in range(12):
        model.script[f"q{i}"] = [(200, "get_weather", {"city": f"q{i}"}, 0.05)]
    await run(model, rows, tmp_path, concurrency=3)
    assert model.max_in_flight == 3


async def test_unreachable_endpoint_raises_retryable(model, tmp_path):
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = spec_for(model, 2, max_retries=1)
    spec.endpoint.base_url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(PlatformError) as info:
        await evaluate(spec, [row("a", "a"), row("b", "b")], predictions_path=tmp_path / "p.jsonl", backoff_base_s=0.01)
    assert info.value.retryable and info.value.error_type == "EndpointUnavailable"


class FakeJudge:
    def __init__(self, replies):
        self.replies, self.asked = replies, 0

    async def complete(self, messages):
        self.asked += 1
        return self.replies[self.asked - 1]


async def test_judge_scores_and_rules(model, tmp_path):
    model.script["nothing"] = [(200, None, None, 0)]
    model.script["bad"] = [(400, None, None, 0)]
    rows = [row("a", "a"), row("b", "b"), row("none", "nothing", tool=None), row("bad", "bad")]
    judge = FakeJudge(['{"score": 1}', "10"])  # "10" is out of range for a 0/1 verdict: excluded
    result = await run(model, rows, tmp_path, judge_client=judge)
    assert judge.asked == 2  # the no-call record and the failed request are scored by rule
    assert result.scores["tool_calling_correctness"] == pytest.approx(2 / 3)
    assert "1 of 4" in result.score_notes["tool_calling_correctness"]


async def test_remote_judge_over_http_uses_key_from_env(model, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", "sekret")
    judge = LLMJudgeConfig(url=model.base_url + "/judge/v1", model_name="judge", api_key_env="TEST_JUDGE_KEY")
    result = await run(model, [row("a", "a"), row("b", "b")], tmp_path, judge=judge)
    assert result.scores["tool_calling_correctness"] == 1.0
    assert model.judge_auth == ["Bearer sekret", "Bearer sekret"]
    assert "sekret" not in (tmp_path / "pred.judge.jsonl").read_text()


async def test_generic_workload_scores_similarity(model, tmp_path):
    rows = [row("g", "hi", tool=None)]
    rows[0]["request"].pop("tools")
    model.script["hi"] = [(200, None, None, 0)]
    result = await run(model, rows, tmp_path)
    assert result.scores["similarity"] == 1.0  # "plain answer" both sides
    assert result.scores["function_name"] is None
    assert "tools" not in model.bodies[0]


async def test_assistant_tool_call_arguments_are_sent_as_strings(model, tmp_path):
    r = row("m", "multi")
    r["request"]["messages"] = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "x"}}}]},
        {"role": "tool", "tool_call_id": "t", "content": "sunny"},
        {"role": "user", "content": "multi"},
    ]
    await run(model, [r], tmp_path)
    assert model.bodies[0]["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"city": "x"}'
    assert r["request"]["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"city": "x"}  # input untouched
