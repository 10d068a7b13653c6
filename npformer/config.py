"""Model and training configuration: frozen dataclasses, validated on creation.

Every value that cannot mean anything (a non-positive size, a non-finite rate,
a probability outside [0, 1), a value of the wrong type) is refused here with a
ConfigError naming the field, never deep inside a run. Sizes also have upper
bounds far above anything this CPU project can train, so that a typo or a
corrupt checkpoint cannot ask for terabytes.
"""
import math
from dataclasses import asdict, dataclass, field, fields

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


DATA_KINDS = ("toy", "copy", "reverse")  # built-in translation corpora; else a file path
TOKENIZERS = ("word", "char", "bpe")
SCHEDULES = ("warmup_cosine", "inverse_sqrt", "constant")
TASKS = ("translate", "lm", "classify")  # what a run trains: see npformer/tasks.py
TEXT_MODES = ("lines", "whole")
# Validation scores that may pick best.npz, per task; the first is the default
# (docs/checkpoints.md#which-checkpoint-is-best). Runs saved before the choice existed
# keep the rule they used (train.resume_config): BLEU for a translator.
BEST_BY = {"translate": ("bleu_exact", "valid_loss", "bleu", "exact_match"), "lm": ("valid_loss",),
           "classify": ("accuracy", "valid_loss")}
ALL = TASKS
DEFAULT_TEXT_TOKENS = 300_000  # generated toy text for pretraining, when data_size is 0
DEFAULT_LABELLED = 2000  # labelled examples of a toy classification task, when data_size is 0
# The most generated data a run may ask for, far beyond a CPU run: 16.8M tokens of toy
# text (made in ~20 s, 0.3 GB) and 131k labelled examples (~50 s for the slowest task).
# `eval` remakes a run's corpus from its saved configuration, so a checkpoint cannot ask
# it for unbounded work. (Translation ignores data_size: its corpora have fixed sizes.)
MAX_DATA_SIZE = {"translate": 1 << 24, "lm": 1 << 24, "classify": 1 << 17}


def option(default, help, tasks=ALL):
    """A TrainConfig field with its help text (the CLI's) and the tasks it applies to.

    `help` is one text, or {task: text} where the meaning differs by task.
    """
    return field(default=default, metadata={"help": help, "tasks": tasks})


