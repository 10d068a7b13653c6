"""The encoder-decoder transformer: parameters, initialisation, forward, loss, generation cache.

Shapes: B batch, S source len, T target len, C d_model, V vocab, L max_len.

Data flow (each arrow is one op on the tape, see blocks.py):
  src ids -> src_embed * sqrt(C) -> + positions -> dropout -> encoder stack -> memory
  tgt ids -> tgt_embed * sqrt(C) -> + positions -> dropout -> decoder stack
          (self-attention, cross-attention over memory, feed-forward) -> out (logits) -> loss
Training: `loss = model.loss(src, tgt_in, tgt_out, tape=tape, train=True, rng=rng)`,
then `tape.backward(model.grads, "loss")` fills model.grads.
Generation (decoding.py): `model.decode(new_tokens, memory, src, cache=cache)` runs
the same blocks on the new positions only, with a key/value cache (`new_cache`).

Parameter layout (one attention layer, C = d_model):
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
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .blocks import LayerCache, Run, decoder_stack, dropout, encoder_stack, self_attention_stack
from .config import ModelConfig
from .layers import (
    KVCache,
    cross_attention_backward,
    cross_entropy_backward,
    cross_entropy_forward,
    embedding_backward,
    embedding_forward,
    fixed_positional_backward,
    linear_backward,
    linear_forward,
    pool_backward,
    pool_forward,
    pool_weights,
    positional_backward,
    positional_forward,
    self_attention_backward,
    sinusoidal_table,
    tied_linear_backward,
    tied_linear_forward,
)
from .masks import additive, causal_mask, combine, padding_mask
from .optim import zero_grads
from .tape import NoTape, Tape, Value


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


@dataclass
class DecoderCache:
    """What generation keeps from the past of one batch (decoding.py).

    Filled in place by `Transformer.decode(..., cache=cache)`.
    """

    layers: list  # one LayerCache (self- and cross-attention KVCache) per decoder layer
    key_ok: np.ndarray  # (B,L') bool: True where the token fed at that position is not PAD
    length: int = 0  # positions fed so far (the next position's index)

    def select(self, rows):
        """A new cache holding batch rows `rows` (in that order, repeats allowed).

        Used to give each beam of a source its own copy of the source's cache.
        Shapes: rows (B',) indices into the batch -> cache of batch B'
        """
        layers = [LayerCache(c.self_attn.select(rows),
                             c.cross_attn.select(rows) if c.cross_attn is not None else None)
                  for c in self.layers]
        return DecoderCache(layers, self.key_ok[rows], self.length)  # (B,L') -> (B',L')

    def reorder(self, rows):
        """In place: row b now holds the past of old row rows[b] (beam reordering).

        Cross-attention keys and values are left alone: beam search only reorders
        beams within one source, and they share its memory. Shapes: rows (B,)
        """
        for c in self.layers:
            c.self_attn.reorder(rows)
        n = self.length
        self.key_ok[:, :n] = self.key_ok[rows, :n]  # (B,n)


class Model:
    """What every kind of model shares: parameters in a flat dict, checks, embeddings, output.

    model.params  {key: array}, model.grads {key: array of the same shape}.
    Subclasses: Transformer (encoder-decoder), LanguageModel (decoder-only),
    Classifier (a decoder-only or encoder-only body with a head); `build_model`
    picks one from a config.
    """

    kinds = ()  # the ModelConfig kinds a subclass implements

    def __init__(self, config, params=None):
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
        if config.kind not in self.kinds or (config.n_classes > 0) != (type(self) is Classifier):
            raise ValueError(f"a {config.kind} config with n_classes={config.n_classes} is not a "
                             f"{type(self).__name__}; use npformer.model.build_model")
        self.config = config
        if params is None:
            params = init_params(config)
        else:
            self._check_params(params)
        self.params = params
        self.grads = {k: np.zeros_like(v) for k, v in params.items()}
        self.pos_table = sinusoidal_table(config.max_len, config.d_model, np.dtype(config.dtype))

    # ------------------------------------------------------------------ checks
    def _check_params(self, params):
        """Loaded parameters must match this config exactly (names, shapes, dtype)."""
        want = {k: spec.shape for k, spec in param_specs(self.config).items()}
        missing = sorted(set(want) - set(params))
        extra = sorted(set(params) - set(want))
        if missing or extra:
            hint = ""
            if any(k.endswith(".self_attn.W_q") for k in extra):
                hint = (" (separate W_q/W_k/W_v: a legacy layout; convert it with "
                        "npformer.model.upgrade_legacy_params)")
            raise ValueError(f"parameters do not match the config: missing {missing[:5]}, "
                             f"unexpected {extra[:5]}{hint}")
        for k, shape in want.items():
            if params[k].shape != shape:
                raise ValueError(f"parameter {k}: shape {params[k].shape}, config needs {shape}")
            if params[k].dtype != np.dtype(self.config.dtype):
                raise ValueError(f"parameter {k}: dtype {params[k].dtype}, config needs "
                                 f"{self.config.dtype}")

    def check_ids(self, ids, name, vocab_size):
        """Validate a batch of token ids at the model boundary; returns it as an int array."""
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"{name}: expected token ids of shape (batch, length), got {ids.shape}")
        if ids.size == 0:
            raise ValueError(f"{name}: empty batch or zero-length sequences {ids.shape}")
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"{name}: token ids must be integers, got dtype {ids.dtype}")
        if ids.shape[1] > self.config.max_len:
            raise ValueError(f"{name}: length {ids.shape[1]} exceeds max_len={self.config.max_len}")
        low, high = ids.min(), ids.max()
        if low < 0 or high >= vocab_size:
            bad = low if low < 0 else high
            raise ValueError(f"{name}: token id {bad} out of range [0, {vocab_size})")
        return ids.astype(np.int64, copy=False)

    # ----------------------------------------------------------------- pieces
    @property
    def n_params(self):
        """Number of scalar parameters (a tied matrix counted once)."""
        return sum(v.size for v in self.params.values())

    def zero_grad(self):
        """Zero model.grads in place (optim.zero_grads)."""
        zero_grads(self.grads)

    def new_cache(self, batch, max_steps):
        """An empty key/value cache for generating up to `max_steps` positions (<= L)."""
        cross = self.config.kind == "encoder-decoder"  # cross-attention: sized by the memory
        layers = [LayerCache(KVCache(max_steps), KVCache(0) if cross else None)
                  for _ in range(self.config.n_decoder_layers)]
        return DecoderCache(layers, np.zeros((batch, max_steps), dtype=bool))  # key_ok (B,L')

    def _run(self, tape, train, rng):
        if train and self.config.dropout > 0 and rng is None:
            raise ValueError("training with dropout needs rng (a numpy Generator)")
        return Run(tape if tape is not None else NoTape(), self.params, self.config, train, rng)

    def _embed(self, run, ids, side, offset=0):
        """Token embedding * sqrt(C) + positions (+ dropout). Shapes: (B,L) -> (B,L,C)"""
        cfg = self.config
        W = run.param(embedding_keys(cfg)[0 if side == "src" else 1])
        x = run.tape.call(f"{side}_embed", embedding_forward, embedding_backward,
                          ids, W, math.sqrt(cfg.d_model), cfg.pad_id)  # (B,L) -> (B,L,C)
        if cfg.positional == "learned":
            x = run.tape.call(f"{side}_pos", positional_forward, positional_backward,
                              x, run.param(f"{side}_pos.W"), offset)  # + learned rows
        else:
            x = run.tape.call(f"{side}_pos", positional_forward, fixed_positional_backward,
                              x, self.pos_table, offset)  # + sinusoids (a constant)
        return dropout(run, f"{side}_embed.drop", x)

    def _self_mask(self, ids, cache=None):
        """Causal & padding mask of a decoder's self-attention; updates a generation cache.

        With a cache, `ids` holds positions cache.length .. cache.length+T-1 only.
        Shapes: ids (B,T) -> additive mask (B,T,T'), T' = every position so far; offset
        """
        cfg = self.config
        T = ids.shape[1]
        offset = 0 if cache is None else cache.length
        if offset + T > cfg.max_len:
            raise ValueError(f"positions {offset}..{offset + T - 1} exceed max_len={cfg.max_len}")
        key_ok = ids != cfg.pad_id  # (B,T) keys that are real tokens
        if cache is not None:
            cache.key_ok[:, offset: offset + T] = key_ok
            key_ok = cache.key_ok[:, : offset + T]  # (B,offset+T) every position so far
            cache.length += T
        mask = additive(combine(causal_mask(T, offset), key_ok[:, None, :]),
                        cfg.dtype)  # (1,T,T') & (B,1,T') -> (B,T,T')
        return mask, offset

    def _output(self, run, y):
        """Output projection to vocabulary logits. Shapes: y (B,T,C) -> logits Value (B,T,V)"""
        cfg = self.config
        if cfg.tie_output:
            E = run.param(embedding_keys(cfg)[1])
            return run.tape.call("out", tied_linear_forward, tied_linear_backward,
                                 y, E, run.param("out.b"))  # (B,T,C) -> (B,T,V)
        return run.tape.call("out", linear_forward, linear_backward,
                             y, run.param("out.W"), run.param("out.b"))  # (B,T,C) -> (B,T,V)

    def _loss(self, run, logits, targets, ignore_id, label_smoothing):
        """Mean cross-entropy op "loss" (so `tape.backward(model.grads, "loss")` works)."""
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={label_smoothing}: must be in [0, 1)")
        loss = run.tape.call("loss", cross_entropy_forward, cross_entropy_backward,
                             logits, targets, ignore_id, label_smoothing)
        return float(loss.data)


class Transformer(Model):
    """The encoder-decoder transformer (the translator)."""

    kinds = ("encoder-decoder",)

    def _encode(self, run, src):
        """Shapes: src (B,S) -> memory Value (B,S,C)"""
        src_mask = additive(padding_mask(src, self.config.pad_id), self.config.dtype)  # (B,1,S)
        return encoder_stack(run, self._embed(run, src, "src"), src_mask)

    def _decode(self, run, tgt_in, memory, src, cache=None):
        """Shapes: tgt_in (B,T), memory Value (B,S,C), src (B,S) -> logits Value (B,T,V)

        With a cache, tgt_in holds positions cache.length .. cache.length+T-1 only.
        """
        self_mask, offset = self._self_mask(tgt_in, cache)  # (B,T,T')
        cross_mask = additive(padding_mask(src, self.config.pad_id), self.config.dtype)  # (B,1,S)
        y = self._embed(run, tgt_in, "tgt", offset)
        y = decoder_stack(run, y, memory, self_mask, cross_mask,
                          cache.layers if cache is not None else None)
        return self._output(run, y)

    # ------------------------------------------------------------------- API
    def encode(self, src, tape=None, train=False, rng=None):
        """Source ids -> encoder memory. Shapes: src (B,S) -> (B,S,C)"""
        src = self.check_ids(src, "src", self.config.src_vocab_size)
        return self._encode(self._run(tape, train, rng), src).data

    def decode(self, tgt_in, memory, src, tape=None, train=False, rng=None, cache=None):
        """Target ids (shifted right, starting with BOS) + memory -> logits.

        On a tape, the gradient of `memory` is collected under the key "memory".
        cache: a DecoderCache from `new_cache` (generation, no tape); tgt_in then
        holds only the new positions, and the cache is updated in place.
        Shapes: tgt_in (B,T), memory (B,S,C), src (B,S) -> logits (B,T,V)
        """
        cfg = self.config
        tgt_in = self.check_ids(tgt_in, "tgt_in", cfg.tgt_vocab_size)
        src = np.asarray(src)
        if memory.shape[:2] != src.shape or tgt_in.shape[0] != src.shape[0]:
            raise ValueError(f"batch mismatch: tgt_in {tgt_in.shape}, memory {memory.shape}, "
                             f"src {src.shape}")
        if cache is not None and tape is not None:
            raise ValueError("a key/value cache is for generation: decode without a tape")
        run = self._run(tape, train, rng)
        return self._decode(run, tgt_in, Value(memory, "memory"), src, cache).data

    def forward(self, src, tgt_in, tape=None, train=False, rng=None):
        """Shapes: src (B,S), tgt_in (B,T) -> logits (B,T,V)"""
        return self._forward(self._run(tape, train, rng), src, tgt_in).data

    def _forward(self, run, src, tgt_in):
        """Shapes: src (B,S), tgt_in (B,T) -> logits Value (B,T,V)"""
        cfg = self.config
        src = self.check_ids(src, "src", cfg.src_vocab_size)
        tgt_in = self.check_ids(tgt_in, "tgt_in", cfg.tgt_vocab_size)
        if tgt_in.shape[0] != src.shape[0]:
            raise ValueError(f"batch mismatch: tgt_in {tgt_in.shape}, src {src.shape}")
        return self._decode(run, tgt_in, self._encode(run, src), src)

    def loss(self, src, tgt_in, tgt_out, tape=None, train=False, rng=None, label_smoothing=0.0):
        """Mean cross-entropy of tgt_out (next tokens) given src and tgt_in.

        Records the op "loss" so `tape.backward(model.grads, "loss")` works.
        Shapes: src (B,S), tgt_in (B,T), tgt_out (B,T) -> loss (float)
        """
        tgt_out = self.check_ids(tgt_out, "tgt_out", self.config.tgt_vocab_size)
        if tgt_out.shape != np.shape(tgt_in):
            raise ValueError(f"tgt_out shape {tgt_out.shape} != tgt_in shape {np.shape(tgt_in)}")
        run = self._run(tape, train, rng)
        logits = self._forward(run, src, tgt_in)
        return self._loss(run, logits, tgt_out, self.config.pad_id, label_smoothing)

    def batch_loss(self, batch, **kwargs):
        """`loss` of a batching.Batch (what a training step calls)."""
        return self.loss(batch.src, batch.tgt_in, batch.tgt_out, **kwargs)

    def attention_maps(self, src, tgt_in):
        """Attention weights of every attention op for one forward pass (no dropout).

        Returns {op name: P (B,H,T,S)}, e.g. "encoder.0.self_attn", "decoder.1.cross_attn".
        """
        tape = Tape()
        self.forward(src, tgt_in, tape=tape)
        attention = (self_attention_backward, cross_attention_backward)
        return {r.name: r.cache.core.P for r in tape.records if r.backward in attention}


class LanguageModel(Model):
    """A decoder-only (GPT-style) language model: predicts each next token of a text.

    The same self-attention blocks as the encoder, with a causal mask, so every
    position is a training example at once (docs/architecture.md).
    """

    kinds = ("decoder-only",)

    def _logits(self, run, ids, cache=None):
        """Shapes: ids (B,T) -> logits Value (B,T,V); with a cache, new positions only"""
        mask, offset = self._self_mask(ids, cache)  # (B,T,T')
        x = self._embed(run, ids, "tgt", offset)
        caches = [layer.self_attn for layer in cache.layers] if cache is not None else None
        x = self_attention_stack(run, "decoder", self.config.n_decoder_layers, x, mask, caches)
        return self._output(run, x)

    def forward(self, ids, tape=None, train=False, rng=None, cache=None):
        """Next-token logits at every position.

        cache: a DecoderCache from `new_cache` (generation, no tape); `ids` then
        holds only the new positions, and the cache is updated in place.
        Shapes: ids (B,T) -> logits (B,T,V)
        """
        ids = self.check_ids(ids, "ids", self.config.tgt_vocab_size)
        if cache is not None and tape is not None:
            raise ValueError("a key/value cache is for generation: run without a tape")
        return self._logits(self._run(tape, train, rng), ids, cache).data

    def loss(self, ids_in, ids_out, tape=None, train=False, rng=None, label_smoothing=0.0):
        """Mean next-token cross-entropy of ids_out given ids_in (padding ignored).

        Shapes: ids_in (B,T) = [BOS, t1 .. tn], ids_out (B,T) = [t1 .. tn, EOS] -> float
        """
        ids_in = self.check_ids(ids_in, "ids_in", self.config.tgt_vocab_size)
        ids_out = self.check_ids(ids_out, "ids_out", self.config.tgt_vocab_size)
        if ids_out.shape != ids_in.shape:
            raise ValueError(f"ids_out shape {ids_out.shape} != ids_in shape {ids_in.shape}")
        run = self._run(tape, train, rng)
        return self._loss(run, self._logits(run, ids_in), ids_out, self.config.pad_id,
                          label_smoothing)

    def batch_loss(self, batch, **kwargs):
        """`loss` of a batching.Batch (tgt_in, tgt_out; no source)."""
        return self.loss(batch.tgt_in, batch.tgt_out, **kwargs)

    def attention_maps(self, ids):
        """{op name: P (B,H,T,T)} of every self-attention op for one forward pass."""
        tape = Tape()
        self.forward(ids, tape=tape)
        return {r.name: r.cache.core.P for r in tape.records
                if r.backward is self_attention_backward}


class Classifier(Model):
    """A body of self-attention blocks, pooled, then a linear head over n_classes labels.

    decoder-only body: causal, as a GPT fine-tuned for classification (it can start
    from a pretrained LanguageModel); encoder-only body: bidirectional, as BERT.
    Inputs are [BOS] + tokens + [EOS]; config.pooling picks the vector the head reads.
    """

    kinds = ("decoder-only", "encoder-only")

    @property
    def body(self):
        """Name of the stack of blocks: "decoder" (causal) or "encoder" (bidirectional)."""
        return "decoder" if self.config.kind == "decoder-only" else "encoder"

    @property
    def vocab_size(self):
        """Token ids the body's embedding holds (target side for a decoder, source for an encoder)."""
        cfg = self.config
        return cfg.tgt_vocab_size if self.body == "decoder" else cfg.src_vocab_size

    def _logits(self, run, ids):
        """Shapes: ids (B,T) -> class logits Value (B,K)"""
        cfg = self.config
        key_ok = ids != cfg.pad_id  # (B,T)
        if self.body == "decoder":
            mask, _ = self._self_mask(ids)  # (B,T,T) causal & padding
            x = self._embed(run, ids, "tgt")
            layers = cfg.n_decoder_layers
        else:
            mask = additive(padding_mask(ids, cfg.pad_id), cfg.dtype)  # (B,1,T)
            x = self._embed(run, ids, "src")
            layers = cfg.n_encoder_layers
        x = self_attention_stack(run, self.body, layers, x, mask)  # (B,T,C)
        pooled = run.tape.call("pool", pool_forward, pool_backward,
                               x, pool_weights(key_ok, cfg.pooling, cfg.dtype))  # (B,T,C) -> (B,C)
        return run.tape.call("head", linear_forward, linear_backward,
                             pooled, run.param("head.W"), run.param("head.b"))  # (B,C) -> (B,K)

    def forward(self, ids, tape=None, train=False, rng=None):
        """Class logits. Shapes: ids (B,T) -> (B,K)"""
        ids = self.check_ids(ids, "ids", self.vocab_size)
        return self._logits(self._run(tape, train, rng), ids).data

    def predict(self, ids):
        """Class probabilities. Shapes: ids (B,T) -> (B,K)"""
        logits = self.forward(ids).astype(np.float64)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))  # (B,K)
        return e / e.sum(axis=1, keepdims=True)

    def loss(self, ids, labels, tape=None, train=False, rng=None, label_smoothing=0.0):
        """Mean cross-entropy of the labels. Shapes: ids (B,T), labels (B,) int -> float"""
        ids = self.check_ids(ids, "ids", self.vocab_size)
        labels = np.asarray(labels)
        if labels.shape != ids.shape[:1] or not np.issubdtype(labels.dtype, np.integer) \
                or labels.min() < 0 or labels.max() >= self.config.n_classes:
            raise ValueError(f"labels: expected {ids.shape[0]} ints in [0, "
                             f"{self.config.n_classes}), got {labels!r}")
        run = self._run(tape, train, rng)
        return self._loss(run, self._logits(run, ids), labels.astype(np.int64), -1,
                          label_smoothing)  # -1: no label is ignored

    def batch_loss(self, batch, **kwargs):
        """`loss` of a batching.Batch (src = ids, tgt_out = labels)."""
        return self.loss(batch.src, batch.tgt_out, **kwargs)


