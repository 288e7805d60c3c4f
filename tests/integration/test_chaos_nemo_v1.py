"""Chaos (slow lane, about a minute): one FlywheelRun on the NeMo v1 contract emulator whose activity worker
is killed in the middle of each long activity — SIGTERM while the base NIM deployment is pending, SIGKILL
while customization and the base/ICL evaluations run, SIGTERM while the customized evaluation runs — and
replaced each time. The run completes with the same scores as an undisturbed run, no remote job or
deployment is created twice or cancelled, and each kill's recovery time (kill → the new worker polls every
in-flight remote thing again) is printed.

``test_temporal_server_restart_mid_run``: a dev server persisting to a file is stopped (SIGTERM) while
customization and evaluations run, and restarted on the same file; the run completes. Not covered: kills
exactly at stage boundaries.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from tests.conftest import TEMPORAL_CLI
from tests.emulators.nemo_v1_emulator import NemoV1Emulator
from tests.emulators.openai_scripted import ScriptedOpenAI
from tests.helpers.temporal_workers import spawn_activity_worker, stop_process
from tests.integration.test_nemo_v1_flywheel import (
    BASE,
    EVAL_TYPES,
    WORKER_MODULE,
    _wait,
    assert_completed_run,
    client,  # noqa: F401 - fixture
    jobs,
    long_running,
    make_settings,
    nim,  # noqa: F401 - fixture
    orchestrator,
    start_run,
)
from workflows.search_attributes import dev_server_args

pytestmark = pytest.mark.slow


def scores(doc: Any) -> dict[str, dict[str, Any]]:
    return {e.eval_type: dict(e.scores) for e in doc.nim(BASE).evaluations}


def in_flight(emu: NemoV1Emulator) -> dict[str, int]:
    """Every remote thing still being polled: deployments and unfinished jobs → their poll counters."""
    out = {f"dep:{k}": d["step"] for k, d in emu.deployments.items() if d["state"] != "ready"}
    out.update({j.id: j.step for j in emu.jobs.values() if j.state.get("status") not in ("completed", "cancelled")})
    return out


async def test_worker_killed_in_every_long_activity(client: Client, emu: NemoV1Emulator, nim: ScriptedOpenAI,  # noqa: F811
                                                    tmp_path: Path) -> None:
    # The undisturbed reference run (its own settings and task queues, same emulator scripts).
    ref_settings = make_settings(tmp_path / "ref", emu, nim, client)
    async with orchestrator(client, ref_settings, activities=True):
        _, ref_handle = await start_run(client, ref_settings)
        reference = await asyncio.wait_for(ref_handle.result(), 90)
    emu.jobs.clear()
    emu.calls.clear()
    emu.deployments.clear()
    nim.remove_model(BASE) if BASE in nim.models else None

    emu.deployment_script = ["pending"] * 60 + ["ready"]
    emu.customization_script = long_running("customization", 120)
    emu.eval_script = long_running("evaluation", 60)
    settings = make_settings(tmp_path / "chaos", emu, nim, client)
    settings_path = tmp_path / "settings.json"
    settings_path.write_text(settings.model_dump_json())
    log = tmp_path / "worker.log"
    worker = spawn_activity_worker(WORKER_MODULE, settings_path, log)
    loop = asyncio.get_running_loop()
    recoveries: list[tuple[str, float]] = []

    async def kill_and_replace(what: str, sig: signal.Signals) -> None:
        nonlocal worker
        worker.send_signal(sig)
        worker.wait(15)
        t_kill = loop.time()
        polled = in_flight(emu)
        assert polled, f"nothing in flight at {what}"
        assert not any(j.cancelled for j in emu.jobs.values()), f"a remote job was cancelled by {sig.name}"
        worker = spawn_activity_worker(WORKER_MODULE, settings_path, log)
        await _wait(lambda: all(in_flight(emu).get(k, 10**9) > s for k, s in polled.items()), 90,
                    f"the new worker to poll everything in flight after {what} ({sig.name}); log: {log}")
        recoveries.append((f"{what} ({sig.name})", loop.time() - t_kill))

    try:
        async with orchestrator(client, settings, activities=False):
            job_id, handle = await start_run(client, settings)
            await _wait(lambda: any(d["step"] >= 5 for d in emu.deployments.values()), 60, "a pending deployment")
            await kill_and_replace("deploy", signal.SIGTERM)
            await _wait(lambda: any(j.step >= 10 for j in jobs(emu, "customization"))
                        and len(jobs(emu, "evaluation")) >= 2 and all(j.step >= 3 for j in jobs(emu, "evaluation")),
                        90, "customization and base/icl evaluations running")
            await kill_and_replace("customize + evaluate", signal.SIGKILL)
            await _wait(lambda: len(jobs(emu, "evaluation")) == 3
                        and any(j.step >= 3 and j.state.get("status") == "running" for j in jobs(emu, "evaluation")
                                if "customized" in str(j.body["target"])), 120, "the customized evaluation running")
            await kill_and_replace("customized evaluate", signal.SIGTERM)
            doc = await asyncio.wait_for(handle.result(), 120)
    finally:
        stop_process(worker)
    assert_completed_run(doc, emu, nim, settings, job_id, handle.id)  # creates once, torn down, stored
    assert scores(doc) == scores(reference)
    assert emu.count("POST", r"/v1/(customization|evaluation)/jobs/.+/cancel") == 0
    assert emu.count("POST", "/v1/evaluation/jobs") == len(EVAL_TYPES)
    for what, seconds in recoveries:
        print(f"chaos recovery: {what}: every in-flight remote job polled again after {seconds:.2f}s")


# -- Temporal server restart ---------------------------------------------------------------------
SERVER_PORT = 25101  # this suite's port range: 25000-25499


def start_dev_server(db: Path, log: Path) -> subprocess.Popen:
    """A dev server that persists to ``db`` (so a restart keeps every run), in its own process group."""
    return subprocess.Popen(
        [str(TEMPORAL_CLI), "server", "start-dev", "--db-filename", str(db), "--port", str(SERVER_PORT),
         "--http-port", str(SERVER_PORT + 1), "--metrics-port", str(SERVER_PORT + 2), "--headless",
         "--log-level", "warn", *dev_server_args()],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


async def connected(address: str, timeout: float = 60) -> Client:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await Client.connect(address, data_converter=pydantic_data_converter)
        except Exception:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.3)


async def test_temporal_server_restart_mid_run(emu: NemoV1Emulator, nim: ScriptedOpenAI,  # noqa: F811
                                               tmp_path: Path) -> None:
    if not TEMPORAL_CLI.exists():
        pytest.skip(f"temporal CLI not found at {TEMPORAL_CLI}")
    address = f"127.0.0.1:{SERVER_PORT}"
    db, server_log = tmp_path / "temporal.db", tmp_path / "server.log"
    server = start_dev_server(db, server_log)
    worker = None
    try:
        temporal = await connected(address)
        emu.customization_script = long_running("customization", 160)
        emu.eval_script = long_running("evaluation", 80)
        settings = make_settings(tmp_path, emu, nim, temporal)
        settings_path = tmp_path / "settings.json"
        settings_path.write_text(settings.model_dump_json())
        log = tmp_path / "worker.log"
        worker = spawn_activity_worker(WORKER_MODULE, settings_path, log)
        loop = asyncio.get_running_loop()
        async with orchestrator(temporal, settings, activities=False):
            job_id, handle = await start_run(temporal, settings)
            await _wait(lambda: any(j.step >= 10 for j in jobs(emu, "customization"))
                        and len(jobs(emu, "evaluation")) >= 2, 90, f"customization running (log: {log})")
            server.send_signal(signal.SIGTERM)
            server.wait(30)
            t_down = loop.time()
            await asyncio.sleep(2.0)
            server = start_dev_server(db, server_log)
            polled = in_flight(emu)
            await connected(address)
            t_up = loop.time()
            await _wait(lambda: all(in_flight(emu).get(k, 10**9) > s for k, s in polled.items()), 120,
                        "every in-flight job polled after the server restart")
            # Activities kept polling while the server was down; what matters is that the run goes on.
            doc = await asyncio.wait_for(handle.result(), 180)
            t_done = loop.time()
    finally:
        stop_process(worker)
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
    assert_completed_run(doc, emu, nim, settings, job_id, handle.id)
    assert emu.count("POST", r"/v1/(customization|evaluation)/jobs/.+/cancel") == 0
    print(f"server restart: down {t_up - t_down:.2f}s; run finished {t_done - t_up:.2f}s after the server was back")
