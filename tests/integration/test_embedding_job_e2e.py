"""embedding_job end to end: a real Temporal dev server, the real workflows and activities, the SQLite
stores, the real all-MiniLM-L6-v2 fine-tuned for a few steps and evaluated through the local embeddings
server. Slow lane."""

from __future__ import annotations

import uuid
from itertools import islice
from pathlib import Path

import psutil
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

pytest.importorskip("sentence_transformers", reason="the 'local' extra (sentence-transformers) is not installed")

from flywheel.config import Settings
from flywheel.ingest import load_jsonl
from flywheel.jobdoc import JobDocument, NimStatus, RunStatus
from flywheel.jobstore import open_jobstore
from flywheel.logstore import open_logstore
from tests.helpers.temporal_workers import flywheel_workers
from workflows.flywheel_run import FlywheelRun
from workflows.models import FlywheelJobInput, flywheel_workflow_id

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
DATA = Path(__file__).resolve().parents[2] / "data"
EVAL_SIZE = 40


def settings_for(tmp_path: Path, client: Client) -> Settings:
    uid = uuid.uuid4().hex[:8]
    return Settings(
        platform={"kind": "local", "data_dir": str(tmp_path)},
        logstore={"kind": "sqlite", "path": str(tmp_path / "logs.sqlite")},
        jobstore={"kind": "sqlite", "path": str(tmp_path / "jobs.sqlite")},
        temporal={"address": client.service_client.config.target_host, "review_timeout_s": 0,
                  "task_queues": {"orchestrator": f"orch-{uid}", "cpu": f"cpu-{uid}", "gpu": f"gpu-{uid}"}},
        data_split_config={"eval_size": EVAL_SIZE, "val_ratio": 0.1, "min_total_records": 50, "limit": 250},
        embedding_config={"num_negatives": 1, "training": {"max_steps": 3, "batch_size": 8, "learning_rate": 1e-4,
                                                           "checkpoint_every_steps": 2, "max_seq_length": 96}},
    )


def embedding_server_pids() -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if "flywheel.platforms.local.embedding_server" in " ".join(p.info["cmdline"] or [])]


async def test_embedding_job_scores_base_and_fine_tuned_minilm(tmp_path: Path, temporal_env: WorkflowEnvironment):
    client = temporal_env.client
    settings = settings_for(tmp_path, client)
    lines = list(islice((DATA / "primary_assistant-aiva-kb.jsonl").read_text().splitlines(), 250))
    with open_logstore(settings) as store:
        assert load_jsonl(lines, store, workload_id="primary_assistant", client_id="aiva-kb").loaded > 230
    servers_before = set(embedding_server_pids())
    job_id = uuid.uuid4().hex[:8]
    inp = FlywheelJobInput(job_id=job_id, workload_id="primary_assistant", client_id="aiva-kb", settings=settings,
                           job_type="embedding_job", review_timeout_s=0)
    async with flywheel_workers(client, settings, ["orchestrator", "cpu", "gpu"]):
        handle = await client.start_workflow(
            FlywheelRun.run, inp, id=flywheel_workflow_id("primary_assistant", "aiva-kb", job_id),
            task_queue=settings.temporal.task_queues.orchestrator, result_type=JobDocument)
        doc = await handle.result()

    assert doc.status == RunStatus.completed, doc.error
    assert doc.job_type == "embedding_job" and doc.manifest_hash
    assert {d.split for d in doc.datasets} >= {"eval", "train", "val", "corpus"}
    assert "icl-eval" in doc.not_applicable
    (nim,) = doc.nims
    assert nim.model_name == "all-MiniLM-L6-v2" and nim.status == NimStatus.completed, nim.error
    evals = {e.eval_type: e for e in nim.evaluations}
    assert set(evals) == {"base-eval", "customized-eval"}
    for ev in evals.values():
        assert ev.error is None and ev.num_records >= EVAL_SIZE
        for metric in ("recall_at_5", "ndcg_at_10", "mrr_at_10", "production_agreement_at_10"):
            lo, hi = ev.confidence_intervals[metric]
            assert 0 <= lo <= ev.scores[metric] <= hi <= 1
    (cust,) = nim.customizations
    assert cust.status == "completed" and cust.steps_completed == 3 and cust.loss is not None
    assert Path(cust.checkpoint, "config.json").is_file()  # the fine-tuned model directory that was served
    assert nim.gate and nim.gate["metric"] == "ndcg_at_10" and "reference_score" in nim.gate
    assert set(embedding_server_pids()) - servers_before == set()  # served for the evaluation only
    stored = open_jobstore(settings).get(job_id)
    assert stored is not None and stored.nim("all-MiniLM-L6-v2").evaluation("customized-eval").scores == \
        evals["customized-eval"].scores
