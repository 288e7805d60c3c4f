import pytest

from flywheel.stats import (
    confidence_interval,
    cost_per_1k_requests,
    latency_percentiles,
    mcnemar_exact,
)


def test_wilson_known_value():
    lo, hi = confidence_interval([1] * 8 + [0] * 2, method="wilson")
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)


def test_wilson_extremes_stay_in_unit_interval():
    lo, hi = confidence_interval([1] * 20)
    assert hi == 1.0 and 0.8 < lo < 1.0
    assert confidence_interval([]) == (0.0, 1.0)


def test_bootstrap_is_seeded_and_contains_mean():
    values = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1] * 5
    a = confidence_interval(values, method="bootstrap", seed=7)
    assert a == confidence_interval(values, method="bootstrap", seed=7)
    assert a[0] < 0.7 < a[1]


def test_mcnemar_exact():
    # 10 discordant pairs all favouring a: p = 2 * 0.5**10
    a = [1] * 10 + [1] * 5
    b = [0] * 10 + [1] * 5
    assert mcnemar_exact(a, b) == pytest.approx(2 * 0.5 ** 10)
    assert mcnemar_exact(a, a) == 1.0
    assert mcnemar_exact([1, 0], [0, 1]) == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact([1], [1, 0])


def test_latency_percentiles():
    assert latency_percentiles(list(range(1, 101))) == (pytest.approx(50.5), pytest.approx(95.05))
    assert latency_percentiles([]) == (None, None)


def test_cost_per_1k_requests():
    # 10 requests, 1500 tokens in all = 150 tokens each; 1000 requests = 150k tokens = 150 × $0.002
    assert cost_per_1k_requests(1000, 500, 10, 0.002) == pytest.approx(0.3)
    assert cost_per_1k_requests(0, 0, 0, 1.0) is None


