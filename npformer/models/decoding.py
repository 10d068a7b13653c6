"""Generation: greedy decoding, sampling and beam search; a language model's continuation.

Inference only: no tape, no dropout, no gradients. Greedy decoding, sampling and
`continue_text` share ONE loop, `generate` (what differs is how the next token is
chosen and what the model is fed); beam search keeps K hypotheses per row, so it has
its own.
Shapes: B batch, S source len, T target positions decoded so far, C d_model,
H heads, D head dim (C = H*D), G = B*H, V target vocab, K beam size,
L = config.max_len (the decoder has positions 0..L-1 and no more).
Token conventions: PAD = config.pad_id (0); BOS and EOS default to
tokenizers.BOS_ID and EOS_ID (the `bos_id` and `eos_id` arguments). Outputs
never contain BOS or the final EOS. `max_new_tokens` bounds the number of
generated tokens (at most L).

Why a key/value cache
---------------------
The decoder is causal: the vector at position t, in every layer, depends on
tokens 0..t only. Appending token t therefore leaves the keys and values of
positions 0..t-1 of every self-attention layer exactly as they were, and the
encoder memory (hence each layer's cross-attention K and V) does not change at
all while one source is decoded.

* Without a cache (`use_cache=False`, the readable reference) step t runs
  `model.decode` on the whole prefix: t+1 positions through every projection and
  feed-forward, plus (t+1) x (t+1) attention scores. That is O(T^2) work per
  step, O(T^3) for a whole sequence, and the memory's K and V are projected
  again at every step.
* With the cache (`model.new_cache`) step t runs the same `model.decode`, on the
  newest token only, (B,1,C): one row through each projection and feed-forward,
  and one query against t+1 cached keys. That is O(T) work per step, O(T^2) per
  sequence. Cross-attention K and V are projected once per source, at step 0.

There is ONE decoder: the cached step runs the real blocks (blocks.py) with a
KVCache per attention layer (layers/attention.py), preallocated and filled one
slot per step, so no step copies the past. tests/test_decoding.py checks that
its logits equal `model.forward(src, prefix)[:, -1]`.

Masks: cross-attention uses the source padding mask. Self-attention over the
cache needs no causal mask (every cached position is in the past); it only hides
positions whose fed token is PAD, which is what `model.decode` does too. A row
that has finished is fed PAD from then on and its outputs are ignored.
PAD is never generated (its logit is set to -inf before choosing): it is not a
word, and a fed PAD would be hidden from the decoder. Scores stay the model's
own log-probabilities.

Input handling: `src` is a (B,S) int array or a list of token-id lists (padded
here). Trailing PAD is not part of a source; a source longer than L raises a
ValueError naming the limit (we raise rather than silently truncate; a CLI may
truncate and say so). A row with no tokens yields [] without running the model.
"""
from functools import partial

import numpy as np

from ..tokenizers.base import BOS_ID, EOS_ID


# ------------------------------------------------------------------ input handling
def prepare_source(model, src):
    """Turn a batch of sources into a padded int array and their lengths.

    A row's length is the position after its last non-PAD token, so trailing
    padding is ignored and an all-PAD (or empty) row has length 0.
    Raises ValueError for a row longer than config.max_len.
    Shapes: src (B,S) ints or B lists -> src (B,S') int64, lengths (B,)
    """
    pad = model.config.pad_id
    if isinstance(src, np.ndarray):
        if src.ndim != 2:
            raise ValueError(f"src: expected token ids of shape (batch, length), got {src.shape}")
        if src.size and not np.issubdtype(src.dtype, np.integer):
            raise ValueError(f"src: token ids must be integers, got dtype {src.dtype}")
        array = src.astype(np.int64)  # (B,S)
    else:
        rows = [np.asarray(row) for row in src]
        for i, row in enumerate(rows):
            if row.ndim != 1 or (row.size and not np.issubdtype(row.dtype, np.integer)):
                raise ValueError(f"src row {i}: expected a list of integer token ids")
        width = max((row.size for row in rows), default=0)
        array = np.full((len(rows), width), pad, dtype=np.int64)  # (B,S) all PAD
        for i, row in enumerate(rows):
            array[i, : row.size] = row
    positions = np.arange(1, array.shape[1] + 1)  # (S,) 1-based
    last = np.where(array != pad, positions, 0).max(axis=1, initial=0)  # (B,S) -> (B,) length
    too_long = np.flatnonzero(last > model.config.max_len)
    if too_long.size:
        i = too_long[0]
        raise ValueError(f"src row {i} has {last[i]} tokens, more than the model's "
                         f"max_len={model.config.max_len} (the longest source it can encode); "
                         "truncate or split it first")
    return array[:, : last.max(initial=0)], last  # (B,S) -> (B,S') without all-PAD columns


