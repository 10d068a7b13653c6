"""Tokenizers: text <-> integer ids (byte-level BPE, word-level, char-level).

All share PAD_ID=0, BOS_ID=1, EOS_ID=2, UNK_ID=3 and save to JSON.
"""
from .base import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID, Tokenizer, TokenizerError
from .bpe import BPETokenizer
from .factory import load_tokenizer, make_tokenizers, tokenizer_from_dict
from .simple import CharTokenizer, WordTokenizer

__all__ = [
    "PAD_ID", "BOS_ID", "EOS_ID", "UNK_ID", "SPECIAL_TOKENS",
    "Tokenizer", "TokenizerError", "BPETokenizer", "WordTokenizer", "CharTokenizer",
    "load_tokenizer", "tokenizer_from_dict", "make_tokenizers",
]
