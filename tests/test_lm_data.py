"""Data for language models: toy text, grammar checker, entropy floor, loaders."""
import math
import random
import time
from collections import Counter
from itertools import pairwise

import pytest

from npformer.data import entropy, grammar, toy
from npformer.data.io import DataError
from npformer.data.text import HELDOUT_EXCLUSION_MAX_PROB, load_text, make_toy_text

# CPU seconds for 200k tokens of text (about 0.2 s measured; shared machines are slower)
TEXT_CPU_SECONDS_LIMIT = 2.0


def write(path, data):
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def sample_pairs(n, seed):
    rng = random.Random(seed)
    return [toy.toy_sentence_pair(rng) for _ in range(n)]


# --- text ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["english", "velan", "mixed"])
def test_text_sizes_determinism_and_grammar(kind):
    a = make_toy_text(5000, kind, seed=3, n_valid_tokens=1000, n_test_tokens=1000)
    b = make_toy_text(5000, kind, seed=3, n_valid_tokens=1000, n_test_tokens=1000)
    c = make_toy_text(5000, kind, seed=4, n_valid_tokens=1000, n_test_tokens=1000)
    assert a == b
    assert a["train"] != c["train"] and a["valid"] != c["valid"]
    for split, n in (("train", 5000), ("valid", 1000), ("test", 1000)):
        tokens = sum(len(line.split()) for line in a[split])
        assert n <= tokens < n + 2 * toy.MAX_LEN + 1, (split, tokens)
    check = {"english": grammar.is_grammatical_english, "velan": grammar.is_grammatical_velan,
             "mixed": grammar.is_grammatical_mixed}[kind]
    bad = [line for split in a.values() for line in split if not check(line)]
    assert not bad, bad[:3]


def test_mixed_text_has_all_three_kinds_of_line():
    lines = make_toy_text(20000, "mixed", seed=0)["train"]
    kinds = Counter("pair" if " = " in line else
                    "english" if grammar.is_grammatical_english(line) else "velan"
                    for line in lines)
    assert set(kinds) == {"english", "velan", "pair"}
    assert min(kinds.values()) > 0.2 * len(lines), kinds


def test_heldout_does_not_depend_on_train_size_and_train_grows_by_appending():
    small = make_toy_text(3000, "english", seed=1, n_valid_tokens=2000, n_test_tokens=2000)
    large = make_toy_text(30000, "english", seed=1, n_valid_tokens=2000, n_test_tokens=2000)
    assert small["valid"] == large["valid"] and small["test"] == large["test"]
    assert large["train"][:len(small["train"])] == small["train"]


def test_rare_heldout_sentences_never_in_train():
    data = make_toy_text(100_000, "english", seed=0, n_valid_tokens=5000, n_test_tokens=5000)
    assert not set(data["valid"]) & set(data["test"])
    train = set(data["train"])
    limit = math.log(HELDOUT_EXCLUSION_MAX_PROB)
    shared = [s for s in data["valid"] + data["test"] if s in train]
    assert shared, "short frequent sentences should be allowed in both"
    assert all(entropy.sentence_logprob(s) >= limit for s in shared)
    rare = [s for s in data["valid"] if entropy.sentence_logprob(s) < limit]
    assert len(rare) > 0.8 * len(data["valid"])


def test_mixed_heldout_sentence_excluded_in_every_form():
    data = make_toy_text(50_000, "mixed", seed=2, n_valid_tokens=3000, n_test_tokens=0)
    train_english = {line.partition(" = ")[0] for line in data["train"] if " = " in line}
    train_velan = {line.partition(" = ")[2] for line in data["train"] if " = " in line}
    limit = math.log(HELDOUT_EXCLUSION_MAX_PROB)
    for line in data["valid"]:
        if " = " in line:
            english, _, velan = line.partition(" = ")
            if entropy.sentence_logprob(english) < limit:
                assert english not in train_english and velan not in train_velan, line


