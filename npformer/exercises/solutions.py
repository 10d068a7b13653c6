"""Model answers to the backward-pass exercises, in the learner's signatures.

Each exercise asks for a `<name>_forward(...) -> (out, cache)` and a
`<name>_backward(d_out, cache) -> gradients` pair (AdamW asks for one
`adamw_step`). These are the answers: short, plain NumPy, one line per equation.
The exercise notebook (notebooks/exercises_backward.ipynb) holds the empty stubs;
docs/exercises.md shows these answers folded away, included from this file
between the `--8<--` markers (one copy only). tests/test_exercises.py checks every
answer with `npformer.exercises.check`.

Shapes: B batch, T query (or sequence) length, S key length, C d_model,
H heads, D head dim (C = H*D), V vocab, L positions in the table, N rows.
Masks are boolean, True = may attend (the convention of npformer/nn/masks.py).
Derivations: docs/derivations/.
"""
import math

import numpy as np

GELU_C = math.sqrt(2.0 / math.pi)
GELU_A = 0.044715
LN_EPS = 1e-5


# --8<-- [start:linear]
def linear_forward(x, W, b):
    """y = x W + b over the last axis.

    Shapes: x (...,Cin), W (Cin,Cout), b (Cout,) -> y (...,Cout)
    """
    y = x @ W + b  # (...,Cin) @ (Cin,Cout) -> (...,Cout)
    return y, (x, W)


def linear_backward(dy, cache):
    """Shapes: dy (...,Cout) -> dx (...,Cin), dW (Cin,Cout), db (Cout,)"""
    x, W = cache
    x2 = x.reshape(-1, x.shape[-1])  # (...,Cin) -> (N,Cin)
    dy2 = dy.reshape(-1, dy.shape[-1])  # (...,Cout) -> (N,Cout)
    dx = dy @ W.T  # (...,Cout) @ (Cout,Cin) -> (...,Cin)
    dW = x2.T @ dy2  # (Cin,N) @ (N,Cout) -> (Cin,Cout): every row contributes
    db = dy2.sum(axis=0)  # (N,Cout) -> (Cout,)
    return dx, dW, db
# --8<-- [end:linear]


# --8<-- [start:relu]
def relu_forward(x):
    """y = max(x, 0). Shapes: x (...) -> y (...)"""
    return np.maximum(x, 0.0), x


def relu_backward(dy, cache):
    """Shapes: dy (...) -> dx (...)"""
    x = cache
    return dy * (x > 0)  # the slope is 1 where x > 0, else 0
# --8<-- [end:relu]


# --8<-- [start:gelu]
def gelu_forward(x):
    """GELU, tanh approximation: y = 0.5 x (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3).

    Shapes: x (...) -> y (...)
    """
    u = GELU_C * (x + GELU_A * x**3)
    return 0.5 * x * (1.0 + np.tanh(u)), x


def gelu_backward(dy, cache):
    """Product rule on x * (1 + tanh u) / 2. Shapes: dy (...) -> dx (...)"""
    x = cache
    t = np.tanh(GELU_C * (x + GELU_A * x**3))
    du_dx = GELU_C * (1.0 + 3.0 * GELU_A * x**2)
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t**2) * du_dx)
# --8<-- [end:gelu]


# --8<-- [start:softmax]
def softmax_forward(x, mask):
    """Softmax over the last axis, only over the keys the mask allows.

    A row whose keys are all masked gives all-zero weights (not NaN).
    Shapes: x (B,T,S), mask (Bm,Tm,S) bool, Bm in {1,B}, Tm in {1,T} -> y (B,T,S)
    """
    z = np.where(mask, x, -np.inf)  # (B,T,S): masked scores are -inf
    zmax = z.max(axis=-1, keepdims=True)  # (B,T,1)
    zmax = np.where(np.isfinite(zmax), zmax, 0.0)  # a fully masked row has max -inf
    e = np.exp(z - zmax)  # exp(-inf) = 0 for masked keys; no overflow
    total = e.sum(axis=-1, keepdims=True)  # (B,T,1)
    y = e / np.where(total > 0, total, 1.0)  # fully masked rows: 0 / 1 = 0
    return y, y  # the backward needs only y


