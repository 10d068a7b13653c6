"""Turning a trained model into a translator: greedy decoding, beam search, sampling.

Inference only: no tape, no dropout, no gradients.
Shapes: B batch, S source len, T target positions decoded so far, C d_model,
H heads, D head dim (C = H*D), G = B*H, V target vocab, K beam size,
L = config.max_len (the decoder has positions 0..L-1 and no more).
Token conventions: PAD = config.pad_id (0), BOS = 1, EOS = 2 (the `bos_id` and
`eos_id` arguments). Outputs never contain BOS or the final EOS.

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
* With the cache (`decode_step`) step t runs the decoder on the newest token
  only, (B,1,C): one row through each projection and feed-forward, and one query
  against t+1 cached keys. That is O(T) work per step, O(T^2) per sequence.
  Cross-attention K and V are projected once per source (`init_cache`).

The self-attention cache is preallocated to (G,L,D) per layer and filled one
slot per step, so no step copies the past (as np.concatenate would).
`decode_step` follows blocks.py op for op (pre-LN or post-LN, tied or untied
output, learned or sinusoidal positions, shared embeddings), so its logits equal
`model.forward(src, prefix)[:, -1]` up to rounding; tests/test_decoding.py checks it.

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
import math
from dataclasses import dataclass

import numpy as np

from .layers import (
    embedding_forward,
    ffn_forward,
    layernorm_forward,
    linear_forward,
    positional_forward,
    tied_linear_forward,
)
from .layers.attention import attend, merge_heads, project, split_heads
from .masks import additive, padding_mask
from .model import embedding_keys

BOS_ID = 1  # default begin-of-sentence id: the first decoder input
EOS_ID = 2  # default end-of-sentence id: generation of a row stops when it is emitted


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


def resolve_max_len(model, max_len):
    """Number of tokens to generate at most: config.max_len by default, never more."""
    limit = model.config.max_len
    if max_len is None:
        return limit
    if not isinstance(max_len, (int, np.integer)) or max_len < 0:
        raise ValueError(f"max_len={max_len!r}: must be a non-negative integer")
    if max_len > limit:
        raise ValueError(f"max_len={max_len} exceeds the model's max_len={limit}: the decoder "
                         f"has no positions beyond {limit - 1}")
    return int(max_len)


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


# --------------------------------------------------------------- the decoder cache
@dataclass
class DecoderCache:
    """What the decoder keeps from the past while one batch is decoded.

    Filled in place by `decode_step`, one position per call.
    """

    cross_k: list  # per decoder layer: (G,S,D) keys of the encoder memory
    cross_v: list  # per decoder layer: (G,S,D) values of the encoder memory
    cross_mask: np.ndarray  # (B,1,S) additive source padding mask
    self_k: list  # per decoder layer: (G,L',D) self-attention keys, slots 0..length-1 filled
    self_v: list  # per decoder layer: (G,L',D) self-attention values
    key_ok: np.ndarray  # (B,L') bool: True where the token fed at that position is not PAD
    length: int = 0  # number of positions decoded so far (the next position's index)


def init_cache(model, memory, src, max_steps):
    """Project the memory to each layer's cross-attention K, V once; allocate the self cache.

    Shapes: memory (B,S,C), src (B,S) -> cache for `max_steps` positions (max_steps <= L)
    """
    cfg, p = model.config, model.params
    H, D = cfg.n_heads, cfg.head_dim
    B = memory.shape[0]
    dtype = np.dtype(cfg.dtype)
    cross_k, cross_v, self_k, self_v = [], [], [], []
    for i in range(cfg.n_decoder_layers):
        a = f"decoder.{i}.cross_attn."
        k = project(memory, p[a + "W_k"], p[a + "b_k"])  # (B,S,C)
        v = project(memory, p[a + "W_v"], p[a + "b_v"])  # (B,S,C)
        cross_k.append(split_heads(k, H))  # (B,S,C) -> (G,S,D)
        cross_v.append(split_heads(v, H))  # (B,S,C) -> (G,S,D)
        self_k.append(np.zeros((B * H, max_steps, D), dtype))  # (G,L',D)
        self_v.append(np.zeros((B * H, max_steps, D), dtype))  # (G,L',D)
    cross_mask = additive(padding_mask(src, cfg.pad_id), dtype)  # (B,S) -> (B,1,S)
    key_ok = np.zeros((B, max_steps), dtype=bool)  # (B,L')
    return DecoderCache(cross_k, cross_v, cross_mask, self_k, self_v, key_ok)


def _head_rows(rows, n_heads):
    """Batch rows -> the rows of the head-split (G,...) arrays that belong to them.

    Shapes: rows (B',) -> (B'*H,)   (row b owns heads b*H .. b*H+H-1)
    """
    return (rows[:, None] * n_heads + np.arange(n_heads)).reshape(-1)  # (B',H) -> (B'*H,)


def select_rows(cache, rows, n_heads):
    """A new cache holding batch rows `rows` (in that order, repeats allowed) of `cache`.

    Used to give each beam of a source its own copy of the source's cache.
    Shapes: rows (B',) indices into the batch -> cache of batch B'
    """
    g = _head_rows(rows, n_heads)  # (B'*H,)
    return DecoderCache(
        cross_k=[k[g] for k in cache.cross_k],  # (G,S,D) -> (B'*H,S,D)
        cross_v=[v[g] for v in cache.cross_v],  # (G,S,D) -> (B'*H,S,D)
        cross_mask=cache.cross_mask[rows],  # (B,1,S) -> (B',1,S)
        self_k=[k[g] for k in cache.self_k],  # (G,L',D) -> (B'*H,L',D)
        self_v=[v[g] for v in cache.self_v],  # (G,L',D) -> (B'*H,L',D)
        key_ok=cache.key_ok[rows],  # (B,L') -> (B',L')
        length=cache.length,
    )


def reorder_self_attention(cache, rows, n_heads):
    """In place: self-attention row b now holds the past of old row rows[b] (beam reordering).

    Only the filled slots are copied. Cross-attention K, V are left alone: beam
    search only reorders beams within one source, and they share its memory.
    Shapes: rows (B,) indices into the batch
    """
    g = _head_rows(rows, n_heads)  # (G,)
    n = cache.length
    for k, v in zip(cache.self_k, cache.self_v):
        k[:, :n] = k[g, :n]  # (G,n,D) gathered, then written back
        v[:, :n] = v[g, :n]  # (G,n,D)
    cache.key_ok[:, :n] = cache.key_ok[rows, :n]  # (B,n)


# ------------------------------------------------------------------ one decoder step
def _norm(model, name, x):
    """Shapes: x (B,1,C) -> (B,1,C)"""
    p = model.params
    y, _ = layernorm_forward(x, p[name + ".gamma"], p[name + ".beta"], model.config.ln_eps)
    return y


def _residual(model, norm_name, x, sublayer):
    """blocks.residual without the tape: pre-LN x + f(LN(x)), post-LN LN(x + f(x)).

    Shapes: x (B,1,C) -> (B,1,C)
    """
    if model.config.norm_position == "pre":
        return x + sublayer(_norm(model, norm_name, x))
    return _norm(model, norm_name, x + sublayer(x))


def _self_attention_step(model, i, cache, h, self_mask):
    """Self-attention of the newest position over itself and every cached one.

    Writes this position's K and V into slot `cache.length` of layer i.
    Shapes: h (B,1,C), self_mask (B,1,t+1) -> (B,1,C)   (t = cache.length)
    """
    p, H = model.params, model.config.n_heads
    a = f"decoder.{i}.self_attn."
    B, t = h.shape[0], cache.length
    q = split_heads(project(h, p[a + "W_q"], p[a + "b_q"]), H)  # (B,1,C) -> (G,1,D)
    cache.self_k[i][:, t: t + 1] = split_heads(project(h, p[a + "W_k"], p[a + "b_k"]), H)  # (G,1,D)
    cache.self_v[i][:, t: t + 1] = split_heads(project(h, p[a + "W_v"], p[a + "b_v"]), H)  # (G,1,D)
    k = cache.self_k[i][:, : t + 1]  # (G,L',D) -> (G,t+1,D) positions 0..t
    v = cache.self_v[i][:, : t + 1]  # (G,L',D) -> (G,t+1,D)
    ctx, _ = attend(q, k, v, self_mask, B)  # (G,1,D)
    return project(merge_heads(ctx, B), p[a + "W_o"], p[a + "b_o"])  # (G,1,D) -> (B,1,C)


def _cross_attention_step(model, i, cache, h):
    """Cross-attention of the newest position over the (pre-projected) encoder memory.

    Shapes: h (B,1,C) -> (B,1,C)
    """
    p, H = model.params, model.config.n_heads
    a = f"decoder.{i}.cross_attn."
    B = h.shape[0]
    q = split_heads(project(h, p[a + "W_q"], p[a + "b_q"]), H)  # (B,1,C) -> (G,1,D)
    ctx, _ = attend(q, cache.cross_k[i], cache.cross_v[i], cache.cross_mask, B)  # (G,1,D)
    return project(merge_heads(ctx, B), p[a + "W_o"], p[a + "b_o"])  # (G,1,D) -> (B,1,C)


def _feed_forward_step(model, i, h):
    """Shapes: h (B,1,C) -> (B,1,C)"""
    p, f = model.params, f"decoder.{i}.ffn."
    y, _ = ffn_forward(h, p[f + "W_1"], p[f + "b_1"], p[f + "W_2"], p[f + "b_2"],
                       model.config.activation)
    return y


def decode_step(model, cache, tokens):
    """Feed one token per row at position `cache.length`; return next-token logits.

    Mirrors Transformer.decode (and blocks.decoder_stack) for the newest position.
    Shapes: tokens (B,) -> logits (B,V)
    """
    cfg, p = model.config, model.params
    t = cache.length
    if t >= cache.key_ok.shape[1]:
        raise ValueError(f"decoder cache is full ({t} positions)")
    tokens = np.asarray(tokens, dtype=np.int64)[:, None]  # (B,) -> (B,1)
    E = p[embedding_keys(cfg)[1]]  # (V,C) target embedding
    y, _ = embedding_forward(tokens, E, math.sqrt(cfg.d_model), cfg.pad_id)  # (B,1) -> (B,1,C)
    P = p["tgt_pos.W"] if cfg.positional == "learned" else model.pos_table  # (L,C)
    y, _ = positional_forward(y, P, t)  # (B,1,C) + position t
    cache.key_ok[:, t] = tokens[:, 0] != cfg.pad_id
    self_mask = additive(cache.key_ok[:, None, : t + 1], cfg.dtype)  # (B,L') -> (B,1,t+1)
    for i in range(cfg.n_decoder_layers):
        d = f"decoder.{i}."
        y = _residual(model, d + "norm1", y, lambda h: _self_attention_step(model, i, cache, h,
                                                                             self_mask))
        y = _residual(model, d + "norm2", y, lambda h: _cross_attention_step(model, i, cache, h))
        y = _residual(model, d + "norm3", y, lambda h: _feed_forward_step(model, i, h))
    if cfg.norm_position == "pre":
        y = _norm(model, "decoder.norm", y)
    if cfg.tie_output:
        logits, _ = tied_linear_forward(y, E, p["out.b"])  # (B,1,C) -> (B,1,V)
    else:
        logits, _ = linear_forward(y, p["out.W"], p["out.b"])  # (B,1,C) -> (B,1,V)
    cache.length += 1
    return logits[:, 0]  # (B,1,V) -> (B,V)


# ------------------------------------------------------------ greedy and sampling
def _ban_pad(logits, pad_id):
    """The decoders never emit PAD. Shapes: logits (B,V) -> (B,V) copy, PAD column -inf"""
    logits = logits.copy()
    logits[:, pad_id] = -np.inf
    return logits


def _generate_rows(model, src, max_len, bos_id, eos_id, use_cache, choose):
    """The loop shared by greedy decoding and sampling, on non-empty rows.

    `choose(logits (B,V)) -> tokens (B,)` picks each row's next token.
    Shapes: src (B,S) -> B lists of at most max_len ids
    """
    pad = model.config.pad_id
    B = src.shape[0]
    memory = model.encode(src)  # (B,S) -> (B,S,C)
    cache = init_cache(model, memory, src, max_len) if use_cache else None
    tokens = np.full((B, max_len + 1), pad, dtype=np.int64)  # (B,1+max_len): BOS, then outputs
    tokens[:, 0] = bos_id
    lengths = np.full(B, max_len)  # (B,) output length of each row
    finished = np.zeros(B, dtype=bool)  # (B,)
    for t in range(max_len):
        if use_cache:
            logits = decode_step(model, cache, tokens[:, t])  # (B,) -> (B,V)
        else:
            logits = model.decode(tokens[:, : t + 1], memory, src)[:, -1]  # (B,t+1,V) -> (B,V)
        next_token = choose(_ban_pad(logits, pad))  # (B,V) -> (B,)
        ends = (next_token == eos_id) & ~finished  # (B,) rows that stop here
        lengths[ends] = t
        finished |= ends
        tokens[:, t + 1] = np.where(finished, pad, next_token)  # finished rows are fed PAD
        if finished.all():
            break
    return [tokens[b, 1: 1 + lengths[b]].tolist() for b in range(B)]


def greedy_decode(model, src, max_len=None, bos_id=BOS_ID, eos_id=EOS_ID, use_cache=True):
    """Translate by taking the most likely token at every step.

    Each row stops at its EOS (not included) or after `max_len` tokens
    (default and upper bound: config.max_len); the batch stops when every row has.
    `use_cache=False` re-runs `model.decode` on the whole prefix each step: the
    slow, obviously correct reference.
    Shapes: src (B,S) or B lists of ids -> B lists of ids
    """
    max_len = resolve_max_len(model, max_len)
    return _for_nonempty_rows(model, src, lambda rows: _generate_rows(
        model, rows, max_len, bos_id, eos_id, use_cache, lambda logits: logits.argmax(axis=-1)))


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


def draw_tokens(logits, rng):
    """Draw one token per row from softmax(logits) by inverting the cumulative distribution.

    Tokens with logit -inf (probability 0) are never drawn.
    Shapes: logits (B,V) -> tokens (B,)
    """
    cdf = np.cumsum(_softmax(logits.astype(np.float64)), axis=-1)  # (B,V)
    u = rng.random(logits.shape[0]) * cdf[:, -1]  # (B,) uniform in [0, total)
    return (cdf < u[:, None]).sum(axis=-1)  # (B,V) -> (B,) first index with cdf >= u


def sample(model, src, temperature=1.0, top_k=0, top_p=1.0, rng=None, max_len=None,
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
    max_len = resolve_max_len(model, max_len)
    rng = np.random.default_rng(rng)

    def choose(logits):  # (B,V) -> (B,)
        return draw_tokens(filter_logits(logits / temperature, top_k, top_p), rng)

    return _for_nonempty_rows(model, src, lambda rows: _generate_rows(
        model, rows, max_len, bos_id, eos_id, use_cache, choose))


# --------------------------------------------------------------------- beam search
def length_penalty_factor(length, alpha):
    """GNMT length penalty (Wu et al. 2016): lp = ((5 + length) / 6) ** alpha.

    A hypothesis is ranked by log P(tokens) / lp. Log-probabilities only fall as a
    hypothesis grows, so raw scores favour short outputs; alpha = 0 ranks by raw
    log-probability, larger alpha favours longer outputs. `length` counts every
    scored token: the output tokens plus the EOS, if the hypothesis ended with one.
    """
    return ((5.0 + length) / 6.0) ** alpha


def _beam_rows(model, src, beam_size, length_penalty, max_len, bos_id, eos_id):
    """Beam search on non-empty rows, all sources at once (batch B*K).

    Shapes: src (B,S) -> B lists of ids
    """
    cfg = model.config
    B, K, H = src.shape[0], beam_size, cfg.n_heads
    memory = model.encode(src)  # (B,S) -> (B,S,C)
    cache = init_cache(model, memory, src, max_len)  # batch B: memory projected once per source
    cache = select_rows(cache, np.repeat(np.arange(B), K), H)  # batch B -> B*K, row b*K+k
    scores = np.full((B, K), -np.inf)  # (B,K) log P of each alive hypothesis
    scores[:, 0] = 0.0  # one live beam at first, so the K beams do not all pick the same token
    hyps = np.zeros((B, K, 0), dtype=np.int64)  # (B,K,t) tokens of each alive hypothesis
    last = np.full(B * K, bos_id, dtype=np.int64)  # (B*K,) the token each beam feeds next
    finished = [[] for _ in range(B)]  # per source: (normalised score, tokens) ending in EOS
    done = np.zeros(B, dtype=bool)  # (B,) sources whose search has stopped
    for t in range(max_len):
        logits = decode_step(model, cache, last)  # (B*K,) -> (B*K,V)
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
        reorder_self_attention(cache, rows, H)
        scores = new_scores
        last = new_tokens.reshape(-1)  # (B,K) -> (B*K,)
    else:
        # max_len reached: the alive hypotheses (no EOS) compete with the finished ones
        lp = length_penalty_factor(hyps.shape[2], length_penalty)
        for b in np.flatnonzero(~done):
            for k in range(K):
                if scores[b, k] > -np.inf:
                    finished[b].append((scores[b, k] / lp, hyps[b, k].tolist()))
    # best normalised score; among equal scores the earliest found wins
    return [max(finished[b], key=lambda pair: pair[0])[1] for b in range(B)]


def beam_search(model, src, beam_size=4, length_penalty=0.6, max_len=None,
                bos_id=BOS_ID, eos_id=EOS_ID):
    """Translate with beam search: keep the `beam_size` best prefixes of each source.

    Each step extends every beam by every token (batch B*K, one KV cache row per
    beam, reordered to follow the surviving beams). A candidate ending in EOS
    among the K best is set aside as finished. A source stops once it has K
    finished hypotheses and the best of them scores at least as well as every
    alive beam does now (exact for length_penalty=0, where scores only fall; the
    usual heuristic otherwise), or at max_len, where its alive beams join the
    finished ones. The answer is the hypothesis with the best length-normalised
    score log P / ((5 + length) / 6) ** length_penalty (GNMT, length_penalty_factor).
    beam_size=1 is greedy decoding.
    Shapes: src (B,S) or B lists of ids -> B lists of ids
    """
    if not isinstance(beam_size, (int, np.integer)) or beam_size < 1:
        raise ValueError(f"beam_size={beam_size!r}: must be an integer >= 1")
    if not length_penalty >= 0:
        raise ValueError(f"length_penalty={length_penalty!r}: must be >= 0")
    max_len = resolve_max_len(model, max_len)
    if max_len == 0:
        return [[] for _ in prepare_source(model, src)[1]]
    return _for_nonempty_rows(model, src, lambda rows: _beam_rows(
        model, rows, int(beam_size), length_penalty, max_len, bos_id, eos_id))


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
