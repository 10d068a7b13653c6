"""NumPy twins of the feed-forward activations.

ReLU:  y = max(x, 0),  dx = dy * (x > 0).
GELU (tanh approximation, as in GPT-2):
  y  = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
  dx = dy * (0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3*0.044715 x^2))
Any shape in, the same shape out.
Fused with the feed-forward net's first bias (one pass over the (N,F) activations
instead of three, and the ReLU gradient from its output, so nothing is recomputed):
  bias_relu_forward:   a = max(h + b, 0), written over h
  bias_relu_backward:  dh = da * (a > 0), written over da;  db = sum over rows of dh
"""
import numpy as np

GELU_C = np.sqrt(2.0 / np.pi)
GELU_A = 0.044715


def relu_forward(x):
    """ReLU. Shapes: x (...) -> y (...)"""
    return np.maximum(x, 0)


def relu_backward(dy, x):
    """ReLU gradient. Shapes: dy (...), x (...) -> dx (...)"""
    return dy * (x > 0)


def gelu_forward(x):
    """GELU, tanh approximation. Shapes: x (...) -> y (...)"""
    u = GELU_C * (x + GELU_A * x**3)
    return (0.5 * x * (1.0 + np.tanh(u))).astype(x.dtype, copy=False)


def gelu_backward(dy, x):
    """GELU gradient. Shapes: dy (...), x (...) -> dx (...)"""
    u = GELU_C * (x + GELU_A * x**3)
    t = np.tanh(u)
    du = GELU_C * (1.0 + 3.0 * GELU_A * x * x)
    return (dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)).astype(x.dtype, copy=False)


def bias_relu_forward(h, b):
    """a = max(h + b, 0), overwriting h (the caller owns it). Shapes: h (N,F), b (F,) -> a (N,F)"""
    h += b  # (N,F) + (F,)
    np.maximum(h, 0, out=h)  # a NaN stays NaN
    return h


def bias_relu_backward(da, a):
    """Gradient of a = max(h + b, 0) from its output a, overwriting da.

    Shapes: da (N,F), a (N,F) -> dh (N,F), db (F,)
    """
    da[~(a > 0)] = 0  # (N,F): the gradient passes only where the ReLU was open
    return da, da.sum(axis=0, dtype=np.float64).astype(da.dtype)  # (N,F) -> (F,)
