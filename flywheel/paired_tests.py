"""Exact paired tests between two configurations scored on the same records (McNemar / sign test).

Pure domain code used by the promotion gate (:mod:`flywheel.gate`) and the statistics helpers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from pydantic import BaseModel, Field


class PairedComparison(BaseModel):
    a: str
    b: str
    n_paired: int
    a_only: int = Field(description="Records a got right and b got wrong.")
    b_only: int = Field(description="Records b got right and a got wrong.")
    p_value: float
    difference: float | None = Field(description="Agreement of a minus agreement of b on the paired records.")
    odds_ratio: float | None = Field(description="a_only / b_only (0.5 added to both when either is 0).")
    significant: bool
    reason: str


def exact_binomial_two_sided(successes: int, trials: int) -> float:
    """Exact two-sided binomial p-value for p = 1/2 (twice the smaller tail, capped at 1)."""
    if trials == 0:
        return 1.0
    k = min(successes, trials - successes)
    tail = sum(math.comb(trials, i) for i in range(k + 1)) / 2 ** trials
    return min(1.0, 2 * tail)


def mcnemar(a_key: str, a: Mapping[str, float], b_key: str, b: Mapping[str, float],
            alpha: float = 0.05) -> PairedComparison:
    """Exact McNemar test on the records both were scored on (per-record scores keyed by record id).

    A record is discordant when one score is higher than the other (for 0/1 scores: one right, one
    wrong); for graded scores this is the exact sign test, the same test.
    """
    shared = sorted(set(a) & set(b))
    a_only = sum(1 for r in shared if a[r] > b[r])
    b_only = sum(1 for r in shared if b[r] > a[r])
    p_value = exact_binomial_two_sided(a_only, a_only + b_only)
    difference = (sum(a[r] - b[r] for r in shared) / len(shared)) if shared else None
    if a_only + b_only == 0:
        odds = None
    elif a_only == 0 or b_only == 0:
        odds = (a_only + 0.5) / (b_only + 0.5)
    else:
        odds = a_only / b_only
    significant = p_value < alpha
    if not shared:
        reason = f"{a_key} and {b_key} share no scored records: no paired test."
    elif significant:
        better, worse = (a_key, b_key) if (difference or 0) > 0 else (b_key, a_key)
        reason = (f"{better} agrees more often than {worse} on the same {len(shared)} records "
                  f"({max(a_only, b_only)} vs {min(a_only, b_only)} discordant, exact McNemar p={p_value:.3g}).")
    else:
        reason = (f"{a_key} and {b_key} are not distinguishable on the same {len(shared)} records "
                  f"({a_only} vs {b_only} discordant, exact McNemar p={p_value:.3g}).")
    return PairedComparison(a=a_key, b=b_key, n_paired=len(shared), a_only=a_only, b_only=b_only,
                            p_value=p_value, difference=difference, odds_ratio=odds, significant=significant,
                            reason=reason)
