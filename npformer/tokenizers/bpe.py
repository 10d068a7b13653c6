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
was learned earliest, until no learned pair is left. Rescanning the chunk for
that pair after every merge would cost (chunk length x merges), about 18 minutes
for a 1 MB line without spaces; `apply_merges` keeps the candidate pairs in a heap
instead, so a chunk of n bytes costs O(n log n) (benchmarks/bpe_speed.py).

A token's bytes are built when first needed (`token_bytes`), not when a
tokenizer is loaded: a merge may join a token to itself, so 40 merges can name a
token of 2**40 bytes. Loading only adds up the lengths (integers) and refuses a
token longer than MAX_TOKEN_BYTES; training never makes one.
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
MAX_TOKEN_BYTES = 1 << 16  # longest token a tokenizer may hold (far beyond any word)


def utf8_bytes(text):
    """Text -> the UTF-8 bytes BPE works on, whatever the text holds.

    Undecodable input bytes arrive as lone surrogates U+DC80..U+DCFF (Python's
    "surrogateescape", used for command-line arguments, file names and npformer's
    standard input): they give back the original bytes. Any other lone surrogate
    (possible in JSON) is written as its three-byte form ("surrogatepass").
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


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


def apply_merges(ids, ranks, pair_of):
    """Replay learned merges on one chunk, in about O(n log n) for n ids.

    The result is that of repeating `merge_pair` on the adjacent pair learned
    earliest (ranks[pair] = its new id, smaller = earlier; pair_of[rank] = its pair)
    until no learned pair is left.

    The chunk is a linked list (prev/next positions); `todo[rank]` lists the positions
    where the pair of that rank may start, and a heap holds the ranks still to visit.
    Each rank is visited once, earliest first, its positions left to right: the order
    in which merge_pair replaces them. A pair that a merge makes always has a later
    rank than the merge itself (its merge uses the new id), so nothing is ever added
    to a rank already visited. A position made stale by a neighbouring merge is
    skipped when its turn comes.
    """
    n = len(ids)
    tok = list(ids)  # tok[i]: the id now starting at position i; None once merged away
    # (a merged-away position keeps its old nxt; its tok None never matches a pair)
    nxt = list(range(1, n + 1))  # next live position (n: none)
    prv = list(range(-1, n - 1))  # previous live position (-1: none)
    todo = defaultdict(list)  # rank -> positions where that pair may start
    for i, pair in enumerate(zip(ids, ids[1:])):
        rank = ranks.get(pair)
        if rank is not None:
            todo[rank].append(i)
    order = list(todo)  # the ranks to visit, as a heap
    heapify(order)
    while order:
        rank = heappop(order)
        a, b = pair_of[rank]
        for i in sorted(todo.pop(rank)):
            j = nxt[i]
            if j >= n or tok[i] != a or tok[j] != b:
                continue  # stale: position i or its neighbour was merged since
            tok[i], tok[j] = rank, None  # (a, b) at i, j -> the new id at i
            k = nxt[i] = nxt[j]
            if k < n:
                prv[k] = i
            for left, right in ((prv[i], i), (i, k)):  # the two pairs the merge made
                if left >= 0 and right < n:
                    new = ranks.get((tok[left], tok[right]))
                    if new is not None:
                        if new not in todo:
                            heappush(order, new)
                        todo[new].append(left)
    return [t for t in tok if t is not None]


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
    A pair whose token would be longer than MAX_TOKEN_BYTES is never merged.
    """
    length = [1] * N_BASE  # bytes of each id (the specials never occur in words)
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
        if length[pair[0]] + length[pair[1]] > MAX_TOKEN_BYTES:
            del pair_counts[pair]  # a token no loader would accept (a very long word)
            continue
        new_id = N_BASE + len(merges)
        length.append(length[pair[0]] + length[pair[1]])
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


DEFAULT_VOCAB_SIZE = 8000  # ids incl. the 4 specials and 256 bytes, when none is asked for

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
        self._pair_of = {rank: pair for pair, rank in self._ranks.items()}
        length = [1] * N_BASE  # bytes of each id: integers only, no bytes built here
        for k, (a, b) in enumerate(self.merges):
            length.append(length[a] + length[b])
            if length[-1] > MAX_TOKEN_BYTES:
                raise TokenizerError(f"merge {k} makes a token of {length[-1]:,} bytes, more "
                                     f"than the {MAX_TOKEN_BYTES:,} a token may have")
        # {id: bytes} of the specials and single bytes; other tokens are added when first used
        self._bytes = {i: s.encode() for i, s in enumerate(SPECIAL_TOKENS)}
        self._bytes.update({b + BYTE_OFFSET: bytes([b]) for b in range(256)})
        self._cache = {}  # chunk -> ids; only avoids re-encoding repeated words

    @classmethod
    def train(cls, texts, vocab_size=DEFAULT_VOCAB_SIZE, identifiers=True):
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
        words = [[b + BYTE_OFFSET for b in utf8_bytes(chunk)] for chunk in chunk_counts]
        freqs = list(chunk_counts.values())
        return cls(learn_merges(words, freqs, vocab_size - N_BASE), identifiers)

    @property
    def vocab_size(self):
        return N_BASE + len(self.merges)

    def token_bytes(self, token_id):
        """The bytes of one id, built on first use: a merge's bytes are its parts' bytes."""
        known = self._bytes
        todo = [token_id]  # ids still to build, innermost last (no recursion: chains are deep)
        while todo:
            i = todo[-1]
            if i in known:
                todo.pop()
                continue
            a, b = self.merges[i - N_BASE]
            missing = [part for part in (a, b) if part not in known]
            if missing:
                todo.extend(missing)
            else:
                known[i] = known[a] + known[b]
                todo.pop()
        return known[token_id]

    def _encode_chunk(self, chunk):
        """One pre-tokenized chunk -> ids, applying the earliest-learned merge first."""
        return apply_merges([b + BYTE_OFFSET for b in utf8_bytes(chunk)], self._ranks,
                            self._pair_of)

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
            parts.append(self.token_bytes(i))
        return b"".join(parts).decode("utf-8", errors="replace")

    def id_to_token(self, token_id):
        """Readable piece for one id; a byte that is only part of a character shows as \\xNN."""
        return self.token_bytes(token_id).decode("utf-8", errors="backslashreplace")

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
