"""FlywheelRun / CandidateRun against a real Temporal dev server, fake activities."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, CancelledError

from flywheel.config import DataSplitConfig
from flywheel.jobdoc import JobDocument, NimDoc, NimStatus, RunStatus, Stage
from flywheel.jobstore import open_jobstore
from tests.helpers.polling import wait_for
from tests.helpers.temporal_workers import FAST, make_settings, running_workers
from tests.workflow.fakes import calls
from workflows.flywheel_run import FlywheelRun
from workflows.models import (
    PROMOTE_UPDATE,
    REJECT_UPDATE,
    STATUS_QUERY,
    FlywheelJobInput,
    PromoteRequest,
    RejectRequest,
    candidate_workflow_id,
    flywheel_workflow_id,
)
from workflows.search_attributes import KEY_STAGE


async def start(client: Client, settings, *, workload: str = "wl", review_timeout_s: int | None = None,
                data_split_config: DataSplitConfig | None = None, eval_types=None):
    job_id = uuid.uuid4().hex[:10]
    inp = FlywheelJobInput(job_id=job_id, workload_id=workload, client_id="cl", settings=settings,
                           review_timeout_s=review_timeout_s, data_split_config=data_split_config,
                           timeouts=FAST, **({"eval_types": eval_types} if eval_types else {}))
    return await client.start_workflow(FlywheelRun.run, inp, id=flywheel_workflow_id(workload, "cl", job_id),
                                       task_queue=settings.temporal.task_queues.orchestrator)


async def doc_of(handle) -> JobDocument:
    return await handle.query(STATUS_QUERY, result_type=JobDocument)


async def wait_stage(handle, stage: Stage, timeout: float = 30.0) -> JobDocument:
    async def check():
        doc = await doc_of(handle)
        return doc if doc is not None and doc.stage == stage else None

    return await wait_for(check, timeout=timeout)


def stored(settings, job_id: str) -> JobDocument | None:
    store = open_jobstore(settings)
    try:
        return store.get(job_id)
    finally:
        store.close()


def teardowns(data_dir) -> set[str]:
    return {c["name"] for c in calls(data_dir) if c["act"] == "teardown"}


async def test_happy_path_promote(client: Client, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    override = DataSplitConfig(eval_size=7, val_ratio=0.2, min_total_records=10, random_seed=7, limit=123)
    async with running_workers(client, settings):
        handle = await start(client, settings, data_split_config=override)
        doc = await wait_stage(handle, Stage.awaiting_review)
        assert doc.status == RunStatus.running
        alpha, beta = doc.nim("alpha"), doc.nim("beta")
        assert alpha.status == beta.status == NimStatus.completed
        assert {e.eval_type for e in alpha.evaluations} == {"base-eval", "icl-eval", "customized-eval"}
        assert {e.eval_type for e in beta.evaluations} == {"base-eval", "icl-eval"}
        for nim in (alpha, beta):
            for ev in nim.evaluations:
                assert ev.error is None and ev.progress == 100.0 and ev.finished_at is not None
                assert ev.scores["function_name"] > 0 and ev.confidence_intervals["function_name"]
        assert alpha.evaluation("customized-eval").scores["function_name"] == pytest.approx(0.97)
        assert alpha.customizations[0].status == "completed" and alpha.customizations[0].steps_completed == 4
        assert alpha.gate["passed"] is True and alpha.gate["eval_type"] == "customized-eval"
        assert beta.gate["passed"] is False
        # (10000 + 1000 tokens) / 20 records × 0.001 per 1k tokens
        assert alpha.cost_per_1k_requests == pytest.approx(0.55)
        assert doc.num_records == 87 and {d.name.rsplit("-", 1)[1] for d in doc.datasets} == {"eval", "train", "val"}
        assert doc.report_uri and doc.report_uri.endswith("index.html")
        # The per-job split override reached data prep unchanged (seed and limit included).
        prep = [c for c in calls(tmp_path) if c["act"] == "prepare_data" and c["phase"] == "start"]
        assert prep[0]["split"] == override.model_dump()
        # The job store has the awaiting_review doc (it outlives Temporal retention).
        await wait_for(lambda: stored(settings, doc.id).stage == Stage.awaiting_review)

        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update(PROMOTE_UPDATE, PromoteRequest(model_name="gamma"))
        assert "not a candidate with results" in str(err.value.cause)
        assert "alpha" in str(err.value.cause)

        decision = await handle.execute_update(PROMOTE_UPDATE, PromoteRequest(model_name="alpha", by="ana"))
        assert decision["decision"] == "promoted" if isinstance(decision, dict) else decision.decision == "promoted"
        final = await handle.result()
    assert final.status == RunStatus.completed and final.stage == Stage.promoted
    assert final.review["decision"] == "promoted" and final.review["model_name"] == "alpha"
    assert final.finished_at is not None
    persisted = stored(settings, final.id)
    assert persisted.status == RunStatus.completed and persisted.review["model_name"] == "alpha"
    # Every persist bumped the revision; the final one is what the store kept.
    assert persisted.revision == final.revision > 3
    wf_id = handle.id
    assert teardowns(tmp_path) == {f"{candidate_workflow_id(wf_id, 'alpha')}-base",
                                   f"{candidate_workflow_id(wf_id, 'alpha')}-customized",
                                   f"{candidate_workflow_id(wf_id, 'beta')}-base"}
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(KEY_STAGE) == "promoted"
    # Deterministic: the recorded histories (parent and a child) replay cleanly.
    await replay(client, handle.id, candidate_workflow_id(handle.id, "alpha"))


async def replay(client: Client, *workflow_ids: str) -> None:
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Replayer

    from workflows.candidate_run import CandidateRun

    replayer = Replayer(workflows=[FlywheelRun, CandidateRun], data_converter=pydantic_data_converter)
    for wf_id in workflow_ids:
        await replayer.replay_workflow(await client.get_workflow_handle(wf_id).fetch_history())


async def test_reject(client: Client, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ["alpha"])
    async with running_workers(client, settings):
        handle = await start(client, settings, eval_types=["base-eval"])
        await wait_stage(handle, Stage.awaiting_review)
        await handle.execute_update(REJECT_UPDATE, RejectRequest(reason="too slow", by="bo"))
        final = await handle.result()
    assert final.stage == Stage.rejected and final.status == RunStatus.completed
    assert final.review["decision"] == "rejected" and final.review["note"] == "too slow"


async def test_review_timeout(client: Client, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ["alpha"], customize=())
    async with running_workers(client, settings):
        handle = await start(client, settings, review_timeout_s=1)
        final = await handle.result()
    assert final.review["decision"] == "timed_out" and final.stage == Stage.completed
    assert stored(settings, final.id).review["decision"] == "timed_out"


async def test_cancel_mid_evaluation(client: Client, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ["slow-a", "slow-b"], customize=("slow-a",))
    async with running_workers(client, settings):
        handle = await start(client, settings)
        await wait_for(lambda: len({c["name"] for c in calls(tmp_path)
                                    if c["act"] == "evaluate" and c["phase"] == "start"}) >= 4)
        # Live status: parent doc and the child's own query.
        async def live():
            current = await doc_of(handle)
            return current if current.nim("slow-a").status == NimStatus.running_evals else None

        doc = await wait_for(live)  # children signal their progress into the parent's doc
        assert doc.stage == Stage.evaluating
        child = client.get_workflow_handle(candidate_workflow_id(handle.id, "slow-a"))
        nim = await child.query(STATUS_QUERY, result_type=NimDoc)
        assert nim.status == NimStatus.running_evals and nim.evaluation("base-eval").started_at is not None
        # Review is only possible once the run awaits review.
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update(PROMOTE_UPDATE, PromoteRequest(model_name="slow-a"))
        assert "only possible in stage 'awaiting_review'" in str(err.value.cause)
        assert "'evaluating'" in str(err.value.cause)

        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        assert isinstance(failure.value.cause, CancelledError)
    deployed = {c["name"] for c in calls(tmp_path) if c["act"] == "deploy" and c["phase"] == "done"}
    assert deployed and teardowns(tmp_path) >= deployed
    assert {c["name"] for c in calls(tmp_path) if c["phase"] == "cancelled"}  # activities saw the cancel
    persisted = stored(settings, doc.id)
    assert persisted.status == RunStatus.cancelled and persisted.stage == Stage.cancelled
    assert all(n.status == NimStatus.cancelled for n in persisted.nims)
    assert persisted.finished_at is not None
    # Nothing a cancelled child last reported as in flight stays "running" in the stored document.
    for nim in persisted.nims:
        assert all(c.status in ("cancelled", "completed", "failed") for c in nim.customizations)
        assert all(e.finished_at is not None or e.error for e in nim.evaluations)
    assert any(e.error == "cancelled" for n in persisted.nims for e in n.evaluations)
    await replay(client, handle.id, candidate_workflow_id(handle.id, "slow-a"))


async def test_failing_candidate_does_not_fail_the_run(client: Client, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ["good", "fail-deploy-x", "fail-eval-y", "nocap-z"],
                             customize=("nocap-z",), max_parallel=2)
    async with running_workers(client, settings):
        handle = await start(client, settings, review_timeout_s=0)
        final = await handle.result()
    assert final.status == RunStatus.completed and final.review["decision"] == "skipped"
    assert final.nim("good").status == NimStatus.completed
    bad = final.nim("fail-deploy-x")
    assert bad.status == NimStatus.failed and "no capacity" in bad.error and "DeploymentFailed" in bad.error
    evals = final.nim("fail-eval-y")
    assert evals.status == NimStatus.failed and "every request" in evals.error
    nocap = final.nim("nocap-z")
    assert nocap.status == NimStatus.completed
    assert nocap.customizations[0].status == "unavailable"
    assert "peft" in nocap.customizations[0].error
    assert "unavailable" in nocap.evaluation("customized-eval").error
    # Teardown even for the failed deployment.
    assert f"{candidate_workflow_id(handle.id, 'fail-deploy-x')}-base" in teardowns(tmp_path)


async def test_insufficient_data_fails_the_run(client: Client, tmp_path: Path) -> None:
    """The REAL prepare_data activity (sqlite log store, curation, splits) on too few records."""
    import json

    from activities.data import prepare_data as real_prepare
    from flywheel.logstore import open_logstore
    from tests.workflow.fakes import FAKE_ACTIVITIES

    settings = make_settings(tmp_path, ["alpha"])
    sample = Path(__file__).resolve().parents[2] / "data" / "primary_assistant-aiva-1.jsonl"
    rows = [json.loads(line) for line in sample.read_text().splitlines()[:5]]
    for row in rows:
        row["workload_id"], row["client_id"] = "tiny", "cl"
    store = open_logstore(settings)
    store.add(rows)
    store.close()
    acts = [real_prepare if a.__name__ == "prepare_data" else a for a in FAKE_ACTIVITIES]
    async with running_workers(client, settings, acts):
        handle = await start(client, settings, workload="tiny",
                             data_split_config=DataSplitConfig(min_total_records=60, limit=99))
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        history = [e async for e in handle.fetch_history_events()]
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InsufficientData" and cause.non_retryable
    assert "only 5 usable records" in cause.message and "min_total_records is 60" in cause.message
    # Non-retryable: a single attempt.
    assert sum(1 for e in history if e.HasField("activity_task_started_event_attributes")
               and e.activity_task_started_event_attributes.attempt > 1) == 0
    persisted = stored(settings, handle.id.rsplit("-", 1)[1])
    assert persisted.status == RunStatus.failed and persisted.stage == Stage.failed
    assert "InsufficientData" in persisted.error and "min_total_records is 60" in persisted.error
    assert not [c for c in calls(tmp_path) if c["act"] == "deploy"]


async def test_job_id_derived_from_workflow_id(client: Client, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ["alpha"], customize=())
    async with running_workers(client, settings):
        inp = FlywheelJobInput(job_id="", workload_id="wl", client_id="cl", settings=settings,
                               review_timeout_s=0, eval_types=["base-eval"], timeouts=FAST)
        handle = await client.start_workflow(FlywheelRun.run, inp, id=flywheel_workflow_id("wl", "cl", "j42"),
                                             task_queue=settings.temporal.task_queues.orchestrator)
        final = await asyncio.wait_for(handle.result(), 30)
    assert final.id == "j42" and stored(settings, "j42").status == RunStatus.completed
