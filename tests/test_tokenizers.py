"""Tokenizers: round trips, the BPE training loop, save/load and error messages."""
import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npformer.tokenizers import (BOS_ID, EOS_ID, PAD_ID, UNK_ID, BPETokenizer, CharTokenizer,
                                 TokenizerError, WordTokenizer, load_tokenizer, make_tokenizers)
from npformer.devtools.scan_commands import scan_commands
from npformer.tokenizers.bpe import (GPT2_PRETOKENIZE_RE, N_BASE, PRETOKENIZE_RE, learn_merges,
                                      merge_pair)

TEXTS = [
    "the cat sat on the mat .",
    "the cats sat on the mats .",
    "a dog sees the cat in the garden .",
    "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.",
    "Ein kleines Mädchen klettert in ein Spielhaus aus Holz.",
    "naïve café – 3.5 km, 100% sure!  tabs\tand\nnewlines 😀 日本語",
] * 3


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train(TEXTS, vocab_size=400)


def test_special_ids_are_fixed():
    assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)
    for tok in (BPETokenizer([]), WordTokenizer(["x"]), CharTokenizer(["x"])):
        assert [tok.id_to_token(i) for i in range(4)] == ["<pad>", "<bos>", "<eos>", "<unk>"]


# --- byte-level BPE ---------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.text())
def test_bpe_round_trips_arbitrary_unicode(bpe, text):
    ids = bpe.encode(text)
    assert all(N_BASE > i >= 4 or i >= N_BASE for i in ids)  # never a special, never UNK
    assert bpe.decode(ids) == text


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_pretokenizer_covers_every_character(text):
    assert "".join(PRETOKENIZE_RE.findall(text)) == text


def test_pretokenizer_keeps_identifiers_whole():
    text = "I_TURN_LEFT I_WALK, snake_case2 and max__len: _x y_ 3_4 a_1"
    assert PRETOKENIZE_RE.findall(text) == [
        "I_TURN_LEFT", " I_WALK", ",", " snake_case2", " and", " max__len", ":", " _",
        "x", " y", "_", " 3", "_", "4", " a_1"]
    assert GPT2_PRETOKENIZE_RE.findall("I_TURN_LEFT")[:3] == ["I", "_", "TURN"]  # the old rule


@settings(max_examples=300, deadline=None)
@given(st.text().map(lambda t: t.replace("_", "")))
def test_pretokenizer_is_gpt2s_on_text_without_underscores(text):
    assert PRETOKENIZE_RE.findall(text) == GPT2_PRETOKENIZE_RE.findall(text)


def test_bpe_learns_underscore_symbols_as_one_token():
    targets = [a for _, a in scan_commands()[:3000]]
    tok = BPETokenizer.train(targets, vocab_size=400)
    words = sum(len(t.split()) for t in targets)
    assert sum(len(tok.encode(t)) for t in targets) == words  # one token per symbol
    assert tok.tokenize("I_TURN_LEFT I_JUMP") == ["I_TURN_LEFT", " I_JUMP"]
    old = BPETokenizer.train(targets, vocab_size=400, identifiers=False)
    assert sum(len(old.encode(t)) for t in targets) > 3 * words  # "I", "_", "TURN", ...


def test_bpe_saved_before_identifiers_keeps_splitting_at_underscores(tmp_path):
    tok = BPETokenizer.train(["I_WALK I_RUN"] * 5, vocab_size=300)
    assert tok.to_dict()["identifiers"] is True
    old_dict = {k: v for k, v in tok.to_dict().items() if k != "identifiers"}
    old = BPETokenizer.from_dict(old_dict)  # a tokenizer JSON written before the rule
    assert old.identifiers is False and tok.encode("I_WALK") != old.encode("I_WALK")
    assert old.decode(old.encode("I_WALK x_y")) == "I_WALK x_y"
    path = tmp_path / "bpe.json"
    tok.save(path)
    assert load_tokenizer(path).encode("I_WALK I_RUN") == tok.encode("I_WALK I_RUN")
    with pytest.raises(TokenizerError, match="identifiers"):
        BPETokenizer.from_dict({**tok.to_dict(), "identifiers": "yes"})


