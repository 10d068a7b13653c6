"""Multi-head attention = linear -> attention core -> linear, forward and backward.

Shapes: B batch, T query length, S key/value length, C d_model, H heads,
D head dim (C = H*D), G = B*H independent attention problems.

  self-attention:   [Q|K|V] = x W_qkv + b_qkv             one product, W_qkv (C,3C)
  cross-attention:  Q = x W_q + b_q,  [K|V] = memory W_kv + b_kv      W_kv (C,2C)
  split into H heads, then the attention core
                    P = softmax(Q K^T / sqrt(D) + mask)     (B,H,T,S)
                    ctx = P V                               (B,H,T,D)
  merge the heads,  y = ctx W_o + b_o
The projections are the linear layer (layers/linear.py) and its backward; the
packed weights are stored as ONE parameter, as nanoGPT's `c_attn` and llm.c's
`qkvw` are, so Q, K and V come out of one larger (faster) matrix product.
`mask` is the ADDITIVE (Bm,Tm,S) mask from npformer.nn.masks.additive. There is no
dropout on the attention weights (dropout is applied to the block outputs). The
weights P are kept in the cache so they can be plotted.
The heads are never copied out: `head_views` gives each head's (T,D) slice of the
packed projection as a strided view, the products read those views directly, and
the context (and in the backward d[Q|K|V]) is written straight into the merged
(B,T,C) layout, without copying heads out and back in (measured 20-35% faster per
attention core than with those copies, docs/performance.md).

Generation passes a `KVCache`: self-attention appends the new positions' keys
and values and attends over every position so far; cross-attention projects
the memory at the first step and reuses it after. Only the forward is used then.
Derivation: docs/derivations/attention.md.
"""
import math
from typing import NamedTuple

import numpy as np

from .. import kernels
from .linear import LinearCache, linear_backward, linear_forward


def head_views(x, n_heads, parts=1):
    """The heads of a (packed) projection as views: no copy.

    Shapes: x (B,T,parts*C) -> parts arrays (B,H,T,D), strided views into x
    """
    B, T, PC = x.shape
    D = PC // (parts * n_heads)
    x5 = x.reshape(B, T, parts, n_heads, D)  # (B,T,parts*C) -> (B,T,parts,H,D), a view
    return tuple(x5[:, :, i].transpose(0, 2, 1, 3) for i in range(parts))  # parts x (B,H,T,D)


# ------------------------------------------------------------------ attention core
class AttentionCoreCache(NamedTuple):
    q: np.ndarray  # (B,H,T,D)
    k: np.ndarray  # (B,H,S,D)
    v: np.ndarray  # (B,H,S,D)
    P: np.ndarray  # (B,H,T,S) attention weights (also what notebooks plot)


def attention_forward(q, k, v, mask, out=None):
    """Scaled dot-product attention over already split heads: ctx = softmax(Q K^T / sqrt(D) + mask) V.

    q, k, v may be strided views (head_views); ctx is written into `out` if given.
    Shapes: q (B,H,T,D), k (B,H,S,D), v (B,H,S,D), mask (Bm,Tm,S) -> ctx (B,H,T,D)
    """
    D = q.shape[3]
    scores = kernels.bmm(q, k.transpose(0, 1, 3, 2))  # (B,H,T,D) @ (B,H,D,S) -> (B,H,T,S)
    P = kernels.softmax_forward(scores, mask, 1.0 / math.sqrt(D))  # (B,H,T,S)
    ctx = kernels.bmm(P, v, out=out)  # (B,H,T,S) @ (B,H,S,D) -> (B,H,T,D)
    return ctx, AttentionCoreCache(q, k, v, P)


