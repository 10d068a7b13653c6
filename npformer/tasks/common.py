"""What the tasks share: the ModelBundle they build, starting from a pretrained LM, data splits, scores.

The tasks themselves are one file each (translate.py, lm.py, classify.py); the
registry that the loop and the CLI read is in __init__.py.
"""
from ..data import split_pairs
from ..nn.config import ConfigError, ModelConfig
from ..models.pretrained import load_pretrained
from ..training.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_meta
from ..training.config import BEST_BY


def pretrained_checkpoint(cfg):
    """The language model named by cfg.init_from (a Checkpoint)."""
    try:
        ckpt = load_checkpoint(cfg.init_from)
    except CheckpointError as err:
        raise ConfigError(f"init_from={cfg.init_from!r}: {err}") from None
    if ckpt.model.config.kind != "decoder-only" or ckpt.model.config.n_classes:
        raise ConfigError(f"init_from={cfg.init_from!r}: not a pretrained language model "
                          f"(it is a {ckpt.model.config.kind} model"
                          f"{' classifier' if ckpt.model.config.n_classes else ''}); "
                          "make one with: npformer pretrain")
    return ckpt


def architecture_of(model_cfg):
    """The TrainConfig fields that say how a model is shaped, read from its ModelConfig."""
    return {"d_model": model_cfg.d_model, "n_heads": model_cfg.n_heads, "d_ff": model_cfg.d_ff,
            "n_layers": max(model_cfg.n_encoder_layers, model_cfg.n_decoder_layers),
            "max_len": model_cfg.max_len, "activation": model_cfg.activation,
            "norm_position": model_cfg.norm_position, "positional": model_cfg.positional,
            "tie_output": model_cfg.tie_output, "shared_vocab": model_cfg.share_embeddings}


def with_architecture_of(cfg, model_cfg):
    """`cfg` with a model's architecture (sizes, norms, positions).

    A run started from a pretrained LM takes the LM's; after building, a run records
    what it built (so a saved configuration never disagrees with its model). This
    run's dropout, head and optimisation settings stay.
    """
    return cfg.replace(**architecture_of(model_cfg))


def pretrained_conflicts(given, init_from):
    """Options given explicitly that a run started from `init_from` could not honour.

    given: {TrainConfig field: value} of the flags on the command line. A run started
    from a pretrained LM takes its architecture and its tokenizer, so a flag that asks
    for another one is a contradiction, not a wish to drop silently. Returns a list of
    "--flag VALUE (the LM has X)" strings; an unreadable init_from gives [] (the run
    reports it when it loads the LM).
    """
    try:
        meta = read_checkpoint_meta(init_from)
        lm = ModelConfig.from_dict(meta["model_config"])
    except (CheckpointError, ConfigError):
        return []
    have = architecture_of(lm)
    have["tokenizer"] = meta["src_tokenizer"].get("type")
    have["shared_vocab"] = True  # a translator started from an LM has its one vocabulary
    conflicts = [(name, value, have[name]) for name, value in given.items()
                 if name in have and value != have[name]]
    if given.get("vocab_size") not in (None, 0, lm.src_vocab_size):
        conflicts.append(("vocab_size", given["vocab_size"], lm.src_vocab_size))
    return [f"--{name.replace('_', '-')} {value} (the LM has {lm_value})"
            for name, value, lm_value in conflicts]


def start_from(cfg, model, parts):
    """Copy the pretrained LM's weights into a fresh model; returns a note."""
    ckpt = pretrained_checkpoint(cfg)
    try:
        copied = load_pretrained(model, ckpt.model, parts)
    except ValueError as err:
        raise ConfigError(f"init_from={cfg.init_from!r}: {err}") from None
    return f"started from {cfg.init_from} ({len(copied)} of {len(model.params)} weights)"


def split_lines(lines, cfg, source):
    """Shuffle a user's lines into train/valid/test (equal lines stay in one split)."""
    splits = split_pairs([(line, "") for line in lines], cfg.valid_frac, cfg.test_frac,
                         seed=cfg.data_seed)
    return {k: [line for line, _ in v] for k, v in splits.items()}, f"{source}: {len(lines)} lines"


def split_stream(text, cfg, source):
    """One stream of text -> train/valid/test documents: its start, then the next parts.

    Held-out text is the end of the stream, as for one long book (a shuffle of lines
    would not be one stream); each cut moves forward to the next whitespace, so no
    word is split. An empty part gives an empty split.
    """
    n = len(text)

    def cut(frac):
        i = int(n * frac)
        while i < n and not text[i].isspace():
            i += 1
        return i

    a, b = cut(1 - cfg.valid_frac - cfg.test_frac), cut(1 - cfg.test_frac)
    parts = {"train": text[:a], "valid": text[a:b], "test": text[b:]}
    return ({k: [part.strip()] if part.strip() else [] for k, part in parts.items()},
            f"{source}: one stream of {n:,} characters")


# What each best_by rule compares (higher is better) and calls itself in messages.
SCORES = {"bleu_exact": (lambda fields: (fields["bleu"] + 100 * fields["exact_match"]) / 2,
                         "mean of BLEU and exact match"),
          "valid_loss": (lambda fields: -fields["valid_loss"], "validation loss"),
          "bleu": (lambda fields: fields["bleu"], "BLEU"),
          "exact_match": (lambda fields: fields["exact_match"], "exact match"),
          "accuracy": (lambda fields: fields["accuracy"], "accuracy")}


def best_by(cfg):
    """The rule that picks best.npz: cfg.best_by, or the task's default (config.BEST_BY)."""
    return cfg.best_by or BEST_BY[cfg.task][0]


def selection_score(fields, rule):
    """A validation's score under `rule` (a config.BEST_BY name); higher is better."""
    return SCORES[rule][0](fields)