def build_model(config, params=None):
    """The model class a config describes: Transformer, LanguageModel or Classifier."""
    if config.n_classes:
        return Classifier(config, params)
    if config.kind == "decoder-only":
        return LanguageModel(config, params)
    return Transformer(config, params)


def pretrained_key_map(config, pretrained, parts=("encoder", "decoder")):
    """{key in a model of `config`: key in `pretrained` (a LanguageModel's config)} to copy.

    A pretrained decoder-only LM can start
      - a classifier with a decoder-only body: every body weight, under the same name;
      - a classifier with an encoder-only body: the same weights as encoder layers;
      - a translator: its encoder and/or decoder (`parts`); the decoder's cross-attention
        (which the LM does not have) keeps its fresh initialisation, and the LM's
        feed-forward norm "norm2" becomes the decoder layer's "norm3".
    Layers are copied up to the smaller depth. Raises ValueError when the shapes differ.
    """
    if pretrained.kind != "decoder-only" or pretrained.n_classes:
        raise ValueError("weights can only be taken from a pretrained language model "
                         f"(decoder-only), not from a {pretrained.kind} model with "
                         f"n_classes={pretrained.n_classes}")
    source = param_specs(pretrained)
    target = param_specs(config)
    lm_embed = embedding_keys(pretrained)[1]

    def stack(name, renames=()):
        mapping = {}
        for i in range(min(pretrained.n_decoder_layers, getattr(
                config, "n_encoder_layers" if name == "encoder" else "n_decoder_layers"))):
            for key in source:
                if key.startswith(f"decoder.{i}."):
                    tail = key[len(f"decoder.{i}."):]
                    for old, new in renames:
                        tail = tail.replace(old, new)
                    mapping[f"{name}.{i}.{tail}"] = key
        if "decoder.norm.gamma" in source:
            mapping.update({f"{name}.norm.gamma": "decoder.norm.gamma",
                            f"{name}.norm.beta": "decoder.norm.beta"})
        return mapping

    mapping = {}
    src_key, tgt_key = embedding_keys(config)
    if config.kind == "encoder-decoder":
        if "encoder" in parts:
            mapping.update(stack("encoder"))
            mapping[src_key] = lm_embed
        if "decoder" in parts:
            mapping.update(stack("decoder", [("norm2.", "norm3.")]))
            mapping[tgt_key] = lm_embed
            mapping.update({k: k for k in ("out.W", "out.b") if k in source and k in target})
    elif config.kind == "decoder-only":
        mapping.update(stack("decoder"))
        mapping[tgt_key] = lm_embed
    else:
        mapping.update(stack("encoder"))
        mapping[src_key] = lm_embed
    for side in ("src", "tgt"):
        if f"{side}_pos.W" in target and "tgt_pos.W" in source:
            mapping[f"{side}_pos.W"] = "tgt_pos.W"
    mapping = {k: v for k, v in mapping.items() if k in target}
    for key, from_key in mapping.items():
        if target[key].shape != source[from_key].shape:
            raise ValueError(f"{key} has shape {target[key].shape} but the pretrained "
                             f"{from_key} has {source[from_key].shape}: the model sizes "
                             "(d_model, d_ff, vocabulary, max_len) must match the LM's")
    return mapping


def load_pretrained(model, pretrained, parts=("encoder", "decoder")):
    """Copy a pretrained LanguageModel's weights into `model`; returns the keys copied."""
    mapping = pretrained_key_map(model.config, pretrained.config, parts)
    for key, from_key in mapping.items():
        model.params[key][...] = pretrained.params[from_key]
    return sorted(mapping)
