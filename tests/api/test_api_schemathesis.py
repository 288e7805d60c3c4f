"""Schemathesis against the served API's OpenAPI schema (real HTTP, real Temporal dev server, an admin
key): generated valid and invalid requests for every operation; no 5xx and no response that breaks the
schema. Bounded: a few examples per operation, derandomized, so it stays fast in `make test`."""

from __future__ import annotations

import asyncio

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from starter.api import create_app
from starter.auth import KeyStore
from starter.auth.authenticator import default_keys_file
from tests.helpers.live_server import serve

EXAMPLES_PER_OPERATION = {GenerationMode.POSITIVE: 8, GenerationMode.NEGATIVE: 6}


def fuzz(base_url: str, token: str) -> dict[str, int]:
    headers = {"authorization": f"Bearer {token}"}
    raw = httpx.get(f"{base_url}/openapi.json", headers=headers, timeout=30).json()
    schema = schemathesis.openapi.from_dict(raw)
    counts = {"operations": 0, "requests": 0, "4xx": 0, "2xx": 0}
    for result in schema.get_all_operations():
        operation = result.ok()
        counts["operations"] += 1
        for mode, examples in EXAMPLES_PER_OPERATION.items():

            @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case):
                response = case.call(base_url=base_url, headers=headers, timeout=30)
                counts["requests"] += 1
                counts["2xx" if response.status_code < 400 else "4xx"] += 1
                case.validate_response(response, checks=[not_a_server_error, response_schema_conformance,
                                                         content_type_conformance])

            import time
            t0 = time.perf_counter()
            check()
            print(f"{operation.method} {operation.path} {mode.value}: {time.perf_counter() - t0:.2f}s")
    return counts


async def test_schemathesis_finds_no_server_errors(api_settings, temporal_env, fake_worker, tmp_path_factory):
    settings = api_settings.model_copy(update={
        "temporal": api_settings.temporal.model_copy(
            update={"address": temporal_env.client.service_client.config.target_host})})
    token, _ = KeyStore(default_keys_file(settings)).create("schemathesis", ["admin"])
    with serve(create_app(settings)) as base_url:
        # in a thread: the session loop keeps running the stand-in workflow's worker meanwhile
        counts = await asyncio.to_thread(fuzz, base_url, token)
    print(f"schemathesis: {counts}")
    assert counts["operations"] >= 15 and counts["requests"] >= 15 * 14
    assert counts["2xx"] > 0 and counts["4xx"] > 0
    # schedules the fuzz created must not outlive the test
    async for entry in await temporal_env.client.list_schedules():
        if entry.id.startswith("flywheel-schedule-"):
            await temporal_env.client.get_schedule_handle(entry.id).delete()
