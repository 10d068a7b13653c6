"""Pooling: one vector per sequence, for a classification head.

Shapes: B batch, T sequence length, C d_model.
Every pooling here is a weighted sum over positions with weights fixed by the
token ids, so one forward/backward pair serves all three:
  mean   w_bt = 1/n_b on the n_b real (non-padding) tokens of row b
  first  w_b0 = 1: the BOS position (BERT's [CLS] vector)
  last   w_bt = 1 at the last real token (GPT's classifier reads the end of the text;
         with a causal mask it is the only position that has seen every token)
  before_eos  w_bt = 1 at the token before the last: with inputs [BOS] text [EOS], the
         text's own last token. A language model never reads EOS as an input (it is
         only ever a target), so a body pretrained as an LM has learned nothing about
         the state at EOS; this position it has read, and it has seen the whole text
         (notebook 11 measures the difference)
  y_b = sum_t w_bt x_bt        dx_bt = w_bt dy_b
Derivation: docs/derivations/linear.md (a weighted sum is a linear map).
"""
from typing import NamedTuple

import numpy as np


class PoolCache(NamedTuple):
    weights: np.ndarray  # (B,T) the weight of each position


def pool_weights(key_ok, mode, dtype):
    """The pooling weights of a batch. Shapes: key_ok (B,T) bool (True = real token) -> (B,T)"""
    key_ok = np.asarray(key_ok, dtype=bool)
    B, T = key_ok.shape
    w = np.zeros((B, T), dtype)
    if mode == "mean":
        w[...] = key_ok / np.maximum(key_ok.sum(axis=1, keepdims=True), 1)  # (B,T)
    elif mode == "first":
        w[:, 0] = 1.0
    elif mode in ("last", "before_eos"):
        last = T - 1 - np.argmax(key_ok[:, ::-1], axis=1)  # (B,) index of the last real token
        if mode == "before_eos":
            last = np.maximum(last - 1, 0)  # (B,) the one before it (BOS for an empty text)
        w[np.arange(B), last] = 1.0
    else:
        raise ValueError(f"pooling {mode!r}: choose mean, first, last or before_eos")
    return w


def pool_forward(x, weights):
    """Weighted sum over positions. Shapes: x (B,T,C), weights (B,T) -> y (B,C)"""
    y = np.matmul(weights[:, None, :], x)[:, 0, :]  # (B,1,T) @ (B,T,C) -> (B,1,C) -> (B,C)
    return y, PoolCache(weights)


def pool_backward(dy, cache):
    """Shapes: dy (B,C) -> dx (B,T,C), None for the (fixed) weights"""
    dx = cache.weights[:, :, None] * dy[:, None, :]  # (B,T,1) * (B,1,C) -> (B,T,C)
    return dx, None
