"""NemoV1Platform against the NeMo Microservices v1 contract emulator: every failure mode from the seeds.

Fast, default lane. The emulator validates every response with the SDK's own types; the candidate NIM and
the judge are a scripted OpenAI-compatible server.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from flywheel.config import LoRAConfig, Settings, TrainingConfig
from flywheel.metrics import aggregate, score_tool_calls, tool_keys
from flywheel.platforms.nemo_v1 import NemoV1Platform, NemoV1Timing
from flywheel.platforms.nemo_v1.customization import base_config_name
from flywheel.types import CustomizationSpec, EvalSpec, PlatformError
from tests.emulators.openai_scripted import ScriptedOpenAI

BASE = "meta/llama-3.2-1b-instruct"
NS = "dfwbp"
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}
ANSWERS = {"Paris": "Paris", "Rome": "Roma", "Oslo": "Oslo", "Lima": None}  # city asked → city the model answers


def call(name: str, args: dict) -> dict:
    return {"id": "c1", "type": "function", "function": {"name": name, "arguments": args}}


def rows() -> list[dict]:
    return [{"timestamp": 1.0, "workload_id": "w", "client_id": "c",
             "request": {"model": BASE, "messages": [{"role": "user", "content": f"weather in {city}"}],
                         "tools": [WEATHER]},
             "response": {"choices": [{"index": 0, "message": {"role": "assistant", "content": None,
                                                               "tool_calls": [call("get_weather", {"city": city})]}}]}}
            for city in ANSWERS]


def predicted_for(query: str) -> list[dict]:
    answer = ANSWERS[query.rsplit(maxsplit=1)[-1]]
    return [] if answer is None else [{"id": "p", "type": "function",
                                       "function": {"name": "get_weather", "arguments": json.dumps({"city": answer})}}]


def responder(body: dict) -> dict:
    if body["model"] == "judge":
        return {"role": "assistant", "content": "RATING: 1\nEXPLANATION: fine"}
    calls = predicted_for(body["messages"][-1]["content"])
    return {"role": "assistant", "content": None if calls else "I don't know",
            **({"tool_calls": calls} if calls else {})}


@pytest.fixture
def nim():
    server = ScriptedOpenAI(models=["judge"], responder=responder).start()
    yield server
    server.stop()


@pytest.fixture
def settings(emu, nim) -> Settings:
    return Settings(
        platform={"kind": "nemo_v1"},
        nmp_config={"nemo_base_url": emu.url, "datastore_base_url": emu.url, "nim_base_url": nim.root_url,
                    "nmp_namespace": NS},
        nims=[{"model_name": BASE, "customization_enabled": True, "tag": "1.8.3",
               "customizer_configs": {"target": f"{BASE}@2.0"}}],
        llm_judge_config={"deployment_type": "remote", "url": nim.base_url, "model_name": "judge"},
    )


TIMING = NemoV1Timing(poll_interval_s=0.02, pending_timeout_s=0.5, eval_timeout_s=10, customization_timeout_s=10,
                      deploy_timeout_s=5, adapter_timeout_s=5, request_timeout_s=10, read_retries=1)


@pytest.fixture
async def platform(settings):
    p = NemoV1Platform(settings, TIMING)
    yield p
    await p.close()


async def _eval_spec(platform, settings, name="wf-1-llama-base-eval", judge=True):
    refs = await platform.put_datasets("wf-1", {"eval": rows(), "train": rows(), "val": rows()[:2]})
    endpoint = await platform.deploy(settings.nims[0], "wf-1-llama")
    return refs, EvalSpec(name=name, eval_type="base-eval", dataset=refs["eval"], endpoint=endpoint,
                          judge=settings.llm_judge_config if judge else None)


def cust_spec(settings, refs, name="wf-1-llama-customization") -> CustomizationSpec:
    return CustomizationSpec(name=name, nim=settings.nims[0], train=refs["train"], val=refs.get("val"),
                             training=TrainingConfig(epochs=2), lora=LoRAConfig(), output_model="customized-llama@wf-1")


# -- datasets ------------------------------------------------------------------------------------
async def test_datasets_upload_register_read_idempotent(platform, emu):
    first = await platform.put_datasets("wf-1", {"eval": rows(), "train": rows()})
    again = await platform.put_datasets("wf-1", {"eval": rows(), "train": rows()})  # a retried activity
    assert first == again
    assert first["eval"].uri == f"hf://datasets/{NS}/wf-1/testing/eval.jsonl"
    assert first["train"].platform_uri == f"hf://datasets/{NS}/wf-1" and first["train"].num_records == 4
    assert emu.count("POST", "/v1/datasets") == 2 and len(emu.datasets) == 1  # 409 the second time → fine
    assert set(emu.repos[f"{NS}/wf-1"]) == {"testing/eval.jsonl", "training/train.jsonl"}
    assert await platform.read_dataset(first["eval"]) == json.loads(json.dumps(rows(), sort_keys=True))


# -- evaluation ----------------------------------------------------------------------------------
async def test_evaluation_inline_target_scores_equal_evaluator_of_record(platform, emu, settings):
    _refs, spec = await _eval_spec(platform, settings)
    progress: list[dict] = []
    result = await platform.evaluate(spec, progress.append)
    job = next(j for j in emu.jobs.values() if j.kind == "evaluation")
    assert job.body["target"]["model"]["api_endpoint"]["model_id"] == BASE  # inline: no Entity Store lookup (no 404)
    assert emu.count("GET", r"/v1/models/.*") == 0
    # pending is no failure
    assert [p["status"] for p in progress][1:] == ["created", "pending", "running", "completed"]
    assert all(p["job_id"] == job.id for p in progress)
    ours = [score_tool_calls(r["response"]["choices"][0]["message"]["tool_calls"],
                             predicted_for(r["request"]["messages"][-1]["content"]))
            for r in rows()]
    agg = aggregate(ours, [tool_keys(r["response"]["choices"][0]["message"]["tool_calls"]) for r in rows()])
    assert result.scores["function_name"] == pytest.approx(agg["function_name"]) == pytest.approx(0.75)
    assert (result.scores["function_name_and_args_accuracy"]
            == pytest.approx(agg["function_name_and_args_accuracy"]) == pytest.approx(0.5))
    assert result.scores["tool_calling_correctness"] == 1.0  # the judge task ran
    assert result.nmp_uri == f"{emu.url}/v1/evaluation/jobs/{job.id}" and result.num_records == 4


async def test_evaluation_registered_model_variant(settings, emu):
    p = NemoV1Platform(settings, TIMING, register_models=True)
    try:
        _refs, spec = await _eval_spec(p, settings, judge=False)
        result = await p.evaluate(spec)
        assert emu.count("POST", "/v1/models") == 1 and result.scores["tool_calling_correctness"] is None
        assert "no LLM judge" in result.score_notes["tool_calling_correctness"]
    finally:
        await p.close()


async def test_evaluation_retry_attaches_to_existing_job(platform, emu, settings):
    _refs, spec = await _eval_spec(platform, settings)
    first = await platform.evaluate(spec)
    second = await platform.evaluate(spec)
    assert emu.count("POST", "/v1/evaluation/jobs") == 1 and first.scores == second.scores


async def test_evaluation_failed_names_job_and_message(platform, emu, settings):
    emu.eval_script = [{"status": "running"}, {"status": "failed", "message": "500: Failed to delete secret"}]
    _refs, spec = await _eval_spec(platform, settings)
    with pytest.raises(PlatformError) as err:
        await platform.evaluate(spec)
    job_id = next(iter(emu.jobs))
    assert job_id in str(err.value) and "Failed to delete secret" in str(err.value)
    assert err.value.details["job_id"] == job_id and err.value.error_type == "JobFailed"


async def test_evaluation_unknown_state_is_reported_not_ignored(platform, emu, settings):
    emu.eval_script = [{"status": "running"}, {"status": "unknown"}, {"status": "unknown"}, {"status": "completed"}]
    _refs, spec = await _eval_spec(platform, settings)
    progress: list[dict] = []
    await platform.evaluate(spec, progress.append)
    unknown = [p for p in progress if p.get("unknown_state")]
    assert len(unknown) == 2 and unknown[0]["unknown_state"] == "unknown" and unknown[0]["job_id"]


async def test_evaluation_pending_forever_is_infrastructure_error(platform, emu, settings):
    emu.eval_script = [{"status": "pending", "message": "waiting for a GPU"}]
    _refs, spec = await _eval_spec(platform, settings)
    with pytest.raises(PlatformError) as err:
        await platform.evaluate(spec)
    assert err.value.error_type == "InfrastructureError" and err.value.retryable
    assert emu.count("POST", r"/v1/evaluation/jobs/eval-\w+/cancel") == 1  # doesn't leave it queued


# -- customization -------------------------------------------------------------------------------
async def test_customization_happy_path_waits_for_late_adapter(platform, emu, settings, nim):
    emu.adapter_delay_s = 0.3
    refs = await platform.put_datasets("wf-1", {"train": rows(), "val": rows()[:2]})
    progress: list[dict] = []
    result = await platform.customize(cust_spec(settings, refs), progress.append)
    assert result.customized_model == f"{NS}/customized-llama@wf-1" and result.customized_model in nim.models
    assert (result.epochs_completed, result.steps_completed, result.final_loss) == (2, 10, 0.25)
    job = next(j for j in emu.jobs.values() if j.kind == "customization")
    assert job.body["config"] == f"{NS}/{base_config_name(cust_spec(settings, refs))}"
    assert job.body["dataset"] == {"name": "wf-1", "namespace": NS}
    assert job.body["hyperparameters"]["lora"]["adapter_dim"] == 32
    assert all(p["job_id"] == job.id for p in progress)
    running = next(p for p in progress if p["status"] == "running")
    assert (running["progress"], running["epochs_completed"], running["steps_completed"]) == (50.0, 1, 5)
    assert any(p["status"] == "waiting-for-model" for p in progress)  # completed before the adapter was listed


async def test_customization_config_409_same_options_reused(platform, emu, settings):
    refs = await platform.put_datasets("wf-1", {"train": rows()})
    first = await platform.customization.ensure_config(cust_spec(settings, refs))
    second = await platform.customization.ensure_config(cust_spec(settings, refs))
    assert first == second == f"{NS}/{base_config_name(cust_spec(settings, refs))}"
    assert emu.count("POST", "/v1/customization/configs") == 2 and len(emu.configs) == 1


async def test_customization_config_409_other_options_gets_versioned_name(platform, emu, settings):
    refs = await platform.put_datasets("wf-1", {"train": rows()})
    spec = cust_spec(settings, refs)
    name = base_config_name(spec)
    # What the seed hit: the name exists (created by someone else) with other options.
    emu.configs[f"{NS}/{name}"] = {"name": name, "namespace": NS, "target": f"{BASE}@2.0", "max_seq_length": 8192,
                                   "training_options": [{"training_type": "sft", "finetuning_type": "lora",
                                                         "num_gpus": 1, "micro_batch_size": 1}]}
    chosen = await platform.customization.ensure_config(spec)
    assert chosen.startswith(f"{NS}/{name}-") and len(emu.configs) == 2
    assert await platform.customization.ensure_config(spec) == chosen  # stable on retry


async def test_customization_lost_create_response_finds_the_job(platform, emu, settings):
    emu.lose_next_create_response = True  # the job is stored, the response is a 500
    refs = await platform.put_datasets("wf-1", {"train": rows()})
    result = await platform.customize(cust_spec(settings, refs))
    assert emu.count("POST", "/v1/customization/jobs") == 1 and result.steps_completed == 10


async def test_customization_retry_after_worker_crash_reattaches(settings, emu):
    emu.customization_script = [{"status": "running", "percentage_done": 10.0}] * 20 + [
        {"status": "completed", "percentage_done": 100.0, "epochs_completed": 2, "steps_completed": 10}]
    crashed = NemoV1Platform(settings, TIMING, cleanup_on_cancel=lambda: False)  # worker shutdown: keep the job
    refs = await crashed.put_datasets("wf-1", {"train": rows()})
    seen: list[dict] = []
    task = asyncio.create_task(crashed.customize(cust_spec(settings, refs), seen.append))
    while not any(p["status"] == "running" for p in seen):
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await crashed.close()
    retried = NemoV1Platform(settings, TIMING)  # the activity's next attempt, on another worker
    progress: list[dict] = []
    try:
        result = await retried.customize(cust_spec(settings, refs), progress.append)
    finally:
        await retried.close()
    assert emu.count("POST", "/v1/customization/jobs") == 1  # exactly ONE create
    assert progress[0]["status"] == "attached" and progress[0]["job_id"] == seen[0]["job_id"]
    assert emu.count("POST", r"/v1/customization/jobs/.*/cancel") == 0 and result.epochs_completed == 2


async def test_customization_pending_forever_is_infrastructure_error_with_logs(platform, emu, settings):
    emu.customization_script = [{"status": "pending", "status_logs": [
        {"message": "The training job is pending",
         "detail": "0/3 nodes are available: Insufficient nvidia.com/gpu"}]}]
    refs = await platform.put_datasets("wf-1", {"train": rows()})
    with pytest.raises(PlatformError) as err:
        await platform.customize(cust_spec(settings, refs))
    assert err.value.error_type == "InfrastructureError" and "The training job is pending" in str(err.value)
    assert "Insufficient nvidia.com/gpu" in err.value.details["status_logs"][-1]
    job_id = err.value.details["job_id"]
    assert emu.count("POST", f"/v1/customization/jobs/{job_id}/cancel") == 1


@pytest.mark.parametrize("message,error_type", [("NotEnoughResources: no node has 1 GPU", "InfrastructureError"),
                                                ("KeyError: 'state'", "JobFailed")])
async def test_customization_failed_reports_job_and_status_logs(platform, emu, settings, message, error_type):
    emu.customization_script = [{"status": "running"}, {"status": "failed", "status_logs": [{"message": message}]}]
    refs = await platform.put_datasets("wf-1", {"train": rows()})
    with pytest.raises(PlatformError) as err:
        await platform.customize(cust_spec(settings, refs))
    job_id = next(j.id for j in emu.jobs.values() if j.kind == "customization")
    assert job_id in str(err.value) and message in str(err.value) and err.value.error_type == error_type


async def test_cancel_uses_the_correct_path_and_cleans_up(platform, emu, settings):
    emu.customization_script = [{"status": "running"}]
    refs = await platform.put_datasets("wf-1", {"train": rows()})
    seen: list[dict] = []
    task = asyncio.create_task(platform.customize(cust_spec(settings, refs), seen.append))
    while not any(p["status"] == "running" for p in seen):
        await asyncio.sleep(0.01)
    task.cancel()  # workflow cancelled → activity cancelled → remote job cancelled
    with pytest.raises(asyncio.CancelledError):
        await task
    job_id = seen[0]["job_id"]
    assert emu.count("POST", f"/v1/customization/jobs/{job_id}/cancel") == 1
    assert emu.count("POST", r"/v1/customizations/.*") == 0  # the seed's 404 path is never used
    assert emu.jobs[job_id].state["status"] == "cancelled"
    # Explicit Platform.cancel(name) on a live job uses the same endpoint.
    emu.customization_script = [{"status": "running"}]
    spec2 = cust_spec(settings, refs, name="wf-2-llama-customization")
    task = asyncio.create_task(platform.customize(spec2, None))
    while not any(j.body.get("custom_fields", {}).get("flywheel_name") == spec2.name and j.step
                  for j in emu.jobs.values()):
        await asyncio.sleep(0.01)
    await platform.cancel(spec2.name)
    with pytest.raises(PlatformError, match="cancelled"):
        await task


# -- deployment ----------------------------------------------------------------------------------
async def test_deploy_duplicate_500_means_exists_and_is_reused(platform, emu, settings, nim):
    import httpx

    body = {"name": "wf-1-llama", "namespace": NS, "config": {"model": BASE}}
    assert httpx.post(f"{emu.url}/v1/deployment/model-deployments", json=body).status_code == 200
    endpoint = await platform.deploy(settings.nims[0], "wf-1-llama")
    assert emu.count("POST", "/v1/deployment/model-deployments") == 1  # our GET found it; no second create
    assert endpoint.served_model == BASE and endpoint.base_url == f"{nim.root_url}/v1" and endpoint.details["managed"]
    # A create racing another creator gets the duplicate 500 → reuse, not failure.
    nim.remove_model(BASE)
    emu.deployment_script = ["pending", "ready"]
    racing = await platform.deployment._create(settings.nims[0], "wf-1-llama")
    assert racing is None and emu.count("POST", "/v1/deployment/model-deployments") == 2
    await platform.teardown(endpoint)
    await platform.teardown(endpoint)  # already gone: tolerated
    assert emu.count("DELETE", f"/v1/deployment/model-deployments/{NS}/wf-1-llama") == 2


async def test_deploy_failure_is_detected(platform, emu, settings):
    emu.deployment_script = ["pending", ("failed", "ImagePullBackOff: nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.3")]
    with pytest.raises(PlatformError) as err:
        await platform.deploy(settings.nims[0], "wf-1-llama")
    assert err.value.error_type == "DeploymentFailed" and "ImagePullBackOff" in str(err.value)


async def test_predeployed_nim_is_used_unmanaged(platform, emu, settings, nim):
    nim.add_model(BASE)  # a base NIM deployed by the NIM Operator
    endpoint = await platform.deploy(settings.nims[0], "wf-1-llama")
    assert emu.count("POST", "/v1/deployment/model-deployments") == 0 and not endpoint.details["managed"]
    await platform.teardown(endpoint)
    assert emu.count("DELETE", r"/v1/deployment/.*") == 0


async def test_customized_model_deploy_waits_for_adapter(platform, emu, settings, nim):
    import threading

    threading.Timer(0.2, nim.add_model, args=(f"{NS}/customized-llama@wf-1",)).start()
    seen: list[dict] = []
    endpoint = await platform.deploy(settings.nims[0], "wf-1-llama-custom", adapter_uri=f"{NS}/customized-llama@wf-1",
                                     progress=seen.append)
    assert endpoint.served_model == f"{NS}/customized-llama@wf-1" and seen and seen[0]["status"] == "waiting-for-model"


async def test_cancelled_deploy_placeholder_is_torn_down_under_its_remote_name(platform, emu, settings):
    """The workflow records Endpoint(deployment_name=<its name>, status="unknown") before deploying; a deploy
    that is then cancelled leaves a DMS deployment named deployment_name(<its name>). Teardown finds it."""
    from flywheel.platforms.nemo_v1.deployment import deployment_name
    from flywheel.types import Endpoint

    name = "flywheel-wl-cl-sched-2026-12-02T01-03-04Z-3f1a-cand-Meta-Llama-base"  # mixed case: DMS name differs
    emu.deployment_script = ["pending"] * 1000  # never ready
    deploying = asyncio.create_task(platform.deploy(settings.nims[0], name))
    for _ in range(200):
        if emu.deployments:
            break
        await asyncio.sleep(0.02)
    deploying.cancel()
    with pytest.raises(asyncio.CancelledError):
        await deploying
    assert deployment_name(name) != name and len(emu.deployments) == 1
    placeholder = Endpoint(deployment_name=name, model_name=BASE, served_model=BASE, base_url="", status="unknown")
    await platform.teardown(placeholder)
    assert emu.deployments == {}
    assert emu.count("DELETE", f"/v1/deployment/model-deployments/{NS}/{deployment_name(name)}") == 1
