"""From sentence pairs to padded id batches, bucketed by length under a token budget.

Shapes: B batch, S source len, T target len (+1 for BOS/EOS).
Each example becomes
  src     = tokens(source) + [EOS]
  tgt_in  = [BOS] + tokens(target)        (what the decoder reads: teacher forcing)
  tgt_out = tokens(target) + [EOS]        (what it must predict: the next token)
Batches group examples of similar length so little compute is spent on padding:
examples are sorted by length (ties broken at random), cut into batches whose
padded size B * max(S, T) stays within `max_tokens`, and the batch order is
shuffled. The order of an epoch depends only on (seed, epoch), so a resumed run
sees exactly the batches an uninterrupted one would.
"""
from typing import NamedTuple

import numpy as np

from ..tokenizers import BOS_ID, EOS_ID, PAD_ID


class Batch(NamedTuple):
    """One batch. A language model has no src; a classifier has src and labels only."""

    src: np.ndarray  # (B,S) int64, padded with PAD_ID
    tgt_in: np.ndarray  # (B,T) int64: BOS + target
    tgt_out: np.ndarray  # (B,T) int64: target + EOS
    n_tokens: int  # what the loss averages over: non-padding targets (classifier: examples)
    labels: np.ndarray = None  # (B,) int64: a classifier's class indices


def encode_pairs(pairs, src_tok, tgt_tok, max_len):
    """Tokenize pairs; drop (and count) those that do not fit in max_len positions.

    Returns (examples, n_dropped), examples a list of (src ids, tgt ids) int lists
    WITHOUT the special tokens (they are added in `collate`).
    """
    examples, dropped = [], 0
    for source, target in pairs:
        s, t = src_tok.encode(source), tgt_tok.encode(target)
        if len(s) + 1 > max_len or len(t) + 1 > max_len:
            dropped += 1
            continue
        examples.append((s, t))
    return examples, dropped


def collate(examples):
    """Pad a list of (src ids, tgt ids) into one Batch."""
    B = len(examples)
    S = max(len(s) for s, _ in examples) + 1  # + EOS
    T = max(len(t) for _, t in examples) + 1  # + BOS / EOS
    src = np.full((B, S), PAD_ID, dtype=np.int64)
    tgt_in = np.full((B, T), PAD_ID, dtype=np.int64)
    tgt_out = np.full((B, T), PAD_ID, dtype=np.int64)
    for i, (s, t) in enumerate(examples):
        src[i, : len(s)] = s
        src[i, len(s)] = EOS_ID
        tgt_in[i, 0] = BOS_ID
        tgt_in[i, 1: len(t) + 1] = t
        tgt_out[i, : len(t)] = t
        tgt_out[i, len(t)] = EOS_ID
    n_tokens = sum(len(t) + 1 for _, t in examples)
    return Batch(src, tgt_in, tgt_out, n_tokens)


def pair_length(example):
    """Padded length of a (src ids, tgt ids) example: the longer side + BOS/EOS."""
    return max(len(example[0]), len(example[1])) + 1


def bucket_batches(examples, max_tokens, seed, epoch, shuffle=True, length=pair_length):
    """Index lists of one epoch's batches; B * longest sequence <= max_tokens.

    `length(example)` is the padded length an example needs (tasks.py gives one
    per task). A single example longer than max_tokens still gets a batch of its own.
    """
    if max_tokens <= 0:
        raise ValueError(f"max_tokens={max_tokens}: must be positive")
    rng = np.random.default_rng([seed, epoch])
    lengths = np.array([length(e) for e in examples])
    tiebreak = rng.random(len(examples)) if shuffle else np.arange(len(examples))
    order = np.lexsort((tiebreak, lengths))  # by length, random among equal lengths
    batches, current, longest = [], [], 0
    for i in order:
        new_longest = max(longest, lengths[i])
        if current and new_longest * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, new_longest = [], lengths[i]
        current.append(int(i))
        longest = new_longest
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches
