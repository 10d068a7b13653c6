"""Make, rebuild and load a tokenizer of any kind, chosen by name.

The kinds (bpe.py, simple.py) are built on base.py; this file sits above them all,
so that no tokenizer module imports another in a circle.
"""
from .base import TokenizerError, _check_envelope, read_tokenizer_file
from .bpe import DEFAULT_VOCAB_SIZE, BPETokenizer
from .simple import CharTokenizer, WordTokenizer


def _tokenizer_classes():
    """Map "type" -> class."""
    return {c.kind: c for c in (BPETokenizer, WordTokenizer, CharTokenizer)}


def tokenizer_from_dict(d, where="dict"):
    """Rebuild any tokenizer from `to_dict()` output, dispatching on d["type"]."""
    _check_envelope(d, where)
    classes = _tokenizer_classes()
    if d["type"] not in classes:
        raise TokenizerError(
            f"{where}: unknown tokenizer type {d['type']!r} "
            f"(known: {', '.join(sorted(classes))})")
    try:
        return classes[d["type"]]._from_fields(d)
    except TokenizerError as e:
        raise TokenizerError(f"{where}: {e}") from None


def load_tokenizer(path):
    """Read any tokenizer saved with `.save(path)`; clear error for other files."""
    return tokenizer_from_dict(read_tokenizer_file(path), where=str(path))


def make_tokenizers(src_texts, tgt_texts, kind="bpe", vocab_size=None, shared=False):
    """Train a (source, target) tokenizer pair; `shared=True` trains one on both sides.

    kind: "bpe" (vocab_size None = bpe.DEFAULT_VOCAB_SIZE), "word" or "char" (vocab_size
    None = keep every token seen). With shared=True the same object is returned
    twice, so source and target ids mean the same thing.
    """
    classes = _tokenizer_classes()
    if kind not in classes:
        raise ValueError(f"unknown tokenizer kind {kind!r}; choose from {sorted(classes)}")
    cls = classes[kind]
    if kind == "bpe" and vocab_size is None:
        vocab_size = DEFAULT_VOCAB_SIZE
    src_texts, tgt_texts = list(src_texts), list(tgt_texts)
    if shared:
        tok = cls.train(src_texts + tgt_texts, vocab_size=vocab_size)
        return tok, tok
    return (cls.train(src_texts, vocab_size=vocab_size),
            cls.train(tgt_texts, vocab_size=vocab_size))
