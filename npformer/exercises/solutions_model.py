"""Model answers for the rest of the model.

Dropout, the feed-forward unit, pooling, the tied output projection, the fused
output projection + loss, LoRA, the sinusoidal positions, gradient clipping, a
decoder block composed on the tape and a recurrent layer (backprop through time).

Same conventions as solutions.py (whose answers these compose: the feed-forward
unit is two linear layers around an activation). docs/exercises.md shows them
folded, between the `--8<--` markers; tests/test_exercises.py checks them.

Shapes: B batch, T length, S source length, C d_model, F d_ff, V vocab, N rows,
r the rank of a LoRA update, L positions.
"""
import math

import numpy as np

from npformer.exercises.solutions import (gelu_backward, gelu_forward, linear_backward,
                                          linear_forward, relu_backward, relu_forward)


# --8<-- [start:dropout]
def dropout_forward(x, rate, rng):
    """Inverted dropout: zero each entry with probability `rate`, scale the rest by 1/(1-rate).

    The expected value of y is x, so evaluation simply skips dropout.
    rng: a numpy Generator (the check seeds it, so a mask can be drawn again).
    Shapes: x (...) -> y (...)
    """
    keep = rng.random(x.shape) >= rate  # (...) True with probability 1 - rate
    m = keep / (1.0 - rate)  # (...) 0 or 1/(1-rate)
    return x * m, m  # the backward needs the same mask


def dropout_backward(dy, cache):
    """Shapes: dy (...) -> dx (...)"""
    m = cache
    return dy * m  # y = x * m, elementwise
# --8<-- [end:dropout]


# --8<-- [start:ffn]
def ffn_forward(x, W_1, b_1, W_2, b_2, activation):
    """The position-wise feed-forward unit: y = act(x W_1 + b_1) W_2 + b_2.

    activation: "relu" or "gelu". Built from the linear and activation answers.
    Shapes: x (...,C), W_1 (C,F), b_1 (F,), W_2 (F,C), b_2 (C,) -> y (...,C)
    """
    act_forward = relu_forward if activation == "relu" else gelu_forward
    h, lin_1 = linear_forward(x, W_1, b_1)  # (...,C) -> (...,F)
    a, act = act_forward(h)  # (...,F)
    y, lin_2 = linear_forward(a, W_2, b_2)  # (...,F) -> (...,C)
    return y, (lin_1, act, lin_2, activation)


def ffn_backward(dy, cache):
    """Shapes: dy (...,C) -> dx (...,C), dW_1 (C,F), db_1 (F,), dW_2 (F,C), db_2 (C,)"""
    lin_1, act, lin_2, activation = cache
    act_backward = relu_backward if activation == "relu" else gelu_backward
    da, dW_2, db_2 = linear_backward(dy, lin_2)  # (...,F)
    dh = act_backward(da, act)  # (...,F): the chain rule through the activation
    dx, dW_1, db_1 = linear_backward(dh, lin_1)  # (...,C)
    return dx, dW_1, db_1, dW_2, db_2
# --8<-- [end:ffn]


# --8<-- [start:pooling]
def pool_forward(x, key_ok, mode):
    """One vector per sequence, for a classification head: a weighted sum over positions.

    mode "mean": the average of the real tokens; "last": the last real token (what a
    causal model's last position has seen: everything); "first": position 0.
    Shapes: x (B,T,C), key_ok (B,T) bool, True = a real token -> y (B,C)
    """
    B, T, C = x.shape
    w = np.zeros((B, T))  # (B,T) the weight of each position
    if mode == "mean":
        w[...] = key_ok / key_ok.sum(axis=1, keepdims=True)  # 1/n_b on the n_b real tokens
    elif mode == "last":
        last = T - 1 - np.argmax(key_ok[:, ::-1], axis=1)  # (B,) index of the last real token
        w[np.arange(B), last] = 1.0
    else:
        w[:, 0] = 1.0
    y = (w[:, :, None] * x).sum(axis=1)  # (B,T,1) * (B,T,C) -> (B,C)
    return y, w


def pool_backward(dy, cache):
    """Shapes: dy (B,C) -> dx (B,T,C)"""
    w = cache
    return w[:, :, None] * dy[:, None, :]  # each position gets its weight times dy
# --8<-- [end:pooling]


# --8<-- [start:tied]
def tied_forward(ids, E, b):
    """A tiny language model whose embedding and output projection share one matrix E.

    x = E[ids] (the embedding), logits = x E^T + b (the output projection, the same E).
    Shapes: ids (B,T) int, E (V,C), b (V,) -> logits (B,T,V)
    """
    x = E[ids]  # (B,T) -> (B,T,C)
    return x @ E.T + b, (ids, E, x)  # (B,T,C) @ (C,V) -> (B,T,V)


