"""Statistics for comparing candidates: confidence intervals, a paired test, latency, cost."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Literal

import numpy as np

from flywheel.paired_tests import exact_binomial_two_sided


def confidence_interval(values: Sequence[float], level: float = 0.95,
                        method: Literal["wilson", "bootstrap"] = "wilson", seed: int = 0,
                        n_resamples: int = 2000) -> tuple[float, float]:
    """CI for the mean of per-record scores in [0, 1] (0/1 scores for Wilson to be exact).

    ``wilson``: Wilson score interval from the mean and the count. ``bootstrap``: percentile
    bootstrap of the mean, seeded. No values gives the uninformative ``(0.0, 1.0)``.
    """
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    n = len(values)
    if n == 0:
        return (0.0, 1.0)
    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if method == "wilson":
        z = NormalDist().inv_cdf((1 + level) / 2)
        denominator = 1 + z * z / n
        centre = (mean + z * z / (2 * n)) / denominator
        half = z * math.sqrt(max(mean * (1 - mean), 0.0) / n + z * z / (4 * n * n)) / denominator
        return (max(0.0, centre - half), min(1.0, centre + half))
    if method == "bootstrap":
        rng = np.random.default_rng(seed)
        indices = rng.integers(0, n, size=(n_resamples, n))
        means = data[indices].mean(axis=1)
        alpha = (1 - level) / 2
        lo, hi = np.quantile(means, [alpha, 1 - alpha])
        return (float(lo), float(hi))
    raise ValueError(f"unknown method {method!r} (wilson or bootstrap)")


def mcnemar_exact(scores_a: Sequence[float], scores_b: Sequence[float]) -> float:
    """Exact McNemar p-value for two candidates' scores on the same records, in the same order.

    Only discordant records count (a right / b wrong vs a wrong / b right). For non-binary scores
    this is the exact sign test on the per-record differences (ties ignored), which is the same test.
    """
    if len(scores_a) != len(scores_b):
        raise ValueError("paired scores must have the same length (same records, same order)")
    a_better = sum(1 for a, b in zip(scores_a, scores_b) if a > b)
    b_better = sum(1 for a, b in zip(scores_a, scores_b) if b > a)
    return exact_binomial_two_sided(a_better, a_better + b_better)


paired_test = mcnemar_exact


def latency_percentiles(values: Sequence[float]) -> tuple[float | None, float | None]:
    """(p50, p95) with linear interpolation; (None, None) when there are no values."""
    if len(values) == 0:
        return (None, None)
    p50, p95 = np.percentile(np.asarray(values, dtype=float), [50, 95])
    return (float(p50), float(p95))


def cost_per_1k_requests(prompt_tokens: int, completion_tokens: int, n: int,
                         cost_per_1k_tokens: float) -> float | None:
    """Serving cost of 1,000 requests like these: mean tokens per request × cost per 1k tokens."""
    if n <= 0:
        return None
    tokens_per_request = (prompt_tokens + completion_tokens) / n
    # 1000 requests × tokens_per_request / 1000 tokens × cost per 1k tokens
    return tokens_per_request * cost_per_1k_tokens
