"""A made-up suffix rule, shown by examples: few-shot lines for a word-part (BPE) model.

Each line picks a suffix (its own rule) and applies it to made-up stems:

    tabo -> taboek ; mire -> mireek ; dosa -> dosaek

The query stem is not among the examples, so the answer is nowhere in the line: the
model must copy the query and add the suffix the examples show. Suffixes and stems
come from pools (`split()`); held out from training are some stems (never in a
training line) and some suffixes (a rule never seen). Under a word tokenizer every
word would be one unrelated id and no rule could be read off; with byte-level BPE
(`npformer pretrain --data toy-suffix --tokenizer bpe`) a word is a few pieces
that the examples share.

`make_suffix_text` writes training lines, `make_suffix_prompts` evaluation prompts.
Format: docs/toy_corpus.md ("A suffix rule in word parts").
"""
import random
from itertools import product

CONSONANTS, VOWELS = "bdfgklmnprstvz", "aeiou"
ARROW, SEPARATOR = "->", ";"
MAX_EXAMPLES = 4  # k is uniform in 0..MAX_EXAMPLES in training lines
N_HELDOUT_STEMS = 400
N_HELDOUT_SUFFIXES = 7


def _pools():
    """(stems, suffixes) in a fixed shuffled order: 4,900 CVCV stems, 35 VC suffixes."""
    syllables = ["".join(p) for p in product(CONSONANTS, VOWELS)]
    stems = [a + b for a, b in product(syllables, syllables)]
    suffixes = ["".join(p) for p in product(VOWELS, "klmnrst")]
    rng = random.Random("suffix-pools")
    rng.shuffle(stems)
    rng.shuffle(suffixes)
    return stems, suffixes


STEMS, SUFFIXES = _pools()


def split():
    """{"train": {"stems", "suffixes"}, "heldout": {"stems", "suffixes"}}: disjoint pools."""
    return {"train": {"stems": STEMS[N_HELDOUT_STEMS:], "suffixes": SUFFIXES[N_HELDOUT_SUFFIXES:]},
            "heldout": {"stems": STEMS[:N_HELDOUT_STEMS],
                        "suffixes": SUFFIXES[:N_HELDOUT_SUFFIXES]}}


def format_line(examples, query, answer=None):
    """[(stem, word), ...], query -> "a -> a+s ; b -> b+s ; query ->" (+ " answer")."""
    parts = [f"{stem} {ARROW} {word}" for stem, word in examples] + [f"{query} {ARROW}"]
    line = f" {SEPARATOR} ".join(parts)
    return f"{line} {answer}" if answer is not None else line


def _line(rng, stems, suffixes, k):
    """(examples, query, answer): k + 1 distinct stems, one suffix for all of them."""
    suffix = rng.choice(suffixes)
    *shown, query = rng.sample(stems, k + 1)
    return [(stem, stem + suffix) for stem in shown], query, query + suffix


def make_suffix_text(n_lines=20_000, seed=0, n_valid=1000):
    """Training lines "EXAMPLES ; QUERY -> ANSWER" -> {"train", "valid", "test"} lists.

    Training stems and suffixes only; k uniform in 0..MAX_EXAMPLES; a fresh suffix
    per line. The test split is empty (evaluation uses make_suffix_prompts).
    """
    pools = split()["train"]
    rng = random.Random(f"suffix-text-{seed}")
    lines = []
    for _ in range(n_lines + n_valid):
        k = rng.randint(0, MAX_EXAMPLES)
        lines.append(format_line(*_line(rng, pools["stems"], pools["suffixes"], k)))
    return {"train": lines[:n_lines], "valid": lines[n_lines:], "test": []}


def make_suffix_prompts(k, n=200, stems="heldout", suffixes="train", seed=0):
    """Evaluation prompts -> list of (prompt, answer) with k examples.

    stems / suffixes: "heldout" or "train" pools. With training suffixes the rule was
    seen in training but must be read from the examples (k = 0: a guess among the
    training suffixes); with held-out suffixes the rule itself is new.
    """
    if stems not in ("heldout", "train") or suffixes not in ("heldout", "train"):
        raise ValueError(f"stems={stems!r}, suffixes={suffixes!r}: choose heldout or train")
    if not 0 <= k <= 2 * MAX_EXAMPLES:
        raise ValueError(f"k must be in 0..{2 * MAX_EXAMPLES}, got {k}")
    pools = split()
    rng = random.Random(f"suffix-prompts-{k}-{stems}-{suffixes}-{seed}")
    prompts = []
    for _ in range(n):
        examples, query, answer = _line(rng, pools[stems]["stems"], pools[suffixes]["suffixes"], k)
        prompts.append((format_line(examples, query), answer))
    return prompts
