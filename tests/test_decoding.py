"""Decoding: the KV cache changes nothing but speed; beam search, sampling, input boundary.

Random models rarely emit EOS, so most tests give the output bias random values
(and EOS a chosen bias) to get outputs that vary in tokens and length.
"""
import itertools

import numpy as np
import pytest
from helpers import assert_close, tiny_model

from npformer.models.decoding import (beam_search, draw_tokens, filter_logits, greedy_decode,
                                      length_penalty_factor, sample, translate_ids)

BOS, EOS, PAD = 1, 2, 0
LOGITS_RTOL = 1e-10  # float64: cached and full decoding differ only in summation order
LOGITS_ATOL = 1e-12  # for logits near zero, where a relative bound means nothing

ARCHITECTURES = {
    "pre-LN tied": dict(),
    "post-LN tied": dict(norm_position="post"),
    "pre-LN untied": dict(tie_output=False),
    "post-LN untied learned": dict(norm_position="post", tie_output=False, positional="learned"),
    "shared embeddings gelu": dict(share_embeddings=True, src_vocab_size=19, activation="gelu"),
}


def lively_model(eos_bias=0.0, seed=0, **changes):
    """A tiny float64 model (max_len 12) with a random output bias and a set EOS bias."""
    model = tiny_model(**changes)
    b = model.params["out.b"]
    b[:] = np.random.default_rng(seed).normal(0.0, 1.0, size=b.shape)
    b[EOS] = eos_bias
    return model


def padded_sources(seed=1, lengths=(7, 4, 2, 5, 1, 6), vocab=17):
    """A (B,7) source batch with trailing padding; token ids 3..vocab-1."""
    src = np.random.default_rng(seed).integers(3, vocab, size=(len(lengths), 7))
    for row, n in enumerate(lengths):
        src[row, n:] = PAD
    return src


def log_softmax(x):
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def normalised_score(model, src_row, hyp, max_len, alpha):
    """log P(hyp [+ EOS]) / GNMT penalty, computed with model.forward (no decoding code).

    A hypothesis shorter than max_len ended with EOS; one of length max_len was cut.
    """
    ended = len(hyp) < max_len
    tgt_in = [BOS] + (hyp if ended else hyp[:-1])
    logp = log_softmax(model.forward(np.array([src_row]), np.array([tgt_in]))[0])  # (n,V)
    total = sum(logp[i, token] for i, token in enumerate(hyp))
    if ended:
        total += logp[len(hyp), EOS]
    return total / ((5.0 + len(hyp) + ended) / 6.0) ** alpha


# --------------------------------------------------------------------- the cache
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_cached_step_logits_equal_full_forward(arch):
    """Each cached step's logits equal model.forward(src, prefix)[:, -1] (float64)."""
    model = tiny_model(**ARCHITECTURES[arch])
    src = padded_sources(lengths=(7, 4, 2))
    T = model.config.max_len
    prefix = np.random.default_rng(2).integers(3, 19, size=(3, T))  # (B,T)
    prefix[:, 0] = BOS
    prefix[1, 5] = PAD  # a padded position must be hidden from later queries in both paths
    memory = model.encode(src)
    cache = model.new_cache(3, T)
    for t in range(T):
        step = model.decode(prefix[:, t: t + 1], memory, src, cache=cache)[:, -1]  # (B,V)
        full = model.forward(src, prefix[:, : t + 1])[:, -1]  # (B,V)
        assert_close(f"{arch}: logits at step {t}", step, full, LOGITS_RTOL, LOGITS_ATOL)
    with pytest.raises(ValueError, match="max_len"):
        model.decode(prefix[:, :1], memory, src, cache=cache)


def test_cache_takes_several_positions_at_once():
    """A prompt of 4 positions, then steps of 1 and 3: the same logits as one full pass."""
    model = tiny_model(norm_position="post", positional="learned")
    src = padded_sources(lengths=(7, 4, 2))
    prefix = np.random.default_rng(3).integers(3, 19, size=(3, 8))  # (B,T)
    prefix[2, 2] = PAD
    memory = model.encode(src)
    cache = model.new_cache(3, 8)
    pieces = [model.decode(prefix[:, a:b], memory, src, cache=cache) for a, b in
              ((0, 4), (4, 5), (5, 8))]
    assert_close("logits", np.concatenate(pieces, axis=1), model.forward(src, prefix),
                 LOGITS_RTOL, LOGITS_ATOL)
    assert cache.length == 8


def test_cache_is_for_generation_only():
    from npformer.nn.tape import Tape

    model = tiny_model()
    src = padded_sources(lengths=(3, 2))
    with pytest.raises(ValueError, match="without a tape"):
        model.decode(np.array([[BOS], [BOS]]), model.encode(src), src, tape=Tape(),
                     cache=model.new_cache(2, 4))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_cached_greedy_equals_uncached(arch):
    model = lively_model(eos_bias=1.0, **ARCHITECTURES[arch])
    src = padded_sources()
    cached = greedy_decode(model, src)
    assert cached == greedy_decode(model, src, use_cache=False)
    assert all(len(out) <= model.config.max_len and EOS not in out and PAD not in out
               for out in cached)


