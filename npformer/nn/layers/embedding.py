"""Token embeddings and positional encodings.

Shapes: B batch, T sequence length, C d_model, V vocab, L max_len.
Token embedding: y[b,t] = scale * W[ids[b,t]]  (scale = sqrt(C) in the model, so
embeddings initialised with std C^-1/2 enter the residual stream at unit size).
Its gradient scatters rows of dy back to the ids that were looked up; a token
used twice receives both contributions (np.add.at, or the jitted scatter).
The padding id's row is used like any other row; its gradient is set to zero by
the model so padding never learns (see model.py).
Positional encoding: y = x + table[offset:offset+T], with the table a learned
(L,C) parameter (backward: dx, dtable) or the fixed sinusoid table (a constant:
`fixed_positional_backward` returns dx only). Derivation: docs/derivations/embedding.md.
"""
from typing import NamedTuple

import numpy as np

from .. import kernels


class EmbeddingCache(NamedTuple):
    ids: np.ndarray  # (B,T) int token ids
    vocab_size: int
    scale: float
    pad_id: int  # -1 for none


def embedding_forward(ids, W, scale=1.0, pad_id=-1):
    """Look up one row of W per token id and multiply by `scale`.

    Shapes: ids (B,T) int, W (V,C) -> y (B,T,C)
    """
    y = W[ids]  # (B,T) -> (B,T,C) (fancy indexing makes a copy)
    if scale != 1.0:
        y *= W.dtype.type(scale)
    return y, EmbeddingCache(ids, W.shape[0], scale, pad_id)


def embedding_backward(dy, cache):
    """Scatter-add dy into the looked-up rows.

    Shapes: dy (B,T,C) -> (None for ids, dW (V,C))
    """
    C = dy.shape[-1]
    dW = np.zeros((cache.vocab_size, C), dtype=dy.dtype)  # (V,C)
    dy2 = dy.reshape(-1, C)  # (B,T,C) -> (N,C)
    if cache.scale != 1.0:
        dy2 = dy2 * dy.dtype.type(cache.scale)
    kernels.embedding_backward(dW, cache.ids.reshape(-1), dy2)  # (V,C) += scatter of (N,C)
    if cache.pad_id >= 0:
        dW[cache.pad_id] = 0  # the padding row never receives gradient
    return None, dW


def sinusoidal_table(max_len, d_model, dtype=np.float32):
    """The fixed positional encodings of "Attention Is All You Need".

    table[pos, 2i] = sin(pos / 10000^(2i/C)), table[pos, 2i+1] = cos(pos / 10000^(2i/C)).
    Shapes: -> table (L,C)
    """
    pos = np.arange(max_len)[:, None]  # (L,1)
    i = np.arange(0, d_model, 2)[None, :]  # (1,C/2) even feature indices
    angle = pos / np.power(10000.0, i / d_model)  # (L,C/2)
    table = np.zeros((max_len, d_model))
    table[:, 0::2] = np.sin(angle)
    table[:, 1::2] = np.cos(angle[:, : d_model // 2])
    return table.astype(dtype)


class PositionalCache(NamedTuple):
    offset: int  # first position used
    length: int  # T, how many rows of the table were used
    table_shape: tuple  # (L,C)


def positional_forward(x, table, offset=0):
    """Add the encodings of positions offset..offset+T-1.

    Shapes: x (B,T,C), table (L,C) -> y (B,T,C)
    """
    T = x.shape[1]
    y = x + table[offset: offset + T]  # (B,T,C) + (T,C)
    return y, PositionalCache(offset, T, table.shape)


def positional_backward(dy, cache):
    """Gradients for a learned table.

    Shapes: dy (B,T,C) -> dx (B,T,C), dtable (L,C) (zero outside the rows used)
    """
    dtable = np.zeros(cache.table_shape, dtype=dy.dtype)  # (L,C)
    dtable[cache.offset: cache.offset + cache.length] = dy.sum(axis=0)  # (B,T,C) -> (T,C)
    return dy, dtable


def fixed_positional_backward(dy, cache):
    """Gradient for a fixed table (a constant): the input's only. Shapes: dy (B,T,C) -> dx"""
    return (dy,)
