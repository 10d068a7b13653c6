"""Helpers for the notebooks: small models, shipped with the notebooks or trained once and cached.

Several notebooks want a trained model to look at (tokens, embeddings,
attention, decoding). Training it in every notebook would cost minutes, and a
model trained on another CPU differs in its last digits (rounding differences
grow over hundreds of steps), so every number a notebook prints about it would
differ a little from machine to machine. So the runs below are **shipped** with
the notebooks (notebooks/data/models/NAME/: best.npz without optimizer state,
log.jsonl, weight snapshots, and made.json with the settings, the command that
made them and the quality they reached), and every machine starts from the same
weights. `python -m npformer.devtools.tutorial_tools ship` re-makes them with the current
code; tests/test_shipped_models.py re-makes them in the suite and checks that
the code still learns to the quality recorded in made.json.

A run whose settings differ from the shipped one (`toy_model(max_steps=2000)`,
or a checkout without notebooks/data) is trained once and kept in a cache
directory (NPFORMER_CACHE, default ~/.cache/npformer); later calls load it in a
fraction of a second. Delete the directory to retrain.

The same scheme gives the language models of notebooks 10-13:
  toy_lm_run() / toy_lm()   a small decoder-only LM on the toy text, with copies of
                            its weights at LM_SNAPSHOTS steps (notebooks 10, 11)
  icl_lm_run() / icl_lm()   the same kind of model pretrained on toy-icl text, which
                            holds few-shot task lines (notebook 12)

and the experiments that notebooks 10 and 11 run live in a small slice and
benchmarks/ run in full (so both run the same code):
  lm_race(kind, ...)        the tutorial LM, or an RNN LM, trained on the same batches
                            for a few steps, timed (notebook 10, benchmarks/rnn_race.py)
  kl_by_part(model, ...)    KL(generator || model) at every position of toy lines,
                            by part of the line (notebook 10, benchmarks/rnn_race.py)
  finetune(lm_path, n, ...) one fine-tuning (or from-scratch) run of notebook 11
                            (benchmarks/finetune_seeds.py runs the grid over seeds)
"""
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from .. import __version__
from ..training.checkpoint import load_checkpoint
from ..training.config import TrainConfig

# A short, fixed-seed training run: good enough to show real attention patterns
# and mostly correct translations, short enough for a notebook (see docs).
# (The notebooks' text describes this exact run: change it and re-read them.)
TUTORIAL_TRAINING = dict(max_steps=400, warmup_steps=100, max_tokens=4096, max_minutes=0.0,
                         eval_every=400, eval_sentences=100, log_every=100, seed=0)


# The language model of notebooks 10 and 11: 2 layers, C = 64, 400 steps of 2048 tokens
# on 200,000 tokens of mixed toy text (about a minute). The inverse-square-root schedule
# does not depend on max_steps, so the run can stop at LM_SNAPSHOTS, keep a copy of its
# weights, and resume as if it had never stopped.
TUTORIAL_LM = dict(task="lm", data="toy", data_size=200_000, d_model=64, n_heads=4, d_ff=256,
                   n_layers=2, max_len=64, max_tokens=2048, lr=3e-3, schedule="inverse_sqrt",
                   warmup_steps=25, max_steps=400, max_minutes=0.0, eval_every=50,
                   log_every=10, dropout=0.0, label_smoothing=0.0, seed=0)
LM_SNAPSHOTS = (25, 75, 150)  # steps at which toy_lm_run keeps the weights (step{n}.npz)
# Notebook 12: the same kind of model on toy-icl text (mixed text + few-shot task lines).
ICL_LM = {**TUTORIAL_LM, "data": "toy-icl", "max_steps": 600, "eval_every": 100,
          "log_every": 50}


SHIPPED_DIR = Path(__file__).resolve().parents[2] / "notebooks" / "data" / "models"


def below(value, bound):
    """"< bound", after checking that value < bound: a rounding-level difference, printed alike on every CPU.

    A difference such as 6.9e-18 between two float64 computations of the same number is
    rounding: its digits depend on the CPU (BLAS blocking, SIMD width), so a notebook
    prints the bound it is under, never the digits. Raises AssertionError if it is not.
    """
    if not value < bound:  # NaN fails too
        raise AssertionError(f"{value!r} is not below {bound:g}")
    return f"< {bound:g}"


def cache_dir():
    """Where tutorial checkpoints are kept."""
    return Path(os.environ.get("NPFORMER_CACHE", Path.home() / ".cache" / "npformer"))


