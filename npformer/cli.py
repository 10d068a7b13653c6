"""Command-line interface: a thin shell over importable functions.

  npformer train       train a translator (default: the built-in toy, ~3 minutes)
  npformer translate   translate sentences with a trained model
  npformer eval        BLEU / exact match of a model on a data split or a TSV file
  npformer data        write the built-in corpora to TSV
  npformer attention   save attention heatmaps (PNG) for one sentence
  npformer profile     where a training step's time goes, per kind of layer
  npformer gradcheck   check every backward pass against finite differences

Errors the user can fix (bad flags, unreadable files) print one line and exit
with status 2; no traceback. Full reference: docs/cli.md.
"""
import argparse
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

from . import __version__

DEFAULT_MODEL = "runs/toy/best.npz"


class UsageError(Exception):
    """A problem with the user's arguments or files: reported in one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is ONE line (not the whole usage) and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def _number(kind, low=None, high=None, low_open=False, high_open=False):
    """An argparse type: `kind` (int or float), finite, within [low, high] (or open ends)."""
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}"
                                             f", got {text!r}") from None
        bad = not math.isfinite(value)
        bad |= low is not None and (value <= low if low_open else value < low)
        bad |= high is not None and (value >= high if high_open else value > high)
        if bad:
            lo = "" if low is None else f"{'(' if low_open else '['}{low}"
            hi = "inf)" if high is None else f"{high}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"{text!r} is outside {lo or '(-inf'}, {hi}")
        return value
    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert


# Help text for every TrainConfig field; the flag is --field-name (one flag per field).
TRAIN_HELP = {
    "data": "training data: toy, copy, reverse, or a .tsv file of source<TAB>target lines "
            "(or a source .txt file together with --tgt-file)",
    "tgt_file": "target side of a line-aligned pair of text files (source file in --data)",
    "valid_frac": "fraction of a user corpus held out for validation",
    "test_frac": "fraction of a user corpus held out for testing",
    "data_seed": "seed of the toy corpus and of the user corpus split",
    "tokenizer": "word, char, or bpe (byte-level BPE: word parts)",
    "vocab_size": "vocabulary size per side incl. specials; 0 = every token seen (bpe: 8000)",
    "shared_vocab": "one vocabulary (and embedding) for source and target",
    "d_model": "width of the model (C)",
    "n_heads": "attention heads (d_model must be divisible by it)",
    "d_ff": "hidden width of the feed-forward networks (F)",
    "n_layers": "encoder layers and decoder layers (each)",
    "max_len": "longest sequence in tokens incl. BOS/EOS; longer training pairs are left out",
    "dropout": "dropout probability",
    "activation": "relu or gelu",
    "norm_position": "pre (pre-LN, default) or post (post-LN as in the original paper)",
    "positional": "sinusoidal or learned position encodings",
    "tie_output": "output projection shares the target embedding matrix",
    "max_tokens": "padded tokens per batch",
    "lr": "peak learning rate",
    "warmup_steps": "learning-rate warm-up steps",
    "schedule": "warmup_cosine, inverse_sqrt or constant",
    "max_steps": "optimizer steps",
    "max_minutes": "wall-clock budget of the training loop in minutes (0 = none)",
    "weight_decay": "AdamW weight decay (weight matrices only)",
    "clip_norm": "clip the global gradient norm (0 = off)",
    "label_smoothing": "label smoothing of the target distribution",
    "eval_every": "steps between validations",
    "eval_sentences": "validation sentences translated for BLEU at each validation",
    "patience": "early stop after this many validations without a better BLEU (0 = off)",
    "out_dir": "directory for checkpoints (best.npz, last.npz), log.jsonl and curves.png",
    "log_every": "steps between progress lines",
    "seed": "seed of initialisation, batch order and dropout",
    "threads": "BLAS threads (1 is fastest for small models, see docs/performance.md)",
}


def _bool(text):
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _set_threads(n):
    from .threads import set_blas_threads

    set_blas_threads(n)


def _check_environment():
    """Environment variables npformer reads, checked before a command starts."""
    try:
        from . import kernels  # noqa: F401  (NPFORMER_BACKEND chooses the kernels at import)
    except ValueError as err:
        raise UsageError(str(err)) from None


def _check_writable(path, flag):
    """Make sure `path` can be written (creating its directory) before long work starts."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(21, "is a directory")
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as err:
        raise UsageError(f"{flag} {path}: cannot write there ({err.strerror or err})") from None


