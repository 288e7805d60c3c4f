"""End to end on the embedded stack's parts: a real Temporal dev server, the real workflows and
activities, the SQLite log/job stores, and a REAL model (Qwen2.5-Coder-0.5B, llama.cpp) evaluated on a
handful of records. Slow lane (`make test-slow`, which CI runs)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psutil
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from flywheel.config import Settings
from flywheel.jobdoc import JobDocument, NimStatus, RunStatus
from flywheel.jobstore import open_jobstore
from tests.helpers.sample_logs import load_sample_logs
from tests.helpers.temporal_workers import flywheel_workers
from workflows.flywheel_run import FlywheelRun
from workflows.models import FlywheelJobInput, flywheel_workflow_id

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

QWEN = "qwen2.5-coder-0.5b-instruct"
EVAL_SIZE = 5


def settings_for(tmp_path: Path, client: Client) -> Settings:
    uid = uuid.uuid4().hex[:8]
    return Settings(
        platform={"kind": "local", "data_dir": str(tmp_path)},
        temporal={"address": client.service_client.config.target_host, "review_timeout_s": 0,
                  "task_queues": {"orchestrator": f"orch-{uid}", "cpu": f"cpu-{uid}", "gpu": f"gpu-{uid}"}},
        nims=[{"model_name": QWEN, "context_length": 4096,
               "source": {"package": "qwen2.5-coder-0.5b-instruct-q4_k_m"}}],
        data_split_config={"eval_size": EVAL_SIZE, "val_ratio": 0.1, "min_total_records": 20, "limit": 60},
        icl_config={"max_examples": 2, "min_examples": 1, "reserved_tokens": 512},
        evaluation={"concurrency": 2, "max_tokens": 96},
    )


def model_server_pids() -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if "flywheel.platforms.local.model_server" in " ".join(p.info["cmdline"] or [])]


async def test_real_model_flywheel_run(tmp_path: Path, temporal_env: WorkflowEnvironment) -> None:
    client = temporal_env.client
    settings = settings_for(tmp_path, client)
    load_sample_logs(settings)
    servers_before = set(model_server_pids())
    job_id = uuid.uuid4().hex[:8]
    inp = FlywheelJobInput(job_id=job_id, workload_id="primary_assistant", client_id="aiva-1", settings=settings,
                           eval_types=["base-eval", "icl-eval"], review_timeout_s=0)
    async with flywheel_workers(client, settings, ["orchestrator", "cpu", "gpu"]):
        handle = await client.start_workflow(
            FlywheelRun.run, inp, id=flywheel_workflow_id("primary_assistant", "aiva-1", job_id),
            task_queue=settings.temporal.task_queues.orchestrator, result_type=JobDocument)
        doc = await handle.result()

    assert doc.status == RunStatus.completed, doc.error
    assert doc.num_records == 60 and doc.manifest_hash
    (nim,) = doc.nims
    assert nim.status == NimStatus.completed, nim.error
    evals = {e.eval_type: e for e in nim.evaluations}
    assert set(evals) == {"base-eval", "icl-eval"}
    for ev in evals.values():
        assert ev.error is None and ev.num_records == EVAL_SIZE
        assert ev.latency_p50_ms and ev.latency_p50_ms > 0 and ev.latency_p95_ms >= ev.latency_p50_ms
        predictions = [json.loads(line) for line in Path(ev.predictions_uri.removeprefix("file://")).read_text().splitlines()]
        assert len(predictions) == EVAL_SIZE and all(p.get("error") is None for p in predictions)
    # The real model makes real tool calls: some names right (the demo measures ~0.5 on 20 records).
    assert evals["base-eval"].scores["function_name"] > 0
    # The gate read the per-record scores stored with the predictions: base vs ICL is a paired test.
    (paired,) = doc.gate["paired"]
    assert {paired["a"], paired["b"]} == {f"{nim.model_name}/base-eval", f"{nim.model_name}/icl-eval"}
    assert paired["n_paired"] == EVAL_SIZE

    # Everything deployed was torn down, and the stored document matches the run's result.
    assert set(model_server_pids()) - servers_before == set()
    stored = open_jobstore(settings).get(job_id)
    assert stored is not None and stored.status == RunStatus.completed
    assert stored.nims[0].evaluation("base-eval").scores == evals["base-eval"].scores
