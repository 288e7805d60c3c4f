"""NeMo Platform (v2) for an ``embedding_job``: the Evaluator's ``retrieve-eval`` jobs; no embedding training.

What NeMo Platform 0.6 offers (read in its source, then run against the local services):

* ``POST /apis/evaluator/v2/workspaces/{ws}/retrieve-eval/jobs {name, spec: {dataset, target, k}}``: ``dataset``
  is a fileset (``ws/fileset``) holding a BEIR test split (``corpus.jsonl``, ``queries.jsonl``,
  ``qrels/test.tsv``); ``target`` an embedding endpoint (``{embeddings: {url, name}, first_stage_k}``; it
  is called at ``<url>/embeddings`` with ``input_type`` ``query`` / ``passage``); ``k`` the cut-offs. The job
  ranks the corpus by dense search (``first_stage_k`` passages per query) and scores nDCG, recall,
  precision and MAP at every k with pytrec_eval. Status, cancel and results use the same routes as
  ``evaluate`` jobs.
* Results: ``aggregate-scores`` (``retrieval-ndcg.ndcg_cut_10`` ... means), ``eval-results`` (the same means
  by measure) and ``row-scores``: one line per query with ``item.query_id``, the candidate's ranking
  (``sample.retrieval_scores``: passage id -> score, best ``first_stage_k``) and the per-query values.
* Because the per-query rankings come back, the rankings are scored by our evaluator of record
  (:func:`~flywheel.retrieval.evaluate.score_rankings`): every metric, MRR and production agreement included,
  with bootstrap intervals, exactly as on the local platform. NeMo's own means are kept in the notes, and
  the cross-check test asserts its per-query nDCG and recall equal ours.
* Embedding fine-tuning exists (the Automodel ``bi_encoder`` recipe) but runs only on a GPU execution
  provider (a container image on Docker or Kubernetes), which the local services do not have:
  :data:`NO_EMBEDDING_TRAINING`.

This module never imports :mod:`flywheel.platforms.nemo_v2` (that one imports this): the platform hands in
itself (its HTTP calls and job polling) and the job name.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from flywheel.artifacts.datasets import StoredDatasets
from flywheel.retrieval.evaluate import INTERVAL_METHOD, RetrievalEvalResult, score_rankings
from flywheel.retrieval.nemo_formats import beir_files, query_ids
from flywheel.retrieval.types import CORPUS_SPLIT, RetrievalEvalSpec
from flywheel.types import CapabilityUnavailable, DatasetRef, PlatformError, ProgressFn
from flywheel.vocabulary import SplitName

COLLECTION = "retrieve-eval"
FIRST_STAGE_K = 100  # the job's default dense-search depth; deeper when a cut-off asks for it
NO_EMBEDDING_TRAINING = (
    "NeMo Platform 0.6 fine-tunes embedding models only with its Automodel bi_encoder recipe, which runs on a GPU "
    "execution provider (a container image on Docker or Kubernetes); the local NeMo Platform services have none, so "
    "embedding customization (and mining triplets for it) is unavailable there")


def ranking(retrieval_scores: Mapping[str, float]) -> list[str]:
    """Passage ids best first (ties: by id, so the order is deterministic)."""
    return sorted(retrieval_scores, key=lambda pid: (-float(retrieval_scores[pid]), pid))


class RetrievalV2:
    def __init__(self, platform: Any, stored: StoredDatasets) -> None:
        self.p = platform  # a NemoV2Platform: upload_fileset, read_fileset, create_job_once, wait_job, _call
        self.stored = stored

    async def put(self, run_key: str, splits: Mapping[str, Iterable[dict[str, Any]]]) -> dict[str, DatasetRef]:
        """The artifact store keeps every split; eval + corpus also go to a BEIR fileset for the Evaluator."""
        rows = {split: list(r) for split, r in splits.items()}
        refs = await self.stored.put(run_key, rows)
        if SplitName.eval in rows and CORPUS_SPLIT in rows:
            files = await asyncio.to_thread(beir_files, rows[SplitName.eval], rows[CORPUS_SPLIT])
            fileset = await self.p.upload_fileset(f"{run_key}-beir", files)
            for split in (SplitName.eval, CORPUS_SPLIT):
                refs[split] = refs[split].model_copy(update={"platform_uri": fileset})
        return refs

    async def read(self, ref: DatasetRef) -> list[dict[str, Any]]:
        if self.stored.holds(ref):
            return await self.stored.read(ref)
        return await self.p.read_fileset(ref)

    def job_body(self, spec: RetrievalEvalSpec, job: str) -> dict[str, Any]:
        if spec.customized_model_dir:
            raise CapabilityUnavailable(NO_EMBEDDING_TRAINING)
        if spec.candidate.api_key_env:
            raise PlatformError(f"{spec.candidate.model_name}: nemo_v2 passes an endpoint key to its jobs only as a "
                                f"platform secret, which the flywheel does not create; api_key_env is not supported "
                                f"here", retryable=False, error_type="ConfigError")
        if not spec.eval.platform_uri:
            raise PlatformError(f"eval dataset {spec.eval.name} has no BEIR fileset (platform_uri): it was not stored "
                                f"by nemo_v2's put_retrieval_datasets", retryable=False, error_type="DatasetNotFound")
        url = spec.candidate.url or f"{self.p.settings.nmp_config.nim_base_url.rstrip('/')}/v1"
        ks = spec.retrieval.ks
        return {"name": job, "description": f"flywheel {spec.eval_type} {spec.candidate.model_name}"[:255],
                "custom_fields": {"flywheel_name": spec.name, "eval_type": spec.eval_type},
                "spec": {"dataset": spec.eval.platform_uri, "k": list(ks),
                         "target": {"embeddings": {"url": url, "name": spec.candidate.model_name},
                                    "first_stage_k": max(FIRST_STAGE_K, max(ks))}}}

    async def evaluate(self, spec: RetrievalEvalSpec, job: str, progress: ProgressFn | None) -> RetrievalEvalResult:
        t0 = time.monotonic()
        await self.p.create_job_once(COLLECTION, job, self.job_body(spec, job))
        uri = await self.p.wait_job(COLLECTION, job, progress)
        path = self.p.job_path(job, COLLECTION)
        resp = await self.p._call("GET", f"{path}/results/row-scores/download")
        scored = {str(r["item"]["query_id"]): r for r in map(json.loads, resp.text.splitlines()) if r}
        nemo_means = (await self.p._call("GET", f"{path}/results/eval-results/download")).json()
        eval_rows = await self.read(spec.eval)
        missing = [qid for qid in query_ids(eval_rows) if qid not in scored]
        if missing:
            raise PlatformError(f"retrieve-eval job {job} returned no ranking for {len(missing)} eval queries "
                                f"(e.g. {missing[:3]})", retryable=False, error_type="JobFailed",
                                details={"job_id": job})
        rankings = [ranking(scored[qid]["sample"]["retrieval_scores"]) for qid in query_ids(eval_rows)]
        result = await asyncio.to_thread(score_rankings, spec.candidate.model_name, eval_rows, rankings,
                                         corpus_size=spec.corpus.num_records, ks=spec.retrieval.ks)
        result.notes = {"scored_by": "our retrieval metrics over the rankings the NeMo Evaluator's retrieve-eval job "
                                     "returned per query",
                        "nemo_means": json.dumps(nemo_means, sort_keys=True), "nmp_uri": uri}
        result.interval_method = INTERVAL_METHOD
        result.nmp_uri = uri
        result.timings = {"runtime_s": round(time.monotonic() - t0, 2)}
        return result
