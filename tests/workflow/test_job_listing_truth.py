"""Listing tells the truth: stored documents that still say pending/running are checked against Temporal
(real dev server) — a run terminated from the Temporal UI, and a run Temporal no longer knows (retention),
are stored with their real outcome; a start in progress is left alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.client import Client

from flywheel.jobdoc import JobDocument, RunStatus, Stage
from flywheel.jobstore import open_jobstore
from starter.job_service import JobService
from tests.helpers.temporal_workers import make_settings
from workflows.models import flywheel_workflow_id


def _doc(job_id: str, started_at: datetime) -> JobDocument:
    return JobDocument(id=job_id, workload_id="wl", client_id="cl", status=RunStatus.running, stage=Stage.evaluating,
                       started_at=started_at, workflow_id=flywheel_workflow_id("wl", "cl", job_id))


async def test_listing_reconciles_stale_running_documents(client: Client, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ["alpha"], customize=())
    store = open_jobstore(settings)

    async def connect() -> Client:
        return client

    jobs = JobService(settings, store, connect)
    try:
        started = await jobs.start(workload_id="wl", client_id="cl")  # no worker: it stays running
        await client.get_workflow_handle(started.workflow_id).terminate("from the Temporal UI")
        store.put(_doc("gone0000000000000000000a", datetime.now(UTC) - timedelta(days=40)))  # past retention
        store.put(_doc("fresh000000000000000000a", datetime.now(UTC)))  # a start in progress

        listed = {d.id: d for d in (await jobs.list())[0]}
        assert listed[started.id].status == RunStatus.failed and listed[started.id].stage == Stage.failed
        assert "terminated" in listed[started.id].error
        gone = listed["gone0000000000000000000a"]
        assert gone.status == RunStatus.failed and "no longer known to Temporal" in gone.error
        assert "evaluating" in gone.error
        assert listed["fresh000000000000000000a"].status == RunStatus.running
        # Stored, not just shown: the next reader of the store sees the truth too.
        assert store.get(started.id).status == RunStatus.failed
        assert store.get("gone0000000000000000000a").status == RunStatus.failed
    finally:
        store.close()
