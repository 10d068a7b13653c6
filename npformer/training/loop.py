"""Training: `train(config) -> history`, the step and the loop on one screen.

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
  - the checkpoint holds the whole loop state (session.TrainState), including
    the log records, which resume writes back so log.jsonl matches the checkpoint;
  - Ctrl-C only asks the loop to stop: the current step finishes, then last.npz
    is saved (a second Ctrl-C stops at once, still saving the last finished step).

The loop below reads like nanoGPT's: batch -> forward and backward -> update. The
run's setup and its bookkeeping (resume, Ctrl-C, stop votes, logging, validation,
the time budget, the files) sit next door in session.py, and the run directory's
lock in run_dir.py.
"""
import math

from . import distributed, run_dir
from ..nn.tape import Tape
from .config import TrainConfig
from .optim import clip_grad_norm
from .session import Session, TrainingError


def train_step(model, opt, batch, lr, rng, label_smoothing=0.0, clip_norm=0.0, tape=None,
               sync=None):
    """One optimizer step on one batch; returns the (smoothed) training loss.

    Zero the gradients, forward + loss on a tape, backward, clip, AdamW update.
    A non-finite loss raises TrainingError before anything is updated. `tape`
    may be a timed Tape (the profiler's); by default a fresh one is used.
    Data parallelism: `batch` is this process's shard of the global batch (None
    when the shard is empty) and `sync(loss, n_tokens) -> global loss` sums the
    gradients of all processes (npformer/training/distributed.py: GradientSync).
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


def train(cfg, resume=False, log=None, overwrite=False):
    """Train a model as configured; returns the history (every log record of the run).

    resume=True continues from out_dir/last.npz exactly where it stopped. `cfg`
    must then describe the same run (make it with `session.resume_config`); only
    RESUMABLE_FIELDS may differ. A new run refuses an out_dir that holds a run
    unless overwrite=True, and no two runs write into one out_dir at once
    (RunDirError; npformer/training/run_dir.py). `log(line)` receives the progress lines
    (default: print to stderr).
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError("cfg must be a TrainConfig")
    world = distributed.world()  # one process, or one of N started by mpiexec
    with run_dir.claim(cfg.out_dir, resume, overwrite, writer=world.rank == 0) as out:
        run = Session(cfg, resume, log, world, out)  # data, model, optimizer: new or resumed
        cfg, model, opt = run.cfg, run.model, run.opt
        stop_reason = "max_steps reached"
        with run:  # Ctrl-C asks the loop to stop; last.npz is saved on the way out
            while run.state.step < cfg.max_steps:
                batch, lr, rng = run.next_batch()  # depends only on (seed, step)
                with run.updating():  # forward, backward, update: never cut in half
                    loss = train_step(model, opt, batch, lr, rng, cfg.label_smoothing,
                                      cfg.clip_norm, sync=run.sync)
                    run.count(loss, batch)
                stop_reason = run.after_step(loss, lr)  # log, validate, stop?
                if stop_reason:
                    break
            run.finish(stop_reason or "max_steps reached")
        return run.state.history
