"""Position-wise feed-forward network: the same two-layer MLP at every position.

  h = x W_1 + b_1,  a = act(h),  y = a W_2 + b_2
Shapes: x (...,C), W_1 (C,F), b_1 (F,), W_2 (F,C), b_2 (C,).
The activation output `a` is recomputed from `h` in backward (cheap) instead of
being stored. Derivation: docs/derivations/linear.md (two linear layers and an
elementwise non-linearity).
"""
from typing import NamedTuple

import numpy as np

from .. import kernels


def _activation(name):
    """(forward, backward) kernels of the activation called `name` ("relu" or "gelu")."""
    if name == "gelu":
        return kernels.gelu_forward, kernels.gelu_backward
    return kernels.relu_forward, kernels.relu_backward


class FFNCache(NamedTuple):
    x: np.ndarray  # (N,C)
    h: np.ndarray  # (N,F) pre-activation
    W_1: np.ndarray
    W_2: np.ndarray
    activation: str


def ffn_forward(x, W_1, b_1, W_2, b_2, activation="relu"):
    """Shapes: x (...,C) -> y (...,C)"""
    act_forward, _ = _activation(activation)
    x2 = x.reshape(-1, x.shape[-1])  # (...,C) -> (N,C)
    h = kernels.matmul(x2, W_1)  # (N,C) @ (C,F) -> (N,F)
    h += b_1
    a = act_forward(h)  # (N,F)
    y = kernels.matmul(a, W_2)  # (N,F) @ (F,C) -> (N,C)
    y += b_2
    return y.reshape(x.shape), FFNCache(x2, h, W_1, W_2, activation)  # (N,C) -> (...,C)


def ffn_backward(dy, cache):
    """Shapes: dy (...,C) -> dx (...,C), dW_1 (C,F), db_1 (F,), dW_2 (F,C), db_2 (C,)"""
    x2, h, W_1, W_2, activation = cache
    act_forward, act_backward = _activation(activation)
    dy2 = dy.reshape(-1, dy.shape[-1])  # (...,C) -> (N,C)
    a = act_forward(h)  # (N,F) recomputed
    dW_2 = kernels.matmul(a.T, dy2)  # (F,N) @ (N,C) -> (F,C)
    db_2 = dy2.sum(axis=0)  # (C,)
    da = kernels.matmul(dy2, W_2.T)  # (N,C) @ (C,F) -> (N,F)
    dh = act_backward(da, h)  # (N,F)
    dW_1 = kernels.matmul(x2.T, dh)  # (C,N) @ (N,F) -> (C,F)
    db_1 = dh.sum(axis=0)  # (F,)
    dx = kernels.matmul(dh, W_1.T).reshape(dy.shape)  # (N,F) @ (F,C) -> (N,C) -> (...,C)
    return dx, dW_1, db_1, dW_2, db_2
