"""Semantic ICL selection: 1k eval rows × 10k train rows.

Selection (kNN matmul, relevance + coverage picks, token budget) is timed with precomputed random
unit vectors (dim 384) behind a fake embedder, so embedding cost is excluded; target ≤ 1 s.
The real all-MiniLM-L6-v2 embedding cost is measured separately on a sample and extrapolated to
the 11k texts the same run would embed. Uniform selection is timed for comparison.

    python -m bench.bench_icl [--eval 1000] [--train 10000] [--tools 40] [--minilm-sample 1000]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

import numpy as np

from flywheel.config import ICLConfig
from flywheel.icl import select_examples

TARGET_SELECTION_S = 1.0
WORDS = ["weather", "flight", "hotel", "order", "refund", "invoice", "account", "password", "meeting", "calendar",
         "reminder", "package", "delivery", "payment", "card", "balance", "transfer", "schedule", "doctor", "ticket",
         "train", "price", "stock", "news", "email"]


def make_rows(n: int, prefix: str, tools: int, rng: random.Random) -> list[dict]:
    rows = []
    for i in range(n):
        tool = f"tool_{rng.randrange(tools)}"
        query = f"{' '.join(rng.choices(WORDS, k=8))} #{prefix}{i}"
        rows.append({"record_id": f"{prefix}{i}", "request": {"messages": [
            {"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": query}]},
            "response": {"choices": [{"message": {"role": "assistant", "tool_calls": [
                {"id": "c", "type": "function",
                 "function": {"name": tool, "arguments": {"q": query[:20], "n": i}}}]}}]}})
    return rows


class RandomVectorEmbedder:
    """Looks texts up in precomputed random unit vectors: embedding costs ~nothing."""

    def __init__(self, texts: list[str], dim: int, seed: int = 0) -> None:
        vectors = np.random.default_rng(seed).standard_normal((len(texts), dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        self.index = {text: vectors[i] for i, text in enumerate(texts)}

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.index[t] for t in texts])


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", type=int, default=1000)
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--tools", type=int, default=40)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; best and median are reported")
    parser.add_argument("--minilm-sample", type=int, default=1000, help="texts to embed with MiniLM (0 = skip)")
    args = parser.parse_args(argv)

    rng = random.Random(0)
    eval_rows, train_rows = make_rows(args.eval, "e", args.tools, rng), make_rows(args.train, "t", args.tools, rng)
    texts = [r["request"]["messages"][-1]["content"] for r in eval_rows + train_rows]
    embedder = RandomVectorEmbedder(texts, args.dim)
    semantic = ICLConfig(max_examples=3, min_examples=1, example_selection="semantic_similarity",
                         similarity_config={"relevance_ratio": 0.7})
    uniform = ICLConfig(max_examples=3, min_examples=1, example_selection="uniform_distribution")

    report: dict = {}
    select_examples(eval_rows[:10], train_rows[:100], semantic, context_length=8192, embedder=embedder)  # warm-up
    runs = [timed(lambda: select_examples(eval_rows, train_rows, semantic, context_length=8192,
                                          embedder=embedder, report=report)) for _ in range(args.repeat)]
    semantic_times = sorted(t for t, _ in runs)
    semantic_s, semantic_median_s, chosen = semantic_times[0], semantic_times[len(runs) // 2], runs[0][1]
    uniform_s = min(timed(lambda: select_examples(eval_rows, train_rows, uniform, context_length=8192))[0]
                    for _ in range(args.repeat))
    embed_only_s, _ = timed(lambda: (embedder.embed(texts[:args.eval]), embedder.embed(texts[args.eval:])))
    covered = np.mean([len({e["response"]["choices"][0]["message"]["tool_calls"][0]["function"]["name"] for e in c})
                       for c in chosen])

    print(f"ICL selection: {args.eval} eval × {args.train} train rows, {args.tools} tools, dim {args.dim}, "
          "max_examples 3")
    print(f"{'measure':<44}{'measured':>10}{'target':>10}{'ratio':>8}")
    print(f"{'semantic selection, fake embedder, best (s)':<44}{semantic_s:>10.3f}{TARGET_SELECTION_S:>10.3f}"
          f"{TARGET_SELECTION_S / semantic_s:>8.2f}")
    print(f"{'semantic selection, median (s)':<44}{semantic_median_s:>10.3f}{TARGET_SELECTION_S:>10.3f}"
          f"{TARGET_SELECTION_S / semantic_median_s:>8.2f}")
    print(f"{'  of which vector lookup (s)':<44}{embed_only_s:>10.3f}")
    print(f"{'uniform selection, best (s)':<44}{uniform_s:>10.3f}{TARGET_SELECTION_S:>10.3f}"
          f"{TARGET_SELECTION_S / uniform_s:>8.2f}")
    print(f"examples per row {report['examples'] / args.eval:.2f}, distinct tools per row {covered:.2f}, "
          f"rows below min_examples {report['below_min_examples']}; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")

    if args.minilm_sample:
        from flywheel.embeddings import LocalEmbedder

        local = LocalEmbedder()
        load_s, _ = timed(lambda: local.embed(["warm up"]))
        sample = texts[:args.minilm_sample]
        embed_s, vectors = timed(lambda: local.embed(sample))
        rate = len(sample) / embed_s
        print(f"MiniLM (all-MiniLM-L6-v2, CPU): load {load_s:.1f} s, {len(sample)} texts in {embed_s:.2f} s "
              f"= {rate:.0f} texts/s, dim {vectors.shape[1]}; "
              f"extrapolated for {len(texts)} texts: {len(texts) / rate:.1f} s")
    verdict = "PASS" if semantic_s <= TARGET_SELECTION_S else "ABOVE TARGET"
    print(f"semantic selection {semantic_s:.3f} s, target <= {TARGET_SELECTION_S} s  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