def test_bpe_learns_frequent_words(bpe):
    assert bpe.vocab_size == 400
    assert len(bpe.merges) == 400 - N_BASE
    assert bpe.tokenize("the cat sat") == ["the", " cat", " sat"]
    pieces = bpe.tokenize("the zebras")  # an unseen word falls apart into pieces
    assert pieces[0] == "the" and len(pieces) > 2 and "".join(pieces) == "the zebras"
    rows = bpe.merge_table()
    assert len(rows) == len(bpe.merges)
    assert all(left + right == merged for left, right, merged in rows if "\\x" not in left + right)


def test_bpe_first_merge_is_the_most_frequent_pair():
    tok = BPETokenizer.train(["aaab aab ab", "ab"], vocab_size=N_BASE + 1)
    # chunks: "aaab", " aab", " ab", "ab": pair (a,b) occurs 4 times, (a,a) 3 times
    assert tok.merge_table() == [("a", "b", "ab")]


def naive_merges(texts, n_merges):
    """Reference BPE: recount all pairs from scratch before every merge."""
    words = Counter()
    for text in texts:
        words.update(PRETOKENIZE_RE.findall(text))
    seqs = {w: [b + 4 for b in w.encode()] for w in words}
    merges = []
    for k in range(n_merges):
        counts = Counter()
        for w, seq in seqs.items():
            for pair in zip(seq, seq[1:]):
                counts[pair] += words[w]
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))  # most frequent, then smallest
        merges.append(best)
        seqs = {w: merge_pair(seq, best, N_BASE + k) for w, seq in seqs.items()}
    return merges


def test_incremental_training_matches_naive_recount():
    texts = TEXTS + ["aaaa abab aaaaa bbbb abababab baba", "aa aa aa ab ab"]
    assert BPETokenizer.train(texts, vocab_size=N_BASE + 120).merges == naive_merges(texts, 120)


def test_pair_between_two_merges_is_uncounted_once():
    """Merging "abab" -> "C C" removes one (b,a), not two; so (b,a) still beats (C,C) next."""
    texts = ["abab"] * 10 + ["ab"] * 10 + ["ba"] * 15
    # counts: (a,b) 30, (b,a) 25 -> merge (a,b); then (b,a) 15 > (C,C) 10
    tok = BPETokenizer.train(texts, vocab_size=N_BASE + 2)
    assert tok.merge_table() == [("a", "b", "ab"), ("b", "a", "ba")]
    assert tok.merges == naive_merges(texts, 2)


def test_bpe_stops_when_nothing_is_left_to_merge():
    tok = BPETokenizer.train(["ab"], vocab_size=1000)
    assert tok.vocab_size == N_BASE + 1


def test_encoding_training_text_reuses_learned_tokens():
    """Replaying merges on a training word gives the same pieces training ended with."""
    texts = ["lower lowest newer newest wider", "low new wide"] * 5
    tok = BPETokenizer.train(texts, vocab_size=N_BASE + 25)
    words = [[b + 4 for b in w.encode()] for w in Counter(
        c for t in texts for c in PRETOKENIZE_RE.findall(t))]
    trained = [list(w) for w in words]
    learn_merges(trained, [1] * len(trained), 25)
    for word, final in zip(words, trained):
        assert tok._encode_chunk(bytes(b - 4 for b in word).decode()) == final


def test_bpe_decode_skips_specials_and_rejects_bad_ids(bpe):
    ids = bpe.encode("the cat")
    assert bpe.decode([BOS_ID] + ids + [EOS_ID, PAD_ID, PAD_ID]) == "the cat"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        bpe.decode([bpe.vocab_size])


def test_bpe_vocab_too_small_is_rejected():
    with pytest.raises(ValueError, match="at least 260"):
        BPETokenizer.train(TEXTS, vocab_size=100)


# --- word and char level -----------------------------------------------------------
def test_word_tokenizer_round_trip_and_unk():
    tok = WordTokenizer.train(TEXTS)
    text = "the cat sat on the mats ."
    assert tok.decode(tok.encode(text)) == text
    ids = tok.encode("the zebra sat")
    assert ids[1] == UNK_ID
    assert tok.decode(ids) == "the <unk> sat"
    assert tok.decode([BOS_ID] + tok.encode("the cat") + [EOS_ID, PAD_ID]) == "the cat"


