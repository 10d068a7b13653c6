"""Multi-head scaled dot-product attention, forward and backward.

Shapes: B batch, T query length, S key/value length, C d_model, H heads,
D head dim (C = H*D), G = B*H independent attention problems.

One function serves all three uses in a transformer:
  encoder self-attention:  x_q = x_kv = encoder stream, mask = source padding
  decoder self-attention:  x_q = x_kv = decoder stream, mask = causal & target padding
  cross-attention:         x_q = decoder stream, x_kv = encoder memory, mask = source padding
For self-attention the caller passes the same array (and the same tape key) as
x_q and x_kv; the tape then adds the two input gradients.

  Q = x_q W_q + b_q, K = x_kv W_k + b_k, V = x_kv W_v + b_v   split into H heads
  P = softmax(Q K^T / sqrt(D) + mask)                           (B,H,T,S)
  ctx = P V, heads merged back,  y = ctx W_o + b_o
`mask` is the ADDITIVE (Bm,Tm,S) mask from npformer.masks.additive. There is
no dropout on the attention weights (dropout is applied to the block outputs).
The weights P are kept in the cache so they can be plotted.
Derivation: docs/derivations/attention.md.
"""
import math
from typing import NamedTuple

import numpy as np

from .. import kernels as K


def split_heads(x, n_heads):
    """Shapes: x (B,T,C) -> (G,T,D) contiguous, G = B*H"""
    B, T, C = x.shape
    D = C // n_heads
    x = x.reshape(B, T, n_heads, D).transpose(0, 2, 1, 3)  # (B,T,C) -> (B,H,T,D)
    return np.ascontiguousarray(x).reshape(B * n_heads, T, D)  # (B,H,T,D) -> (G,T,D)


def merge_heads(x, batch):
    """Shapes: x (G,T,D) -> (B,T,C), inverse of split_heads"""
    G, T, D = x.shape
    H = G // batch
    x = x.reshape(batch, H, T, D).transpose(0, 2, 1, 3)  # (G,T,D) -> (B,T,H,D)
    return x.reshape(batch, T, H * D)  # (B,T,H,D) -> (B,T,C) (copies)


def project(x, W, b):
    """Shapes: x (B,T,C), W (C,C), b (C,) -> (B,T,C)"""
    B, T, C = x.shape
    y = K.matmul(x.reshape(B * T, C), W)  # (B*T,C) @ (C,C) -> (B*T,C)
    y += b
    return y.reshape(B, T, W.shape[1])  # (B*T,C) -> (B,T,C)


