"""An ``embedding_job``'s datasets (corpus snapshot, splits, mined triplets) go through the artifact store on every
platform, over ``file://`` and ``s3://`` (moto's S3 server over real HTTP): the local platform keeps them there
only; NeMo Microservices (v1, against its contract emulator) keeps them there AND uploads the copies its jobs read.
Reads are sha256-checked, so a dataset changed behind the run's back is refused."""

from __future__ import annotations

import pytest

from flywheel.artifacts import open_artifact_store
from flywheel.config import Settings
from flywheel.retrieval.types import CORPUS_SPLIT, TRIPLETS_SPLIT
from flywheel.types import PlatformError
from tests.helpers.retrieval_sample import kb_prepared

EMB = "nvidia/llama-3.2-nv-embedqa-1b-v2"


@pytest.fixture(params=["file", "s3"])
def artifacts(request, tmp_path) -> dict:
    if request.param == "file":
        return {"root": (tmp_path / "shared-artifacts").as_uri()}
    return request.getfixturevalue("s3_root")


@pytest.fixture(scope="module")
def prepared():
    return kb_prepared(n=80, eval_size=15)


@pytest.fixture
def nemo(tmp_path):
    pytest.importorskip("nemo_microservices", reason="the 'nemo' extra (NeMo Microservices SDK) is not installed")
    from tests.emulators.nemo_v1_emulator import NemoV1Emulator
    from tests.emulators.nemo_v1_retriever import toy_embedder
    from tests.emulators.openai_scripted import ScriptedOpenAI

    nim = ScriptedOpenAI(models=[EMB], embedder=toy_embedder()).start()
    emu = NemoV1Emulator(nim).start()
    yield emu, nim
    emu.stop()
    nim.stop()


def platform_for(kind: str, tmp_path, artifacts: dict, nemo=None):
    overrides: dict = {"platform": {"kind": kind, "data_dir": str(tmp_path / "data")}, "artifacts": artifacts,
                       "embedding_config": {"candidates": [{"model_name": EMB}]}}
    if nemo:
        emu, nim = nemo
        overrides["nmp_config"] = {"nemo_base_url": emu.url, "datastore_base_url": emu.url,
                                   "nim_base_url": nim.root_url, "poll_interval_s": 0.02}
    settings = Settings(**overrides)
    if kind == "local":
        from flywheel.platforms.local import LocalPlatform

        return settings, LocalPlatform(settings)
    from flywheel.platforms.nemo_v1 import NemoV1Platform

    return settings, NemoV1Platform(settings)


async def check_round_trip(settings: Settings, platform, prepared) -> dict:
    splits = {**prepared.splits, CORPUS_SPLIT: prepared.corpus}
    refs = await platform.put_retrieval_datasets("wf-r", splits)
    assert await platform.put_retrieval_datasets("wf-r", splits) == refs  # a retried activity: same refs
    store = open_artifact_store(settings)
    for split, rows in splits.items():
        assert refs[split].uri == store.uri(f"datasets/wf-r/{split}.jsonl")
        assert store.exists(f"datasets/wf-r/{split}.jsonl")
        assert await platform.read_dataset(refs[split]) == rows
    return refs


async def test_local_platform_keeps_retrieval_datasets_in_the_artifact_store(tmp_path, artifacts, prepared):
    settings, platform = platform_for("local", tmp_path, artifacts)
    try:
        refs = await check_round_trip(settings, platform, prepared)
    finally:
        await platform.close()
    assert all(ref.platform_uri is None for ref in refs.values())


async def test_nemo_v1_keeps_them_in_the_artifact_store_and_uploads_job_copies(tmp_path, artifacts, prepared, nemo):
    emu, _ = nemo
    settings, platform = platform_for("nemo_v1", tmp_path, artifacts, nemo)
    try:
        refs = await check_round_trip(settings, platform, prepared)
        triplets = [{"query": "q", "pos_doc": "a", "neg_doc": ["b"], "pos_id": "p", "neg_ids": ["n"]}]
        mined = await platform.put_retrieval_datasets("wf-r-mine", {TRIPLETS_SPLIT: triplets})
        assert await platform.read_dataset(mined[TRIPLETS_SPLIT]) == triplets  # our full rows
        assert set(emu.repos["dfwbp/wf-r-mine"]) == {"training/training.jsonl"}
        assert refs["eval"].platform_uri == "hf://datasets/dfwbp/wf-r-beir"

        # Changed behind the run's back (same key, other bytes): the read refuses it.
        store = open_artifact_store(settings)
        store.put("datasets/wf-r/eval.jsonl", b'{"query": "tampered"}\n')
        with pytest.raises(PlatformError) as err:
            await platform.read_dataset(refs["eval"])
        assert err.value.error_type == "DatasetIntegrityError"
    finally:
        await platform.close()
