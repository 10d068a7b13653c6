"""Few-shot lines with a fresh mapping per line: data that can only be solved in context.

A line shows k examples "SYMBOL LABEL", then a query SYMBOL; the next token is its label:

    fub 3 dak 7 fub 3 lop 0 dak 7

The symbols are made-up words, the labels the digits 0-9. Three choices make the
examples the only source of the answer, as in Chan et al. 2022 ("Data distributional
properties drive emergent in-context learning in transformers") and Reddy 2023 ("The
mechanistic basis of data dependence and abrupt learning in an in-context
classification task"):

- fresh mapping: each line draws its own symbol -> label assignment (`n_mappings=0`),
  so no label can be learned into the weights; with `n_mappings=M > 0` every line
  uses one of M fixed mappings instead, which can be memorised (the task-diversity
  sweep of Raventos et al. 2023 and Kirsch et al. 2022);
- the query repeats one of the examples, so copying its label is always possible;
- bursty lines: the k examples use only d distinct symbols (d uniform between
  ceil(k/2) and k), so symbols recur within a line and most labels after the first
  few can be copied; every label is a training target.

Held out from training: the symbols `heldout_symbols(spec)` (never in a training
line) and, with a fresh mapping per line, every mapping. Evaluation prompts
(`make_prompts`) use k distinct symbols, so exactly one example matches the query.
Format and splits: docs/toy_corpus.md ("Few-shot lines with a fresh mapping").
"""
import math
from dataclasses import dataclass
from itertools import product

import numpy as np

LABELS = tuple("0123456789")  # the answers; chance is 1 / 10 without a matching example
CONSONANTS, VOWELS = "bdfgklmnprstvz", "aeiou"


def all_symbols():
    """Every made-up consonant-vowel-consonant word, in a fixed shuffled order (980 words)."""
    words = ["".join(p) for p in product(CONSONANTS, VOWELS, CONSONANTS)]
    order = np.random.default_rng(2022).permutation(len(words))
    return tuple(words[i] for i in order)


SYMBOLS = all_symbols()


@dataclass(frozen=True)
class FewShotSpec:
    """What the lines look like; the training run and the evaluation share one spec."""

    n_symbols: int = 500  # symbols used in training lines
    n_heldout: int = 100  # further symbols that never appear in training (evaluation only)
    max_examples: int = 8  # k is uniform in 1..max_examples in training lines
    n_mappings: int = 0  # 0: a fresh symbol -> label mapping per line; M: one of M fixed ones
    seed: int = 0  # seed of the fixed mappings (n_mappings > 0)

    def __post_init__(self):
        if not 1 <= self.n_symbols or self.n_symbols + self.n_heldout > len(SYMBOLS):
            raise ValueError(f"n_symbols + n_heldout must be in [1, {len(SYMBOLS)}], got "
                             f"{self.n_symbols} + {self.n_heldout}")
        if self.n_symbols < self.max_examples or self.n_heldout < 0 or self.n_mappings < 0:
            raise ValueError("need n_symbols >= max_examples, n_heldout >= 0, n_mappings >= 0")
        if not 1 <= self.max_examples <= 30:
            raise ValueError(f"max_examples must be in [1, 30], got {self.max_examples}")


def training_symbols(spec):
    return SYMBOLS[: spec.n_symbols]


def heldout_symbols(spec):
    return SYMBOLS[spec.n_symbols: spec.n_symbols + spec.n_heldout]


def fixed_mappings(spec):
    """The M memorisable mappings: (M, n_symbols) label indices (empty for fresh mappings)."""
    rng = np.random.default_rng([spec.seed, spec.n_symbols, 17])
    return rng.integers(0, len(LABELS), size=(spec.n_mappings, spec.n_symbols))


def vocabulary(spec):
    """Every word a line can hold: the labels, the training and the held-out symbols.

    The tokenizer is built from this list, not from the training text, so that a
    held-out symbol has its own id (one no training line ever reaches), not UNK.
    """
    return list(LABELS) + list(training_symbols(spec)) + list(heldout_symbols(spec))


def format_line(examples, query, answer=None):
    """[(symbol, label), ...], query -> "s1 l1 s2 l2 ... query" (+ " answer")."""
    words = [w for pair in examples for w in pair] + [query]
    return " ".join(words + ([answer] if answer is not None else []))


