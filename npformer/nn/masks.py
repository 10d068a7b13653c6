"""Attention masks: one convention for the whole code base.

A boolean mask is True where a query MAY attend to a key. Shapes are
(Bm, Tm, S) with Bm in {1, B} and Tm in {1, T}; the head axis is never
stored (every head sees the same mask). `additive` is the ONE function that
turns a boolean mask into the additive 0 / -inf form the softmax kernel adds
to the scores.

Shapes: B batch, T query length, S key length.
"""
import numpy as np


def padding_mask(ids, pad_id):
    """Keys that are real tokens (not padding) may be attended to.

    Shapes: ids (B,S) -> mask (B,1,S) bool
    """
    return (ids != pad_id)[:, None, :]  # (B,S) -> (B,1,S)


def causal_mask(t, offset=0):
    """Query i (position offset+i) may attend to key positions 0..offset+i, not the future.

    offset > 0 is generation with a key/value cache: the keys are the offset
    cached positions followed by the t new ones.
    Shapes: -> mask (1,T,offset+T) bool, lower triangular (T = t)
    """
    return np.tri(t, offset + t, k=offset, dtype=bool)[None]  # (T,T') -> (1,T,T')


def combine(a, b):
    """Both masks must allow a pair. Shapes broadcast: (Ba,Ta,S) & (Bb,Tb,S)."""
    return np.logical_and(a, b)


def additive(mask, dtype):
    """Boolean mask -> additive mask: 0 where allowed, -inf where not.

    Shapes: mask (Bm,Tm,S) bool -> (Bm,Tm,S) float
    """
    out = np.zeros(mask.shape, dtype=dtype)
    out[~mask] = -np.inf
    return out
