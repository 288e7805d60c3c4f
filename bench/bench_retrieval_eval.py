"""Retrieval evaluation throughput at 100k corpus passages.

The corpus vectors are **synthetic** (random unit vectors, dim 384 like all-MiniLM-L6-v2):
embedding 100k passages with MiniLM on a 2-core machine takes many minutes and measures the
embedding model, not the evaluation. The eval queries are also random vectors for the search part;
the relevant passage of each query is planted (a noisy copy of one corpus vector) so the metrics
have something to find. Timed separately:

- search + scoring (exact index, top-10, Recall/nDCG/MRR/agreement per query) in queries/s;
- the real MiniLM query-embedding rate on a sample of real query texts;
- end to end = the two combined (1 / (1/search_rate + 1/embed_rate)).

    python -m bench.bench_retrieval_eval [--corpus 100000] [--queries 2000] [--dim 384] [--minilm-sample 256]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from flywheel.retrieval.index import ExactIndex
from flywheel.retrieval.metrics import per_query_table, summarize

DATA = Path(__file__).resolve().parent.parent / "data" / "primary_assistant-aiva-kb.jsonl"


def synthetic(corpus: int, queries: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((corpus, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    targets = rng.integers(0, corpus, size=queries)
    q = vectors[targets] + rng.standard_normal((queries, dim), dtype=np.float32) * 0.08
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return vectors, q, targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--minilm-sample", type=int, default=256, help="0 skips the real-model part")
    args = parser.parse_args(argv)

    vectors, queries, targets = synthetic(args.corpus, args.queries, args.dim)
    ids = [f"p{i}" for i in range(args.corpus)]
    started = time.perf_counter()
    index = ExactIndex(vectors)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    indices, _ = index.search(queries, args.k)
    search_s = time.perf_counter() - started
    started = time.perf_counter()
    rankings = [[ids[j] for j in row] for row in indices]
    table = per_query_table(rankings, [{ids[t]} for t in targets], ks=(1, 5, args.k), production=rankings)
    means, _ = summarize(table)
    score_s = time.perf_counter() - started
    search_rate = args.queries / (search_s + score_s)
    out = {"corpus": args.corpus, "queries": args.queries, "dim": args.dim, "corpus_vectors": "synthetic random",
           "index_build_s": round(build_s, 4), "search_s": round(search_s, 3), "scoring_s": round(score_s, 3),
           "search_and_scoring_queries_per_s": round(search_rate, 1),
           "recall_at_1_planted": round(means["recall_at_1"], 3),
           "index_memory_mb": round(vectors.nbytes / 1e6, 1)}
    if args.minilm_sample:
        from flywheel.retrieval.candidates import SentenceTransformerEmbedder

        texts = [json.loads(line)["retrieval"].get("query") or "q" for line in DATA.read_text().splitlines()]
        texts = (texts * (1 + args.minilm_sample // len(texts)))[:args.minilm_sample]
        embedder = SentenceTransformerEmbedder()
        embedder.embed_queries(texts[:8])  # load + warm up
        started = time.perf_counter()
        embedder.embed_queries(texts)
        embed_rate = len(texts) / (time.perf_counter() - started)
        out["minilm_query_embedding_per_s"] = round(embed_rate, 1)
        out["end_to_end_queries_per_s"] = round(1 / (1 / search_rate + 1 / embed_rate), 1)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