@dataclass(frozen=True)
class TrainConfig(_DictRoundTrip):
    """Everything a training run needs: `npformer train`, `pretrain` and `finetune`.

    Each field is one CLI flag (--field-name) of the commands whose task it
    applies to; its help text is the `help` below. The defaults train the
    built-in toy translator in about 70 s on an idle 2-core laptop CPU
    (max_minutes, 2.6, bounds it on a busy one).
    Presets (PRESETS below) change a few fields at once.
    """

    task: str = option("translate", "what the run trains: translate, lm or classify "
                                    "(set by the command)")
    # data
    data: str = option("toy", {
        "translate": "training data: toy, copy, reverse, or a .tsv file of source<TAB>target "
                     "lines (or a source .txt file together with --tgt-file)",
        "lm": "training text: toy (English, Velan and 'English = Velan' lines), toy-english, "
              "toy-velan, toy-icl (with few-shot task lines), toy-suffix (a made-up suffix rule "
              "shown by examples; use --tokenizer bpe), or a UTF-8 text file",
        "classify": "labelled data: a toy task (acceptability, plural_subject, sentence_type) "
                    "or a .tsv file of text<TAB>label lines"})
    tgt_file: str = option("", "target side of a line-aligned pair of text files (source file "
                               "in --data)", ("translate",))
    text_mode: str = option("lines", "a text file is one document per line (lines) or one "
                                     "stream (whole)", ("lm",))
    data_size: int = option(0, {
        "lm": f"tokens of generated toy text (0 = {DEFAULT_TEXT_TOKENS}; at most "
              f"{MAX_DATA_SIZE['lm']})",
        "classify": f"labelled training examples of a toy task (0 = {DEFAULT_LABELLED}; at "
                    f"most {MAX_DATA_SIZE['classify']})"},
        ("lm", "classify"))
    valid_frac: float = option(0.02, "fraction of a user corpus held out for validation")
    test_frac: float = option(0.02, "fraction of a user corpus held out for testing")
    data_seed: int = option(0, "seed of the toy corpus and of the user corpus split")
    # tokenizer
    tokenizer: str = option("word", "word, char, or bpe (byte-level BPE: word parts)")
    vocab_size: int = option(0, "vocabulary size per side incl. specials; 0 = every token seen "
                                "(bpe: 8000)")
    shared_vocab: bool = option(False, "one vocabulary (and embedding) for source and target",
                                ("translate",))
    # model (see ModelConfig for what each one means)
    d_model: int = option(64, "width of the model (C)")
    n_heads: int = option(4, "attention heads (d_model must be divisible by it)")
    d_ff: int = option(256, "hidden width of the feed-forward networks (F)")
    n_layers: int = option(2, "layers of each stack (translate: encoder and decoder each)")
    max_len: int = option(32, {
        "translate": "longest sequence in tokens incl. BOS/EOS; longer training pairs are left "
                     "out (with a warning); 0 = from the data: the longest training pair, "
                     "within a memory bound (docs/cli.md)",
        "lm": "longest sequence in tokens incl. BOS/EOS; longer lines are cut into pieces",
        "classify": "longest text in tokens incl. BOS/EOS; longer texts are cut"})
    dropout: float = option(0.1, "dropout probability")
    activation: str = option("relu", "relu or gelu")
    norm_position: str = option("pre", "pre (pre-LN, default) or post (post-LN as in the "
                                       "original paper)")
    positional: str = option("sinusoidal", "sinusoidal or learned position encodings")
    tie_output: bool = option(True, "output projection shares the target embedding matrix",
                              ("translate", "lm"))
    body: str = option("decoder-only", "classifier body when not started from a checkpoint: "
                                       "decoder-only (causal, GPT-style) or encoder-only "
                                       "(bidirectional)", ("classify",))
    pooling: str = option("last", "what the classifier head reads: the last real token (EOS), "
                                  "the first (BOS), the mean, or before_eos (the text's last "
                                  "token: a position a pretrained LM has read)", ("classify",))
    init_from: str = option("", "start from this checkpoint's weights (finetune: a pretrained "
                                "LM's body; train: an LM for the encoder and/or decoder)",
                            ("translate", "classify"))
    init_parts: str = option("encoder,decoder", "with --init-from: which stacks of the "
                                                "translator start from the LM", ("translate",))
    scratch: bool = option(False, "with --init-from: take only the architecture and tokenizer, "
                                  "not the weights (the from-scratch baseline); needs --from",
                           ("classify",))
    freeze_body: bool = option(False, "train the classification head only; needs pretrained "
                                      "weights (--from, not --scratch)", ("classify",))
    body_lr_scale: float = option(1.0, "learning rate of the pretrained body relative to the "
                                       "head's", ("classify",))
    # optimisation
    max_tokens: int = option(2048, "padded tokens per batch")
    lr: float = option(2e-3, "peak learning rate")
    warmup_steps: int = option(150, "learning-rate warm-up steps")
    schedule: str = option("warmup_cosine", "warmup_cosine, inverse_sqrt or constant")
    max_steps: int = option(1000, "optimizer steps")
    max_minutes: float = option(2.6, "wall-clock budget of the training loop in minutes "
                                     "(0 = none)")
    weight_decay: float = option(0.01, "AdamW weight decay (weight matrices only)")
    clip_norm: float = option(1.0, "clip the global gradient norm (0 = off)")
    label_smoothing: float = option(0.1, "label smoothing of the target distribution")
    # evaluation, checkpoints, logging
    eval_every: int = option(250, "steps between validations")
    eval_sentences: int = option(200, "validation sentences translated for BLEU at each "
                                      "validation", ("translate",))
    best_by: str = option("", {
        "translate": "the validation score that picks best.npz (and counts for --patience): "
                     "bleu_exact (the mean of BLEU and exact match, both in percent), bleu, exact_match "
                     "(on the --eval-sentences sample), or valid_loss (lowest loss on the "
                     "whole validation split); empty = bleu_exact",
        "classify": "the validation score that picks best.npz (and counts for --patience): "
                    "accuracy or valid_loss; empty = accuracy"}, ("translate", "classify"))
    patience: int = option(0, "early stop after this many validations without a better score "
                              "(0 = off)")
    out_dir: str = option("runs/toy", "directory for checkpoints (best.npz, last.npz), "
                                      "log.jsonl and curves.png")
    log_every: int = option(50, "steps between progress lines")
    seed: int = option(0, "seed of initialisation, batch order and dropout")
    threads: int = option(1, "BLAS threads (1 is fastest for small models, see "
                             "docs/performance.md)")

    def __post_init__(self):
        def need(cond, field, msg):
            if not cond:
                raise ConfigError(f"{field}={getattr(self, field)!r}: {msg}")

        _check_types(self)
        need(1 <= self.threads <= 1024, "threads", "must be in [1, 1024]")
        need(self.tokenizer in TOKENIZERS, "tokenizer", f"choose one of {TOKENIZERS}")
        need(self.schedule in SCHEDULES, "schedule", f"choose one of {SCHEDULES}")
        need(self.vocab_size == 0 or 8 <= self.vocab_size <= MAX_VOCAB, "vocab_size",
             f"must be 0 or in [8, {MAX_VOCAB}]")
        if self.tokenizer == "bpe":
            need(self.vocab_size == 0 or self.vocab_size >= 260, "vocab_size",
                 "byte-level BPE needs at least 260 (4 specials + 256 bytes)")
        for name in ("valid_frac", "test_frac"):
            need(0.0 <= getattr(self, name) < 0.5, name, "must be in [0, 0.5)")
        for name in ("max_tokens", "max_steps", "eval_every", "eval_sentences", "log_every"):
            need(getattr(self, name) > 0, name, "must be a positive integer")
        need(self.max_tokens <= 1 << 24, "max_tokens", "must be at most 16777216")
        for name in ("warmup_steps", "patience", "seed", "data_seed"):
            need(getattr(self, name) >= 0, name, "must be >= 0")
        need(self.lr > 0, "lr", "must be positive")
        need(self.warmup_steps <= self.max_steps, "warmup_steps",
             f"must not exceed max_steps={self.max_steps}")
        need(self.max_minutes >= 0, "max_minutes", "must be >= 0")
        need(self.clip_norm >= 0, "clip_norm", "must be >= 0")
        need(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        need(0.0 <= self.label_smoothing < 1.0, "label_smoothing", "must be in [0, 1)")
        need(self.max_len == 0 or 4 <= self.max_len <= MAX_LEN, "max_len",
             f"must be 0 (from the data) or in [4, {MAX_LEN}]")
        if self.max_len == 0:
            need(self.task == "translate", "max_len", "0 (from the data) is for translation "
                                                      "only; give a length")
        need(1 <= self.n_layers <= MAX_LAYERS, "n_layers", f"must be in [1, {MAX_LAYERS}]")
        need(bool(self.out_dir), "out_dir", "must not be empty")
        need(self.task in TASKS, "task", f"choose one of {TASKS}")
        need(self.text_mode in TEXT_MODES, "text_mode", f"choose one of {TEXT_MODES}")
        need(self.best_by == "" or self.best_by in BEST_BY[self.task], "best_by",
             f"choose one of {BEST_BY[self.task]} for {self.task}")
        need(self.body in ("decoder-only", "encoder-only"), "body",
             "choose decoder-only or encoder-only")
        need(self.pooling in POOLINGS, "pooling", f"choose one of {POOLINGS}")
        most = MAX_DATA_SIZE.get(self.task, 0)  # (an unknown task is refused below)
        need(0 <= self.data_size <= most, "data_size", f"must be in [0, {most}] for {self.task}")
        need(0.0 < self.body_lr_scale <= 1e3, "body_lr_scale", "must be in (0, 1000]")
        need(not self.scratch or self.init_from, "scratch", "takes the architecture and "
             "tokenizer of the model in init_from (--from), so it needs one")
        need(not self.freeze_body or (self.init_from and not self.scratch), "freeze_body",
             "trains the head alone on a pretrained body; without pretrained weights "
             "(no --from, or --scratch) the body is random and stays random")
        parts = self.init_parts.split(",")
        need(bool(parts) and set(parts) <= {"encoder", "decoder"}, "init_parts",
             "a comma-separated subset of encoder,decoder")
        if self.task == "translate" and self.data not in DATA_KINDS \
                and not self.data.endswith(".tsv"):
            need(bool(self.tgt_file), "data",
                 "a file that is not .tsv needs --tgt-file (two line-aligned text files)")
        self.model_config(10, 10, 2, max_len=self.max_len or 4)  # ModelConfig's checks

    def model_config(self, src_vocab_size, tgt_vocab_size, n_classes=0, max_len=None):
        """The ModelConfig this training run builds, given the vocabulary sizes.

        translate: an encoder-decoder; lm: a decoder-only model over tgt_vocab_size;
        classify: the `body` kind over src_vocab_size with an n_classes head.
        max_len: the length chosen from the data when self.max_len is 0 (lengths.py).
        """
        kind = {"translate": "encoder-decoder", "lm": "decoder-only"}.get(self.task, self.body)
        if self.task == "lm":
            src_vocab_size = tgt_vocab_size
        if kind != "encoder-decoder":  # one vocabulary
            tgt_vocab_size = src_vocab_size = max(src_vocab_size, tgt_vocab_size)
        return ModelConfig(
            src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size,
            d_model=self.d_model, n_heads=self.n_heads, d_ff=self.d_ff,
            n_encoder_layers=self.n_layers if "encoder" in kind else 0,
            n_decoder_layers=self.n_layers if "decoder" in kind else 0,
            max_len=max_len or self.max_len, dropout=self.dropout, activation=self.activation,
            norm_position=self.norm_position, positional=self.positional,
            tie_output=self.tie_output,
            share_embeddings=self.shared_vocab and src_vocab_size == tgt_vocab_size
            and kind == "encoder-decoder",
            seed=self.seed, kind=kind, n_classes=n_classes if self.task == "classify" else 0,
            pooling=self.pooling)


# Presets: named starting points; explicit flags override them. Each belongs to the
# command of its task (COMMAND_PRESETS); the first listed is the command's default.
PRESETS = {
    "toy": {},  # the defaults: built-in toy translator, word tokenizer, ~70 s
    "copy": dict(data="copy", out_dir="runs/copy", max_steps=800, max_minutes=1.0,
                 eval_every=200, warmup_steps=100),
    "reverse": dict(data="reverse", out_dir="runs/reverse", max_steps=1500, max_minutes=1.5,
                    eval_every=300, warmup_steps=100),
    # your own corpus: shared BPE word parts, a 3+3-layer d_model 128 model (a d_model
    # 256 one manages only ~250 steps in 10 CPU minutes), a schedule that needs no
    # total step count, so the time budget decides the length, and max_len from the
    # data (0: npformer/lengths.py), so that no pair is silently left out. The run is
    # short (~900 steps), so a high peak rate reached early pays: on Multi30k lr 4e-3
    # after 200 warm-up steps beats 2e-3 after 400 at equal steps (docs/performance.md)
    "tsv": dict(tokenizer="bpe", vocab_size=4000, shared_vocab=True, d_model=128, n_heads=4,
                d_ff=512, n_layers=3, max_len=0, max_tokens=3072, lr=4e-3,
                schedule="inverse_sqrt", warmup_steps=200, max_steps=100000, max_minutes=10.0,
                eval_every=500, out_dir="runs/tsv"),
}
# A decoder-only LM on generated toy text (English, Velan and "English = Velan" lines),
# sized to reach its perplexity target within 5 CPU minutes (docs/language_models.md)
PRESETS["lm"] = dict(task="lm", data="toy", data_size=300_000, d_model=96, n_heads=4,
                     d_ff=384, n_layers=3, max_len=64, max_tokens=4096, lr=3e-3,
                     warmup_steps=100, max_steps=1000, max_minutes=4.2, eval_every=250,
                     dropout=0.1, label_smoothing=0.0, out_dir="runs/lm")
# Fine-tuning a classifier (by default on the toy acceptability task); with
# --init-from the architecture comes from the pretrained model. The head reads the
# text's last token: a pretrained LM never read EOS as an input (layers/pooling.py)
PRESETS["classify"] = dict(task="classify", data="acceptability", max_len=64,
                           pooling="before_eos", max_tokens=2048, lr=1e-3, warmup_steps=30, max_steps=400,
                           max_minutes=3.0, eval_every=100, label_smoothing=0.0,
                           out_dir="runs/classify")
COMMAND_PRESETS = {"train": ("toy", "copy", "reverse", "tsv"), "pretrain": ("lm",),
                   "finetune": ("classify",)}
COMMAND_TASKS = {"train": "translate", "pretrain": "lm", "finetune": "classify"}