def test_text_speed_and_bad_arguments():
    start = time.process_time()
    make_toy_text(200_000, "mixed", seed=0, n_valid_tokens=0, n_test_tokens=0)
    assert time.process_time() - start < TEXT_CPU_SECONDS_LIMIT
    with pytest.raises(ValueError, match="kind"):
        make_toy_text(100, "french")
    with pytest.raises(ValueError, match="n_tokens"):
        make_toy_text(-1)


def test_load_text_lines_and_whole(tmp_path):
    path = write(tmp_path / "t.txt", "\ufefffirst line \n\n second\r\nthird\u2028still third\n")
    assert load_text(path) == ["first line", "second", "third\u2028still third"]
    assert load_text(path, mode="whole") == ["first line \n\n second\nthird\u2028still third"]
    with pytest.raises(ValueError, match="mode"):
        load_text(path, mode="words")


@pytest.mark.parametrize("content", ["", "\n  \n\n"])
def test_load_text_empty_file(tmp_path, content):
    path = write(tmp_path / "empty.txt", content)
    with pytest.raises(DataError, match=r"empty.txt: no text"):
        load_text(path)


def test_load_text_bad_bytes_and_missing_file(tmp_path):
    path = write(tmp_path / "bad.txt", b"good line\nbad \xff byte\n")
    with pytest.raises(DataError, match=r"bad.txt:2: not valid UTF-8"):
        load_text(path)
    with pytest.raises(DataError, match="cannot open"):
        load_text(tmp_path / "missing.txt")


# --- grammar ----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_generated_sentence_is_accepted_and_both_parses_agree(seed):
    for english, velan in sample_pairs(2000, seed):
        parse = grammar.parse_english(english)
        assert grammar.parse_velan(velan) == parse, (english, velan)
        assert grammar.is_grammatical_mixed(f"{english} = {velan}")


def test_languages_and_translations_are_not_confused():
    pairs = sample_pairs(300, 5)
    assert not any(grammar.is_grammatical_velan(e) for e, _ in pairs)
    assert not any(grammar.is_grammatical_english(v) for _, v in pairs)
    wrong = [f"{a[0]} = {b[1]}" for a, b in pairwise(pairs)]
    assert not any(grammar.is_grammatical_mixed(line) for line in wrong)


def test_word_salads_are_rejected():
    """Random English word strings are never sentences; Velan ones only rarely.

    Short Velan strings sometimes are sentences (no articles, no function words:
    "gato urs lento aide ." is "a cat helps a slow bear"), so a tiny share may pass.
    """
    pairs = sample_pairs(200, 6)
    rng = random.Random(0)
    for side, check, max_accepted in ((0, grammar.is_grammatical_english, 0),
                                      (1, grammar.is_grammatical_velan, 10)):
        vocab = sorted({w for pair in pairs for w in pair[side].split()} - {"."})
        salads = [" ".join(rng.choices(vocab, k=rng.randint(3, 12))) + " ." for _ in range(2000)]
        accepted = [s for s in salads if check(s)]
        assert len(accepted) <= max_accepted, accepted


@pytest.mark.parametrize("sentence, reason", [
    ("the dog sleep .", "does not agree"),
    ("the dogs does not sleep .", "does/do"),
    ("a dogs sleeps .", "singular"),
    ("an dog sleeps .", "'an' before 'dog'"),
    ("a old dog sleeps .", "'a' before 'old'"),
    ("the big big dog sleeps .", "same adjective twice"),
    ("the old big red dog sleeps .", "more than two adjectives"),
    ("the apple sleeps .", "cannot stand here"),
    ("the dog sees .", "expected a determiner"),
    ("the dog sleeps the cat .", "expected '.'"),
    ("the dog says that the cat sleeps in the house .", "expected '.'"),
    ("the old dog says that the old cat does not look at the old hungry apple .", "longer"),
    ("the dog sleeps under the house .", "cannot stand here"),
])
def test_english_rejections_say_why(sentence, reason):
    assert reason in grammar.why_not_english(sentence)


