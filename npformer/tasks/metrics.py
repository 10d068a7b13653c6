"""Translation metrics: corpus BLEU (sacrebleu-compatible), sentence BLEU, exact match.

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
