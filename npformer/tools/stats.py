"""Small statistics for the notebooks and benchmarks: intervals, tests, baselines.

A score on 100 prompts or a mean over 3 seeds is a noisy number; a claim that
one is better than another needs its uncertainty beside it. These few functions
cover what the notebooks use, in plain Python and NumPy (no SciPy):

  wilson_interval(k, n)          a proportion's confidence interval (k hits of n)
  binomial_test(k, n, p)         exact p-value of k or more hits when each is p (chance)
  mean_ci(values)                mean over seeds and its t-interval
  bootstrap_ci(values, stat)     percentile bootstrap interval of any statistic
  paired_diff_ci(a, b)           interval of mean(a - b) over paired runs (same seeds)
  permutation_test(a, b)         p-value of mean(a) - mean(b) under random relabelling

Every interval is two-sided at `level` (0.95 by default).
"""
import math

import numpy as np

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (beyond: 1.96 + 2.4/df
# is within 0.002 of the exact value). Only level 0.95 uses the table; other levels use the
# normal quantile, which is stated in mean_ci's docstring.
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
       2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
       2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def normal_quantile(q):
    """z with P(Z <= z) = q for a standard normal Z (Acklam's rational approximation, 1e-9)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q={q}: must be in (0, 1)")
    a = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
         1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00)
    b = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
         6.680131188771972e+01, -1.328068155288572e+01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
         -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
         3.754408661907416e+00)
    low = 0.02425
    if q < low or q > 1 - low:  # the tails
        r = math.sqrt(-2 * math.log(q if q < low else 1 - q))
        z = (((((c[0] * r + c[1]) * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5]) / \
            ((((d[0] * r + d[1]) * r + d[2]) * r + d[3]) * r + 1)
        return z if q < low else -z
    r = (q - 0.5) ** 2
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * (q - 0.5) / \
           (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)


def _check_level(level):
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level}: must be in (0, 1)")


def wilson_interval(k, n, level=0.95):
    """(low, high) for a proportion of k successes in n trials (Wilson score interval).

    Unlike mean +- 1.96 standard errors it stays inside [0, 1] and is not empty at
    k = 0 or k = n (0 of 16 right still allows up to 19%).
    """
    _check_level(level)
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"k={k}, n={n}: need 0 <= k <= n and n > 0")
    z = normal_quantile(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def binomial_test(k, n, p, alternative="greater"):
    """Exact p-value of seeing k successes in n trials if each succeeds with probability p.

    alternative "greater": P(X >= k) (is the score above chance?); "less": P(X <= k);
    "two-sided": the sum of the probabilities of outcomes no more likely than k.
    """
    if n <= 0 or not 0 <= k <= n or not 0.0 <= p <= 1.0:
        raise ValueError(f"k={k}, n={n}, p={p}: need 0 <= k <= n, n > 0, 0 <= p <= 1")
    if p in (0.0, 1.0):  # a degenerate chance level: the outcome is certain
        pmf = np.zeros(n + 1)
        pmf[0 if p == 0.0 else n] = 1.0
    else:
        i = np.arange(n + 1)
        log_pmf = (np.array([math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1)
                             for j in i]) + i * math.log(p) + (n - i) * math.log1p(-p))
        pmf = np.exp(log_pmf)
    if alternative == "greater":
        value = pmf[k:].sum()
    elif alternative == "less":
        value = pmf[: k + 1].sum()
    elif alternative == "two-sided":
        value = pmf[pmf <= pmf[k] * (1 + 1e-7)].sum()
    else:
        raise ValueError(f"alternative={alternative!r}: choose greater, less or two-sided")
    return float(min(1.0, value))


def mean_ci(values, level=0.95):
    """(mean, low, high): the mean of a few runs (seeds) and its Student-t interval.

    At level 0.95 the t quantile comes from a table; other levels use the normal
    quantile (too narrow for fewer than about 30 values). One value gives (v, nan, nan).
    """
    _check_level(level)
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("mean_ci of no values")
    m = float(x.mean())
    if x.size == 1:
        return m, math.nan, math.nan
    df = x.size - 1
    if level == 0.95:
        t = T95[df - 1] if df <= len(T95) else 1.96 + 2.4 / df
    else:
        t = normal_quantile(0.5 + level / 2)
    half = t * float(x.std(ddof=1)) / math.sqrt(x.size)
    return m, m - half, m + half


def bootstrap_ci(values, stat=np.mean, level=0.95, n_boot=2000, seed=0):
    """(low, high): percentile bootstrap interval of stat(values) (resampling the values).

    values: (n,) samples, or (n, ...) with stat applied along axis 0 of each resample.
    """
    _check_level(level)
    x = np.asarray(values)
    if x.shape[0] < 2:
        raise ValueError("bootstrap_ci needs at least 2 values")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, x.shape[0], size=(n_boot, x.shape[0]))  # (n_boot, n)
    stats = np.array([stat(x[p]) for p in picks])  # (n_boot, ...)
    tail = (1 - level) / 2
    low, high = np.quantile(stats, [tail, 1 - tail], axis=0)
    return low, high


def paired_diff_ci(a, b, level=0.95):
    """(mean difference, low, high) of a - b over paired runs (e.g. the same seeds)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal shapes, got {a.shape} and {b.shape}")
    return mean_ci(a - b, level)


def permutation_test(a, b, n_perm=10000, seed=0):
    """Two-sided p-value of |mean(a) - mean(b)| when the labels a/b are shuffled.

    Counts the observed labelling among the permutations ((hits + 1) / (n_perm + 1)),
    so the p-value is never 0.
    """
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError("permutation_test needs values in both groups")
    both = np.concatenate([a, b])
    observed = abs(a.mean() - b.mean())
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_perm):
        order = rng.permutation(both.size)
        diff = abs(both[order[: a.size]].mean() - both[order[a.size:]].mean())
        hits += diff >= observed - 1e-12
    return (hits + 1) / (n_perm + 1)
