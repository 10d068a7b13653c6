"""The classifier: a body of self-attention blocks, pooled, then a linear head.

Shapes: B batch, T sequence length, C d_model, K classes.
  Classifier     [BOS] ids [EOS] -> the body (causal, GPT-style; or bidirectional
                 "encoder.i" blocks, BERT-style) -> pool -> head -> class logits (B,K)
docs/architecture.md shows the kinds of model side by side.
"""
import numpy as np

from ..nn.blocks import self_attention_stack
from ..nn.layers import (linear_backward, linear_forward, pool_backward, pool_forward, pool_weights,
                         self_attention_backward)
from ..nn.masks import additive, padding_mask
from ..nn.tape import Tape
from .base import Model


class Classifier(Model):
    """A body of self-attention blocks, pooled, then a linear head over n_classes labels.

    decoder-only body: causal, as a GPT fine-tuned for classification (it can start
    from a pretrained LanguageModel); encoder-only body: bidirectional, as BERT.
    Inputs are [BOS] + tokens + [EOS]; config.pooling picks the vector the head reads.
    """

    kinds = ("decoder-only", "encoder-only")
    has_head = True

    @property
    def body(self):
        """Name of the stack of blocks: "decoder" (causal) or "encoder" (bidirectional)."""
        return "decoder" if self.config.kind == "decoder-only" else "encoder"

    @property
    def vocab_size(self):
        """Token ids the body's embedding holds (target side for a decoder, source for an encoder)."""
        cfg = self.config
        return cfg.tgt_vocab_size if self.body == "decoder" else cfg.src_vocab_size

    def _pooled(self, run, ids):
        """Shapes: ids (B,T) -> the vector the head reads, Value (B,C)"""
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
        return run.tape.call("pool", pool_forward, pool_backward,
                             x, pool_weights(key_ok, cfg.pooling, cfg.dtype))  # (B,T,C) -> (B,C)

    def _logits(self, run, ids):
        """Shapes: ids (B,T) -> class logits Value (B,K)"""
        return run.tape.call("head", linear_forward, linear_backward, self._pooled(run, ids),
                             run.param("head.W"), run.param("head.b"))  # (B,C) -> (B,K)

    def features(self, ids):
        """The vector the head reads (the pooled body output), e.g. for a linear probe.

        Shapes: ids (B,T) -> (B,C)
        """
        ids = self.check_ids(ids, "ids", self.vocab_size)
        return self._pooled(self._run(None, False, None), ids).data

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
        """`loss` of a batching.Batch (src = ids, labels = class indices)."""
        return self.loss(batch.src, batch.labels, **kwargs)

    def attention_maps(self, ids):
        """{op name: P (B,H,T,T)} of every self-attention op of the body, one forward pass."""
        tape = Tape()
        self.forward(ids, tape=tape)
        return {r.name: r.cache.core.P for r in tape.records
                if r.backward is self_attention_backward}
