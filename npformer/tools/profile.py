"""Where one training step's time goes, per kind of layer.

`profile_step` runs a few training steps of a model on random data (full-length
sequences, no padding) with a timed tape, and adds up the forward and backward
time of every recorded op by its KIND: all self-attention ops of every layer
together, every layer norm together, and so on. Two rows come from outside the
tape:

  optimizer  the AdamW update (no gradient clipping)
  other      the rest of the step's wall time: Python between the ops, id checks
             and masks, zeroing the gradients, and Tape.backward adding each op's
             gradients into the parameter and activation slots

Every time is milliseconds per step (the mean over the timed steps); a row's
share is its part of the step's wall time, so the shares sum to 1.

    rows = profile_step(ModelConfig(), batch=64, src_len=16, tgt_len=16)
    print(format_profile(rows))
    plot_profile(rows, "profile.png")

The per-op numbers behind the rows are `TimedTape.summary(times=True)`; the kernels
behind them are discussed in docs/performance.md.
Shapes: B batch, S source len, T target len.
"""
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..nn.layers import (add_backward, cross_attention_backward, cross_entropy_backward,
                         dropout_backward, embedding_backward, ffn_backward,
                         fixed_positional_backward, layernorm_backward, linear_backward,
                         output_loss_backward, positional_backward, self_attention_backward,
                         tied_linear_backward)
from ..training.batching import Batch
from ..models.transformer import Transformer
from ..training.optim import AdamW
from ..nn.threads import get_blas_threads, set_blas_threads
from .timed_tape import TimedTape
from ..training.loop import train_step

# Kinds of taped ops, in data-flow order. Attention is split by its name below.
KINDS = ("embedding", "positional", "dropout", "layernorm", "self-attention",
         "cross-attention", "feed-forward", "residual", "output projection + loss")
OUTSIDE_TAPE = ("optimizer", "other")  # rows measured around the tape, not by it

# An op's kind is decided by its backward function: the tape records it anyway,
# and it does not depend on how blocks.py names the op.
KIND_OF_BACKWARD = {
    embedding_backward: "embedding",
    positional_backward: "positional",
    fixed_positional_backward: "positional",
    dropout_backward: "dropout",
    layernorm_backward: "layernorm",
    self_attention_backward: "self-attention",
    cross_attention_backward: "cross-attention",
    ffn_backward: "feed-forward",
    add_backward: "residual",
    linear_backward: "output projection + loss",  # a classifier's head, unfused
    tied_linear_backward: "output projection + loss",
    cross_entropy_backward: "output projection + loss",
    output_loss_backward: "output projection + loss",  # one fused op in training
}


class ProfileRow(NamedTuple):
    kind: str  # one of KINDS, "optimizer", "other" (or an unknown op's own name)
    forward_ms: float  # forward time of the kind's ops, per step
    backward_ms: float  # backward time of the kind's ops, per step
    outside_ms: float  # time outside the tape (optimizer and other rows only)
    total_ms: float  # forward + backward + outside
    share: float  # total_ms / wall time of the step


def op_kind(record):
    """The kind of one tape record; an op this module does not know keeps its own name."""
    kind = KIND_OF_BACKWARD.get(record.backward, record.name)
    if kind == "self-attention" and record.name.endswith("cross_attn"):
        kind = "cross-attention"
    return kind


def random_batch(config, batch, src_len, tgt_len, rng):
    """Random token ids with no padding: every position holds a non-PAD id.

    Shapes: -> src (B,S), tgt_in (B,T), tgt_out (B,T)
    """
    def ids(vocab, length):
        if vocab < 2:
            raise ValueError(f"vocabulary of {vocab}: needs at least one id besides PAD")
        x = rng.integers(0, vocab - 1, size=(batch, length))  # (B,L) over vocab-1 ids
        x[x >= config.pad_id] += 1  # skip PAD: uniform over the other ids
        return x

    src = ids(config.src_vocab_size, src_len)
    return src, ids(config.tgt_vocab_size, tgt_len), ids(config.tgt_vocab_size, tgt_len)


class TimedOptimizer:
    """Wraps an optimizer and notes how long its last step took (the profiler's "optimizer")."""

    def __init__(self, opt):
        self.opt = opt
        self.last_seconds = 0.0

    def step(self, grads, lr=None):
        t0 = time.perf_counter()
        self.opt.step(grads, lr=lr)
        self.last_seconds = time.perf_counter() - t0


