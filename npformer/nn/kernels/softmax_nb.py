"""Jitted fused scaled + masked softmax used by attention (twin: softmax_np.py).

Shapes: B batch, H heads, T query length, S key length.
`mask` is ADDITIVE (0 where attention is allowed, -inf where not) with shape
(Bm, Tm, S), Bm in {1, B}, Tm in {1, T}; it is broadcast over heads.

Forward, one row (b, h, t) at a time, never materialising the broadcast mask:
    z_s = scale * x_s + mask[b or 0, t or 0, s]
    y_s = exp(z_s - max_s z) / sum_s exp(z_s - max_s z)
A row whose keys are all masked (max z = -inf) gives all-zero probabilities.
Backward: dx = scale * y * (dy - sum(dy * y, last axis)).
Row sums are accumulated in float64.

exp is `fast_exp` (kernels/exp_nb.py): for float32 a polynomial LLVM can vectorise,
about 2x faster here than libm's scalar exp; for float64 libm.
fastmath: both loops use SAFE_FASTMATH (kernels/fastmath.py): 'reassoc' lets LLVM
vectorise the row sums (changing the order of a float64 sum of S terms, ~1e-16
relative). The 'nnan'/'ninf' flags are left out on purpose: they would let LLVM
assume the -inf mask entries never occur.
Derivation: docs/derivations/softmax.md.
"""

import numpy as np
from numba import njit

from .exp_nb import fast_exp
from .fastmath import SAFE_FASTMATH


@njit(cache=True, fastmath=SAFE_FASTMATH)
def _softmax_forward_rows(x, mask, scale):
    """Shapes: x (B,H,T,S), mask (Bm,Tm,S), both C-contiguous, one dtype -> y (B,H,T,S)"""
    B, H, T, S = x.shape
    Bm, Tm = mask.shape[0], mask.shape[1]
    y = np.empty_like(x)  # (B,H,T,S)
    for b in range(B):
        mb = b if Bm > 1 else 0  # a per-example mask (padding) or one shared by all
        for h in range(H):
            for t in range(T):
                mt = t if Tm > 1 else 0  # a per-query mask (causal) or one for all queries
                x_row = x[b, h, t]  # (S,)
                m_row = mask[mb, mt]  # (S,)
                y_row = y[b, h, t]  # (S,) written in place, pass by pass
                for s in range(S):
                    y_row[s] = scale * x_row[s] + m_row[s]  # z, kept in y for now
                zmax = y_row[0]  # in x's dtype, so float32 rows use float32 exp
                for s in range(1, S):
                    if y_row[s] > zmax:
                        zmax = y_row[s]
                if zmax == -np.inf:  # every key masked: zeros, not exp(-inf - -inf) = NaN
                    for s in range(S):
                        y_row[s] = 0.0
                    continue
                total = 0.0
                for s in range(S):
                    e = fast_exp(y_row[s] - zmax)  # masked keys: exp(-inf) = 0
                    y_row[s] = e
                    total += e
                inv_total = 1.0 / total
                for s in range(S):
                    y_row[s] *= inv_total
    return y


def softmax_forward(x, mask, scale):
    """Scaled, masked softmax over the last axis.

    Shapes: x (B,H,T,S), mask (Bm,Tm,S) additive -> y (B,H,T,S)
    """
    B, H, T, S = x.shape
    Bm, Tm, Sm = mask.shape
    if Bm not in (1, B) or Tm not in (1, T) or Sm != S:  # the loops would read out of bounds
        raise ValueError(f"mask shape {mask.shape} does not broadcast to scores {x.shape}")
    x = np.ascontiguousarray(x)
    mask = np.ascontiguousarray(mask, dtype=x.dtype)  # -inf stays -inf in float32
    # scale in x's dtype keeps float32 arithmetic (and expf) in float32
    return _softmax_forward_rows(x, mask, x.dtype.type(scale))


@njit(cache=True, fastmath=SAFE_FASTMATH)
def _softmax_backward_rows(dy, y, scale):
    """Shapes: dy (R,S), y (R,S), C-contiguous, one dtype -> dx (R,S)"""
    R, S = y.shape
    dx = np.empty_like(y)  # (R,S)
    for r in range(R):
        inner = 0.0  # sum_s dy_s * y_s, the gradient through the normalisation
        for s in range(S):
            inner += dy[r, s] * y[r, s]
        for s in range(S):
            dx[r, s] = scale * y[r, s] * (dy[r, s] - inner)
    return dx


def softmax_backward(dy, y, scale):
    """Gradient of the scaled softmax with respect to its unscaled input x.

    Shapes: dy (B,H,T,S), y (B,H,T,S) -> dx (B,H,T,S)
    """
    if dy.shape != y.shape:
        raise ValueError(f"dy shape {dy.shape} != y shape {y.shape}")
    S = y.shape[-1]
    y_rows = np.ascontiguousarray(y).reshape(-1, S)  # (B,H,T,S) -> (B*H*T,S)
    dy_rows = np.ascontiguousarray(dy, dtype=y.dtype).reshape(-1, S)  # (B,H,T,S) -> (B*H*T,S)
    dx = _softmax_backward_rows(dy_rows, y_rows, y.dtype.type(scale))
    return dx.reshape(y.shape)  # (B*H*T,S) -> (B,H,T,S)
