"""Command-line interface: a thin shell over importable functions.

  npformer train       train a translator (default: the built-in toy, ~70 s)
  npformer translate   translate sentences with a trained model
  npformer eval        BLEU / exact match of a model on a data split or a TSV file
  npformer data        write the built-in corpora to TSV
  npformer attention   save attention heatmaps (PNG) for one sentence
  npformer profile     where a training step's time goes, per kind of layer
  npformer gradcheck   check every backward pass against finite differences
  npformer sweep       an IsoFLOP sweep: which model size is best for a compute budget
  npformer explore     open trained models in a local web page: tokens, attention, ...

Errors the user can fix (bad flags, unreadable files) print one line and exit
with status 2; no traceback. Full reference: docs/cli.md.
"""
import argparse
import codecs
import dataclasses
import json
import math
import os
import subprocess
import sys

import numpy as np
from pathlib import Path

from .. import __version__

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


def _bool(text):
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _set_threads(n):
    from ..nn.threads import set_blas_threads

    set_blas_threads(n)


def _check_environment():
    """Environment variables npformer reads, checked before a command starts."""
    try:
        from ..nn import kernels  # noqa: F401  (NPFORMER_BACKEND chooses the kernels at import)
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


def _default_model(task):
    """Where a task's command saves its best model by default (its first preset's out_dir)."""
    from ..training.config import TrainConfig

    out_dir = next(iter(task.presets.values())).get("out_dir", TrainConfig().out_dir)
    return f"{out_dir}/best.npz"


def _load_model(path, want=None):
    """A checkpoint; `want` (a model class name) must match, else a one-line error."""
    from ..tasks import TASK_OF_MODEL, TASKS
    from ..training.checkpoint import CheckpointError, load_checkpoint

    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as err:
        made_by = {_default_model(task): f"npformer {task.command}" for task in TASKS.values()}
        hint = f" (train one first with: {made_by[str(path)]})" if str(path) in made_by else ""
        raise UsageError(f"{err}{hint}") from None
    have = TASK_OF_MODEL[type(ckpt.model).__name__]
    if want is not None and have.model_class != want:
        raise UsageError(f"{path} holds a {have.model_name}, not a "
                         f"{TASK_OF_MODEL[want].model_name}; use it with: "
                         f"npformer {have.serve_commands}")
    return ckpt


def _serve(args, answer):
    """Answer the texts given as arguments, else the lines of stdin, else an interactive prompt.

    `answer(list of texts) -> list of output strings`.
    """
    lines, interactive = _read_sentences(args)
    if not interactive:
        for out in answer(lines):
            print(out)
        return 0
    print("type a line and press Enter (empty line or Ctrl-D to quit)", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if not line.strip():
            break
        print(answer([line])[0])
    return 0


# ------------------------------------------------------------------- commands
def train_config_from_args(args):
    """The TrainConfig of a training command line: preset, then the flags given.

    With --resume the run's saved configuration is the starting point instead,
    and only the flags given explicitly may change it (see train.resume_config).
    """
    from ..tasks import PRESETS, TASKS, pretrained_conflicts
    from ..training.config import TrainConfig
    from ..training.session import resume_config

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if getattr(args, f.name, None) is not None and f.name != "task"}
    preset = getattr(args, "preset", None)
    if args.resume:
        if preset is not None:
            raise UsageError("--preset cannot be combined with --resume (the run keeps the "
                             "configuration it was started with)")
        cfg = resume_config(given.get("out_dir", PRESETS[args.presets[0]].get(
            "out_dir", TrainConfig().out_dir)), **given)
        if cfg.task != args.task:
            command = TASKS[cfg.task].command
            raise UsageError(f"{cfg.out_dir} holds a {cfg.task} run; resume it with: npformer "
                             f"{command} --resume --out-dir {cfg.out_dir}")
        return cfg
    if given.get("init_from"):  # the run takes the LM's architecture and tokenizer
        conflicts = pretrained_conflicts(given, given["init_from"])
        if conflicts:
            flag = TASKS[args.task].init_flag
            raise UsageError(f"{', '.join(conflicts)}: a model started from {flag} "
                             f"{given['init_from']} takes that LM's architecture and tokenizer; "
                             "leave these options out")
    return TrainConfig(**{**PRESETS[preset or args.presets[0]], **given, "task": args.task})