def resolve_max_new_tokens(model, max_new_tokens):
    """Number of tokens to generate at most: config.max_len by default, never more."""
    limit = model.config.max_len
    if max_new_tokens is None:
        return limit
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens!r}: must be a non-negative integer")
    if max_new_tokens > limit:
        raise ValueError(f"max_new_tokens={max_new_tokens} exceeds the model's max_len={limit}: "
                         f"the decoder has no positions beyond {limit - 1}")
    return int(max_new_tokens)


def _for_nonempty_rows(model, src, decode_rows):
    """Run `decode_rows(src_rows (B',S')) -> list of B' outputs` on the non-empty rows only.

    Empty rows get [] and never reach the model.
    """
    src, lengths = prepare_source(model, src)  # (B,S'), (B,)
    outputs = [[] for _ in range(src.shape[0])]
    rows = np.flatnonzero(lengths > 0)  # (B',)
    if rows.size == 0:
        return outputs
    sub = src[rows, : lengths[rows].max()]  # (B,S') -> (B',S'')
    for row, out in zip(rows, decode_rows(sub)):
        outputs[row] = out
    return outputs


# ------------------------------------------------------------ greedy and sampling
def _ban_pad(logits, pad_id):
    """The decoders never emit PAD: its column becomes -inf, in place (logits is a fresh array).

    Shapes: logits (B,V) -> the same array
    """
    logits[:, pad_id] = -np.inf
    return logits


def _feeder(run, cache):
    """`next_logits(tokens, t)`: the logits for position t, given tokens[:, :t].

    run(ids, cache=None) -> logits (B,T,V) runs the model. With a cache only the
    positions not fed yet go in (a prompt at once, then one token per step); without
    one the whole prefix is run again each step (the slow, obviously correct reference).
    """
    fed = 0  # positions already in the cache

    def next_logits(tokens, t):
        nonlocal fed
        if cache is None:
            return run(tokens[:, :t])[:, -1]  # (B,t,V) -> (B,V)
        logits = run(tokens[:, fed: t], cache=cache)[:, -1]  # (B,t-fed,V) -> (B,V)
        fed = t
        return logits

    return next_logits


def generate(tokens, start, n_new, next_logits, choose, eos_id, pad_id):
    """The one generation loop (translation, sampling, a language model's continuation).

    tokens (B,start+n_new) holds each row's prefix in tokens[:, :start]; position by
    position, `choose(logits (B,V)) -> (B,)` picks the next token of every row from
    `next_logits(tokens, t)`. A row stops at its EOS (not included); finished rows
    are fed PAD; the batch stops when every row has.
    Shapes: tokens (B,start+n_new) -> B lists of at most n_new ids
    """
    B = tokens.shape[0]
    lengths = np.full(B, n_new)  # (B,) output length of each row
    finished = np.zeros(B, dtype=bool)  # (B,)
    for t in range(start, start + n_new):
        next_token = choose(_ban_pad(next_logits(tokens, t), pad_id))  # (B,V) -> (B,)
        ends = (next_token == eos_id) & ~finished  # (B,) rows that stop here
        lengths[ends] = t - start
        finished |= ends
        tokens[:, t] = np.where(finished, pad_id, next_token)
        if finished.all():
            break
    return [tokens[b, start: start + lengths[b]].tolist() for b in range(B)]


