"""The encoder-decoder transformer: parameters, initialisation, forward, loss.

Shapes: B batch, S source len, T target len, C d_model, V vocab.

Data flow (each arrow is one op on the tape, see blocks.py):
  src ids -> src_embed * sqrt(C) -> + positions -> dropout -> encoder stack -> memory
  tgt ids -> tgt_embed * sqrt(C) -> + positions -> dropout -> decoder stack
          (self-attention, cross-attention over memory, feed-forward) -> logits -> loss
Training: `loss = model.loss(src, tgt_in, tgt_out, tape=tape, train=True, rng=rng)`,
then `tape.backward(model.grads, "loss")` fills model.grads.

Initialisation (documented in docs/architecture.md):
  embeddings      N(0, C^-1/2), padding row zero  (times sqrt(C) in forward: unit scale)
  weight matrices Xavier/Glorot uniform, limit sqrt(6 / (fan_in + fan_out))
  biases          zero
  layer norms     gamma = 1, beta = 0
  learned positions N(0, 0.02)
"""
import math

import numpy as np

from .blocks import ATTN_PARAMS, Run, decoder_stack, dropout, encoder_stack
from .config import ModelConfig
from .layers import (
    cross_entropy_backward,
    cross_entropy_forward,
    embedding_backward,
    embedding_forward,
    linear_backward,
    linear_forward,
    mha_backward,
    positional_backward,
    positional_forward,
    sinusoidal_table,
    tied_linear_backward,
    tied_linear_forward,
)
from .masks import additive, causal_mask, combine, padding_mask
from .tape import NoTape, Tape


def embedding_keys(cfg):
    """Parameter keys of the source and target embedding matrices."""
    if cfg.share_embeddings:
        return "embed.W", "embed.W"
    return "src_embed.W", "tgt_embed.W"


def init_params(cfg):
    """Create the parameter dict {dotted key: array} for a config (see module docstring)."""
    rng = np.random.default_rng(cfg.seed)
    dtype = np.dtype(cfg.dtype)
    C, F = cfg.d_model, cfg.d_ff
    params = {}

    def xavier(fan_in, fan_out):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(dtype)

    def embedding(vocab):
        W = rng.normal(0.0, C ** -0.5, size=(vocab, C)).astype(dtype)
        W[cfg.pad_id] = 0.0
        return W

    src_key, tgt_key = embedding_keys(cfg)
    params[src_key] = embedding(cfg.src_vocab_size)
    if tgt_key != src_key:
        params[tgt_key] = embedding(cfg.tgt_vocab_size)
    if cfg.positional == "learned":
        params["src_pos.W"] = rng.normal(0.0, 0.02, size=(cfg.max_len, C)).astype(dtype)
        params["tgt_pos.W"] = rng.normal(0.0, 0.02, size=(cfg.max_len, C)).astype(dtype)

    def attention(prefix):
        for name in ATTN_PARAMS:
            params[prefix + name] = xavier(C, C) if name.startswith("W") else np.zeros(C, dtype)

    def norm(prefix):
        params[prefix + "gamma"] = np.ones(C, dtype)
        params[prefix + "beta"] = np.zeros(C, dtype)

    def ffn(prefix):
        params[prefix + "W_1"] = xavier(C, F)
        params[prefix + "b_1"] = np.zeros(F, dtype)
        params[prefix + "W_2"] = xavier(F, C)
        params[prefix + "b_2"] = np.zeros(C, dtype)

    for i in range(cfg.n_encoder_layers):
        attention(f"encoder.{i}.self_attn.")
        norm(f"encoder.{i}.norm1.")
        ffn(f"encoder.{i}.ffn.")
        norm(f"encoder.{i}.norm2.")
    for i in range(cfg.n_decoder_layers):
        attention(f"decoder.{i}.self_attn.")
        norm(f"decoder.{i}.norm1.")
        attention(f"decoder.{i}.cross_attn.")
        norm(f"decoder.{i}.norm2.")
        ffn(f"decoder.{i}.ffn.")
        norm(f"decoder.{i}.norm3.")
    if cfg.norm_position == "pre":
        norm("encoder.norm.")
        norm("decoder.norm.")
    if not cfg.tie_output:
        params["out.W"] = xavier(C, cfg.tgt_vocab_size)
    params["out.b"] = np.zeros(cfg.tgt_vocab_size, dtype)
    return params


