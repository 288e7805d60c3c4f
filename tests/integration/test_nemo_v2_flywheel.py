"""The FLYWHEEL end to end on the REAL NeMo Platform (v2): a full FlywheelRun on a REAL Temporal dev server with
the REAL activities and ``platform.kind = nemo_v2`` against the local NeMo Platform services (``nemo_platform``
fixture, tests/integration/conftest.py: skips naming what is missing when ``.venv-nemo`` is absent).

Datasets go to filesets, the candidate (the scripted OpenAI server) is registered as a model provider and
reached through the inference gateway, and base-eval / icl-eval are executed by NeMo's Evaluator. The platform
has no training backend here, so customization is reported *unavailable* in the job document (customization
error + customized-eval error) — the run does not crash and completes with the two other evaluations.

The LLM judge is ``deployment_type: local``: the run deploys it through the platform as it deploys the
candidates (a provider for ``nim_base_url``, reached through the inference gateway), the Evaluator's
``llm-judge`` metric asks it, the gate decides on its ``tool_calling_correctness``, and the provider is
torn down at the end (the job document's ``llm_judge`` says so).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from flywheel.artifacts import open_artifact_store
from flywheel.config import Settings
from flywheel.jobdoc import JobDocument, NimStatus, RunStatus
from flywheel.platforms.nemo_v2 import NO_TRAINING, entity_name, job_name
from flywheel.report import fmt_score
from tests.emulators.openai_scripted import ScriptedOpenAI, echo_first_tool
from tests.helpers.sample_logs import (
    NUM_SAMPLE_RECORDS,
    SAMPLE_CLIENT,
    SAMPLE_WORKLOAD,
    last_user,
    load_sample_logs,
    logged_answers,
)
from tests.helpers.scripted_judge import JUDGE_MODEL, judge_message
from tests.helpers.temporal_workers import flywheel_workers
from workflows.flywheel_run import FlywheelRun
from workflows.models import ActivityTimeouts, FlywheelJobInput, candidate_workflow_id, flywheel_workflow_id

pytestmark = pytest.mark.nemo_platform

MODEL = "cand-model"
EVAL_SIZE = 10
TIMEOUTS = ActivityTimeouts(deploy_heartbeat_s=30, evaluate_heartbeat_s=30, customize_heartbeat_s=30,
                            short_start_to_close_s=60, retry_initial_interval_s=0.5, retry_max_interval_s=2.0,
                            max_attempts=3)


def make_responder() -> Any:
    """Answers like production for about half the queries (deterministically), else calls the first tool."""
    answers = logged_answers()

    def responder(body: dict[str, Any]) -> dict[str, Any]:
        if body.get("model") == JUDGE_MODEL:
            return judge_message(body)
        query = last_user(body.get("messages") or [])
        calls = answers.get(query)
        if calls and hashlib.sha256(query.encode()).digest()[0] % 2 == 0:
            return {"role": "assistant", "content": None, "tool_calls": calls}
        return echo_first_tool(body)

    return responder


@pytest.fixture
def candidate():
    server = ScriptedOpenAI(models=[MODEL, JUDGE_MODEL], responder=make_responder()).start()
    yield server
    server.stop()


async def test_flywheel_run_on_real_nemo_platform(nemo_platform: str, candidate: ScriptedOpenAI,
                                                  temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    client: Client = temporal_env.client
    uid = uuid.uuid4().hex[:8]
    ws = f"fw{uid}"
    settings = Settings(
        platform={"kind": "nemo_v2", "data_dir": str(tmp_path)},
        temporal={"address": client.service_client.config.target_host, "review_timeout_s": 0,
                  "task_queues": {"orchestrator": f"orch-{uid}", "cpu": f"cpu-{uid}", "gpu": f"gpu-{uid}"}},
        nmp_config={"nemo_base_url": nemo_platform, "nim_base_url": candidate.root_url, "nmp_namespace": ws,
                    "poll_interval_s": 0.5},
        nims=[{"model_name": MODEL, "context_length": 8192, "customization_enabled": True}],
        data_split_config={"eval_size": EVAL_SIZE, "val_ratio": 0.1, "min_total_records": 20},
        evaluation={"concurrency": 4, "request_timeout_s": 30, "max_retries": 1},
        llm_judge_config={"deployment_type": "local", "model_name": JUDGE_MODEL},
        gate={"metric": "tool_calling_correctness"},
    )
    load_sample_logs(settings)
    job_id = uuid.uuid4().hex[:8]
    wf_id = flywheel_workflow_id(SAMPLE_WORKLOAD, SAMPLE_CLIENT, job_id)
    async with flywheel_workers(client, settings, ["orchestrator", "cpu"]):
        handle = await client.start_workflow(
            FlywheelRun.run,
            FlywheelJobInput(job_id=job_id, workload_id=SAMPLE_WORKLOAD, client_id=SAMPLE_CLIENT, settings=settings,
                             review_timeout_s=0, timeouts=TIMEOUTS),
            id=wf_id, task_queue=settings.temporal.task_queues.orchestrator, result_type=JobDocument)
        doc = await asyncio.wait_for(handle.result(), 400)

    assert doc.status == RunStatus.completed, doc.error
    assert doc.num_records == NUM_SAMPLE_RECORDS
    cand = doc.nim(MODEL)
    assert cand.status == NimStatus.completed, cand.error
    evals = {e.eval_type: e for e in cand.evaluations}
    assert set(evals) == {"base-eval", "icl-eval", "customized-eval"}

    # base-eval and icl-eval: scored by NeMo's Evaluator (job URIs on the platform), over the eval split.
    cand_wf = candidate_workflow_id(wf_id, MODEL)
    for eval_type in ("base-eval", "icl-eval"):
        ev = evals[eval_type]
        assert ev.error is None, ev.error
        assert ev.num_records == EVAL_SIZE
        assert 0.0 < ev.scores["function_name"] <= 1.0
        assert ev.scores["function_name_and_args_accuracy"] is not None
        assert ev.nmp_uri == f"{nemo_platform}/apis/evaluator/v2/workspaces/{ws}/evaluate/jobs/" \
                             f"{job_name(f'{cand_wf}-{eval_type}')}"
        status = httpx.get(f"{ev.nmp_uri}/status", timeout=10).json()
        assert status["status"] == "completed"
    assert evals["base-eval"].scores["function_name_and_args_accuracy"] < 1.0  # the candidate misses some

    # The judge: deployed by the run through the platform, asked by the Evaluator, torn down at the end.
    assert doc.llm_judge is not None
    assert (doc.llm_judge.model_name, doc.llm_judge.type, doc.llm_judge.deployment_status.value,
            doc.llm_judge.error) == (JUDGE_MODEL, "local", "completed", None)
    judge_provider = httpx.get(f"{nemo_platform}/apis/models/v2/workspaces/{ws}/providers/"
                               f"{entity_name(f'{wf_id}-judge')}", timeout=10)
    assert judge_provider.status_code == 404, judge_provider.text
    assert len([r for r in candidate.requests if r.get("model") == JUDGE_MODEL]) >= 2 * EVAL_SIZE
    for eval_type in ("base-eval", "icl-eval"):
        judged = evals[eval_type].scores["tool_calling_correctness"]
        assert judged is not None and 0.0 <= judged <= 1.0, evals[eval_type].score_notes
        assert evals[eval_type].scores["similarity"] is None
    # The scripted judge says 1 exactly when the calls equal the logged ones (arguments compared parsed):
    # what function_name_and_args_accuracy counts on these records.
    assert evals["base-eval"].scores["tool_calling_correctness"] == \
        pytest.approx(evals["base-eval"].scores["function_name_and_args_accuracy"])
    # The gate decided on the judge's score, and the report shows it.
    assert doc.gate is not None and doc.gate["metric"] == "tool_calling_correctness"
    arms = {v["eval_type"]: v for v in doc.gate["verdicts"] if v["model_name"] == MODEL}
    assert arms["base-eval"]["agreement"] == pytest.approx(evals["base-eval"].scores["tool_calling_correctness"])
    assert arms["base-eval"]["n"] == EVAL_SIZE
    report = open_artifact_store(settings).read_bytes(doc.report_uri).decode()
    # Results table: function_name, name+args (± CI), then the judge's column.
    judge_cell = re.escape(fmt_score(evals["base-eval"].scores["tool_calling_correctness"]))
    assert "<th>judge</th>" in report
    assert re.search(r'<td class="num">[^<]*</td>\s*<td class="num">[^<]*</td>\s*<td class="num">'
                     + judge_cell + "</td>", report), report[:3000]
    print(f"\nnemo_v2 run: judge base-eval {evals['base-eval'].scores['tool_calling_correctness']:.3f}, "
          f"icl-eval {evals['icl-eval'].scores['tool_calling_correctness']:.3f}; "
          f"gate base-eval {arms['base-eval']['verdict']} ({arms['base-eval']['reason']})")

    # Customization: reported unavailable in the job document, not a crash.
    (cust,) = cand.customizations
    assert cust.status == "unavailable" and NO_TRAINING in (cust.error or ""), cust
    assert cust.customized_model is None
    assert evals["customized-eval"].scores == {}
    assert "customization unavailable" in (evals["customized-eval"].error or "")

    # Datasets were uploaded as a fileset; the provider ("deployment") was torn down at the end.
    assert {d.split for d in doc.datasets} == {"eval", "train", "val"}
    assert all(d.nmp_uri.startswith(f"{ws}/") for d in doc.datasets)
    files = httpx.get(f"{nemo_platform}/apis/files/v2/workspaces/{ws}/filesets/{entity_name(wf_id)}", timeout=10)
    assert files.status_code == 200, files.text
    provider = httpx.get(f"{nemo_platform}/apis/models/v2/workspaces/{ws}/providers/{entity_name(f'{cand_wf}-base')}",
                         timeout=10)
    assert provider.status_code == 404, provider.text
    # The candidate really answered the Evaluator (through the inference gateway), for both evaluations.
    assert len([r for r in candidate.requests if r.get("model") == MODEL]) >= 2 * EVAL_SIZE
