"""BLEU and exact match, cross-checked against sacrebleu (a test-only dependency)."""
import math

import pytest

from npformer.tasks.metrics import corpus_bleu, exact_match, sentence_bleu, tokenize_13a

sacrebleu = pytest.importorskip("sacrebleu")

BLEU_TOLERANCE = 0.01  # BLEU points; the brief asks for agreement within 0.01

FIXTURES = {
    "identical": (["the cat sat on the mat."], ["the cat sat on the mat."]),
    "one_sentence": (["the cat is on the mat"], ["there is a cat on the mat"]),
    "several": (
        ["A man is riding a bicycle down the street.",
         "Two dogs play in the snow!",
         "She said: \"it's 3.5 km away\" -- well, maybe.",
         "children (three of them) are eating ice-cream"],
        ["A man rides his bike down a street.",
         "Two dogs are playing in the snow.",
         "She said \"it is 3.5 km away\", maybe.",
         "Three children are eating ice cream."]),
    "short_hyps": (["a", "the dog", "runs ."], ["a cat sleeps here", "the dog barks", "he runs fast ."]),
    "empty_hyp_among_others": (["", "the house is big", ""],
                               ["a sentence", "the house is very big", "another one"]),
    "all_empty_hyps": (["", ""], ["a reference", "another reference"]),
    "no_match": (["xyz uvw"], ["the cat sat"]),
    "missing_bigram_order": (["cat mat dog the"], ["the cat on the mat with a dog"]),
    "longer_than_ref": (["the the the cat cat sat on on the mat mat ."], ["the cat sat on the mat ."]),
    "html_entities_and_dashes": (["fish &amp; chips -- 1999-2000, 1,000 people & more"],
                                 ["fish & chips - 1999 - 2000 , 1,000 people &amp; more"]),
    "unicode": (["Zwei junge Männer stehen draußen.", "Ein Mädchen klettert."],
                ["Zwei junge weiße Männer sind im Freien.", "Ein kleines Mädchen klettert."]),
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_corpus_bleu_matches_sacrebleu(name):
    hyps, refs = FIXTURES[name]
    ours = corpus_bleu(hyps, refs)
    theirs = sacrebleu.corpus_bleu(hyps, [refs])
    assert abs(ours.score - theirs.score) <= BLEU_TOLERANCE, (name, ours.score, theirs.score)
    assert ours.hyp_len == theirs.sys_len and ours.ref_len == theirs.ref_len
    assert ours.counts == list(theirs.counts) and ours.totals == list(theirs.totals)
    assert ours.bp == pytest.approx(theirs.bp)
    assert ours.precisions == pytest.approx(theirs.precisions)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_sentence_bleu_matches_sacrebleu(name):
    hyps, refs = FIXTURES[name]
    for hyp, ref in zip(hyps, refs):
        ours = sentence_bleu(hyp, ref).score
        theirs = sacrebleu.sentence_bleu(hyp, [ref]).score
        assert abs(ours - theirs) <= BLEU_TOLERANCE, (hyp, ref, ours, theirs)


def test_tokenize_13a_matches_sacrebleu():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    theirs = Tokenizer13a()
    for hyps, refs in FIXTURES.values():
        for line in hyps + refs:
            assert tokenize_13a(line) == theirs(line), line


def test_bleu_on_toy_translations_matches_sacrebleu():
    """A larger fixture: toy targets with some words dropped or swapped."""
    from npformer.data import make_toy_corpus
    pairs = make_toy_corpus(n_train=0, n_valid=300, n_test=0, seed=3)["valid"]
    refs = [t for _, t in pairs]
    hyps = []
    for k, ref in enumerate(refs):
        words = ref.split()
        if k % 3 == 1:
            words = words[1:]
        elif k % 3 == 2:
            words[0], words[-2] = words[-2], words[0]
        hyps.append(" ".join(words))
    ours = corpus_bleu(hyps, refs).score
    theirs = sacrebleu.corpus_bleu(hyps, [refs]).score
    assert 10 < ours < 100
    assert abs(ours - theirs) <= BLEU_TOLERANCE


def test_bleu_known_values():
    assert corpus_bleu(["a b c d"], ["a b c d"]).score == pytest.approx(100.0)
    assert corpus_bleu(["x y"], ["a b"]).score == 0.0
    # Half the length of the reference: BP = exp(1 - 8/4) = exp(-1).
    result = corpus_bleu(["a b c d"], ["a b c d e f g h"])
    assert result.bp == pytest.approx(math.exp(-1))
    assert result.score == pytest.approx(100 * math.exp(-1))
    assert result.ratio == pytest.approx(0.5)


def test_exact_match():
    assert exact_match(["a b", "c  d ", "e"], ["a b", "c d", "f"]) == pytest.approx(2 / 3)
    assert exact_match(["x"], ["x"]) == 1.0


def test_bad_arguments_are_rejected_clearly():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        corpus_bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="empty"):
        exact_match([], [])
    with pytest.raises(TypeError, match="not single strings"):
        corpus_bleu("a b", "a b")


def test_distinct_n_by_hand():
    from npformer.tasks.metrics import distinct_n

    lines = ["a b c", "a b d"]
    assert distinct_n(lines, 1) == 4 / 6  # a, b, c, d among 6 tokens
    assert distinct_n(lines, 2) == 3 / 4  # (a b) twice, (b c), (b d)
    assert distinct_n(lines, 3) == 1.0
    assert distinct_n(["a"], 2) == 0.0


def test_self_bleu_extremes_and_against_sentence_bleu():
    """Identical lines score 100, lines sharing no word 0.

    With two lines it is the sentence BLEU of each against the other (whitespace tokens,
    no punctuation here).
    """
    from npformer.tasks.metrics import self_bleu, sentence_bleu

    assert self_bleu(["the dog runs fast"] * 3) == pytest.approx(100.0)
    assert self_bleu(["a b c d", "e f g h", "i j k l"]) == 0.0
    a, b = "the big dog sees a cat", "the big dog sees the cow"
    pair = (sentence_bleu(a, b).score + sentence_bleu(b, a).score) / 2
    assert self_bleu([a, b]) == pytest.approx(pair, rel=1e-12)
    # a line's own n-grams never count: a third, unrelated line leaves each score unchanged
    assert self_bleu([a, b, "x y z w"], hypotheses=[0, 1]) == pytest.approx(pair, rel=1e-12)
    with pytest.raises(ValueError):
        self_bleu(["one line"])
