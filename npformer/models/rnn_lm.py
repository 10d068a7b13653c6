"""A recurrent language model: the sequential baseline for the "transformers parallelise" lesson.

Shapes: B batch, T sequence length, C hidden size, V vocab.

  ids (B,T) -> embed * sqrt(C) (B,T,C) -> Elman RNN, h_t = tanh(x_t W_x + h_{t-1} W_h + b)
            -> output projection tied to the embedding -> next-token loss

It takes the same batches (tasks.LanguageModelTask), the same loss op, optimizer
and training step (train.train_step) as the transformer LanguageModel, so the two
can be trained side by side on the toy text and timed (benchmarks/rnn_race.py,
notebook 10). The difference that matters is the dependency chain: the RNN's T
positions are T steps one after another (layers/recurrent.py), the transformer's
are one matrix product per layer. A teaching baseline, not part of the CLI.
"""
import math
from dataclasses import dataclass

import numpy as np

from ..nn.layers import (embedding_backward, embedding_forward, output_loss_backward,
                         output_loss_forward)
from ..nn.layers.recurrent import rnn_backward, rnn_forward
from ..nn.params import zero_grads
from ..nn.tape import NoTape, Value


@dataclass(frozen=True)
class RNNConfig:
    """Sizes of an RNN language model."""

    vocab_size: int  # V: token ids (the tokenizer's vocab_size)
    d_model: int = 64  # C: embedding width = hidden-state width (tied output needs both equal)
    pad_id: int = 0  # padding id: a zero embedding row, ignored by the loss
    dtype: str = "float32"  # "float64" for the gradient check
    seed: int = 0  # seed of the initialisation

    def __post_init__(self):
        if self.vocab_size < 2 or self.d_model < 1 or not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"RNNConfig: bad sizes {self}")


def rnn_param_shapes(cfg):
    """{key: shape} of an RNN language model's parameters."""
    V, C = cfg.vocab_size, cfg.d_model
    return {"embed.W": (V, C), "rnn.W_x": (C, C), "rnn.W_h": (C, C), "rnn.b": (C,),
            "out.b": (V,)}


def init_rnn_params(cfg):
    """Embedding N(0, C^-1/2) (padding row zero), W_x Xavier, W_h orthogonal, biases zero.

    An orthogonal W_h keeps the norm of a state through the linear part of a step,
    so gradients neither explode nor vanish at the start of training (Saxe et al. 2014).
    """
    rng = np.random.default_rng(cfg.seed)
    V, C = cfg.vocab_size, cfg.d_model
    embed = rng.normal(0.0, C ** -0.5, size=(V, C))
    embed[cfg.pad_id] = 0.0
    limit = math.sqrt(6.0 / (2 * C))
    W_x = rng.uniform(-limit, limit, size=(C, C))
    W_h, _ = np.linalg.qr(rng.normal(size=(C, C)))  # (C,C) orthogonal
    params = {"embed.W": embed, "rnn.W_x": W_x, "rnn.W_h": W_h, "rnn.b": np.zeros(C),
              "out.b": np.zeros(V)}
    return {k: v.astype(cfg.dtype) for k, v in params.items()}


class RNNLanguageModel:
    """Predicts each next token of a text with an Elman RNN (see the module docstring)."""

    def __init__(self, config, params=None):
        self.config = config
        self.params = init_rnn_params(config) if params is None else params
        shapes = rnn_param_shapes(config)
        if {k: v.shape for k, v in self.params.items()} != shapes:
            raise ValueError(f"parameters do not match {shapes}")
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    @property
    def n_params(self):
        return sum(v.size for v in self.params.values())

    def zero_grad(self):
        zero_grads(self.grads)

    def _param(self, key):
        return Value(self.params[key], key)

    def _states(self, tape, ids):
        """Shapes: ids (B,T) -> hidden states Value (B,T,C)"""
        cfg = self.config
        x = tape.call("embed", embedding_forward, embedding_backward, ids,
                      self._param("embed.W"), math.sqrt(cfg.d_model), cfg.pad_id)  # (B,T,C)
        h0 = np.zeros((ids.shape[0], cfg.d_model), cfg.dtype)  # (B,C) a constant: no gradient
        return tape.call("rnn", rnn_forward, rnn_backward, x, h0, self._param("rnn.W_x"),
                         self._param("rnn.W_h"), self._param("rnn.b"))  # (B,T,C)

    def forward(self, ids):
        """Next-token logits. Shapes: ids (B,T) -> (B,T,V)"""
        h = self._states(NoTape(), np.asarray(ids)).data  # (B,T,C)
        return h @ self.params["embed.W"].T + self.params["out.b"]  # (B,T,C) @ (C,V) -> (B,T,V)

    def loss(self, ids_in, ids_out, tape=None, train=False, rng=None, label_smoothing=0.0):
        """Mean next-token cross-entropy (padding ignored); recorded as op "loss" on a tape.

        train and rng are accepted for train.train_step and unused (no dropout).
        Shapes: ids_in (B,T), ids_out (B,T) -> float
        """
        tape = NoTape() if tape is None else tape
        h = self._states(tape, np.asarray(ids_in))
        loss = tape.call("loss", output_loss_forward, output_loss_backward, h,
                         self._param("embed.W"), self._param("out.b"), np.asarray(ids_out),
                         self.config.pad_id, label_smoothing, True, not isinstance(tape, NoTape))
        return float(loss.data)

    def batch_loss(self, batch, **kwargs):
        """`loss` of a batching.Batch (tgt_in, tgt_out), as LanguageModel.batch_loss."""
        return self.loss(batch.tgt_in, batch.tgt_out, **kwargs)