class Transformer:
    """An encoder-decoder transformer whose parameters live in a flat dict.

    model.params  {key: array}, model.grads {key: array of the same shape}.
    """

    def __init__(self, config, params=None):
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
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
        want = {k: v.shape for k, v in init_params(self.config).items()}
        missing = sorted(set(want) - set(params))
        extra = sorted(set(params) - set(want))
        if missing or extra:
            raise ValueError(f"parameters do not match the config: missing {missing[:5]}, "
                             f"unexpected {extra[:5]}")
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

    @property
    def memory_key(self):
        """Tape key of the encoder output (what cross-attention reads)."""
        cfg = self.config
        if cfg.norm_position == "pre":
            return "encoder.norm"
        return f"encoder.{cfg.n_encoder_layers - 1}.norm2"

    def zero_grad(self):
        for g in self.grads.values():
            g.fill(0)

    def _run(self, tape, train, rng):
        if train and self.config.dropout > 0 and rng is None:
            raise ValueError("training with dropout needs rng (a numpy Generator)")
        return Run(tape if tape is not None else NoTape(), self.params, self.config, train, rng)

    def _embed(self, run, ids, side, offset=0):
        """Token embedding * sqrt(C) + positions (+ dropout). Shapes: (B,L) -> (B,L,C)"""
        cfg = self.config
        W_key = embedding_keys(cfg)[0 if side == "src" else 1]
        name = f"{side}_embed"
        x = run.tape.call(name, embedding_forward, embedding_backward, (None, W_key), name,
                          ids, self.params[W_key], math.sqrt(cfg.d_model), cfg.pad_id)
        if cfg.positional == "learned":
            P, P_key = self.params[f"{side}_pos.W"], f"{side}_pos.W"
        else:
            P, P_key = self.pos_table, None
        pos_name = f"{side}_pos"
        x = run.tape.call(pos_name, positional_forward, positional_backward, (name, P_key),
                          pos_name, x, P, offset)
        return dropout(run, f"{side}_embed.drop", x, pos_name)

    # ------------------------------------------------------------------- API
    def encode(self, src, tape=None, train=False, rng=None):
        """Source ids -> encoder memory. Shapes: src (B,S) -> (B,S,C)"""
        src = self.check_ids(src, "src", self.config.src_vocab_size)
        run = self._run(tape, train, rng)
        src_mask = additive(padding_mask(src, self.config.pad_id), self.config.dtype)  # (B,1,S)
        x, x_key = self._embed(run, src, "src")
        memory, memory_key = encoder_stack(run, x, x_key, src_mask)
        assert memory_key == self.memory_key
        return memory

    def decode(self, tgt_in, memory, src, tape=None, train=False, rng=None):
        """Target ids (shifted right, starting with BOS) + memory -> logits.

        Shapes: tgt_in (B,T), memory (B,S,C), src (B,S) -> logits (B,T,V)
        """
        cfg = self.config
        tgt_in = self.check_ids(tgt_in, "tgt_in", cfg.tgt_vocab_size)
        src = np.asarray(src)
        if memory.shape[:2] != src.shape or tgt_in.shape[0] != src.shape[0]:
            raise ValueError(f"batch mismatch: tgt_in {tgt_in.shape}, memory {memory.shape}, "
                             f"src {src.shape}")
        run = self._run(tape, train, rng)
        T = tgt_in.shape[1]
        self_mask = additive(combine(causal_mask(T), padding_mask(tgt_in, cfg.pad_id)),
                             cfg.dtype)  # (1,T,T) & (B,1,T) -> (B,T,T)
        cross_mask = additive(padding_mask(src, cfg.pad_id), cfg.dtype)  # (B,1,S)
        y, y_key = self._embed(run, tgt_in, "tgt")
        y, y_key = decoder_stack(run, y, y_key, memory, self.memory_key, self_mask, cross_mask)
        if cfg.tie_output:
            W_key = embedding_keys(cfg)[1]
            return run.tape.call("out", tied_linear_forward, tied_linear_backward,
                                 (y_key, W_key, "out.b"), "logits",
                                 y, self.params[W_key], self.params["out.b"])  # (B,T,V)
        return run.tape.call("out", linear_forward, linear_backward, (y_key, "out.W", "out.b"),
                             "logits", y, self.params["out.W"], self.params["out.b"])  # (B,T,V)

    def forward(self, src, tgt_in, tape=None, train=False, rng=None):
        """Shapes: src (B,S), tgt_in (B,T) -> logits (B,T,V)"""
        src = self.check_ids(src, "src", self.config.src_vocab_size)
        memory = self.encode(src, tape, train, rng)
        return self.decode(tgt_in, memory, src, tape, train, rng)

    def loss(self, src, tgt_in, tgt_out, tape=None, train=False, rng=None, label_smoothing=0.0):
        """Mean cross-entropy of tgt_out (next tokens) given src and tgt_in.

        Records the op "loss" (key "loss") so `tape.backward(model.grads, "loss")` works.
        Shapes: src (B,S), tgt_in (B,T), tgt_out (B,T) -> loss (float)
        """
        tgt_out = self.check_ids(tgt_out, "tgt_out", self.config.tgt_vocab_size)
        if tgt_out.shape != np.shape(tgt_in):
            raise ValueError(f"tgt_out shape {tgt_out.shape} != tgt_in shape {np.shape(tgt_in)}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={label_smoothing}: must be in [0, 1)")
        logits = self.forward(src, tgt_in, tape, train, rng)
        run_tape = tape if tape is not None else NoTape()
        loss = run_tape.call("loss", cross_entropy_forward, cross_entropy_backward,
                             ("logits", None), "loss",
                             logits, tgt_out, self.config.pad_id, label_smoothing)
        return float(loss)

    def attention_maps(self, src, tgt_in):
        """Attention weights of every attention op for one forward pass (no dropout).

        Returns {op name: P (B,H,T,S)}, e.g. "encoder.0.self_attn", "decoder.1.cross_attn".
        """
        tape = Tape()
        self.forward(src, tgt_in, tape=tape)
        return {r.name: r.cache.P for r in tape.records if r.backward is mha_backward}