def _generate_rows(model, src, n_new, bos_id, eos_id, use_cache, choose):
    """A translator's generation on non-empty rows: BOS, then `generate`.

    Shapes: src (B,S) -> B lists of at most n_new ids
    """
    pad = model.config.pad_id
    B = src.shape[0]
    memory = model.encode(src)  # (B,S) -> (B,S,C)
    cache = model.new_cache(B, n_new) if use_cache else None
    tokens = np.full((B, n_new + 1), pad, dtype=np.int64)  # (B,1+n_new): BOS, then outputs
    tokens[:, 0] = bos_id
    run = partial(model.decode, memory=memory, src=src)  # (B,T) -> (B,T,V)
    return generate(tokens, 1, n_new, _feeder(run, cache), choose, eos_id, pad)


def greedy_decode(model, src, max_new_tokens=None, bos_id=BOS_ID, eos_id=EOS_ID, use_cache=True):
    """Translate by taking the most likely token at every step.

    Each row stops at its EOS (not included) or after `max_new_tokens` tokens
    (default and upper bound: config.max_len); the batch stops when every row has.
    `use_cache=False` re-runs `model.decode` on the whole prefix each step: the
    slow, obviously correct reference.
    Shapes: src (B,S) or B lists of ids -> B lists of ids
    """
    n_new = resolve_max_new_tokens(model, max_new_tokens)
    return _for_nonempty_rows(model, src, lambda rows: _generate_rows(
        model, rows, n_new, bos_id, eos_id, use_cache, lambda logits: logits.argmax(axis=-1)))


def _softmax(logits):
    """Shapes: (...,V) -> (...,V) probabilities (-inf logits get probability 0)"""
    z = logits - logits.max(axis=-1, keepdims=True)  # (...,V)
    e = np.exp(z)  # (...,V)
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(logits):
    """Shapes: (...,V) -> (...,V) log-probabilities, computed in float64"""
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)  # (...,V)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _check_filter_args(top_k, top_p):
    if not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise ValueError(f"top_k={top_k!r}: must be an integer >= 0 (0 = no top-k filter)")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p={top_p!r}: must be in (0, 1] (1 = no nucleus filter)")


def filter_logits(logits, top_k=0, top_p=1.0):
    """Set the logits of tokens that may not be sampled to -inf (a pure function).

    top_k > 0 keeps the k largest logits (ties: lower token id first); 0 keeps all.
    top_p < 1 then keeps the nucleus: the most likely tokens, best first, up to and
    including the first one at which their total probability reaches top_p
    (so the best token always survives).
    Shapes: logits (...,V) -> (...,V) float copy
    """
    _check_filter_args(top_k, top_p)
    out = np.array(logits, dtype=np.result_type(np.asarray(logits).dtype, np.float32))  # copy
    V = out.shape[-1]
    if 0 < top_k < V:
        order = np.argsort(-out, axis=-1, kind="stable")  # (...,V) best first
        np.put_along_axis(out, order[..., top_k:], -np.inf, axis=-1)  # drop all but k
    if top_p < 1.0:
        order = np.argsort(-out, axis=-1, kind="stable")  # (...,V) best first
        ranked = np.take_along_axis(out, order, axis=-1)  # (...,V) logits, best first
        probs = _softmax(ranked)  # (...,V)
        mass_before = np.cumsum(probs, axis=-1) - probs  # (...,V) mass of the better tokens
        ranked = np.where(mass_before >= top_p, -np.inf, ranked)  # outside the nucleus
        np.put_along_axis(out, order, ranked, axis=-1)  # back to token order
    return out


