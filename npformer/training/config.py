"""Training configuration: a frozen dataclass, validated on creation.

The checks follow nn/config.py: every value that cannot mean anything is refused
with a ConfigError naming the field, never deep inside a run.
"""
from dataclasses import dataclass, field

from . import optim
from ..data import CORPORA

from ..tokenizers.bpe import DEFAULT_VOCAB_SIZE as BPE_DEFAULT_VOCAB

from ..nn.config import MAX_LAYERS, MAX_LEN, MAX_VOCAB, POOLINGS, ConfigError, ModelConfig, \
    _check_types, _DictRoundTrip

DATA_KINDS = tuple(CORPORA)  # built-in translation corpora; else a file path
TOKENIZERS = ("word", "char", "bpe")
SCHEDULES = tuple(optim.SCHEDULES)  # the learning-rate schedules, by name
TASKS = ("translate", "lm", "classify")  # what a run trains: see npformer/tasks/__init__.py
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
    Presets (each task's `presets`, npformer/tasks/) change a few fields at once.
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
                                f"(bpe: {BPE_DEFAULT_VOCAB})")
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
