"""NemoV1Platform's ``embedding_job`` path against the NeMo Microservices v1 contract emulator: datasets in the
artifact store plus their Datastore copies (BEIR files, Customizer triplets), hard-negative mining through the
NIM's embeddings, the Customizer's embedding fine-tuning and the Evaluator's retriever jobs.

Fast, default lane. The emulator validates every response with the SDK's own types and scores retriever jobs
with our retrieval metrics; the embedding NIM is the scripted OpenAI server with toy embedding models.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from flywheel.config import Settings
from flywheel.platforms.nemo_v1 import NemoV1Platform, NemoV1Timing
from flywheel.retrieval.candidates import EndpointEmbedder
from flywheel.retrieval.corpus import Corpus
from flywheel.retrieval.evaluate import evaluate_embedder
from flywheel.retrieval.nemo_formats import AGGREGATE_ONLY
from flywheel.retrieval.types import (
    CORPUS_SPLIT,
    TRIPLETS_SPLIT,
    VAL_TRIPLETS_SPLIT,
    EmbeddingCustomizationSpec,
    MiningSpec,
    RetrievalEvalSpec,
)
from flywheel.types import PlatformError
from tests.emulators.nemo_v1_retriever import toy_embedder
from tests.emulators.openai_scripted import ScriptedOpenAI
from tests.helpers.retrieval_sample import kb_prepared

EMB = "nvidia/llama-3.2-nv-embedqa-1b-v2"
NS = "dfwbp"
OUTPUT = "customized-nvidia-llama-3.2-nv-embedqa-1b-v2@wf-e"
TIMING = NemoV1Timing(poll_interval_s=0.02, pending_timeout_s=2, eval_timeout_s=20, customization_timeout_s=10,
                      deploy_timeout_s=5, adapter_timeout_s=5, request_timeout_s=20, read_retries=1)


@pytest.fixture(scope="module")
def prepared():
    return kb_prepared()


@pytest.fixture
def nim():
    server = ScriptedOpenAI(models=[EMB], embedder=toy_embedder()).start()
    yield server
    server.stop()


@pytest.fixture
def settings(emu, nim, tmp_path) -> Settings:
    return Settings(
        platform={"kind": "nemo_v1", "data_dir": str(tmp_path)},
        nmp_config={"nemo_base_url": emu.url, "datastore_base_url": emu.url, "nim_base_url": nim.root_url,
                    "nmp_namespace": NS},
        embedding_config={"candidates": [{"model_name": EMB, "customizer_configs": {
            "target": "nvidia/llama-3.2-nv-embedqa-1b@v2", "nim_image": "nvcr.io/nim/nvidia/llama-3.2-nv-embedqa-1b-v2",
            "nim_tag": "1.6.0"}}], "training": {"finetuning_type": "lora", "max_steps": 5}},
    )


@pytest.fixture
async def platform(settings):
    p = NemoV1Platform(settings, TIMING)
    yield p
    await p.close()


async def stored(platform, prepared):
    return await platform.put_retrieval_datasets("wf-e", {**prepared.splits, CORPUS_SPLIT: prepared.corpus})


def eval_spec(settings, refs, eval_type="base-eval", **kw) -> RetrievalEvalSpec:
    return RetrievalEvalSpec(name=f"wf-e-cand-{eval_type}", eval_type=eval_type,
                             candidate=settings.embedding_config.candidates[0], eval=refs["eval"],
                             corpus=refs[CORPUS_SPLIT], retrieval=settings.embedding_config, **kw)


def repo_rows(emu, repo: str, path: str) -> list[dict]:
    return [json.loads(line) for line in emu.repos[f"{NS}/{repo}"][path].decode().splitlines()]


# -- datasets ------------------------------------------------------------------------------------
async def test_datasets_go_to_the_artifact_store_and_a_beir_copy_to_the_datastore(platform, emu, prepared, tmp_path):
    refs = await stored(platform, prepared)
    again = await stored(platform, prepared)  # a retried activity
    assert again == refs
    root = (tmp_path / "artifacts").as_uri()
    for split in ("eval", "train", "val", CORPUS_SPLIT):
        assert refs[split].uri == f"{root}/datasets/wf-e/{split}.jsonl"
        assert await platform.read_dataset(refs[split]) == (prepared.corpus if split == CORPUS_SPLIT
                                                            else prepared.splits[split])
    beir = f"hf://datasets/{NS}/wf-e-beir"
    assert refs["eval"].platform_uri == refs[CORPUS_SPLIT].platform_uri == beir
    assert emu.datasets[f"{NS}/wf-e-beir"]["files_url"] == beir
    corpus = repo_rows(emu, "wf-e-beir", "corpus.jsonl")
    queries = repo_rows(emu, "wf-e-beir", "queries.jsonl")
    assert [d["_id"] for d in corpus] == [p["id"] for p in prepared.corpus]
    assert [q["text"] for q in queries] == [r["query"] for r in prepared.splits["eval"]]
    qrels = emu.repos[f"{NS}/wf-e-beir"]["qrels/test.tsv"].decode().splitlines()
    assert qrels[0] == "query-id\tcorpus-id\tscore"
    assert len(qrels) - 1 == sum(len(r["positive_ids"]) for r in prepared.splits["eval"])
    assert "train" not in {path.split("/")[0] for path in emu.repos.get(f"{NS}/wf-e", {})}  # raw rows stay ours


# -- evaluation ----------------------------------------------------------------------------------
async def test_base_retriever_eval_scores_equal_our_evaluator_and_say_there_are_no_intervals(
        platform, emu, nim, settings, prepared):
    refs = await stored(platform, prepared)
    progress: list[dict] = []
    result = await platform.evaluate_retrieval(eval_spec(settings, refs), progress.append)
    ours = evaluate_embedder(EndpointEmbedder(nim.base_url, EMB), prepared.splits["eval"],
                             Corpus.from_rows(prepared.corpus), ks=settings.embedding_config.ks)
    assert set(result.scores) == {"recall_at_5", "recall_at_10", "ndcg_at_5", "ndcg_at_10", "mrr_at_10"}
    for metric, value in result.scores.items():
        assert value == pytest.approx(ours.scores[metric], abs=1e-9), metric
    assert 0 < result.scores["ndcg_at_10"] < 1
    assert result.confidence_intervals == {} and result.interval_method == AGGREGATE_ONLY
    assert "recall_at_1" in result.notes and "production_agreement_at_10" in result.notes
    assert result.num_queries == len(prepared.splits["eval"]) and result.corpus_size == len(prepared.corpus)
    (job,) = emu.jobs.values()
    assert result.nmp_uri.endswith(f"/v1/evaluation/jobs/{job.id}") and progress[-1]["status"] == "completed"
    pipeline = job.body["target"]["retriever"]["pipeline"]
    assert pipeline["top_k"] == 10 and pipeline["query_embedding_model"]["api_endpoint"] == {
        "url": f"{nim.base_url}/embeddings", "model_id": EMB, "format": "nim", "api_key": ""}
    task = job.body["config"]["tasks"]["flywheel-retrieval"]
    assert task["dataset"]["files_url"] == f"hf://datasets/{NS}/wf-e-beir"
    assert set(task["metrics"]) == {"recall_5", "ndcg_cut_5", "recall_10", "ndcg_cut_10", "recip_rank"}


async def crash_then_retry(settings, call):
    """``call(platform, progress)`` on a worker that shuts down once the remote job runs (the attempt is cancelled,
    the job kept), then on a fresh worker: (the crashed attempt's progress, the retry's progress, its result)."""
    crashed = NemoV1Platform(settings, TIMING, cleanup_on_cancel=lambda: False)  # worker shutdown
    seen: list[dict] = []
    task = asyncio.create_task(call(crashed, seen.append))
    while not any(p.get("status") == "running" for p in seen):
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await crashed.close()
    retried = NemoV1Platform(settings, TIMING)
    progress: list[dict] = []
    try:
        result = await call(retried, progress.append)
    finally:
        await retried.close()
    assert progress[0]["status"] == "attached" and progress[0]["job_id"] == seen[0]["job_id"]
    return seen, progress, result


async def test_retriever_eval_retry_reattaches_to_the_same_job(settings, emu, prepared, platform):
    emu.eval_script = [{"status": "running", "progress": 10.0}] * 15 + [{"status": "completed", "progress": 100.0}]
    refs = await stored(platform, prepared)
    _, _, result = await crash_then_retry(
        settings, lambda p, progress: p.evaluate_retrieval(eval_spec(settings, refs), progress))
    assert emu.count("POST", "/v1/evaluation/jobs") == 1
    assert emu.count("POST", r"/v1/evaluation/jobs/.*/cancel") == 0 and result.scores["ndcg_at_10"] > 0


# -- mining and customization --------------------------------------------------------------------
async def mined(platform, settings, refs):
    return await platform.mine_triplets(MiningSpec(
        name="wf-e-cand-mine", candidate=settings.embedding_config.candidates[0], train=refs["train"],
        val=refs["val"], corpus=refs[CORPUS_SPLIT], retrieval=settings.embedding_config))


def cust_spec(settings, refs, name="wf-e-cand-customize") -> EmbeddingCustomizationSpec:
    return EmbeddingCustomizationSpec(name=name, candidate=settings.embedding_config.candidates[0],
                                      triplets=refs[TRIPLETS_SPLIT], val_triplets=refs[VAL_TRIPLETS_SPLIT],
                                      retrieval=settings.embedding_config, output_model=OUTPUT)


async def test_mining_embeds_through_the_nim_and_stores_customizer_triplets(platform, emu, nim, settings, prepared,
                                                                           tmp_path):
    out = await mined(platform, settings, await stored(platform, prepared))
    triplets = out.datasets[TRIPLETS_SPLIT]
    assert triplets.uri == f"{(tmp_path / 'artifacts').as_uri()}/datasets/wf-e-cand-mine/triplets.jsonl"
    ours = await platform.read_dataset(triplets)  # the artifact store keeps our full rows (ids, counts)
    assert len(ours) == out.counts["train"]["triplets"] > 0 and {"pos_id", "neg_ids"} <= set(ours[0])
    training = repo_rows(emu, "wf-e-cand-mine", "training/training.jsonl")
    assert training == [{"query": t["query"], "pos_doc": t["pos_doc"], "neg_doc": t["neg_doc"]} for t in ours]
    assert len(repo_rows(emu, "wf-e-cand-mine", "validation/validation.jsonl")) == out.counts["val"]["triplets"]
    assert triplets.name == "wf-e-cand-mine" and emu.datasets[f"{NS}/wf-e-cand-mine"]
    assert {r["input_type"] for r in nim.embedding_requests} == {"query", "passage"}


async def test_customization_then_customized_eval_served_by_a_dms_deployment(platform, emu, nim, settings, prepared):
    refs = await stored(platform, prepared)
    base = await platform.evaluate_retrieval(eval_spec(settings, refs))
    triplets = (await mined(platform, settings, refs)).datasets
    progress: list[dict] = []
    result = await platform.customize_embedding(cust_spec(settings, triplets), progress.append)
    model = f"{NS}/{OUTPUT}"
    assert result.adapter_uri == result.customized_model == model and result.steps_completed == 10
    assert result.details["nemo_finetuning_type"] == "lora_merged" and result.details["finetuning_type"] == "lora"
    (job,) = [j for j in emu.jobs.values() if j.kind == "customization"]
    assert job.body["dataset"] == {"name": "wf-e-cand-mine", "namespace": NS}
    assert job.body["hyperparameters"]["finetuning_type"] == "lora_merged"
    assert job.body["hyperparameters"]["max_steps"] == 5 and job.body["hyperparameters"]["lora"]["adapter_dim"] == 16
    assert job.body["dataset_parameters"] == {"num_hard_negatives": 3, "in_batch_negatives": True}
    config = emu.configs[job.body["config"]]
    assert config["target"] == "nvidia/llama-3.2-nv-embedqa-1b@v2"
    assert config["training_options"][0]["finetuning_type"] == "lora_merged"
    assert model in emu.models and model not in nim.models  # full weights: served only once deployed
    assert any(p.get("status") == "running" for p in progress)

    customized = await platform.evaluate_retrieval(eval_spec(settings, refs, "customized-eval",
                                                             customized_model_dir=model, served_name=OUTPUT))
    (dep_create,) = [c for c in emu.calls if c == ("POST", "/v1/deployment/model-deployments")]
    assert dep_create and not emu.deployments and model not in nim.models  # torn down after the evaluation
    assert emu.count("DELETE", r"/v1/deployment/model-deployments/.*") == 1
    evals = [j for j in emu.jobs.values() if j.kind == "evaluation"]
    assert evals[-1].body["target"]["retriever"]["pipeline"]["index_embedding_model"]["api_endpoint"]["model_id"] \
        == model
    assert customized.scores["ndcg_at_10"] > base.scores["ndcg_at_10"]  # the toy "fine-tuned" model ranks better


async def test_customized_model_is_deployed_with_the_embedding_nim_image_and_always_torn_down(
        platform, emu, settings, prepared):
    refs = await stored(platform, prepared)
    model = f"{NS}/{OUTPUT}"
    emu.models[model] = {"name": OUTPUT, "namespace": NS}
    emu.eval_script = [{"status": "failed", "message": "evaluation crashed"}]
    spec = eval_spec(settings, refs, "customized-eval", customized_model_dir=model, served_name=OUTPUT)
    with pytest.raises(PlatformError, match="evaluation crashed"):
        await platform.evaluate_retrieval(spec)
    (body,) = emu.deployment_requests
    assert body["config"] == {"model": model, "nim_deployment": {
        "image_name": "nvcr.io/nim/nvidia/llama-3.2-nv-embedqa-1b-v2", "image_tag": "1.6.0", "gpu": 1,
        "disable_lora_support": True}}
    assert not emu.deployments  # a failed evaluation still tears the deployment down

    emu.deployment_script = ["pending", ("failed", "ImagePullBackOff: no such image")]
    with pytest.raises(PlatformError) as err:
        await platform.evaluate_retrieval(spec.model_copy(update={"name": "wf-e-cand-customized-eval-2"}))
    assert err.value.error_type == "DeploymentFailed" and "ImagePullBackOff" in str(err.value)
    assert len(emu.deployment_requests) == 2 and not emu.deployments  # a failed deployment is removed too


async def test_customization_retry_reattaches_with_one_create(settings, emu, prepared, platform):
    emu.customization_script = [{"status": "running", "percentage_done": 10.0}] * 20 + [
        {"status": "completed", "percentage_done": 100.0, "epochs_completed": 1, "steps_completed": 5}]
    triplets = (await mined(platform, settings, await stored(platform, prepared))).datasets
    _, _, result = await crash_then_retry(
        settings, lambda p, progress: p.customize_embedding(cust_spec(settings, triplets), progress))
    assert emu.count("POST", "/v1/customization/jobs") == 1
    assert result.steps_completed == 5


async def test_cancel_by_name_cancels_a_live_embedding_customization(platform, emu, settings, prepared):
    emu.customization_script = [{"status": "running"}]
    triplets = (await mined(platform, settings, await stored(platform, prepared))).datasets
    seen: list[dict] = []
    task = asyncio.create_task(platform.customize_embedding(cust_spec(settings, triplets), seen.append))
    while not any(p.get("status") == "running" for p in seen):
        await asyncio.sleep(0.01)
    await platform.cancel("wf-e-cand-customize")
    with pytest.raises(PlatformError) as err:
        await task
    assert err.value.error_type == "JobCancelled"
    assert emu.count("POST", f"/v1/customization/jobs/{seen[0]['job_id']}/cancel") == 1


async def test_customization_without_customizer_configs_fails_before_creating_anything(platform, emu, settings,
                                                                                      prepared):
    triplets = (await mined(platform, settings, await stored(platform, prepared))).datasets
    spec = cust_spec(settings, triplets)
    spec = spec.model_copy(update={"candidate": spec.candidate.model_copy(update={"customizer_configs": None})})
    with pytest.raises(PlatformError) as err:
        await platform.customize_embedding(spec)
    assert err.value.error_type == "TrainingConfigError" and not err.value.retryable
    assert "customizer_configs" in str(err.value)
    assert emu.count("POST", "/v1/customization/.*") == 0
