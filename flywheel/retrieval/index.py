"""Exact (brute-force) nearest-neighbour search over L2-normalised vectors, in process.

Scores are inner products (cosine similarity for unit vectors). Queries are processed in blocks:
one ``(block, N)`` matrix product against the corpus, then ``argpartition`` for the top k and a
sort of those k only.

Scaling: time is O(Q·N·d) multiply-adds (one BLAS GEMM per block, so it runs at the machine's
matmul speed); memory is the corpus itself, N·d·4 bytes (100k × 384-d = 154 MB), plus one
``block × N`` float32 score matrix (256 × 100k = 102 MB). Past a few million passages, or for
interactive latency at that size, an approximate index (HNSW, IVF) is the tool; evaluation sets
of thousands of queries over up to ~1M passages are fine exact.
"""

from __future__ import annotations

import numpy as np

DEFAULT_BLOCK = 256


class ExactIndex:
    def __init__(self, vectors: np.ndarray, *, block: int = DEFAULT_BLOCK) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"expected a 2-D array of passage vectors, got shape {vectors.shape}")
        if block < 1:
            raise ValueError("block must be >= 1")
        self.vectors = vectors
        self.block = block

    def __len__(self) -> int:
        return self.vectors.shape[0]

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, scores)``, each ``(len(queries), min(k, N))``, best first.

        Equal scores are ordered by passage index, so results are deterministic.
        """
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (n, {self.dim}), got {queries.shape}")
        n, size = queries.shape[0], len(self)
        k = min(k, size)
        indices = np.empty((n, k), dtype=np.int64)
        scores = np.empty((n, k), dtype=np.float32)
        if k == 0:
            return indices, scores
        for start in range(0, n, self.block):
            block = queries[start:start + self.block] @ self.vectors.T
            if k < size:
                top = np.argpartition(-block, k - 1, axis=1)[:, :k]
            else:
                top = np.broadcast_to(np.arange(size), block.shape).copy()
            top_scores = np.take_along_axis(block, top, axis=1)
            order = np.lexsort((top, -top_scores), axis=1)  # score descending, then index ascending
            indices[start:start + len(block)] = np.take_along_axis(top, order, axis=1)
            scores[start:start + len(block)] = np.take_along_axis(top_scores, order, axis=1)
        return indices, scores