def tied_backward(dlogits, cache):
    """E is used twice, so it gets the SUM of two gradients.

    Shapes: dlogits (B,T,V) -> dE (V,C), db (V,)
    """
    ids, E, x = cache
    V, C = E.shape
    d2 = dlogits.reshape(-1, V)  # (N,V)
    dE = d2.T @ x.reshape(-1, C)  # (V,N) @ (N,C) -> (V,C): as the output projection
    dx = d2 @ E  # (N,V) @ (V,C) -> (N,C)
    np.add.at(dE, ids.reshape(-1), dx)  # + as the embedding: scatter into the rows used
    return dE, d2.sum(axis=0)  # db (V,)
# --8<-- [end:tied]


# --8<-- [start:output_loss]
ROWS = 64  # rows per block: a (ROWS, V) block of logits at a time, never all (N, V)


def output_loss_forward(x, E, b, targets, pad_id):
    """Mean cross-entropy of the targets under softmax(x E^T + b), one block of rows at a time.

    The loss of a row needs only that row's logits, so the (N, V) logits are never held
    whole; each block's gradients are computed at once and kept (they have the sizes of
    x, E and b, much smaller than the logits when V is large).
    Shapes: x (B,T,C), E (V,C), b (V,), targets (B,T) int -> loss float
    """
    C = x.shape[-1]
    x2, t = x.reshape(-1, C), targets.reshape(-1)  # (N,C), (N,)
    n = max(int((t != pad_id).sum()), 1)  # positions that count
    dx, dE, db = np.zeros_like(x2), np.zeros_like(E), np.zeros_like(b)
    loss = 0.0
    for r0 in range(0, len(t), ROWS):
        rows = slice(r0, r0 + ROWS)
        logits = x2[rows] @ E.T + b  # (R,C) @ (C,V) -> (R,V)
        z = logits - logits.max(axis=1, keepdims=True)  # stable: the largest exponent is 0
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # (R,V) log-softmax
        t_r = t[rows]  # (R,)
        valid = (t_r != pad_id)[:, None]  # (R,1)
        loss -= float((logp[np.arange(len(t_r)), t_r] * valid[:, 0]).sum())
        dlogits = np.exp(logp)  # (R,V) softmax ...
        dlogits[np.arange(len(t_r)), t_r] -= 1.0  # ... minus the one-hot target ...
        dlogits *= valid / n  # ... for the mean over the n positions that count
        dx[rows] = dlogits @ E  # (R,V) @ (V,C) -> (R,C)
        dE += dlogits.T @ x2[rows]  # (V,R) @ (R,C) -> (V,C)
        db += dlogits.sum(axis=0)  # (V,)
    return loss / n, (dx.reshape(x.shape), dE, db)


def output_loss_backward(dloss, cache):
    """Shapes: dloss scalar -> dx (B,T,C), dE (V,C), db (V,)"""
    dx, dE, db = cache
    return dloss * dx, dloss * dE, dloss * db
# --8<-- [end:output_loss]


# --8<-- [start:lora]
def lora_forward(x, W, b, A, B, alpha):
    """A frozen linear layer plus a trainable low-rank update: y = x W + b + (alpha/r) x A B.

    Only A (Cin,r) and B (r,Cout) learn; the weight change (alpha/r) A B has rank <= r.
    Shapes: x (...,Cin), W (Cin,Cout), b (Cout,), A (Cin,r), B (r,Cout) -> y (...,Cout)
    """
    s = alpha / A.shape[1]  # the scale alpha/r
    xA = x @ A  # (...,Cin) @ (Cin,r) -> (...,r)
    return x @ W + b + s * (xA @ B), (x, W, A, B, xA, s)  # (...,Cout)


def lora_backward(dy, cache):
    """W and b are frozen: no gradient for them.

    Shapes: dy (...,Cout) -> dx (...,Cin), dA (Cin,r), dB (r,Cout)
    """
    x, W, A, B, xA, s = cache
    r = A.shape[1]
    dxA = s * (dy @ B.T)  # (...,Cout) @ (Cout,r) -> (...,r)
    dB = s * xA.reshape(-1, r).T @ dy.reshape(-1, dy.shape[-1])  # (r,N) @ (N,Cout)
    dA = x.reshape(-1, x.shape[-1]).T @ dxA.reshape(-1, r)  # (Cin,N) @ (N,r)
    dx = dy @ W.T + dxA @ A.T  # two paths: the frozen W and the update
    return dx, dA, dB
# --8<-- [end:lora]


