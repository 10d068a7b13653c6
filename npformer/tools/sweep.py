"""Scaling sweeps: train a grid of small language models, fit power laws (notebook 13).

`sweep(sizes, token_amounts, seeds, steps)` pretrains one decoder-only LM per
(size, amount of training text, seed) with the same step budget, and returns one
row per run: its parameter counts, the tokens it trained on, and its validation
loss (the best one seen, as early stopping would keep, and the whole curve).
`npformer sweep` is the command-line shell around it; it also writes the rows
as JSON and the log-log plots.

Sizes are "CxL": width C = d_model and L layers, with d_ff = 4C and heads of
size 16 (H = max(1, C // 16)), so one number sets the shape as in GPT-style
model families. Two parameter counts are kept: all of them, and the
non-embedding ones (the blocks and final norm), which Kaplan et al. (2020) found
to give the cleaner power law; with a 400-word vocabulary the embedding matrix
is most of a tiny model.

The fit: L(x) = a * x^(-alpha) is a straight line in log-log axes,
log L = log a - alpha log x (`fit_power_law`, least squares on the logs). The
toy text has a known entropy floor E (npformer/data/entropy.py): no model can go
below it, so the loss bends towards E as models grow; fitting the reducible part
L - E = a * x^(-alpha) straightens it again.

Compute: one training step costs about 6 N multiply-adds per token (forward 2N,
backward 4N, N the non-embedding parameters), so a run's compute is
C = 6 N D_seen with D_seen the tokens it has trained on (`compute`).
"""
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from ..training.batching import bucket_batches
from ..tasks import PRESETS
from ..training.config import TrainConfig
from ..data import TOY_TEXTS, entropy_floor
from ..tasks import TASKS

# The step budget and the optimizer of every run of a sweep (a short, fixed schedule).
SWEEP_TRAINING = dict(max_tokens=2048, lr=3e-3, warmup_steps=30, dropout=0.0,
                      max_minutes=0.0, label_smoothing=0.0, max_len=64)
HEAD_SIZE = 16  # D: every model's heads have 16 dimensions


class SweepError(ValueError):
    """A sweep argument is invalid; the message says which and why."""


def parse_size(text):
    """"64x2" -> (d_model 64, 2 layers); raises SweepError with the reason."""
    try:
        width, layers = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise SweepError(f"size {text!r}: write WIDTHxLAYERS, e.g. 64x2") from None
    if width < HEAD_SIZE or width % HEAD_SIZE or not 1 <= layers <= 64 or width > 4096:
        raise SweepError(f"size {text!r}: the width must be a multiple of {HEAD_SIZE} "
                         "(up to 4096) and the layers in 1..64")
    return width, layers


