"""The promotion gate: worked examples and property-based invariants (hypothesis)."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from flywheel.config import ConfigError, GateConfig, validate_settings
from flywheel.gate import (
    MAX_RECORDS,
    Arm,
    Reference,
    agreement_verdict,
    evaluate_gate,
    judge_arm,
    pareto_frontier,
    records_needed,
    reference_from_config,
    wilson_interval,
)
from flywheel.paired_tests import mcnemar
from flywheel.stats import confidence_interval

GATE = GateConfig()  # margin 0.05, confidence 0.95, cost at most the reference's
NO_REF = Reference(model_name="production")


def arm(k: float, n: int, **kw) -> Arm:
    return Arm(model_name=kw.pop("model_name", "cand"), eval_type=kw.pop("eval_type", "base-eval"),
               successes=k, n=n, **kw)


def closed_form_needed(p: float, t: float, level: float) -> float:
    """n above which t leaves the Wilson interval around p: n (p - t)^2 > z^2 t (1 - t)."""
    z = NormalDist().inv_cdf((1 + level) / 2)
    return z * z * t * (1 - t) / (p - t) ** 2


# ------------------------------------------------------------------------------------ worked examples


def test_issue_example_small_sample_high_score_is_not_a_pass():
    # n=25 at 0.96: the interval reaches down to ~0.80, far below the 0.95 floor.
    verdict = judge_arm(arm(24, 25), NO_REF, GATE)
    assert verdict.verdict == "inconclusive"
    assert verdict.interval == pytest.approx([0.8046, 0.9929], abs=1e-3)
    assert verdict.records_needed == math.floor(closed_form_needed(0.96, 0.95, 0.95)) + 1
    assert "inconclusive" in verdict.reason and "1,825" in verdict.reason


def test_issue_example_large_sample_just_below_the_floor_is_inconclusive_not_fail():
    # n=2000 at 0.949: 0.95 is inside (0.939, 0.958) — neither shown to be within 5 points nor not.
    verdict = judge_arm(arm(1898, 2000), NO_REF, GATE)
    assert verdict.verdict == "inconclusive"
    assert verdict.interval == pytest.approx([0.9385, 0.9578], abs=1e-3)
    assert verdict.records_needed > 100_000
    # At the records it asks for, the same agreement fails (0.949 < 0.95).
    decided, _ = agreement_verdict(0.949 * verdict.records_needed, verdict.records_needed, 0.95, 0.95)
    assert decided == "fail"


def test_clear_pass_and_clear_fail():
    assert judge_arm(arm(990, 1000), NO_REF, GATE).verdict == "pass"
    failed = judge_arm(arm(180, 200), NO_REF, GATE)
    assert failed.verdict == "fail" and "entirely below the floor 0.950" in failed.reason


def test_wilson_matches_the_existing_interval_implementation():
    for k, n in [(8, 10), (0, 7), (7, 7), (1898, 2000)]:
        assert wilson_interval(k, n) == pytest.approx(confidence_interval([1.0] * k + [0.0] * (n - k)))


def test_latency_and_cost_constraints_fail_a_slow_expensive_candidate():
    # The issue's example: 9 s at 20x the cost passed the old gate.
    gate = GateConfig(max_latency_p95_ratio=2.0, max_cost_ratio=1.0,
                      reference={"model_name": "prod", "cost_per_1k_tokens": 0.001, "latency_p95_ms": 800})
    ref = reference_from_config(gate, tokens_per_request=1000)
    slow = judge_arm(arm(995, 1000, latency_p95_ms=9000, tokens_per_request=1000, cost_per_1k_tokens=0.02), ref, gate)
    assert slow.verdict == "fail"
    assert {c.name for c in slow.constraints if c.status == "violated"} == {"latency_p95_vs_reference",
                                                                             "cost_vs_reference"}
    assert "20×" in slow.reason and "9,000 ms" in slow.reason
    fast = judge_arm(arm(995, 1000, latency_p95_ms=700, tokens_per_request=1000, cost_per_1k_tokens=0.0002),
                     ref, gate)
    assert fast.verdict == "pass" and "0.2×" in fast.reason


def test_icl_is_priced_on_the_tokens_it_sent():
    gate = GateConfig(max_cost_ratio=0.5, reference={"cost_per_1k_tokens": 0.001})
    ref = reference_from_config(gate, tokens_per_request=1000)
    base = arm(995, 1000, eval_type="base-eval", tokens_per_request=1000, cost_per_1k_tokens=0.0002)
    icl = arm(998, 1000, eval_type="icl-eval", tokens_per_request=4000, cost_per_1k_tokens=0.0002)
    report = evaluate_gate([base, icl], ref, gate)
    by_type = {v.eval_type: v for v in report.verdicts}
    assert by_type["base-eval"].verdict == "pass"
    assert by_type["icl-eval"].verdict == "fail"  # 0.8x the reference's cost; the limit is 0.5x
    assert by_type["icl-eval"].cost_per_1k_requests == pytest.approx(4 * by_type["base-eval"].cost_per_1k_requests)
    assert report.recommendation == "cand/base-eval"


def test_missing_latency_under_a_latency_limit_is_inconclusive():
    gate = GateConfig(max_latency_p95_ms=500)
    verdict = judge_arm(arm(1000, 1000), NO_REF, gate)
    assert verdict.agreement_verdict == "pass" and verdict.verdict == "inconclusive"
    assert "unknown" in verdict.reason


def test_mcnemar_exact_with_effect_sizes():
    a = {f"r{i}": 1.0 for i in range(30)}
    b = {f"r{i}": (0.0 if i < 10 else 1.0) for i in range(30)}
    b["extra"] = 1.0  # not shared: ignored
    result = mcnemar("a", a, "b", b)
    assert result.n_paired == 30 and (result.a_only, result.b_only) == (10, 0)
    assert result.p_value == pytest.approx(2 * 0.5 ** 10)
    assert result.difference == pytest.approx(10 / 30)
    assert result.odds_ratio == pytest.approx(10.5 / 0.5)
    assert result.significant and result.reason.startswith("a agrees more often than b")
    same = mcnemar("a", a, "a2", a)
    assert same.p_value == 1.0 and not same.significant and same.odds_ratio is None


def test_report_pairs_eval_types_and_models_and_recommends_the_cheapest_pass():
    ids = [f"r{i}" for i in range(400)]
    def outcomes(wrong: int) -> dict[str, float]:
        return {r: (0.0 if i < wrong else 1.0) for i, r in enumerate(ids)}
    arms = [
        Arm(model_name="small", eval_type="base-eval", successes=400 - 2, n=400, tokens_per_request=500,
            cost_per_1k_tokens=0.1, latency_p95_ms=300, outcomes=outcomes(2)),
        Arm(model_name="small", eval_type="icl-eval", successes=400 - 1, n=400, tokens_per_request=2000,
            cost_per_1k_tokens=0.1, latency_p95_ms=600, outcomes=outcomes(1)),
        Arm(model_name="big", eval_type="base-eval", successes=400 - 40, n=400, tokens_per_request=500,
            cost_per_1k_tokens=0.5, latency_p95_ms=900, outcomes=outcomes(40)),
    ]
    report = evaluate_gate(arms, NO_REF, GATE)
    assert [v.verdict for v in report.verdicts] == ["pass", "pass", "fail"]
    assert report.recommendation == "small/base-eval"
    assert {(p.a, p.b) for p in report.paired} == {("small/base-eval", "small/icl-eval"),
                                                  ("small/base-eval", "big/base-eval")}
    versus_big = next(p for p in report.paired if p.b == "big/base-eval")
    assert versus_big.significant and versus_big.difference == pytest.approx(38 / 400)
    assert set(report.frontier) == {"small/base-eval", "small/icl-eval"}  # big is dominated on every axis


def test_gate_config_is_validated_naming_the_field():
    with pytest.raises(ConfigError, match=r"gate\.metric"):
        validate_settings({"gate": {"metric": "acuracy"}})
    with pytest.raises(ConfigError, match=r"gate\.confidence"):
        validate_settings({"gate": {"confidence": 1.5}})
    with pytest.raises(ConfigError, match=r"gate\.reference\.cost_per_1k_tokens"):
        validate_settings({"gate": {"reference": {"cost_per_1k_tokens": -1}}})


# ------------------------------------------------------------------------------------ properties

proportions = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
levels = st.sampled_from([0.8, 0.9, 0.95, 0.99])
margins = st.floats(min_value=0.005, max_value=0.5)


@settings(max_examples=300, deadline=None)
@given(p=proportions, n=st.integers(1, 5000), extra=st.integers(1, 100_000), level=levels)
def test_more_data_never_widens_the_interval(p, n, extra, level):
    low1, high1 = wilson_interval(p * n, n, level)
    low2, high2 = wilson_interval(p * (n + extra), n + extra, level)
    assert high2 - low2 <= high1 - low1 + 1e-12


@settings(max_examples=300, deadline=None)
@given(k=st.integers(0, 3000), extra=st.integers(0, 3000), level=levels)
def test_interval_contains_the_estimate_and_stays_in_unit_range(k, extra, level):
    n = k + extra
    if n == 0:
        return
    low, high = wilson_interval(k, n, level)
    assert 0.0 <= low <= k / n + 1e-12 and k / n - 1e-12 <= high <= 1.0


@settings(max_examples=300, deadline=None)
@given(k=st.integers(0, 3000), extra=st.integers(0, 3000), level=levels, margin=margins)
def test_verdicts_agree_with_the_intervals(k, extra, level, margin):
    n = k + extra
    gate = GateConfig(confidence=level, max_drop_vs_reference=margin)
    verdict = judge_arm(arm(k, n), NO_REF, gate)
    floor = 1 - margin
    if n == 0:
        assert verdict.verdict == "inconclusive"
        return
    low, high = verdict.interval
    assert (verdict.verdict == "pass") == (low > floor)
    assert (verdict.verdict == "fail") == (high < floor)
    decidable = k / n != floor and closed_form_needed(k / n, floor, level) <= MAX_RECORDS
    assert (verdict.records_needed is not None) == (verdict.verdict == "inconclusive" and decidable)
    assert verdict.reason.startswith(f"cand/base-eval {'passes' if verdict.verdict == 'pass' else ''}".strip())


@settings(max_examples=200, deadline=5000)
@example(p=0.95 - 1e-12, n=5, level=0.95, margin=0.05)
@example(p=0.9499999, n=10, level=0.95, margin=0.05)
@given(p=proportions, n=st.integers(1, 3000), level=levels, margin=margins)
def test_records_needed_is_the_first_decisive_size(p, n, level, margin):
    # (hypothesis also reaches agreements a hair from the floor: the search must stay bounded there)
    floor = 1 - margin
    needed = records_needed(p, floor, level, have=n)
    if p == floor or closed_form_needed(p, floor, level) > MAX_RECORDS:
        assert needed is None  # no practical number of records decides
        return
    assert needed is not None and needed > n
    decided, _ = agreement_verdict(p * needed, needed, floor, level)
    assert decided == ("pass" if p > floor else "fail")
    if needed - 1 > n:
        assert agreement_verdict(p * (needed - 1), needed - 1, floor, level)[0] == "inconclusive"
    assert needed >= closed_form_needed(p, floor, level) - 1


@settings(max_examples=300, deadline=None)
@given(k=st.integers(900, 1000), latency=st.floats(1, 20_000), tokens=st.floats(1, 10_000),
       price=st.floats(0, 0.01), better_latency=st.floats(0, 1), better_cost=st.floats(0, 1))
def test_a_pass_stays_a_pass_when_latency_or_cost_improves(k, latency, tokens, price, better_latency, better_cost):
    gate = GateConfig(max_latency_p95_ratio=1.5, max_latency_p95_ms=10_000, max_cost_ratio=1.0,
                      reference={"cost_per_1k_tokens": 0.005, "latency_p95_ms": 5000})
    ref = reference_from_config(gate, tokens_per_request=1000)
    before = judge_arm(arm(k, 1000, latency_p95_ms=latency, tokens_per_request=tokens, cost_per_1k_tokens=price),
                       ref, gate)
    after = judge_arm(arm(k, 1000, latency_p95_ms=latency * better_latency, tokens_per_request=tokens,
                          cost_per_1k_tokens=price * better_cost), ref, gate)
    if before.verdict == "pass":
        assert after.verdict == "pass"
    if after.verdict == "fail":
        assert before.verdict == "fail"


@settings(max_examples=200, deadline=None)
@given(a=st.lists(st.sampled_from([0.0, 1.0]), min_size=0, max_size=60), data=st.data())
def test_mcnemar_is_symmetric(a, data):
    b = data.draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=len(a), max_size=len(a)))
    x = {str(i): v for i, v in enumerate(a)}
    y = {str(i): v for i, v in enumerate(b)}
    ab, ba = mcnemar("x", x, "y", y), mcnemar("y", y, "x", x)
    assert ab.p_value == pytest.approx(ba.p_value) and 0.0 <= ab.p_value <= 1.0
    assert (ab.a_only, ab.b_only) == (ba.b_only, ba.a_only)
    if ab.difference is not None:
        assert ab.difference == pytest.approx(-ba.difference)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 100), st.floats(0, 10), st.floats(1, 1000)), min_size=1, max_size=8))
def test_frontier_members_are_not_dominated_and_everyone_else_is(points):
    arms = [Arm(model_name=f"m{i}", eval_type="base-eval", successes=k, n=100, tokens_per_request=1000,
                cost_per_1k_tokens=cost, latency_p95_ms=latency) for i, (k, cost, latency) in enumerate(points)]
    verdicts = evaluate_gate(arms, NO_REF, GATE).verdicts
    frontier = set(pareto_frontier(verdicts))
    assert frontier
    def dominated(v):
        return any(o.agreement >= v.agreement and o.cost_per_1k_requests <= v.cost_per_1k_requests
                   and o.latency_p95_ms <= v.latency_p95_ms
                   and (o.agreement, o.cost_per_1k_requests, o.latency_p95_ms)
                   != (v.agreement, v.cost_per_1k_requests, v.latency_p95_ms) for o in verdicts)
    for v in verdicts:
        assert (v.key in frontier) == (not dominated(v))
