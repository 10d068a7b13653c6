"""Parameters of every kind of model: names, shapes and initialisation, in one place.

Shapes: C d_model, F d_ff, V vocab, L max_len, K classes.
`param_specs(cfg)` lists every parameter a ModelConfig needs, without allocating;
`init_params(cfg)` draws them (in that order, from cfg.seed); a checkpoint's
arrays are compared with the specs before a model is built from them.

Parameter layout (one attention layer):
  self_attn.W_qkv (C,3C), b_qkv (3C,)   [W_q|W_k|W_v] packed, as nanoGPT's c_attn
  cross_attn.W_q (C,C), b_q (C,), W_kv (C,2C), b_kv (2C,)   [W_k|W_v] packed
  *.W_o (C,C), b_o (C,)
Parameter dicts saved before the packing (separate W_q/W_k/W_v) are converted
by `upgrade_legacy_params`.

Initialisation (documented in docs/architecture.md):
  embeddings      N(0, C^-1/2), padding row zero  (times sqrt(C) in forward: unit scale)
  weight matrices Xavier/Glorot uniform, limit sqrt(6 / (fan_in + fan_out)); packed
                  matrices are [W_q|W_k|W_v] of three (C,C) draws
  biases          zero
  layer norms     gamma = 1, beta = 0
  learned positions N(0, 0.02)
"""
import math
from typing import NamedTuple

import numpy as np


def embedding_keys(cfg):
    """Parameter keys of the source and target embedding matrices."""
    if cfg.share_embeddings:
        return "embed.W", "embed.W"
    return "src_embed.W", "tgt_embed.W"


def attention_prefixes(cfg):
    """Names of the self-attention and cross-attention ops, e.g. "decoder.0.cross_attn"."""
    self_attn = [f"encoder.{i}.self_attn" for i in range(cfg.n_encoder_layers)]
    self_attn += [f"decoder.{i}.self_attn" for i in range(cfg.n_decoder_layers)]
    cross_attn = [f"decoder.{i}.cross_attn" for i in range(cfg.n_decoder_layers)]
    return self_attn, cross_attn


class ParamSpec(NamedTuple):
    """How one parameter is shaped and initialised (see the module docstring)."""

    shape: tuple
    init: str  # "embedding", "position", "xavier", "zeros" or "ones"
    parts: int = 1  # xavier: `parts` draws of (fan_in, fan_out / parts), side by side


def param_specs(cfg):
    """{dotted key: ParamSpec} of a config, in initialisation order; allocates nothing.

    Checkpoint loading compares a file's arrays with these shapes before it
    builds a model, so a config cannot make it allocate what the file does not hold.
    The three kinds share their pieces (docs/architecture.md):
      encoder-decoder  src/tgt embeddings, encoder layers, decoder layers with
                       cross-attention, output projection "out"
      decoder-only     tgt embedding, "decoder.i" self-attention blocks, "out"
                       (or, with n_classes, a classification "head")
      encoder-only     src embedding, "encoder.i" self-attention blocks, "head"
    """
    C, F = cfg.d_model, cfg.d_ff
    has_encoder, has_decoder = cfg.n_encoder_layers > 0, cfg.n_decoder_layers > 0
    specs = {}
    src_key, tgt_key = embedding_keys(cfg)
    if has_encoder:
        specs[src_key] = ParamSpec((cfg.src_vocab_size, C), "embedding")
    if has_decoder and tgt_key not in specs:
        specs[tgt_key] = ParamSpec((cfg.tgt_vocab_size, C), "embedding")
    if cfg.positional == "learned":
        for side, used in (("src", has_encoder), ("tgt", has_decoder)):
            if used:
                specs[f"{side}_pos.W"] = ParamSpec((cfg.max_len, C), "position")

    def linear(prefix, fan_in, fan_out, parts=1, suffix=""):
        specs[f"{prefix}W{suffix}"] = ParamSpec((fan_in, parts * fan_out), "xavier", parts)
        specs[f"{prefix}b{suffix}"] = ParamSpec((parts * fan_out,), "zeros")

    def self_attention(prefix):  # Q, K, V packed side by side (as nanoGPT's c_attn), then out
        linear(prefix, C, C, 3, "_qkv")
        linear(prefix, C, C, 1, "_o")

    def cross_attention(prefix):  # Q from the decoder, K and V packed, from the memory
        linear(prefix, C, C, 1, "_q")
        linear(prefix, C, C, 2, "_kv")
        linear(prefix, C, C, 1, "_o")

    def norm(prefix):
        specs[prefix + "gamma"] = ParamSpec((C,), "ones")
        specs[prefix + "beta"] = ParamSpec((C,), "zeros")

    def ffn(prefix):
        linear(prefix, C, F, 1, "_1")
        linear(prefix, F, C, 1, "_2")

    def self_attention_block(prefix):  # blocks.self_attention_block
        self_attention(prefix + "self_attn.")
        norm(prefix + "norm1.")
        ffn(prefix + "ffn.")
        norm(prefix + "norm2.")

    for i in range(cfg.n_encoder_layers):
        self_attention_block(f"encoder.{i}.")
    for i in range(cfg.n_decoder_layers):
        if cfg.kind == "decoder-only":
            self_attention_block(f"decoder.{i}.")
            continue
        self_attention(f"decoder.{i}.self_attn.")
        norm(f"decoder.{i}.norm1.")
        cross_attention(f"decoder.{i}.cross_attn.")
        norm(f"decoder.{i}.norm2.")
        ffn(f"decoder.{i}.ffn.")
        norm(f"decoder.{i}.norm3.")
    if cfg.norm_position == "pre":
        for name, used in (("encoder", has_encoder), ("decoder", has_decoder)):
            if used:
                norm(f"{name}.norm.")
    if cfg.n_classes:
        linear("head.", C, cfg.n_classes)
        return specs
    if not cfg.tie_output:
        specs["out.W"] = ParamSpec((C, cfg.tgt_vocab_size), "xavier")
    specs["out.b"] = ParamSpec((cfg.tgt_vocab_size,), "zeros")
    return specs