def test_rows_finish_independently():
    """Rows that stop at different steps: same as uncached, and as decoding each row alone."""
    model = lively_model(eos_bias=1.0, tie_output=False)
    src = padded_sources()
    out = greedy_decode(model, src)
    assert len({len(row) for row in out}) >= 3, f"test needs varied lengths, got {out}"
    assert out == greedy_decode(model, src, use_cache=False)
    assert out == [greedy_decode(model, src[i: i + 1])[0] for i in range(len(src))]
    assert greedy_decode(model, src, max_new_tokens=2) == [row[:2] for row in out]


# ------------------------------------------------------------------- beam search
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_beam_size_one_is_greedy(arch):
    model = lively_model(eos_bias=1.0, **ARCHITECTURES[arch])
    src = padded_sources()
    assert beam_search(model, src, beam_size=1) == greedy_decode(model, src)


@pytest.mark.parametrize("alpha", [0.0, 0.6])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_scores_at_least_greedy(seed, alpha):
    model = lively_model(eos_bias=0.5, seed=seed, tie_output=False)
    src = padded_sources(seed=seed + 10)
    L = model.config.max_len
    beams = beam_search(model, src, beam_size=4, length_penalty=alpha)
    for row, (greedy, beam) in enumerate(zip(greedy_decode(model, src), beams)):
        g = normalised_score(model, src[row], greedy, L, alpha)
        b = normalised_score(model, src[row], beam, L, alpha)
        assert b >= g - 1e-12, f"row {row}: beam {beam} scores {b:.6f} < greedy {greedy} {g:.6f}"


@pytest.mark.parametrize("seed,eos_bias,alpha", [(5, -1.0, 0.6), (1, -1.0, 1.0), (5, -0.75, 0.6)])
def test_wide_beam_finds_the_exact_best_hypothesis(seed, eos_bias, alpha):
    """With a beam wider than the number of prefixes, beam search is exhaustive search.

    Vocabulary {PAD, BOS, EOS, 3, 4}: PAD is never emitted, so each step has 4
    choices. Brute force scores all 1 + 3 + 9 + 27 + 81 hypotheses with
    model.forward; this checks the cache reordering, scores and length penalty.
    """
    model = lively_model(eos_bias=eos_bias, seed=seed, tgt_vocab_size=5, tie_output=False)
    src = padded_sources(lengths=(5, 3, 7))
    max_len = 4
    words = [BOS, 3, 4]  # tokens a hypothesis may contain
    every = [list(h) for n in range(max_len + 1) for h in itertools.product(words, repeat=n)]
    found = beam_search(model, src, beam_size=128, length_penalty=alpha,
                        max_new_tokens=max_len)
    assert any(len(hyp) == max_len and len(set(hyp)) > 1 for hyp in found), found  # exercised
    for row in range(len(src)):
        scores = [normalised_score(model, src[row], h, max_len, alpha) for h in every]
        best = every[int(np.argmax(scores))]
        assert found[row] == best, f"row {row}: beam found {found[row]}, best is {best}"


def test_beam_search_is_independent_of_batch_order():
    model = lively_model(eos_bias=0.5, tie_output=False)
    src = padded_sources()
    together = beam_search(model, src, beam_size=3)
    assert together == [beam_search(model, src[i: i + 1], beam_size=3)[0] for i in range(len(src))]
    assert beam_search(model, src[::-1], beam_size=3) == together[::-1]


def test_length_penalty_factor():
    assert length_penalty_factor(1, 0.6) == 1.0  # ((5+1)/6)^a
    assert length_penalty_factor(7, 0.0) == 1.0
    assert length_penalty_factor(7, 1.0) == 2.0


# ------------------------------------------------- EOS, max_len and forced tokens
@pytest.mark.parametrize("decode", [greedy_decode, beam_search, lambda m, s, **kw: sample(
    m, s, rng=0, **kw)], ids=["greedy", "beam", "sample"])
def test_outputs_stop_at_max_len_or_eos(decode):
    model = lively_model()
    src = padded_sources()
    model.params["out.b"][7] = 50.0  # token 7 always wins: nothing stops before max_len
    assert decode(model, src) == [[7] * model.config.max_len] * len(src)
    assert decode(model, src, max_new_tokens=3) == [[7] * 3] * len(src)
    assert decode(model, src, max_new_tokens=0) == [[]] * len(src)
    model.params["out.b"][EOS] = 100.0  # EOS always wins: every output is empty
    assert decode(model, src) == [[]] * len(src)
    model.params["out.b"][:] = 0.0
    model.params["out.b"][PAD] = 50.0  # PAD is the likeliest token but is never emitted
    model.params["out.b"][EOS] = -50.0  # and EOS the least likely: full-length outputs
    outputs = decode(model, src)
    assert all(len(out) == model.config.max_len and PAD not in out for out in outputs), outputs


