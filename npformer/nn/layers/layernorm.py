"""Layer normalisation over the feature axis.

Shapes: x (...,C) is flattened to (N,C) for the kernel.
  y = gamma * (x - mean) / sqrt(var + eps) + beta
Derivation: docs/derivations/layernorm.md.
"""
from typing import NamedTuple

import numpy as np

from .. import kernels


class LayerNormCache(NamedTuple):
    x: np.ndarray  # (N,C) input rows; xhat is recomputed from it in backward
    mean: np.ndarray  # (N,)
    rstd: np.ndarray  # (N,) 1 / sqrt(var + eps)
    gamma: np.ndarray  # (C,)


def layernorm_forward(x, gamma, beta, eps=1e-5):
    """Normalise each vector to zero mean and unit variance, then scale and shift.

    Shapes: x (...,C), gamma (C,), beta (C,) -> y (...,C)
    """
    x2 = x.reshape(-1, x.shape[-1])  # (...,C) -> (N,C)
    y, mean, rstd = kernels.layernorm_forward(x2, gamma, beta, eps)  # (N,C), (N,), (N,)
    return y.reshape(x.shape), LayerNormCache(x2, mean, rstd, gamma)


def layernorm_backward(dy, cache):
    """Gradients of layer norm.

    Shapes: dy (...,C) -> dx (...,C), dgamma (C,), dbeta (C,)
    """
    dy2 = dy.reshape(cache.x.shape)  # (...,C) -> (N,C)
    dx, dgamma, dbeta = kernels.layernorm_backward(dy2, cache.x, cache.mean, cache.rstd, cache.gamma)
    return dx.reshape(dy.shape), dgamma, dbeta
