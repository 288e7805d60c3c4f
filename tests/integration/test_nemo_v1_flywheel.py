"""The FLYWHEEL end to end on NeMo Microservices v1: a full FlywheelRun on a REAL Temporal dev server with the
REAL activities (``activities.all_activities()``), ``platform.kind = nemo_v1`` against the contract emulator
(tests/emulators/nemo_v1_emulator.py; every response validated with the SDK's own types), the candidate NIM
being the scripted OpenAI server, and a SQLite log store loaded with 60 records of the shipped sample logs.

1. ``test_flywheel_run_on_nemo_v1_emulator``: data → Datastore upload + dataset registration → DMS deployment →
   base-eval ‖ icl-eval ‖ customization → adapter → customized-eval (all Evaluator jobs) → teardown → job doc.
2. ``test_activity_worker_sigkilled_during_customization``: the activity worker runs in a separate process and
   is SIGKILLed while the customize activity polls the Customizer job; a new worker process re-attaches to the
   SAME remote job (exactly one customization create, one evaluation job per eval type) and the run completes.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from flywheel.config import Settings
from flywheel.jobdoc import JobDocument, NimStatus, RunStatus
from flywheel.jobstore import open_jobstore
from flywheel.platforms.nemo_v1.datasets import repo_name
from tests.emulators.nemo_v1_emulator import NemoV1Emulator
from tests.emulators.openai_scripted import ScriptedOpenAI, echo_first_tool
from tests.helpers.sample_logs import (
    NUM_SAMPLE_RECORDS,
    SAMPLE_CLIENT,
    SAMPLE_WORKLOAD,
    last_user,
    load_sample_logs,
    logged_answers,
)
from tests.helpers.temporal_workers import flywheel_workers, spawn_activity_worker, stop_process
from workflows.flywheel_run import FlywheelRun
from workflows.models import ActivityTimeouts, FlywheelJobInput, candidate_workflow_id, flywheel_workflow_id

BASE = "meta/llama-3.2-1b-instruct"
NS = "dfwbp"
WORKLOAD, CLIENT = SAMPLE_WORKLOAD, SAMPLE_CLIENT
NUM_RECORDS = NUM_SAMPLE_RECORDS
EVAL_SIZE = 10
EVAL_TYPES = ("base-eval", "icl-eval", "customized-eval")
WORKER_MODULE = "tests.integration.flywheel_activity_worker"

TIMEOUTS = ActivityTimeouts(deploy_heartbeat_s=3, evaluate_heartbeat_s=3, customize_heartbeat_s=3,
                            short_start_to_close_s=30, retry_initial_interval_s=0.2, retry_max_interval_s=1.0,
                            max_attempts=3)


# -- the candidate "model" -----------------------------------------------------------------------
def make_responder() -> Any:
    """The LoRA-customized model answers like production; the base model only for about half the queries
    (deterministically), else it calls the first offered tool with no arguments."""
    answers = logged_answers()

    def responder(body: dict[str, Any]) -> dict[str, Any]:
        query = last_user(body.get("messages") or [])
        calls = answers.get(query)
        customized = "/customized-" in body["model"] or body["model"].startswith("customized-")
        lucky = hashlib.sha256(query.encode()).digest()[0] % 2 == 0
        if calls and (customized or lucky):
            return {"role": "assistant", "content": None, "tool_calls": calls}
        return echo_first_tool(body)

    return responder


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture
def nim():
    server = ScriptedOpenAI(models=[], responder=make_responder()).start()  # nothing served: DMS must deploy it
    yield server
    server.stop()


@pytest.fixture
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


def make_settings(tmp_path: Path, emu: NemoV1Emulator, nim: ScriptedOpenAI, client: Client) -> Settings:
    uid = uuid.uuid4().hex[:8]
    settings = Settings(
        platform={"kind": "nemo_v1", "data_dir": str(tmp_path)},
        temporal={"address": client.service_client.config.target_host, "review_timeout_s": 0,
                  "task_queues": {"orchestrator": f"orch-{uid}", "cpu": f"cpu-{uid}", "gpu": f"gpu-{uid}"}},
        nmp_config={"nemo_base_url": emu.url, "datastore_base_url": emu.url, "nim_base_url": nim.root_url,
                    "nmp_namespace": NS, "poll_interval_s": 0.05, "pending_timeout_s": 30},
        nims=[{"model_name": BASE, "context_length": 8192, "customization_enabled": True, "tag": "1.8.3",
               "customizer_configs": {"target": f"{BASE}@2.0"}, "cost_per_1k_tokens": 0.01}],
        data_split_config={"eval_size": EVAL_SIZE, "val_ratio": 0.1, "min_total_records": 20},
        training_config={"epochs": 2, "batch_size": 8},
        evaluation={"concurrency": 4, "request_timeout_s": 10, "max_retries": 1},
    )
    load_sample_logs(settings)
    return settings


def orchestrator(client: Client, settings: Settings, *, activities: bool) -> Any:
    """The workflow worker in this process (+ the real activities in-process when ``activities``)."""
    return flywheel_workers(client, settings, ["orchestrator", "cpu"] if activities else ["orchestrator"])


async def start_run(client: Client, settings: Settings) -> tuple[str, WorkflowHandle]:
    job_id = uuid.uuid4().hex[:8]
    inp = FlywheelJobInput(job_id=job_id, workload_id=WORKLOAD, client_id=CLIENT, settings=settings,
                           review_timeout_s=0, timeouts=TIMEOUTS)
    handle = await client.start_workflow(FlywheelRun.run, inp, id=flywheel_workflow_id(WORKLOAD, CLIENT, job_id),
                                         task_queue=settings.temporal.task_queues.orchestrator, result_type=JobDocument)
    return job_id, handle


def jobs(emu: NemoV1Emulator, kind: str) -> list[Any]:
    return [j for j in emu.jobs.values() if j.kind == kind]


def assert_completed_run(doc: JobDocument, emu: NemoV1Emulator, nim: ScriptedOpenAI, settings: Settings,
                         job_id: str, wf_id: str, *, deployment_deletes: int | None = 1) -> None:
    """``deployment_deletes``: how many DELETEs of the deployment the emulator saw (None: any; a teardown
    interrupted after its DELETE sends another one, answered 404 = already gone)."""
    assert doc.status == RunStatus.completed, doc.error
    assert doc.num_records == NUM_RECORDS
    cand = doc.nim(BASE)
    assert cand.status == NimStatus.completed, cand.error

    # Every eval type scored by the v1 Evaluator, over the eval split.
    evals = {e.eval_type: e for e in cand.evaluations}
    assert set(evals) == set(EVAL_TYPES)
    for ev in evals.values():
        assert ev.error is None, ev.error
        assert ev.num_records == EVAL_SIZE
        assert ev.scores["function_name"] is not None and ev.scores["function_name_and_args_accuracy"] is not None
        assert ev.nmp_uri and ev.nmp_uri.startswith(f"{emu.url}/v1/evaluation/jobs/eval-")
    # The adapter answers like production; the base model only for some queries.
    assert evals["customized-eval"].scores["function_name_and_args_accuracy"] == pytest.approx(1.0)
    assert evals["base-eval"].scores["function_name_and_args_accuracy"] < 1.0

    # Customization: one Customizer job; the adapter became the customized model that was evaluated.
    # CandidateRun's output_model is "customized-{model}@{job_id}" with the model's "/" made "-" (a "/" would read as a
    # namespace on NeMo); the platform then prefixes our namespace.
    customized = f"{NS}/customized-{BASE.replace('/', '-')}@{job_id}"
    (cust,) = cand.customizations
    assert cust.status == "completed" and cust.error is None
    assert cust.customized_model == customized and cust.epochs_completed == 2 and cust.steps_completed > 0
    assert cust.nmp_uri and cust.nmp_uri.startswith(f"{emu.url}/v1/customization/jobs/cust-")
    (cjob,) = jobs(emu, "customization")
    assert cjob.body["output_model"] == customized and cjob.state["status"] == "completed"
    assert cjob.body["dataset"] == {"name": repo_name(wf_id), "namespace": NS}
    assert emu.count("POST", "/v1/customization/jobs") == 1

    # One Evaluator job per eval type, each on a Datastore file, the customized one targeting the adapter.
    ejobs = {t: j for j in jobs(emu, "evaluation") for t in EVAL_TYPES
             if j.body["custom_fields"]["flywheel_name"] == f"{candidate_workflow_id(wf_id, BASE)}-{t}"}
    assert set(ejobs) == set(EVAL_TYPES) and len(jobs(emu, "evaluation")) == 3
    assert emu.count("POST", "/v1/evaluation/jobs") == 3
    for j in ejobs.values():
        files_url = j.body["config"]["tasks"]["custom-tool-calling"]["dataset"]["files_url"]
        assert files_url.startswith(f"hf://datasets/{NS}/"), files_url
        assert j.state["status"] == "completed"
    assert ejobs["customized-eval"].body["target"]["model"]["api_endpoint"]["model_id"] == customized
    assert ejobs["base-eval"].body["target"]["model"]["api_endpoint"]["model_id"] == BASE

    # Datasets went through the Datastore (HF API) and were registered as dataset entities.
    run_repo = f"{NS}/{repo_name(wf_id)}"
    repo = emu.repos[run_repo]
    assert set(repo) == {"testing/eval.jsonl", "training/train.jsonl", "validation/val.jsonl"}
    assert len(repo["testing/eval.jsonl"].decode().splitlines()) == EVAL_SIZE
    assert emu.datasets[run_repo]["files_url"] == f"hf://datasets/{run_repo}"
    icl_repo = f"{NS}/{repo_name(candidate_workflow_id(wf_id, BASE) + '-icl')}"
    assert set(emu.repos.get(icl_repo, {})) == {"icl/icl.jsonl"}, sorted(emu.repos)
    assert ejobs["icl-eval"].body["config"]["tasks"]["custom-tool-calling"]["dataset"]["files_url"] == \
        f"hf://datasets/{icl_repo}/icl/icl.jsonl"
    assert {d.split for d in doc.datasets} == {"eval", "train", "val"}
    assert all(d.nmp_uri.startswith("hf://datasets/") for d in doc.datasets)
    assert emu.count("POST", r"/v1/hf/api/datasets/.+/commit/main") >= 2  # run splits + ICL dataset

    # Deployments: the base NIM was deployed by DMS and torn down at the end; nothing is left serving it.
    assert emu.count("POST", "/v1/deployment/model-deployments") == 1
    if deployment_deletes is not None:
        assert emu.count("DELETE", r"/v1/deployment/model-deployments/.+") == deployment_deletes
    assert not cand.teardown_errors and not cand.leaked_resources, (cand.teardown_errors, cand.leaked_resources)
    assert emu.deployments == {}
    assert BASE not in nim.models

    # The job store has the final document.
    store = open_jobstore(settings)
    try:
        stored = store.get(doc.id)
    finally:
        store.close()
    assert stored is not None and stored.status == RunStatus.completed


# -- tests ---------------------------------------------------------------------------------------
async def test_flywheel_run_on_nemo_v1_emulator(client: Client, emu: NemoV1Emulator, nim: ScriptedOpenAI,
                                                tmp_path: Path) -> None:
    settings = make_settings(tmp_path, emu, nim, client)
    async with orchestrator(client, settings, activities=True):
        job_id, handle = await start_run(client, settings)
        doc = await asyncio.wait_for(handle.result(), 60)
    assert_completed_run(doc, emu, nim, settings, job_id, handle.id)


async def _wait(predicate: Any, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def customize_attempts(client: Client, wf_id: str) -> list[int]:
    """Attempt numbers of the customize activity's started events in the candidate's history."""
    history = await client.get_workflow_handle(candidate_workflow_id(wf_id, BASE)).fetch_history()
    scheduled = {e.event_id for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                 and e.activity_task_scheduled_event_attributes.activity_type.name == "customize"}
    return [e.activity_task_started_event_attributes.attempt for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
            and e.activity_task_started_event_attributes.scheduled_event_id in scheduled]


async def test_activity_worker_sigkilled_during_customization(client: Client, emu: NemoV1Emulator,
                                                              nim: ScriptedOpenAI, tmp_path: Path) -> None:
    # A Customizer job that runs for a while (one script step per status poll, ~0.05 s apart).
    emu.customization_script = (
        [{"status": "created"}, {"status": "pending"}]
        + [{"status": "running", "percentage_done": float(i), "epochs_completed": i // 50, "steps_completed": i}
           for i in range(1, 100)]
        + [{"status": "completed", "percentage_done": 100.0, "epochs_completed": 2, "steps_completed": 100,
            "train_loss": 0.2}])
    settings = make_settings(tmp_path, emu, nim, client)
    settings_path = tmp_path / "settings.json"
    settings_path.write_text(settings.model_dump_json())
    log = tmp_path / "worker.log"
    first = spawn_activity_worker(WORKER_MODULE, settings_path, log)
    second = None
    try:
        async with orchestrator(client, settings, activities=False):
            job_id, handle = await start_run(client, settings)
            # Kill while the customize activity is polling the (running) Customizer job.
            await _wait(lambda: any(j.step >= 10 for j in jobs(emu, "customization")), 60,
                        f"the customization job to be polled (worker log: {log})")
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            (cjob,) = jobs(emu, "customization")
            steps_at_kill = cjob.step
            assert cjob.state["status"] == "running" and not cjob.cancelled  # a SIGKILL cancels nothing remotely
            second = spawn_activity_worker(WORKER_MODULE, settings_path, log)
            doc = await asyncio.wait_for(handle.result(), 60)
            attempts = await customize_attempts(client, handle.id)
    finally:
        stop_process(first)
        stop_process(second)
    assert_completed_run(doc, emu, nim, settings, job_id, handle.id)
    # The retried customize attempt (new process) re-attached to the SAME remote job and polled it to the end.
    assert attempts == [2], attempts  # history records the started event of the final attempt only
    (cjob,) = jobs(emu, "customization")
    assert cjob.step > steps_at_kill and cjob.state["status"] == "completed"
    assert emu.count("POST", "/v1/customization/jobs") == 1
    assert emu.count("POST", "/v1/customization/configs") == 1
    assert emu.count("POST", "/v1/evaluation/jobs") == len(EVAL_TYPES)


def long_running(kind: str, steps: int) -> list[dict[str, Any]]:
    """A job script that stays ``running`` for ``steps`` status reads (~0.05 s apart) before it completes."""
    if kind == "customization":
        running = [{"status": "running", "percentage_done": float(i), "epochs_completed": i * 2 // steps,
                    "steps_completed": i} for i in range(1, steps)]
        done = {"status": "completed", "percentage_done": 100.0, "epochs_completed": 2, "steps_completed": steps,
                "train_loss": 0.2}
    else:
        running = [{"status": "running", "progress": float(i)} for i in range(1, steps)]
        done = {"status": "completed", "progress": 100.0}
    return [{"status": "created"}, {"status": "pending"}, *running, done]


@pytest.mark.slow  # ~40 s on a loaded machine; the default lane has tests/workflow/test_activity_cancel.py
async def test_worker_sigterm_during_customize_and_evaluate_keeps_remote_jobs(
        client: Client, emu: NemoV1Emulator, nim: ScriptedOpenAI, tmp_path: Path) -> None:
    """A rolling deploy (SIGTERM) while customize and base/icl evaluate poll their remote jobs: nothing is
    cancelled remotely, and the retried attempts on the next worker re-attach to the SAME jobs."""
    emu.customization_script = long_running("customization", 120)
    emu.eval_script = long_running("evaluation", 60)
    settings = make_settings(tmp_path, emu, nim, client)
    settings_path = tmp_path / "settings.json"
    settings_path.write_text(settings.model_dump_json())
    log = tmp_path / "worker.log"
    first = spawn_activity_worker(WORKER_MODULE, settings_path, log)
    second = None
    loop = asyncio.get_running_loop()
    try:
        async with orchestrator(client, settings, activities=False):
            job_id, handle = await start_run(client, settings)
            await _wait(lambda: any(j.step >= 10 for j in jobs(emu, "customization"))
                        and len(jobs(emu, "evaluation")) >= 2
                        and all(j.step >= 3 for j in jobs(emu, "evaluation")), 60,
                        f"customization and two evaluations to be polled (worker log: {log})")
            first.send_signal(signal.SIGTERM)  # graceful shutdown: the SDK cancels the running activities
            first.wait(15)
            t_term = loop.time()
            assert first.returncode is not None
            live = {j.id: j.step for j in emu.jobs.values()}
            assert not any(j.cancelled for j in emu.jobs.values())
            assert emu.count("POST", r"/v1/(customization|evaluation)/jobs/.+/cancel") == 0
            second = spawn_activity_worker(WORKER_MODULE, settings_path, log)
            await _wait(lambda: all(emu.jobs[i].step > s for i, s in live.items()), 60,
                        "the new worker to poll every job again")
            recovered_s = loop.time() - t_term
            doc = await asyncio.wait_for(handle.result(), 90)
            attempts = await customize_attempts(client, handle.id)
    finally:
        stop_process(first)
        stop_process(second)
    assert_completed_run(doc, emu, nim, settings, job_id, handle.id)
    assert attempts == [2], attempts
    # Never cancelled, never created twice: exactly one remote job per customization / eval type.
    assert emu.count("POST", r"/v1/(customization|evaluation)/jobs/.+/cancel") == 0
    assert not any(j.cancelled for j in emu.jobs.values())
    assert emu.count("POST", "/v1/customization/jobs") == 1
    assert emu.count("POST", "/v1/evaluation/jobs") == len(EVAL_TYPES)
    print(f"SIGTERM recovery: every remote job polled again {recovered_s:.2f}s after the old worker exited")
