"""Training: `train(config) -> history`, reading top to bottom.

data -> tokenizers -> model -> optimizer -> loop (teacher forcing, next-token
loss, AdamW, warm-up schedule, clipping) -> periodic validation (loss + BLEU on
a sample, best checkpoint, early stopping) -> final plot.

Files written to config.out_dir:
  last.npz     latest state, for --resume (saved at every validation, on Ctrl-C, at the end)
  best.npz     the checkpoint with the best validation score so far, by cfg.best_by: for a
               translator by default the mean of BLEU and exact match (in %) on the
               validation sample. BLEU alone, the rule before, barely sees a wrong action
               in a long target and once kept a checkpoint 8.5 points worse in exact
               match (docs/checkpoints.md#which-checkpoint-is-best)
  log.jsonl    one JSON record per logged step / validation (appended as it happens);
               a translator's log starts with a "data" record: max_len, training pairs
               used and left out (longer than max_len), tokens per word on each side
  curves.png   training / validation loss and the learning rate against the step

Resume is exact: a run stopped at any moment and resumed gives the same losses,
bit for bit, as one that never stopped (tests/test_faults.py kills runs to check).
Three choices make that possible:
  - everything random in a step depends only on (seed, step): the batch order
    on (seed, epoch), the dropout masks on a generator seeded with [seed, step],
    so no random-generator state has to be carried from one step to the next;
  - the checkpoint holds the whole loop state (TrainState below), including
    the log records, which resume writes back so log.jsonl matches the checkpoint;
  - Ctrl-C only asks the loop to stop: the current step finishes, then last.npz
    is saved (a second Ctrl-C stops at once, still saving the last finished step).
"""
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import signal
import stat
import sys
import threading
import time
from pathlib import Path

import numpy as np

from . import distributed, run_dir
from .batching import bucket_batches
from .checkpoint import (CheckpointError, check_history, load_checkpoint, read_checkpoint_meta,
                         save_checkpoint)
from .config import ConfigError, TrainConfig
from .data import DataError
from .optim import AdamW, clip_grad_norm, make_schedule
from .tape import Tape
from .tasks import (SCORES, TASKS, Built, best_by, pretrained_checkpoint, selection_score,
                    with_architecture_of)
from .threads import set_blas_threads

# Fields a resumed run may change: how long it runs and how it reports, never
# what it computes (changing max_steps or eval_every changes when it stops and
# validates; the cosine schedule then stretches to the new max_steps).
TOO_LONG = {"translate": "pairs longer than", "lm": "lines were cut into pieces of",
            "classify": "texts were cut to"}
CHECK_SAME_EVERY = 100  # steps between checks that all processes hold the same parameters
RESUMABLE_FIELDS = ("max_steps", "max_minutes", "threads", "log_every", "eval_every",
                    "patience")
