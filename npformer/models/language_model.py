"""The decoder-only (GPT-style) language model: the encoder's blocks, with a causal mask.

Shapes: B batch, T sequence length, C d_model, V vocab.
  LanguageModel  ids -> tgt_embed * sqrt(C) + positions -> L causal self-attention blocks
                 ("decoder.i") -> final norm -> out (tied) -> next-token logits (B,T,V)
docs/architecture.md shows the kinds of model side by side.
"""
from ..nn.blocks import self_attention_stack
from ..nn.layers import self_attention_backward
from .base import Model
from ..nn.tape import Tape


class LanguageModel(Model):
    """A decoder-only (GPT-style) language model: predicts each next token of a text.

    The same self-attention blocks as the encoder, with a causal mask, so every
    position is a training example at once (docs/architecture.md).
    """

    kinds = ("decoder-only",)

    def _states(self, run, ids, cache=None):
        """Shapes: ids (B,T) -> last block's output Value (B,T,C); with a cache, new positions only"""
        mask, offset = self._self_mask(ids, cache)  # (B,T,T')
        x = self._embed(run, ids, "tgt", offset)
        caches = [layer.self_attn for layer in cache.layers] if cache is not None else None
        return self_attention_stack(run, "decoder", self.config.n_decoder_layers, x, mask, caches)

    def forward(self, ids, tape=None, train=False, rng=None, cache=None):
        """Next-token logits at every position.

        cache: a DecoderCache from `new_cache` (generation, no tape); `ids` then
        holds only the new positions, and the cache is updated in place.
        Shapes: ids (B,T) -> logits (B,T,V)
        """
        ids = self.check_ids(ids, "ids", self.config.tgt_vocab_size)
        if cache is not None and tape is not None:
            raise ValueError("a key/value cache is for generation: run without a tape")
        run = self._run(tape, train, rng)
        return self._output(run, self._states(run, ids, cache)).data

    def loss(self, ids_in, ids_out, tape=None, train=False, rng=None, label_smoothing=0.0):
        """Mean next-token cross-entropy of ids_out given ids_in (padding ignored).

        Shapes: ids_in (B,T) = [BOS, t1 .. tn], ids_out (B,T) = [t1 .. tn, EOS] -> float
        """
        ids_in = self.check_ids(ids_in, "ids_in", self.config.tgt_vocab_size)
        ids_out = self.check_ids(ids_out, "ids_out", self.config.tgt_vocab_size)
        if ids_out.shape != ids_in.shape:
            raise ValueError(f"ids_out shape {ids_out.shape} != ids_in shape {ids_in.shape}")
        run = self._run(tape, train, rng)
        return self._output_loss(run, self._states(run, ids_in), ids_out, self.config.pad_id,
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
