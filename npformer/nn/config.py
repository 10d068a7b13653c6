"""Model configuration: a frozen dataclass, validated on creation.

Every value that cannot mean anything (a non-positive size, a non-finite rate,
a probability outside [0, 1), a value of the wrong type) is refused here with a
ConfigError naming the field, never deep inside a run. Sizes also have upper
bounds far above anything this CPU project can train, so that a typo or a
corrupt checkpoint cannot ask for terabytes.
"""
import math
from dataclasses import asdict, dataclass, fields

ACTIVATIONS = ("relu", "gelu")
NORM_POSITIONS = ("pre", "post")
POSITIONALS = ("sinusoidal", "learned")
DTYPES = ("float32", "float64")
KINDS = ("encoder-decoder", "decoder-only", "encoder-only")
POOLINGS = ("mean", "first", "last", "before_eos")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


# Upper bounds on sizes (each far beyond a CPU run; see the module docstring).
MAX_VOCAB = 1 << 22
MAX_WIDTH = 1 << 14  # d_model, d_ff
MAX_LAYERS = 256
MAX_LEN = 1 << 15


def _check_types(config):
    """Each field must hold its declared type: no bool or str for an int, no NaN or inf."""
    names = {"int": int, "float": float, "str": str, "bool": bool}
    for f in fields(config):
        value = getattr(config, f.name)
        kind = names[f.type] if isinstance(f.type, str) else f.type
        if kind is float:  # an int is a fine float (JSON writes 1.0 as 1.0, users write 1)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok and not math.isfinite(value):
                raise ConfigError(f"{f.name}={value!r}: must be a finite number")
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            raise ConfigError(f"{f.name}={value!r}: must be of type {kind.__name__}")


class _DictRoundTrip:
    """to_dict / from_dict / replace for the frozen config dataclasses."""

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        """Build from a dict (e.g. loaded JSON); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} field(s): {sorted(unknown)}")
        try:
            return cls(**d)
        except TypeError as err:  # e.g. a number compared with a string
            raise ConfigError(f"{cls.__name__}: {err}") from None

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        return type(self).from_dict({**self.to_dict(), **changes})


@dataclass(frozen=True)
class ModelConfig(_DictRoundTrip):
    """Hyper-parameters of an encoder-decoder transformer.

    The defaults make the tiny model used by the toy translator.
    """

    src_vocab_size: int = 1000  # V_src: number of source token ids
    tgt_vocab_size: int = 1000  # V_tgt: number of target token ids
    d_model: int = 64  # C: width of every residual stream vector
    n_heads: int = 4  # H: attention heads; head size D = d_model // n_heads
    d_ff: int = 256  # F: hidden width of the position-wise feed-forward net
    n_encoder_layers: int = 2  # encoder blocks
    n_decoder_layers: int = 2  # decoder blocks
    max_len: int = 64  # longest source or target sequence (positions 0..max_len-1)
    dropout: float = 0.1  # dropout on embeddings and on every residual branch
    activation: str = "relu"  # feed-forward non-linearity: "relu" or "gelu"
    norm_position: str = "pre"  # "pre": x + f(LN(x)) (default); "post": LN(x + f(x))
    positional: str = "sinusoidal"  # "sinusoidal" (fixed) or "learned" positions
    tie_output: bool = True  # output projection reuses the target embedding matrix
    share_embeddings: bool = False  # source and target use one embedding (same vocab)
    pad_id: int = 0  # padding token id in both vocabularies
    ln_eps: float = 1e-5  # layer-norm epsilon
    dtype: str = "float32"  # "float32" for training, "float64" for gradient checks
    seed: int = 0  # seed of the parameter initialisation
    kind: str = "encoder-decoder"  # or "decoder-only" (GPT-style LM), "encoder-only" (BERT-style)
    n_classes: int = 0  # > 0: a classification head on the pooled body (not encoder-decoder)
    pooling: str = "last"  # what the head reads: "last" real token, "first" (BOS), "mean", or
    # "before_eos": the token before the last (the text's own last token; layers/pooling.py)

    def __post_init__(self):
        def need(cond, field, msg):
            if not cond:
                raise ConfigError(f"{field}={getattr(self, field)!r}: {msg}")

        _check_types(self)
        for name, most in (("src_vocab_size", MAX_VOCAB), ("tgt_vocab_size", MAX_VOCAB),
                           ("d_model", MAX_WIDTH), ("n_heads", MAX_WIDTH), ("d_ff", MAX_WIDTH),
                           ("max_len", MAX_LEN)):
            need(1 <= getattr(self, name) <= most, name, f"must be an integer in [1, {most}]")
        need(self.kind in KINDS, "kind", f"choose one of {KINDS}")
        for name, stack in (("n_encoder_layers", "encoder"), ("n_decoder_layers", "decoder")):
            low = 1 if stack in self.kind else 0
            need(low <= getattr(self, name) <= (MAX_LAYERS if low else 0), name,
                 f"must be in [1, {MAX_LAYERS}]" if low else f"must be 0: a {self.kind} model "
                                                            f"has no {stack}")
        need(0 <= self.n_classes <= MAX_VOCAB and self.n_classes != 1, "n_classes",
             "must be 0 (no head) or at least 2")
        if self.kind == "encoder-decoder":
            need(self.n_classes == 0, "n_classes", "an encoder-decoder model has no "
                                                   "classification head")
        if self.kind == "encoder-only":
            need(self.n_classes >= 2, "n_classes", "an encoder-only model is a classifier: "
                                                   "it needs n_classes >= 2")
        need(self.pooling in POOLINGS, "pooling", f"choose one of {POOLINGS}")
        need(self.d_model % self.n_heads == 0, "d_model",
             f"must be divisible by n_heads={self.n_heads} (head size = d_model / n_heads)")
        need(0.0 <= self.dropout < 1.0, "dropout", "must be in [0, 1)")
        need(self.activation in ACTIVATIONS, "activation", f"choose one of {ACTIVATIONS}")
        need(self.norm_position in NORM_POSITIONS, "norm_position", f"choose one of {NORM_POSITIONS}")
        need(self.positional in POSITIONALS, "positional", f"choose one of {POSITIONALS}")
        need(self.dtype in DTYPES, "dtype", f"choose one of {DTYPES}")
        need(0 <= self.pad_id < min(self.src_vocab_size, self.tgt_vocab_size), "pad_id",
             "must be a valid id in both vocabularies")
        need(self.ln_eps > 0, "ln_eps", "must be positive")
        need(self.seed >= 0, "seed", "must be >= 0")
        if self.share_embeddings:
            need(self.src_vocab_size == self.tgt_vocab_size, "share_embeddings",
                 f"needs src_vocab_size == tgt_vocab_size (got {self.src_vocab_size} and "
                 f"{self.tgt_vocab_size})")

    @property
    def head_dim(self):
        """D = d_model / n_heads."""
        return self.d_model // self.n_heads