def tempered(logits, temperature):
    """Logits divided by a temperature > 0, shifted first so that the best one is 0.

    softmax(z / T) does not change when z is shifted, and after the shift every
    logit is <= 0: a tiny T sends the others to -inf (probability 0) and the best
    stays 0, so T -> 0 becomes greedy. Unshifted, z / 1e-40 overflows float32 to
    +-inf, and inf - inf in the softmax gives NaN.
    Shapes: logits (...,V) -> (...,V) float64
    """
    z = np.asarray(logits, dtype=np.float64)
    with np.errstate(over="ignore"):  # -5 / 1e-320 = -inf is the intended answer
        return (z - z.max(axis=-1, keepdims=True)) / temperature  # (...,V)


def draw_tokens(logits, rng):
    """Draw one token per row from softmax(logits) by inverting the cumulative distribution.

    Tokens with logit -inf (probability 0) are never drawn.
    Shapes: logits (B,V) -> tokens (B,)
    """
    cdf = np.cumsum(_softmax(logits.astype(np.float64)), axis=-1)  # (B,V)
    u = rng.random(logits.shape[0]) * cdf[:, -1]  # (B,) uniform in [0, total)
    return (cdf < u[:, None]).sum(axis=-1)  # (B,V) -> (B,) first index with cdf >= u


def sample(model, src, temperature=1.0, top_k=0, top_p=1.0, rng=None, max_new_tokens=None,
           bos_id=BOS_ID, eos_id=EOS_ID, use_cache=True):
    """Generate by sampling each next token from the model's (filtered) distribution.

    The logits are divided by `temperature` (> 0; < 1 sharpens, > 1 flattens),
    then filtered with `filter_logits(top_k, top_p)`, then sampled.
    `rng` is a numpy Generator or a seed (None: fresh entropy). top_k=1 is greedy.
    Shapes: src (B,S) or B lists of ids -> B lists of ids
    """
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r}: must be > 0 (use greedy_decode for 0)")
    _check_filter_args(top_k, top_p)
    n_new = resolve_max_new_tokens(model, max_new_tokens)
    rng = np.random.default_rng(rng)

    def choose(logits):  # (B,V) -> (B,)
        return draw_tokens(filter_logits(tempered(logits, temperature), top_k, top_p), rng)

    return _for_nonempty_rows(model, src, lambda rows: _generate_rows(
        model, rows, n_new, bos_id, eos_id, use_cache, choose))


# --------------------------------------------------------------------- beam search
def length_penalty_factor(length, alpha):
    """GNMT length penalty (Wu et al. 2016): lp = ((5 + length) / 6) ** alpha.

    A hypothesis is ranked by log P(tokens) / lp. Log-probabilities only fall as a
    hypothesis grows, so raw scores favour short outputs; alpha = 0 ranks by raw
    log-probability, larger alpha favours longer outputs. `length` counts every
    scored token: the output tokens plus the EOS, if the hypothesis ended with one.
    """
    return ((5.0 + length) / 6.0) ** alpha