def softmax_backward(dy, cache):
    """dx = y * (dy - <dy, y>) row by row. Shapes: dy (B,T,S) -> dx (B,T,S)"""
    y = cache
    inner = (dy * y).sum(axis=-1, keepdims=True)  # (B,T,1) one dot product per row
    return y * (dy - inner)
# --8<-- [end:softmax]


# --8<-- [start:layernorm]
def layernorm_forward(x, gamma, beta):
    """Normalise the last axis to zero mean and unit variance, then scale and shift.

    Shapes: x (...,C), gamma (C,), beta (C,) -> y (...,C)
    """
    mean = x.mean(axis=-1, keepdims=True)  # (...,1)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)  # (...,1), divides by C
    rstd = 1.0 / np.sqrt(var + LN_EPS)  # (...,1)
    xhat = (x - mean) * rstd  # (...,C)
    return gamma * xhat + beta, (xhat, rstd, gamma)


def layernorm_backward(dy, cache):
    """Shapes: dy (...,C) -> dx (...,C), dgamma (C,), dbeta (C,)"""
    xhat, rstd, gamma = cache
    C = dy.shape[-1]
    dbeta = dy.reshape(-1, C).sum(axis=0)  # (N,C) -> (C,)
    dgamma = (dy * xhat).reshape(-1, C).sum(axis=0)  # (N,C) -> (C,)
    g = dy * gamma  # (...,C) gradient w.r.t. xhat
    dx = rstd * (g - g.mean(axis=-1, keepdims=True)  # the mean depends on x ...
                 - xhat * (g * xhat).mean(axis=-1, keepdims=True))  # ... and so does var
    return dx, dgamma, dbeta
# --8<-- [end:layernorm]


# --8<-- [start:embedding]
def embedding_forward(ids, W, P, pad_id):
    """Token embedding scaled by sqrt(C), plus the learned positions 0..T-1.

    y[b,t] = sqrt(C) * W[ids[b,t]] + P[t]
    Shapes: ids (B,T) int, W (V,C), P (L,C) with L >= T -> y (B,T,C)
    """
    B, T = ids.shape
    scale = math.sqrt(W.shape[1])
    y = scale * W[ids] + P[:T]  # (B,T,C) + (T,C)
    return y, (ids, W.shape, P.shape, scale, pad_id)


def embedding_backward(dy, cache):
    """Shapes: dy (B,T,C) -> dW (V,C), dP (L,C)"""
    ids, W_shape, P_shape, scale, pad_id = cache
    T = ids.shape[1]
    C = dy.shape[-1]
    dW = np.zeros(W_shape)  # (V,C)
    np.add.at(dW, ids.reshape(-1), scale * dy.reshape(-1, C))  # a repeated id gets every row
    dW[pad_id] = 0.0  # convention: the padding embedding never learns
    dP = np.zeros(P_shape)  # (L,C): rows past T were not used
    dP[:T] = dy.sum(axis=0)  # (B,T,C) -> (T,C): every sentence used position t
    return dW, dP
# --8<-- [end:embedding]


