"""Word-level and character-level tokenizers: a fixed list of pieces plus UNK.

WordTokenizer splits on whitespace; CharTokenizer uses single characters.
Both keep the most frequent pieces seen in training (ties broken
alphabetically, so training is deterministic) and map anything else to UNK_ID.
Round trip: decode(encode(text)) == text for text made only of known pieces;
for words, only up to whitespace (runs of spaces, tabs and newlines become one
space).
"""
from collections import Counter

from .base import (BOS_ID, EOS_ID, N_SPECIAL, PAD_ID, SPECIAL_TOKENS, UNK_ID,
                   Tokenizer, TokenizerError, require)

_SKIPPED_IDS = (PAD_ID, BOS_ID, EOS_ID)


class _PieceTokenizer(Tokenizer):
    """A vocabulary of string pieces; subclasses say how text splits into pieces."""

    joiner = ""  # string placed between pieces by decode

    def __init__(self, pieces):
        self.pieces = list(SPECIAL_TOKENS) + list(pieces)
        self._ids = {}
        for i, piece in enumerate(self.pieces):
            if piece in self._ids:
                raise TokenizerError(f"piece {piece!r} appears twice in the vocabulary")
            self._ids[piece] = i

    @staticmethod
    def split(text):
        """Text -> list of pieces (before the vocabulary lookup)."""
        raise NotImplementedError

    @staticmethod
    def valid_piece(piece):
        """Could `split` ever produce this piece?"""
        raise NotImplementedError

    @classmethod
    def train(cls, texts, vocab_size=None, min_freq=1):
        """Keep the most frequent pieces.

        At most `vocab_size` ids (specials included) and only pieces seen at least
        `min_freq` times. vocab_size=None: no cap.
        """
        if vocab_size is not None and vocab_size <= N_SPECIAL:
            raise ValueError(f"vocab_size must exceed the {N_SPECIAL} special tokens, got {vocab_size}")
        counts = Counter()
        for text in texts:
            counts.update(cls.split(text))
        for special in SPECIAL_TOKENS:
            counts.pop(special, None)  # a literal "<unk>" in text stays UNK
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        pieces = [piece for piece, count in ranked if count >= min_freq]
        if vocab_size is not None:
            pieces = pieces[:vocab_size - N_SPECIAL]
        return cls(pieces)

    @property
    def vocab_size(self):
        return len(self.pieces)

    def token_to_id(self, piece):
        """Id of one piece, UNK_ID if unknown."""
        return self._ids.get(piece, UNK_ID)

    def id_to_token(self, token_id):
        return self.pieces[token_id]

    def encode(self, text):
        return [self._ids.get(piece, UNK_ID) for piece in self.split(text)]

    def decode(self, ids):
        pieces = []
        for i in ids:
            i = int(i)
            if i < 0 or i >= self.vocab_size:
                raise ValueError(f"id {i} is outside the vocabulary (size {self.vocab_size})")
            if i not in _SKIPPED_IDS:
                pieces.append(self.pieces[i])
        return self.joiner.join(pieces)

    def tokenize(self, text):
        """Text -> pieces as the model sees them (unknown ones become "<unk>")."""
        return [self.pieces[i] for i in self.encode(text)]

    def _fields(self):
        return {"pieces": self.pieces[N_SPECIAL:]}

    @classmethod
    def _from_fields(cls, fields):
        pieces = require(fields, "pieces", list)
        for k, piece in enumerate(pieces):
            if not isinstance(piece, str) or piece in SPECIAL_TOKENS or not cls.valid_piece(piece):
                raise TokenizerError(f"piece {k} is {piece!r}, which is not a valid {cls.kind} piece")
        return cls(pieces)


class WordTokenizer(_PieceTokenizer):
    """Whitespace-separated words; unknown words become UNK."""

    kind = "word"
    joiner = " "

    @staticmethod
    def split(text):
        return text.split()

    @staticmethod
    def valid_piece(piece):
        return len(piece.split()) == 1 and piece.split()[0] == piece


class CharTokenizer(_PieceTokenizer):
    """Single characters (spaces included); unseen characters become UNK."""

    kind = "char"
    joiner = ""

    @staticmethod
    def split(text):
        return list(text)

    @staticmethod
    def valid_piece(piece):
        return len(piece) == 1
