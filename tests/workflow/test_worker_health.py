"""Worker health endpoint (workers/health.py) with a REAL Temporal dev server.

1. The real worker process (`python -m workers.main --health-port P`): /healthz answers at once, /readyz turns
   200 when it polls Temporal and reports its queue's slots; when Temporal goes away /readyz is 503 naming the
   error while /healthz stays 200 (liveness must not restart a worker for an outage); SIGTERM exits cleanly.
2. Slot usage: a worker with the health interceptor reports a running activity as a used slot, over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from starter.processes import free_port
from starter.stack import TemporalDevServer
from workers.health import HealthServer, WorkerHealth, monitor

REPO = Path(__file__).resolve().parents[2]


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for(url: str, status: int, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            code, body = get(url)
            last = (code, body)
            if code == status:
                return body
        except (urllib.error.URLError, ConnectionError) as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered {status}: {last}")


def test_worker_process_reports_connectivity_and_slots(tmp_path: Path) -> None:
    server = TemporalDevServer(ui=False).start()
    worker = None
    try:
        server.wait_ready(timeout=60)
        queue = f"orch-{uuid.uuid4().hex[:8]}"
        config = tmp_path / "flywheel.yaml"
        config.write_text(f"platform: {{kind: local, data_dir: {tmp_path}}}\n"
                          f"temporal: {{address: '{server.address}', task_queues: {{orchestrator: {queue}}}}}\n")
        port = free_port()
        worker = subprocess.Popen(
            [sys.executable, "-m", "workers.main", "--queue", "orchestrator", "--config", str(config),
             "--health-port", str(port), "--health-host", "127.0.0.1", "--no-ensure-search-attributes",
             "--log-level", "WARNING"],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/healthz", 200)
        ready = wait_for(f"{base}/readyz", 200)
        assert ready["temporal"] == "ok" and ready["polling"] is True
        assert ready["slots"] == {queue: {"kind": "workflow_task", "capacity": 100, "in_use": 0, "free": 100}}
        assert get(f"{base}/nope")[0] == 404

        server.stop()
        down = wait_for(f"{base}/readyz", 503, timeout=40)
        assert down["temporal"] == "error" and down["temporal_error"]
        code, alive = get(f"{base}/healthz")
        assert code == 200 and alive["alive"] is True and alive["ready"] is False

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, worker.stderr.read().decode()[-2000:]
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        if worker is not None and worker.stderr:
            worker.stderr.close()
        server.stop()


# -- slot usage ------------------------------------------------------------------------------------
release = asyncio.Event()
started = asyncio.Event()


@activity.defn(name="health_test_block")
async def block() -> str:
    started.set()
    await release.wait()
    return "done"


@workflow.defn(name="HealthTestWorkflow", sandboxed=False)
class HealthTestWorkflow:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(block, start_to_close_timeout=timedelta(seconds=30))


async def test_running_activity_is_a_used_slot() -> None:
    server = TemporalDevServer(ui=False).start()
    try:
        server.wait_ready(timeout=60)
        client = await Client.connect(server.address)
        queue = f"slots-{uuid.uuid4().hex[:8]}"
        health = WorkerHealth()
        health.add_queue(queue, "activity", 2)
        http = HealthServer(health, 0, "127.0.0.1").start()
        watcher = asyncio.create_task(monitor(health, client, interval_s=0.2))
        try:
            async with Worker(client, task_queue=queue, workflows=[HealthTestWorkflow], activities=[block],
                              max_concurrent_activities=2, interceptors=[health.interceptor()],
                              workflow_runner=UnsandboxedWorkflowRunner()):
                health.polling = True
                handle = await client.start_workflow(HealthTestWorkflow.run, id=f"wf-{queue}", task_queue=queue)
                await asyncio.wait_for(started.wait(), 20)
                code, body = await asyncio.to_thread(get, f"http://127.0.0.1:{http.port}/readyz")
                assert code == 200, body
                assert body["slots"][queue] == {"kind": "activity", "capacity": 2, "in_use": 1, "free": 1}
                release.set()
                assert await handle.result() == "done"
                _, body = await asyncio.to_thread(get, f"http://127.0.0.1:{http.port}/readyz")
                assert body["slots"][queue]["in_use"] == 0
        finally:
            watcher.cancel()
            http.stop()
    finally:
        server.stop()