# ------------------------------------------------------------------------ sampling
def test_sampling_is_seeded_and_top_k_one_is_greedy():
    model = lively_model(eos_bias=-2.0, tie_output=False)
    src = padded_sources()
    a = sample(model, src, temperature=2.0, rng=np.random.default_rng(3))
    assert a == sample(model, src, temperature=2.0, rng=np.random.default_rng(3))
    assert a == sample(model, src, temperature=2.0, rng=3, use_cache=False)
    assert a != sample(model, src, temperature=2.0, rng=4)
    greedy = greedy_decode(model, src)
    assert a != greedy
    assert sample(model, src, temperature=2.0, top_k=1, rng=5) == greedy
    assert sample(model, src, temperature=2.0, top_p=1e-9, rng=5) == greedy


def test_filter_logits_keeps_top_k_and_the_nucleus():
    logits = np.log([0.1, 0.4, 0.2, 0.3])
    kept = lambda out: set(np.flatnonzero(np.isfinite(out)))  # noqa: E731
    assert kept(filter_logits(logits, top_k=2)) == {1, 3}
    assert kept(filter_logits(logits, top_k=3)) == {1, 3, 2}
    assert kept(filter_logits(logits, top_k=0)) == {0, 1, 2, 3}
    assert kept(filter_logits(logits, top_p=0.35)) == {1}  # 0.4 alone reaches 0.35
    assert kept(filter_logits(logits, top_p=0.6)) == {1, 3}  # 0.4 < 0.6 <= 0.4 + 0.3
    assert kept(filter_logits(logits, top_p=0.75)) == {1, 3, 2}
    assert kept(filter_logits(logits, top_k=1, top_p=0.9)) == {1}
    assert kept(filter_logits(logits, top_k=3, top_p=0.8)) == {1, 3, 2}  # 0.7 of 0.9 < 0.8
    out = filter_logits(logits, top_k=2)
    assert_close("kept logits unchanged", out[[1, 3]], logits[[1, 3]], 0.0)
    batch = filter_logits(np.stack([logits, logits[::-1]]), top_k=1)  # (2,4)
    assert [kept(row) for row in batch] == [{1}, {2}]


def test_draw_tokens_follows_the_distribution():
    probs = np.array([0.1, 0.4, 0.0, 0.5])
    with np.errstate(divide="ignore"):
        logits = np.tile(np.log(probs), (20000, 1))  # (N,4), token 2 impossible
    counts = np.bincount(draw_tokens(logits, np.random.default_rng(0)), minlength=4) / 20000
    assert counts[2] == 0
    assert np.abs(counts - probs).max() < 0.015, counts  # ~4 standard errors


@pytest.mark.parametrize("kwargs,message", [
    (dict(temperature=0.0), "temperature"),
    (dict(temperature=-1.0), "temperature"),
    (dict(top_k=-1), "top_k"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
])
def test_bad_sampling_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample(tiny_model(), [[3, 4]], **kwargs)


# -------------------------------------------------------------------- input boundary
@pytest.mark.parametrize("decode", [greedy_decode, beam_search, lambda m, s: sample(m, s, rng=0)],
                         ids=["greedy", "beam", "sample"])
def test_empty_source_rows_give_empty_outputs(decode):
    model = lively_model(eos_bias=-2.0, tie_output=False)
    alone = decode(model, [[5, 6, 7, 2]])[0]
    assert alone
    assert decode(model, [[], [5, 6, 7, 2], []]) == [[], alone, []]
    assert decode(model, np.array([[0, 0, 0, 0, 0], [5, 6, 7, 2, 0]])) == [[], alone]

    def must_not_run(*args, **kwargs):
        raise AssertionError("the model ran for an all-empty batch")

    model.encode = must_not_run
    assert decode(model, [[], []]) == [[], []]
    assert decode(model, np.zeros((2, 0), dtype=int)) == [[], []]


def test_source_length_limits():
    model = tiny_model()  # max_len 12
    with pytest.raises(ValueError, match="max_len=12"):
        greedy_decode(model, [[3] * 13])
    with pytest.raises(ValueError, match="max_len=12"):
        beam_search(model, np.full((2, 13), 3))
    with pytest.raises(ValueError, match="max_new_tokens=13 exceeds the model's max_len=12"):
        greedy_decode(model, [[3, 4]], max_new_tokens=13)
    long_padding = np.zeros((1, 20), dtype=int)  # trailing PAD is not part of the source
    long_padding[0, :12] = 4
    assert greedy_decode(model, long_padding) == greedy_decode(model, long_padding[:, :12])
    with pytest.raises(ValueError, match="integer"):
        greedy_decode(model, [[3.5, 4.0]])


def test_translate_ids_restores_the_original_order():
    model = lively_model(eos_bias=1.0, tie_output=False)
    rows = [[5, 6, 7, 8, 9, 2], [4, 2], [], [9, 10, 11, 2], [3, 2], [12, 13, 14, 15, 16, 5, 2]]
    assert translate_ids(model, rows, batch_size=2) == [greedy_decode(model, [r])[0] for r in rows]
    beams = translate_ids(model, rows, method="beam", batch_size=4, beam_size=2)
    assert beams == [beam_search(model, [r], beam_size=2)[0] for r in rows]
    with pytest.raises(ValueError, match="method"):
        translate_ids(model, rows, method="sampling")
