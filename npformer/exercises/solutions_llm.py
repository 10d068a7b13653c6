"""Model answers for the LLM half of the exercises.

The language-model loss with its shift, top-k/top-p filtering, one key/value-cache
decoding step, one BPE merge, a power-law fit in log space and an
in-context-learning score.

Same conventions as solutions.py. Each is small and self-contained: the references
the checker grades against are npformer's own code where it has one
(cross-entropy kernel, decoding.filter_logits, tokenizers/bpe.py) and a plain
formula where it does not. docs/exercises.md shows them folded; the LLM exercises
notebook (notebooks/exercises_llm.ipynb) holds the stubs.

Shapes: B batch, T length, V vocab, C d_model, H heads, D head dim, L positions
already in the cache, n points.
"""
import math

import numpy as np


# --8<-- [start:lm_loss]
def lm_loss_forward(logits, ids, pad_id):
    """Next-token cross-entropy: the logits at position t predict the token at t + 1.

    The mean runs over the predicted tokens ids[:, 1:] that are not padding; the last
    position predicts nothing (its next token is not in the batch).
    Shapes: logits (B,T,V), ids (B,T) int -> loss float
    """
    pred, target = logits[:, :-1], ids[:, 1:]  # the shift: (B,T-1,V), (B,T-1)
    z = pred - pred.max(axis=-1, keepdims=True)  # stable
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))  # (B,T-1,V) log-softmax
    valid = target != pad_id  # (B,T-1)
    n = max(int(valid.sum()), 1)
    picked = np.take_along_axis(logp, target[..., None], axis=-1)[..., 0]  # (B,T-1)
    loss = float(-(picked * valid).sum() / n)
    return loss, (np.exp(logp), target, valid, n, logits.shape)


def lm_loss_backward(dloss, cache):
    """Shapes: dloss scalar -> dlogits (B,T,V), zero at the last position"""
    p, target, valid, n, shape = cache
    d = p.copy()  # (B,T-1,V) softmax ...
    np.put_along_axis(d, target[..., None],
                      np.take_along_axis(p, target[..., None], axis=-1) - 1.0, axis=-1)
    dlogits = np.zeros(shape)
    dlogits[:, :-1] = dloss * d * valid[..., None] / n  # ... minus one-hot, mean over n
    return dlogits
# --8<-- [end:lm_loss]


# --8<-- [start:filter]
def filter_logits(logits, top_k, top_p):
    """Set the logits of the tokens that may not be sampled to -inf.

    top_k > 0 keeps the k largest logits (ties: the lower token id first); 0 keeps all.
    top_p < 1 then keeps the nucleus of what is left: the most likely tokens, best first,
    up to and including the first at which their total probability (softmax over the
    tokens still kept) reaches top_p, so the best token always survives.
    Shapes: logits (B,V) -> (B,V) a new array
    """
    out = np.array(logits, dtype=np.float64)  # a copy
    B, V = out.shape
    order = np.argsort(-out, axis=-1, kind="stable")  # (B,V) best first
    if 0 < top_k < V:
        np.put_along_axis(out, order[:, top_k:], -np.inf, axis=-1)  # all but the k best
    if top_p < 1.0:
        ranked = np.take_along_axis(out, order, axis=-1)  # (B,V) best first
        p = np.exp(ranked - ranked[:, :1])  # (B,V), exp(-inf) = 0 for the dropped
        p /= p.sum(axis=-1, keepdims=True)
        mass_before = np.cumsum(p, axis=-1) - p  # (B,V) probability of the better tokens
        ranked[mass_before >= top_p] = -np.inf  # the nucleus was complete before this one
        np.put_along_axis(out, order, ranked, axis=-1)  # back to token order
    return out
# --8<-- [end:filter]


# --8<-- [start:kv_step]
def kv_attention_step(x, W_q, W_k, W_v, W_o, past_k, past_v, n_heads):
    """One decoding step of causal multi-head self-attention with a key/value cache.

    The new position's key and value join the cache; its query attends over every
    position so far, itself included. No mask is needed: nothing later exists yet.
    The output equals the last row of the whole sequence run with a causal mask.
    Shapes: x (B,1,C), W_* (C,C), past_k, past_v (B,H,L,D) -> y (B,1,C),
            k, v (B,H,L+1,D)
    """
    B, _, C = x.shape
    D = C // n_heads

    def heads(a):  # (B,1,C) -> (B,H,1,D)
        return a.reshape(B, 1, n_heads, D).transpose(0, 2, 1, 3)

    q = heads(x @ W_q)  # (B,H,1,D)
    k = np.concatenate([past_k, heads(x @ W_k)], axis=2)  # (B,H,L+1,D): append first ...
    v = np.concatenate([past_v, heads(x @ W_v)], axis=2)
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(D)  # ... then attend: (B,H,1,L+1)
    P = np.exp(scores - scores.max(axis=-1, keepdims=True))
    P /= P.sum(axis=-1, keepdims=True)  # softmax over the positions so far
    ctx = P @ v  # (B,H,1,L+1) @ (B,H,L+1,D) -> (B,H,1,D)
    y = ctx.transpose(0, 2, 1, 3).reshape(B, 1, C) @ W_o  # merge the heads, project
    return y, k, v
# --8<-- [end:kv_step]


# --8<-- [start:bpe_merge]
def bpe_merge_step(words, freqs, new_id):
    """One step of BPE training: find the most frequent adjacent pair, merge it everywhere.

    A pair's count is the sum of the word frequencies over its occurrences (overlapping
    ones too: "a a a" holds (a, a) twice); ties go to the smaller pair. Merging replaces
    every non-overlapping occurrence, left to right, by new_id.
    Shapes: words: list of id lists (one per distinct word), freqs: list of ints
            -> (pair, new words)
    """
    counts = {}
    for word, freq in zip(words, freqs):
        for pair in zip(word, word[1:]):
            counts[pair] = counts.get(pair, 0) + freq
    best = max(counts.values())
    pair = min(p for p, c in counts.items() if c == best)
    merged = []
    for word in words:
        out, i = [], 0
        while i < len(word):
            if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
                out.append(new_id)  # the pair becomes one token
                i += 2
            else:
                out.append(word[i])
                i += 1
        merged.append(out)
    return pair, merged
# --8<-- [end:bpe_merge]


# --8<-- [start:power_law]
def fit_power_law(x, y, floor):
    """Fit y - floor = a x^(-alpha) by least squares on a straight line in log-log axes.

    log(y - floor) = log(a) - alpha log(x): a line with slope -alpha, intercept log(a).
    Shapes: x (n,), y (n,) with y > floor -> (a, alpha) floats
    """
    slope, intercept = np.polyfit(np.log(x), np.log(y - floor), 1)
    return float(np.exp(intercept)), float(-slope)
# --8<-- [end:power_law]


# --8<-- [start:icl_score]
def icl_score(logits, targets, pad_id, early, late):
    """In-context-learning score (Olsson et al. 2022): loss at a late position minus loss early.

    Negative when tokens deep in the context are predicted better than early ones: the
    model uses its context. A position's loss is averaged over the sequences whose
    target there is not padding.
    Shapes: logits (B,T,V), targets (B,T) int, early < late positions -> float
    """
    z = logits - logits.max(axis=-1, keepdims=True)  # stable
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))  # (B,T,V)
    loss = -np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]  # (B,T) per token
    valid = targets != pad_id  # (B,T)

    def mean_loss_at(t):
        return loss[valid[:, t], t].mean()  # over the sequences with a real target at t
    return float(mean_loss_at(late) - mean_loss_at(early))
# --8<-- [end:icl_score]