def _run_dir(prefix, settings):
    """The cache directory of one training run: named by a hash of its settings."""
    key = hashlib.sha1(json.dumps([__version__, settings], sort_keys=True).encode()).hexdigest()
    return cache_dir() / f"{prefix}-{key[:12]}"


def _say(line):
    print(line, flush=True)


def shipped_run(name, settings):
    """The shipped run directory notebooks/data/models/NAME if it was made with `settings`.

    None when there is none (e.g. an installed package without the notebooks) or when
    it was made with other settings: then the caller trains the run itself.
    """
    made = SHIPPED_DIR / name / "made.json"
    if not made.exists():
        return None
    info = json.loads(made.read_text(encoding="utf-8"))
    return made.parent if info.get("settings") == json.loads(json.dumps(settings)) else None


def _train_toy(settings, out, log):
    """Train the tutorial translator of `settings` into `out` (best.npz, log.jsonl)."""
    from ..training.loop import train

    cfg = TrainConfig(**settings, out_dir=str(out))
    train(cfg, log=log or _say, overwrite=True)  # (a run interrupted before its first checkpoint)
    return out


def toy_model(log=None, **changes):
    """A trained toy translator (a Checkpoint: .model, .src_tokenizer, .tgt_tokenizer).

    The shipped model when `changes` are none (identical weights on every machine);
    otherwise trained on first use (about a minute or two on a 2-core CPU), then loaded
    from the cache. `changes` override fields of the tutorial TrainConfig.
    """
    settings = {**TUTORIAL_TRAINING, **changes}
    out = shipped_run("toy", settings)
    if out is None:
        out = _run_dir("toy", settings)
        if not (out / "best.npz").exists():
            _train_toy(settings, out, log)
    return load_checkpoint(out / "best.npz")


def _lm_run(prefix, settings, snapshots, log):
    """Train (once) an LM run of `settings` in the cache; its directory."""
    out = _run_dir(prefix, settings)
    if (out / "best.npz").exists():
        return out
    if out.exists():  # a run that was interrupted: start again
        shutil.rmtree(out)
    return _lm_run_into(out, settings, snapshots, log)


def _lm_run_into(out, settings, snapshots, log):
    """Train an LM run of `settings` into `out`, stopping at each snapshot step to keep a copy."""
    from ..training.loop import train

    cfg = TrainConfig(**settings, out_dir=str(out))
    stops = [s for s in sorted(snapshots) if s < cfg.max_steps] + [cfg.max_steps]
    for i, stop in enumerate(stops):
        train(cfg.replace(max_steps=stop), resume=i > 0, log=log or _say)
        if stop != cfg.max_steps:
            shutil.copy(out / "last.npz", out / f"step{stop}.npz")
    return out


def toy_lm_run(log=None, **changes):
    """The run directory of the tutorial language model: shipped, or trained on first use.

    It holds best.npz, log.jsonl (every training and validation record) and
    step{n}.npz for n in LM_SNAPSHOTS. `changes` override fields of TUTORIAL_LM.
    Read it, do not write into it (the shipped one is part of the repository).
    """
    settings = {**TUTORIAL_LM, **changes}
    return shipped_run("lm", settings) or _lm_run("lm", settings, LM_SNAPSHOTS, log)


def toy_lm(log=None, **changes):
    """The tutorial language model (a Checkpoint), trained on first use (about a minute)."""
    return load_checkpoint(toy_lm_run(log, **changes) / "best.npz")


def icl_lm_run(log=None, **changes):
    """The run directory of the in-context-learning LM (ICL_LM): shipped, or trained on first use."""
    settings = {**ICL_LM, **changes}
    return shipped_run("icl", settings) or _lm_run("icl", settings, (), log)


# ----------------------------------------------------------------- making the shipped runs
# name -> (settings, snapshot steps, what made.json records about its quality)
SHIPPED = {"toy": (TUTORIAL_TRAINING, ()), "lm": (TUTORIAL_LM, LM_SNAPSHOTS), "icl": (ICL_LM, ())}


def quality(ckpt):
    """What a run's best checkpoint reached: the validation record that made it best.

    best.npz is saved right after that record, so it is the last one in its history.
    """
    valid = [h for h in ckpt.state["history"] if h["type"] == "valid"]
    return {k: v for k, v in valid[-1].items() if k != "type"}


