"""BEIR-style retrieval metrics per query, their means, and intervals.

For one query with relevant passages R and a candidate's ranking (best first):

- ``recall_at_k``: |R ∩ top k| / |R|;
- ``ndcg_at_k``: binary-gain DCG of the top k (a hit at rank r adds 1/log2(r + 1)) over the ideal
  DCG (all of R first);
- ``mrr_at_k``: 1 / rank of the first relevant passage within the top k, else 0;
- ``production_agreement_at_k``: |top k ∩ production top k| / min(k, len(production ranking)): how
  much of what the production retriever returned the candidate returns too.

Intervals are percentile-bootstrap intervals of the mean over queries (2,000 resamples, seeded,
95%): per-query nDCG and MRR are not 0/1, so a Wilson interval would not apply. A paired sign test
(:func:`flywheel.stats.paired_test`) compares two candidates on the same queries.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from flywheel.stats import confidence_interval, paired_test

DEFAULT_KS = (1, 5, 10)
METRIC_FAMILIES = ("recall", "ndcg", "mrr", "production_agreement")


def metric_name(family: str, k: int) -> str:
    return f"{family}_at_{k}"


def metric_names(ks: Iterable[int] = DEFAULT_KS, *, agreement: bool = True) -> list[str]:
    families = METRIC_FAMILIES if agreement else METRIC_FAMILIES[:3]
    return [metric_name(f, k) for f in families for k in ks]


def _ideal_dcg(n_relevant: int, k: int) -> float:
    return sum(1.0 / math.log2(r + 2) for r in range(min(n_relevant, k)))


def query_metrics(ranking: Sequence[str], relevant: Iterable[str], ks: Iterable[int] = DEFAULT_KS,
                  production: Sequence[str] | None = None) -> dict[str, float]:
    """All metrics of one query. ``ranking`` must hold at least max(ks) ids where the corpus allows."""
    relevant = set(relevant)
    if not relevant:
        raise ValueError("a query needs at least one relevant passage")
    hits = [pid in relevant for pid in ranking]
    out: dict[str, float] = {}
    for k in ks:
        top = hits[:k]
        out[metric_name("recall", k)] = sum(top) / len(relevant)
        dcg = sum(1.0 / math.log2(r + 2) for r, hit in enumerate(top) if hit)
        out[metric_name("ndcg", k)] = dcg / _ideal_dcg(len(relevant), k)
        first = next((r for r, hit in enumerate(top) if hit), None)
        out[metric_name("mrr", k)] = 0.0 if first is None else 1.0 / (first + 1)
        if production is not None:
            reference = list(production[:k])
            shared = len(set(ranking[:k]) & set(reference))
            out[metric_name("production_agreement", k)] = shared / len(reference) if reference else 0.0
    return out


def per_query_table(rankings: Sequence[Sequence[str]], relevant: Sequence[Iterable[str]],
                    ks: Iterable[int] = DEFAULT_KS,
                    production: Sequence[Sequence[str]] | None = None) -> dict[str, list[float]]:
    """Metric name -> one value per query, in query order."""
    ks = tuple(ks)
    table: dict[str, list[float]] = {}
    for i, ranking in enumerate(rankings):
        values = query_metrics(ranking, relevant[i], ks, production[i] if production is not None else None)
        for name, value in values.items():
            table.setdefault(name, []).append(value)
    return table


def summarize(table: dict[str, list[float]], *, level: float = 0.95, seed: int = 0,
              n_resamples: int = 2000) -> tuple[dict[str, float], dict[str, list[float]]]:
    """(means, bootstrap intervals) of every metric in ``table``."""
    means, intervals = {}, {}
    for name, values in table.items():
        means[name] = float(np.mean(values)) if values else 0.0
        lo, hi = confidence_interval(values, level=level, method="bootstrap", seed=seed, n_resamples=n_resamples)
        intervals[name] = [lo, hi]
    return means, intervals


def compare(table_a: dict[str, list[float]], table_b: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    """Per metric: mean difference (b - a) and the paired sign-test p-value over the same queries."""
    out = {}
    for name in sorted(set(table_a) & set(table_b)):
        a, b = table_a[name], table_b[name]
        out[name] = {"delta": float(np.mean(b) - np.mean(a)) if a else 0.0, "p_value": paired_test(a, b)}
    return out
