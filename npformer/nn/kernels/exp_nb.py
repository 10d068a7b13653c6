"""A vectorisable float32 `exp` for the jitted kernels (twin: exp_np.py).

Why: Numba has no SIMD math library on this machine, so `math.exp` inside a loop
is a scalar libm call (~7 ns per float32 value) and blocks vectorisation of the
whole loop. Softmax and the cross-entropy spend most of their time there. The
same function written from +, *, floor and an integer shift is ~12x faster,
because LLVM turns the loop into AVX2 code, 8 values at a time.

How (float32, Cody-Waite range reduction + Taylor polynomial):
    n = round(x / ln 2)                      x = n ln 2 + r,  |r| <= ln(2)/2
    r = (x - n * LN2_HI) - n * LN2_LO        ln 2 split in two so n * LN2_HI is exact
    exp(r) = 1 + (r + r^2 (1/2! + r/3! + ... + r^5/7!))   (Horner; 1 added last)
    exp(x) = exp(r) * 2^n                    2^n built from its bits: (n + 127) << 23
Error bound: the Taylor remainder is below (ln 2 / 2)^8 / 8! < 5e-9 relative,
far under float32's half-ulp (6e-8); with the rounding of each step, the measured
maximum relative error against float64 np.exp is 8.7e-8 (about 1 ulp) over
[-87, 88]; tests/test_kernels.py holds it below 2^-23 (EXP32_REL_TOL).
Edges: x < -87 gives 0 (exp(-87) = 1.6e-38 is at float32's smallest normal, and
exp(-inf), the masked attention entries, is exactly 0); x > 88.7 gives inf;
NaN stays NaN. exp32 may fuse a*b+c into one FMA but must not reassociate: that
would fold (x - n LN2_HI) - n LN2_LO back into x - n ln 2 and lose the split (the
error grew to 2.5 ulp when it did); for the same reason it is not inlined at
Numba level (`inline="always"` would give it the caller's fastmath flags).
float64 inputs use libm's exp (`math.exp`): float64 gradient checks keep full precision.
"""
import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from .exp_np import EXP_HI, EXP_LO, LN2_HI, LN2_LO, LOG2E  # the constants' one home
from .fastmath import SAFE_FASTMATH


@njit(cache=True, fastmath={"contract"})
def exp32(x):
    """exp of one float32 value, from arithmetic LLVM can vectorise (see module docstring)."""
    xc = min(max(x, np.float32(EXP_LO)), np.float32(EXP_HI))  # keeps 2^n a normal float32
    n = np.floor(xc * np.float32(LOG2E) + np.float32(0.5))  # nearest integer to x / ln 2
    r = (xc - n * np.float32(LN2_HI)) - n * np.float32(LN2_LO)  # |r| <= ln(2)/2
    q = np.float32(1.0 / 5040.0)  # Horner: q = 1/2! + r/3! + ... + r^5/7!
    q = q * r + np.float32(1.0 / 720.0)
    q = q * r + np.float32(1.0 / 120.0)
    q = q * r + np.float32(1.0 / 24.0)
    q = q * r + np.float32(1.0 / 6.0)
    q = q * r + np.float32(0.5)
    p = np.float32(1.0) + (r + r * r * q)  # exp(r): the small part first, then one rounding
    two_n = np.int32((np.int32(n) + 127) << 23).view(np.float32)  # 2^n from its bit pattern
    y = p * two_n
    if x > np.float32(EXP_HI):
        y = np.float32(np.inf)
    elif not x >= np.float32(EXP_LO):  # below the range, or NaN
        y = x if x != x else np.float32(0.0)  # NaN stays NaN; exp(-inf) = 0
    return y


def fast_exp(x):
    """exp(x) inside jitted code: exp32 for float32, libm for float64.

    Jitted callers get the typed version below, chosen at compile time; this body
    runs only with NUMBA_DISABLE_JIT=1.
    """
    return exp32(x) if isinstance(x, np.float32) else math.exp(x)


@overload(fast_exp, jit_options=dict(cache=True))
def _fast_exp_typed(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: exp32(x)
    return lambda x: math.exp(x)


@njit(cache=True, fastmath=SAFE_FASTMATH)
def _exp_flat(x):
    """Shapes: x (L,) -> y (L,)"""
    y = np.empty_like(x)  # (L,)
    for i in range(x.size):
        y[i] = fast_exp(x[i])
    return y


def exp(x):
    """Elementwise exp (float32: the vectorisable polynomial). Shapes: x (...) -> y (...)"""
    x = np.asarray(x)
    return _exp_flat(np.ascontiguousarray(x).reshape(-1)).reshape(x.shape)  # (L,) -> (...)
