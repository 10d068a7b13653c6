"""Encoder and decoder layers and stacks, recorded op by op on a tape.

These functions are compositions, not new forward/backward pairs: each op goes
through `tape.call`, so the tape sees (and a TimedTape's summary lists) every
attention, norm, feed-forward, dropout and residual add. Activations are
`Value`s (array + key) and an op's output is keyed by the op's name
("decoder.1.cross_attn"); its parameters are that name plus a suffix
("decoder.1.cross_attn.W_q"). So a call site only names the op, as in
`feed_forward(run, "encoder.0.ffn", h)`.

Where the norm goes (config.norm_position):
  pre-LN  (default):  x = x + Dropout(Sublayer(LayerNorm(x)))   + a final LayerNorm per stack
  post-LN (original): x = LayerNorm(x + Dropout(Sublayer(x)))   no final LayerNorm
Pre-LN keeps an identity path from the loss to every layer, which is why it
trains without careful warmup; docs/faq.md and the notebooks compare the two.

Generation runs these same functions under a NoTape with one `LayerCache` per
decoder layer (key/value caches, see layers/attention.py); training passes none.

Shapes: B batch, S source len, T target len, C d_model.
"""
from typing import NamedTuple

from .layers import (KVCache, add_backward, add_forward, cross_attention_backward,
                     cross_attention_forward, dropout_backward, dropout_forward, ffn_backward,
                     ffn_forward, layernorm_backward, layernorm_forward, self_attention_backward,
                     self_attention_forward)
from .tape import Value


class Pass(NamedTuple):
    """What every op of one forward pass needs besides its inputs."""

    tape: object  # Tape or NoTape
    params: dict  # {key: array}
    cfg: object  # ModelConfig
    train: bool  # dropout on?
    rng: object  # numpy Generator for dropout (None when not training)

    def param(self, key):
        """The parameter `key` as a Value (tape.param, inlined: called for every weight)."""
        return Value(self.params[key], key)


class LayerCache(NamedTuple):
    """One decoder layer's key/value caches during generation."""

    self_attn: KVCache  # keys and values of the positions generated so far
    cross_attn: KVCache  # keys and values of the encoder memory (filled at the first step)


# ------------------------------------------------------------------------ ops
def norm(run, name, x):
    """LayerNorm op. Shapes: x (B,L,C) -> (B,L,C)"""
    return run.tape.call(name, layernorm_forward, layernorm_backward,
                         x, run.param(name + ".gamma"), run.param(name + ".beta"), run.cfg.ln_eps)


def dropout(run, name, x):
    """Dropout op, or nothing at all outside training. Shapes: x (...) -> (...)"""
    if not run.train or run.cfg.dropout == 0.0:
        return x
    return run.tape.call(name, dropout_forward, dropout_backward, x, run.cfg.dropout, run.rng)


def add(run, name, a, b):
    """Residual add op. Shapes: a (...), b (...) -> (...)"""
    return run.tape.call(name, add_forward, add_backward, a, b)


def self_attention(run, name, x, mask, cache=None):
    """Multi-head self-attention op. Shapes: x (B,T,C), mask (Bm,Tm,S) -> (B,T,C)"""
    return run.tape.call(name, self_attention_forward, self_attention_backward,
                         x, run.param(name + ".W_qkv"), run.param(name + ".b_qkv"),
                         run.param(name + ".W_o"), run.param(name + ".b_o"),
                         mask, run.cfg.n_heads, cache)


def cross_attention(run, name, x, memory, mask, cache=None):
    """Attention of x over the encoder memory. Shapes: x (B,T,C), memory (B,S,C) -> (B,T,C)"""
    return run.tape.call(name, cross_attention_forward, cross_attention_backward,
                         x, memory, run.param(name + ".W_q"), run.param(name + ".b_q"),
                         run.param(name + ".W_kv"), run.param(name + ".b_kv"),
                         run.param(name + ".W_o"), run.param(name + ".b_o"),
                         mask, run.cfg.n_heads, cache)


