"""Layers: pure forward/backward pairs.

Each `<layer>_forward(...) -> (out, cache)` has a `<layer>_backward(d_out, cache)`
returning the gradients of its array inputs, in the order of the forward's
arguments. Caches are small NamedTuples. A backward never modifies `d_out` in
place (the tape may hand the same array to two consumers).

Shape legend used in every docstring:
  B batch, S source len, T target len (or any sequence length), C d_model,
  H heads, D head dim (C = H*D), F d_ff, V vocab, N = B*T rows.
Derivations: docs/derivations/.
"""
from .attention import (
    KVCache,
    attention_backward,
    attention_forward,
    cross_attention_backward,
    cross_attention_forward,
    self_attention_backward,
    self_attention_forward,
)
from .dropout import dropout_backward, dropout_forward
from .embedding import (
    embedding_backward,
    embedding_forward,
    fixed_positional_backward,
    positional_backward,
    positional_forward,
    sinusoidal_table,
)
from .feedforward import ffn_backward, ffn_forward
from .layernorm import layernorm_backward, layernorm_forward
from .linear import linear_backward, linear_forward, tied_linear_backward, tied_linear_forward
from .loss import cross_entropy_backward, cross_entropy_forward
from .output_loss import output_loss_backward, output_loss_forward
from .pooling import pool_backward, pool_forward, pool_weights
from .residual import add_backward, add_forward
