"""The encoder-decoder transformer (the translator): forward, loss, generation.

Shapes: B batch, S source len, T target len, C d_model, V vocab.

Data flow (each arrow is one op on the tape, see nn/blocks.py):
  src ids -> src_embed * sqrt(C) -> + positions -> dropout -> encoder stack -> memory
  tgt ids -> tgt_embed * sqrt(C) -> + positions -> dropout -> decoder stack
          (self-attention, cross-attention over memory, feed-forward) -> out (logits) -> loss
Training: `loss = model.loss(src, tgt_in, tgt_out, tape=tape, train=True, rng=rng)`,
then `tape.backward(model.grads, "loss")` fills model.grads.
Generation (decoding.py): `model.decode(new_tokens, memory, src, cache=cache)` runs
the same blocks on the new positions only, with a key/value cache (`new_cache`).
The shared base (embeddings, masks, output and loss): base.py.
"""

import numpy as np

from ..nn.blocks import decoder_stack, encoder_stack
from ..nn.layers import cross_attention_backward, self_attention_backward
from ..nn.masks import additive, padding_mask
from ..nn.tape import Tape, Value
from .base import Model


class Transformer(Model):
    """The encoder-decoder transformer (the translator)."""

    kinds = ("encoder-decoder",)

    def _encode(self, run, src):
        """Shapes: src (B,S) -> memory Value (B,S,C)"""
        src_mask = additive(padding_mask(src, self.config.pad_id), self.config.dtype)  # (B,1,S)
        return encoder_stack(run, self._embed(run, src, "src"), src_mask)

    def _decode(self, run, tgt_in, memory, src, cache=None):
        """Shapes: tgt_in (B,T), memory Value (B,S,C), src (B,S) -> decoder output Value (B,T,C)

        With a cache, tgt_in holds positions cache.length .. cache.length+T-1 only.
        """
        self_mask, offset = self._self_mask(tgt_in, cache)  # (B,T,T')
        cross_mask = additive(padding_mask(src, self.config.pad_id), self.config.dtype)  # (B,1,S)
        y = self._embed(run, tgt_in, "tgt", offset)
        return decoder_stack(run, y, memory, self_mask, cross_mask,
                             cache.layers if cache is not None else None)

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
        return self._output(run, self._decode(run, tgt_in, Value(memory, "memory"), src, cache)).data

    def forward(self, src, tgt_in, tape=None, train=False, rng=None):
        """Shapes: src (B,S), tgt_in (B,T) -> logits (B,T,V)"""
        run = self._run(tape, train, rng)
        return self._output(run, self._forward(run, src, tgt_in)).data

    def _forward(self, run, src, tgt_in):
        """Encoder, then decoder. Shapes: src (B,S), tgt_in (B,T) -> decoder output Value (B,T,C)"""
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
        y = self._forward(run, src, tgt_in)  # (B,T,C)
        return self._output_loss(run, y, tgt_out, self.config.pad_id, label_smoothing)

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
