"""The float32 `exp` of the jitted kernels, step by step in NumPy (twin of exp_nb.py).

    n = round(x / ln 2),  r = x - n ln 2  (|r| <= ln(2)/2, ln 2 in two parts)
    exp(x) = (1 + (r + r^2 (1/2! + ... + r^5/7!))) * 2^n,  2^n from its bits (n + 127) << 23
See exp_nb.py for why and for the error bound. float64 uses np.exp.
"""
import numpy as np

LOG2E = 1.4426950408889634  # 1 / ln 2
LN2_HI = 0.693145751953125  # ln 2 cut to 16 significant bits: n * LN2_HI is exact for |n| < 256
LN2_LO = 1.42860682030941723212e-6  # ln 2 - LN2_HI
EXP_LO = -87.0  # below: 0
EXP_HI = 88.72  # above: inf (float32 max is exp(88.7228))


def exp(x):
    """Elementwise exp; float32 by range reduction and a degree-7 polynomial. Shapes: x (...) -> y (...)"""
    x = np.asarray(x)
    if x.dtype != np.float32:
        return np.exp(x)
    f = np.float32
    xc = np.clip(x, f(EXP_LO), f(EXP_HI))  # (...)
    n = np.floor(xc * f(LOG2E) + f(0.5))  # nearest integer to x / ln 2
    r = (xc - n * f(LN2_HI)) - n * f(LN2_LO)  # |r| <= ln(2)/2
    q = np.full_like(r, f(1.0 / 5040.0))
    for c in (1 / 720, 1 / 120, 1 / 24, 1 / 6, 0.5):  # Horner: q = 1/2! + r/3! + ... + r^5/7!
        q = q * r + f(c)
    p = f(1.0) + (r + r * r * q)  # exp(r): the small part first, then one rounding
    with np.errstate(invalid="ignore"):  # NaN inputs: their n is garbage, fixed below
        two_n = ((n.astype(np.int32) + 127) << 23).view(np.float32)  # 2^n from its bit pattern
    y = p * two_n
    y[x > f(EXP_HI)] = np.inf
    y[x < f(EXP_LO)] = 0.0  # exp(-inf) = 0; NaN is neither > nor <, and stays NaN
    return y