def size_config(width, layers):
    """The TrainConfig fields of one model size "CxL" (module docstring)."""
    return dict(d_model=width, n_layers=layers, d_ff=4 * width,
                n_heads=max(1, width // HEAD_SIZE))


def count_params(model):
    """(all parameters, non-embedding parameters) of a LanguageModel."""
    embedding = sum(v.size for k, v in model.params.items() if k.endswith("embed.W")
                    or k.endswith("_pos.W") or k.startswith("out."))
    return model.n_params, model.n_params - embedding


def tokens_seen(examples, max_tokens, seed, steps, task):
    """Tokens trained on after each of `steps` steps, as the training loop batches them."""
    counts, epoch = [], 0
    while len(counts) < steps:
        for batch in bucket_batches(examples, max_tokens, seed, epoch, length=task.length):
            counts.append(sum(task.length(examples[i]) for i in batch))
            if len(counts) == steps:
                break
        epoch += 1
    return np.cumsum(counts)


def compute(non_embedding_params, tokens):
    """Training compute in multiply-adds, about 6 N D (module docstring)."""
    return 6.0 * non_embedding_params * tokens


def run_one(width, layers, n_tokens, seed, steps, eval_every, data="toy", threads=1,
            out_dir=None, log=None):
    """Pretrain one LM of size CxL on n_tokens of text for `steps` steps -> a result row."""
    from ..training.loop import train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(**{**PRESETS["lm"], **SWEEP_TRAINING, **size_config(width, layers),
                             "data": data, "data_size": n_tokens, "max_steps": steps,
                             "warmup_steps": min(SWEEP_TRAINING["warmup_steps"], steps),
                             "eval_every": eval_every, "log_every": eval_every, "seed": seed,
                             "threads": threads, "out_dir": str(out_dir or tmp)})
        task = TASKS["lm"]
        start = time.perf_counter()
        history = train(cfg, log=log or (lambda line: None))
        seconds = time.perf_counter() - start
        splits, _ = task.load(cfg)
        built = task.build(cfg, splits)  # the same tokenizer and shapes as the run's
        examples, _ = task.encode(splits["train"], built, cfg)
    seen = tokens_seen(examples, cfg.max_tokens, cfg.seed, steps, task)
    n_all, n_body = count_params(built.model)
    curve = [[h["step"], int(seen[h["step"] - 1]), h["valid_loss"]]
             for h in history if h["type"] == "valid"]
    best = min(curve, key=lambda row: row[2])
    return {"size": f"{width}x{layers}", "d_model": width, "n_layers": layers,
            "params": int(n_all), "non_embedding_params": int(n_body),
            "data_tokens": int(sum(task.length(e) for e in examples)), "data_size": n_tokens,
            "seed": seed, "steps": steps, "tokens_seen": int(seen[-1]),
            "valid_loss": best[2], "best_step": best[0], "final_valid_loss": curve[-1][2],
            "curve": curve, "seconds": round(seconds, 1)}


def sweep(sizes, token_amounts, seeds=(0,), steps=300, eval_every=50, data="toy", threads=1,
          log=None):
    """Train every (size, amount of text, seed) for `steps` steps -> list of result rows.

    sizes: "CxL" strings (or (C, L) pairs); token_amounts: tokens of training text
    (data_size); each row is `run_one`'s. `log(line)` gets one line per finished run.
    """
    sizes = [parse_size(s) if isinstance(s, str) else tuple(s) for s in sizes]
    if not sizes or not token_amounts or not seeds:
        raise SweepError("a sweep needs at least one size, one token amount and one seed")
    if steps < 1 or eval_every < 1:
        raise SweepError(f"steps={steps}, eval_every={eval_every}: both must be >= 1")
    log = log or (lambda line: None)
    rows = []
    for n_tokens in token_amounts:
        for width, layers in sizes:
            for seed in seeds:
                row = run_one(width, layers, int(n_tokens), seed, steps, eval_every, data,
                              threads)
                log(f"{row['size']:>6} ({row['non_embedding_params']:>8,} non-embedding "
                    f"params) | {n_tokens:>9,} tokens | seed {seed} | best valid loss "
                    f"{row['valid_loss']:.3f} at step {row['best_step']} | {row['seconds']:.0f} s")
                rows.append(row)
    return rows


# ------------------------------------------------------------------------ analysis
def fit_power_law(x, y, floor=0.0):
    """Least-squares fit of y - floor = a * x^(-alpha) in log-log axes -> (a, alpha).

    Shapes: x (n,), y (n,) positive, y > floor
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float) - floor
    if len(x) < 2 or np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("fit_power_law needs at least two points with x > 0 and y > floor")
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)  # log y = log a - alpha log x
    return float(math.exp(intercept)), float(-slope)


def mean_over_seeds(rows):
    """{(size, data_size): mean best validation loss over the seeds} of a sweep's rows."""
    groups = {}
    for row in rows:
        groups.setdefault((row["size"], row["data_size"]), []).append(row["valid_loss"])
    return {key: float(np.mean(losses)) for key, losses in groups.items()}


def loss_floor(data="toy"):
    """The entropy floor of the sweep's text in nats per token (EOS predicted, as the LM does)."""
    kind = TOY_TEXTS.get(data)
    return entropy_floor(kind, extra_tokens_per_line=1)["nats_per_token"] if kind else None


def plot_sweep(rows, path=None, floor=None, axes=None):
    """Log-log plots of the best validation loss against size and against data; the figure.

    Left: against non-embedding parameters, one line per amount of text; right: against
    training tokens, one line per size; each with the power law fitted to the largest
    amount / the largest size (dashed) and the entropy floor (dotted) if given.
    """
    from matplotlib.figure import Figure

    if axes is None:
        fig = Figure(figsize=(11, 4.2))
        axes = fig.subplots(1, 2)
    fig = axes[0].figure
    means = mean_over_seeds(rows)
    params = {row["size"]: row["non_embedding_params"] for row in rows}
    tokens = {row["data_size"]: row["data_tokens"] for row in rows}
    sizes = sorted(params, key=params.get)
    amounts = sorted(tokens)
    for ax, lines, points, xlabel, x_of in (
            (axes[0], amounts, sizes, "non-embedding parameters N", params),
            (axes[1], sizes, amounts, "training tokens D (unique)", tokens)):
        for line in lines:
            xs = [x_of[p] for p in points]
            ys = [means[(p, line) if ax is axes[0] else (line, p)] for p in points]
            label = f"{tokens[line]:,} tokens" if ax is axes[0] else f"size {line}"
            ax.plot(xs, ys, "o-", label=label)
        last = lines[-1]
        xs = np.array([x_of[p] for p in points], dtype=float)
        ys = np.array([means[(p, last) if ax is axes[0] else (last, p)] for p in points])
        a, alpha = fit_power_law(xs, ys)
        grid = np.geomspace(xs.min(), xs.max(), 50)
        ax.plot(grid, a * grid ** -alpha, "k--", lw=1,
                label=f"fit $L = a x^{{-{alpha:.3f}}}$")
        if floor is not None:
            ax.axhline(floor, color="gray", ls=":", label=f"entropy floor {floor:.3f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("best validation loss (nats / token)")
        ax.legend(fontsize=8)
    axes[0].set_title("Loss against model size")
    axes[1].set_title("Loss against data")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def write_sweep(path, rows, settings):
    """Save a sweep as JSON: the settings it ran with, the entropy floor, and the rows."""
    out = {"settings": settings, "training": SWEEP_TRAINING,
           "entropy_floor": loss_floor(settings.get("data", "toy")), "rows": rows}
    Path(path).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


def read_sweep(path):
    """A JSON file written by `write_sweep` -> its dict (settings, training, entropy_floor, rows)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
