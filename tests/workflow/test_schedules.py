"""Temporal Schedules per (workload, client) against the dev server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from flywheel.config import DataSplitConfig
from flywheel.jobdoc import JobDocument, RunStatus
from flywheel.jobstore import open_jobstore
from starter import schedules
from tests.helpers.polling import wait_for
from tests.helpers.temporal_workers import make_settings, running_workers
from tests.workflow.fakes import calls
from workflows.models import flywheel_workflow_id


async def test_schedule_lifecycle(client: Client, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ["alpha"], customize=(), review_timeout_s=0)
    override = DataSplitConfig(eval_size=5, random_seed=3, limit=50)
    sid = await schedules.create_schedule(client, settings, "wsched", "c1", "0 0 1 1 *",
                                          data_split_config=override)
    try:
        assert sid == "flywheel-schedule-wsched-c1"
        info = await schedules.describe_schedule(client, sid)
        assert info.cron == ["0 0 1 1 *"] and not info.paused and info.workload_id == "wsched"
        assert info.next_runs

        listed = await wait_for(lambda: _listed(client, sid), timeout=15)
        assert listed.client_id == "c1"

        await schedules.pause_schedule(client, sid, note="maintenance")
        assert (await schedules.describe_schedule(client, sid)).paused
        await schedules.unpause_schedule(client, sid)
        assert not (await schedules.describe_schedule(client, sid)).paused

        async with running_workers(client, settings):
            await schedules.trigger_schedule(client, sid)

            async def started():
                runs = (await schedules.describe_schedule(client, sid)).recent_runs
                return runs[0] if runs else None

            wf_id = await wait_for(started, timeout=15)
            assert wf_id.startswith(flywheel_workflow_id("wsched", "c1", "sched-"))
            doc = await asyncio.wait_for(client.get_workflow_handle(wf_id, result_type=JobDocument).result(), 30)
        assert doc.status == RunStatus.completed
        assert doc.id == wf_id[len("flywheel-wsched-c1-"):] and doc.id.startswith("sched-")
        assert flywheel_workflow_id("wsched", "c1", doc.id) == wf_id
        store = open_jobstore(settings)
        assert store.get(doc.id).status == RunStatus.completed
        store.close()
        prep = [c for c in calls(tmp_path) if c["act"] == "prepare_data" and c["phase"] == "start"]
        assert prep[0]["split"] == override.model_dump()
    finally:
        await schedules.delete_schedule(client, sid)
    with pytest.raises(RPCError):
        await schedules.describe_schedule(client, sid)


async def _listed(client: Client, sid: str):
    return next((s for s in await schedules.list_schedules(client) if s.schedule_id == sid), None)