def cmd_train(args):
    """Train a model; print the test-set score and a few examples."""
    from ..tasks import TASKS, ModelBundle
    from ..training.loop import TrainingError, train

    from ..training.distributed import (DistributedError, launch_command, mpi_size_from_env,
                                        rank_from_env)

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
        history = train(cfg, resume=args.resume, overwrite=args.overwrite)
    except TrainingError as err:
        print(f"npformer {args.command}: {err}", file=sys.stderr)
        return 1
    if rank_from_env() != 0:  # with data parallelism, rank 0 reports
        return 0
    out = Path(cfg.out_dir)
    ckpt = _load_model(out / "best.npz")
    task = TASKS[cfg.task]
    splits, _ = task.load(cfg)
    built = ckpt.bundle()
    if splits["test"]:
        print("\n".join(task.report(built, cfg, splits["test"])))
    else:
        print(f"no test split (--test-frac {cfg.test_frac} of a small corpus): not scored")
    last = next((h for h in reversed(history) if h["type"] == "valid"), None)
    if last:
        scores = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k not in ("type", "step"))
        print(f"last validation (step {last['step']}): {scores}")
    print(f"wrote {out / 'best.npz'}, {out / 'last.npz'}, {out / 'log.jsonl'}, "
          f"{out / 'curves.png'}")
    print(f"next: npformer {task.serve.format(out / 'best.npz')}")
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
    from ..tasks.evaluation import translate_texts

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
    ckpt = _load_model(args.model, "Transformer")
    return _serve(args, lambda lines: _translate_lines(ckpt, lines, args))


def cmd_generate(args):
    """Continue prompts with a language model (arguments, standard input, or interactive)."""
    from ..models.decoding import continue_text

    _set_threads(args.threads)
    ckpt = _load_model(args.model, "LanguageModel")
    tok, limit = ckpt.src_tokenizer, ckpt.model.config.max_len - 1
    rng = __import__("numpy").random.default_rng(args.seed)

    def answer(prompts):
        outputs = []
        for prompt in prompts:
            ids = tok.encode(prompt)
            if len(ids) >= limit:
                print(f"note: the prompt has {len(ids)} tokens; the model reads at most "
                      f"{limit - 1} before it continues, so its start is cut off", file=sys.stderr)
                ids = ids[len(ids) - limit + 1:]
            for new in continue_text(ckpt.model, ids, args.max_new_tokens, args.temperature,
                                     args.top_k, args.top_p, rng, n=args.n):
                outputs.append(" ".join(x for x in (prompt.strip(), tok.decode(new)) if x))
        return outputs

    return _serve(args, answer)


def cmd_classify(args):
    """Label texts with a classifier (arguments, standard input, or interactive)."""
    from ..tokenizers import BOS_ID, EOS_ID

    _set_threads(args.threads)
    ckpt = _load_model(args.model, "Classifier")
    tok, limit = ckpt.src_tokenizer, ckpt.model.config.max_len - 2

    def answer(texts):
        outputs = []
        for text in texts:  # one at a time: no padding, and the output order is the input's
            ids = [BOS_ID] + tok.encode(text)[:limit] + [EOS_ID]
            probs = ckpt.model.predict([ids])[0]  # (K,)
            best = int(probs.argmax())
            outputs.append(f"{ckpt.labels[best]}\t{probs[best]:.3f}\t{text}")
        return outputs

    return _serve(args, answer)


def _eval_items(args, ckpt, task):
    """What `npformer eval` scores: --data FILE, or a split of the model's own training data."""
    from ..training.config import TrainConfig
    from ..data import DataError

    cfg = TrainConfig.from_dict(ckpt.train_config) if ckpt.train_config else None
    try:
        if args.data:
            items, where = task.read_file(args.data), args.data
        else:
            if cfg is None:
                raise UsageError("this checkpoint has no training config; pass --data FILE")
            items, where = task.load(cfg)[0][args.split], f"{args.split} split"
    except (DataError, OSError) as err:
        raise UsageError(str(err)) from None
    items = items[: args.limit] if args.limit else items
    if not items:
        raise UsageError(f"{where}: nothing to evaluate")
    if cfg is None:
        cfg = TrainConfig(task=task.name, max_len=ckpt.model.config.max_len)
    return items, where, cfg