# --8<-- [start:sinusoidal]
def sinusoidal_table(max_len, d_model):
    """The fixed positional encodings of "Attention Is All You Need".

    table[pos, 2i] = sin(pos / 10000^(2i/C)), table[pos, 2i+1] = cos(pos / 10000^(2i/C)).
    Shapes: -> table (L,C)
    """
    pos = np.arange(max_len)[:, None]  # (L,1)
    two_i = np.arange(0, d_model, 2)[None, :]  # (1,ceil(C/2)) the even feature indices
    angle = pos / 10000.0 ** (two_i / d_model)  # (L,ceil(C/2))
    table = np.zeros((max_len, d_model))
    table[:, 0::2] = np.sin(angle)  # even features
    table[:, 1::2] = np.cos(angle[:, : d_model // 2])  # odd features (one fewer if C is odd)
    return table
# --8<-- [end:sinusoidal]


# --8<-- [start:clip]
def clip_grad_norm(grads, max_norm):
    """Scale every gradient in place so that their global norm is at most max_norm.

    The global norm is that of all gradients taken as one vector. The rule of
    torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), applied only if < 1.
    Returns the norm before clipping. Shapes: grads {key: array} (changed in place)
    """
    norm = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        for g in grads.values():
            g *= coef  # in place: the optimizer reads these very arrays
    return norm
# --8<-- [end:clip]


# --8<-- [start:decoder_block]
def decoder_block(run, prefix, y, memory, self_mask, cross_mask):
    """A pre-LN decoder block from taped ops: causal self-attention, cross-attention, FFN.

    Each sublayer reads LN of the running y and is added back through the `add` op;
    cross-attention takes its queries from y and its keys and values from the encoder
    memory, so memory gets a gradient from this block (and from every other decoder block).
    Shapes: y Value (B,T,C), memory Value (B,S,C), self_mask (B,T,T), cross_mask (B,1,S)
            additive -> Value (B,T,C)
    """
    from npformer.nn.blocks import add, cross_attention, dropout, feed_forward, norm, self_attention

    attn, cross, ffn = f"{prefix}.self_attn", f"{prefix}.cross_attn", f"{prefix}.ffn"
    h = self_attention(run, attn, norm(run, f"{prefix}.norm1", y), self_mask)  # (B,T,C)
    y = add(run, attn + ".residual", y, dropout(run, attn + ".drop", h))
    h = cross_attention(run, cross, norm(run, f"{prefix}.norm2", y), memory, cross_mask)
    y = add(run, cross + ".residual", y, dropout(run, cross + ".drop", h))
    h = feed_forward(run, ffn, norm(run, f"{prefix}.norm3", y))  # (B,T,C)
    return add(run, ffn + ".residual", y, dropout(run, ffn + ".drop", h))
# --8<-- [end:decoder_block]


# --8<-- [start:rnn]
def rnn_forward(x, h0, W_x, W_h, b):
    """An Elman RNN: h_t = tanh(x_t W_x + h_{t-1} W_h + b) for t = 1..T, from h_0.

    Shapes: x (B,T,C), h0 (B,C), W_x (C,C), W_h (C,C), b (C,) -> h (B,T,C), cache
    """
    B, T, C = x.shape
    h = np.empty_like(x)  # (B,T,C)
    prev = h0  # (B,C)
    for t in range(T):  # step t needs h_{t-1}: a chain
        prev = np.tanh(x[:, t] @ W_x + prev @ W_h + b)  # (B,C)
        h[:, t] = prev
    return h, (x, h0, h, W_x, W_h)


def rnn_backward(dh, cache):
    """Backpropagation through time: the chain walked backwards.

    Shapes: dh (B,T,C) -> dx (B,T,C), dh0 (B,C), dW_x (C,C), dW_h (C,C), db (C,)
    """
    x, h0, h, W_x, W_h = cache
    B, T, C = x.shape
    da = np.empty_like(h)  # (B,T,C) dL/da_t
    carry = np.zeros_like(h0)  # (B,C) da_{t+1} W_h^T: what step t+1 sends back to h_t
    for t in reversed(range(T)):
        da[:, t] = (dh[:, t] + carry) * (1.0 - h[:, t] ** 2)  # tanh' = 1 - h_t^2, of step t
        carry = da[:, t] @ W_h.T  # (B,C) -> step t-1 (after the loop: to h_0)
    h_prev = np.concatenate([h0[:, None], h[:, :-1]], axis=1)  # (B,T,C) h_{t-1} at every t
    da2 = da.reshape(B * T, C)  # (B,T,C) -> (B*T,C): the weights are shared by every step
    dW_x = x.reshape(B * T, C).T @ da2  # (C,C)
    dW_h = h_prev.reshape(B * T, C).T @ da2  # (C,C)
    dx = (da2 @ W_x.T).reshape(B, T, C)  # (B*T,C) -> (B,T,C)
    return dx, carry, dW_x, dW_h, da2.sum(axis=0)
# --8<-- [end:rnn]