def feed_forward(run, name, x):
    """Feed-forward op. Shapes: x (B,L,C) -> (B,L,C)"""
    return run.tape.call(name, ffn_forward, ffn_backward,
                         x, run.param(name + ".W_1"), run.param(name + ".b_1"),
                         run.param(name + ".W_2"), run.param(name + ".b_2"), run.cfg.activation)


# --------------------------------------------------------------------- blocks
def residual(run, name, norm_name, x, sublayer):
    """One residual sub-block around `sublayer(h) -> out`: the only place the norm position matters.

    pre-LN: x + Dropout(sublayer(LN(x)));  post-LN: LN(x + Dropout(sublayer(x))).
    Shapes: x (B,L,C) -> (B,L,C)
    """
    if run.cfg.norm_position == "pre":
        f = dropout(run, name + ".drop", sublayer(norm(run, norm_name, x)))
        return add(run, name + ".residual", x, f)
    f = dropout(run, name + ".drop", sublayer(x))
    return norm(run, norm_name, add(run, name + ".residual", x, f))


def self_attention_block(run, prefix, x, mask, cache=None):
    """Self-attention then feed-forward: an encoder layer, or with a causal mask a GPT layer.

    Shapes: x (B,T,C), mask (Bm,Tm,T') -> (B,T,C)   (T' = T, or every position so far
    with a key/value cache)
    """
    attn, ffn = f"{prefix}.self_attn", f"{prefix}.ffn"
    x = residual(run, attn, f"{prefix}.norm1", x,
                 lambda h: self_attention(run, attn, h, mask, cache))
    x = residual(run, ffn, f"{prefix}.norm2", x, lambda h: feed_forward(run, ffn, h))
    return x


def decoder_layer(run, i, y, memory, self_mask, cross_mask, cache=None):
    """Causal self-attention, cross-attention over the encoder memory, feed-forward.

    Shapes: y (B,T,C), memory (B,S,C), self_mask (B,T,T'), cross_mask (B,1,S) -> (B,T,C)
    (T' = T, or every position so far with a cache)
    """
    self_kv, cross_kv = cache if cache is not None else (None, None)
    attn, cross, ffn = f"decoder.{i}.self_attn", f"decoder.{i}.cross_attn", f"decoder.{i}.ffn"
    y = residual(run, attn, f"decoder.{i}.norm1", y,
                 lambda h: self_attention(run, attn, h, self_mask, self_kv))
    y = residual(run, cross, f"decoder.{i}.norm2", y,
                 lambda h: cross_attention(run, cross, h, memory, cross_mask, cross_kv))
    y = residual(run, ffn, f"decoder.{i}.norm3", y, lambda h: feed_forward(run, ffn, h))
    return y


def self_attention_stack(run, name, n_layers, x, mask, caches=None):
    """`n_layers` self-attention blocks "name.0", "name.1", ... (+ final norm "name.norm" for pre-LN).

    The encoder of a translator or classifier (padding mask), and the whole of a
    decoder-only language model (causal mask; with one KVCache per layer when generating).
    Shapes: (B,T,C) -> (B,T,C)
    """
    for i in range(n_layers):
        x = self_attention_block(run, f"{name}.{i}", x, mask,
                                 caches[i] if caches is not None else None)
    if run.cfg.norm_position == "pre":
        x = norm(run, f"{name}.norm", x)
    return x


def encoder_stack(run, x, mask):
    """All encoder layers (+ final norm for pre-LN). Shapes: (B,S,C) -> (B,S,C)"""
    return self_attention_stack(run, "encoder", run.cfg.n_encoder_layers, x, mask)


def decoder_stack(run, y, memory, self_mask, cross_mask, caches=None):
    """All decoder layers (+ final norm for pre-LN). Shapes: (B,T,C) -> (B,T,C)

    caches: None (training), or one LayerCache per layer (generation).
    """
    for i in range(run.cfg.n_decoder_layers):
        y = decoder_layer(run, i, y, memory, self_mask, cross_mask,
                          caches[i] if caches is not None else None)
    if run.cfg.norm_position == "pre":
        y = norm(run, "decoder.norm", y)
    return y