def cmd_eval(args):
    """Score a model on a split of its training data or on a file of its kind.

    translator: BLEU and exact match; language model: loss and perplexity;
    classifier: accuracy and the confusion matrix.
    """
    from ..data import DataError
    from ..tasks import TASK_OF_MODEL, ModelBundle

    _set_threads(args.threads)
    if args.json:  # fail now, not after minutes of decoding
        _check_writable(Path(args.json), "--json")
    ckpt = _load_model(args.model)
    task = TASK_OF_MODEL[type(ckpt.model).__name__]
    items, where, cfg = _eval_items(args, ckpt, task)
    print(f"{'data':<14} {where}\n{'model':<14} {task.model_name}")
    built = ckpt.bundle()
    try:
        notes, lines, report = task.score(built, items, cfg, beam=args.beam, show=args.show)
    except DataError as err:
        raise UsageError(f"{where}: {err}") from None
    for note in notes:
        print(f"note: {where}: {note}", file=sys.stderr)
    print("\n".join(lines))
    if args.json:
        text = json.dumps({"data": where, **report}, indent=1, ensure_ascii=False)
        try:
            Path(args.json).write_text(text, encoding="utf-8", errors="backslashreplace")
        except OSError as err:  # the scores above are printed already
            raise UsageError(f"--json {args.json}: cannot write ({err.strerror or err}); "
                             "the scores are printed above") from None
        print(f"wrote {args.json}")
    return 0


def cmd_data(args):
    """Write a built-in corpus to TSV files."""
    from ..data import CORPORA, save_tsv

    splits = CORPORA[args.task][0](seed=args.seed)
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
    from ..tools.plots import save_attention_maps

    ckpt = _load_model(args.model, "Transformer")  # an LM or classifier has no cross-attention
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
    from ..nn.config import ConfigError, ModelConfig
    from ..tools.profile import format_profile, plot_profile, profile_step

    if args.plot:  # fail now, not after the timed steps
        _check_writable(Path(args.plot), "--plot")
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
    from ..tools.gradcheck import format_table, layer_checks, model_checks

    rows = layer_checks(args.seed)
    if not args.layers_only:
        rows += model_checks(args.seed)
    print(format_table(rows))
    return 0 if all(r.passed for r in rows) else 1


def cmd_exercises(args):
    """List the exercises, or grade a learner's file (npformer/exercises/cli.py)."""
    from ..exercises.answers import ExercisesError
    from ..exercises.cli import exercises_command

    try:
        return exercises_command(args)
    except ExercisesError as err:
        raise UsageError(str(err)) from None


def cmd_explore(args):
    """Serve a local web page that shows the models' numbers (npformer/explore/)."""
    from ..explore.command import ExploreError, explore_command
    from ..tasks import TASKS

    _set_threads(args.threads)
    defaults = [(_default_model(task), f"npformer {task.command}") for task in TASKS.values()]
    try:
        return explore_command(args.model, args.run, args.host, args.port, defaults,
                               verbose=args.verbose)
    except ExploreError as err:
        raise UsageError(str(err)) from None


def _lr_list(text):
    """An argparse type: "tuned" -> None, "3e-3,6e-3" -> [0.003, 0.006] (each in (0, 1))."""
    if text == "tuned":
        return None
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected tuned or comma-separated numbers, got "
                                         f"{text!r}") from None
    if not all(0.0 < v < 1.0 for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"learning rates must be distinct and in (0, 1), "
                                         f"got {text!r}")
    return values


def _int_list(low):
    """An argparse type: "5000,20000" -> [5000, 20000], each integer >= low."""
    def convert(text):
        try:
            values = [int(part) for part in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, got "
                                             f"{text!r}") from None
        if min(values) < low:
            raise argparse.ArgumentTypeError(f"expected integers >= {low}, got {text!r}")
        return values
    convert.__name__ = "list of int"
    return convert


