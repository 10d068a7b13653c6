"""Model configuration: one frozen dataclass, validated on creation."""
from dataclasses import asdict, dataclass, fields

ACTIVATIONS = ("relu", "gelu")
NORM_POSITIONS = ("pre", "post")
POSITIONALS = ("sinusoidal", "learned")
DTYPES = ("float32", "float64")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


@dataclass(frozen=True)
class ModelConfig:
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

    def __post_init__(self):
        def need(cond, field, msg):
            if not cond:
                raise ConfigError(f"{field}={getattr(self, field)!r}: {msg}")

        for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "n_heads", "d_ff", "max_len"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) > 0, name,
                 "must be a positive integer")
        for name in ("n_encoder_layers", "n_decoder_layers"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 1, name,
                 "must be an integer >= 1")
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
        if self.share_embeddings:
            need(self.src_vocab_size == self.tgt_vocab_size, "share_embeddings",
                 f"needs src_vocab_size == tgt_vocab_size (got {self.src_vocab_size} and "
                 f"{self.tgt_vocab_size})")

    @property
    def head_dim(self):
        """D = d_model / n_heads."""
        return self.d_model // self.n_heads

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        """Build from a dict (e.g. loaded JSON); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown config field(s): {sorted(unknown)}")
        return cls(**d)

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        return type(self).from_dict({**self.to_dict(), **changes})
