"""Encoder and decoder layers and stacks, recorded op by op on a tape.

These functions are compositions, not new forward/backward pairs: each one
calls layers through `tape.call`, so the tape sees (and `tape.summary()` lists)
every attention, norm, feed-forward, dropout and residual add.
Every op's output is keyed by the op's name ("decoder.1.cross_attn"); a
parameter's key is that name plus a suffix ("decoder.1.cross_attn.W_q").

Where the norm goes (config.norm_position):
  pre-LN  (default):  x = x + Dropout(Sublayer(LayerNorm(x)))   + a final LayerNorm per stack
  post-LN (original): x = LayerNorm(x + Dropout(Sublayer(x)))   no final LayerNorm
Pre-LN keeps an identity path from the loss to every layer, which is why it
trains without careful warmup; docs/faq.md and the notebooks compare the two.

Shapes: B batch, S source len, T target len, C d_model.
"""
from typing import NamedTuple


from .layers import (
    add_backward,
    add_forward,
    dropout_backward,
    dropout_forward,
    ffn_backward,
    ffn_forward,
    layernorm_backward,
    layernorm_forward,
    mha_backward,
    mha_forward,
)

ATTN_PARAMS = ("W_q", "b_q", "W_k", "b_k", "W_v", "b_v", "W_o", "b_o")
FFN_PARAMS = ("W_1", "b_1", "W_2", "b_2")


class Run(NamedTuple):
    """What every op of one forward pass needs besides its inputs."""

    tape: object  # Tape or NoTape
    params: dict  # {key: array}
    cfg: object  # ModelConfig
    train: bool  # dropout on?
    rng: object  # numpy Generator for dropout (None when not training)


def norm(run, name, x, x_key):
    """LayerNorm op. Shapes: x (B,L,C) -> (B,L,C)"""
    keys = (x_key, name + ".gamma", name + ".beta")
    p = run.params
    y = run.tape.call(name, layernorm_forward, layernorm_backward, keys, name,
                      x, p[name + ".gamma"], p[name + ".beta"], run.cfg.ln_eps)
    return y, name


def dropout(run, name, x, x_key):
    """Dropout op, or nothing at all outside training. Shapes: x (...) -> (...)"""
    if not run.train or run.cfg.dropout == 0.0:
        return x, x_key
    y = run.tape.call(name, dropout_forward, dropout_backward, (x_key,), name,
                      x, run.cfg.dropout, run.rng)
    return y, name


def add(run, name, a, a_key, b, b_key):
    """Residual add op. Shapes: a (...), b (...) -> (...)"""
    return run.tape.call(name, add_forward, add_backward, (a_key, b_key), name, a, b), name


def attention(run, name, x_q, q_key, x_kv, kv_key, mask):
    """Multi-head attention op. Shapes: x_q (B,T,C), x_kv (B,S,C), mask (Bm,Tm,S) -> (B,T,C)"""
    keys = [name + "." + n for n in ATTN_PARAMS]
    y = run.tape.call(name, mha_forward, mha_backward, (q_key, kv_key, *keys), name,
                      x_q, x_kv, *(run.params[k] for k in keys), mask, run.cfg.n_heads)
    return y, name


def feed_forward(run, name, x, x_key):
    """Feed-forward op. Shapes: x (B,L,C) -> (B,L,C)"""
    keys = [name + "." + n for n in FFN_PARAMS]
    y = run.tape.call(name, ffn_forward, ffn_backward, (x_key, *keys), name,
                      x, *(run.params[k] for k in keys), run.cfg.activation)
    return y, name


def residual(run, name, norm_name, x, x_key, sublayer):
    """One residual sub-block around `sublayer(h, h_key) -> (out, out_key)`.

    Shapes: x (B,L,C) -> (B,L,C)
    """
    if run.cfg.norm_position == "pre":
        h, h_key = norm(run, norm_name, x, x_key)
        f, f_key = sublayer(h, h_key)
        f, f_key = dropout(run, name + ".drop", f, f_key)
        return add(run, name + ".residual", x, x_key, f, f_key)
    f, f_key = sublayer(x, x_key)
    f, f_key = dropout(run, name + ".drop", f, f_key)
    s, s_key = add(run, name + ".residual", x, x_key, f, f_key)
    return norm(run, norm_name, s, s_key)


def encoder_layer(run, i, x, x_key, src_mask):
    """Self-attention then feed-forward. Shapes: x (B,S,C), src_mask (B,1,S) -> (B,S,C)"""
    p = f"encoder.{i}."
    x, x_key = residual(run, p + "self_attn", p + "norm1", x, x_key,
                        lambda h, k: attention(run, p + "self_attn", h, k, h, k, src_mask))
    x, x_key = residual(run, p + "ffn", p + "norm2", x, x_key,
                        lambda h, k: feed_forward(run, p + "ffn", h, k))
    return x, x_key


def decoder_layer(run, i, y, y_key, memory, memory_key, self_mask, cross_mask):
    """Causal self-attention, cross-attention over the encoder memory, feed-forward.

    Shapes: y (B,T,C), memory (B,S,C), self_mask (B,T,T), cross_mask (B,1,S) -> (B,T,C)
    """
    p = f"decoder.{i}."
    y, y_key = residual(run, p + "self_attn", p + "norm1", y, y_key,
                        lambda h, k: attention(run, p + "self_attn", h, k, h, k, self_mask))
    y, y_key = residual(run, p + "cross_attn", p + "norm2", y, y_key,
                        lambda h, k: attention(run, p + "cross_attn", h, k, memory, memory_key,
                                               cross_mask))
    y, y_key = residual(run, p + "ffn", p + "norm3", y, y_key,
                        lambda h, k: feed_forward(run, p + "ffn", h, k))
    return y, y_key


def encoder_stack(run, x, x_key, src_mask):
    """All encoder layers (+ final norm for pre-LN). Shapes: (B,S,C) -> (B,S,C)"""
    for i in range(run.cfg.n_encoder_layers):
        x, x_key = encoder_layer(run, i, x, x_key, src_mask)
    if run.cfg.norm_position == "pre":
        x, x_key = norm(run, "encoder.norm", x, x_key)
    return x, x_key


def decoder_stack(run, y, y_key, memory, memory_key, self_mask, cross_mask):
    """All decoder layers (+ final norm for pre-LN). Shapes: (B,T,C) -> (B,T,C)"""
    for i in range(run.cfg.n_decoder_layers):
        y, y_key = decoder_layer(run, i, y, y_key, memory, memory_key, self_mask, cross_mask)
    if run.cfg.norm_position == "pre":
        y, y_key = norm(run, "decoder.norm", y, y_key)
    return y, y_key
