"""Ids valid everywhere: a Schedule-style workflow id (with ':' from its timestamp) and two models whose names
differ only in '/' vs '-' run to the end; every name the activities received is a valid local dataset name."""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.client import Client

from flywheel.jobdoc import JobDocument, NimStatus, RunStatus
from flywheel.platforms.local.datasets import _check_name
from tests.helpers.temporal_workers import FAST, make_settings, running_workers
from tests.workflow.fakes import calls
from workflows.flywheel_run import FlywheelRun
from workflows.models import FlywheelJobInput, candidate_workflow_id, schedule_workflow_id_prefix


async def test_scheduled_id_and_slash_vs_dash_models_run_with_valid_names(client: Client, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, models=("org/m", "org-m"), customize=("org/m",), review_timeout_s=0)
    # What a Schedule starts: "<prefix>-<action time>" (Temporal appends the RFC 3339 time).
    wf_id = f"{schedule_workflow_id_prefix('wl', 'cl')}-2026-12-02T01:03:04Z"
    inp = FlywheelJobInput(job_id="", workload_id="wl", client_id="cl", settings=settings, review_timeout_s=0,
                           timeouts=FAST)
    async with running_workers(client, settings):
        handle = await client.start_workflow(FlywheelRun.run, inp, id=wf_id, result_type=JobDocument,
                                             task_queue=settings.temporal.task_queues.orchestrator)
        doc = await asyncio.wait_for(handle.result(), 60)
    assert doc.status == RunStatus.completed, doc.error
    assert {n.model_name: n.status for n in doc.nims} == {"org/m": NimStatus.completed,
                                                           "org-m": NimStatus.completed}
    assert candidate_workflow_id(wf_id, "org/m") != candidate_workflow_id(wf_id, "org-m")
    names = [c["name"] for c in calls(tmp_path) if "name" in c]
    assert names, "the fake activities recorded no names"
    for name in names:
        _check_name("name", name)  # raises InvalidDatasetName on ':' or '/'
    # Each candidate created its own resources: no name is shared between the two models.
    deploys = [c["name"] for c in calls(tmp_path) if c["act"] == "deploy" and c["phase"] == "done"]
    assert len(deploys) == len(set(deploys)) == 3  # two base deployments + org/m's customized one
