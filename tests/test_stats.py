"""npformer.tools.stats against values worked out by hand or by brute force."""
import math

import numpy as np
import pytest

from npformer.tools import stats


def test_normal_quantile_matches_known_values():
    for q, z in ((0.5, 0.0), (0.975, 1.959963985), (0.995, 2.575829304), (0.001, -3.090232306)):
        assert stats.normal_quantile(q) == pytest.approx(z, abs=1e-8)
    with pytest.raises(ValueError):
        stats.normal_quantile(1.0)


def test_wilson_interval_known_values_and_edges():
    low, high = stats.wilson_interval(0, 16)
    assert low == 0.0 and high == pytest.approx(0.1936, abs=1e-4)  # 0 of 16 still allows 19%
    low, high = stats.wilson_interval(50, 100)
    assert (low, high) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))
    low, high = stats.wilson_interval(16, 16)
    assert high == 1.0 and low == pytest.approx(1 - 0.1936, abs=1e-4)
    with pytest.raises(ValueError):
        stats.wilson_interval(3, 2)


def brute_binomial(k, n, p):
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1))


def test_binomial_test_equals_the_sum_of_the_tail():
    # the example: 11 of 16 right where chance is 1/2
    assert stats.binomial_test(11, 16, 0.5) == pytest.approx(6885 / 65536, rel=1e-10)
    for k, n, p in ((0, 10, 0.3), (7, 10, 0.3), (30, 40, 0.25), (40, 40, 0.9)):
        assert stats.binomial_test(k, n, p) == pytest.approx(brute_binomial(k, n, p), rel=1e-9)
    assert stats.binomial_test(3, 10, 0.3, "less") == pytest.approx(
        1 - brute_binomial(4, 10, 0.3), rel=1e-9)
    assert stats.binomial_test(5, 10, 0.5, "two-sided") == pytest.approx(1.0)
    assert stats.binomial_test(0, 10, 0.5, "two-sided") == pytest.approx(2 / 1024, rel=1e-9)
    assert stats.binomial_test(3, 5, 0.0) == 0.0 and stats.binomial_test(0, 5, 0.0) == 1.0


def test_mean_ci_uses_student_t():
    m, low, high = stats.mean_ci([1.0, 2.0, 3.0])  # sd 1, t(2) = 4.303
    assert m == 2.0 and high - m == pytest.approx(4.303 / math.sqrt(3), rel=1e-6)
    assert low == pytest.approx(2 * m - high)
    m, low, high = stats.mean_ci([5.0])
    assert m == 5.0 and math.isnan(low) and math.isnan(high)
    # many values: close to the normal interval
    x = np.random.default_rng(0).normal(size=200)
    m, low, high = stats.mean_ci(x)
    assert (high - low) / 2 == pytest.approx(1.972 * x.std(ddof=1) / math.sqrt(200), rel=2e-3)


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    small, large = rng.normal(size=20), rng.normal(size=2000)
    lo_s, hi_s = stats.bootstrap_ci(small)
    lo_l, hi_l = stats.bootstrap_ci(large)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5  # width ~ 1/sqrt(n): 10x more data, ~1/10
    # the bootstrap of a mean is close to the normal interval for large n
    assert hi_l - lo_l == pytest.approx(2 * 1.96 * large.std() / math.sqrt(2000), rel=0.1)


def test_paired_difference_and_permutation_test():
    a = np.array([0.80, 0.82, 0.79, 0.81, 0.83])
    b = a - 0.05 + np.array([0.01, -0.01, 0.0, 0.005, -0.005])
    d, low, high = stats.paired_diff_ci(a, b)
    assert d == pytest.approx(0.05) and low > 0.03 and high < 0.07
    assert stats.permutation_test(a, b, n_perm=2000) < 0.02  # 5 vs 5 apart: p = 2/252
    same = stats.permutation_test(a, a + 1e-9 * np.arange(5), n_perm=2000)
    assert same > 0.5
    with pytest.raises(ValueError):
        stats.paired_diff_ci([1, 2], [1, 2, 3])