def cmd_sweep(args):
    """Train an IsoFLOP grid of language models; write the rows as JSON (and a plot)."""
    from ..tools.sweep import (DEFAULT_GRID, SweepError, corpus_facts, parse_budget,
                               plot_isoflop, sweep, write_sweep)

    try:
        grid = dict(parse_budget(text) for text in args.budget) if args.budget else DEFAULT_GRID
    except SweepError as err:
        raise UsageError(f"--budget: {err}") from None
    if args.budget and len(grid) != len(args.budget):
        raise UsageError("--budget: a budget is given twice")
    if len(set(args.seeds)) != len(args.seeds):
        raise UsageError(f"--seeds: {','.join(map(str, args.seeds))} repeats a value")
    out = Path(args.out)
    _check_writable(out, "--out")
    if args.plot:
        _check_writable(Path(args.plot), "--plot")
    _set_threads(args.threads)
    facts = corpus_facts(args.data)
    settings = {"grid": {f"{budget:g}": list(sizes) for budget, sizes in grid.items()},
                "seeds": args.seeds, "lrs": args.lrs or "tuned", "data": args.data}
    rows = sweep(grid, args.seeds, args.lrs, args.data, args.threads,
                 log=lambda line: print(line, flush=True), facts=facts,
                 save=lambda so_far: write_sweep(out, so_far, settings, facts))
    print(f"wrote {out} ({len(rows)} runs)")
    if args.plot:
        plot_isoflop(rows, args.plot)
        print(f"wrote {args.plot}")
    return 0


# --------------------------------------------------------------------- parser
def _field_help(field, task):
    """A TrainConfig field's help text for a task (see config.option)."""
    text = field.metadata["help"]
    return text[task] if isinstance(text, dict) else text


def training_command(sub, task):
    """A task's training command: one flag per TrainConfig field of the task, presets, resume."""
    from ..training.config import TrainConfig

    name, presets = task.command, tuple(task.presets)
    p = sub.add_parser(name, help=task.command_help, description=task.command_description,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  " + "\n  ".join(task.command_examples))
    if len(presets) > 1:
        p.add_argument("--preset", choices=sorted(presets), default=None,
                       help=f"starting point for all options ({presets[0]} when not given); "
                            "flags override it; not with --resume")
    p.add_argument("--resume", action="store_true",
                   help="continue exactly from OUT_DIR/last.npz")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run OUT_DIR holds (its best.npz, last.npz, log.jsonl, "
                        "curves.png); without it a directory that holds a run is refused")
    p.add_argument("--workers", type=_number(int, 1, 1024), default=1,
                   help=f"data-parallel processes, started with mpiexec (needs the mpi extra; "
                        f"the same as: mpiexec -n N npformer {name} ...)")
    defaults = TrainConfig(**task.presets[presets[0]])
    for f in dataclasses.fields(TrainConfig):
        if f.name == "task" or task.name not in f.metadata["tasks"]:
            continue
        kind = _bool if f.type in (bool, "bool") else type(getattr(defaults, f.name))
        flags = ["--" + f.name.replace("_", "-"), *task.flag_aliases.get(f.name, [])]
        p.add_argument(*flags, dest=f.name, type=kind, default=None,
                       metavar=f.name.upper() if kind is not _bool else "BOOL",
                       help=f"{_field_help(f, task.name)} (default {getattr(defaults, f.name)!r})")
    p.set_defaults(func=cmd_train, task=task.name, presets=presets)
    return p


def _sampling_filters(p):
    """translate --sample and generate: which tokens may be drawn."""
    p.add_argument("--top-k", type=_number(int, 0), default=0,
                   help="sample from the k best tokens (0 = all)")
    p.add_argument("--top-p", type=_number(float, 0.0, 1.0, low_open=True), default=1.0,
                   help="nucleus sampling mass in (0, 1] (1 = off)")

def _threads(p):
    """The --threads option of a command that runs a model."""
    p.add_argument("--threads", type=_number(int, 1, 1024), default=1,
                   help="BLAS threads (default 1: fastest for small models, see "
                        "docs/performance.md)")


def _translate_and_eval_commands(sub):
    """translate and eval: serve a translator, score any model."""
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
    _sampling_filters(p)
    p.add_argument("--seed", type=_number(int, 0), default=0, help="seed for --sample")
    _threads(p)
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser(
        "eval", help="score a model: BLEU (translator), perplexity (LM), accuracy (classifier)",
        description="Score a model on a split of its own training data or on a file: a "
                    "translator by BLEU and exact match, a language model by loss and "
                    "perplexity, a classifier by accuracy and its confusion matrix.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  npformer eval\n  npformer eval --split valid --show 5\n"
               "  npformer eval --data my_test.tsv --beam 4 --json results.json\n"
               "  npformer eval --model runs/lm/best.npz\n"
               "  npformer eval --model runs/classify/best.npz --data labelled.tsv")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"checkpoint (default {DEFAULT_MODEL})")
    p.add_argument("--split", choices=["train", "valid", "test"], default="test",
                   help="split of the model's own training data (default test)")
    p.add_argument("--data", help="evaluate on this file instead: source<TAB>target .tsv "
                                  "(translator), text (LM), text<TAB>label .tsv (classifier)")
    p.add_argument("--beam", type=_number(int, 1, 1000), default=1, help="beam size (1 = greedy)")
    p.add_argument("--limit", type=_number(int, 0), default=0,
                   help="only the first N pairs, lines or examples (0 = all)")
    p.add_argument("--show", type=_number(int, 0), default=0,
                   help="print the first N translations")
    p.add_argument("--json", help="also write the scores (and every translation) to this "
                                  "JSON file")
    _threads(p)
    p.set_defaults(func=cmd_eval)