def test_word_vocab_is_capped_by_frequency():
    tok = WordTokenizer.train(["a a a b b c", "a b d"], vocab_size=6)
    assert tok.vocab_size == 6
    assert [tok.id_to_token(i) for i in range(4, 6)] == ["a", "b"]
    assert tok.encode("c d") == [UNK_ID, UNK_ID]
    assert WordTokenizer.train(["x x y"], min_freq=2).tokenize("x y") == ["x", "<unk>"]


CHAR_TOK = CharTokenizer.train(TEXTS)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(sorted(set(" ".join(TEXTS)))), max_size=40))
def test_char_round_trip_on_seen_characters(chars):
    tok = CHAR_TOK
    text = "".join(chars)
    assert tok.decode(tok.encode(text)) == text


def test_char_unknown_character():
    tok = CharTokenizer.train(["abc"])
    assert tok.encode("abz") == [tok.token_to_id("a"), tok.token_to_id("b"), UNK_ID]


# --- save / load ---------------------------------------------------------------------
@pytest.mark.parametrize("cls", [BPETokenizer, WordTokenizer, CharTokenizer])
def test_save_load_round_trip(tmp_path, cls):
    tok = cls.train(TEXTS, vocab_size=300)
    path = tmp_path / "tok.json"
    tok.save(path)
    again = load_tokenizer(path)
    assert type(again) is cls and again.vocab_size == tok.vocab_size
    assert again.to_dict() == tok.to_dict()
    for text in TEXTS[:6]:
        assert again.encode(text) == tok.encode(text)
    assert cls.load(path).to_dict() == tok.to_dict()
    assert json.loads(path.read_text(encoding="utf-8"))["type"] == cls.kind


@pytest.mark.parametrize("content, message", [
    ("not json at all", "not valid JSON"),
    ("[1, 2, 3]", "expected a JSON object"),
    ('{"vocab": {"a": 1}}', "not an npformer tokenizer"),
    ('{"format": "npformer-tokenizer", "version": 99, "type": "bpe"}', "version 99"),
    ('{"format": "npformer-tokenizer", "version": 1, "type": "sentencepiece"}', "unknown tokenizer type"),
    ('{"format": "npformer-tokenizer", "version": 1, "type": "bpe"}', "missing field 'merges'"),
    ('{"format": "npformer-tokenizer", "version": 1, "type": "bpe", "merges": [[4, 999]]}', "merge 0"),
    ('{"format": "npformer-tokenizer", "version": 1, "type": "word", "pieces": ["a b"]}', "piece 0"),
    ('{"format": "npformer-tokenizer", "version": 1, "type": "char", "pieces": ["a", "a"]}', "twice"),
])
def test_corrupt_or_foreign_files_raise_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TokenizerError, match=message) as info:
        load_tokenizer(path)
    assert str(path) in str(info.value)


def test_loading_the_wrong_class_or_binary_file(tmp_path):
    path = tmp_path / "word.json"
    WordTokenizer.train(TEXTS).save(path)
    with pytest.raises(TokenizerError, match="not 'bpe'"):
        BPETokenizer.load(path)
    binary = tmp_path / "weights.bin"
    binary.write_bytes(b"\x80\x81\xff\x00")
    with pytest.raises(TokenizerError, match="not a UTF-8"):
        load_tokenizer(binary)


# --- source/target pairs ------------------------------------------------------------
def test_make_tokenizers_shared_and_separate():
    src = ["the cat sees the dog ."] * 3
    tgt = ["la gato lo kan vide ."] * 3
    s, t = make_tokenizers(src, tgt, kind="word", shared=False)
    assert s is not t and "gato" in t.pieces and "gato" not in s.pieces
    s, t = make_tokenizers(src, tgt, kind="word", shared=True)
    assert s is t and {"gato", "cat"} <= set(s.pieces)
    s, t = make_tokenizers(src, tgt, kind="bpe", vocab_size=270)
    assert s.vocab_size == t.vocab_size == 270
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        make_tokenizers(src, tgt, kind="sentencepiece")
