"""Choosing max_len from the data (--max-len 0, the tsv preset's default).

A pair needs max(S, T) positions, S and T its token counts + EOS/BOS
(batching.pair_length); a pair that needs more than max_len is left out of
training. The rule, in order:

1. Cover every training pair: max_len = the longest pair.
2. Unless the tail is long: if covering the last 0.1% of pairs (TAIL_SHARE) would
   more than double max_len (TAIL_FACTOR), take the shortest length that covers
   all but at most 0.1% of them. A handful of very long lines should not set the
   attention cost of every batch.
3. Within a memory bound: the estimated activation memory of one training batch at
   that length (`batch_mib`) must stay below MEMORY_BUDGET_MIB; if not, max_len is
   the longest length that fits, and the pairs longer than it are left out.

train.py warns (naming --max-len) whenever pairs are left out, and records the
count in log.jsonl. Shapes: B batch, T padded length, C d_model, H heads, F d_ff,
V target vocabulary, L layers per stack.
"""
from typing import NamedTuple

import numpy as np

from ..nn.config import MAX_LEN

TAIL_SHARE = 0.001  # at most this share of pairs may be left out for a long tail (rule 2)
TAIL_FACTOR = 2.0  # "long tail": covering it would multiply max_len by more than this
MEMORY_BUDGET_MIB = 1024  # bound on the estimated activations of one training batch
MIN_LEN = 4  # TrainConfig's smallest max_len


def batch_mib(T, max_tokens, d_model, n_heads, d_ff, n_layers, vocab_size):
    """Estimated MiB of the float32 arrays one encoder-decoder training step keeps.

    A batch of padded length T holds B = max_tokens // T pairs (at least one;
    batching.bucket_batches). Kept for backward, per token: about 8C + F floats in
    each encoder layer and 12C + F in each decoder layer (layer-norm outputs, q, k,
    v, projections, the feed-forward hidden layer), and 3V at the output (logits,
    probabilities, their gradient). Per attention layer (L encoder self, L decoder
    self, L cross): the (B,H,T,T) probabilities, plus two more such arrays alive
    at a time in the softmax. Checked against tracemalloc's peak for the tsv
    preset's model: 288 / 369 / 752 MiB measured at T = 64 / 256 / 1024, this
    estimate 300 / 399 / 795 (a little high, as a bound should be).
    """
    B = max(1, max_tokens // T)
    per_token = n_layers * (20 * d_model + 2 * d_ff) + 3 * vocab_size
    attention = (3 * n_layers + 2) * B * n_heads * T * T  # (B,H,T,T) arrays
    return 4 * (B * T * per_token + attention) / 2**20


class MaxLenChoice(NamedTuple):
    """What choose_max_len picked, and why (`describe()` is the line train prints)."""

    max_len: int
    n_pairs: int  # training pairs
    n_left_out: int  # pairs longer than max_len
    longest: int  # the longest pair's length
    reason: str  # "covers all", "long tail" or "memory bound"
    mib: float  # batch_mib at max_len
    budget_mib: float

    def describe(self):
        if self.reason == "covers all":
            why = f"the longest of the {self.n_pairs:,} training pairs"
        elif self.reason == "long tail":
            why = (f"covers all but {self.n_left_out} of {self.n_pairs:,} training pairs "
                   f"(<= {100 * TAIL_SHARE:g}%; the longest needs {self.longest})")
        else:
            why = (f"the longest that fits the memory bound; {self.n_left_out} of "
                   f"{self.n_pairs:,} training pairs are longer (the longest needs "
                   f"{self.longest})")
        return (f"max_len {self.max_len} chosen from the data (--max-len 0): {why}; about "
                f"{self.mib:,.0f} MiB of activations per batch (bound {self.budget_mib:,.0f} MiB)")


def choose_max_len(lengths, memory, budget_mib=None):
    """max_len for pairs of these lengths (rules 1-3 of the module docstring).

    lengths: each training pair's pair_length; memory(T) -> MiB, e.g.
    functools.partial of batch_mib with the run's sizes; budget_mib: default
    MEMORY_BUDGET_MIB.
    """
    budget_mib = MEMORY_BUDGET_MIB if budget_mib is None else budget_mib
    lengths = np.sort(np.asarray(lengths, dtype=np.int64))  # (N,)
    n = len(lengths)
    if n == 0:
        raise ValueError("no training pairs to choose max_len from")
    longest = int(lengths[-1])
    allowed = int(TAIL_SHARE * n)  # pairs rule 2 may leave out
    tail = int(lengths[n - 1 - allowed])  # the shortest length leaving out at most that many
    chosen, reason = longest, "covers all"
    if longest > TAIL_FACTOR * tail:
        chosen, reason = tail, "long tail"
    chosen = min(max(chosen, MIN_LEN), MAX_LEN)
    if memory(chosen) > budget_mib:
        while chosen > MIN_LEN and memory(chosen) > budget_mib:
            chosen -= 1
        reason = "memory bound"
    left_out = int(n - np.searchsorted(lengths, chosen, side="right"))
    return MaxLenChoice(chosen, n, left_out, longest, reason, memory(chosen), budget_mib)
