"""The retrieval half of the NeMo Microservices v1 CONTRACT EMULATOR (tests/emulators/nemo_v1_emulator.py): what
the Evaluator does with a ``retriever`` job and what the Customizer checks of an embedding training dataset.

A ``retriever`` evaluation really evaluates: it reads the BEIR files (``corpus.jsonl``, ``queries.jsonl``,
``qrels/test.tsv``) from the emulated Datastore repo named by the task's ``files_url``, embeds the corpus with
the pipeline's ``index_embedding_model`` (``input_type: passage``) and the queries with its
``query_embedding_model`` (``input_type: query``) over HTTP, ranks with our exact index and scores with our
evaluator of record (:func:`flywheel.retrieval.metrics.query_metrics`); ``recip_rank`` is the reciprocal rank
within ``top_k``. Like the real service it reports aggregate scores only, under
``tasks.<task>.metrics.retriever.<measure>.scores.<measure>`` with empty ``stats``.

Also: toy embedding models for the scripted NIM (hashed bag of words; the "fine-tuned" one has more
dimensions, so fewer words collide and it ranks better), deterministic and fast.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from typing import Any

import httpx
import numpy as np

from flywheel.embeddings import l2_normalize
from flywheel.retrieval.index import ExactIndex
from flywheel.retrieval.metrics import query_metrics

MEASURE = re.compile(r"^(recall_\d+|ndcg_cut_\d+|recip_rank)$")
TRIPLET_FIELDS = {"query", "pos_doc", "neg_doc"}


# -- toy embedding models --------------------------------------------------------------------------
def hashed_bow(texts: list[str], dim: int) -> list[list[float]]:
    """Bag of words hashed into ``dim`` buckets, plus a tiny per-text offset so distinct texts never tie."""
    out = np.zeros((len(texts), dim), dtype=np.float64)
    for i, text in enumerate(texts):
        for token in re.findall(r"\w+", text.lower()):
            digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
            out[i, int.from_bytes(digest[:4], "little") % dim] += 1.0 if digest[4] % 2 else -1.0
        out[i, int(hashlib.sha256(text.encode()).hexdigest(), 16) % dim] += 1e-3
    return l2_normalize(out.astype(np.float32)).tolist()


def toy_embedder(base_dim: int = 24, tuned_dim: int = 512):
    """An ``embedder`` for :class:`~tests.emulators.openai_scripted.ScriptedOpenAI`: model ids containing
    ``customized-`` are the fine-tuned model (``tuned_dim`` buckets), every other id the base (``base_dim``)."""

    def embed(model: str, texts: list[str], input_type: str | None) -> list[list[float]]:
        return hashed_bow(texts, tuned_dim if "customized-" in model else base_dim)

    return embed


# -- Customizer: the embedding dataset's schema ----------------------------------------------------
def triplet_schema_errors(files: dict[str, bytes]) -> list[str]:
    """What the Customizer would reject in an embedding training repo (``training/*.jsonl`` rows must be
    ``{query, pos_doc, neg_doc[]}``)."""
    training = [path for path in files if path.startswith("training/") and path.endswith(".jsonl")]
    if not training:
        return ["no training/*.jsonl file"]
    errors = []
    for path in training + [p for p in files if p.startswith("validation/")]:
        for n, line in enumerate(files[path].decode().splitlines(), start=1):
            row = json.loads(line)
            if set(row) != TRIPLET_FIELDS or not isinstance(row["neg_doc"], list) or not row["neg_doc"]:
                errors.append(f"{path}:{n}: expected exactly {sorted(TRIPLET_FIELDS)} with a non-empty neg_doc list, "
                              f"got {sorted(row)}")
    return errors


# -- Evaluator: retriever jobs ---------------------------------------------------------------------
def config_errors(config: dict[str, Any]) -> list[str]:
    errors = []
    for name, task in (config.get("tasks") or {}).items():
        if task.get("type") != "beir":
            errors.append(f"task {name}: type {task.get('type')!r} is not a retriever task type (beir)")
        for metric, spec in (task.get("metrics") or {}).items():
            if not MEASURE.match(str(spec.get("type"))):
                errors.append(f"task {name}: unknown retriever metric {metric!r} ({spec.get('type')!r})")
    return errors


def _embed(endpoint: dict[str, Any], texts: list[str], input_type: str) -> np.ndarray:
    headers = {"Authorization": f"Bearer {endpoint['api_key']}"} if endpoint.get("api_key") else {}
    vectors: list[list[float]] = []
    for start in range(0, len(texts), 256):
        resp = httpx.post(endpoint["url"], headers=headers, timeout=30, json={
            "model": endpoint["model_id"], "input": texts[start:start + 256], "input_type": input_type})
        resp.raise_for_status()
        vectors += [d["embedding"] for d in sorted(resp.json()["data"], key=lambda d: d["index"])]
    return l2_normalize(np.asarray(vectors, dtype=np.float32))


def _beir(files: dict[str, bytes]) -> tuple[list[dict], list[dict], dict[str, set[str]]]:
    corpus = [json.loads(line) for line in files["corpus.jsonl"].decode().splitlines() if line.strip()]
    queries = [json.loads(line) for line in files["queries.jsonl"].decode().splitlines() if line.strip()]
    reader = csv.reader(io.StringIO(files["qrels/test.tsv"].decode()), delimiter="\t")
    header = next(reader)
    assert header == ["query-id", "corpus-id", "score"], header
    qrels: dict[str, set[str]] = {}
    for qid, pid, score in reader:
        if int(score) > 0:
            qrels.setdefault(qid, set()).add(pid)
    return corpus, queries, qrels


def run_retriever_evaluation(repos: dict[str, dict[str, bytes]], config: dict[str, Any],
                             target: dict[str, Any]) -> dict[str, Any]:
    """The ``tasks`` of the job's result."""
    pipeline = target["retriever"]["pipeline"]
    query_model = pipeline["query_embedding_model"]["api_endpoint"]
    index_model = pipeline["index_embedding_model"]["api_endpoint"]
    top_k = int(pipeline.get("top_k") or 10)
    tasks_out: dict[str, Any] = {}
    for task_name, task in config["tasks"].items():
        ns, repo = task["dataset"]["files_url"].removeprefix("hf://datasets/").split("/")[:2]
        corpus, queries, qrels = _beir(repos[f"{ns}/{repo}"])
        corpus_ids = [d["_id"] for d in corpus]
        judged = [q for q in queries if q["_id"] in qrels]
        doc_vectors = _embed(index_model, [d["text"] for d in corpus], "passage")
        query_vectors = _embed(query_model, [q["text"] for q in judged], "query")
        indices, _ = ExactIndex(doc_vectors).search(query_vectors, top_k)
        measures = [spec["type"] for spec in task["metrics"].values()]
        ks = sorted({int(m.rsplit("_", 1)[1]) for m in measures if m != "recip_rank"} | {top_k})
        values: dict[str, list[float]] = {m: [] for m in measures}
        for q, row in zip(judged, indices):
            ours = query_metrics([corpus_ids[j] for j in row], qrels[q["_id"]], ks)
            for m in measures:
                if m == "recip_rank":
                    values[m].append(ours[f"mrr_at_{top_k}"])
                else:
                    family, k = ("recall", m.rsplit("_", 1)[1]) if m.startswith("recall_") else \
                        ("ndcg", m.rsplit("_", 1)[1])
                    values[m].append(ours[f"{family}_at_{k}"])
        tasks_out[task_name] = {"metrics": {f"retriever.{m}": {"scores": {m: {"value": float(np.mean(v)),
                                                                               "stats": {}}}}
                                            for m, v in values.items()}}
    return tasks_out
