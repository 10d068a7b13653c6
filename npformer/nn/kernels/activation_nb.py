"""Jitted feed-forward activations (twin: activation_np.py).

ReLU:  y = max(x, 0),  dx = dy * (x > 0).
GELU (tanh approximation, as in GPT-2):
  y  = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
  dx = dy * (0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3*0.044715 x^2))
Any shape in, the same shape out: the Python wrappers flatten to 1-D views,
the jitted loops walk the flat arrays, and the result is reshaped back.
Fused with the feed-forward net's first bias (see the twin): bias_relu_forward
writes max(h + b, 0) over h in one pass; bias_relu_backward masks da by a > 0 in
place and sums the bias gradient in the same pass (float64 accumulators).
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


@njit(cache=True)
def _bias_relu_forward_rows(h, b):
    """In place. Shapes: h (N,F), b (F,) -> h (N,F)"""
    N, F = h.shape
    for i in range(N):
        for j in range(F):
            v = h[i, j] + b[j]
            h[i, j] = 0.0 if v < 0 else v  # a NaN passes through, as in np.maximum
    return h


@njit(cache=True)
def _bias_relu_backward_rows(da, a):
    """In place on da. Shapes: da (N,F), a (N,F) -> dh (N,F), db (F,) float64"""
    N, F = da.shape
    db = np.zeros(F)  # (F,) float64 accumulators
    for i in range(N):
        for j in range(F):
            g = da[i, j] if a[i, j] > 0 else 0.0
            da[i, j] = g
            db[j] += g
    return da, db


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


def _check_rows(h, b):
    if h.ndim != 2 or b.shape != h.shape[1:]:
        raise ValueError(f"need h (N,F) and b (F,), got {h.shape} and {b.shape}")
    if not h.flags.c_contiguous or not h.flags.writeable:
        raise ValueError("h must be a writeable C-contiguous array (it is overwritten)")


def bias_relu_forward(h, b):
    """a = max(h + b, 0), overwriting h. Shapes: h (N,F), b (F,) -> a (N,F)"""
    _check_rows(h, b)
    return _bias_relu_forward_rows(h, np.ascontiguousarray(b, dtype=h.dtype))


def bias_relu_backward(da, a):
    """Gradient of a = max(h + b, 0) from its output, overwriting da.

    Shapes: da (N,F), a (N,F) -> dh (N,F), db (F,)
    """
    _check_rows(da, a[0])
    dh, db = _bias_relu_backward_rows(da, np.ascontiguousarray(a, dtype=da.dtype))
    return dh, db.astype(da.dtype)
