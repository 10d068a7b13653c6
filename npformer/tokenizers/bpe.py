"""Byte-level BPE (byte-pair encoding), trained from scratch, GPT-2 style.

Text -> UTF-8 bytes -> ids. Ids 0..3 are the specials (see base.py), ids
4..259 are the 256 single bytes, and merge number k joins two existing ids
(a, b) into the new id 260 + k. Every byte has an id, so any Unicode text
encodes without UNK and decode(encode(text)) == text.

Training (Sennrich et al. 2016; byte-level variant of Radford et al. 2019):
1. Pre-split each text into chunks with PRETOKENIZE_RE:
   "Two young, White males." -> ["Two", " young", ",", " White", " males", "."];
   an underscore_joined identifier is one chunk: "I_TURN_LEFT I_WALK" ->
   ["I_TURN_LEFT", " I_WALK"]. (Tokenizers saved before that rule keep
   GPT-2's, which splits at every underscore: `identifiers` is False.)
   Merges never cross a chunk boundary, and a word keeps its leading space,
   so " the" (inside a sentence) and "The" (at the start) are different tokens.
2. Count each distinct chunk once: ~1.5M words are only ~30k distinct chunks.
3. Repeat until the vocabulary is full: find the adjacent id pair with the
   largest count (summed over chunks, weighted by chunk frequency), give it a
   new id, and rewrite every chunk that contains it.

Step 3 is fast because we never recount from scratch: we keep `pair_counts`
and an index `where[pair] -> chunks containing it`, and after a merge we only
revisit those chunks, subtracting their old pairs and adding their new ones. A
heap yields the most frequent pair; heap entries whose count is out of date
are skipped when popped ("lazy deletion").

Encoding a chunk replays the merges: repeatedly merge the adjacent pair that
was learned earliest, until no learned pair is left.
"""
import re
from collections import Counter, defaultdict
from heapq import heapify, heappop, heappush

from .base import (N_SPECIAL, SPECIAL_TOKENS, UNK_ID, Tokenizer, TokenizerError,
                   require)

BYTE_OFFSET = N_SPECIAL  # byte value b has id b + BYTE_OFFSET
N_BASE = N_SPECIAL + 256  # specials + bytes; the first merge gets this id

# GPT-2's pre-tokenizer, written for the stdlib `re` (no \p{L}): an optional
# space followed by letters, or by digits, or by other symbols; then runs of
# whitespace. [^\W\d_] means "a letter". The alternatives cover every
# character, so joining the chunks gives back the text exactly.
GPT2_PRETOKENIZE_RE = re.compile(r" ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+")
# The same with one alternative in front: an identifier, i.e. a letter, then letters
# or digits, joined to more of them by underscores ("I_TURN_LEFT", "snake_case2",
# "max_len"), is one chunk, so BPE can learn it as one token. GPT-2's rule would cut
# "I_TURN_LEFT" into "I", "_", "TURN", "_", "LEFT": five tokens for one symbol
# (benchmarks/user_corpus.py). The alternative needs an underscore between two
# letters or digits, so text without one is split exactly as by GPT-2's rule.
PRETOKENIZE_RE = re.compile(r" ?[^\W\d_][^\W_]*(?:_+[^\W_]+)+"
                            r"| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+")

_CACHE_LIMIT = 200_000  # max chunks remembered by encode (a pure speed-up)