def attention_backward(dctx, cache, out=None):
    """Gradients of the attention core, written into `out` = (dq, dk, dv) arrays if given.

    Shapes: dctx (B,H,T,D) -> dq (B,H,T,D), dk (B,H,S,D), dv (B,H,S,D)
    """
    q, k, v, P = cache
    D = q.shape[3]
    dq, dk, dv = out if out is not None else (None, None, None)
    # ctx = P V
    dP = kernels.bmm(dctx, v.transpose(0, 1, 3, 2))  # (B,H,T,D) @ (B,H,D,S) -> (B,H,T,S)
    dv = kernels.bmm(P.transpose(0, 1, 3, 2), dctx, out=dv)  # (B,H,S,T) @ (B,H,T,D) -> (B,H,S,D)
    # P = softmax(Q K^T / sqrt(D) + mask)
    dscores = kernels.softmax_backward(dP, P, 1.0 / math.sqrt(D))  # (B,H,T,S)
    dq = kernels.bmm(dscores, k, out=dq)  # (B,H,T,S) @ (B,H,S,D) -> (B,H,T,D)
    dk = kernels.bmm(dscores.transpose(0, 1, 3, 2), q, out=dk)  # (B,H,S,T) @ (B,H,T,D) -> (B,H,S,D)
    return dq, dk, dv


# ---------------------------------------------------------------- key/value cache
class KVCache:
    """Keys and values of the positions one attention layer has seen (generation only).

    Preallocated for `capacity` positions at the first append and filled in
    place, so no step copies the past (as np.concatenate would). Cross-attention
    uses capacity 0: the first append (the memory's keys and values) sizes it.
    Shapes: k, v (B,H,L',D), positions 0..length-1 filled
    """

    def __init__(self, capacity):
        self.capacity = capacity
        self.k = None  # (B,H,L',D), allocated by the first append
        self.v = None  # (B,H,L',D)
        self.length = 0  # number of positions stored

    def append(self, k, v):
        """Store the keys and values of T new positions; return those of all positions so far.

        Shapes: k, v (B,H,T,D) -> k, v (B,H,length,D) views
        """
        B, H, T, D = k.shape
        if self.k is None:
            size = max(self.capacity, T)
            self.k = np.empty((B, H, size, D), k.dtype)  # (B,H,L',D)
            self.v = np.empty((B, H, size, D), v.dtype)
        start, end = self.length, self.length + T
        if end > self.k.shape[2]:
            raise ValueError(f"key/value cache is full ({self.k.shape[2]} positions)")
        self.k[:, :, start:end] = k  # (B,H,T,D) into slots start..end-1
        self.v[:, :, start:end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]  # (B,H,end,D) views

    def keys_values(self):
        """Shapes: -> k, v (B,H,length,D) views of the filled slots"""
        return self.k[:, :, : self.length], self.v[:, :, : self.length]

    def select(self, rows):
        """A new cache holding batch rows `rows` (in that order, repeats allowed).

        Shapes: rows (B',) -> cache of batch B'
        """
        out = KVCache(self.capacity)
        if self.k is not None:
            out.k, out.v, out.length = self.k[rows], self.v[rows], self.length  # (B',H,L',D)
        return out

    def reorder(self, rows):
        """In place: row b now holds the past of old row rows[b]. Shapes: rows (B,)"""
        n = self.length
        self.k[:, :, :n] = self.k[rows, :, :n]  # (B,H,n,D) gathered, then written back
        self.v[:, :, :n] = self.v[rows, :, :n]


# ------------------------------------------------------------------ the two layers
class SelfAttentionCache(NamedTuple):
    qkv: LinearCache  # input projection: x and W_qkv
    core: AttentionCoreCache  # q, k, v, P
    out: LinearCache  # output projection: merged ctx and W_o


def self_attention_forward(x, W_qkv, b_qkv, W_o, b_o, mask, n_heads, kv_cache=None):
    """Multi-head self-attention: queries, keys and values all come from x.

    Shapes: x (B,T,C), W_qkv (C,3C), b_qkv (3C,), W_o (C,C), b_o (C,), mask (Bm,Tm,S)
            -> y (B,T,C)   (S = T, or every position so far with a kv_cache)
    """
    B, T, C = x.shape
    qkv, qkv_cache = linear_forward(x, W_qkv, b_qkv)  # (B,T,C) -> (B,T,3C)
    q, k, v = head_views(qkv, n_heads, parts=3)  # (B,T,3C) -> 3 x (B,H,T,D) views
    if kv_cache is not None:
        k, v = kv_cache.append(k, v)  # -> (B,H,S,D): the past positions and these
    ctx = np.empty((B, T, C), x.dtype)  # (B,T,C), filled head by head
    _, core_cache = attention_forward(q, k, v, mask, out=head_views(ctx, n_heads)[0])
    y, out_cache = linear_forward(ctx, W_o, b_o)  # (B,T,C) -> (B,T,C)
    return y, SelfAttentionCache(qkv_cache, core_cache, out_cache)