def _load_model(path):
    from .checkpoint import CheckpointError, load_checkpoint

    try:
        return load_checkpoint(path)
    except CheckpointError as err:
        hint = " (train one first with: npformer train)" if str(path) == DEFAULT_MODEL else ""
        raise UsageError(f"{err}{hint}") from None


# ------------------------------------------------------------------- commands
def train_config_from_args(args):
    """The TrainConfig of a `train` command line: preset, then the flags given.

    With --resume the run's saved configuration is the starting point instead,
    and only the flags given explicitly may change it (see train.resume_config).
    """
    from .config import PRESETS, TrainConfig
    from .train import resume_config

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if getattr(args, f.name) is not None}
    if args.resume:
        if args.preset is not None:
            raise UsageError("--preset cannot be combined with --resume (the run keeps the "
                             "configuration it was started with)")
        return resume_config(given.get("out_dir", TrainConfig().out_dir), **given)
    return TrainConfig(**{**PRESETS[args.preset or "toy"], **given})


def cmd_train(args):
    """Train a translator; print the test-set score and a few translations."""
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .data import DataError
    from .evaluation import evaluate
    from .tokenizers import TokenizerError
    from .train import TrainingError, load_corpus, train

    from .distributed import DistributedError, launch_command, mpi_size_from_env, rank_from_env

    if args.workers > 1:  # start the same command in N processes under mpiexec
        if mpi_size_from_env() > 1:
            raise UsageError("--workers cannot be used inside mpiexec (mpiexec -n already "
                             "chose the number of processes)")
        try:
            command = launch_command(args.workers, _without_option(args.argv, "--workers"))
        except DistributedError as err:
            raise UsageError(str(err)) from None
        print(f"running: {' '.join(command)}", file=sys.stderr)
        return subprocess.run(command).returncode
    try:
        cfg = train_config_from_args(args)
        history = train(cfg, resume=args.resume)
    except (ConfigError, DataError, CheckpointError, TokenizerError, DistributedError) as err:
        raise UsageError(str(err)) from None
    except TrainingError as err:
        print(f"npformer train: {err}", file=sys.stderr)
        return 1
    if rank_from_env() != 0:  # with data parallelism, rank 0 reports
        return 0
    out = Path(cfg.out_dir)
    ckpt = _load_model(out / "best.npz")
    splits, _ = load_corpus(cfg)
    if splits["test"]:
        result = evaluate(ckpt.model, ckpt.src_tokenizer, ckpt.tgt_tokenizer, splits["test"])
        print(f"test split ({result['n']} sentences, best checkpoint, greedy): "
              f"BLEU {result['bleu']:.2f}, exact match {100 * result['exact_match']:.1f}%")
        for (src, ref), hyp in list(zip(splits["test"], result["hypotheses"]))[:3]:
            print(f"  source:     {src}\n  reference:  {ref}\n  model:      {hyp}")
    else:
        print(f"no test split (--test-frac {cfg.test_frac} of a small corpus): not scored")
    best = max((h["bleu"] for h in history if h["type"] == "valid"), default=float("nan"))
    print(f"best validation BLEU {best:.2f}; wrote {out / 'best.npz'}, {out / 'last.npz'}, "
          f"{out / 'log.jsonl'}, {out / 'curves.png'}")
    print(f'next: npformer translate --model {out / "best.npz"} "<a sentence>"')
    return 0


