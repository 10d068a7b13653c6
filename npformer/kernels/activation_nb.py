"""Jitted feed-forward activations (twin: activation_np.py).

ReLU:  y = max(x, 0),  dx = dy * (x > 0).
GELU (tanh approximation, as in GPT-2):
  y  = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
  dx = dy * (0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3*0.044715 x^2))
Any shape in, the same shape out: the Python wrappers flatten to 1-D views,
the jitted loops walk the flat arrays, and the result is reshaped back.
"""
import math

import numpy as np
from numba import njit

from .exp_nb import fast_exp

GELU_C = math.sqrt(2.0 / math.pi)
GELU_A = 0.044715


@njit(cache=True)
def _relu_forward_flat(x):
    """Shapes: x (L,) -> y (L,)"""
    y = np.empty_like(x)  # (L,)
    for i in range(x.size):
        y[i] = 0.0 if x[i] < 0 else x[i]  # a NaN passes through, as in np.maximum
    return y


@njit(cache=True)
def _relu_backward_flat(dy, x):
    """Shapes: dy (L,), x (L,) -> dx (L,)"""
    dx = np.empty_like(x)  # (L,)
    for i in range(x.size):
        dx[i] = dy[i] if x[i] > 0 else 0.0
    return dx


@njit(cache=True)
def _tanh(u):
    """tanh(u) = sign(u) (1 - e) / (1 + e),  e = exp(-2|u|) in (0, 1].

    Same function as math.tanh to a few ulps (absolute error), but faster: built on
    fast_exp (exp_nb.py), the loop vectorises, where math.tanh is a scalar libm call.
    Using -2|u| means exp never overflows.
    """
    e = fast_exp(-2 * abs(u))
    return math.copysign((1.0 - e) / (1.0 + e), u)


@njit(cache=True)
def _gelu_forward_flat(x):
    """Shapes: x (L,) -> y (L,)"""
    y = np.empty_like(x)  # (L,)
    for i in range(x.size):
        xi = x[i]
        u = GELU_C * (xi + GELU_A * xi * xi * xi)
        y[i] = 0.5 * xi * (1.0 + _tanh(u))
    return y


@njit(cache=True)
def _gelu_backward_flat(dy, x):
    """Shapes: dy (L,), x (L,) -> dx (L,)"""
    dx = np.empty_like(x)  # (L,)
    for i in range(x.size):
        xi = x[i]
        u = GELU_C * (xi + GELU_A * xi * xi * xi)
        t = _tanh(u)
        du = GELU_C * (1.0 + 3.0 * GELU_A * xi * xi)  # du/dx
        dx[i] = dy[i] * (0.5 * (1.0 + t) + 0.5 * xi * (1.0 - t * t) * du)
    return dx


def _flat(a, dtype=None):
    """A contiguous 1-D view (a copy only if `a` is strided or of another dtype)."""
    return np.ascontiguousarray(a, dtype=dtype).reshape(-1)  # (...) -> (L,)


def _check_same_shape(dy, x):
    if dy.shape != x.shape:
        raise ValueError(f"dy shape {dy.shape} != x shape {x.shape}")


def relu_forward(x):
    """ReLU. Shapes: x (...) -> y (...)"""
    return _relu_forward_flat(_flat(x)).reshape(x.shape)  # (L,) -> (...)


def relu_backward(dy, x):
    """ReLU gradient. Shapes: dy (...), x (...) -> dx (...)"""
    _check_same_shape(dy, x)
    return _relu_backward_flat(_flat(dy, x.dtype), _flat(x)).reshape(x.shape)  # (L,) -> (...)


def gelu_forward(x):
    """GELU, tanh approximation. Shapes: x (...) -> y (...)"""
    return _gelu_forward_flat(_flat(x)).reshape(x.shape)  # (L,) -> (...)


def gelu_backward(dy, x):
    """GELU gradient. Shapes: dy (...), x (...) -> dx (...)"""
    _check_same_shape(dy, x)
    return _gelu_backward_flat(_flat(dy, x.dtype), _flat(x)).reshape(x.shape)  # (L,) -> (...)
