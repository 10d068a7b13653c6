"""Labelled classification tasks from the toy world, and a loader for user TSV files.

Every task returns {"train","valid","test"} lists of (text, label) with label
strings, deterministic given the seed, balanced over the labels, and with no
underlying sentence shared between splits. `TASKS` lists them; `make_task(name,
...)` builds one. How each is made, label balance and baselines:
docs/toy_corpus.md ("Classification tasks").

- acceptability (CoLA-style): is this Velan sentence grammatical? A negative is
  a grammatical sentence with its words moved, never replaced: a plural marker
  "ta" moved between the subject and another noun phrase of the other number
  (the verb no longer agrees), the articles lo/la of two nouns of different
  gender swapped, or a word moved out of place (verb not final, postposition
  before its noun, adjective before its noun). So a negative has exactly the
  words of a grammatical sentence, and positives are drawn from the same
  sentences that the corruptions need (two noun phrases of different number for
  "agreement", ...): no word, and no count of words, tells the classes apart.
- plural_subject: in "SUBJ says that CLAUSE .", is the subject of CLAUSE plural?
  The four combinations of main and inner subject number are equally frequent,
  so the first subject's number is worth nothing (and "a plural subject
  anywhere" is right only 3 times in 4); but the inner verb agrees with its
  subject ("sleeps"/"sleep"), so a bag of words does solve it: it shows how
  agreement gives a number away; the acceptability task is the hard one.
- sentence_type (easy, for comparison): intransitive, transitive or reported.
"""
import random
from collections import Counter
from typing import NamedTuple

from . import grammar, toy
from .io import DataError, _read_lines


class Task(NamedTuple):
    name: str
    description: str
    labels: tuple       # label strings, in a fixed order
    language: str       # "english" or "velan"
    draw: object        # draw(rng, index) -> (text, label, underlying English sentence)


# --- acceptability: corrupt by moving words, never replacing them ---------------------
def _velan_chunks(words):
    """Split a grammatical Velan sentence into chunks -> list of [kind, words].

    kinds: "np" (article? noun words, ta?, adjectives), "post", "verb" (nu? verb),
    "ke", ".". Exact for grammatical sentences because every word has one category.
    """
    chunks, i = [], 0
    while i < len(words):
        w = words[i]
        noun = next((v for v, _ in grammar.VELAN_NOUNS.get(w, []) if words[i:i + len(v)] == v), None)
        if noun is not None:
            after_article = chunks and chunks[-1][1] in ([a] for a in grammar.GENDER_OF_ARTICLE)
            if not after_article:
                chunks.append(["np", []])
            chunks[-1][1].extend(noun)  # all words of a two-word noun ("lern domo")
            i += len(noun)
            continue
        if w in grammar.GENDER_OF_ARTICLE:
            chunks.append(["np", [w]])
        elif w == toy.NEGATION or (w in grammar.VELAN_VERBS and chunks[-1][1] != [toy.NEGATION]):
            chunks.append(["verb", [w]])
        elif w in grammar.POSTPOSITIONS:
            chunks.append(["post", [w]])
        elif w in (toy.COMPLEMENTIZER, "."):
            chunks.append(["ke" if w == toy.COMPLEMENTIZER else ".", [w]])
        else:  # "ta" or an adjective after its noun, or the verb after "nu"
            chunks[-1][1].append(w)
        i += 1
    return chunks


def _noun_end(np_words):
    """Index just after the noun's last word in a noun-phrase chunk."""
    k = 1 if np_words[0] in grammar.GENDER_OF_ARTICLE else 0
    noun_words = next(v for v, _ in grammar.VELAN_NOUNS[np_words[k]] if np_words[k:k + len(v)] == v)
    return k + len(noun_words)


def _corrupt_agreement(rng, chunks):
    """Move "ta" between a subject and a noun phrase of the other number; None if impossible."""
    nps = [c for c in chunks if c[0] == "np"]
    reported = any(c[0] == "ke" for c in chunks)
    subjects = nps[:2] if reported else nps[:1]  # the verbs agree with these
    pairs = [(s, o) for s in subjects for o in nps if o is not s
             and (toy.PLURAL_MARKER in s[1]) != (toy.PLURAL_MARKER in o[1])]
    if not pairs:
        return None
    for chunk in rng.choice(pairs):
        words = chunk[1]
        if toy.PLURAL_MARKER in words:
            words.remove(toy.PLURAL_MARKER)
        else:
            words.insert(_noun_end(words), toy.PLURAL_MARKER)
    return chunks


def _corrupt_gender(rng, chunks):
    """Swap the articles of two noun phrases that have different ones; None if impossible."""
    nps = [c for c in chunks if c[0] == "np" and c[1][0] in grammar.GENDER_OF_ARTICLE]
    pairs = [(a, b) for i, a in enumerate(nps) for b in nps[i + 1:] if a[1][0] != b[1][0]]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    a[1][0], b[1][0] = b[1][0], a[1][0]
    return chunks


