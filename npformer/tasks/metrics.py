"""Text metrics: BLEU (sacrebleu-compatible), exact match; distinct-n and self-BLEU.

Translation: corpus BLEU, sentence BLEU, exact match. Generated text: its diversity.

BLEU (Papineni et al., 2002) compares hypothesis and reference n-grams:

    p_n  = matched n-grams / hypothesis n-grams, summed over the corpus (n = 1..4)
           (a hypothesis n-gram matches at most as often as it occurs in the reference)
    BP   = 1 if hyp_len >= ref_len else exp(1 - ref_len / hyp_len)
    BLEU = 100 * BP * exp(mean_n log p_n)

This file reproduces sacrebleu's defaults (`sacrebleu.corpus_bleu(hyps, [refs])`):
both sides are tokenized with the "13a" tokenizer (the one of mteval-v13a.pl,
used by WMT), case-sensitive, and an order n with no match at all is smoothed
with the "exp" method: the k-th such order gets p_n = 1 / (2**k * hypothesis n-grams).
If nothing matches, BLEU is 0. sacrebleu is only a test dependency; the tests
check that the two agree to within 0.01.

Diversity of a set of generated lines (whitespace tokens; notebook 10):

    distinct-n  distinct n-grams / all n-grams, over the whole set (Li et al. 2016):
                1 when no n-gram repeats, small when the lines reuse the same phrases
    self-BLEU   the mean sentence BLEU of each line against all the others as references
                (Zhu et al. 2018, Texygen): high when the lines resemble each other

"100 distinct lines of 100" says little (two lines differing in one word are distinct);
these two measure how much the lines share.
"""
import math
import re
from collections import Counter
from typing import NamedTuple

MAX_ORDER = 4  # n-grams of length 1..4

# mteval-v13a's punctuation rules, applied in this order.
_13A_RULES = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),  # split off most symbols
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),  # period/comma not after a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),  # period/comma not before a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),  # dash after a digit
]


class BLEUResult(NamedTuple):
    """BLEU and the statistics behind it (all percentages are 0..100)."""
    score: float
    precisions: list  # p_1..p_4 in percent, after smoothing
    bp: float  # brevity penalty
    ratio: float  # hyp_len / ref_len
    hyp_len: int  # tokens in all hypotheses
    ref_len: int  # tokens in all references
    counts: list  # matched n-grams per order
    totals: list  # hypothesis n-grams per order

    def __str__(self):
        precisions = "/".join(f"{p:.1f}" for p in self.precisions)
        return (f"BLEU = {self.score:.2f} {precisions} (BP = {self.bp:.3f} ratio = {self.ratio:.3f} "
                f"hyp_len = {self.hyp_len} ref_len = {self.ref_len})")


def tokenize_13a(line):
    """Split punctuation from words the way mteval-v13a does; returns a space-joined string."""
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&")
        line = line.replace("&lt;", "<").replace("&gt;", ">")
    line = f" {line} "
    for pattern, replacement in _13A_RULES:
        line = pattern.sub(replacement, line)
    return " ".join(line.split())


def _ngrams(tokens):
    """Counter of all n-grams (as tuples) of length 1..MAX_ORDER."""
    grams = Counter()
    for n in range(1, MAX_ORDER + 1):
        for i in range(len(tokens) - n + 1):
            grams[tuple(tokens[i:i + n])] += 1
    return grams


def _sentence_stats(hyp, ref):
    """(hyp_len, ref_len, matches per order, hypothesis n-grams per order) for one pair."""
    hyp_tokens = tokenize_13a(hyp.rstrip()).split()
    ref_tokens = tokenize_13a(ref.rstrip()).split()
    ref_grams = _ngrams(ref_tokens)
    counts, totals = [0] * MAX_ORDER, [0] * MAX_ORDER
    for gram, count in _ngrams(hyp_tokens).items():
        n = len(gram) - 1
        totals[n] += count
        counts[n] += min(count, ref_grams.get(gram, 0))  # clipped by the reference
    return len(hyp_tokens), len(ref_tokens), counts, totals


def _bleu_from_stats(hyp_len, ref_len, counts, totals, effective_order):
    """Combine summed statistics into BLEU with "exp" smoothing (sacrebleu's compute_bleu)."""
    bp = 1.0
    if hyp_len < ref_len:
        bp = math.exp(1 - ref_len / hyp_len) if hyp_len > 0 else 0.0
    ratio = hyp_len / ref_len if ref_len else 0.0
    precisions = [0.0] * MAX_ORDER
    if not any(counts):
        return BLEUResult(0.0, precisions, bp, ratio, hyp_len, ref_len, counts, totals)

    smooth = 1.0
    orders_used = MAX_ORDER
    for n in range(MAX_ORDER):
        if totals[n] == 0:
            break  # hypotheses too short for n-grams of this length
        if effective_order:
            orders_used = n + 1
        if counts[n] == 0:
            smooth *= 2
            precisions[n] = 100.0 / (smooth * totals[n])
        else:
            precisions[n] = 100.0 * counts[n] / totals[n]
    # A zero precision (an order with no n-grams at all) makes the score 0;
    # sacrebleu gets there through log(0) := -9999999999, we say it directly.
    if any(p == 0.0 for p in precisions[:orders_used]):
        score = 0.0
    else:
        score = bp * math.exp(sum(math.log(p) for p in precisions[:orders_used]) / orders_used)
    return BLEUResult(score, precisions, bp, ratio, hyp_len, ref_len, counts, totals)