def training_line(rng, spec, mappings=None):
    """One bursty training line -> (examples [(symbol, label)], query, answer).

    k uniform in 1..max_examples; d distinct symbols, d uniform in ceil(k/2)..k,
    each shown at least once, the rest of the k examples repeat them; the query is
    one of the shown symbols. Labels from a fresh mapping, or from one of `mappings`.
    """
    k = int(rng.integers(1, spec.max_examples + 1))
    d = int(rng.integers(math.ceil(k / 2), k + 1))
    chosen = rng.choice(spec.n_symbols, size=d, replace=False)  # symbol indices
    shown = np.concatenate([chosen, rng.choice(chosen, size=k - d)])
    rng.shuffle(shown)
    if spec.n_mappings:
        labels = mappings[rng.integers(spec.n_mappings)]  # (n_symbols,) one fixed mapping
    else:
        labels = np.full(spec.n_symbols, -1)
        labels[chosen] = rng.integers(0, len(LABELS), size=d)  # fresh, for this line only
    query = int(rng.choice(shown))
    names = training_symbols(spec)
    examples = [(names[s], LABELS[labels[s]]) for s in shown]
    return examples, names[query], LABELS[labels[query]]


def training_lines(spec, n, seed):
    """n training lines as text (what a language model would be pretrained on)."""
    rng = np.random.default_rng([seed, 1])
    mappings = fixed_mappings(spec)
    return [format_line(*training_line(rng, spec, mappings)) for _ in range(n)]


def make_prompts(spec, k, n, symbols="heldout", mapping="fresh", query="shown", seed=0):
    """Evaluation prompts -> list of (prompt, answer).

    k examples with k distinct symbols (so exactly one matches a shown query);
    symbols "heldout" (never in training) or "train"; mapping "fresh" (drawn for the
    prompt) or "fixed" (one of the spec's n_mappings training mappings); query
    "shown" (one of the k examples; needs k >= 1) or "absent" (a symbol not among
    them: only what is in the weights can answer). k = 0 is the query alone.
    """
    if symbols not in ("heldout", "train") or mapping not in ("fresh", "fixed") \
            or query not in ("shown", "absent"):
        raise ValueError(f"symbols={symbols!r}, mapping={mapping!r}, query={query!r}")
    if mapping == "fixed" and (not spec.n_mappings or symbols != "train"):
        raise ValueError("mapping='fixed' needs n_mappings > 0 and symbols='train'")
    if query == "shown" and k < 1:
        raise ValueError("a shown query needs k >= 1 (k = 0 is query='absent')")
    names = heldout_symbols(spec) if symbols == "heldout" else training_symbols(spec)
    if k + 1 > len(names):
        raise ValueError(f"k={k}: needs {k + 1} distinct symbols, there are {len(names)}")
    rng = np.random.default_rng([seed, k, 2])
    mappings = fixed_mappings(spec)
    prompts = []
    for _ in range(n):
        chosen = rng.choice(len(names), size=k + 1, replace=False)
        if mapping == "fixed":
            labels = mappings[rng.integers(spec.n_mappings)]
        else:
            labels = rng.integers(0, len(LABELS), size=len(names))
        shown, spare = chosen[:k], chosen[k]
        q = int(rng.choice(shown)) if query == "shown" else int(spare)
        examples = [(names[s], LABELS[labels[s]]) for s in shown]
        prompts.append((format_line(examples, names[q]), LABELS[labels[q]]))
    return prompts


def recall_rate(spec, prompts):
    """What a model scores that knows all M training mappings but not which one a prompt uses.

    Such a model answers the query symbol's most common label among the M mappings
    (ties broken at random); on a prompt whose answer is one of the tied labels it is
    right with probability 1 / (number of tied labels). Returns the mean over the
    prompts: the baseline of the "in the weights" score (training symbols, fixed
    mappings). A model that also read from the examples which mapping is in use would
    score near 100%; one that memorised nothing, 10%.
    """
    if not spec.n_mappings:
        raise ValueError("recall_rate needs a spec with n_mappings > 0")
    mappings = fixed_mappings(spec)  # (M, n_symbols)
    index = {name: i for i, name in enumerate(training_symbols(spec))}
    total = 0.0
    for prompt, answer in prompts:
        counts = np.bincount(mappings[:, index[prompt.split()[-1]]], minlength=len(LABELS))  # (10,)
        tied = np.flatnonzero(counts == counts.max())
        total += (LABELS.index(answer) in tied) / len(tied)
    return total / len(prompts)