@pytest.mark.parametrize("sentence, reason", [
    ("lo kan dormen .", "does not agree"),
    ("la kan dorme .", "gender"),
    ("lo kan granda dorme .", "gender"),
    ("lo kan vide .", "transitive needs one object"),
    ("lo kan dorme la gato .", "'.'"),
    ("lo kan ne la domo dorme .", "expected a noun"),
    ("lo kan la poma la domo ne vide .", "cannot stand here"),
    ("lo kan la gato vide ke dike .", "transitive needs one object"),
    ("lo kan la gato dorme ke vide .", "expected a say verb"),
    ("lo kan la gato dorme ke dike ke dike .", "expected '.'"),
])
def test_velan_rejections_say_why(sentence, reason):
    assert reason in grammar.why_not_velan(sentence)


# --- entropy floor --------------------------------------------------------------------------
def test_logprob_by_hand():
    """p("a dog sleeps .") by hand.

    p = w(intransitive) * 1/22 * (1-P_PLURAL) * w(0 adjectives) * (1-P_DEFINITE) * 1/11
    * (1-P_NEGATED) / Z.
    """
    q = (toy.TEMPLATE_WEIGHTS["intransitive"] / 22 * (1 - toy.P_PLURAL)
         * toy.ADJECTIVE_COUNT_WEIGHTS[0] * (1 - toy.P_DEFINITE) / 11 * (1 - toy.P_NEGATED))
    Z = entropy.entropy_floor()["Z"]
    assert entropy.sentence_logprob("a dog sleeps .") == pytest.approx(math.log(q / Z))
    assert entropy.sentence_logprob("kan dorme .", "velan") == pytest.approx(math.log(q / Z))


def test_Z_is_the_share_of_draws_within_max_len(monkeypatch):
    monkeypatch.setattr(toy, "MAX_LEN", 100)  # nothing rejected: draws from q
    n = 20000
    short = sum(len(e.split()) <= 14 for e, _ in sample_pairs(n, 11))
    Z = entropy.entropy_floor()["Z"]
    assert abs(short / n - Z) < 4 * math.sqrt(Z * (1 - Z) / n), (short / n, Z)


def test_entropy_matches_monte_carlo_estimate():
    """H = E_p[-log p(s)]: the mean over samples of -log p (from the parser) estimates it."""
    pairs = sample_pairs(5000, 12)
    nll = [-entropy.sentence_logprob(e) for e, _ in pairs]
    mean = sum(nll) / len(nll)
    stderr = math.sqrt(sum((x - mean) ** 2 for x in nll) / (len(nll) - 1) / len(nll))
    for kind, lengths in (("english", [len(e.split()) for e, _ in pairs]),
                          ("velan", [len(v.split()) for _, v in pairs])):
        floor = entropy.entropy_floor(kind)
        assert abs(mean - floor["nats_per_line"]) < 4 * stderr, (mean, floor)
        assert sum(lengths) / len(lengths) == pytest.approx(floor["tokens_per_line"], abs=0.08)
        assert floor["perplexity"] == pytest.approx(math.exp(floor["nats_per_token"]))
        assert floor["bits_per_token"] == pytest.approx(floor["nats_per_token"] / math.log(2))


def test_mixed_floor_and_text_nll():
    data = make_toy_text(0, "mixed", seed=0, n_valid_tokens=20000, n_test_tokens=0)
    floor = entropy.entropy_floor("mixed")
    measured = entropy.text_nll(data["valid"], "mixed")
    assert measured == pytest.approx(floor["nats_per_token"], rel=0.03)
    with_eol = entropy.entropy_floor("mixed", extra_tokens_per_line=1)
    assert with_eol["nats_per_line"] == floor["nats_per_line"]
    assert with_eol["tokens_per_line"] == floor["tokens_per_line"] + 1
    with pytest.raises(grammar.Ungrammatical):
        entropy.line_logprob("the dog sleeps . = lo kan dormen .", "mixed")