def merge_pair(ids, pair, new_id):
    """Replace every non-overlapping occurrence of `pair`, left to right, by `new_id`."""
    a, b = pair
    out = []
    i, n = 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_in_word(word, pair, new_id, freq, delta):
    """merge_pair for training, which also records how the pair counts change.

    Returns (new word, its pairs that contain new_id). Only pairs next to a
    merge change: for "x a b y" -> "x C y", the pairs (x,a), (a,b), (b,y) lose
    `freq` in `delta` and (x,C), (C,y) gain it. Runs need care: in
    "a b a b" -> "C C" the pair (b,a) is lost once and (C,C) gained once.
    """
    a, b = pair
    n = len(word)
    out = []
    merged_at = []  # positions in `out` that hold new_id
    i = 0
    last_end = -1  # position in `word` just after the previous merge
    while i < n - 1:
        try:
            j = word.index(a, i, n - 1)  # next `a` that has a right neighbour
        except ValueError:
            break
        if word[j + 1] != b:
            out.extend(word[i:j + 1])
            i = j + 1
            continue
        out.extend(word[i:j])
        delta[pair] -= freq
        if j > 0 and j != last_end:  # (b, a) between two merges is counted on the right
            delta[(word[j - 1], a)] -= freq
        if j + 2 < n:
            delta[(b, word[j + 2])] -= freq
        merged_at.append(len(out))
        out.append(new_id)
        i = last_end = j + 2
    out.extend(word[i:])

    new_pairs = []
    for k in merged_at:
        if k > 0:
            new_pairs.append((out[k - 1], new_id))
        if k + 1 < len(out) and out[k + 1] != new_id:
            new_pairs.append((new_id, out[k + 1]))
    for p in new_pairs:
        delta[p] += freq
    return out, new_pairs


def learn_merges(words, freqs, n_merges):
    """The BPE training loop: up to `n_merges` (a, b) pairs, most frequent first.

    words: list of id lists (one per distinct chunk), rewritten in place.
    freqs: how often each chunk occurs in the corpus.
    Ties in count are broken by the smaller pair, so training is deterministic.
    """
    pair_counts = defaultdict(int)  # (a, b) -> weighted number of occurrences
    where = defaultdict(set)  # (a, b) -> indices of words that contain (or contained) it
    for i, w in enumerate(words):
        for pair in zip(w, w[1:]):
            pair_counts[pair] += freqs[i]
            where[pair].add(i)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapify(heap)

    merges = []
    while len(merges) < n_merges and heap:
        neg_count, pair = heappop(heap)
        if pair_counts.get(pair, 0) != -neg_count:
            continue  # stale entry: this pair's count changed after it was pushed
        new_id = N_BASE + len(merges)
        merges.append(pair)
        delta = defaultdict(int)  # pair -> change of its count in this step
        for i in where.pop(pair):
            words[i], new_pairs = merge_in_word(words[i], pair, new_id, freqs[i], delta)
            for p in new_pairs:  # the word's other pairs are already indexed
                where[p].add(i)
        for p, d in delta.items():
            if d == 0:
                continue
            count = pair_counts[p] + d
            if count > 0:
                pair_counts[p] = count
                heappush(heap, (-count, p))
            else:
                del pair_counts[p]
                where.pop(p, None)
    return merges


