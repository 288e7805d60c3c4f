"""DELETE of a finished job removes what its run created on its platform (local: datasets, each candidate's
ICL dataset and training work) and in the artifact store — and nothing of another run — then the document,
and says what it removed, by kind; a second DELETE of the gone job is a 404 (JobNotFoundError)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import Client

from flywheel.artifacts import open_artifact_store
from flywheel.jobdoc import JobDocument, RunStatus
from flywheel.jobstore import open_jobstore
from flywheel.platforms.local.datasets import write_splits
from starter.job_service import JobNotFoundError, JobService, JobStillRunningError
from tests.helpers.temporal_workers import FAST, make_settings, running_workers
from workflows.flywheel_run import FlywheelRun
from workflows.models import FlywheelJobInput, flywheel_workflow_id, run_resource_keys

ROWS = [{"messages": [{"role": "user", "content": "hi"}]}]


async def test_delete_removes_the_runs_platform_resources(client: Client, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, models=("org/alpha", "beta"), customize=("org/alpha",), review_timeout_s=0)
    wf_id = flywheel_workflow_id("wl", "cl", "del1")
    store = open_jobstore(settings)

    async def connect() -> Client:
        return client

    jobs = JobService(settings, store, connect)
    try:
        async with running_workers(client, settings):
            inp = FlywheelJobInput(job_id="del1", workload_id="wl", client_id="cl", settings=settings,
                                   review_timeout_s=0, timeouts=FAST, eval_types=["base-eval"])
            handle = await client.start_workflow(FlywheelRun.run, inp, id=wf_id, result_type=JobDocument,
                                                 task_queue=settings.temporal.task_queues.orchestrator)
            doc = await asyncio.wait_for(handle.result(), 60)
            assert doc.status == RunStatus.completed
            # What the real local platform stores for this run (the fake activities store nothing).
            key, cand_keys = run_resource_keys(wf_id, ["org/alpha", "beta"])
            write_splits(tmp_path, key, {"eval": ROWS, "train": ROWS})
            assert len(cand_keys) == 3  # org/alpha: current + legacy child-id generation; beta: one
            for cand in (cand_keys[0], cand_keys[2]):
                write_splits(tmp_path, f"{cand}-icl", {"icl": ROWS})
            (tmp_path / "customizations" / f"{cand_keys[0]}-customize" / "checkpoints").mkdir(parents=True)
            other = tmp_path / "datasets" / "flywheel-wl-cl-other"
            write_splits(tmp_path, "flywheel-wl-cl-other", {"eval": ROWS})
            # ... and what it keeps in the artifact store (another run's objects too, one sharing its prefix).
            artifacts = open_artifact_store(settings)
            run_objects = [f"datasets/{key}/eval.jsonl", f"predictions/{cand_keys[0]}-base-eval.jsonl",
                           f"customizations/{cand_keys[0]}-customize/adapter.gguf", "reports/del1/report.html"]
            other_objects = ["datasets/flywheel-wl-cl-other/eval.jsonl", "reports/del10/report.html",
                             f"predictions/{key}0-cand-beta-base-eval.jsonl"]
            for name in run_objects + other_objects:
                artifacts.put(name, name.encode())

            deletion = await jobs.delete("del1")
            again_missing = store.get("del1")
            with pytest.raises(JobNotFoundError):  # DELETE again → 404: nothing is done twice
                await jobs.delete("del1")
    finally:
        store.close()
    assert again_missing is None
    assert sorted(deletion.removed) == sorted(
        [f"data_dir: datasets/{key}", f"data_dir: datasets/{cand_keys[0]}-icl",
         f"data_dir: datasets/{cand_keys[2]}-icl", f"data_dir: customizations/{cand_keys[0]}-customize"]
        + [f"artifact: {name}" for name in run_objects]), deletion.removed
    assert sorted(deletion.removed_by_kind) == ["artifact", "data_dir"] and deletion.kept == []
    assert not (tmp_path / "datasets" / key).exists() and not list((tmp_path / "customizations").iterdir())
    assert other.is_dir()  # another run's data stays
    assert sorted(i.key for i in artifacts.list()) == sorted(other_objects)


async def test_delete_of_a_running_job_removes_nothing(client: Client, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, models=("alpha",), customize=())
    store = open_jobstore(settings)

    async def connect() -> Client:
        return client

    jobs = JobService(settings, store, connect)
    try:
        started = await jobs.start(workload_id="wl", client_id="cl")  # no worker: it stays running
        with pytest.raises(JobStillRunningError):
            await jobs.delete(started.id)
        assert store.get(started.id) is not None
        await client.get_workflow_handle(started.workflow_id).terminate("test over")
    finally:
        store.close()