# --8<-- [start:attention]
def attention_forward(q, k, v, mask):
    """Scaled dot-product attention: out = softmax(q k^T / sqrt(D), mask) v.

    Shapes: q (B,T,D), k (B,S,D), v (B,S,D), mask (Bm,Tm,S) bool -> out (B,T,D)
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = q @ k.transpose(0, 2, 1) * scale  # (B,T,D) @ (B,D,S) -> (B,T,S)
    P, _ = softmax_forward(scores, mask)  # (B,T,S)
    return P @ v, (q, k, v, P, scale)  # (B,T,S) @ (B,S,D) -> (B,T,D)


def attention_backward(dout, cache):
    """Shapes: dout (B,T,D) -> dq (B,T,D), dk (B,S,D), dv (B,S,D)"""
    q, k, v, P, scale = cache
    dP = dout @ v.transpose(0, 2, 1)  # (B,T,D) @ (B,D,S) -> (B,T,S)
    dv = P.transpose(0, 2, 1) @ dout  # (B,S,T) @ (B,T,D) -> (B,S,D)
    dscores = scale * softmax_backward(dP, P)  # (B,T,S), the scale comes back
    dq = dscores @ k  # (B,T,S) @ (B,S,D) -> (B,T,D)
    dk = dscores.transpose(0, 2, 1) @ q  # (B,S,T) @ (B,T,D) -> (B,S,D)
    return dq, dk, dv
# --8<-- [end:attention]


# --8<-- [start:mha]
def split_heads(x, n_heads):
    """Shapes: x (B,T,C) -> (B*H,T,D)"""
    B, T, C = x.shape
    x = x.reshape(B, T, n_heads, C // n_heads).transpose(0, 2, 1, 3)  # -> (B,H,T,D)
    return x.reshape(B * n_heads, T, C // n_heads)  # (B,H,T,D) -> (B*H,T,D)


def merge_heads(x, batch):
    """Shapes: x (B*H,T,D) -> (B,T,C), the inverse of split_heads"""
    G, T, D = x.shape
    x = x.reshape(batch, G // batch, T, D).transpose(0, 2, 1, 3)  # -> (B,T,H,D)
    return x.reshape(batch, T, -1)  # (B,T,H,D) -> (B,T,C)


def mha_forward(x_q, x_kv, W_q, W_k, W_v, W_o, mask, n_heads):
    """Multi-head attention without biases: H heads of attention_forward, then W_o.

    Shapes: x_q (B,T,C), x_kv (B,S,C), W_* (C,C), mask (Bm,Tm,S) bool -> y (B,T,C)
    """
    B = x_q.shape[0]
    q = split_heads(x_q @ W_q, n_heads)  # (B,T,C) -> (B*H,T,D)
    k = split_heads(x_kv @ W_k, n_heads)  # (B,S,C) -> (B*H,S,D)
    v = split_heads(x_kv @ W_v, n_heads)  # (B,S,C) -> (B*H,S,D)
    mask_g = np.repeat(mask, n_heads, axis=0) if mask.shape[0] > 1 else mask  # -> (B*H,Tm,S)
    ctx, att_cache = attention_forward(q, k, v, mask_g)  # (B*H,T,D)
    ctx = merge_heads(ctx, B)  # (B*H,T,D) -> (B,T,C)
    return ctx @ W_o, (x_q, x_kv, W_q, W_k, W_v, W_o, ctx, att_cache, n_heads)


def mha_backward(dy, cache):
    """Shapes: dy (B,T,C) -> dx_q (B,T,C), dx_kv (B,S,C), dW_q, dW_k, dW_v, dW_o (C,C)

    dx_q and dx_kv are returned separately even for self-attention (x_q is x_kv);
    the caller adds them.
    """
    x_q, x_kv, W_q, W_k, W_v, W_o, ctx, att_cache, n_heads = cache
    C = x_q.shape[-1]
    B = x_q.shape[0]
    dW_o = ctx.reshape(-1, C).T @ dy.reshape(-1, C)  # (C,B*T) @ (B*T,C) -> (C,C)
    dctx = split_heads(dy @ W_o.T, n_heads)  # (B,T,C) -> (B*H,T,D)
    dq, dk, dv = attention_backward(dctx, att_cache)  # (B*H,T,D), (B*H,S,D), (B*H,S,D)
    dq, dk, dv = merge_heads(dq, B), merge_heads(dk, B), merge_heads(dv, B)  # -> (B,*,C)
    dW_q = x_q.reshape(-1, C).T @ dq.reshape(-1, C)  # (C,B*T) @ (B*T,C) -> (C,C)
    dW_k = x_kv.reshape(-1, C).T @ dk.reshape(-1, C)  # (C,B*S) @ (B*S,C) -> (C,C)
    dW_v = x_kv.reshape(-1, C).T @ dv.reshape(-1, C)
    dx_q = dq @ W_q.T  # (B,T,C)
    dx_kv = dk @ W_k.T + dv @ W_v.T  # (B,S,C): x_kv feeds both the keys and the values
    return dx_q, dx_kv, dW_q, dW_k, dW_v, dW_o
# --8<-- [end:mha]


# --8<-- [start:cross_entropy]
def cross_entropy_forward(logits, targets, pad_id, smoothing):
    """Mean label-smoothed cross-entropy over the positions whose target is not padding.

    Target distribution q = (1 - smoothing) * onehot(target) + smoothing / V.
    Shapes: logits (B,T,V), targets (B,T) int -> loss float
    """
    V = logits.shape[-1]
    z = logits - logits.max(axis=-1, keepdims=True)  # (B,T,V) stable: max exponent is 0
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))  # (B,T,V) log-softmax
    q = np.full(logits.shape, smoothing / V)  # (B,T,V)
    np.put_along_axis(q, targets[..., None], 1.0 - smoothing + smoothing / V, axis=-1)
    valid = targets != pad_id  # (B,T)
    n_valid = max(int(valid.sum()), 1)
    per_position = -(q * logp).sum(axis=-1)  # (B,T)
    loss = float((per_position * valid).sum() / n_valid)
    return loss, (np.exp(logp), q, valid, n_valid)


def cross_entropy_backward(dloss, cache):
    """Shapes: dloss scalar -> dlogits (B,T,V)"""
    p, q, valid, n_valid = cache
    return dloss * (p - q) * valid[..., None] / n_valid  # padding positions get 0
# --8<-- [end:cross_entropy]


# --8<-- [start:adamw]
def adamw_step(p, g, m, v, t, lr, betas, eps, weight_decay):
    """One AdamW update (torch.optim.AdamW's formula); returns new arrays.

    t is the number of this update, counted from 1.
    Shapes: p, g, m, v any shape, all the same -> (p, m, v) the same shape
    """
    b1, b2 = betas
    p = p * (1.0 - lr * weight_decay)  # decoupled decay: not part of the gradient
    m = b1 * m + (1.0 - b1) * g  # running mean of g
    v = b2 * v + (1.0 - b2) * g * g  # running mean of g^2
    m_hat = m / (1.0 - b1**t)  # undo the bias towards the zero start
    v_hat = v / (1.0 - b2**t)
    p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p, m, v
# --8<-- [end:adamw]


# ---------------------------------------------------------------- an encoder block
# --8<-- [start:block]
def encoder_block(run, prefix, x, mask):
    """A pre-LN encoder block from taped ops: x + Attn(LN(x)), then + FFN(LN(.)).

    Every op is one tape record keyed by its name; the residual adds go through the
    `add` op, so x receives the sum of its two gradients; dropout is a no-op here.
    Shapes: x Value (B,T,C), mask (B,1,T) additive -> Value (B,T,C)
    """
    from npformer.nn.blocks import add, dropout, feed_forward, norm, self_attention

    attn, ffn = f"{prefix}.self_attn", f"{prefix}.ffn"
    h = self_attention(run, attn, norm(run, f"{prefix}.norm1", x), mask)  # (B,T,C)
    x = add(run, attn + ".residual", x, dropout(run, attn + ".drop", h))  # (B,T,C)
    h = feed_forward(run, ffn, norm(run, f"{prefix}.norm2", x))  # (B,T,C)
    return add(run, ffn + ".residual", x, dropout(run, ffn + ".drop", h))  # (B,T,C)
# --8<-- [end:block]
