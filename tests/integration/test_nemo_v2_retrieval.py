"""NemoV2Platform's ``embedding_job`` path against the REAL NeMo Platform services (``-m nemo_platform``).

The candidate is the scripted OpenAI server with a toy embedding model; NeMo's Evaluator runs a
``retrieve-eval`` job over the BEIR fileset we upload, calls the candidate's ``/v1/embeddings`` and returns
per-query rankings and scores. CROSS-CHECK: NeMo's per-query nDCG and recall equal ours on the very rankings it
produced, and the scores equal what our evaluator computes on the same endpoint. Embedding customization is
unavailable (no GPU execution provider) and says why.
"""

from __future__ import annotations

import json
import uuid

import pytest

from flywheel.config import Settings
from flywheel.platforms.nemo_v2 import NemoV2Platform, NemoV2Timing, job_name
from flywheel.retrieval.candidates import EndpointEmbedder
from flywheel.retrieval.corpus import Corpus
from flywheel.retrieval.evaluate import INTERVAL_METHOD, evaluate_embedder
from flywheel.retrieval.metrics import query_metrics
from flywheel.retrieval.nemo_formats import query_ids
from flywheel.retrieval.types import CORPUS_SPLIT, EmbeddingCustomizationSpec, MiningSpec, RetrievalEvalSpec
from flywheel.types import CapabilityUnavailable
from tests.emulators.nemo_v1_retriever import toy_embedder
from tests.emulators.openai_scripted import ScriptedOpenAI
from tests.helpers.retrieval_sample import kb_prepared

pytestmark = pytest.mark.nemo_platform
EMB = "toy-embed"


@pytest.fixture
def candidate():
    server = ScriptedOpenAI(models=[EMB], embedder=toy_embedder()).start()
    yield server
    server.stop()


async def test_real_platform_retriever_eval_matches_our_metrics(nemo_platform, candidate, tmp_path):
    ws = f"fw{uuid.uuid4().hex[:8]}"
    settings = Settings(platform={"kind": "nemo_v2", "data_dir": str(tmp_path)},
                        nmp_config={"nemo_base_url": nemo_platform, "nim_base_url": candidate.root_url,
                                    "nmp_namespace": ws},
                        embedding_config={"candidates": [{"model_name": EMB}]})
    platform = NemoV2Platform(settings, NemoV2Timing(poll_interval_s=1.0, eval_timeout_s=300))
    prepared = kb_prepared(n=60, eval_size=12)
    try:
        refs = await platform.put_retrieval_datasets("run-r", {**prepared.splits, CORPUS_SPLIT: prepared.corpus})
        assert refs["eval"].uri.startswith((tmp_path / "artifacts").as_uri())  # our copy: the artifact store
        assert refs["eval"].platform_uri == refs[CORPUS_SPLIT].platform_uri == f"{ws}/run-r-beir"
        assert await platform.read_dataset(refs[CORPUS_SPLIT]) == prepared.corpus

        spec = RetrievalEvalSpec(name="wf-r-toy-embed-base-eval", eval_type="base-eval",
                                 candidate=settings.embedding_config.candidates[0], eval=refs["eval"],
                                 corpus=refs[CORPUS_SPLIT], retrieval=settings.embedding_config)
        progress: list[dict] = []
        result = await platform.evaluate_retrieval(spec, progress.append)
        assert progress[-1]["status"] == "completed" and result.nmp_uri.endswith(f"/jobs/{job_name(spec.name)}")
        assert result.num_queries == 12 and result.interval_method == INTERVAL_METHOD
        for metric in ("recall_at_1", "recall_at_5", "ndcg_at_10", "mrr_at_10", "production_agreement_at_10"):
            lo, hi = result.confidence_intervals[metric]
            assert 0 <= lo <= result.scores[metric] <= hi <= 1, metric
        assert len(candidate.embedding_requests) > 0

        # The same scores as our evaluator on the same endpoint (exact search in process).
        ours = evaluate_embedder(EndpointEmbedder(candidate.base_url, EMB), prepared.splits["eval"],
                                 Corpus.from_rows(prepared.corpus), ks=settings.embedding_config.ks)
        for metric, value in ours.scores.items():
            assert result.scores[metric] == pytest.approx(value, abs=1e-9), metric

        # CROSS-CHECK, query by query: NeMo's pytrec_eval nDCG/recall on its ranking == ours on that ranking.
        path = platform.job_path(job_name(spec.name), "retrieve-eval")
        rows = [json.loads(line) for line in
                (await platform._call("GET", f"{path}/results/row-scores/download")).text.splitlines() if line]
        by_qid = {r["item"]["query_id"]: r for r in rows}
        for qid, row in zip(query_ids(prepared.splits["eval"]), prepared.splits["eval"]):
            scored = by_qid[qid]
            scores = scored["sample"]["retrieval_scores"]
            mine = query_metrics(sorted(scores, key=lambda p: -scores[p]), row["positive_ids"], [1, 5, 10])
            theirs = {m["name"]: m["value"] for ms in scored["metrics"].values() for m in ms}
            for k in (1, 5, 10):
                assert theirs[f"ndcg_cut_{k}"] == pytest.approx(mine[f"ndcg_at_{k}"], abs=1e-6), (qid, k)
                assert theirs[f"recall_{k}"] == pytest.approx(mine[f"recall_at_{k}"], abs=1e-6), (qid, k)
        assert json.loads(result.notes["nemo_means"])["ndcg_cut_10"] == pytest.approx(result.scores["ndcg_at_10"])

        # A retried activity attaches to the finished job: same scores, no second job.
        asked = len(candidate.embedding_requests)
        again = await platform.evaluate_retrieval(spec)
        assert again.scores == result.scores and len(candidate.embedding_requests) == asked

        # No embedding training on this platform: mining, fine-tuning and a customized eval say why.
        candidate_cfg = settings.embedding_config.candidates[0]
        for call in (platform.mine_triplets(MiningSpec(name="m", candidate=candidate_cfg, train=refs["train"],
                                                       corpus=refs[CORPUS_SPLIT],
                                                       retrieval=settings.embedding_config)),
                     platform.customize_embedding(EmbeddingCustomizationSpec(
                         name="c", candidate=candidate_cfg, triplets=refs["train"],
                         retrieval=settings.embedding_config, output_model="x")),
                     platform.evaluate_retrieval(spec.model_copy(update={"name": "wf-r-cust",
                                                                         "customized_model_dir": "x"}))):
            with pytest.raises(CapabilityUnavailable, match="bi_encoder recipe, which runs on a GPU"):
                await call
    finally:
        await platform.close()