def init_params(cfg):
    """Create the parameter dict {dotted key: array} for a config (see module docstring)."""
    rng = np.random.default_rng(cfg.seed)
    dtype = np.dtype(cfg.dtype)
    C = cfg.d_model

    def make(spec):
        if spec.init == "embedding":
            W = rng.normal(0.0, C ** -0.5, size=spec.shape).astype(dtype)
            W[cfg.pad_id] = 0.0
            return W
        if spec.init == "position":
            return rng.normal(0.0, 0.02, size=spec.shape).astype(dtype)
        if spec.init == "xavier":  # packed: `parts` independent (fan_in, fan_out) draws
            fan_in, fan_out = spec.shape[0], spec.shape[1] // spec.parts
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            draws = [rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(dtype)
                     for _ in range(spec.parts)]
            return np.concatenate(draws, axis=1)  # parts x (fan_in,fan_out) -> (fan_in,parts*fan_out)
        return (np.ones if spec.init == "ones" else np.zeros)(spec.shape, dtype)

    return {key: make(spec) for key, spec in param_specs(cfg).items()}


def upgrade_legacy_params(params, config):
    """Convert a parameter dict saved before Q|K|V packing to today's layout.

    Old layout: every attention op had separate W_q, b_q, W_k, b_k, W_v, b_v.
    New layout: self-attention W_qkv = [W_q|W_k|W_v] (C,3C), b_qkv (3C,);
    cross-attention keeps W_q, b_q and packs W_kv = [W_k|W_v] (C,2C), b_kv (2C,).
    A dict already in the new layout is returned unchanged (the same object); a
    legacy dict gives a new dict (the arrays of untouched keys are shared).
    Raises ValueError if the keys fit neither layout for `config`.
    """
    want = set(param_specs(config))
    if set(params) == want:
        return params
    self_attn, cross_attn = attention_prefixes(config)
    packs = [(prefix, "qkv") for prefix in self_attn] + [(prefix, "kv") for prefix in cross_attn]
    new = dict(params)
    try:
        for prefix, parts in packs:
            new[f"{prefix}.W_{parts}"] = np.concatenate(
                [new.pop(f"{prefix}.W_{p}") for p in parts], axis=1)  # parts x (C,C) -> (C,parts*C)
            new[f"{prefix}.b_{parts}"] = np.concatenate(
                [new.pop(f"{prefix}.b_{p}") for p in parts])  # parts x (C,) -> (parts*C,)
    except KeyError as missing:
        raise ValueError(f"parameters fit neither the current nor the legacy layout: no {missing}")
    if set(new) != want:
        raise ValueError(f"parameters fit neither the current nor the legacy layout: missing "
                         f"{sorted(want - set(new))[:5]}, unexpected {sorted(set(new) - want)[:5]}")
    return new


def zero_grads(grads):
    """Set every gradient array to zero, in place (grads accumulate with +=)."""
    for g in grads.values():
        g.fill(0)
