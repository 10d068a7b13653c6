"""Inverted dropout from a counter-based random mask (twin of dropout_nb.py).

The mask is a pure function of (key, element index): element i is kept when
    hash(i, key) >= rate * 2^32,   hash = mix(mix(i + key_lo) ^ key_hi)
with `mix` a 32-bit integer hash (xor-shifts and odd multiplications, the
"lowbias32" constants of Chris Wellons' hash prospector) and key_lo, key_hi the
two 32-bit halves of a 64-bit key. So the mask never has to be stored: the
backward pass calls the same function with the same key on dy, and gets
dx = dy * mask. Kept elements are scaled by 1 / (1 - rate).
Shapes: any; element i is the i-th in C order.
"""
import numpy as np

M32 = 0xFFFFFFFF


def _mix(h):
    """32-bit integer hash of each element (uint32 arithmetic wraps modulo 2^32). Shapes: (L,) -> (L,)"""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x7FEB352D)
    h = h ^ (h >> np.uint32(15))
    h = h * np.uint32(0x846CA68B)
    return h ^ (h >> np.uint32(16))


def threshold_and_scale(rate, dtype):
    """(uint32 threshold, kept-element scale in dtype) of a dropout rate in [0, 1)."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    return np.uint32(min(round(rate * 2.0**32), M32)), np.dtype(dtype).type(1.0 / (1.0 - rate))


def keep_mask(size, rate, key):
    """Which of `size` elements dropout keeps under `key`. Shapes: -> (size,) bool"""
    threshold, _ = threshold_and_scale(rate, np.float32)
    i = np.arange(size, dtype=np.uint32)  # the counter
    h = _mix(_mix(i + np.uint32(key & M32)) ^ np.uint32((key >> 32) & M32))  # (size,) uint32
    return h >= threshold


def dropout(x, rate, key):
    """x * mask / (1 - rate), the mask drawn from `key`. Shapes: x (...) -> y (...)"""
    x = np.asarray(x)
    _, scale = threshold_and_scale(rate, x.dtype)
    keep = keep_mask(x.size, rate, key).reshape(x.shape)  # (...) bool
    return np.where(keep, x * scale, x.dtype.type(0))
