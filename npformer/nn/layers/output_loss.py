"""Output projection + cross-entropy as one op, a block of rows at a time.

The training loss never needs the whole (N,V) logits tensor: each row's loss and
gradient depend on that row alone. So the op walks the rows in blocks of R:
  logits_r  = x_r E^T + b                     (R,V), stays in the CPU cache
  loss_r, dlogits_r = softmax + cross-entropy (the fused kernel, layers/loss.py)
  dx_r  = dlogits_r E,   dE += dlogits_r^T x_r,   db += sum_rows dlogits_r
and keeps only dx, dE, db (the sizes of x, E and b) for the backward pass, which
scales them by the upstream gradient. The unfused pair (layers/linear.py
tied_linear_*, then layers/loss.py cross_entropy_*) computes the same numbers
and is what the tests compare this op with; `Model.logits` still uses it.
Each block's kernel averages over its own counted rows; the block's weight
n_r / n_valid turns that into the batch mean.
Shapes: N rows (B*T), C d_model, V vocab, R = ROWS_PER_BLOCK.
Tied output (E = the target embedding, (V,C)); untied: W (C,V), used as E = W^T.
Derivation: docs/derivations/cross_entropy.md and docs/derivations/linear.md.
"""
from typing import NamedTuple

import numpy as np

from .. import kernels

# Rows per block: with 256, a (256, V) block of float32 logits is 1 MiB at V=1000 and
# 8 MiB at V=8000. Measured (CPU time, one (N,V) step, this machine): 256 was best or
# tied at all three benchmark sizes (docs/performance.md).
ROWS_PER_BLOCK = 256


class OutputLossCache(NamedTuple):
    dx: np.ndarray  # (...,C) d(mean loss)/dx, computed in the forward pass
    dW: np.ndarray  # (V,C) tied, or (C,V) untied
    db: np.ndarray  # (V,)


def output_loss_forward(x, W, b, targets, ignore_id=0, smoothing=0.0, tied=True, grad=True,
                        rows_per_block=ROWS_PER_BLOCK):
    """Mean smoothed cross-entropy of `targets` under softmax(x E^T + b).

    tied: W is E (V,C) (weight tying); else W is (C,V). grad=False skips the
    gradients (evaluation) and returns cache None.
    Shapes: x (...,C), targets (...) int -> loss () 0-d array
    """
    E = W if tied else W.T  # (V,C), a view when untied
    C, V = E.shape[1], E.shape[0]
    x2 = x.reshape(-1, C)  # (...,C) -> (N,C)
    t = np.asarray(targets).reshape(-1)  # (...) -> (N,)
    if t.shape[0] != x2.shape[0]:
        raise ValueError(f"targets shape {np.shape(targets)} does not match x {x.shape}")
    n_valid = int(np.count_nonzero(t != ignore_id))
    dx = np.zeros_like(x2) if grad else None  # (N,C)
    dE = np.zeros_like(E) if grad else None  # (V,C)
    db = np.zeros(V, np.float64) if grad else None  # (V,) accumulated in float64
    loss = 0.0
    for r0 in range(0, x2.shape[0], rows_per_block):
        r1 = min(r0 + rows_per_block, x2.shape[0])
        x_r = x2[r0:r1]  # (R,C)
        logits = kernels.matmul(x_r, E.T)  # (R,C) @ (C,V) -> (R,V)
        logits += b
        loss_r, n_r, dlogits = kernels.cross_entropy_forward_backward(
            logits, t[r0:r1], ignore_id, smoothing)  # mean over the block's rows, (R,V)
        if n_r == 0:
            continue  # all padding: no loss, no gradient
        w = n_r / max(n_valid, 1)  # block mean -> batch mean
        loss += loss_r * w
        if grad:
            w = x2.dtype.type(w)
            dx[r0:r1] = kernels.matmul(dlogits, E)  # (R,V) @ (V,C) -> (R,C)
            dx[r0:r1] *= w
            dE += kernels.matmul(dlogits.T, x_r * w)  # (V,R) @ (R,C) -> (V,C)
            db += float(w) * dlogits.sum(axis=0, dtype=np.float64)  # (R,V) -> (V,)
    out = np.asarray(loss, dtype=x.dtype)  # () 0-d
    if not grad:
        return out, None
    return out, OutputLossCache(dx.reshape(x.shape), dE if tied else dE.T, db.astype(x.dtype))


def output_loss_backward(dloss, cache):
    """Shapes: dloss () -> dx (...,C), dW (V,C) or (C,V), db (V,), None for the targets"""
    s = float(dloss)
    if s == 1.0:  # the common case: no extra passes
        return cache.dx, cache.dW, cache.db, None
    t = cache.dx.dtype.type(s)
    return cache.dx * t, cache.dW * t, cache.db * t, None