class BPETokenizer(Tokenizer):
    """Byte-level BPE: `merges[k] = (a, b)` means ids a and b join into id 260 + k.

    identifiers: pre-split with PRETOKENIZE_RE (True) or, as tokenizers saved before
    identifiers were kept whole, with GPT2_PRETOKENIZE_RE (False).
    """

    kind = "bpe"

    def __init__(self, merges, identifiers=True):
        self.merges = [tuple(m) for m in merges]
        self.identifiers = bool(identifiers)
        self._pretokenize = (PRETOKENIZE_RE if identifiers else GPT2_PRETOKENIZE_RE).findall
        self._ranks = {pair: N_BASE + k for k, pair in enumerate(self.merges)}
        self._token_bytes = [s.encode() for s in SPECIAL_TOKENS]
        self._token_bytes += [bytes([b]) for b in range(256)]
        for a, b in self.merges:
            self._token_bytes.append(self._token_bytes[a] + self._token_bytes[b])
        self._cache = {}  # chunk -> ids; only avoids re-encoding repeated words

    @classmethod
    def train(cls, texts, vocab_size=8000, identifiers=True):
        """Learn `vocab_size - 260` merges from an iterable of strings.

        Stops early (smaller vocabulary) if no pair occurs at all any more.
        """
        if vocab_size < N_BASE:
            raise ValueError(
                f"BPE vocab_size must be at least {N_BASE} (4 specials + 256 bytes), got {vocab_size}")
        pretokenize = PRETOKENIZE_RE if identifiers else GPT2_PRETOKENIZE_RE
        chunk_counts = Counter()
        for text in texts:
            chunk_counts.update(pretokenize.findall(text))
        words = [[b + BYTE_OFFSET for b in chunk.encode("utf-8")] for chunk in chunk_counts]
        freqs = list(chunk_counts.values())
        return cls(learn_merges(words, freqs, vocab_size - N_BASE), identifiers)

    @property
    def vocab_size(self):
        return len(self._token_bytes)

    def _encode_chunk(self, chunk):
        """One pre-tokenized chunk -> ids, applying the earliest-learned merge first."""
        ids = [b + BYTE_OFFSET for b in chunk.encode("utf-8")]
        while len(ids) >= 2:
            pairs = [p for p in zip(ids, ids[1:]) if p in self._ranks]
            if not pairs:
                break
            best = min(pairs, key=self._ranks.__getitem__)
            ids = merge_pair(ids, best, self._ranks[best])
        return ids

    def pretokenize(self, text):
        """Text -> the chunks BPE merges within, e.g. "the cats" -> ["the", " cats"]."""
        return self._pretokenize(text)

    def encode(self, text):
        ids = []
        for chunk in self._pretokenize(text):
            chunk_ids = self._cache.get(chunk)
            if chunk_ids is None:
                chunk_ids = self._encode_chunk(chunk)
                if len(self._cache) >= _CACHE_LIMIT:
                    self._cache.clear()
                self._cache[chunk] = chunk_ids
            ids.extend(chunk_ids)
        return ids

    def decode(self, ids):
        """Ids -> text. Invalid UTF-8 (possible in model output) becomes U+FFFD."""
        parts = []
        for i in ids:
            i = int(i)
            if i < 0 or i >= self.vocab_size:
                raise ValueError(f"id {i} is outside the vocabulary (size {self.vocab_size})")
            if i < N_SPECIAL and i != UNK_ID:
                continue  # PAD, BOS, EOS
            parts.append(self._token_bytes[i])
        return b"".join(parts).decode("utf-8", errors="replace")

    def id_to_token(self, token_id):
        """Readable piece for one id; a byte that is only part of a character shows as \\xNN."""
        return self._token_bytes[token_id].decode("utf-8", errors="backslashreplace")

    def tokenize(self, text):
        """Text -> readable pieces, e.g. "the cats" -> ["the", " cat", "s"]."""
        return [self.id_to_token(i) for i in self.encode(text)]

    def merge_table(self, limit=None):
        """The first `limit` merges as readable (left, right, merged) strings, in order."""
        rows = []
        for k, (a, b) in enumerate(self.merges[:limit]):
            rows.append((self.id_to_token(a), self.id_to_token(b), self.id_to_token(N_BASE + k)))
        return rows

    def _fields(self):
        return {"merges": [list(m) for m in self.merges], "identifiers": self.identifiers}

    @classmethod
    def _from_fields(cls, fields):
        merges = require(fields, "merges", list)
        for k, m in enumerate(merges):
            ok = (isinstance(m, list) and len(m) == 2
                  and all(isinstance(x, int) and not isinstance(x, bool) for x in m)
                  and all(N_SPECIAL <= x < N_BASE + k for x in m))
            if not ok:
                raise TokenizerError(
                    f"merge {k} is {m!r}; expected two ids that exist before it "
                    f"(between {N_SPECIAL} and {N_BASE + k - 1})")
        identifiers = fields.get("identifiers", False)  # absent: saved before the rule
        if not isinstance(identifiers, bool):
            raise TokenizerError(f"identifiers is {identifiers!r}; expected true or false")
        return cls(merges, identifiers)
