"""The built-in toy corpus: determinism, splits, lengths, and the grammar rules."""
import time

import pytest

from npformer.data import make_copy_task, make_reverse_task, make_toy_corpus
from npformer.data import toy

# CPU seconds (not wall time, which other jobs on a shared machine inflate);
# about 0.7 s on a 2020s laptop core.
GENERATION_CPU_SECONDS_LIMIT = 3.0


@pytest.fixture(scope="module")
def corpus():
    start = time.process_time()
    c = make_toy_corpus()
    c["_cpu_seconds"] = time.process_time() - start
    return c


def test_default_split_sizes_and_speed(corpus):
    assert [len(corpus[k]) for k in ("train", "valid", "test")] == [40000, 1000, 1000]
    assert corpus["_cpu_seconds"] < GENERATION_CPU_SECONDS_LIMIT, corpus["_cpu_seconds"]


def test_pairs_are_unique_and_test_is_unseen(corpus):
    sources = {k: [s for s, _ in corpus[k]] for k in ("train", "valid", "test")}
    for name, srcs in sources.items():
        assert len(set(srcs)) == len(srcs), f"duplicate sources in {name}"
    train = set(sources["train"])
    assert not train & set(sources["test"])
    assert not train & set(sources["valid"])
    assert not set(sources["valid"]) & set(sources["test"])


def test_same_seed_same_corpus_other_seed_differs():
    a = make_toy_corpus(n_train=300, n_valid=20, n_test=20, seed=7)
    b = make_toy_corpus(n_train=300, n_valid=20, n_test=20, seed=7)
    c = make_toy_corpus(n_train=300, n_valid=20, n_test=20, seed=8)
    assert a == b
    assert a["train"] != c["train"]


def test_lengths_vocab_and_format(corpus):
    src_vocab, tgt_vocab = set(), set()
    for split in ("train", "valid", "test"):
        for src, tgt in corpus[split]:
            s, t = src.split(), tgt.split()
            assert 4 <= len(s) <= 14, src
            assert 3 <= len(t) <= 20, tgt
            assert s[-1] == "." and t[-1] == "." and src == src.lower()
            src_vocab.update(s)
            tgt_vocab.update(t)
    assert 150 <= len(src_vocab) <= 300, len(src_vocab)
    assert 150 <= len(tgt_vocab) <= 300, len(tgt_vocab)


def test_translation_is_a_function_and_lengths_differ(corpus):
    """One target per source across a second, independent draw; lengths often differ."""
    mapping = dict(corpus["train"])
    other = make_toy_corpus(n_train=5000, n_valid=0, n_test=0, seed=123)["train"]
    shared = [(s, t) for s, t in other if s in mapping]
    assert len(shared) > 50
    assert all(mapping[s] == t for s, t in shared)
    differ = sum(len(s.split()) != len(t.split()) for s, t in corpus["train"])
    assert differ / len(corpus["train"]) > 0.5


def test_target_words_do_not_collide_across_categories():
    nouns = toy.ANIMATE_NOUNS + toy.THING_NOUNS + toy.PLACE_NOUNS
    noun_words = {w for *_, tgt, _ in nouns for w in tgt.split()}
    adjective_words = {stem + e for stem in toy.ADJECTIVES.values() for e in "oa"}
    verbs = toy.TRANSITIVE_VERBS + toy.INTRANSITIVE_VERBS + toy.SAY_VERBS
    verb_words = {stem + e for *_, stem in verbs for e in ("e", "en")}
    function_words = {toy.PLURAL_MARKER, toy.NEGATION, toy.COMPLEMENTIZER, *toy.ARTICLES.values()}
    function_words |= {post for post, _ in toy.PREPOSITIONS.values()}
    groups = [noun_words, adjective_words, verb_words, function_words]
    assert sum(map(len, groups)) == len(set().union(*groups))
    assert len(verb_words) == 2 * len(verbs)


def test_source_words_belong_to_one_category():
    """A source word means one thing, so the parse (and translation) is unique."""
    nouns = toy.ANIMATE_NOUNS + toy.THING_NOUNS + toy.PLACE_NOUNS
    noun_words = {w for sg, pl, *_ in nouns for w in (sg, pl)}
    verbs = toy.TRANSITIVE_VERBS + toy.INTRANSITIVE_VERBS + toy.SAY_VERBS
    verb_words = {w for sg, plain, _ in verbs for w in sg.split() + plain.split()}
    groups = [noun_words, set(toy.ADJECTIVES), verb_words, set(toy.PREPOSITIONS),
              {"the", "a", "an", "some", "does", "do", "not", "that", "."}]
    assert sum(map(len, groups)) == len(set().union(*groups))
    assert len(noun_words) == 2 * len(nouns)  # singular never equals plural


