import pytest

from flywheel.config import NIMConfig, Settings
from flywheel.platforms.base import Platform
from flywheel.platforms.local import LocalPlatform
from flywheel.platforms.local.platform import adapter_file
from flywheel.types import Endpoint, PlatformError


@pytest.fixture
def platform(tmp_path):
    return LocalPlatform(Settings.model_validate({"platform": {"data_dir": str(tmp_path / "data")}}))


def test_is_a_platform(platform):
    assert isinstance(platform, Platform) and platform.kind == "local"


def test_adapter_file_forms(tmp_path):
    adapter = tmp_path / "adapter.gguf"
    adapter.write_bytes(b"x")
    assert adapter_file(str(adapter)) == adapter
    assert adapter_file(adapter.as_uri()) == adapter
    (tmp_path / "other.gguf").write_bytes(b"y")
    assert adapter_file(str(tmp_path)) == adapter  # adapter.gguf preferred in a directory
    with pytest.raises(PlatformError, match="not found") as err:
        adapter_file(str(tmp_path / "missing.gguf"))
    assert err.value.error_type == "AdapterNotFound" and not err.value.retryable


def test_adapter_directory_must_be_unambiguous(tmp_path):
    for name in ("a.gguf", "b.gguf"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(PlatformError, match="exactly one"):
        adapter_file(str(tmp_path))


async def test_deploy_without_source_is_permanent_error(platform):
    with pytest.raises(PlatformError) as err:
        await platform.deploy(NIMConfig(model_name="m"), "dep")
    assert err.value.error_type == "ModelSourceMissing" and not err.value.retryable


async def test_gone_endpoint_without_redeploy_info(platform):
    endpoint = Endpoint(deployment_name="dep", model_name="m", served_model="m", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(PlatformError) as err:
        await platform.ensure_serving(endpoint)
    assert err.value.error_type == "EndpointGone"


async def test_teardown_of_unknown_deployment_is_tolerated(platform):
    endpoint = Endpoint(deployment_name="never-deployed", model_name="m", served_model="m", base_url="http://x/v1")
    await platform.teardown(endpoint)


async def test_evaluations_of_one_deployment_take_turns(platform, monkeypatch, tmp_path):
    """A llama.cpp server serves one request at a time: concurrent evals would measure queueing."""
    import asyncio

    import flywheel.evaluator
    from flywheel.types import DatasetRef, EvalResult, EvalSpec

    active, overlaps, seen_concurrency = [0], [0], []

    async def fake_evaluate(spec, rows, *, predictions_path, progress=None):
        active[0] += 1
        overlaps[0] = max(overlaps[0], active[0])
        seen_concurrency.append(spec.concurrency)
        await asyncio.sleep(0.05)
        active[0] -= 1
        return EvalResult(eval_type=spec.eval_type, num_records=len(rows), scores={})

    async def serving(endpoint, progress=None):
        return endpoint

    async def no_rows(ref):
        return []

    monkeypatch.setattr(flywheel.evaluator, "evaluate", fake_evaluate)
    monkeypatch.setattr(platform, "ensure_serving", serving)
    monkeypatch.setattr(platform, "read_dataset", no_rows)
    endpoint = Endpoint(deployment_name="dep", model_name="m", served_model="m", base_url="http://x/v1")
    ref = DatasetRef(name="d", split="eval", uri="file:///nope", num_records=0)
    specs = [EvalSpec(name=f"e{i}", eval_type="base-eval", dataset=ref, endpoint=endpoint, concurrency=8)
             for i in range(3)]
    await asyncio.gather(*(platform.evaluate(s) for s in specs))
    assert overlaps[0] == 1 and seen_concurrency == [1, 1, 1]


async def test_an_endpoint_embedding_candidate_is_not_fine_tuned_locally(platform):
    from flywheel.retrieval.config import EmbeddingCandidateConfig, RetrievalConfig
    from flywheel.retrieval.types import EmbeddingCustomizationSpec
    from flywheel.types import DatasetRef

    candidate = EmbeddingCandidateConfig(model_name="nvidia/e", url="http://nim/v1", customizer_configs={
        "target": "nvidia/e@v2", "nim_image": "nvcr.io/nim/nvidia/e"})
    triplets = DatasetRef(name="t", split="triplets", uri="file:///nowhere/t.jsonl", num_records=1)
    spec = EmbeddingCustomizationSpec(name="wf-c", candidate=candidate, triplets=triplets,
                                      retrieval=RetrievalConfig(), output_model="o")
    with pytest.raises(PlatformError, match="local weights") as err:
        await platform.customize_embedding(spec)  # refused before reading any dataset (it does not exist)
    assert err.value.error_type == "TrainingConfigError" and not err.value.retryable