def _corrupt_order(rng, chunks):
    """Move one word or chunk out of place: a verb, a postposition or an adjective."""
    options = ["verb"]
    if any(c[0] == "post" for c in chunks):
        options.append("post")
    adjective_nps = [c for c in chunks if c[0] == "np" and c[1][-1] in grammar.VELAN_ADJECTIVES]
    if adjective_nps:
        options.append("adjective")
    option = rng.choice(options)
    if option == "verb":  # to right after the first noun phrase, or first if already there
        verb = chunks.pop(rng.choice([k for k, c in enumerate(chunks) if c[0] == "verb"]))
        chunks.insert(0 if chunks[1][0] in ("ke", ".") else 1, verb)
    elif option == "post":  # postposition before its noun phrase
        k = next(k for k, c in enumerate(chunks) if c[0] == "post")
        chunks[k - 1], chunks[k] = chunks[k], chunks[k - 1]
    else:  # the adjective next to the noun jumps in front of the noun
        words = rng.choice(adjective_nps)[1]
        end = _noun_end(words)
        first_adjective = end + (words[end] == toy.PLURAL_MARKER)
        noun_start = 1 if words[0] in grammar.GENDER_OF_ARTICLE else 0
        words.insert(noun_start, words.pop(first_adjective))
    return chunks


_CORRUPTIONS = {"agreement": _corrupt_agreement, "gender": _corrupt_gender,
                "order": _corrupt_order}


def _draw_acceptability(rng, index):
    """Example `index`: labels alternate, corruption families cycle (exact balance)."""
    family = list(_CORRUPTIONS)[(index // 2) % len(_CORRUPTIONS)]
    acceptable = index % 2 == 0
    while True:
        english, velan = toy.toy_sentence_pair(rng)
        corrupted = _CORRUPTIONS[family](rng, _velan_chunks(velan.split()))
        if corrupted is None:
            continue  # positives come from the same sentences as negatives
        if acceptable:
            return velan, "acceptable", english
        text = " ".join(w for _, words in corrupted for w in words)
        if not grammar.is_grammatical_velan(text):
            return text, "unacceptable", english


# --- plural_subject and sentence_type ----------------------------------------------------
def _draw_plural_subject(rng, index):
    """Reported sentences; (main plural, inner plural) cycles through the 4 combinations."""
    want = ((index // 2) % 2 == 1, index % 2 == 1)
    while True:
        english, _ = toy.toy_sentence_pair(rng)
        if " that " not in english:
            continue
        parse = grammar.parse_english(english)
        if (parse.reporter.subject.plural, parse.clause.subject.plural) == want:
            return english, "plural" if want[1] else "singular", english


_SENTENCE_TYPES = ("intransitive", "transitive", "reported")


def _draw_sentence_type(rng, index):
    want = _SENTENCE_TYPES[index % len(_SENTENCE_TYPES)]
    while True:
        english, _ = toy.toy_sentence_pair(rng)
        template = grammar.parse_english(english).template
        if template.removesuffix("_pp") == want:
            return english, want, english


TASKS = {task.name: task for task in (
    Task("acceptability", "Is this Velan sentence grammatical? Negatives move words "
         "(agreement, gender, word order) and never replace them.",
         ("acceptable", "unacceptable"), "velan", _draw_acceptability),
    Task("plural_subject", "In 'SUBJ says that CLAUSE .', is the subject of CLAUSE plural? "
         "Main and inner subject number are balanced and independent.",
         ("singular", "plural"), "english", _draw_plural_subject),
    Task("sentence_type", "Intransitive, transitive or reported English sentence (easy).",
         _SENTENCE_TYPES, "english", _draw_sentence_type),
)}


def make_task(name, n_train=2000, n_valid=500, n_test=500, seed=0):
    """A classification task -> {"train","valid","test"} lists of (text, label).

    Labels are exactly balanced within each split (up to one example when the split
    size is not a multiple of the number of labels); no underlying sentence occurs
    in two splits or twice in one.
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    for arg, n in (("n_train", n_train), ("n_valid", n_valid), ("n_test", n_test)):
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"{arg} must be a non-negative int, got {n!r}")
    rng = random.Random(f"task-{name}-{seed}")
    seen, splits = set(), {}
    for split, n in (("test", n_test), ("valid", n_valid), ("train", n_train)):
        examples, index, draws = [], 0, 0
        while len(examples) < n:
            draws += 1
            if draws > 50 * n + 1000:
                raise ValueError(f"could not make {n} distinct {name} examples for {split}")
            text, label, sentence = TASKS[name].draw(rng, index)
            if sentence in seen:
                continue
            seen.add(sentence)
            examples.append((text, label))
            index += 1
        rng.shuffle(examples)
        splits[split] = examples
    return {"train": splits["train"], "valid": splits["valid"], "test": splits["test"]}


# --- user files ---------------------------------------------------------------------------
def load_labelled_tsv(path):
    """Read "text<TAB>label" lines -> list of (text, label).

    Blank lines are skipped. A line without a tab, with an empty text or an empty
    label raises DataError naming the file and line (a classifier trained on a
    silently dropped or shifted label is wrong without a trace); so does a file
    with no examples or with a single label (nothing to classify).
    A third column or more is an error too: a tab inside the text is ambiguous.
    """
    examples = []
    for lineno, line in _read_lines(path):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != 2:
            what = "no tab" if len(cols) == 1 else f"{len(cols)} columns"
            raise DataError(f"{path}:{lineno}: expected text<TAB>label (2 columns), "
                            f"found {what}: {line[:60]!r}")
        text, label = cols[0].strip(), cols[1].strip()
        if not text or not label:
            raise DataError(f"{path}:{lineno}: empty {'text' if not text else 'label'}: "
                            f"{line[:60]!r}")
        examples.append((text, label))
    if not examples:
        raise DataError(f"{path}: no examples (the file is empty or has only blank lines)")
    counts = Counter(label for _, label in examples)
    if len(counts) == 1:
        raise DataError(f"{path}: every one of the {len(examples)} examples has the label "
                        f"{next(iter(counts))!r}; a classifier needs at least two labels")
    return examples
