"""Shared pieces of every tokenizer: special ids, the interface, JSON save/load.

A tokenizer turns text into a list of integer ids and back. Every tokenizer in
npformer reserves the same four ids, so the model and the decoding loop never
need to ask which tokenizer they were given:

    PAD_ID = 0   padding, ignored by the loss
    BOS_ID = 1   "begin of sequence", fed to the decoder first
    EOS_ID = 2   "end of sequence", the decoder's stop signal
    UNK_ID = 3   a word or character the vocabulary does not know

`encode` never adds BOS/EOS; the caller adds them where the model needs them.
`decode` drops PAD/BOS/EOS and shows UNK as "<unk>" so unknown words stay visible.

Saved tokenizers are plain JSON (never pickle): a small envelope
{"format": "npformer-tokenizer", "version": 1, "type": ...} around the fields of
the concrete class. `factory.load_tokenizer(path)` reads the envelope and dispatches on
"type".
"""
import json
from pathlib import Path

from .. import safe_json

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")  # index == id
N_SPECIAL = len(SPECIAL_TOKENS)

FILE_FORMAT = "npformer-tokenizer"
FILE_VERSION = 1


class TokenizerError(ValueError):
    """A tokenizer file or dict that cannot be read (foreign, corrupt, wrong version)."""


class Tokenizer:
    """Interface shared by BPETokenizer, WordTokenizer and CharTokenizer.

    Subclasses set `kind` (the "type" written to JSON) and implement `encode`,
    `decode`, `tokenize`, `id_to_token`, `vocab_size`, `_fields` and `_from_fields`.
    """

    kind = "base"

    def encode(self, text):
        """Text -> list of ids (no BOS/EOS)."""
        raise NotImplementedError

    def decode(self, ids):
        """List of ids -> text (PAD/BOS/EOS skipped)."""
        raise NotImplementedError

    def tokenize(self, text):
        """Text -> list of readable pieces, one per id that `encode` would give."""
        raise NotImplementedError

    def id_to_token(self, token_id):
        """One id -> its readable piece."""
        raise NotImplementedError

    @property
    def vocab_size(self):
        """Number of ids, specials included; valid ids are 0..vocab_size-1."""
        raise NotImplementedError

    # --- serialisation ----------------------------------------------------

    def _fields(self):
        """The class-specific JSON-able fields."""
        raise NotImplementedError

    @classmethod
    def _from_fields(cls, fields):
        """Rebuild from `_fields()` output; raise TokenizerError if malformed."""
        raise NotImplementedError

    def to_dict(self):
        """A JSON-able dict holding everything needed to rebuild this tokenizer."""
        return {"format": FILE_FORMAT, "version": FILE_VERSION, "type": self.kind,
                **self._fields()}

    @classmethod
    def from_dict(cls, d):
        """Rebuild a tokenizer of this class (factory.tokenizer_from_dict: of any class)."""
        _check_envelope(d, where="dict")
        if d["type"] != cls.kind:
            raise TokenizerError(
                f"expected a {cls.kind!r} tokenizer, got type {d['type']!r}")
        return cls._from_fields(d)

    def save(self, path):
        """Write the tokenizer as UTF-8 JSON to `path`."""
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=1)
        Path(path).write_text(text + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path):
        """Read a tokenizer of this class from a JSON file written by `save`."""
        d = read_tokenizer_file(path)
        _check_envelope(d, str(path))
        if d["type"] != cls.kind:
            raise TokenizerError(f"{path}: holds a {d['type']!r} tokenizer, not {cls.kind!r}")
        try:
            return cls._from_fields(d)
        except TokenizerError as e:
            raise TokenizerError(f"{path}: {e}") from None

    def __repr__(self):
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


def _check_envelope(d, where):
    """Raise TokenizerError unless `d` looks like one of our tokenizer dicts."""
    if not isinstance(d, dict):
        raise TokenizerError(f"{where}: expected a JSON object, got {type(d).__name__}")
    if d.get("format") != FILE_FORMAT:
        raise TokenizerError(
            f"{where}: not an npformer tokenizer (missing \"format\": \"{FILE_FORMAT}\")")
    if d.get("version") != FILE_VERSION:
        raise TokenizerError(
            f"{where}: tokenizer file version {d.get('version')!r} is not supported "
            f"(this npformer reads version {FILE_VERSION})")
    if "type" not in d:
        raise TokenizerError(f"{where}: tokenizer has no \"type\" field")


def require(fields, key, kind, where="tokenizer"):
    """fields[key] checked to be of python type `kind`, else TokenizerError."""
    if key not in fields:
        raise TokenizerError(f"{where}: missing field {key!r}")
    value = fields[key]
    wrong_bool = isinstance(value, bool) and kind is not bool  # True is an int in Python
    if not isinstance(value, kind) or wrong_bool:
        raise TokenizerError(
            f"{where}: field {key!r} should be {kind.__name__}, got {type(value).__name__}")
    return value


def read_tokenizer_file(path):
    """The JSON dict in a tokenizer file written by `save`; TokenizerError for other files."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        d = safe_json.loads(raw, safe_json.file_limit(len(raw)), str(path))
    except safe_json.JSONLimitError as e:
        raise TokenizerError(str(e)) from None
    except UnicodeDecodeError as e:
        raise TokenizerError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise TokenizerError(
            f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
            "is this a tokenizer file?") from None
    except RecursionError:
        raise TokenizerError(f"{path}: JSON nested too deeply; is this a tokenizer file?") from None
    return d