def _without_option(argv, option):
    """argv without `option VALUE` / `option=VALUE`."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def _read_sentences(args):
    if args.text:
        return list(args.text), False
    if not sys.stdin.isatty():
        return [line.rstrip("\n") for line in sys.stdin], False
    return None, True  # interactive


def _translate_lines(ckpt, lines, args):
    from .evaluation import translate_texts

    max_src = ckpt.model.config.max_len - 1
    for i, line in enumerate(lines):
        n = len(ckpt.src_tokenizer.encode(line))
        if n > max_src:
            print(f"note: sentence {i + 1} has {n} tokens; the model reads at most {max_src}, "
                  f"the rest is cut off", file=sys.stderr)
    kw = {}
    if args.beam > 1:
        method, kw = "beam", {"beam_size": args.beam, "length_penalty": args.length_penalty}
    elif args.sample:
        import numpy as np

        method = "sample"
        kw = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p,
              "rng": np.random.default_rng(args.seed)}
    else:
        method = "greedy"
    try:
        return translate_texts(ckpt.model, ckpt.src_tokenizer, ckpt.tgt_tokenizer, lines,
                               method=method, **kw)
    except ValueError as err:
        raise UsageError(str(err)) from None


def cmd_translate(args):
    """Translate sentences from the arguments, standard input, or an interactive prompt."""
    _set_threads(args.threads)
    ckpt = _load_model(args.model)
    lines, interactive = _read_sentences(args)
    if not interactive:
        for out in _translate_lines(ckpt, lines, args):
            print(out)
        return 0
    print("type a sentence and press Enter (empty line or Ctrl-D to quit)", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if not line.strip():
            break
        print(_translate_lines(ckpt, [line], args)[0])
    return 0


def cmd_eval(args):
    """Score a model on a split of its training data or on a TSV file."""
    from .config import TrainConfig
    from .data import DataError, load_tsv
    from .evaluation import evaluate
    from .train import load_corpus

    _set_threads(args.threads)
    if args.json:  # fail now, not after minutes of decoding
        _check_writable(Path(args.json), "--json")
    ckpt = _load_model(args.model)
    try:
        if args.data:
            pairs = load_tsv(args.data).pairs
            where = args.data
        else:
            if ckpt.train_config is None:
                raise UsageError("this checkpoint has no training config; pass --data FILE.tsv")
            splits, _ = load_corpus(TrainConfig.from_dict(ckpt.train_config))
            pairs, where = splits[args.split], f"{args.split} split"
    except (DataError, OSError) as err:
        raise UsageError(str(err)) from None
    if args.limit:
        pairs = pairs[: args.limit]
    if not pairs:
        raise UsageError(f"{where}: no sentence pairs to evaluate")
    kw = {"beam_size": args.beam} if args.beam > 1 else {}
    result = evaluate(ckpt.model, ckpt.src_tokenizer, ckpt.tgt_tokenizer, pairs,
                      method="beam" if args.beam > 1 else "greedy", **kw)
    decoding = f"beam {args.beam}" if args.beam > 1 else "greedy"
    print(f"{'data':<14} {where}\n{'sentences':<14} {result['n']}\n{'decoding':<14} {decoding}\n"
          f"{'BLEU':<14} {result['bleu']:.2f}\n{'exact match':<14} "
          f"{100 * result['exact_match']:.2f}%")
    for (src, ref), hyp in list(zip(pairs, result["hypotheses"]))[: args.show]:
        mark = "=" if hyp == ref else "x"
        print(f"[{mark}] {src}\n    ref: {ref}\n    hyp: {hyp}")
    if args.json:
        rows = [{"source": s, "reference": r, "hypothesis": h}
                for (s, r), h in zip(pairs, result["hypotheses"])]
        text = json.dumps({"data": where, "decoding": decoding, "bleu": result["bleu"],
                           "exact_match": result["exact_match"], "n": result["n"],
                           "sentences": rows}, indent=1, ensure_ascii=False)
        try:
            Path(args.json).write_text(text, encoding="utf-8")
        except OSError as err:  # the scores above are printed already
            raise UsageError(f"--json {args.json}: cannot write ({err.strerror or err}); "
                             "the scores are printed above") from None
        print(f"wrote {args.json}")
    return 0


def cmd_data(args):
    """Write a built-in corpus to TSV files."""
    from .data import make_copy_task, make_reverse_task, make_toy_corpus, save_tsv

    make = {"toy": make_toy_corpus, "copy": make_copy_task, "reverse": make_reverse_task}
    splits = make[args.task](seed=args.seed)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = ["train", "valid", "test"] if args.split == "all" else [args.split]
    for name in names:
        path = out / f"{args.task}.{name}.tsv"
        save_tsv(splits[name], path)
        print(f"wrote {path} ({len(splits[name])} pairs)")
    return 0


def cmd_attention(args):
    """Save encoder self-, decoder self- and cross-attention heatmaps for one sentence."""
    from .plots import save_attention_maps

    ckpt = _load_model(args.model)
    try:
        paths, translation = save_attention_maps(ckpt, args.sentence, args.out_dir)
    except ValueError as err:
        raise UsageError(str(err)) from None
    print(f"translation: {translation}")
    for p in paths:
        print(f"wrote {p}")
    return 0


def cmd_profile(args):
    """Time a few training steps on random data; print where the time goes."""
    from .config import ConfigError, ModelConfig
    from .profile import format_profile, plot_profile, profile_step

    try:
        cfg = ModelConfig(src_vocab_size=args.vocab_size, tgt_vocab_size=args.vocab_size,
                          d_model=args.d_model, n_heads=args.n_heads, d_ff=args.d_ff,
                          n_encoder_layers=args.n_layers, n_decoder_layers=args.n_layers,
                          max_len=max(args.src_len, args.tgt_len), dropout=args.dropout)
    except ConfigError as err:
        raise UsageError(str(err)) from None
    rows = profile_step(cfg, args.batch, args.src_len, args.tgt_len, steps=args.steps,
                        threads=args.threads)
    print(format_profile(rows))
    if args.plot:
        print(f"wrote {plot_profile(rows, args.plot)}")
    return 0


def cmd_gradcheck(args):
    """Run every gradient check and print the table; exit 1 if any check fails."""
    from .gradcheck import format_table, layer_checks, model_checks

    rows = layer_checks(args.seed)
    if not args.layers_only:
        rows += model_checks(args.seed)
    print(format_table(rows))
    return 0 if all(r.passed for r in rows) else 1


def cmd_exercises(args):
    """List the exercises, or grade a learner's file (npformer/exercises/cli.py)."""
    from .exercises.cli import ExercisesError, exercises_command

    try:
        return exercises_command(args)
    except ExercisesError as err:
        raise UsageError(str(err)) from None