def profile_step(config, batch, src_len, tgt_len, steps=5, threads=1, *,
                 label_smoothing=0.1, seed=0):
    """Time `steps` training steps (after one untimed warm-up step) and sum them by kind.

    A step is train.train_step (what train() runs), minus clipping: zero the
    gradients, forward and loss on a TimedTape, backward, AdamW step (timed by a
    wrapper around the optimizer, from outside). Dropout follows
    config.dropout. BLAS uses `threads` threads during the call (restored after).
    Returns ProfileRows: the taped kinds present, in KINDS order (unknown ops
    after them), then "optimizer" and "other".
    Shapes: random batches src (B,S), tgt_in (B,T), tgt_out (B,T)
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r}: must be an integer >= 1")
    model = Transformer(config)
    opt = TimedOptimizer(AdamW(model.params))
    data_rng = np.random.default_rng(seed)
    dropout_rng = np.random.default_rng(seed + 1)
    batches = [random_batch(config, batch, src_len, tgt_len, data_rng) for _ in range(steps + 1)]

    forward, backward = {}, {}  # kind -> seconds, summed over the timed steps
    optimizer_s = wall_s = 0.0
    previous_threads = get_blas_threads()
    set_blas_threads(threads)
    try:
        for step, (src, tgt_in, tgt_out) in enumerate(batches):
            tape = TimedTape()
            t0 = time.perf_counter()
            train_step(model, opt, Batch(src, tgt_in, tgt_out, tgt_out.size), opt.opt.lr,
                       dropout_rng, label_smoothing, tape=tape)
            t1 = time.perf_counter()
            if step == 0:
                continue  # warm-up: compiles (or loads) the jitted kernels
            wall_s += t1 - t0
            optimizer_s += opt.last_seconds
            for record, forward_s, backward_s in zip(tape.records, tape.forward_seconds,
                                                     tape.backward_seconds):
                kind = op_kind(record)
                forward[kind] = forward.get(kind, 0.0) + forward_s
                backward[kind] = backward.get(kind, 0.0) + backward_s
    finally:
        if previous_threads is not None:
            set_blas_threads(previous_threads)

    taped_s = sum(forward.values()) + sum(backward.values())
    other_s = wall_s - taped_s - optimizer_s
    order = [k for k in KINDS if k in forward] + [k for k in forward if k not in KINDS]
    ms = 1e3 / steps  # seconds summed over the steps -> ms per step
    rows = []
    for kind in order:
        total = forward[kind] + backward[kind]
        rows.append(ProfileRow(kind, forward[kind] * ms, backward[kind] * ms, 0.0,
                               total * ms, total / wall_s))
    for kind, seconds in (("optimizer", optimizer_s), ("other", other_s)):
        rows.append(ProfileRow(kind, 0.0, 0.0, seconds * ms, seconds * ms, seconds / wall_s))
    return rows


def format_profile(rows):
    """A text table of profile rows, largest share marked, with the step's total."""
    width = max(len(r.kind) for r in rows + [ProfileRow("total", 0, 0, 0, 0, 0)])
    head = (f"{'kind':<{width}} {'fwd ms':>9} {'bwd ms':>9} {'outside ms':>11} "
            f"{'total ms':>9} {'share':>7}")
    lines = [head, "-" * len(head)]

    def cell(value, size):
        return f"{value:>{size}.3f}" if value else f"{'-':>{size}}"

    for r in rows:
        lines.append(f"{r.kind:<{width}} {cell(r.forward_ms, 9)} {cell(r.backward_ms, 9)} "
                     f"{cell(r.outside_ms, 11)} {r.total_ms:>9.3f} {100 * r.share:>6.1f}%")
    lines.append("-" * len(head))
    total = sum(r.total_ms for r in rows)
    lines.append(f"{'total':<{width}} {sum(r.forward_ms for r in rows):>9.3f} "
                 f"{sum(r.backward_ms for r in rows):>9.3f} "
                 f"{sum(r.outside_ms for r in rows):>11.3f} {total:>9.3f} "
                 f"{100 * sum(r.share for r in rows):>6.1f}%")
    return "\n".join(lines)


def plot_profile(rows, path, title="time per training step"):
    """Save a horizontal stacked bar per kind (forward, backward, outside the tape) as PNG.

    Uses matplotlib.figure.Figure directly (no pyplot), so a notebook's backend
    is left alone. Returns the path written.
    """
    from matplotlib.figure import Figure  # optional dependency, only needed here

    kinds = [r.kind for r in rows]
    fwd = np.array([r.forward_ms for r in rows])  # (K,)
    bwd = np.array([r.backward_ms for r in rows])  # (K,)
    outside = np.array([r.outside_ms for r in rows])  # (K,)
    y = np.arange(len(rows))  # (K,) one bar per kind, top to bottom
    fig = Figure(figsize=(8, 1.2 + 0.35 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(y, fwd, color="tab:blue", label="forward")
    ax.barh(y, bwd, left=fwd, color="tab:orange", label="backward")
    ax.barh(y, outside, left=fwd + bwd, color="tab:gray", label="outside the tape")
    for i, r in enumerate(rows):
        ax.annotate(f" {100 * r.share:.1f}%", (r.total_ms, i), va="center", fontsize=8)
    ax.set_yticks(y, labels=kinds)
    ax.invert_yaxis()  # data-flow order from the top
    ax.set_xlabel("ms per step")
    ax.set_xlim(0, 1.15 * max(r.total_ms for r in rows))  # room for the labels
    ax.set_title(f"{title} ({sum(r.total_ms for r in rows):.1f} ms)")
    ax.legend(loc="lower right")
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