def _check_lists(hyps, refs):
    if isinstance(hyps, str) or isinstance(refs, str):
        raise TypeError("hyps and refs must be lists of strings, not single strings")
    hyps, refs = list(hyps), list(refs)
    if len(hyps) != len(refs):
        raise ValueError(f"got {len(hyps)} hypotheses but {len(refs)} references")
    if not hyps:
        raise ValueError("cannot score an empty list of hypotheses")
    for k, (h, r) in enumerate(zip(hyps, refs)):
        if not isinstance(h, str) or not isinstance(r, str):
            raise TypeError(f"item {k}: expected two strings, got {type(h).__name__} and {type(r).__name__}")
    return hyps, refs


def corpus_bleu(hyps, refs):
    """Corpus BLEU of detokenized hypotheses against one reference each (sacrebleu defaults)."""
    hyps, refs = _check_lists(hyps, refs)
    hyp_len = ref_len = 0
    counts, totals = [0] * MAX_ORDER, [0] * MAX_ORDER
    for hyp, ref in zip(hyps, refs):
        h_len, r_len, c, t = _sentence_stats(hyp, ref)
        hyp_len, ref_len = hyp_len + h_len, ref_len + r_len
        counts = [a + b for a, b in zip(counts, c)]
        totals = [a + b for a, b in zip(totals, t)]
    return _bleu_from_stats(hyp_len, ref_len, counts, totals, effective_order=False)


def sentence_bleu(hyp, ref):
    """BLEU of one sentence, as sacrebleu.sentence_bleu (exp smoothing, effective order).

    "Effective order" averages only over n-gram orders the hypothesis has, so a
    3-word hypothesis is not punished for having no 4-grams.
    """
    h_len, r_len, counts, totals = _sentence_stats(hyp, ref)
    return _bleu_from_stats(h_len, r_len, counts, totals, effective_order=True)


def exact_match(hyps, refs):
    """Fraction (0..1) of hypotheses equal to their reference, ignoring extra whitespace."""
    hyps, refs = _check_lists(hyps, refs)
    same = sum(" ".join(h.split()) == " ".join(r.split()) for h, r in zip(hyps, refs))
    return same / len(hyps)


# ------------------------------------------------------------------ diversity of generated text
def distinct_n(lines, n):
    """Distinct n-grams / all n-grams over a set of lines (whitespace tokens); 0 if none."""
    grams = Counter()
    for line in lines:
        tokens = line.split()
        grams.update(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def self_bleu(lines, hypotheses=None):
    """Mean sentence BLEU (0-100) of lines against every other line of the set as references.

    Multi-reference BLEU: a hypothesis n-gram counts as often as it occurs in the
    reference that holds it most often; the reference length is the one closest to
    the hypothesis's; exp smoothing and effective order as `sentence_bleu`.
    Whitespace tokens (no 13a tokenizer: generated toy text is already split).
    `hypotheses`: indices of the lines to score (default: all; every line still
    serves as a reference for the others).
    """
    lines = [line.split() for line in lines]
    if len(lines) < 2:
        raise ValueError("self-BLEU needs at least two lines")
    grams = [_ngrams(tokens) for tokens in lines]
    best = {}  # n-gram -> (highest count, the line with it, second highest count)
    for i, g in enumerate(grams):
        for gram, c in g.items():
            top, who, second = best.get(gram, (0, -1, 0))
            if c > top:
                best[gram] = (c, i, top)
            elif c > second:
                best[gram] = (top, who, c)
    lengths = Counter(len(tokens) for tokens in lines)
    scores = []
    for i in (range(len(lines)) if hypotheses is None else hypotheses):
        counts, totals = [0] * MAX_ORDER, [0] * MAX_ORDER
        for gram, c in grams[i].items():
            top, who, second = best[gram]
            totals[len(gram) - 1] += c
            counts[len(gram) - 1] += min(c, second if who == i else top)  # others only
        h_len = len(lines[i])
        others = lengths.copy()
        others[h_len] -= 1
        r_len = min((length for length, k in others.items() if k > 0),
                    key=lambda length: (abs(length - h_len), length))
        scores.append(_bleu_from_stats(h_len, r_len, counts, totals, True).score)
    return sum(scores) / len(scores)
