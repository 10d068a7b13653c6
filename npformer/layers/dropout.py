"""Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p).

At evaluation time the model simply does not call it. Randomness comes from the
numpy Generator passed in, so a seeded run is repeatable.
  y = x * m,  m = keep / (1-p)      dx = dy * m
"""
from typing import NamedTuple

import numpy as np


class DropoutCache(NamedTuple):
    scale_mask: np.ndarray  # (...) 0 or 1/(1-p), same shape as x


def dropout_forward(x, p, rng):
    """Shapes: x (...) -> y (...)"""
    keep = rng.random(x.shape, dtype=np.float32) >= p  # (...) bool
    scale_mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))  # (...)
    return x * scale_mask, DropoutCache(scale_mask)


def dropout_backward(dy, cache):
    """Shapes: dy (...) -> dx (...)"""
    return (dy * cache.scale_mask,)