def _beam_rows(model, src, beam_size, length_penalty, n_new, bos_id, eos_id):
    """Beam search on non-empty rows, all sources at once (batch B*K).

    Shapes: src (B,S) -> B lists of ids
    """
    cfg = model.config
    B, K = src.shape[0], beam_size
    beam_rows = np.repeat(np.arange(B), K)  # (B*K,) row b*K+k is beam k of source b
    memory = model.encode(src)[beam_rows]  # (B,S) -> (B,S,C) -> (B*K,S,C), encoded once
    src = src[beam_rows]  # (B,S) -> (B*K,S)
    cache = model.new_cache(B * K, n_new)
    scores = np.full((B, K), -np.inf)  # (B,K) log P of each alive hypothesis
    scores[:, 0] = 0.0  # one live beam at first, so the K beams do not all pick the same token
    hyps = np.zeros((B, K, 0), dtype=np.int64)  # (B,K,t) tokens of each alive hypothesis
    last = np.full(B * K, bos_id, dtype=np.int64)  # (B*K,) the token each beam feeds next
    finished = [[] for _ in range(B)]  # per source: (normalised score, tokens) ending in EOS
    done = np.zeros(B, dtype=bool)  # (B,) sources whose search has stopped
    for t in range(n_new):
        logits = model.decode(last[:, None], memory, src, cache=cache)[:, -1]  # (B*K,) -> (B*K,V)
        V = logits.shape[-1]
        logp = _ban_pad(_log_softmax(logits), cfg.pad_id).reshape(B, K, V)  # (B*K,V) -> (B,K,V)
        cand = (scores[:, :, None] + logp).reshape(B, K * V)  # (B,K,1)+(B,K,V) -> (B,K*V)
        n_best = min(2 * K, K * V)  # 2K hold at most K EOS (one per beam): K stay alive
        top = np.argpartition(-cand, n_best - 1, axis=-1)[:, :n_best]  # (B,2K) unordered
        top_scores = np.take_along_axis(cand, top, axis=-1)  # (B,2K)
        order = np.lexsort((top, -top_scores), axis=-1)  # (B,2K) best first, ties: lower id
        best = np.take_along_axis(top, order, axis=-1)  # (B,2K) flat candidate ids, best first
        parents = np.tile(np.arange(K), (B, 1))  # (B,K) which old beam each new beam extends
        new_tokens = np.full((B, K), cfg.pad_id, dtype=np.int64)  # (B,K)
        new_scores = np.full((B, K), -np.inf)  # (B,K)
        for b in np.flatnonzero(~done):
            alive = 0
            for rank, flat in enumerate(best[b]):
                score = cand[b, flat]
                if score == -np.inf or alive == K:
                    break
                parent, token = divmod(int(flat), V)
                if token == eos_id:
                    if rank < K:  # an EOS among the K best candidates ends a hypothesis
                        n_scored = t + 1  # t tokens + EOS
                        finished[b].append((score / length_penalty_factor(n_scored, length_penalty),
                                            hyps[b, parent].tolist()))
                    continue
                parents[b, alive], new_tokens[b, alive], new_scores[b, alive] = parent, token, score
                alive += 1
            if len(finished[b]) >= K:  # stop once no alive beam scores better right now
                best_alive = new_scores[b].max() / length_penalty_factor(t + 1, length_penalty)
                done[b] = max(score for score, _ in finished[b]) >= best_alive
        if done.all():
            break
        hyps = np.concatenate([hyps[np.arange(B)[:, None], parents],  # (B,K,t) reordered
                               new_tokens[:, :, None]], axis=2)  # -> (B,K,t+1)
        rows = (np.arange(B)[:, None] * K + parents).reshape(-1)  # (B,K) -> (B*K,) flat rows
        cache.reorder(rows)
        scores = new_scores
        last = new_tokens.reshape(-1)  # (B,K) -> (B*K,)
    else:
        # n_new reached: the alive hypotheses (no EOS) compete with the finished ones
        lp = length_penalty_factor(hyps.shape[2], length_penalty)
        for b in np.flatnonzero(~done):
            for k in range(K):
                if scores[b, k] > -np.inf:
                    finished[b].append((scores[b, k] / lp, hyps[b, k].tolist()))
    # best normalised score; among equal scores the earliest found wins
    return [max(finished[b], key=lambda pair: pair[0])[1] for b in range(B)]


