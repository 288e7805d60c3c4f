"""Settings and Temporal workers for tests: fast timeouts, in-process workers, worker processes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from temporalio.client import Client

from activities import common as activity_common
from flywheel.config import NIMConfig, PlatformConfig, Settings, TaskQueues, TemporalConfig
from tests.helpers import REPO_ROOT
from tests.workflow.fakes import FAKE_ACTIVITIES
from workers.main import build_workers
from workflows.models import ActivityTimeouts

# Short timeouts and retries so failure paths finish in seconds.
FAST = ActivityTimeouts(deploy_heartbeat_s=5, evaluate_heartbeat_s=5, customize_heartbeat_s=5,
                        short_start_to_close_s=30, retry_initial_interval_s=0.2, retry_max_interval_s=1.0,
                        max_attempts=3)


def make_settings(data_dir: Path, models: Sequence[str | NIMConfig] = ("alpha", "beta"), *,
                  customize: Sequence[str] = ("alpha",), review_timeout_s: int = 3600,
                  max_parallel: int = 2, address: str = "localhost:7233") -> Settings:
    """Local-platform settings with task queues unique to this call (tests share one Temporal server)."""
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
    """Workers for all three queues in this process, running the fake activities unless others are given."""
    acts = list(activities if activities is not None else FAKE_ACTIVITIES)
    workers = build_workers(client, settings, ["orchestrator", "cpu", "gpu"], cpu_activities=acts,
                            gpu_activities=acts, gpu_slot_count=1, graceful_shutdown_s=0)
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        yield


@contextlib.asynccontextmanager
async def flywheel_workers(client: Any, settings: Any, queues: Sequence[str]) -> AsyncIterator[None]:
    """The real worker assembly (workers.main.build_workers) in this process: workflows and/or REAL activities."""
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
    await activity_common.close_platforms()


def spawn_activity_worker(module: str, settings_path: Path, log: Path, *args: str,
                          standby: Path | None = None) -> subprocess.Popen:
    """``python -m <module> SETTINGS_JSON [ARGS...]`` in its own process (the test kills it by pid).

    ``standby``: the worker creates this file once imported and waits for a line on its stdin before it
    connects (tests/integration/flywheel_activity_worker.py)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    if standby is not None:
        env["FLYWHEEL_WORKER_STANDBY"] = str(standby)
    return subprocess.Popen([sys.executable, "-m", module, str(settings_path), *args], cwd=REPO_ROOT, env=env,
                            stdin=subprocess.PIPE if standby is not None else None,
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