def _generate_and_classify_commands(sub):
    """generate and classify: serve a language model and a classifier."""
    p = sub.add_parser(
        "generate", help="continue a prompt with a pretrained language model",
        description="Continue each prompt given as an argument, else each line of standard "
                    "input, else ask interactively. Greedy by default; --temperature > 0 "
                    "samples. Generation uses the key/value cache.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n  npformer generate "the old woman"\n'
               '  npformer generate --temperature 0.8 --top-k 10 --n 3 "the dog ="\n'
               "  npformer generate --model runs/icl/best.npz < prompts.txt")
    p.add_argument("text", nargs="*", help="prompts to continue")
    p.add_argument("--model", default="runs/lm/best.npz",
                   help="checkpoint of a language model (default runs/lm/best.npz)")
    p.add_argument("--max-new-tokens", type=_number(int, 1, 1 << 15), default=40,
                   help="tokens to add at most (default 40; also bounded by the model's max_len)")
    p.add_argument("--temperature", type=_number(float, 0.0, 100.0), default=0.0,
                   help="0 = greedy (default); > 0 samples, < 1 sharper, > 1 flatter")
    _sampling_filters(p)
    p.add_argument("--n", type=_number(int, 1, 100), default=1,
                   help="continuations per prompt (default 1)")
    p.add_argument("--seed", type=_number(int, 0), default=0, help="seed for sampling")
    _threads(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser(
        "classify", help="label sentences with a fine-tuned classifier",
        description="Print label, probability and text for each text given as an argument, "
                    "else each line of standard input, else ask interactively.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n  npformer classify "lo kan vide la gato ."\n'
               "  npformer classify --model runs/classify/best.npz < sentences.txt")
    p.add_argument("text", nargs="*", help="texts to classify")
    p.add_argument("--model", default="runs/classify/best.npz",
                   help="checkpoint of a classifier (default runs/classify/best.npz)")
    _threads(p)
    p.set_defaults(func=cmd_classify)


def _tool_commands(sub):
    """data, attention, profile and gradcheck."""
    from ..data import CORPORA

    p = sub.add_parser(
        "data", help="write a built-in corpus (toy, copy, reverse) as TSV",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  npformer data\n  npformer data --task reverse --split test")
    p.add_argument("--task", choices=list(CORPORA), default="toy",
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
    _threads(p)
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


def _exercises_and_sweep_commands(sub):
    """exercises and sweep."""
    p = sub.add_parser(
        "exercises", help="list the exercises, or grade a file of your answers (progress table)",
        description="List the exercises (write each backward pass, and the LLM pieces, "
                    "yourself), or grade the answers in a Python file of yours and show which "
                    "exercises are done, failing or not started. The file is run in a child "
                    "process with a time and a memory limit, with your rights: grade files "
                    "from others in a throwaway account or container. Stubs: "
                    "notebooks/exercises_backward.ipynb, notebooks/exercises_llm.ipynb.")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="only these exercises (default: all)")
    p.add_argument("--check", metavar="FILE",
                   help="a Python file defining your answers (softmax_forward, softmax_backward, "
                        "...); grade every exercise it answers")
    p.add_argument("--verbose", action="store_true",
                   help="with --check: print the full report of each exercise, not one line")
    p.add_argument("--timeout", type=_number(float, 0, low_open=True), default=120.0,
                   metavar="SECONDS",
                   help="with --check: wall-clock limit for grading the whole file (default 120)")
    p.add_argument("--memory-limit", type=_number(int, 0), default=2048, metavar="MB",
                   help="with --check: memory the grading process may add, in MiB, where the "
                        "system allows a limit (default 2048; 0 = no limit)")
    p.set_defaults(func=cmd_exercises)

    p = sub.add_parser(
        "sweep", help="an IsoFLOP sweep: which model size is best for a compute budget",
        description="For each compute budget (in FLOPs) and each model size, pretrain one "
                    "decoder-only LM for as many tokens as the budget pays for, with its own "
                    "warm-up + cosine schedule and fresh text (never repeated), and write "
                    "its final validation loss, parameters, tokens and compute to a JSON "
                    "file. See notebooks/13_scale.ipynb.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  npformer sweep --budget 3e10:16x1,32x1,32x2 --out tiny.json\n"
               "  npformer sweep --seeds 0,1 --out notebooks/data/scale.json")
    p.add_argument("--budget", action="append", metavar="FLOPS:SIZES",
                   help="a compute budget in FLOPs and the model sizes WIDTHxLAYERS trained "
                        "with it, e.g. 1e12:32x2,48x2,64x2 (d_ff = 4 x width, heads of 16 "
                        "dimensions); repeat for more budgets (none: the grid of notebook "
                        "13, npformer/tools/sweep.py: DEFAULT_GRID)")
    p.add_argument("--seeds", type=_int_list(0), default="0",
                   help="seeds of initialisation and batch order, comma-separated (default 0)")
    p.add_argument("--lrs", type=_lr_list, default="tuned",
                   help="peak learning rates: tuned (per width, npformer/tools/sweep.py: "
                        "LEARNING_RATES), or comma-separated values, every run at each one "
                        "(a learning-rate sweep) (default tuned)")
    p.add_argument("--data", choices=["toy", "toy-english", "toy-velan"], default="toy",
                   help="generated text to train on (default toy)")
    p.add_argument("--out", default="sweep.json", help="JSON file of results (default "
                                                        "sweep.json)")
    p.add_argument("--plot", metavar="PNG", help="also save the IsoFLOP curves")
    _threads(p)
    p.set_defaults(func=cmd_sweep)


def _explore_command(sub):
    """explore: a local web page over trained models and runs."""
    p = sub.add_parser(
        "explore", help="open trained models in a local web page: tokens, attention, decoding",
        description="Start a local web server that shows what a model computes for the text "
                    "you type (tokens, embeddings, every attention head, the next-token "
                    "distribution, translation step by step, classification) and a training "
                    "run's curves as it trains. Offline; see docs/explore.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  npformer explore\n"
               "  npformer explore --model runs/toy/best.npz --model runs/lm/best.npz\n"
               "  npformer explore --run runs/toy --port 0")
    p.add_argument("--model", action="append", default=[], metavar="PATH",
                   help="a checkpoint to show (repeat for several; default: runs/toy, runs/lm "
                        "and runs/classify best.npz, those that exist)")
    p.add_argument("--run", action="append", default=[], metavar="DIR",
                   help="a training run's --out-dir whose log.jsonl and checkpoints to watch "
                        "(repeatable; the loaded models' own runs are watched anyway)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; "
                        "anything else lets other machines in, with a warning)")
    p.add_argument("--port", type=_number(int, 0, 65535), default=8765,
                   help="port (default 8765; 0 = any free port)")
    p.add_argument("--verbose", action="store_true", help="print every request")
    _threads(p)
    p.set_defaults(func=cmd_explore)


def build_parser():
    """The parser of `npformer COMMAND`: a training command per task, then the others."""
    from ..tasks import TASKS

    parser = Parser(
        prog="npformer", description="An educational encoder-decoder transformer in NumPy.",
        epilog="Run 'npformer COMMAND --help' for a command's options. Docs: docs/cli.md")
    parser.add_argument("--version", action="version", version=f"npformer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for task in TASKS.values():  # train, pretrain, finetune: one per task, from the registry
        training_command(sub, task)
    _translate_and_eval_commands(sub)
    _generate_and_classify_commands(sub)
    _tool_commands(sub)
    _exercises_and_sweep_commands(sub)
    _explore_command(sub)
    return parser


# The exceptions that are the user's to fix: one line and exit status 2, never a traceback.
USER_ERRORS = {"npformer.training.checkpoint": "CheckpointError",
               "npformer.nn.config": "ConfigError", "npformer.data.io": "DataError",
               "npformer.training.distributed": "DistributedError",
               "npformer.training.run_dir": "RunDirError", "npformer.tools.sweep": "SweepError",
               "npformer.tokenizers.base": "TokenizerError"}


def _user_errors():
    """UsageError and the USER_ERRORS classes, of the modules imported so far.

    An error can only come from a module that was imported, so nothing is imported
    here (importing the checkpoint module would start the kernels, whose own error,
    e.g. an unknown NPFORMER_BACKEND, may be the one being handled).
    """
    return (UsageError, *(getattr(sys.modules[module], name)
                          for module, name in USER_ERRORS.items() if module in sys.modules))


def _escape_unencodable(err):
    """Output error handler: what the stream cannot encode, readable and never an error.

    Bytes that came in undecodable (surrogateescape) go out as those bytes; any other
    character as a \\x, \\u escape.
    """
    chunk = err.object[err.start:err.end]
    if all(0xDC80 <= ord(c) <= 0xDCFF for c in chunk):
        return bytes(ord(c) - 0xDC00 for c in chunk), err.end
    return codecs.backslashreplace_errors(err)


codecs.register_error("npformer.escape", _escape_unencodable)


def _text_streams():
    """The one place the CLI sets how it reads and prints text, whatever the locale.

    Standard input: bytes that are not UTF-8 (or not the locale's encoding) arrive as
    the same lone surrogates Python uses for such bytes in arguments and file names,
    so every command reads them instead of dying; byte-level BPE sees the original
    bytes (tokenizers/bpe.py: utf8_bytes), word and character tokenizers an unknown
    token. Standard output gives those bytes back, and escapes anything else it
    cannot encode. Standard error escapes everything (Python's default).
    """
    for stream, errors in ((sys.stdin, "surrogateescape"), (sys.stdout, "npformer.escape"),
                           (sys.stderr, "backslashreplace")):
        if hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors=errors)
            except (ValueError, OSError):  # a closed or unusual stream: leave it
                pass


def _out_of_memory(args):
    """The one-line message for a MemoryError: what was being loaded, what to make smaller."""
    files = [f"{flag} {getattr(args, name)}" for flag, name in
             (("--model", "model"), ("--data", "data"), ("--from", "init_from"))
             if getattr(args, name, None)]
    where = f" (with {', '.join(files)})" if files else ""
    sizes = [f"--{name.replace('_', '-')}" for name in
             ("d_model", "d_ff", "n_layers", "max_tokens", "batch", "vocab_size")
             if hasattr(args, name)]
    fix = (f"use a smaller model or batch ({', '.join(sizes)})" if sizes
           else "the model or the data is too large for this machine's memory")
    return f"out of memory{where}; {fix}"


def _stop_writing_stdout():
    """After a closed pipe (`npformer ... | head -1`): send what is left to /dev/null."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (tests): nothing to do
        pass


def main(argv=None):
    _text_streams()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:  # the parser reads the task registry, which starts the kernels: check first
        _check_environment()
    except UsageError as err:
        command = next((a for a in argv if not a.startswith("-")), "")
        print(f"npformer {command}: error: {err}".replace("npformer : ", "npformer: "),
              file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    args.argv = argv  # --workers starts the same command again under mpiexec
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:  # the reader stopped (| head): stop quietly, as cat does
        _stop_writing_stdout()
        return 141  # 128 + SIGPIPE, the status of a command a closed pipe ended
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"npformer {args.command}: error: {_out_of_memory(args)}", file=sys.stderr)
        return 2
    except (*_user_errors(), OSError) as err:
        from ..training.distributed import rank_from_env

        if isinstance(err, OSError) and err.filename is not None:
            err = f"{err.filename}: {err.strerror or err}"
        if rank_from_env() == 0:  # under mpiexec every rank fails alike; one says why
            message = " ".join(str(err).split("\n"))
            print(f"npformer {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