def make_run(name, out, log=None):
    """Train the run `name` of SHIPPED from scratch into the directory `out`; its quality.

    Writes out/best.npz and out/step{n}.npz without optimizer moments (the notebooks
    only read the weights), out/log.jsonl and out/made.json. Used by
    `python -m npformer.devtools.tutorial_tools ship` and tests/test_shipped_models.py.
    """
    import platform

    import numpy as np

    from ..training.checkpoint import save_checkpoint

    settings, snapshots = SHIPPED[name]
    out = Path(out)
    with tempfile.TemporaryDirectory() as work:
        run = Path(work) / name
        if name == "toy":
            _train_toy(settings, run, log)
        else:
            _lm_run_into(run, settings, snapshots, log)
        out.mkdir(parents=True, exist_ok=True)
        files = ["best.npz"] + [f"step{n}.npz" for n in snapshots if n < settings["max_steps"]]
        for file in files:
            ckpt = load_checkpoint(run / file)
            save_checkpoint(out / file, ckpt.model, ckpt.src_tokenizer, ckpt.tgt_tokenizer,
                            ckpt.train_config, None, ckpt.state, labels=ckpt.labels)
        shutil.copy(run / "log.jsonl", out / "log.jsonl")
    made = {"settings": settings, "command": f"python -m npformer.devtools.tutorial_tools ship {name}",
            "quality": quality(load_checkpoint(out / "best.npz")),
            "made_with": {"npformer": __version__, "numpy": np.__version__,
                          "python": platform.python_version(), "machine": platform.machine()}}
    (out / "made.json").write_text(json.dumps(made, indent=1) + "\n", encoding="utf-8")
    return made["quality"]


def icl_lm(log=None, **changes):
    """The LM pretrained on toy-icl text (a Checkpoint), trained on first use."""
    return load_checkpoint(icl_lm_run(log, **changes) / "best.npz")


