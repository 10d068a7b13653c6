"""Linear (affine) layers.

Shapes: leading axes (...) are flattened to N rows; Cin, Cout features.
  y = x W + b        dx = dy W^T,  dW = x^T dy,  db = sum_rows dy
Derivation: docs/derivations/linear.md.
"""
from typing import NamedTuple

import numpy as np

from .. import kernels


class LinearCache(NamedTuple):
    x: np.ndarray  # (...,Cin) the input, needed for dW
    W: np.ndarray  # (Cin,Cout) the weight, needed for dx


def linear_forward(x, W, b):
    """Affine map of the last axis.

    Shapes: x (...,Cin), W (Cin,Cout), b (Cout,) -> y (...,Cout)
    """
    x2 = x.reshape(-1, x.shape[-1])  # (...,Cin) -> (N,Cin)
    y = kernels.matmul(x2, W)  # (N,Cin) @ (Cin,Cout) -> (N,Cout)
    y += b
    return y.reshape(x.shape[:-1] + (W.shape[1],)), LinearCache(x, W)  # (N,Cout) -> (...,Cout)


def linear_backward(dy, cache):
    """Gradients of the affine map.

    Shapes: dy (...,Cout) -> dx (...,Cin), dW (Cin,Cout), db (Cout,)
    """
    x, W = cache
    dy2 = dy.reshape(-1, dy.shape[-1])  # (...,Cout) -> (N,Cout)
    x2 = x.reshape(-1, x.shape[-1])  # (...,Cin) -> (N,Cin)
    dx = kernels.matmul(dy2, W.T).reshape(x.shape)  # (N,Cout) @ (Cout,Cin) -> (N,Cin) -> (...,Cin)
    dW = kernels.matmul(x2.T, dy2)  # (Cin,N) @ (N,Cout) -> (Cin,Cout)
    db = dy2.sum(axis=0)  # (N,Cout) -> (Cout,)
    return dx, dW, db


def tied_linear_forward(x, E, b):
    """Output projection that reuses an embedding matrix E (weight tying): y = x E^T + b.

    Shapes: x (...,C), E (V,C), b (V,) -> y (...,V)
    """
    x2 = x.reshape(-1, x.shape[-1])  # (...,C) -> (N,C)
    y = kernels.matmul(x2, E.T)  # (N,C) @ (C,V) -> (N,V)
    y += b
    return y.reshape(x.shape[:-1] + (E.shape[0],)), LinearCache(x, E)  # (N,V) -> (...,V)


def tied_linear_backward(dy, cache):
    """Gradients of the tied projection; dE has the embedding's shape (V,C).

    Shapes: dy (...,V) -> dx (...,C), dE (V,C), db (V,)
    """
    x, E = cache
    dy2 = dy.reshape(-1, dy.shape[-1])  # (...,V) -> (N,V)
    x2 = x.reshape(-1, x.shape[-1])  # (...,C) -> (N,C)
    dx = kernels.matmul(dy2, E).reshape(x.shape)  # (N,V) @ (V,C) -> (N,C) -> (...,C)
    dE = kernels.matmul(dy2.T, x2)  # (V,N) @ (N,C) -> (V,C)
    db = dy2.sum(axis=0)  # (N,V) -> (V,)
    return dx, dE, db
