"""The run around the loop: setup, exact resume, Ctrl-C, votes, logging, validation, files.

training/loop.py holds the step and the loop; everything that keeps a run safe lives
here, behind `Session`'s small interface (next_batch, updating, count, after_step,
finish). Why resume is exact, and what the run writes: see loop.py's docstring.
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

from . import distributed
from ..data import DataError
from ..nn.config import ConfigError
from ..nn.threads import set_blas_threads
from ..tasks import SCORES, TASKS, best_by, pretrained_checkpoint, selection_score, \
    with_architecture_of
from .batching import bucket_batches
from .checkpoint import CheckpointError, check_history, load_checkpoint, read_checkpoint_meta, \
    save_checkpoint
from .config import TrainConfig
from .optim import AdamW, make_schedule

CHECK_SAME_EVERY = 100  # steps between checks that all processes hold the same parameters
# Fields a resumed run may change: how long it runs and how it reports, never
# what it computes (changing max_steps or eval_every changes when it stops and
# validates; the cosine schedule then stretches to the new max_steps).
RESUMABLE_FIELDS = ("max_steps", "max_minutes", "threads", "log_every", "eval_every",
                    "patience")


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


def dropout_rng(seed, step, rank=0):
    """The generator of step `step`'s dropout masks: a function of (seed, step) only.

    With data parallelism each process (rank) draws the masks of its own shard.
    """
    return np.random.default_rng([seed, step] if rank == 0 else [seed, step, rank])


def make_lr_schedule(cfg):
    """The learning rate at each step, as configured (see npformer.training.optim.make_schedule)."""
    if cfg.schedule == "warmup_cosine":
        return make_schedule("warmup_cosine", peak_lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                             total_steps=cfg.max_steps, min_lr=cfg.lr * 0.02)
    if cfg.schedule == "inverse_sqrt":  # peak lr reached at the end of warm-up
        return make_schedule("inverse_sqrt", d_model=cfg.d_model,
                             warmup_steps=max(cfg.warmup_steps, 1),
                             scale=cfg.lr * math.sqrt(cfg.d_model * max(cfg.warmup_steps, 1)))
    return make_schedule("constant", peak_lr=cfg.lr, warmup_steps=cfg.warmup_steps)


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
        fields["best_by"] = TASKS[fields.get("task", TrainConfig().task)].legacy_best_by
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


def _clock(seconds):
    seconds = int(max(seconds, 0))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _print_line(line):
    print(line, file=sys.stderr, flush=True)


def _silent(line):
    pass



# ---------------------------------------------------------------------- the run
class Session:
    """One training run around the loop: its setup and the bookkeeping that keeps it safe.

    ModelBundle, it holds the run's data, model, optimizer and schedule, fresh or exactly as
    saved (resume). The loop asks it for each step's batch (`next_batch`), does the
    update inside `updating()` (a second Ctrl-C waits for it) and hands the result to
    `after_step`, which logs, validates, checks the processes agree, and says when to
    stop. Used as a context manager it catches Ctrl-C (saving last.npz) and closes the
    log. Rank 0 alone logs, validates and writes files.
    """

    def __init__(self, cfg, resume, log, world, out):
        self.t_start = time.perf_counter()
        self.world, self.out, self.resume = world, out, resume
        self.is_root = world.rank == 0
        self.log = (log or _print_line) if self.is_root else _silent
        cfg, ckpt = self._start(cfg)
        self._build(cfg, ckpt)
        self.log_file = open(out / "log.jsonl", "a", encoding="utf-8") if self.is_root else None
        facts = self.task.data_facts(self.splits["train"], len(self.examples), self.dropped,
                                     self.built)
        if not resume and facts is not None:  # what the run trains on, first in the log
            self.record({"type": "data", "step": 0, "max_len": self.cfg.max_len,
                         "max_len_from_data": self.max_len_from_data, **facts})
        self.updating_now = False  # True while the parameters may be half-updated
        self.ctrl_c = CtrlC(self.log)
        self.batches = {}  # {epoch: that epoch's batches}, only the current one kept
        self.over_time = False

    def _start(self, cfg):
        """The configuration and, on resume, the saved run and its data, checked."""
        ckpt = None
        if self.resume:
            cfg = resume_config(cfg.out_dir, **cfg.to_dict())
            ckpt = load_checkpoint(self.out / "last.npz")
            self.state = TrainState.from_dict(ckpt.state, where=str(self.out / "last.npz"))
        cfg = cfg.replace(best_by=best_by(cfg))  # the default rule, named (kept on resume)
        set_blas_threads(cfg.threads)
        self.task = TASKS[cfg.task]  # what differs between the tasks
        if cfg.init_from and not self.resume:  # a wrong checkpoint fails now, not after the data
            pretrained_checkpoint(cfg)
        fingerprint = data_fingerprint(cfg)
        if self.resume:
            check_same_data(self.state.data, fingerprint)
            self.state.data = fingerprint
        else:
            self.state = TrainState(data=fingerprint)
        self.splits, note = load_corpus(cfg)
        splits = self.splits
        self.log(f"data: {note}; train {len(splits['train'])}, valid {len(splits['valid'])}, "
                 f"test {len(splits['test'])}")
        if not splits["train"] or not splits["valid"]:
            raise DataError(f"{cfg.data}: too small to split: {len(splits['train'])} training "
                            f"and {len(splits['valid'])} validation pairs; training needs at "
                            f"least one of each (a larger corpus, or a larger --valid-frac than "
                            f"{cfg.valid_frac:g})")
        return cfg, ckpt

    def _build(self, cfg, ckpt):
        """Tokenizers, model, optimizer, schedule and examples: fresh, or exactly as saved."""
        task, world, out = self.task, self.world, self.out
        if self.resume:
            built = ckpt.bundle()
            self.log(f"resuming at step {self.state.step} from {out / 'last.npz'}")
        else:
            built = task.build(cfg, self.splits)
            if built.note:
                self.log(built.note)
        model, src_tok, tgt_tok = built.model, built.src_tokenizer, built.tgt_tokenizer
        self.max_len_from_data = cfg.max_len == 0
        if not self.resume:  # the run records what it built: a max_len chosen from the data
            cfg = with_architecture_of(cfg, model.config)  # (lengths.py), a pretrained LM's sizes
        self.cfg, self.built, self.model = cfg, built, model
        if self.is_root:
            write_log(out / "log.jsonl", self.state.history)
        if world.size > 1:
            self.log(f"data parallel: {world.size} processes, each with a shard of every batch")
        world.check_same([*model.params.values(), json.dumps([src_tok.to_dict(),
                                                              tgt_tok.to_dict()]).encode()],
                         "the initial parameters or tokenizers")
        self.sync = distributed.GradientSync(world, model) if world.size > 1 else None
        vocab = (f"source {src_tok.vocab_size}, target {tgt_tok.vocab_size}"
                 if task.two_vocabularies else f"{src_tok.vocab_size}")
        self.log(f"vocab: {vocab} ({src_tok.kind}); model: {model.config.kind}"
                 f"{f', {len(built.labels)} classes' if built.labels else ''}, "
                 f"{model.n_params:,} parameters")
        self.opt = AdamW(model.params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                         lr_scale=task.lr_scale(model, cfg))
        if self.resume and ckpt.optimizer_state is not None:
            self.opt.load_state_dict(ckpt.optimizer_state)
        self.schedule = make_lr_schedule(cfg)
        self.examples, self.dropped = task.encode(self.splits["train"], built, cfg)
        self.valid_examples, _ = task.encode(self.splits["valid"], built, cfg)
        if self.dropped:  # examples left out or cut: say so
            self.log(task.dropped_note(self.dropped, len(self.examples), cfg,
                                       self.max_len_from_data))
        if not self.examples or not self.valid_examples:
            raise DataError(f"{cfg.data}: no {'training' if not self.examples else 'validation'}"
                            f" example fits in max_len={cfg.max_len} (tokens incl. BOS/EOS); "
                            "raise --max-len")
        self.n_batches = len(bucket_batches(self.examples, cfg.max_tokens, cfg.seed, 0,
                                            length=task.length))

    # --- the loop's side of a step
    def __enter__(self):
        self.ctrl_c.__enter__()
        self.t_loop = self.window_t0 = time.perf_counter()
        self.start_step = self.state.step
        try:
            if self.state.validated_step < self.state.step \
                    and self.state.step % self.cfg.eval_every == 0:
                self.validate()  # the run stopped during this step's validation: finish it
        except BaseException:  # (Ctrl-C here too saves last.npz, as in the loop)
            if not self.__exit__(*sys.exc_info()):
                raise
        return self

    def next_batch(self):
        """This process's part of the next step's batch, its learning rate and dropout masks.

        The batch and the masks depend only on (seed, step): what makes resume exact.
        """
        cfg, state, world = self.cfg, self.state, self.world
        epoch, index = divmod(state.step, self.n_batches)
        if epoch not in self.batches:
            self.batches = {epoch: bucket_batches(self.examples, cfg.max_tokens, cfg.seed, epoch,
                                                  length=self.task.length)}
        mine = distributed.shard(self.batches[epoch][index], world.rank, world.size)
        batch = self.task.collate([self.examples[i] for i in mine]) if mine else None
        self.epoch = epoch
        self.over_time = bool(cfg.max_minutes
                              and time.perf_counter() - self.t_loop > cfg.max_minutes * 60)
        if self.sync:  # every rank learns whether any wants to stop after this step
            self.sync.votes[:] = [self.ctrl_c.stop_requested, self.over_time and self.is_root]
        return batch, self.schedule(state.step + 1), dropout_rng(cfg.seed, state.step + 1,
                                                                 world.rank)

    @contextlib.contextmanager
    def updating(self):
        """The update: a second Ctrl-C waits for it; a bad loss stops the run without saving."""
        with self.ctrl_c.critical():
            self.updating_now = True
            try:
                yield
            except TrainingError as err:
                raise TrainingError(
                    f"{err} at step {self.state.step + 1}; stopped without saving. The last "
                    f"good checkpoint (if any) is {self.out / 'last.npz'}. Try a lower --lr "
                    f"(now {self.cfg.lr:g}) or a longer --warmup-steps.") from None
            self.updating_now = False

    def count(self, loss, batch):
        """A finished step: its loss, weighted by the tokens of the global batch."""
        n_tokens = self.sync.n_tokens if self.sync else batch.n_tokens
        self.state.step += 1
        self.state.window_loss += loss * n_tokens
        self.state.window_tokens += n_tokens

    def after_step(self, loss, lr):
        """Votes, the processes' agreement, logging, validation; why to stop, or None."""
        cfg, state = self.cfg, self.state
        if self.sync:
            stop_votes, time_votes = self.sync.votes
            if stop_votes:
                self.ctrl_c.stop_requested = True
            self.over_time = bool(time_votes)
        if state.step % CHECK_SAME_EVERY == 0:
            self.world.check_same(self.model.params.values(), "the parameters")
        if state.step % cfg.log_every == 0 or state.step == cfg.max_steps:
            now = time.perf_counter()
            self.progress(loss, lr, now)
            self.window_t0 = now
        if state.step % cfg.eval_every == 0:
            self.validate()
            if cfg.patience and state.evals_without_gain >= cfg.patience:
                return (f"no better {SCORES[cfg.best_by][1]} in {cfg.patience} validations "
                        "(early stop)")
        if self.ctrl_c.stop_requested:
            raise KeyboardInterrupt
        if self.over_time:
            return f"time budget of {cfg.max_minutes:g} min reached"
        return None

    def finish(self, stop_reason):
        """The last validation and agreement check, inside the Ctrl-C guard."""
        if self.state.validated_step != self.state.step:
            self.validate()
        self.world.check_same(self.model.params.values(), "the parameters")
        self.stop_reason = stop_reason

    def __exit__(self, kind, err, tb):
        self.ctrl_c.__exit__(kind, err, tb)
        try:
            if kind is KeyboardInterrupt and not self.updating_now:  # keep the work done
                self.save("last.npz")
                self.log(f"interrupted at step {self.state.step}; saved "
                         f"{self.out / 'last.npz'}; continue with: npformer train --resume "
                         f"--out-dir {self.out}")
        finally:
            if self.log_file:
                with contextlib.suppress(OSError):  # a full disk was reported already
                    self.log_file.close()
        if kind is None:
            self.log(f"stopped at step {self.state.step}: {self.stop_reason}; training took "
                     f"{_clock(time.perf_counter() - self.t_start)}")
            if self.is_root:
                plot_history(self.state.history, self.out / "curves.png")
        return False

    # --- bookkeeping: log records, checkpoints, validation (files on rank 0 only)
    def record(self, entry):
        self.state.history.append(entry)
        if self.log_file:
            try:
                self.log_file.write(json.dumps(entry) + "\n")
                self.log_file.flush()
            except OSError as err:
                raise log_error(self.out / "log.jsonl", err) from None

    def save(self, name):
        if not self.is_root:
            return
        built = self.built
        save_checkpoint(self.out / name, self.model, built.src_tokenizer, built.tgt_tokenizer,
                        self.cfg.to_dict(), self.opt.state_dict(), self.state.to_dict(),
                        labels=built.labels)

    def validate(self):
        state = self.state
        if self.is_root:
            fields, summary = self.task.validate(self.built, self.cfg, self.valid_examples,
                                                 self.splits["valid"])
            score = selection_score(fields, self.cfg.best_by)  # higher is better
            with self.ctrl_c.critical():  # the record, the state and both checkpoints, together
                self.record({"type": "valid", "step": state.step, **fields})
                improved = score > state.best_score
                if improved:
                    state.best_score, state.evals_without_gain = score, 0
                else:
                    state.evals_without_gain += 1
                state.validated_step = state.step
                if improved:  # best before last: a kill in between leaves both consistent
                    self.save("best.npz")
                self.save("last.npz")
            self.log(f"valid step {state.step}: {summary}"
                     + ("  [best, saved]" if improved else ""))
        # every rank takes rank 0's verdict (for early stopping)
        shared = json.loads(self.world.broadcast(json.dumps(
            [state.best_score, state.evals_without_gain, state.step]).encode()))
        state.best_score, state.evals_without_gain, state.validated_step = shared

    def progress(self, loss, lr, now):
        state, cfg = self.state, self.cfg
        elapsed = now - self.t_loop
        tok_s = state.window_tokens / max(now - self.window_t0, 1e-9)
        eta = (cfg.max_steps - state.step) * elapsed / max(state.step - self.start_step, 1)
        if cfg.max_minutes:
            eta = min(eta, cfg.max_minutes * 60 - elapsed)
        entry = {"type": "train", "step": state.step, "epoch": self.epoch, "loss": loss,
                 "window_loss": state.window_loss / state.window_tokens, "lr": lr,
                 "tokens_per_s": tok_s, "elapsed_s": now - self.t_start}
        self.record(entry)
        state.window_loss, state.window_tokens = 0.0, 0  # the state is complete before the log
        self.log(f"step {state.step:>5} | epoch {self.epoch} | loss {entry['window_loss']:.3f} | "
                 f"{tok_s:,.0f} {self.task.unit}/s | lr {lr:.2e} | "
                 f"{_clock(now - self.t_start)} elapsed, ETA {_clock(eta)}")



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