# ---------------------------------------------------------------- notebook 10: RNN vs transformer
def lm_race(kind="transformer", steps=25, eval_every=25, seed=0, lr=None, d_model=64,
            log=None):
    """Train the tutorial LM ("transformer") or an RNN LM ("rnn", width d_model) from scratch.

    Both see exactly the batches of TUTORIAL_LM (its text, tokenizer, token budget and
    order, learning-rate schedule; `lr` overrides the peak rate) through the same
    train.train_step, with one BLAS thread. Returns the model and a list of records
    {step, tokens, cpu_seconds, wall_seconds, valid_loss} every `eval_every` steps; the
    clocks count the training steps only (CPU time: what this process computed, less
    disturbed by other jobs on a shared machine than the wall clock).
    """
    from ..training.batching import bucket_batches
    from ..tasks.evaluation import validation_loss
    from ..training.optim import AdamW
    from ..models.rnn_lm import RNNConfig, RNNLanguageModel
    from ..tasks import TASKS
    from ..nn.threads import set_blas_threads
    from ..training.session import load_corpus, make_lr_schedule
    from ..training.loop import train_step

    set_blas_threads(1)
    settings = {**TUTORIAL_LM, "seed": seed, "out_dir": "unused"}
    if lr is not None:
        settings["lr"] = lr
    cfg = TrainConfig(**settings)
    task = TASKS["lm"]
    splits, _ = load_corpus(cfg)
    built = task.build(cfg, splits)
    if kind == "rnn":
        model = RNNLanguageModel(RNNConfig(built.src_tokenizer.vocab_size, d_model, seed=seed))
    elif kind == "transformer":
        model = built.model
    else:
        raise ValueError(f"kind={kind!r}: transformer or rnn")
    examples, _ = task.encode(splits["train"], built, cfg)
    valid, _ = task.encode(splits["valid"], built, cfg)
    opt = AdamW(model.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = make_lr_schedule(cfg)
    n_batches = len(bucket_batches(examples, cfg.max_tokens, cfg.seed, 0, length=task.length))
    batches, records, cpu, wall, tokens = {}, [], 0.0, 0.0, 0
    for step in range(steps):
        epoch, index = divmod(step, n_batches)
        if epoch not in batches:
            batches = {epoch: bucket_batches(examples, cfg.max_tokens, cfg.seed, epoch,
                                             length=task.length)}
        batch = task.collate([examples[i] for i in batches[epoch][index]])
        c0, w0 = time.process_time(), time.perf_counter()
        train_step(model, opt, batch, schedule(step + 1), None, cfg.label_smoothing,
                   cfg.clip_norm)
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
        tokens += batch.n_tokens
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            records.append({"step": step + 1, "tokens": tokens, "cpu_seconds": cpu,
                            "wall_seconds": wall,
                            "valid_loss": validation_loss(model, valid, cfg.max_tokens, task)})
            if log:
                log(f"{kind} step {step + 1}: valid loss {records[-1]['valid_loss']:.3f}")
    return model, records


LINE_PARTS = ("English", "Velan", "pair: English", "pair: Velan")


def line_part(line, t):
    """What position t of a mixed toy line predicts: one of LINE_PARTS.

    In a pair line "ENGLISH = VELAN", "=" and the words before it are the English half.
    """
    from ..data.grammar import is_grammatical_english

    words = line.split()
    if "=" in words:
        return "pair: English" if t <= words.index("=") else "pair: Velan"
    return "English" if is_grammatical_english(line) else "Velan"


def kl_by_part(model, tokenizer, lines, truth=None):
    """KL(generator || model) in nats at every position of mixed toy lines, by line part.

    truth: line_next_token_distributions of each line (computed when not given; about
    10 ms per position). `model.forward(ids)` gives next-token logits (a LanguageModel
    or an RNNLanguageModel). Returns ({part: [KL at each position]}, the model's and the
    generator's summed loss on the tokens that came).
    """
    import math

    import numpy as np

    from ..data import line_next_token_distributions
    from ..tokenizers import BOS_ID, EOS_ID, PAD_ID

    truth = truth or [line_next_token_distributions(line) for line in lines]
    rows = [[BOS_ID] + tokenizer.encode(line) for line in lines]
    ids = np.full((len(rows), max(map(len, rows))), PAD_ID, dtype=np.int64)  # (N,T)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
    logits = model.forward(ids).astype(np.float64)  # (N,T,V)
    logq = logits - logits.max(-1, keepdims=True)
    logq -= np.log(np.exp(logq).sum(-1, keepdims=True))  # (N,T,V) log-softmax

    def token_id(word):
        return EOS_ID if word == "<eos>" else tokenizer.encode(word)[0]

    parts, model_nll, true_nll = {part: [] for part in LINE_PARTS}, 0.0, 0.0
    for i, (line, dists) in enumerate(zip(lines, truth)):
        for t, (p, word) in enumerate(zip(dists, line.split() + ["<eos>"])):
            kl = sum(q * (math.log(q) - logq[i, t, token_id(w)]) for w, q in p.items())
            parts[line_part(line, t)].append(kl)
            model_nll -= logq[i, t, token_id(word)]
            true_nll -= math.log(p[word])
    return parts, model_nll, true_nll


# ---------------------------------------------------------------------- notebook 11: fine-tuning
# A short fixed budget (with few labels every step sees all of them); the head reads the
# text's last token ("before_eos"), a position the pretrained LM has read (layers/pooling.py)
FINETUNE = dict(data="plural_subject", max_steps=60, warmup_steps=10, eval_every=20,
                log_every=20, max_minutes=0.0, pooling="before_eos")


def finetune(lm_path, n, seed, scratch=False, **changes):
    """Fine-tune the LM at lm_path on n labels of FINETUNE's task -> (test accuracy, Checkpoint).

    `npformer finetune --from lm_path --data-size n --seed seed --data-seed seed` with
    FINETUNE's settings; scratch=True keeps the LM's architecture and tokenizer but not
    its weights (the baseline). The seed picks the labelled examples, the head's
    initialisation and the batch order. Accuracy of the best checkpoint (by validation
    accuracy) on the task's 500 test sentences.
    """
    from ..tasks import PRESETS
    from ..data import make_task
    from ..tasks import TASKS, ModelBundle, accuracy
    from ..training.loop import train

    settings = {**PRESETS["classify"], **FINETUNE, "init_from": str(lm_path), "scratch": scratch,
                "data_size": n, "seed": seed, "data_seed": seed, **changes}
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(**{**settings, "out_dir": out})
        train(cfg, log=lambda line: None)
        best = load_checkpoint(Path(out) / "best.npz")
    task = TASKS["classify"]
    test = make_task(cfg.data, n_train=n, seed=seed)["test"]
    built = ModelBundle(best.model, best.src_tokenizer, best.src_tokenizer, best.labels, "")
    examples, _ = task.encode(test, built, cfg)
    return accuracy(best.model, examples, cfg.max_tokens, task), best