# The rule that picked best.npz in runs saved before best_by existed (resume keeps it).
LEGACY_BEST_BY = {"translate": "bleu", "lm": "valid_loss", "classify": "accuracy"}


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); the message says what to try."""


@dataclasses.dataclass
class TrainState:
    """Everything the loop carries from one step to the next; saved in every checkpoint."""

    step: int = 0  # optimizer steps done
    best_score: float = -math.inf  # best selection_score so far (the run's best_by rule)
    evals_without_gain: int = 0  # validations since the best one (early stopping)
    validated_step: int = 0  # last step whose validation was recorded
    window_loss: float = 0.0  # sum of loss * tokens since the last progress line
    window_tokens: int = 0  # tokens since the last progress line
    data: dict = dataclasses.field(default_factory=dict)  # fingerprint of the corpus
    history: list = dataclasses.field(default_factory=list)  # every log record so far

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d, where):
        """Validate a saved state (a checkpoint's "state"); old checkpoints lack some fields."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        d = dict(d)
        if "best_bleu" in d:  # the name before language models and classifiers came
            d.setdefault("best_score", d.pop("best_bleu"))
        values = {k: v for k, v in d.items() if k in known}  # e.g. the old "rng" is dropped
        state = cls(**values)
        for name in ("step", "evals_without_gain", "validated_step", "window_tokens"):
            value = getattr(state, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise CheckpointError(f"{where}: state.{name}={value!r} is not an integer >= 0")
        for name in ("best_score", "window_loss"):
            value = getattr(state, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or math.isnan(value) or value == math.inf:
                raise CheckpointError(f"{where}: state.{name}={value!r} is not a finite number")
        if not isinstance(state.data, dict):
            raise CheckpointError(f"{where}: state.data is malformed")
        check_history(state.history, where)
        if "validated_step" not in d:  # version 1 checkpoints were saved after a validation
            state.validated_step = state.step
        return state


# ----------------------------------------------------------------------------- data
def load_corpus(cfg):
    """The train/valid/test splits named by cfg.data for cfg.task; (splits, description)."""
    return TASKS[cfg.task].load(cfg)


def data_fingerprint(cfg):
    """What the corpus is, to check on resume: the built-in name, or each file's SHA-256."""
    if TASKS[cfg.task].builtin(cfg.data):
        return {"builtin": cfg.data, "data_seed": cfg.data_seed, "data_size": cfg.data_size}
    digests = {}
    for name in [cfg.data] + ([cfg.tgt_file] if cfg.tgt_file else []):
        h = hashlib.sha256()
        try:
            if not stat.S_ISREG(os.stat(name).st_mode):  # read here, then again to load it:
                raise DataError(f"{name}: not a regular file (a pipe or a device?); training "
                                "reads its data more than once, so save it to a file first")
            with open(name, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except FileNotFoundError:
            raise DataError(f"{name}: no such file, and not a built-in data set (choose "
                            f"{', '.join(TASKS[cfg.task].builtins)} or a file)") from None
        except OSError as err:
            raise DataError(f"{name}: cannot read ({err.strerror or err})") from None
        digests[name] = h.hexdigest()
    return {"files": digests, "data_seed": cfg.data_seed}


def check_same_data(saved, now):
    """Refuse to resume on other data than the run started with (ConfigError)."""
    if not saved or saved == now:  # checkpoints from before this check have no fingerprint
        return
    changed = [name for name, digest in now.get("files", {}).items()
               if saved.get("files", {}).get(name) != digest]
    what = (f"{', '.join(changed)} changed (SHA-256 differs)" if changed
            else f"the run used {saved}, not {now}")
    raise ConfigError(f"the training data changed since this run started: {what}; resuming "
                      "would train on other data. Restore it, or start a new run in another "
                      "--out-dir")


# ----------------------------------------------------------------------- one step
def dropout_rng(seed, step, rank=0):
    """The generator of step `step`'s dropout masks: a function of (seed, step) only.

    With data parallelism each process (rank) draws the masks of its own shard.
    """
    return np.random.default_rng([seed, step] if rank == 0 else [seed, step, rank])


def train_step(model, opt, batch, lr, rng, label_smoothing=0.0, clip_norm=0.0, tape=None,
               sync=None):
    """One optimizer step on one batch; returns the (smoothed) training loss.

    Zero the gradients, forward + loss on a tape, backward, clip, AdamW update.
    A non-finite loss raises TrainingError before anything is updated. `tape`
    may be a timed Tape (the profiler's); by default a fresh one is used.
    Data parallelism: `batch` is this process's shard of the global batch (None
    when the shard is empty) and `sync(loss, n_tokens) -> global loss` sums the
    gradients of all processes (npformer/distributed.py: GradientSync).
    """
    tape = Tape() if tape is None else tape
    model.zero_grad()
    loss = 0.0
    if batch is not None:
        loss = model.batch_loss(batch, tape=tape, train=True, rng=rng,
                                label_smoothing=label_smoothing)
        if math.isfinite(loss):
            tape.backward(model.grads, "loss")
    if sync is not None:
        loss = sync(loss, 0 if batch is None else batch.n_tokens)
    if not math.isfinite(loss):
        raise TrainingError(f"the loss became {loss}")
    if clip_norm > 0:
        clip_grad_norm(model.grads, clip_norm)
    opt.step(model.grads, lr=lr)
    return loss


def body_lr_scale(model, cfg):
    """Fine-tuning: {key: learning-rate factor} of a classifier's body (all but the head)."""
    if cfg.task != "classify":
        return None
    factor = 0.0 if cfg.freeze_body else cfg.body_lr_scale
    return {key: factor for key in model.params if not key.startswith("head.")}


def make_lr_schedule(cfg):
    """The learning rate at each step, as configured (see npformer.optim.make_schedule)."""
    if cfg.schedule == "warmup_cosine":
        return make_schedule("warmup_cosine", peak_lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                             total_steps=cfg.max_steps, min_lr=cfg.lr * 0.02)
    if cfg.schedule == "inverse_sqrt":  # peak lr reached at the end of warm-up
        return make_schedule("inverse_sqrt_warmup", d_model=cfg.d_model,
                             warmup_steps=max(cfg.warmup_steps, 1),
                             scale=cfg.lr * math.sqrt(cfg.d_model * max(cfg.warmup_steps, 1)))
    return make_schedule("constant_with_warmup", peak_lr=cfg.lr, warmup_steps=cfg.warmup_steps)


# ------------------------------------------------------------------ starting a run
def resume_config(run_dir, **changes):
    """The configuration saved in run_dir/last.npz, with some RESUMABLE_FIELDS changed.

    out_dir becomes run_dir (a run directory may have been moved); a change to any
    field outside RESUMABLE_FIELDS is a ConfigError.
    """
    changes.pop("out_dir", None)
    if changes.get("max_len") == 0:  # "from the data": the length the run chose then
        changes.pop("max_len")
    if changes.get("best_by") == "":  # "the default": the rule the run chose then
        changes.pop("best_by")
    path = Path(run_dir) / "last.npz"
    if not path.exists():
        raise CheckpointError(f"nothing to resume: {path} does not exist (start a new run "
                            f"without --resume, or point --out-dir at an earlier run)")
    meta = read_checkpoint_meta(path)
    if not meta.get("train_config"):
        raise CheckpointError(f"{path}: holds no training configuration; cannot resume it")
    fields = dict(meta["train_config"])
    if "best_by" not in fields:  # saved before the choice: keep the rule the run used
        fields["best_by"] = LEGACY_BEST_BY[fields.get("task", "translate")]
    saved = TrainConfig.from_dict(fields)
    fixed = sorted(k for k, v in changes.items()
                   if k not in RESUMABLE_FIELDS and v != getattr(saved, k))
    if fixed:
        raise ConfigError(
            "a resumed run keeps its configuration; cannot change "
            + ", ".join(f"{k} (the run has {getattr(saved, k)!r})" for k in fixed)
            + f". Only {', '.join(RESUMABLE_FIELDS)} may change; for anything else start a "
              "new run with another --out-dir")
    return saved.replace(out_dir=str(run_dir),
                         **{k: v for k, v in changes.items() if k in RESUMABLE_FIELDS})


def write_log(path, history):
    """Rewrite log.jsonl from the checkpoint's records, atomically (no duplicates, no gaps)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text("".join(json.dumps(h) + "\n" for h in history), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise log_error(path, err) from None


def log_error(path, err):
    """The TrainingError for a log.jsonl that cannot be written (a full disk, say)."""
    return TrainingError(f"{path}: could not write the log ({err.strerror or err}); stopped. "
                         f"The checkpoints in {path.parent} are unchanged: make room, then "
                         "continue with --resume")


class CtrlC:
    """Ctrl-C as a request: the loop stops after the current step and saves.

    The first Ctrl-C sets `stop_requested`; a second one raises KeyboardInterrupt
    at once, except inside `critical()` sections (a parameter update, a checkpoint
    write), where it waits for the section to end. Only the main thread receives
    signals; elsewhere Ctrl-C keeps its usual meaning.
    """

    def __init__(self, log):
        self.log = log
        self.stop_requested = False
        self.abort_requested = False
        self.depth = 0  # > 0 inside a critical section

    def _handler(self, signum, frame):
        if not self.stop_requested:
            self.stop_requested = True
            self.log("Ctrl-C: finishing this step, then saving (Ctrl-C again: stop sooner)")
        elif self.depth:
            self.abort_requested = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def critical(self):
        """A section that a second Ctrl-C does not cut in half."""
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if self.abort_requested and not self.depth:
            raise KeyboardInterrupt

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def left_out_warning(dropped, n_pairs, max_len, from_data):
    """The warning line for training pairs longer than max_len (left out of training)."""
    fix = ("max_len was chosen from the data within a memory bound (the line above); a "
           "larger --max-len keeps them, at more memory per batch" if from_data else
           "raise --max-len, or give --max-len 0 to choose it from the data")
    return (f"warning: {dropped:,} of {n_pairs:,} training pairs ({100 * dropped / n_pairs:.1f}%) "
            f"need more than max_len={max_len} tokens (incl. BOS/EOS) and are left out: the "
            f"model never learns them; {fix}")


def _clock(seconds):
    seconds = int(max(seconds, 0))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _print_line(line):
    print(line, file=sys.stderr, flush=True)


def _silent(line):
    pass


# ---------------------------------------------------------------------- the loop
def train(cfg, resume=False, log=None, overwrite=False):
    """Train a model as configured; returns the history (every log record of the run).

    resume=True continues from out_dir/last.npz exactly where it stopped. `cfg`
    must then describe the same run (make it with `resume_config`); only
    RESUMABLE_FIELDS may differ. A new run refuses an out_dir that holds a run
    unless overwrite=True, and no two runs write into one out_dir at once
    (RunDirError; npformer/run_dir.py). `log(line)` receives the progress lines
    (default: print to stderr).
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError("cfg must be a TrainConfig")
    world = distributed.world()  # one process, or one of N started by mpiexec
    with run_dir.claim(cfg.out_dir, resume, overwrite, writer=world.rank == 0) as out:
        return _train(cfg, resume, log, world, out)


def _train(cfg, resume, log, world, out):
    """`train` in its claimed run directory `out`, read top to bottom."""
    t_start = time.perf_counter()
    is_root = world.rank == 0  # rank 0 alone logs, validates and writes files
    log = (log or _print_line) if is_root else _silent

    # --- when resuming, the saved run
    if resume:
        cfg = resume_config(cfg.out_dir, **cfg.to_dict())
        ckpt = load_checkpoint(out / "last.npz")
        state = TrainState.from_dict(ckpt.state, where=str(out / "last.npz"))
    cfg = cfg.replace(best_by=best_by(cfg))  # the default rule, named (kept on resume)
    set_blas_threads(cfg.threads)
    task = TASKS[cfg.task]  # what differs between translation, LM and classification
    if cfg.init_from and not resume:  # a wrong checkpoint fails now, not after loading the data
        pretrained_checkpoint(cfg)

    # --- data (the saved run's data when resuming, checked to be the same)
    fingerprint = data_fingerprint(cfg)
    if resume:
        check_same_data(state.data, fingerprint)
    splits, note = load_corpus(cfg)
    log(f"data: {note}; train {len(splits['train'])}, valid {len(splits['valid'])}, "
        f"test {len(splits['test'])}")
    if not splits["train"] or not splits["valid"]:
        raise DataError(f"{cfg.data}: too small to split: {len(splits['train'])} training and "
                        f"{len(splits['valid'])} validation pairs; training needs at least one "
                        f"of each (a larger corpus, or a larger --valid-frac than "
                        f"{cfg.valid_frac:g})")

    # --- tokenizers, model, optimizer: fresh, or exactly as saved
    if resume:
        built = Built(ckpt.model, ckpt.src_tokenizer, ckpt.tgt_tokenizer, ckpt.labels, "")
        state.data = fingerprint
        log(f"resuming at step {state.step} from {out / 'last.npz'}")
    else:
        state = TrainState(data=fingerprint)
        built = task.build(cfg, splits)
        if built.note:
            log(built.note)
    model, src_tok, tgt_tok = built.model, built.src_tokenizer, built.tgt_tokenizer
    max_len_from_data = cfg.max_len == 0
    if not resume:  # the run records what it built: a max_len chosen from the data
        cfg = with_architecture_of(cfg, model.config)  # (lengths.py), a pretrained LM's sizes
    if is_root:
        write_log(out / "log.jsonl", state.history)
    if world.size > 1:
        log(f"data parallel: {world.size} processes, each with a shard of every batch")
    world.check_same([*model.params.values(), json.dumps([src_tok.to_dict(), tgt_tok.to_dict()])
                      .encode()], "the initial parameters or tokenizers")
    sync = distributed.GradientSync(world, model) if world.size > 1 else None
    vocab = (f"source {src_tok.vocab_size}, target {tgt_tok.vocab_size}" if task.name == "translate"
             else f"{src_tok.vocab_size}")
    log(f"vocab: {vocab} ({src_tok.kind}); model: {model.config.kind}"
        f"{f', {len(built.labels)} classes' if built.labels else ''}, {model.n_params:,} "
        "parameters")
    opt = AdamW(model.params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                lr_scale=body_lr_scale(model, cfg))
    if resume and ckpt.optimizer_state is not None:
        opt.load_state_dict(ckpt.optimizer_state)
    schedule = make_lr_schedule(cfg)

    examples, dropped = task.encode(splits["train"], built, cfg)
    valid_examples, _ = task.encode(splits["valid"], built, cfg)
    if dropped and task.name == "translate":  # pairs the model will never learn: say so
        log(left_out_warning(dropped, len(examples) + dropped, cfg.max_len, max_len_from_data))
    elif dropped:
        log(f"note: {dropped} training {TOO_LONG[task.name]} max_len={cfg.max_len}")
    if not examples or not valid_examples:
        raise DataError(f"{cfg.data}: no {'training' if not examples else 'validation'} "
                        f"example fits in max_len={cfg.max_len} (tokens incl. BOS/EOS); "
                        "raise --max-len")
    n_batches = len(bucket_batches(examples, cfg.max_tokens, cfg.seed, 0, length=task.length))

    # --- bookkeeping: log records, checkpoints, validation (files on rank 0 only)
    log_file = open(out / "log.jsonl", "a", encoding="utf-8") if is_root else None

    def record(entry):
        state.history.append(entry)
        if log_file:
            try:
                log_file.write(json.dumps(entry) + "\n")
                log_file.flush()
            except OSError as err:
                raise log_error(out / "log.jsonl", err) from None

    if not resume and task.name == "translate":  # what the run trains on, first in the log
        record({"type": "data", "step": 0, "max_len": cfg.max_len,
                "max_len_from_data": max_len_from_data,
                **task.data_facts(splits["train"], len(examples), dropped, built)})

    def save(name):
        if not is_root:
            return
        save_checkpoint(out / name, model, src_tok, tgt_tok, cfg.to_dict(), opt.state_dict(),
                        state.to_dict(), labels=built.labels)

    def validate():
        if is_root:
            fields, summary = task.validate(built, cfg, valid_examples, splits["valid"])
            score = selection_score(fields, cfg.best_by)  # higher is better
            with ctrl_c.critical():  # the record, the state and both checkpoints, together
                record({"type": "valid", "step": state.step, **fields})
                improved = score > state.best_score
                if improved:
                    state.best_score, state.evals_without_gain = score, 0
                else:
                    state.evals_without_gain += 1
                state.validated_step = state.step
                if improved:  # best before last: a kill in between leaves both consistent
                    save("best.npz")
                save("last.npz")
            log(f"valid step {state.step}: {summary}" + ("  [best, saved]" if improved else ""))
        # every rank takes rank 0's verdict (for early stopping)
        shared = json.loads(world.broadcast(json.dumps(
            [state.best_score, state.evals_without_gain, state.step]).encode()))
        state.best_score, state.evals_without_gain, state.validated_step = shared

    def progress(epoch, loss, lr, now):
        elapsed = now - t_loop
        tok_s = state.window_tokens / max(now - window_t0, 1e-9)
        eta = (cfg.max_steps - state.step) * elapsed / max(state.step - start_step, 1)
        if cfg.max_minutes:
            eta = min(eta, cfg.max_minutes * 60 - elapsed)
        entry = {"type": "train", "step": state.step, "epoch": epoch, "loss": loss,
                 "window_loss": state.window_loss / state.window_tokens, "lr": lr,
                 "tokens_per_s": tok_s, "elapsed_s": now - t_start}
        record(entry)
        state.window_loss, state.window_tokens = 0.0, 0  # the state is complete before the log
        log(f"step {state.step:>5} | epoch {epoch} | loss {entry['window_loss']:.3f} | "
            f"{tok_s:,.0f} {task.unit}/s | lr {lr:.2e} | {_clock(now - t_start)} elapsed, "
            f"ETA {_clock(eta)}")

    # --- the loop
    t_loop = window_t0 = time.perf_counter()
    start_step = state.step
    batches = {}  # {epoch: that epoch's batches}, only the current one kept
    stop_reason = "max_steps reached"
    updating = False  # True while the parameters may be half-updated: nothing to save then
    try:
        with CtrlC(log) as ctrl_c:
            if state.validated_step < state.step and state.step % cfg.eval_every == 0:
                validate()  # the run stopped during this step's validation: finish it
            while state.step < cfg.max_steps:
                # one step: its batch and dropout masks depend only on (seed, step)
                epoch, index = divmod(state.step, n_batches)
                if epoch not in batches:
                    batches = {epoch: bucket_batches(examples, cfg.max_tokens, cfg.seed, epoch,
                                                     length=task.length)}
                mine = distributed.shard(batches[epoch][index], world.rank, world.size)
                batch = task.collate([examples[i] for i in mine]) if mine else None
                lr = schedule(state.step + 1)
                rng = dropout_rng(cfg.seed, state.step + 1, world.rank)
                over_time = cfg.max_minutes and time.perf_counter() - t_loop > cfg.max_minutes * 60
                if sync:  # every rank learns whether any wants to stop after this step
                    sync.votes[:] = [ctrl_c.stop_requested, bool(over_time and is_root)]
                with ctrl_c.critical():
                    updating = True
                    try:
                        loss = train_step(model, opt, batch, lr, rng, cfg.label_smoothing,
                                          cfg.clip_norm, sync=sync)
                    except TrainingError as err:
                        raise TrainingError(
                            f"{err} at step {state.step + 1}; stopped without saving. The last "
                            f"good checkpoint (if any) is {out / 'last.npz'}. Try a lower --lr "
                            f"(now {cfg.lr:g}) or a longer --warmup-steps.") from None
                    n_tokens = sync.n_tokens if sync else batch.n_tokens  # of the global batch
                    state.step += 1
                    state.window_loss += loss * n_tokens
                    state.window_tokens += n_tokens
                    updating = False
                if sync:
                    stop_votes, time_votes = sync.votes
                    if stop_votes:
                        ctrl_c.stop_requested = True
                    over_time = bool(time_votes)
                if state.step % CHECK_SAME_EVERY == 0:
                    world.check_same(model.params.values(), "the parameters")
                # reporting, validation, stopping
                if state.step % cfg.log_every == 0 or state.step == cfg.max_steps:
                    now = time.perf_counter()
                    progress(epoch, loss, lr, now)
                    window_t0 = now
                if state.step % cfg.eval_every == 0:
                    validate()
                    if cfg.patience and state.evals_without_gain >= cfg.patience:
                        stop_reason = (f"no better {SCORES[cfg.best_by][1]} in "
                                       f"{cfg.patience} validations (early stop)")
                        break
                if ctrl_c.stop_requested:
                    raise KeyboardInterrupt
                if over_time:
                    stop_reason = f"time budget of {cfg.max_minutes:g} min reached"
                    break
            if state.validated_step != state.step:
                validate()
            world.check_same(model.params.values(), "the parameters")
    except KeyboardInterrupt:
        if not updating:  # keep the work done so far
            save("last.npz")
            log(f"interrupted at step {state.step}; saved {out / 'last.npz'}; continue with: "
                f"npformer train --resume --out-dir {out}")
        raise
    finally:
        if log_file:
            with contextlib.suppress(OSError):  # a full disk was reported already
                log_file.close()
    log(f"stopped at step {state.step}: {stop_reason}; training took "
        f"{_clock(time.perf_counter() - t_start)}")
    if is_root:
        plot_history(state.history, out / "curves.png")
    return state.history


def plot_history(history, path):
    """Save training/validation loss and learning rate against the step as a PNG."""
    from matplotlib.figure import Figure  # no pyplot: leaves a notebook's backend alone

    train_rows = [h for h in history if h["type"] == "train"]
    valid_rows = [h for h in history if h["type"] == "valid"]
    fig = Figure(figsize=(10, 3.8))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot([h["step"] for h in train_rows], [h["window_loss"] for h in train_rows],
             label="training loss (smoothed labels)")
    ax1.plot([h["step"] for h in valid_rows], [h["valid_loss"] for h in valid_rows], "o-",
             label="validation loss")
    ax1.set_xlabel("step")
    ax1.set_ylabel("cross-entropy (nats / token)")
    ax1.set_title("Loss")
    ax1.legend()
    ax2.plot([h["step"] for h in train_rows], [h["lr"] for h in train_rows])
    ax2.set_xlabel("step")
    ax2.set_ylabel("learning rate")
    ax2.set_title("Learning-rate schedule")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