def attend(q, k, v, mask, batch):
    """Scaled dot-product attention over already split heads.

    Shapes: q (G,T,D), k (G,S,D), v (G,S,D), mask (Bm,Tm,S) -> ctx (G,T,D), P (B,H,T,S)
    """
    G, T, D = q.shape
    S = k.shape[1]
    scores = K.bmm(q, k.transpose(0, 2, 1))  # (G,T,D) @ (G,D,S) -> (G,T,S)
    scores = scores.reshape(batch, G // batch, T, S)  # (G,T,S) -> (B,H,T,S)
    P = K.softmax_forward(scores, mask, 1.0 / math.sqrt(D))  # (B,H,T,S)
    ctx = K.bmm(P.reshape(G, T, S), v)  # (G,T,S) @ (G,S,D) -> (G,T,D)
    return ctx, P


def split_packed_heads(x, n_heads, parts):
    """Split a packed projection [Q | K | V] (or [K | V]) into per-head arrays.

    Shapes: x (B,T,parts*C) -> parts arrays (G,T,D), each contiguous
    """
    B, T, PC = x.shape
    D = PC // parts // n_heads
    x = x.reshape(B, T, parts, n_heads, D).transpose(2, 0, 3, 1, 4)  # -> (parts,B,H,T,D)
    x = np.ascontiguousarray(x).reshape(parts, B * n_heads, T, D)  # -> (parts,G,T,D), one copy
    return tuple(x)  # parts x (G,T,D) views


def merge_packed_heads(arrays, batch):
    """Inverse of split_packed_heads, flattened for the weight gradient.

    Shapes: parts arrays (G,T,D) -> (B*T, parts*C)
    """
    parts = len(arrays)
    G, T, D = arrays[0].shape
    H = G // batch
    x = np.stack(arrays).reshape(parts, batch, H, T, D)  # -> (parts,B,H,T,D)
    x = x.transpose(1, 3, 0, 2, 4)  # (parts,B,H,T,D) -> (B,T,parts,H,D)
    return x.reshape(batch * T, parts * H * D)  # -> (B*T, parts*C), copies


class AttentionCache(NamedTuple):
    x_q: np.ndarray  # (B,T,C)
    x_kv: np.ndarray  # (B,S,C); the same array as x_q for self-attention
    q: np.ndarray  # (G,T,D) queries, heads split
    k: np.ndarray  # (G,S,D)
    v: np.ndarray  # (G,S,D)
    P: np.ndarray  # (B,H,T,S) attention weights (also what notebooks plot)
    ctx: np.ndarray  # (B,T,C) heads merged, input of the output projection
    W_in: np.ndarray  # (C,3C) [W_q|W_k|W_v] for self-attention, else (C,2C) [W_k|W_v]
    W_q: np.ndarray  # (C,C)
    W_o: np.ndarray  # (C,C)
    is_self: bool  # x_q is x_kv: Q, K and V came from one packed product


def mha_forward(x_q, x_kv, W_q, b_q, W_k, b_k, W_v, b_v, W_o, b_o, mask, n_heads):
    """Multi-head attention of the queries x_q over the keys/values x_kv.

    The input projections are computed as ONE matrix product with the weights
    side by side ([W_q|W_k|W_v] for self-attention, [W_k|W_v] for the keys and
    values of cross-attention): the same numbers as three separate products,
    but fewer and larger products run faster.
    Shapes: x_q (B,T,C), x_kv (B,S,C), W_* (C,C), b_* (C,), mask (Bm,Tm,S) -> y (B,T,C)
    """
    B = x_q.shape[0]
    is_self = x_q is x_kv
    if is_self:
        W_in = np.concatenate([W_q, W_k, W_v], axis=1)  # 3 x (C,C) -> (C,3C)
        qkv = project(x_q, W_in, np.concatenate([b_q, b_k, b_v]))  # (B,T,C) -> (B,T,3C)
        q, k, v = split_packed_heads(qkv, n_heads, 3)  # 3 x (G,T,D)
    else:
        W_in = np.concatenate([W_k, W_v], axis=1)  # 2 x (C,C) -> (C,2C)
        q = split_heads(project(x_q, W_q, b_q), n_heads)  # (B,T,C) -> (G,T,D)
        kv = project(x_kv, W_in, np.concatenate([b_k, b_v]))  # (B,S,C) -> (B,S,2C)
        k, v = split_packed_heads(kv, n_heads, 2)  # 2 x (G,S,D)
    ctx, P = attend(q, k, v, mask, B)  # (G,T,D), (B,H,T,S)
    ctx = merge_heads(ctx, B)  # (G,T,D) -> (B,T,C)
    y = project(ctx, W_o, b_o)  # (B,T,C)
    return y, AttentionCache(x_q, x_kv, q, k, v, P, ctx, W_in, W_q, W_o, is_self)


def _input_projection_backward(d_packed, x, W):
    """Gradients of the packed projection y = x W + b.

    Shapes: d_packed (N,P), x (B,L,C), W (C,P) -> dx (B,L,C), dW (C,P), db (P,)
    """
    B, L, C = x.shape
    dW = K.matmul(x.reshape(B * L, C).T, d_packed)  # (C,N) @ (N,P) -> (C,P)
    db = d_packed.sum(axis=0)  # (N,P) -> (P,)
    dx = K.matmul(d_packed, W.T).reshape(B, L, C)  # (N,P) @ (P,C) -> (N,C) -> (B,L,C)
    return dx, dW, db


def mha_backward(dy, cache):
    """Gradients of multi-head attention.

    For self-attention the whole input gradient is returned as dx_q and dx_kv is
    None (the tape adds both to the same key anyway).
    Shapes: dy (B,T,C) -> dx_q (B,T,C), dx_kv (B,S,C) or None,
            dW_q, db_q, dW_k, db_k, dW_v, db_v, dW_o, db_o
    """
    x_q, x_kv, q, k, v, P, ctx, W_in, W_q, W_o, is_self = cache
    B, T, C = x_q.shape
    S = x_kv.shape[1]
    G, _, D = q.shape
    n_heads = G // B
    dy2 = dy.reshape(B * T, C)  # (B,T,C) -> (B*T,C)
    # output projection y = ctx W_o + b_o
    dW_o = K.matmul(ctx.reshape(B * T, C).T, dy2)  # (C,B*T) @ (B*T,C) -> (C,C)
    db_o = dy2.sum(axis=0)  # (C,)
    dctx = K.matmul(dy2, W_o.T).reshape(B, T, C)  # (B*T,C) @ (C,C) -> (B,T,C)
    dctx = split_heads(dctx, n_heads)  # (B,T,C) -> (G,T,D)
    # ctx = P V
    P3 = P.reshape(G, T, S)  # (B,H,T,S) -> (G,T,S)
    dP = K.bmm(dctx, v.transpose(0, 2, 1))  # (G,T,D) @ (G,D,S) -> (G,T,S)
    dv = K.bmm(P3.transpose(0, 2, 1), dctx)  # (G,S,T) @ (G,T,D) -> (G,S,D)
    # P = softmax(Q K^T / sqrt(D) + mask)
    dscores = K.softmax_backward(dP.reshape(P.shape), P, 1.0 / math.sqrt(D))  # (B,H,T,S)
    dscores = dscores.reshape(G, T, S)  # (B,H,T,S) -> (G,T,S)
    dq = K.bmm(dscores, k)  # (G,T,S) @ (G,S,D) -> (G,T,D)
    dk = K.bmm(dscores.transpose(0, 2, 1), q)  # (G,S,T) @ (G,T,D) -> (G,S,D)
    # the input projections, packed as in the forward pass
    if is_self:
        d_qkv = merge_packed_heads((dq, dk, dv), B)  # 3 x (G,T,D) -> (B*T,3C)
        dx_q, dW_in, db_in = _input_projection_backward(d_qkv, x_q, W_in)
        dx_kv = None
        dW_q, dW_k, dW_v = np.split(dW_in, 3, axis=1)  # (C,3C) -> 3 x (C,C)
        db_q, db_k, db_v = np.split(db_in, 3)  # (3C,) -> 3 x (C,)
    else:
        d_q = merge_packed_heads((dq,), B)  # (G,T,D) -> (B*T,C)
        dx_q, dW_q, db_q = _input_projection_backward(d_q, x_q, W_q)
        d_kv = merge_packed_heads((dk, dv), B)  # 2 x (G,S,D) -> (B*S,2C)
        dx_kv, dW_in, db_in = _input_projection_backward(d_kv, x_kv, W_in)
        dW_k, dW_v = np.split(dW_in, 2, axis=1)  # (C,2C) -> 2 x (C,C)
        db_k, db_v = np.split(db_in, 2)  # (2C,) -> 2 x (C,)
    return dx_q, dx_kv, dW_q, db_q, dW_k, db_k, dW_v, db_v, dW_o, db_o
