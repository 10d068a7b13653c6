"""Inverted dropout: zero each element with probability `rate`, scale the rest by 1/(1-rate).

At evaluation time the model simply does not call it. Randomness comes from the
numpy Generator passed in, so a seeded run is repeatable.
  y = x * m,  m = keep / (1-rate)      dx = dy * m
"""
from typing import NamedTuple

import numpy as np


class DropoutCache(NamedTuple):
    scale_mask: np.ndarray  # (...) 0 or 1/(1-rate), same shape as x


def dropout_forward(x, rate, rng):
    """Shapes: x (...) -> y (...)"""
    keep = rng.random(x.shape, dtype=np.float32) >= rate  # (...) bool
    scale_mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - rate))  # (...)
    return x * scale_mask, DropoutCache(scale_mask)


def dropout_backward(dy, cache):
    """Shapes: dy (...) -> dx (...)"""
    return (dy * cache.scale_mask,)
