"""The ``embedding_job`` flywheel end to end on NeMo Microservices v1: a full FlywheelRun (job_type embedding_job)
on a REAL Temporal dev server with the REAL activities, ``platform.kind = nemo_v1`` against the contract emulator
(tests/emulators/nemo_v1_emulator.py + nemo_v1_retriever.py; every response validated with the SDK's own types),
the embedding NIM being the scripted OpenAI server with toy embedding models, and a SQLite log store loaded with
the first 120 records of the shipped retrieval sample.

retrieval logs → corpus snapshot + splits (artifact store) + BEIR copy (Datastore) → base-eval (Evaluator
``retriever`` job) → triplets mined through the NIM (artifact store + Customizer dataset) → Customizer embedding
job → the fine-tuned model deployed by DMS → customized-eval (Evaluator) → deployment deleted → job document with
aggregate scores and the note that NeMo reports no per-query scores (so no intervals). Default lane, ~15 s.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from flywheel.config import Settings
from flywheel.jobdoc import JobDocument, NimStatus, RunStatus
from flywheel.jobstore import open_jobstore
from flywheel.platforms.nemo_v1.datasets import repo_name
from flywheel.retrieval.nemo_formats import AGGREGATE_ONLY
from tests.emulators.nemo_v1_emulator import NemoV1Emulator
from tests.emulators.nemo_v1_retriever import toy_embedder
from tests.emulators.openai_scripted import ScriptedOpenAI
from tests.helpers.retrieval_sample import KB_CLIENT, KB_WORKLOAD, load_kb_logs
from tests.helpers.temporal_workers import flywheel_workers
from workflows.flywheel_run import FlywheelRun
from workflows.models import ActivityTimeouts, FlywheelJobInput, candidate_workflow_id, flywheel_workflow_id

EMB = "nvidia/llama-3.2-nv-embedqa-1b-v2"
NS = "dfwbp"
NUM_RECORDS, EVAL_SIZE = 120, 25
TIMEOUTS = ActivityTimeouts(deploy_heartbeat_s=3, evaluate_heartbeat_s=5, customize_heartbeat_s=5,
                            short_start_to_close_s=30, retry_initial_interval_s=0.2, retry_max_interval_s=1.0,
                            max_attempts=3)


@pytest.fixture
def nim():
    server = ScriptedOpenAI(models=[EMB], embedder=toy_embedder()).start()  # the base embedding NIM
    yield server
    server.stop()


def make_settings(tmp_path: Path, emu: NemoV1Emulator, nim: ScriptedOpenAI, client: Client) -> Settings:
    uid = uuid.uuid4().hex[:8]
    return Settings(
        platform={"kind": "nemo_v1", "data_dir": str(tmp_path)},
        temporal={"address": client.service_client.config.target_host, "review_timeout_s": 0,
                  "task_queues": {"orchestrator": f"orch-{uid}", "cpu": f"cpu-{uid}", "gpu": f"gpu-{uid}"}},
        nmp_config={"nemo_base_url": emu.url, "datastore_base_url": emu.url, "nim_base_url": nim.root_url,
                    "nmp_namespace": NS, "poll_interval_s": 0.05, "pending_timeout_s": 30},
        data_split_config={"eval_size": EVAL_SIZE, "val_ratio": 0.15, "min_total_records": 20},
        embedding_config={"candidates": [{"model_name": EMB, "customizer_configs": {
            "target": "nvidia/llama-3.2-nv-embedqa-1b@v2", "nim_image": "nvcr.io/nim/nvidia/llama-3.2-nv-embedqa-1b-v2",
            "nim_tag": "1.6.0"}}], "training": {"max_steps": 5}},
    )


async def test_embedding_job_on_nemo_v1_emulator(temporal_env: WorkflowEnvironment, emu: NemoV1Emulator,
                                                 nim: ScriptedOpenAI, tmp_path: Path) -> None:
    client = temporal_env.client
    settings = make_settings(tmp_path, emu, nim, client)
    assert load_kb_logs(settings, NUM_RECORDS) >= NUM_RECORDS - 5  # the sample holds a few malformed records
    job_id = uuid.uuid4().hex[:8]
    inp = FlywheelJobInput(job_id=job_id, workload_id=KB_WORKLOAD, client_id=KB_CLIENT, settings=settings,
                           job_type="embedding_job", review_timeout_s=0, timeouts=TIMEOUTS)
    wf_id = flywheel_workflow_id(KB_WORKLOAD, KB_CLIENT, job_id)
    async with flywheel_workers(client, settings, ["orchestrator", "cpu"]):
        handle = await client.start_workflow(FlywheelRun.run, inp, id=wf_id,
                                             task_queue=settings.temporal.task_queues.orchestrator,
                                             result_type=JobDocument)
        doc = await asyncio.wait_for(handle.result(), 90)

    assert doc.status == RunStatus.completed, doc.error
    assert doc.job_type == "embedding_job" and "icl-eval" in doc.not_applicable
    datasets = {d.split: d for d in doc.datasets}
    assert set(datasets) == {"eval", "train", "val", "corpus"}
    assert datasets["eval"].nmp_uri == datasets["corpus"].nmp_uri == f"hf://datasets/{NS}/{repo_name(wf_id + '-beir')}"
    artifacts = (tmp_path / "artifacts").as_uri()
    assert datasets["train"].nmp_uri == f"{artifacts}/datasets/{wf_id}/train.jsonl"  # no remote copy needed
    assert datasets["eval"].num_records == EVAL_SIZE

    (cand,) = doc.nims
    assert cand.model_name == EMB and cand.status == NimStatus.completed, cand.error
    evals = {e.eval_type: e for e in cand.evaluations}
    assert set(evals) == {"base-eval", "customized-eval"}
    for ev in evals.values():
        assert ev.error is None and ev.num_records == EVAL_SIZE
        assert ev.nmp_uri and ev.nmp_uri.startswith(f"{emu.url}/v1/evaluation/jobs/eval-")
        assert 0 < ev.scores["ndcg_at_10"] <= 1 and ev.scores["recall_at_5"] is not None
        assert ev.scores["mrr_at_10"] is not None and "recall_at_1" not in ev.scores
        assert ev.confidence_intervals == {} and ev.score_notes["intervals"] == AGGREGATE_ONLY
        assert "production_agreement_at_10" in ev.score_notes
    assert evals["customized-eval"].scores["ndcg_at_10"] > evals["base-eval"].scores["ndcg_at_10"]

    customized = f"{NS}/customized-{EMB.replace('/', '-')}@{job_id}"
    (cust,) = cand.customizations
    assert cust.status == "completed" and cust.customized_model == customized, cust.error
    assert cust.mining["train"]["triplets"] > 0 and cust.training["finetuning_type"] == "all_weights"
    # The same gate as an llm_job, against the production retriever's own nDCG@10 on its logged rankings.
    production = doc.curation["production_scores"]["ndcg_at_10"]
    assert 0 < production <= 1 and doc.gate["threshold"] == pytest.approx(production - 0.05)
    verdicts = {v["eval_type"]: v for v in doc.gate["verdicts"]}
    assert set(verdicts) == {"base-eval", "customized-eval"}
    for v in verdicts.values():  # each verdict is what its interval says about the floor
        low, high = v["interval"]
        expected = "pass" if low >= v["threshold"] else "fail" if high < v["threshold"] else "inconclusive"
        assert v["verdict"] == expected and v["n"] == EVAL_SIZE
    assert cand.gate["metric"] == "ndcg_at_10" and cand.gate["eval_type"] == "customized-eval"
    assert cand.gate["reference_score"] == production

    # One Customizer job on the mined triplets, two Evaluator retriever jobs, one DMS deployment, deleted.
    (cjob,) = [j for j in emu.jobs.values() if j.kind == "customization"]
    mine_repo = repo_name(f"{candidate_workflow_id(wf_id, EMB)}-mine")
    assert cjob.body["dataset"] == {"name": mine_repo, "namespace": NS} and cjob.body["output_model"] == customized
    assert set(emu.repos[f"{NS}/{mine_repo}"]) == {"training/training.jsonl", "validation/validation.jsonl"}
    assert emu.count("POST", "/v1/customization/jobs") == 1 and emu.count("POST", "/v1/evaluation/jobs") == 2
    (dep,) = emu.deployment_requests
    assert dep["config"]["model"] == customized and dep["config"]["nim_deployment"]["disable_lora_support"]
    assert emu.deployments == {} and customized not in nim.models

    store = open_jobstore(settings)
    try:
        stored = store.get(doc.id)
    finally:
        store.close()
    assert stored is not None and stored.status == RunStatus.completed