# --------------------------------------------------------------------- parser
def build_parser():
    from .config import PRESETS, TrainConfig

    parser = Parser(
        prog="npformer", description="An educational encoder-decoder transformer in NumPy.",
        epilog="Run 'npformer COMMAND --help' for a command's options. Docs: docs/cli.md")
    parser.add_argument("--version", action="version", version=f"npformer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def threads(p):
        p.add_argument("--threads", type=_number(int, 1, 1024), default=1,
                       help="BLAS threads (default 1: fastest for small models, see "
                            "docs/performance.md)")

    p = sub.add_parser(
        "train", help="train a translator (default: the built-in toy, about 3 minutes)",
        description="Train an encoder-decoder transformer. With no arguments it trains the "
                    "built-in toy English->Velan translator.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  npformer train\n  npformer train --preset copy\n"
               "  npformer train --preset tsv --data pairs.tsv --max-minutes 10\n"
               "  npformer train --data train.de --tgt-file train.en --tokenizer bpe\n"
               "  npformer train --resume --out-dir runs/toy --max-minutes 5")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="starting point for all options (toy when not given); flags override "
                        "it; not with --resume")
    p.add_argument("--resume", action="store_true",
                   help="continue exactly from OUT_DIR/last.npz")
    p.add_argument("--workers", type=_number(int, 1, 1024), default=1,
                   help="data-parallel processes, started with mpiexec (needs the mpi extra; "
                        "the same as: mpiexec -n N npformer train ...)")
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        kind = _bool if f.type in (bool, "bool") else type(getattr(defaults, f.name))
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=None,
                       metavar=f.name.upper() if kind is not _bool else "BOOL",
                       help=f"{TRAIN_HELP[f.name]} (default {getattr(defaults, f.name)!r})")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "translate", help="translate sentences with a trained model",
        description="Translate the sentences given as arguments, else the lines of standard "
                    "input, else ask interactively.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n  npformer translate "the big dog sees a small cat ."\n'
               "  npformer translate --beam 4 < sentences.txt\n"
               '  npformer translate --sample --temperature 0.8 --top-k 5 "the man eats ."')
    p.add_argument("text", nargs="*", help="sentences to translate")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"checkpoint (default {DEFAULT_MODEL})")
    p.add_argument("--beam", type=_number(int, 1, 1000), default=1,
                   help="beam size (1 = greedy, the default)")
    p.add_argument("--length-penalty", type=_number(float, 0.0, 10.0), default=0.6,
                   help="beam search length penalty alpha (default 0.6)")
    p.add_argument("--sample", action="store_true", help="sample instead of greedy/beam")
    p.add_argument("--temperature", type=_number(float, 0.0, 100.0, low_open=True), default=1.0,
                   help="sampling temperature (> 0)")
    p.add_argument("--top-k", type=_number(int, 0), default=0,
                   help="sample from the k best tokens (0 = all)")
    p.add_argument("--top-p", type=_number(float, 0.0, 1.0, low_open=True), default=1.0,
                   help="nucleus sampling mass in (0, 1] (1 = off)")
    p.add_argument("--seed", type=_number(int, 0), default=0, help="seed for --sample")
    threads(p)
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser(
        "eval", help="BLEU and exact match of a model on a data split or a TSV file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  npformer eval\n  npformer eval --split valid --show 5\n"
               "  npformer eval --data my_test.tsv --beam 4 --json results.json")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"checkpoint (default {DEFAULT_MODEL})")
    p.add_argument("--split", choices=["train", "valid", "test"], default="test",
                   help="split of the model's own training data (default test)")
    p.add_argument("--data", help="evaluate on this TSV file instead")
    p.add_argument("--beam", type=_number(int, 1, 1000), default=1, help="beam size (1 = greedy)")
    p.add_argument("--limit", type=_number(int, 0), default=0,
                   help="only the first N pairs (0 = all)")
    p.add_argument("--show", type=_number(int, 0), default=0,
                   help="print the first N translations")
    p.add_argument("--json", help="also write scores and every translation to this JSON file")
    threads(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "data", help="write a built-in corpus (toy, copy, reverse) as TSV",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  npformer data\n  npformer data --task reverse --split test")
    p.add_argument("--task", choices=["toy", "copy", "reverse"], default="toy",
                   help="which corpus (default toy)")
    p.add_argument("--split", choices=["train", "valid", "test", "all"], default="all",
                   help="which split (default all)")
    p.add_argument("--seed", type=_number(int, 0), default=0, help="corpus seed (default 0)")
    p.add_argument("--out-dir", default="data", help="output directory (default data/)")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser(
        "attention", help="save attention heatmaps (PNG) for one sentence",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='example:\n  npformer attention "the big dog sees a small cat ." --out-dir att')
    p.add_argument("sentence", help="source sentence")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"checkpoint (default {DEFAULT_MODEL})")
    p.add_argument("--out-dir", default="attention", help="output directory (default attention/)")
    p.set_defaults(func=cmd_attention)

    p = sub.add_parser(
        "profile", help="where a training step's time goes, per kind of layer",
        description="Time a few training steps of a model on random data and print the "
                    "forward and backward time per kind of layer (from the tape's timings).",
        epilog="example: npformer profile --d-model 128 --d-ff 512 --plot prof.png")
    for flag, default, text in [("--d-model", 64, "width C"), ("--n-heads", 4, "heads"),
                                ("--d-ff", 256, "feed-forward width F"),
                                ("--n-layers", 2, "layers per stack"),
                                ("--vocab-size", 1000, "source and target vocabulary"),
                                ("--batch", 64, "batch size"), ("--src-len", 16, "source length"),
                                ("--tgt-len", 16, "target length"),
                                ("--steps", 5, "timed steps after one warm-up step")]:
        p.add_argument(flag, type=_number(int, 1, 1 << 16), default=default,
                       help=f"{text} (default {default})")
    p.add_argument("--dropout", type=_number(float, 0.0, 1.0, high_open=True), default=0.1,
                   help="dropout (default 0.1)")
    p.add_argument("--plot", metavar="PNG", help="also save a stacked bar chart")
    threads(p)
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser(
        "gradcheck", help="check every hand-written backward pass against finite differences",
        description="Check every layer's backward pass, and the whole model's gradient, "
                    "against float64 central differences. Prints a table; exits 1 on any failure.",
        epilog="example: npformer gradcheck --layers-only")
    p.add_argument("--seed", type=_number(int, 0), default=0,
                   help="seed of the random inputs (default 0)")
    p.add_argument("--layers-only", action="store_true", help="skip the whole-model checks")
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser(
        "exercises", help="list the backward-pass exercises, or grade a file of your answers",
        description="List the exercises (write each backward pass yourself), or grade the "
                    "answers in a Python file of yours. Stubs: notebooks/exercises_backward.ipynb.")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="only these exercises (default: all)")
    p.add_argument("--check", metavar="FILE",
                   help="a Python file defining your answers (softmax_forward, softmax_backward, "
                        "...); grade every exercise it answers")
    p.add_argument("--verbose", action="store_true",
                   help="with --check: print the full report of each exercise, not one line")
    p.set_defaults(func=cmd_exercises)
    return parser


def main(argv=None):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv  # --workers starts the same command again under mpiexec
    try:
        _check_environment()
        return args.func(args)
    except UsageError as err:
        from .distributed import rank_from_env

        if rank_from_env() == 0:  # under mpiexec every rank fails alike; one says why
            print(f"npformer {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"npformer {args.command}: error: out of memory; use a smaller model or batch "
              "(--d-model, --d-ff, --n-layers, --max-tokens, --vocab-size)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