# --- an independent reference translator, written from docs/toy_corpus.md ---------
# It parses the source with the lexicon and applies the rules; the generator
# builds source and target together. Agreement on every pair checks both.
NOUNS = {}  # source word -> (target words, gender, plural)
for _sg, _pl, _tgt, _gender in toy.ANIMATE_NOUNS + toy.THING_NOUNS + toy.PLACE_NOUNS:
    NOUNS[_sg] = (_tgt.split(), _gender, False)
    NOUNS[_pl] = (_tgt.split(), _gender, True)
VERBS = {}  # tuple of source words -> target stem
for _sg, _plain, _stem in toy.TRANSITIVE_VERBS + toy.INTRANSITIVE_VERBS + toy.SAY_VERBS:
    VERBS[tuple(_sg.split())] = _stem
    VERBS[tuple(_plain.split())] = _stem


def parse_np(words):
    """Noun phrase at the start of `words` -> (target words, plural, rest)."""
    det, k = words[0], 1
    assert det in ("the", "a", "an", "some"), words
    adjectives = []
    while words[k] in toy.ADJECTIVES:
        adjectives.append(words[k])
        k += 1
    noun, gender, plural = NOUNS[words[k]]
    tgt = ([toy.ARTICLES[gender]] if det == "the" else []) + noun + (["ta"] if plural else [])
    tgt += [toy.ADJECTIVES[a] + ("o" if gender == "m" else "a") for a in reversed(adjectives)]
    return tgt, plural, words[k + 1:]


def parse_verb(words, plural):
    """Verb group at the start of `words` -> (target words, rest)."""
    neg = words[:2] in (["does", "not"], ["do", "not"])
    if neg:
        words = words[2:]
    for n in (2, 1):
        if tuple(words[:n]) in VERBS:
            stem = VERBS[tuple(words[:n])]
            return (["nu"] if neg else []) + [stem + ("en" if plural else "e")], words[n:]
    raise AssertionError(f"no verb at {words}")


def reference_translate(source):
    """Source sentence -> target sentence by the rules of docs/toy_corpus.md."""
    words = source.split()
    assert words[-1] == "."
    words = words[:-1]
    if "that" in words:
        k = words.index("that")
        subj, plural, rest = parse_np(words[:k])
        verb, rest = parse_verb(rest, plural)
        assert rest == []
        return " ".join(subj + reference_translate(" ".join(words[k + 1:]) + " .").split()[:-1]
                        + ["ke"] + verb + ["."])
    subj, plural, rest = parse_np(words)
    verb, rest = parse_verb(rest, plural)
    obj, pp = [], []
    if rest and rest[0] not in toy.PREPOSITIONS:
        obj, _, rest = parse_np(rest)
    if rest:
        postposition = toy.PREPOSITIONS[rest[0]][0]
        np_tgt, _, rest = parse_np(rest[1:])
        pp = np_tgt + [postposition]
    assert rest == [], source
    return " ".join(subj + pp + obj + verb + ["."])


@pytest.mark.parametrize("src, tgt", [
    ("the big red dog sleeps .", "lo kan rubo grando dorme ."),
    ("the cats see a small mouse in the house .", "la gato ta la domo ne mus pika viden ."),
    ("some teachers do not look at the old car .", "sabi mun ta lo auto veko nu miren ."),
    ("an old king says that the girls dance .", "reg veko la pela ta dansen ke dike ."),
])
def test_reference_translator_on_hand_checked_examples(src, tgt):
    assert reference_translate(src) == tgt


def test_generator_follows_the_documented_rules(corpus):
    for split in ("train", "valid", "test"):
        for src, tgt in corpus[split]:
            assert reference_translate(src) == tgt, src


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="n_valid"):
        make_toy_corpus(n_valid=-1)


def test_copy_and_reverse_tasks():
    copy = make_copy_task(n_train=200, n_valid=20, n_test=20, seed=1)
    rev = make_reverse_task(n_train=200, n_valid=20, n_test=20, seed=1)
    assert [len(copy[k]) for k in ("train", "valid", "test")] == [200, 20, 20]
    for src, tgt in copy["train"]:
        assert src == tgt and 4 <= len(src.split()) <= 12
    for src, tgt in rev["train"]:
        assert tgt.split() == src.split()[::-1]
    assert not {s for s, _ in rev["train"]} & {s for s, _ in rev["test"]}
    with pytest.raises(ValueError, match="distinct"):
        make_copy_task(n_train=100, n_valid=0, n_test=0, n_symbols=2, min_len=1, max_len=2)


def test_examples_in_the_docs_are_correct():
    """Every example row of docs/toy_corpus.md's tables follows the rules."""
    from pathlib import Path
    doc = Path(__file__).resolve().parents[1] / "docs" / "toy_corpus.md"
    rows = [line.split("|")[1:3] for line in doc.read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and line.split("|")[1].strip().endswith(" .")]
    assert len(rows) >= 10
    for src, tgt in rows:
        assert reference_translate(src.strip()) == tgt.strip(), src
