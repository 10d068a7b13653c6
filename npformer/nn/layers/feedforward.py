"""Position-wise feed-forward network: the same two-layer MLP at every position.

  h = x W_1 + b_1,  a = act(h),  y = a W_2 + b_2
Shapes: x (...,C), W_1 (C,F), b_1 (F,), W_2 (F,C), b_2 (C,).
ReLU (the default) is fused with the bias: one kernel writes a = max(h + b_1, 0)
over h, and the cache keeps `a`, whose positive entries are exactly where the
gradient flows; the backward masks da and sums db_1 in one pass. GELU keeps the
pre-activation h and recomputes a from it in the backward (cheap) instead of
storing both. Derivation: docs/derivations/linear.md (two linear layers and an
elementwise non-linearity).
"""
from typing import NamedTuple

import numpy as np

from .. import kernels


class FFNCache(NamedTuple):
    x: np.ndarray  # (N,C)
    act: np.ndarray  # (N,F) ReLU: its output a;  GELU: its input h
    W_1: np.ndarray
    W_2: np.ndarray
    activation: str


def ffn_forward(x, W_1, b_1, W_2, b_2, activation="relu"):
    """Shapes: x (...,C) -> y (...,C)"""
    x2 = x.reshape(-1, x.shape[-1])  # (...,C) -> (N,C)
    h = kernels.matmul(x2, W_1)  # (N,C) @ (C,F) -> (N,F)
    if activation == "relu":
        a = kernels.bias_relu_forward(h, b_1)  # max(h + b_1, 0), over h: (N,F)
        kept = a
    else:
        h += b_1
        a = kernels.gelu_forward(h)  # (N,F)
        kept = h
    y = kernels.matmul(a, W_2)  # (N,F) @ (F,C) -> (N,C)
    y += b_2
    return y.reshape(x.shape), FFNCache(x2, kept, W_1, W_2, activation)  # (N,C) -> (...,C)


def ffn_backward(dy, cache):
    """Shapes: dy (...,C) -> dx (...,C), dW_1 (C,F), db_1 (F,), dW_2 (F,C), db_2 (C,)"""
    x2, act, W_1, W_2, activation = cache
    dy2 = dy.reshape(-1, dy.shape[-1])  # (...,C) -> (N,C)
    a = act if activation == "relu" else kernels.gelu_forward(act)  # (N,F), GELU's recomputed
    dW_2 = kernels.matmul(a.T, dy2)  # (F,N) @ (N,C) -> (F,C)
    db_2 = dy2.sum(axis=0)  # (C,)
    da = kernels.matmul(dy2, W_2.T)  # (N,C) @ (C,F) -> (N,F)
    if activation == "relu":
        dh, db_1 = kernels.bias_relu_backward(da, a)  # (N,F) over da, (F,)
    else:
        dh = kernels.gelu_backward(da, act)  # (N,F)
        db_1 = dh.sum(axis=0)  # (F,)
    dW_1 = kernels.matmul(x2.T, dh)  # (C,N) @ (N,F) -> (C,F)
    dx = kernels.matmul(dh, W_1.T).reshape(dy.shape)  # (N,F) @ (F,C) -> (N,C) -> (...,C)
    return dx, dW_1, db_1, dW_2, db_2
