"""Cross-entropy loss over the vocabulary, with label smoothing and ignored padding.

Shapes: B batch, T target length, V vocab.
The kernel computes the mean loss over non-padding positions and dlogits in one
pass; the backward just scales the stored dlogits by the upstream gradient.
Derivation: docs/derivations/cross_entropy.md.
"""
from typing import NamedTuple

import numpy as np

from .. import kernels


class CrossEntropyCache(NamedTuple):
    dlogits: np.ndarray  # (B,T,V) d(mean loss)/d(logits), computed in the forward pass
    n_tokens: int  # number of non-padding targets the mean ran over


def cross_entropy_forward(logits, targets, ignore_id=0, smoothing=0.0):
    """Mean smoothed cross-entropy of the targets under softmax(logits).

    Shapes: logits (B,T,V), targets (B,T) int -> loss () 0-d array
    """
    V = logits.shape[-1]
    loss, n_valid, dlogits = kernels.cross_entropy_forward_backward(
        logits.reshape(-1, V), targets.reshape(-1), ignore_id, smoothing
    )  # (N,V), (N,) -> scalar, int, (N,V)
    return np.asarray(loss, dtype=logits.dtype), CrossEntropyCache(dlogits.reshape(logits.shape), n_valid)


def cross_entropy_backward(dloss, cache):
    """Shapes: dloss () -> dlogits (B,T,V), None for the targets"""
    if float(dloss) == 1.0:
        return cache.dlogits, None  # the common case: skip a (B,T,V) multiply
    return cache.dlogits * cache.dlogits.dtype.type(dloss), None
