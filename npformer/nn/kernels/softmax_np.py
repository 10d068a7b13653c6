"""NumPy twins of the fused scaled + masked softmax used by attention.

Shapes: B batch, H heads, T query length, S key length.
`mask` is ADDITIVE (0 where attention is allowed, -inf where not) with shape
(Bm, Tm, S), Bm in {1, B}, Tm in {1, T}; it is broadcast over heads. It is
built from a boolean mask in exactly one place: `npformer.nn.masks.additive`.

Forward:  y = softmax(scale * x + mask) along the last axis.
A row whose keys are all masked gives all-zero probabilities (not NaN).
Backward: dx = scale * y * (dy - sum(dy * y, last axis)).
Derivation: docs/derivations/softmax.md.
"""
import numpy as np


def softmax_forward(x, mask, scale):
    """Scaled, masked softmax over the last axis.

    Shapes: x (B,H,T,S), mask (Bm,Tm,S) additive -> y (B,H,T,S)
    """
    z = x * scale + mask[:, None, :, :]  # (B,H,T,S) + (Bm,1,Tm,S) -> (B,H,T,S)
    zmax = z.max(axis=-1, keepdims=True)  # (B,H,T,1)
    zmax = np.where(np.isfinite(zmax), zmax, 0.0)  # fully masked rows stay finite
    e = np.exp(z - zmax)  # (B,H,T,S); exp(-inf) = 0 for masked keys
    total = e.sum(axis=-1, keepdims=True)  # (B,H,T,1)
    total = np.where(total > 0, total, 1.0)  # fully masked rows give zeros, not NaN
    return (e / total).astype(x.dtype, copy=False)


def softmax_backward(dy, y, scale):
    """Gradient of the scaled softmax with respect to its unscaled input x.

    Shapes: dy (B,H,T,S), y (B,H,T,S) -> dx (B,H,T,S)
    """
    inner = (dy * y).sum(axis=-1, keepdims=True)  # (B,H,T,1)
    return (scale * y * (dy - inner)).astype(y.dtype, copy=False)
