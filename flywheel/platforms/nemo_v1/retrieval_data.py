"""An ``embedding_job``'s datasets on NeMo Microservices v1, and hard-negative mining.

Every dataset (corpus snapshot, eval/train/val splits, triplets) is written to the **artifact store**
(:class:`~flywheel.artifacts.datasets.StoredDatasets`): that copy is what the flywheel reads back
(sha256-checked) and what survives the run. Besides, the Datastore gets what NeMo's jobs read:

* eval + corpus → one BEIR repo ``{run_key}-beir`` (``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``),
  registered as a dataset; the eval and corpus refs carry it as ``platform_uri`` (the Evaluator's
  ``files_url``);
* triplets + val_triplets → the Customizer's ``training/training.jsonl`` and ``validation/validation.jsonl``
  (``{query, pos_doc, neg_doc[]}``) in repo ``{run_key}``, registered under the refs' ``name``.

Mining runs in the worker: the candidate's base model embeds through its endpoint (the NIM at
``nim_base_url`` unless the candidate names its own ``url``), then :func:`~flywheel.retrieval.prepare.mine_datasets`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from flywheel.artifacts.datasets import StoredDatasets
from flywheel.platforms.nemo_v1.datasets import DatasetsV1, repo_name
from flywheel.retrieval.candidates import EndpointEmbedder
from flywheel.retrieval.config import EmbeddingCandidateConfig
from flywheel.retrieval.corpus import Corpus
from flywheel.retrieval.nemo_formats import beir_files, customizer_triplets
from flywheel.retrieval.prepare import mine_datasets
from flywheel.retrieval.types import CORPUS_SPLIT, TRIPLETS_SPLIT, VAL_TRIPLETS_SPLIT, MinedRefs, MiningSpec
from flywheel.types import DatasetRef, ProgressFn
from flywheel.vocabulary import SplitName

CUSTOMIZER_FILES = {TRIPLETS_SPLIT: "training/training.jsonl", VAL_TRIPLETS_SPLIT: "validation/validation.jsonl"}


def beir_key(run_key: str) -> str:
    return f"{run_key}-beir"


class RetrievalDataV1:
    def __init__(self, datasets: DatasetsV1, stored: StoredDatasets) -> None:
        self.datasets = datasets
        self.stored = stored
        self.c = datasets.c

    async def put(self, run_key: str, splits: Mapping[str, Iterable[dict[str, Any]]]) -> dict[str, DatasetRef]:
        rows = {split: list(r) for split, r in splits.items()}
        refs = await self.stored.put(run_key, rows)
        if SplitName.eval in rows and CORPUS_SPLIT in rows:
            files = await asyncio.to_thread(beir_files, rows[SplitName.eval], rows[CORPUS_SPLIT])
            beir = await self.datasets.upload(beir_key(run_key), files)
            for split in (SplitName.eval, CORPUS_SPLIT):
                refs[split] = refs[split].model_copy(update={"platform_uri": beir})
        triplets = {split: rows[split] for split in CUSTOMIZER_FILES if rows.get(split)}
        if TRIPLETS_SPLIT in triplets:
            files = {CUSTOMIZER_FILES[split]: customizer_triplets(r) for split, r in triplets.items()}
            uri = await self.datasets.upload(run_key, files)
            for split in triplets:
                refs[split] = refs[split].model_copy(update={"name": repo_name(run_key), "platform_uri": uri})
        return refs

    async def read(self, ref: DatasetRef) -> list[dict[str, Any]]:
        if self.stored.holds(ref):
            return await self.stored.read(ref)
        return await self.datasets.read(ref)

    def embedder(self, candidate: EmbeddingCandidateConfig) -> EndpointEmbedder:
        """The candidate's base model behind its endpoint (its own ``url``, else the NIM)."""
        if candidate.url:
            return EndpointEmbedder(candidate.url, candidate.model_name, candidate.api_key_env,
                                    asymmetric=candidate.asymmetric)
        # The NIM takes the platform's bearer token (the env var nmp_config.api_key_env names).
        return EndpointEmbedder(f"{self.c.nim_url}/v1", candidate.model_name, self.c.settings.nmp_config.api_key_env,
                                asymmetric=candidate.asymmetric)

    async def mine(self, spec: MiningSpec, progress: ProgressFn | None) -> MinedRefs:
        train = await self.read(spec.train)
        val = await self.read(spec.val) if spec.val else []
        corpus = Corpus.from_rows(await self.read(spec.corpus))
        if progress:
            progress({"phase": "mining", "train": len(train), "val": len(val), "corpus": len(corpus)})
        mined = await asyncio.to_thread(mine_datasets, self.embedder(spec.candidate), corpus, train, val,
                                        spec.retrieval)
        refs = await self.put(spec.name, {TRIPLETS_SPLIT: mined.train, VAL_TRIPLETS_SPLIT: mined.val})
        return MinedRefs(datasets=refs, counts=mined.counts, mining_seconds=mined.mining_seconds)
