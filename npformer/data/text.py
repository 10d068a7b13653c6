"""Plain text for language-model pretraining: the toy world as lines, and user text files.

`make_toy_text` writes the toy world (npformer.data.toy) as one sentence per line:
English, Velan, or "mixed" (English lines, Velan lines, and "ENGLISH = VELAN"
lines, so that a model pretrained on it also sees the mapping between the two).

Held-out lines come first and do not depend on the amount of training text:
valid and test are drawn independently from the generator (so they follow its
distribution exactly, and npformer.data.entropy's floor applies to them), then
train is drawn, skipping the held-out sentences that are rare (probability below
HELDOUT_EXCLUSION_MAX_PROB, about 90% of them), in any form (an English held-out
sentence's Velan and pair lines are skipped too). The frequent short ones
("a dog sleeps ." has probability 1.6e-5) are left alone: skipping them would
make short sentences rarer in train than in the generator (measured: mean train
line 9.06 tokens instead of 8.94), while skipping the rare ones removes 0.014%
of the probability mass. So a larger n_tokens gives the same valid/test and a
train set that starts with the smaller one's lines, which is what a
data-scaling study needs.

`load_text` reads a user's UTF-8 file with the same errors as the translation
loaders (npformer.data.io). Details: docs/toy_corpus.md.
"""
import math
import random

from . import toy
from .entropy import sentence_logprob
from .io import DataError, _read_lines

# The --data names of generated toy text, and the kind of lines each draws
TOY_TEXTS = {"toy": "mixed", "toy-mixed": "mixed", "toy-english": "english",
             "toy-velan": "velan"}
PAIR_SEPARATOR = "="  # "the dog sleeps . = lo kan dorme ."
# Held-out sentences rarer than this never occur in train (see the module docstring).
HELDOUT_EXCLUSION_MAX_PROB = 1e-6
_KINDS = ("english", "velan", "mixed")
_MIXED_NAMES = list(toy.MIXED_WEIGHTS)
_MIXED_CUM_WEIGHTS = [sum(list(toy.MIXED_WEIGHTS.values())[:k + 1])
                      for k in range(len(toy.MIXED_WEIGHTS))]


def _line(rng, kind):
    """One line of text -> (line, its English sentence, number of tokens)."""
    english, velan = toy.toy_sentence_pair(rng)
    if kind == "mixed":
        kind = rng.choices(_MIXED_NAMES, cum_weights=_MIXED_CUM_WEIGHTS)[0]
    if kind == "english":
        line = english
    elif kind == "velan":
        line = velan
    else:
        line = f"{english} {PAIR_SEPARATOR} {velan}"
    return line, english, line.count(" ") + 1


def _draw_lines(rng, kind, n_tokens, exclude):
    """Lines until they hold at least n_tokens tokens, skipping English sentences in exclude."""
    lines, seen, tokens = [], [], 0
    max_draws = 100 * n_tokens + 1000
    draws = 0
    while tokens < n_tokens:
        draws += 1
        if draws > max_draws:
            raise ValueError(f"could not draw {n_tokens} tokens of text avoiding held-out lines")
        line, english, n = _line(rng, kind)
        if english in exclude:
            continue
        lines.append(line)
        seen.append(english)
        tokens += n
    return lines, seen


def make_toy_text(n_tokens=200_000, kind="english", seed=0,
                  n_valid_tokens=20_000, n_test_tokens=20_000):
    """Toy-world text as {"train","valid","test"} lists of lines (one sentence per line).

    n_tokens: whitespace tokens of training text ("." included; the last line may
    overshoot by a few). kind: "english", "velan" or "mixed". Deterministic given
    the seed; valid/test depend only on (kind, seed, their sizes), not on n_tokens.
    Test shares no sentence with valid; train shares only frequent short sentences
    with them (probability >= HELDOUT_EXCLUSION_MAX_PROB; see the module docstring).
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {', '.join(_KINDS)}, got {kind!r}")
    for name, n in (("n_tokens", n_tokens), ("n_valid_tokens", n_valid_tokens),
                    ("n_test_tokens", n_test_tokens)):
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"{name} must be a non-negative int, got {n!r}")
    heldout_rng = random.Random(f"toy-text-{kind}-{seed}-heldout")  # str seeds are stable
    valid, valid_sentences = _draw_lines(heldout_rng, kind, n_valid_tokens, set())
    test, test_sentences = _draw_lines(heldout_rng, kind, n_test_tokens, set(valid_sentences))
    log_limit = math.log(HELDOUT_EXCLUSION_MAX_PROB)
    heldout = {english for english in set(valid_sentences) | set(test_sentences)
               if sentence_logprob(english) < log_limit}
    train, _ = _draw_lines(random.Random(f"toy-text-{kind}-{seed}-train"), kind, n_tokens,
                           heldout)
    return {"train": train, "valid": valid, "test": test}


def load_text(path, mode="lines"):
    """Read a UTF-8 text file for pretraining -> list of documents (strings).

    mode "lines": one document per line, stripped; blank lines are skipped.
    mode "whole": the whole file as one document (line breaks kept as "\\n").
    Bytes that are not UTF-8 raise DataError naming the file and line; so does a
    file with no text at all.
    """
    if mode not in ("lines", "whole"):
        raise ValueError(f"mode must be 'lines' or 'whole', got {mode!r}")
    lines = [text for _, text in _read_lines(path)]
    if not any(text.strip() for text in lines):
        raise DataError(f"{path}: no text (the file is empty or has only blank lines)")
    if mode == "whole":
        return ["\n".join(lines)]
    return [text.strip() for text in lines if text.strip()]
