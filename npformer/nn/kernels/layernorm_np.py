"""NumPy twins of layer normalisation over the last axis.

Shapes: N rows (B*T), C features.
Forward:  mean = x.mean(-1), rstd = 1/sqrt(var + eps), xhat = (x - mean) * rstd,
          y = gamma * xhat + beta.
Backward: dbeta = sum_rows dy, dgamma = sum_rows dy * xhat,
          dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  g = dy * gamma.
xhat is recomputed in backward from (x, mean, rstd) instead of being stored.
Derivation: docs/derivations/layernorm.md.
"""
import numpy as np


def layernorm_forward(x, gamma, beta, eps):
    """Layer norm of each row.

    Shapes: x (N,C), gamma (C,), beta (C,) -> y (N,C), mean (N,), rstd (N,)
    """
    mean = x.mean(axis=1)  # (N,C) -> (N,)
    xc = x - mean[:, None]  # (N,C)
    var = (xc * xc).mean(axis=1)  # (N,)
    rstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype)  # (N,)
    y = xc * rstd[:, None] * gamma + beta  # (N,C)
    return y.astype(x.dtype, copy=False), mean, rstd


def layernorm_backward(dy, x, mean, rstd, gamma):
    """Gradients of layer norm.

    Shapes: dy (N,C), x (N,C), mean (N,), rstd (N,), gamma (C,)
            -> dx (N,C), dgamma (C,), dbeta (C,)
    """
    xhat = (x - mean[:, None]) * rstd[:, None]  # (N,C), recomputed
    dbeta = dy.sum(axis=0)  # (N,C) -> (C,)
    dgamma = (dy * xhat).sum(axis=0)  # (N,C) -> (C,)
    g = dy * gamma  # (N,C)
    dx = rstd[:, None] * (
        g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True)
    )  # (N,C)
    return dx.astype(x.dtype, copy=False), dgamma, dbeta
