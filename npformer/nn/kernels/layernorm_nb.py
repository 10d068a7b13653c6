"""Jitted layer normalisation over the last axis (twin: layernorm_np.py).

Shapes: N rows (B*T), C features.
Forward, per row:  mean = sum(x)/C,  var = sum((x - mean)^2)/C,
                   rstd = 1/sqrt(var + eps),  xhat = (x - mean) * rstd,
                   y = gamma * xhat + beta.
Backward:          dbeta = sum_rows dy,  dgamma = sum_rows dy * xhat,
                   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  g = dy * gamma.
xhat is recomputed in backward from (x, mean, rstd) instead of being stored.
Row statistics and the dgamma/dbeta sums are accumulated in float64; results are
stored in the input dtype, like the twin.

fastmath, with SAFE_FASTMATH (kernels/fastmath.py): 'reassoc' lets LLVM vectorise the row sums
(forward ~4x, backward ~2x faster at C=256), changing only the order of float64
sums of C terms (~C * 1e-16 relative, far inside the float32 and float64 test
tolerances). 'nnan'/'ninf' are left out, so a NaN or inf input still shows up.
Derivation: docs/derivations/layernorm.md.
"""
import math

import numpy as np
from numba import njit

from .fastmath import SAFE_FASTMATH


@njit(cache=True, fastmath=SAFE_FASTMATH)
def _layernorm_forward_rows(x, gamma, beta, eps):
    """Normalise every row.

    Shapes: x (N,C), gamma (C,), beta (C,), C-contiguous, one dtype
            -> y (N,C), mean (N,), rstd (N,)
    """
    N, C = x.shape
    y = np.empty_like(x)  # (N,C)
    mean = np.empty(N, dtype=x.dtype)  # (N,)
    rstd = np.empty(N, dtype=x.dtype)  # (N,)
    for i in range(N):
        total = 0.0
        for j in range(C):
            total += x[i, j]
        m = total / C
        sq = 0.0  # two passes (x - mean)^2, not E[x^2] - mean^2, which cancels badly
        for j in range(C):
            d = x[i, j] - m
            sq += d * d
        r = 1.0 / math.sqrt(sq / C + eps)
        mean[i] = m
        rstd[i] = r
        for j in range(C):
            y[i, j] = gamma[j] * ((x[i, j] - m) * r) + beta[j]
    return y, mean, rstd


def layernorm_forward(x, gamma, beta, eps):
    """Layer norm of each row.

    Shapes: x (N,C), gamma (C,), beta (C,) -> y (N,C), mean (N,), rstd (N,)
    """
    if gamma.shape != (x.shape[1],) or beta.shape != (x.shape[1],):
        raise ValueError(f"gamma {gamma.shape} and beta {beta.shape} must be ({x.shape[1]},)")
    x = np.ascontiguousarray(x)
    gamma = np.ascontiguousarray(gamma, dtype=x.dtype)
    beta = np.ascontiguousarray(beta, dtype=x.dtype)
    return _layernorm_forward_rows(x, gamma, beta, float(eps))


@njit(cache=True, fastmath=SAFE_FASTMATH)
def _layernorm_backward_rows(dy, x, mean, rstd, gamma):
    """Gradients of every row.

    Shapes: dy (N,C), x (N,C), mean (N,), rstd (N,), gamma (C,), C-contiguous,
            one dtype -> dx (N,C), dgamma (C,) float64, dbeta (C,) float64
    """
    N, C = x.shape
    dx = np.empty_like(x)  # (N,C)
    dgamma = np.zeros(C, dtype=np.float64)  # (C,) summed over rows
    dbeta = np.zeros(C, dtype=np.float64)  # (C,)
    for i in range(N):
        m = mean[i]
        r = rstd[i]
        g_sum = 0.0  # sum_j g_j,          g = dy * gamma
        gx_sum = 0.0  # sum_j g_j * xhat_j
        for j in range(C):
            xhat = (x[i, j] - m) * r  # recomputed, not stored by forward
            g = dy[i, j] * gamma[j]
            g_sum += g
            gx_sum += g * xhat
            dbeta[j] += dy[i, j]
            dgamma[j] += dy[i, j] * xhat
        g_mean = g_sum / C
        gx_mean = gx_sum / C
        for j in range(C):
            xhat = (x[i, j] - m) * r
            g = dy[i, j] * gamma[j]
            dx[i, j] = r * (g - g_mean - xhat * gx_mean)
    return dx, dgamma, dbeta


def layernorm_backward(dy, x, mean, rstd, gamma):
    """Gradients of layer norm.

    Shapes: dy (N,C), x (N,C), mean (N,), rstd (N,), gamma (C,)
            -> dx (N,C), dgamma (C,), dbeta (C,)
    """
    N, C = x.shape
    if dy.shape != (N, C) or mean.shape != (N,) or rstd.shape != (N,) or gamma.shape != (C,):
        raise ValueError("layernorm_backward: expected dy (N,C), mean (N,), rstd (N,), gamma (C,) "
                         f"for x {x.shape}")
    x = np.ascontiguousarray(x)
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    mean = np.ascontiguousarray(mean, dtype=x.dtype)
    rstd = np.ascontiguousarray(rstd, dtype=x.dtype)
    gamma = np.ascontiguousarray(gamma, dtype=x.dtype)
    dx, dgamma, dbeta = _layernorm_backward_rows(dy, x, mean, rstd, gamma)
    return dx, dgamma.astype(x.dtype), dbeta.astype(x.dtype)  # float64 sums -> x's dtype
