"""Inverted dropout: zero each element with probability `rate`, scale the rest by 1/(1-rate).

At evaluation time the model simply does not call it.
  y = x * m,  m = keep / (1-rate)      dx = dy * m
The mask comes from a counter-based generator (kernels/dropout_np.py): it is a
function of one 64-bit key, drawn from the numpy Generator passed in (so a
seeded run is repeatable), and the element's index. The cache holds just the
key: the backward pass regenerates the same mask instead of storing it.
"""
from typing import NamedTuple

from .. import kernels


class DropoutCache(NamedTuple):
    rate: float  # probability of dropping an element
    key: int  # the mask's key: the backward regenerates the mask from it


def dropout_forward(x, rate, rng):
    """Shapes: x (...) -> y (...)"""
    key = int(rng.integers(2**63))  # one draw per call: the whole mask follows from it
    return kernels.dropout(x, rate, key), DropoutCache(rate, key)


def dropout_backward(dy, cache):
    """Shapes: dy (...) -> dx (...)"""
    return (kernels.dropout(dy, cache.rate, cache.key),)  # the same mask, applied to dy