# --- the generator's next-token distribution --------------------------------------------
@pytest.mark.parametrize("kind", ["english", "velan", "mixed"])
def test_next_token_chain_rule_gives_the_line_probability(kind):
    """prod_t p(x_t | x_<t) (end of line included) = p(line) from entropy.py, line by line.

    Two independent computations (a left-to-right walk over the generator's choices and
    a parse of the whole line); float64 sums of about 15 logs agree to ~1e-14.
    """
    from npformer.data.next_token import END, line_next_token_distributions

    for line in make_toy_text(0, kind, seed=5, n_valid_tokens=150, n_test_tokens=0)["valid"]:
        dists = line_next_token_distributions(line, kind)
        assert all(sum(d.values()) == pytest.approx(1.0, abs=1e-12) for d in dists)
        chain = sum(math.log(d[t]) for d, t in zip(dists, line.split() + [END]))
        assert chain == pytest.approx(entropy.line_logprob(line, kind), abs=1e-9), line


def test_next_token_distribution_matches_sampled_lines():
    """The first and second tokens of 20,000 drawn lines follow the computed distributions.

    An estimate independent of entropy.py: each frequency within 4.5 binomial standard
    errors of the computed probability (a false alarm about once in 10^5 per token).
    """
    from npformer.data.next_token import next_token_distribution

    lines = make_toy_text(0, "mixed", seed=6, n_valid_tokens=240_000, n_test_tokens=0)["valid"]
    lines = [line.split() for line in lines[:20_000]]
    for prefix in ([], ["the"], ["lo"]):
        followers = [w[len(prefix)] for w in lines if w[:len(prefix)] == prefix]
        counts, n = Counter(followers), len(followers)
        dist = next_token_distribution(prefix, "mixed")
        assert set(counts) <= set(dist)
        for token, p in dist.items():
            assert abs(counts[token] / n - p) <= 4.5 * math.sqrt(p * (1 - p) / n) + 1e-12, \
                (prefix, token, counts[token] / n, p)


def test_next_token_pair_lines_and_impossible_prefixes():
    """After "=" the Velan half is certain; a prefix the generator cannot write gives {}."""
    from npformer.data.next_token import END, next_token_distribution, velan_of

    for english, velan in sample_pairs(200, seed=7):
        assert velan_of(english) == velan
    english, velan = sample_pairs(1, seed=8)[0]
    words = english.split() + ["="] + velan.split()
    for i in range(len(english.split()) + 1, len(words) + 1):
        want = words[i] if i < len(words) else END
        assert next_token_distribution(words[:i], "mixed") == {want: 1.0}
    end = next_token_distribution(english, "mixed")
    assert end["="] == pytest.approx(0.30 / 0.65) and end[END] == pytest.approx(0.35 / 0.65)
    assert next_token_distribution("dog the", "mixed") == {}
    assert next_token_distribution("a dog sleeps . = la kan", "mixed") == {}
    with pytest.raises(ValueError, match="kind"):
        next_token_distribution("", "french")


def test_ngram_loss_by_hand_and_bigram_beats_unigram():
    """Unigram loss by hand on a tiny corpus; on toy text the bigram is lower than the unigram."""
    from npformer.data.baselines import ngram_loss

    rows = [[1, 4, 5, 2], [1, 4, 2]]  # V = 6: counts of predicted tokens 4:2, 5:1, 2:2 (+1 each)
    p = {4: 3 / 11, 5: 2 / 11, 2: 3 / 11}
    by_hand = -(math.log(p[4]) + math.log(p[2])) / 2
    assert ngram_loss(rows, [[1, 4, 2]], 1, 6) == pytest.approx(by_hand, rel=1e-12)
    text = make_toy_text(20_000, "mixed", seed=0, n_valid_tokens=3000, n_test_tokens=0)
    vocab = {w: i + 4 for i, w in enumerate(sorted({w for line in text["train"]
                                                   for w in line.split()}))}
    encode = [[[1] + [vocab.get(w, 3) for w in line.split()] + [2] for line in text[split]]
              for split in ("train", "valid")]
    uni, bi = (ngram_loss(*encode, order, len(vocab) + 4) for order in (1, 2))
    floor = entropy.text_nll(text["valid"], "mixed", extra_tokens_per_line=1)
    assert floor < bi < uni < math.log(len(vocab) + 4), (floor, bi, uni)
