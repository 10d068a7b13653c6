"""The Model base that every kind of model shares: embeddings, masks, output and loss.

Shapes: B batch, S source len, T target len, C d_model, V vocab, L max_len.

A Model holds a config, a flat dict of parameters and one of gradients with the same
keys (names, shapes, initialisation: nn/params.py). Each kind wires the blocks of
nn/blocks.py its own way, one file each: transformer.py (the encoder-decoder),
language_model.py (decoder-only), classifier.py (a pooled body and a head);
`npformer.models.build_model(config)` picks the class a config describes.
Generation (decoding.py) runs the same blocks with a key/value cache (`new_cache`).
"""
import math
from dataclasses import dataclass

import numpy as np

from ..nn.blocks import LayerCache, Pass, dropout
from ..nn.config import ModelConfig
from ..nn.layers import (KVCache, cross_entropy_backward,
                         cross_entropy_forward, embedding_backward, embedding_forward,
                         fixed_positional_backward, linear_backward, linear_forward,
                         output_loss_backward, output_loss_forward, positional_backward,
                         positional_forward, sinusoidal_table,
                         tied_linear_backward, tied_linear_forward)
from ..nn.masks import additive, causal_mask, combine
from ..nn.params import zero_grads
from ..nn.params import embedding_keys, init_params, param_specs
from ..nn.tape import NoTape


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


POSITIONS_AT_ONCE = 1024  # rows of the sinusoid table made at its first use (Model._positions)


class Model:
    """What every kind of model shares: parameters in a flat dict, checks, embeddings, output.

    model.params  {key: array}, model.grads {key: array of the same shape}.
    Subclasses: Transformer (encoder-decoder), LanguageModel (decoder-only),
    Classifier (a decoder-only or encoder-only body with a head); `build_model`
    picks one from a config.
    """

    kinds = ()  # the ModelConfig kinds a subclass implements
    has_head = False  # a classification head (n_classes > 0) instead of an output vocabulary

    def __init__(self, config, params=None):
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
        if config.kind not in self.kinds or (config.n_classes > 0) != self.has_head:
            raise ValueError(f"a {config.kind} config with n_classes={config.n_classes} is not a "
                             f"{type(self).__name__}; use npformer.models.build_model")
        self.config = config
        if params is None:
            params = init_params(config)
        else:
            self._check_params(params)
        self.params = params
        self.grads = {k: np.zeros_like(v) for k, v in params.items()}
        self._sinusoids = np.zeros((0, config.d_model), np.dtype(config.dtype))  # rows made so far

    @property
    def pos_table(self):
        """The fixed sinusoid table of every position. Shapes: (L,C)"""
        return self._positions(self.config.max_len)

    def _positions(self, n):
        """The sinusoid table, with at least n rows; made when first needed.

        A model may allow max_len 32768 at d_model 1024 (a 134 MB table) and only ever
        see 40 positions, so the table grows with the positions used, not with max_len:
        up to POSITIONS_AT_ONCE rows at first (every row, for max_len <= 1024; never
        more than one d_model x d_model weight when d_model >= 1024), then doubling.
        Row p does not depend on the table's length, so growing never changes a value.
        Shapes: -> (L',C) with n <= L' <= L
        """
        if n > len(self._sinusoids):
            rows = min(max(n, 2 * len(self._sinusoids), POSITIONS_AT_ONCE),
                       self.config.max_len)
            self._sinusoids = sinusoidal_table(rows, self.config.d_model,
                                               np.dtype(self.config.dtype))  # (L',C)
        return self._sinusoids

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
                        "npformer.nn.params.upgrade_legacy_params)")
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
        return Pass(tape if tape is not None else NoTape(), self.params, self.config, train, rng)

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
                              x, self._positions(offset + ids.shape[1]),
                              offset)  # + sinusoids (a constant)
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
        _check_smoothing(label_smoothing)
        loss = run.tape.call("loss", cross_entropy_forward, cross_entropy_backward,
                             logits, targets, ignore_id, label_smoothing)
        return float(loss.data)

    def _output_loss(self, run, y, targets, ignore_id, label_smoothing):
        """Output projection and mean cross-entropy as one op "loss" (layers/output_loss.py).

        Computes what `_loss(run, _output(run, y), ...)` does, a block of rows at a
        time, without the (B,T,V) logits. Shapes: y (B,T,C), targets (B,T) -> float
        """
        _check_smoothing(label_smoothing)
        cfg = self.config
        W = run.param(embedding_keys(cfg)[1] if cfg.tie_output else "out.W")  # (V,C) or (C,V)
        loss = run.tape.call("loss", output_loss_forward, output_loss_backward,
                             y, W, run.param("out.b"), targets, ignore_id, label_smoothing,
                             cfg.tie_output, not isinstance(run.tape, NoTape))
        return float(loss.data)


def _check_smoothing(label_smoothing):
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing={label_smoothing}: must be in [0, 1)")
