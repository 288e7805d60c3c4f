"""Runs the starter starts carry ``temporal.activity_timeouts`` from the settings (a cluster notices a lost
worker host as soon as its operators chose), read back from the real Temporal history of the started run."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client

from flywheel.activity_timeouts import ActivityTimeouts
from flywheel.jobstore import open_jobstore
from starter.job_service import JobService
from tests.helpers.temporal_workers import make_settings
from workflows.models import FlywheelJobInput


async def started_input(client: Client, workflow_id: str) -> FlywheelJobInput:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    payloads = history.events[0].workflow_execution_started_event_attributes.input.payloads
    (inp,) = await client.data_converter.decode(payloads, [FlywheelJobInput])
    return inp


async def test_api_started_run_carries_the_configured_activity_timeouts(client: Client, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ["alpha"], customize=())
    settings.temporal.activity_timeouts = ActivityTimeouts(customize_heartbeat_s=7, evaluate_heartbeat_s=9)
    store = open_jobstore(settings)

    async def connect() -> Client:
        return client

    jobs = JobService(settings, store, connect)
    started_ids: list[str] = []
    try:
        started = await jobs.start(workload_id="wl", client_id="cl")  # no worker: it stays running
        started_ids.append(started.workflow_id)
        inp = await started_input(client, started.workflow_id)
        assert inp.timeouts == settings.temporal.activity_timeouts
        assert inp.timeouts.customize_heartbeat_s == 7 and inp.timeouts.deploy_heartbeat_s == 60

        settings.temporal.activity_timeouts = None  # unset: the run gets the production defaults
        default = await jobs.start(workload_id="wl", client_id="cl")
        started_ids.append(default.workflow_id)
        assert (await started_input(client, default.workflow_id)).timeouts is None
    finally:
        for workflow_id in started_ids:
            await client.get_workflow_handle(workflow_id).terminate("test done")
        store.close()
