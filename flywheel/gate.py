"""The promotion gate: what the evaluation data can support about replacing the production model.

Pure domain code. The production model's responses are the ground truth, so a candidate's score on
the gate metric *is* its agreement with the reference (the reference agrees with itself: 1.0).
For every candidate configuration (a model under one eval type, an :class:`Arm`):

* **agreement** with a two-sided Wilson interval at ``gate.confidence``;
* **non-inferiority** with margin ``gate.max_drop_vs_reference`` (floor ``t = 1 - margin``):
  ``pass`` when the interval's lower bound clears ``t``, ``fail`` when its upper bound is below
  ``t``, ``inconclusive`` otherwise — then with the number of eval records that, at the observed
  agreement, would make the interval exclude ``t`` (the Wilson interval is exactly the set of
  proportions ``q`` with ``n (p - q)^2 <= z^2 q (1 - q)``, so that number has a closed form);
* **constraints**: p95 latency (absolute, and relative to the reference's when it is known) and cost
  per request relative to the reference's, each priced from the tokens that eval type actually sent
  (ICL prompts are longer, so they cost more);
* one sentence (``reason``) a reviewer can read.

Across configurations: exact McNemar tests on the same records (between a model's eval types and
between models on one eval type) with effect sizes, the recommendation (the cheapest passing
configuration) and the Pareto frontier over agreement (higher), cost and p95 latency (lower).

Scores that are not 0/1 (``similarity``) enter as their sum over records; the Wilson interval on
their mean is then conservative, since a [0, 1] variable's variance is at most ``p (1 - p)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations
from statistics import NormalDist
from typing import Literal

from pydantic import BaseModel, Field

from flywheel.config import GateConfig
from flywheel.paired_tests import PairedComparison, mcnemar

Verdict = Literal["pass", "fail", "inconclusive"]
# Beyond this many eval records "how many would decide" is not a useful answer (and floats lose meaning).
MAX_RECORDS = 10**12
ConstraintStatus = Literal["ok", "violated", "unknown", "not_checked"]


# ---------------------------------------------------------------------------------------------- inputs


class Arm(BaseModel):
    """One candidate configuration's evaluation on the gate metric."""

    model_name: str
    eval_type: str
    successes: float = Field(ge=0, description="Sum of per-record scores (the count of agreeing records).")
    n: int = Field(ge=0, description="Eval records scored.")
    latency_p95_ms: float | None = None
    tokens_per_request: float | None = Field(None, ge=0, description="Mean prompt + completion tokens sent.")
    cost_per_1k_tokens: float | None = Field(None, ge=0)
    outcomes: dict[str, float] | None = Field(None, description="Per-record scores keyed by record id.")

    @property
    def key(self) -> str:
        return f"{self.model_name}/{self.eval_type}"

    @property
    def agreement(self) -> float | None:
        return self.successes / self.n if self.n else None

    @property
    def cost_per_1k_requests(self) -> float | None:
        if self.tokens_per_request is None or self.cost_per_1k_tokens is None:
            return None
        # 1,000 requests × tokens per request / 1,000 tokens × price per 1k tokens
        return self.tokens_per_request * self.cost_per_1k_tokens


class Reference(BaseModel):
    """The production model: its cost per 1k requests (priced on the same prompts) and p95 latency."""

    model_name: str
    cost_per_1k_requests: float | None = None
    latency_p95_ms: float | None = None
    # The reference's own score on the gate metric. 1.0 when its answers are the ground truth (an llm_job:
    # the production model agrees with itself); a retriever scored on its logged rankings may score lower
    # (nDCG < 1 when a passage it relied on was not ranked first). The floor is this minus the margin.
    agreement: float = Field(1.0, ge=0, le=1)


def reference_from_config(gate: GateConfig, tokens_per_request: float | None,
                          logged_latency_p95_ms: float | None = None) -> Reference:
    """The configured reference priced on ``tokens_per_request`` (the production prompts and answers)."""
    ref = gate.reference
    cost = (tokens_per_request * ref.cost_per_1k_tokens
            if tokens_per_request is not None and ref.cost_per_1k_tokens is not None else None)
    latency = ref.latency_p95_ms if ref.latency_p95_ms is not None else logged_latency_p95_ms
    return Reference(model_name=ref.model_name, cost_per_1k_requests=cost, latency_p95_ms=latency)