def beam_search(model, src, beam_size=4, length_penalty=0.6, max_new_tokens=None,
                bos_id=BOS_ID, eos_id=EOS_ID):
    """Translate with beam search: keep the `beam_size` best prefixes of each source.

    Each step extends every beam by every token (batch B*K, one KV cache row per
    beam, reordered to follow the surviving beams). A candidate ending in EOS
    among the K best is set aside as finished. A source stops once it has K
    finished hypotheses and the best of them scores at least as well as every
    alive beam does now (exact for length_penalty=0, where scores only fall; the
    usual heuristic otherwise), or at max_new_tokens, where its alive beams join the
    finished ones. The answer is the hypothesis with the best length-normalised
    score log P / ((5 + length) / 6) ** length_penalty (GNMT, length_penalty_factor).
    beam_size=1 is greedy decoding.
    Shapes: src (B,S) or B lists of ids -> B lists of ids
    """
    if not isinstance(beam_size, (int, np.integer)) or beam_size < 1:
        raise ValueError(f"beam_size={beam_size!r}: must be an integer >= 1")
    if not length_penalty >= 0:
        raise ValueError(f"length_penalty={length_penalty!r}: must be >= 0")
    n_new = resolve_max_new_tokens(model, max_new_tokens)
    if n_new == 0:
        return [[] for _ in prepare_source(model, src)[1]]
    return _for_nonempty_rows(model, src, lambda rows: _beam_rows(
        model, rows, int(beam_size), length_penalty, n_new, bos_id, eos_id))


# ----------------------------------------------------------------- many sentences
def translate_ids(model, src_rows, method="greedy", batch_size=64, **kwargs):
    """Decode many sources in batches of similar length; results in the original order.

    Sorting by length keeps padding (wasted work) small. `kwargs` go to
    greedy_decode, beam_search or sample (method "greedy", "beam", "sample").
    Shapes: N lists of ids -> N lists of ids
    """
    decoders = {"greedy": greedy_decode, "beam": beam_search, "sample": sample}
    if method not in decoders:
        raise ValueError(f"method={method!r}: choose one of {sorted(decoders)}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: must be an integer >= 1")
    src_rows = [list(row) for row in src_rows]
    order = sorted(range(len(src_rows)), key=lambda i: len(src_rows[i]))  # shortest first
    results = [None] * len(src_rows)
    for start in range(0, len(order), batch_size):
        batch = order[start: start + batch_size]
        outputs = decoders[method](model, [src_rows[i] for i in batch], **kwargs)
        for i, out in zip(batch, outputs):
            results[i] = out
    return results


# ------------------------------------------------------- language-model generation
def continue_text(model, prompt, max_new_tokens=None, temperature=0.0, top_k=0, top_p=1.0,
                  rng=None, n=1, bos_id=BOS_ID, eos_id=EOS_ID, use_cache=True):
    """Continue a prompt with a decoder-only LanguageModel: greedy, or sampled.

    The prompt (token ids, without BOS) is fed once, all positions in parallel,
    filling the key/value cache; then one token per step, as for translation.
    temperature 0 takes the most likely token (greedy); > 0 samples from the
    distribution divided by the temperature, filtered by top_k / top_p.
    `n` continuations of the same prompt are generated side by side (a batch of n).
    Each stops at EOS (not included), after `max_new_tokens`, or at the last
    position the model has (max_len).
    Shapes: prompt P ids -> n lists of at most min(max_new_tokens, L - 1 - P) ids
    """
    if temperature < 0:
        raise ValueError(f"temperature={temperature!r}: must be >= 0 (0 = greedy)")
    _check_filter_args(top_k, top_p)
    cfg = model.config
    prompt = [bos_id] + [int(t) for t in prompt]
    room = cfg.max_len - len(prompt)  # positions left after the prompt
    if room < 0:
        raise ValueError(f"the prompt has {len(prompt) - 1} tokens; the model reads at most "
                         f"{cfg.max_len - 1}")
    n_new = room if max_new_tokens is None else min(int(max_new_tokens), room)
    rng = np.random.default_rng(rng)
    tokens = np.full((n, len(prompt) + n_new), cfg.pad_id, dtype=np.int64)  # (n,P+n_new)
    tokens[:, : len(prompt)] = prompt
    cache = model.new_cache(n, len(prompt) + n_new) if use_cache else None

    def choose(logits):  # (n,V) -> (n,)
        if temperature == 0:
            return logits.argmax(axis=-1)
        return draw_tokens(filter_logits(tempered(logits, temperature), top_k, top_p), rng)

    return generate(tokens, len(prompt), n_new, _feeder(model.forward, cache), choose, eos_id,
                    cfg.pad_id)
