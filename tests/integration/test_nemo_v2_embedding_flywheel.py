"""The ``embedding_job`` flywheel end to end on the REAL NeMo Platform (v2) (``-m nemo_platform``): a FlywheelRun
(job_type embedding_job) on a real Temporal dev server with the real activities against the local NeMo Platform
services. The corpus snapshot and splits go to the artifact store and a BEIR fileset; base-eval is a
``retrieve-eval`` job of NeMo's Evaluator, scored from its per-query rankings (with intervals); embedding
fine-tuning is reported *unavailable* (no GPU execution provider) and the run completes.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from flywheel.config import Settings
from flywheel.jobdoc import JobDocument, NimStatus, RunStatus
from flywheel.platforms.nemo_v2_retrieval import NO_EMBEDDING_TRAINING
from tests.emulators.nemo_v1_retriever import toy_embedder
from tests.emulators.openai_scripted import ScriptedOpenAI
from tests.helpers.retrieval_sample import KB_CLIENT, KB_WORKLOAD, load_kb_logs
from tests.helpers.temporal_workers import flywheel_workers
from workflows.flywheel_run import FlywheelRun
from workflows.models import ActivityTimeouts, FlywheelJobInput, flywheel_workflow_id

pytestmark = pytest.mark.nemo_platform
EMB = "toy-embed"
TIMEOUTS = ActivityTimeouts(deploy_heartbeat_s=30, evaluate_heartbeat_s=30, customize_heartbeat_s=30,
                            short_start_to_close_s=60, retry_initial_interval_s=0.5, retry_max_interval_s=2.0,
                            max_attempts=3)


@pytest.fixture
def candidate():
    server = ScriptedOpenAI(models=[EMB], embedder=toy_embedder()).start()
    yield server
    server.stop()


async def test_embedding_job_on_real_nemo_platform(nemo_platform, candidate, temporal_env: WorkflowEnvironment,
                                                   tmp_path: Path):
    client = temporal_env.client
    uid = uuid.uuid4().hex[:8]
    settings = Settings(
        platform={"kind": "nemo_v2", "data_dir": str(tmp_path)},
        temporal={"address": client.service_client.config.target_host, "review_timeout_s": 0,
                  "task_queues": {"orchestrator": f"orch-{uid}", "cpu": f"cpu-{uid}", "gpu": f"gpu-{uid}"}},
        nmp_config={"nemo_base_url": nemo_platform, "nim_base_url": candidate.root_url,
                    "nmp_namespace": f"fw{uid}", "poll_interval_s": 1.0},
        data_split_config={"eval_size": 15, "val_ratio": 0.15, "min_total_records": 20},
        embedding_config={"candidates": [{"model_name": EMB}]},
    )
    assert load_kb_logs(settings, 80) >= 75
    job_id = uuid.uuid4().hex[:8]
    inp = FlywheelJobInput(job_id=job_id, workload_id=KB_WORKLOAD, client_id=KB_CLIENT, settings=settings,
                           job_type="embedding_job", review_timeout_s=0, timeouts=TIMEOUTS)
    async with flywheel_workers(client, settings, ["orchestrator", "cpu"]):
        handle = await client.start_workflow(FlywheelRun.run, inp, id=flywheel_workflow_id(KB_WORKLOAD, KB_CLIENT,
                                                                                           job_id),
                                             task_queue=settings.temporal.task_queues.orchestrator,
                                             result_type=JobDocument)
        doc = await asyncio.wait_for(handle.result(), 400)

    assert doc.status == RunStatus.completed, doc.error
    (cand,) = doc.nims
    assert cand.status == NimStatus.completed, cand.error
    evals = {e.eval_type: e for e in cand.evaluations}
    base = evals["base-eval"]
    assert base.error is None and base.num_records == 15 and "/retrieve-eval/jobs/" in base.nmp_uri
    lo, hi = base.confidence_intervals["ndcg_at_10"]
    assert lo <= base.scores["ndcg_at_10"] <= hi and "mrr_at_10" in base.scores
    (cust,) = cand.customizations
    assert cust.status == "unavailable" and NO_EMBEDDING_TRAINING in cust.error
    assert evals["customized-eval"].error.startswith("customization unavailable")
    assert len(candidate.embedding_requests) > 0