# ---------------------------------------------------------------------------------------------- outputs


class Constraint(BaseModel):
    name: Literal["latency_p95", "latency_p95_vs_reference", "cost_vs_reference", "min_score"]
    status: ConstraintStatus
    value: float | None = None
    limit: float | None = None
    reason: str


class ArmVerdict(BaseModel):
    model_name: str
    eval_type: str
    metric: str
    verdict: Verdict
    agreement: float | None
    n: int
    interval: list[float] | None
    threshold: float
    agreement_verdict: Verdict
    records_needed: int | None = Field(None, description="Eval records that would decide, when inconclusive.")
    latency_p95_ms: float | None = None
    cost_per_1k_requests: float | None = None
    constraints: list[Constraint] = Field(default_factory=list)
    reason: str

    @property
    def key(self) -> str:
        return f"{self.model_name}/{self.eval_type}"


class GateReport(BaseModel):
    metric: str
    margin: float
    confidence: float
    threshold: float
    reference: Reference
    verdicts: list[ArmVerdict]
    paired: list[PairedComparison] = Field(default_factory=list)
    recommendation: str | None = None
    recommendation_reason: str
    frontier: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------------------------------------- intervals


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    return NormalDist().inv_cdf((1 + level) / 2)


def wilson_interval(successes: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Two-sided Wilson score interval for ``successes / n``; ``(0, 1)`` when there are no records."""
    if n <= 0:
        return (0.0, 1.0)
    z = _z(level)
    p = min(max(successes / n, 0.0), 1.0)
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def agreement_verdict(successes: float, n: int, threshold: float, level: float) -> tuple[Verdict, tuple[float, float]]:
    """Non-inferiority from the interval alone: pass above ``threshold``, fail below, else inconclusive."""
    low, high = wilson_interval(successes, n, level)
    if n > 0 and low > threshold:
        return "pass", (low, high)
    if n > 0 and high < threshold:
        return "fail", (low, high)
    return "inconclusive", (low, high)


def records_needed(agreement: float, threshold: float, level: float, have: int = 0) -> int | None:
    """Fewest eval records (more than ``have``) at which ``agreement`` would decide against ``threshold``.

    ``threshold`` lies outside the Wilson interval exactly when ``n (p - t)^2 > z^2 t (1 - t)``, which
    gives the answer in closed form; the interval itself then settles it (floating point near the
    boundary) by a bounded search. None when no number of records decides (``p == t``).
    """
    if agreement == threshold:
        return None
    z = _z(level)
    estimate = z * z * threshold * (1 - threshold) / (agreement - threshold) ** 2
    if not math.isfinite(estimate) or estimate > MAX_RECORDS:
        return None

    def decisive(n: int) -> bool:
        return agreement_verdict(agreement * n, n, threshold, level)[0] != "inconclusive"

    low, high = have, max(have + 1, math.floor(estimate) + 1)
    while not decisive(high):  # the closed form was a hair short: widen (a few steps at most)
        low, high = high, high * 2
        if high > MAX_RECORDS:
            return None
    while high - low > 1:  # the first decisive size in (low, high]
        middle = (low + high) // 2
        low, high = (low, middle) if decisive(middle) else (middle, high)
    return high


# ---------------------------------------------------------------------------------------------- one arm


def _fmt(value: float | None, unit: str = "") -> str:
    return "unknown" if value is None else f"{value:,.4g}{unit}"


def check_constraints(arm: Arm, reference: Reference, gate: GateConfig) -> list[Constraint]:
    out: list[Constraint] = []
    agreement = arm.agreement
    if gate.min_score > 0:
        if agreement is None:
            out.append(Constraint(name="min_score", status="unknown", limit=gate.min_score,
                                  reason="no score to compare with the minimum"))
        else:
            ok = agreement >= gate.min_score
            out.append(Constraint(name="min_score", status="ok" if ok else "violated", value=agreement,
                                  limit=gate.min_score,
                                  reason=f"score {agreement:.3f} {'meets' if ok else 'is below'} the minimum "
                                         f"{gate.min_score:.3f}"))
    latency = arm.latency_p95_ms
    if gate.max_latency_p95_ms is not None:
        limit = gate.max_latency_p95_ms
        status: ConstraintStatus = "unknown" if latency is None else ("ok" if latency <= limit else "violated")
        out.append(Constraint(name="latency_p95", status=status, value=latency, limit=limit,
                              reason=f"p95 latency {_fmt(latency, ' ms')} against a limit of {_fmt(limit, ' ms')}"))
    if gate.max_latency_p95_ratio is not None:
        if reference.latency_p95_ms is None:
            out.append(Constraint(name="latency_p95_vs_reference", status="not_checked",
                                  reason="the reference's p95 latency is not known"))
        else:
            limit = gate.max_latency_p95_ratio * reference.latency_p95_ms
            status = "unknown" if latency is None else ("ok" if latency <= limit else "violated")
            out.append(Constraint(
                name="latency_p95_vs_reference", status=status, value=latency, limit=limit,
                reason=f"p95 latency {_fmt(latency, ' ms')} against {gate.max_latency_p95_ratio:g}× the reference's "
                       f"{_fmt(reference.latency_p95_ms, ' ms')}"))
    if gate.max_cost_ratio is not None:
        ref_cost = reference.cost_per_1k_requests
        if not ref_cost:
            out.append(Constraint(name="cost_vs_reference", status="not_checked",
                                  reason="the reference's price is not configured"))
        else:
            cost = arm.cost_per_1k_requests
            limit = gate.max_cost_ratio * ref_cost
            status = "unknown" if cost is None else ("ok" if cost <= limit else "violated")
            ratio = None if cost is None else cost / ref_cost
            out.append(Constraint(
                name="cost_vs_reference", status=status, value=cost, limit=limit,
                reason=f"cost {_fmt(cost)} per 1k requests is {_fmt(ratio, '×')} the reference's {_fmt(ref_cost)} "
                       f"(limit {gate.max_cost_ratio:g}×)"))
    return out


def judge_arm(arm: Arm, reference: Reference, gate: GateConfig) -> ArmVerdict:
    """The verdict for one configuration, with the sentence that explains it."""
    threshold = reference.agreement - gate.max_drop_vs_reference
    level = gate.confidence
    constraints = check_constraints(arm, reference, gate)
    base = dict(model_name=arm.model_name, eval_type=arm.eval_type, metric=gate.metric, n=arm.n,
                threshold=threshold, latency_p95_ms=arm.latency_p95_ms,
                cost_per_1k_requests=arm.cost_per_1k_requests, constraints=constraints)
    if arm.n == 0:
        return ArmVerdict(**base, verdict="inconclusive", agreement=None, interval=None,
                          agreement_verdict="inconclusive",
                          reason=f"{arm.key} is inconclusive: no eval records were scored on {gate.metric}.")
    p = arm.agreement or 0.0
    agreement, (low, high) = agreement_verdict(arm.successes, arm.n, threshold, level)
    needed = records_needed(p, threshold, level, have=arm.n) if agreement == "inconclusive" else None
    evidence = (f"agreement {p:.3f} ({level:.0%} CI {low:.3f}–{high:.3f}, n={arm.n}) on {gate.metric}")
    violated = [c for c in constraints if c.status == "violated"]
    unknown = [c for c in constraints if c.status == "unknown"]
    if agreement == "fail":
        verdict: Verdict = "fail"
        reason = f"{arm.key} fails: {evidence} lies entirely below the floor {threshold:.3f}."
    elif violated:
        verdict = "fail"
        reason = f"{arm.key} fails: {'; '.join(c.reason for c in violated)}."
    elif agreement == "inconclusive":
        verdict = "inconclusive"
        more = (f"about {needed:,} eval records at this agreement would decide" if needed is not None
                else "the agreement is too close to the floor for any practical number of records to decide")
        reason = f"{arm.key} is inconclusive: {evidence} straddles the floor {threshold:.3f}; {more}."
    elif unknown:
        verdict = "inconclusive"
        reason = (f"{arm.key} is inconclusive: {evidence} clears the floor {threshold:.3f}, but "
                  f"{'; '.join(c.reason for c in unknown)}.")
    else:
        verdict = "pass"
        checked = [c.reason for c in constraints if c.status == "ok"]
        tail = f", and {'; '.join(checked)}" if checked else ""
        reason = f"{arm.key} passes: {evidence} clears the floor {threshold:.3f}{tail}."
    return ArmVerdict(**base, verdict=verdict, agreement=p, interval=[low, high], agreement_verdict=agreement,
                      records_needed=needed, reason=reason)


# ---------------------------------------------------------------------------------------------- paired tests


def paired_comparisons(arms: Sequence[Arm], alpha: float = 0.05) -> list[PairedComparison]:
    """McNemar between each model's eval types, and between models on each eval type."""
    with_outcomes = [arm for arm in arms if arm.outcomes]
    out: list[PairedComparison] = []
    for x, y in combinations(with_outcomes, 2):
        if x.model_name == y.model_name or x.eval_type == y.eval_type:
            out.append(mcnemar(x.key, x.outcomes or {}, y.key, y.outcomes or {}, alpha))
    return out


# ---------------------------------------------------------------------------------------------- choice


def _dominates(x: ArmVerdict, y: ArmVerdict) -> bool:
    """x is at least as good as y on agreement, cost and latency, and better on one (unknown = worst)."""
    def axes(v: ArmVerdict) -> tuple[float, float, float]:
        return (-(v.agreement if v.agreement is not None else -math.inf),
                v.cost_per_1k_requests if v.cost_per_1k_requests is not None else math.inf,
                v.latency_p95_ms if v.latency_p95_ms is not None else math.inf)
    ax, ay = axes(x), axes(y)
    return all(p <= q for p, q in zip(ax, ay)) and any(p < q for p, q in zip(ax, ay))


def pareto_frontier(verdicts: Sequence[ArmVerdict]) -> list[str]:
    scored = [v for v in verdicts if v.agreement is not None]
    return [v.key for v in scored if not any(_dominates(other, v) for other in scored if other is not v)]


def recommend(verdicts: Sequence[ArmVerdict]) -> tuple[str | None, str]:
    """The cheapest passing configuration (ties: lower p95, then higher agreement), and why."""
    passing = [v for v in verdicts if v.verdict == "pass"]
    if not passing:
        inconclusive = [v for v in verdicts if v.verdict == "inconclusive"]
        if inconclusive:
            count = len(inconclusive)
            return None, (f"No configuration passes yet; {count} {'is' if count == 1 else 'are'} inconclusive and "
                          f"need{'s' if count == 1 else ''} more eval records or the missing measurements.")
        return None, "No configuration passes: keep the production model."
    def order(v: ArmVerdict) -> tuple[float, float, float]:
        return (v.cost_per_1k_requests if v.cost_per_1k_requests is not None else math.inf,
                v.latency_p95_ms if v.latency_p95_ms is not None else math.inf, -(v.agreement or 0.0))
    best = min(passing, key=order)
    others = len(passing) - 1
    return best.key, (f"{best.key} is the cheapest of {len(passing)} passing configuration"
                      f"{'s' if others else ''} (cost {_fmt(best.cost_per_1k_requests)} per 1k requests, "
                      f"p95 {_fmt(best.latency_p95_ms, ' ms')}, agreement {best.agreement:.3f}).")


def evaluate_gate(arms: Sequence[Arm], reference: Reference, gate: GateConfig) -> GateReport:
    verdicts = [judge_arm(arm, reference, gate) for arm in arms]
    recommendation, why = recommend(verdicts)
    return GateReport(metric=gate.metric, margin=gate.max_drop_vs_reference, confidence=gate.confidence,
                      threshold=reference.agreement - gate.max_drop_vs_reference, reference=reference,
                      verdicts=verdicts, paired=paired_comparisons(arms, gate.paired_alpha),
                      recommendation=recommendation, recommendation_reason=why, frontier=pareto_frontier(verdicts))


_RANK = {"pass": 0, "inconclusive": 1, "fail": 2}


def candidate_summary(report: GateReport, model_name: str) -> dict:
    """A candidate's best configuration (pass before inconclusive before fail, then cheapest) for ``NimDoc.gate``."""
    mine = [v for v in report.verdicts if v.model_name == model_name]
    if not mine:
        return {"verdict": "inconclusive", "passed": False, "eval_type": None, "metric": report.metric,
                "reasons": [f"{model_name} has no successful evaluation"]}
    best = min(mine, key=lambda v: (_RANK[v.verdict], v.cost_per_1k_requests if v.cost_per_1k_requests is not None
                                    else math.inf, -(v.agreement or 0.0)))
    return {"verdict": best.verdict, "passed": best.verdict == "pass", "eval_type": best.eval_type,
            "metric": report.metric, "score": best.agreement, "interval": best.interval,
            "records_needed": best.records_needed, "reasons": [best.reason]}