def self_attention_backward(dy, cache):
    """Shapes: dy (B,T,C) -> dx (B,T,C), dW_qkv (C,3C), db_qkv (3C,), dW_o (C,C), db_o (C,)"""
    n_heads = cache.core.q.shape[1]
    dctx, dW_o, db_o = linear_backward(dy, cache.out)  # (B,T,C)
    B, T, C = dctx.shape
    d_qkv = np.empty((B, T, 3 * C), dctx.dtype)  # (B,T,3C), filled head by head
    attention_backward(head_views(dctx, n_heads)[0], cache.core,
                       out=head_views(d_qkv, n_heads, parts=3))  # 3 x (B,H,T,D) into d_qkv
    dx, dW_qkv, db_qkv = linear_backward(d_qkv, cache.qkv)  # (B,T,C)
    return dx, dW_qkv, db_qkv, dW_o, db_o


class CrossAttentionCache(NamedTuple):
    q: LinearCache  # query projection: x and W_q
    kv: LinearCache  # key/value projection: memory and W_kv
    core: AttentionCoreCache  # q, k, v, P
    out: LinearCache  # output projection: merged ctx and W_o


def cross_attention_forward(x, memory, W_q, b_q, W_kv, b_kv, W_o, b_o, mask, n_heads,
                            kv_cache=None):
    """Multi-head attention of the queries x over the keys/values of the encoder memory.

    With a kv_cache the memory is projected at the first call only.
    Shapes: x (B,T,C), memory (B,S,C), W_q (C,C), b_q (C,), W_kv (C,2C), b_kv (2C,),
            W_o (C,C), b_o (C,), mask (Bm,Tm,S) -> y (B,T,C)
    """
    B, T, C = x.shape
    q, q_cache = linear_forward(x, W_q, b_q)  # (B,T,C) -> (B,T,C)
    (q,) = head_views(q, n_heads)  # (B,T,C) -> (B,H,T,D) view
    if kv_cache is not None and kv_cache.length:
        k, v = kv_cache.keys_values()  # (B,H,S,D) projected at the first step
        kv_cache_lin = None
    else:
        kv, kv_cache_lin = linear_forward(memory, W_kv, b_kv)  # (B,S,C) -> (B,S,2C)
        k, v = head_views(kv, n_heads, parts=2)  # (B,S,2C) -> 2 x (B,H,S,D) views
        if kv_cache is not None:
            kv_cache.append(k, v)
    ctx = np.empty((B, T, C), x.dtype)  # (B,T,C), filled head by head
    _, core_cache = attention_forward(q, k, v, mask, out=head_views(ctx, n_heads)[0])
    y, out_cache = linear_forward(ctx, W_o, b_o)  # (B,T,C) -> (B,T,C)
    return y, CrossAttentionCache(q_cache, kv_cache_lin, core_cache, out_cache)


def cross_attention_backward(dy, cache):
    """Gradients of cross-attention.

    Shapes: dy (B,T,C) -> dx (B,T,C), dmemory (B,S,C), dW_q (C,C), db_q (C,),
            dW_kv (C,2C), db_kv (2C,), dW_o (C,C), db_o (C,)
    """
    n_heads = cache.core.q.shape[1]
    dctx, dW_o, db_o = linear_backward(dy, cache.out)  # (B,T,C)
    B, T, C = dctx.shape
    S = cache.core.k.shape[2]
    dq = np.empty((B, T, C), dctx.dtype)  # (B,T,C), filled head by head
    d_kv = np.empty((B, S, 2 * C), dctx.dtype)  # (B,S,2C), filled head by head
    attention_backward(head_views(dctx, n_heads)[0], cache.core,
                       out=(*head_views(dq, n_heads), *head_views(d_kv, n_heads, parts=2)))
    dx, dW_q, db_q = linear_backward(dq, cache.q)  # (B,T,C)
    dmemory, dW_kv, db_kv = linear_backward(d_kv, cache.kv)  # (B,S,2C) -> (B,S,C)
    return dx, dmemory, dW_q, db_q, dW_kv, db_kv, dW_o, db_o
