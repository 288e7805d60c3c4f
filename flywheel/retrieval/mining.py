"""Training triplets ``{query, pos_doc, neg_doc[]}`` with hard negatives mined by the base model.

For every (training query, positive) the base embedding model ranks the whole corpus. Negatives
are passages it ranks **above** the positive that are not labelled relevant: exactly the mistakes
fine-tuning should fix. When fewer than ``num_negatives`` rank above the positive (the base model
already gets it right), the list is filled with the passages ranked right below it — still the
hardest negatives available. Passages whose text equals a positive's (modulo case and spacing)
are never negatives: they are the same answer under another id, and training them apart would
teach the model noise (counted as ``identical_text_skipped``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flywheel.retrieval.corpus import Corpus
from flywheel.retrieval.index import ExactIndex


@dataclass
class MinedTriplets:
    triplets: list[dict[str, Any]]
    counts: dict[str, Any] = field(default_factory=dict)


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def mine_triplets(rows: Sequence[dict[str, Any]], corpus: Corpus, corpus_vectors: np.ndarray,
                  query_vectors: np.ndarray, *, num_negatives: int = 3, search_depth: int = 50) -> MinedTriplets:
    """One triplet per (row, positive). ``query_vectors[i]`` embeds ``rows[i]["query"]``; the vectors
    come from the base model. Rows whose positive is not in the corpus are skipped (counted)."""
    if num_negatives < 1:
        raise ValueError("num_negatives must be >= 1")
    if len(query_vectors) != len(rows):
        raise ValueError(f"{len(query_vectors)} query vectors for {len(rows)} rows")
    depth = min(len(corpus), search_depth + max((len(r["positive_ids"]) for r in rows), default=0))
    indices, _scores = ExactIndex(corpus_vectors).search(query_vectors, depth)
    normalized = [_norm(t) for t in corpus.texts]
    triplets: list[dict[str, Any]] = []
    counts = {"rows": len(rows), "triplets": 0, "positive_not_in_corpus": 0, "no_negative": 0,
              "identical_text_skipped": 0, "negatives_above_positive": 0, "negatives_below_positive": 0,
              "triplets_with_negative_above": 0, "positive_outside_search_depth": 0}
    for i, row in enumerate(rows):
        positives = [p for p in row["positive_ids"] if p in corpus.position]
        counts["positive_not_in_corpus"] += len(row["positive_ids"]) - len(positives)
        positive_positions = {corpus.position[p] for p in positives}
        positive_texts = {normalized[j] for j in positive_positions}
        ranked = [int(j) for j in indices[i]]
        candidates: list[int] = []
        for j in ranked:
            if j in positive_positions:
                continue
            if normalized[j] in positive_texts:
                counts["identical_text_skipped"] += 1
                continue
            candidates.append(j)
        rank_of = {j: r for r, j in enumerate(ranked)}
        for pid in positives:
            pos = corpus.position[pid]
            if pos not in rank_of:
                counts["positive_outside_search_depth"] += 1
            pos_rank = rank_of.get(pos, len(ranked))
            above = [j for j in candidates if rank_of[j] < pos_rank]
            below = [j for j in candidates if rank_of[j] > pos_rank]
            chosen = (above + below)[:num_negatives]
            if not chosen:
                counts["no_negative"] += 1
                continue
            n_above = min(len(above), len(chosen))
            counts["negatives_above_positive"] += n_above
            counts["negatives_below_positive"] += len(chosen) - n_above
            counts["triplets_with_negative_above"] += n_above > 0
            found = len(chosen)
            while len(chosen) < num_negatives:  # a tiny corpus: repeat so every triplet has the same width
                chosen.append(chosen[len(chosen) % found])
            triplets.append({"record_id": row.get("record_id"), "query": row["query"], "pos_id": pid,
                             "pos_doc": corpus.texts[pos], "neg_ids": [corpus.ids[j] for j in chosen],
                             "neg_doc": [corpus.texts[j] for j in chosen], "negatives_above_positive": n_above})
    counts["triplets"] = len(triplets)
    return MinedTriplets(triplets, counts)
