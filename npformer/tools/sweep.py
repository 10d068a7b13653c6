"""IsoFLOP scaling sweeps: for a fixed compute budget, which model size is best? (notebook 13)

Legend: N parameters, D training tokens, C training compute in FLOPs, V vocabulary,
W width (d_model), L layers, T tokens per training window (the attention context).

The experiment (Hoffmann et al. 2022, "Chinchilla", approach 2): fix a compute budget C,
train models of several sizes N, each for as many tokens as the budget pays for,
D = C / (FLOPs per token), and plot the final validation loss against log N. The curve
is a valley; its bottom (`fit_parabola`) is the compute-optimal size N_opt(C). Several
budgets give N_opt and D_opt as power laws in C (`frontier`), with intervals from a
parametric bootstrap of the seed-to-seed noise (`resampled_cells`).

Three rules make each point what a run of that length really reaches:
  - each run has its own warm-up + cosine schedule, as long as the run (`run_config`).
    A point in the middle of a longer schedule is not what a run stopped there
    reaches: its learning rate has not decayed (`schedule_pairs` measures by how much);
  - text is never repeated: each run gets freshly generated text with more tokens
    than it reads (single pass; `run_one` records the passes, always < 1);
  - the peak learning rate is chosen per width by a small sweep (`LEARNING_RATES`,
    `choose_learning_rates`), not one untuned value for every width.
Porian et al. (2024) traced most of the gap between Kaplan et al.'s and Hoffmann et al.'s
exponents to an uncounted output layer, a long warm-up and one learning rate for every
size; the compute count below, the short warm-up and the tuned rates answer those.

Compute (`flops_per_token`). A weight used once per token costs 2 FLOPs forward (one
multiply, one add) and 4 backward (the gradient of its input and of itself): 6 FLOPs
per weight per token. So a training token costs
    6 N_body        the blocks and final norm (N_body: "non-embedding" parameters)
  + 6 V W           the output projection (tied to the embedding: one matrix, counted
                    once as parameters; the look-up is free, the projection is a product)
  + 12 L T W        attention scores Q K^T and their weighted sum with V, T keys per
                    query (the padded window is computed in full), times 3 for backward.
For the smallest models here the output projection costs twice the blocks, so
"non-embedding compute" 6 N_body D (Kaplan's convention) understates the real cost up
to threefold. The fits use total compute and all parameters (Hoffmann et al.'s
convention; with the tied embedding, 6 N D is then within a few percent of the total),
and notebook 13 shows what the other convention does to the exponent.

The loss surface (`fit_loss_surface`): L(N, D) = E + A N^-alpha + B D^-beta, fitted
with E free. For fixed exponents the model is linear in (E, A, B), so a grid search
over (alpha, beta) with least squares inside needs no SciPy. The toy text's entropy
floor is known exactly (npformer/data/entropy.py), so the fitted E can be checked,
which no study of natural text can do.

`npformer sweep` is the command-line shell around `sweep`; it writes the rows as JSON.
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

# What every run of a sweep shares: no dropout (text is never repeated, so nothing to
# regularise), no label smoothing (the loss is the cross-entropy itself), batches of up
# to 2048 padded tokens, no wall-clock limit (the step count is the budget).
SWEEP_TRAINING = dict(max_tokens=2048, dropout=0.0, label_smoothing=0.0, max_len=64,
                      max_minutes=0.0, schedule="warmup_cosine")
WARMUP_FRACTION = 0.05  # warm-up steps: 5% of the run (at least MIN_WARMUP)
MIN_WARMUP = 10
SINGLE_PASS_MARGIN = 1.1  # generate 10% more text than a run reads, so none repeats
HEAD_SIZE = 16  # every model's heads have 16 dimensions
EVALS_PER_RUN = 4  # validations per run (the last one, at the end, is the result)
# Peak learning rate by width, from the learning-rate sweep shipped in
# notebooks/data/scale_lr.json (`choose_learning_rates`; notebook 13 shows the table and
# the command that re-makes it). Widths not listed take the nearest listed width's rate.
LEARNING_RATES = {16: 1.2e-2, 32: 1.2e-2, 48: 1.2e-2, 64: 1.2e-2, 80: 1.2e-2}
LR_MARGIN = 0.01  # nats: a higher rate must beat a lower one by this much to be chosen
# The IsoFLOP grid of notebook 13 (notebooks/data/scale.json): {budget in FLOPs: sizes}.
# Each budget gets five sizes around where the learning-rate sweep and a pilot put its
# valley's bottom; the notebook prints each bottom beside its sizes (at 1e11 it lies at the
# smallest size, so that budget's bottom is an extrapolation, and it says so). (16x4, a
# single 16-dimensional head in 4 layers, was left out of the ladder: in the pilot it
# was worse than both its neighbours in size, a shape effect, not a size effect.)
DEFAULT_GRID = {1e11: ["16x1", "16x2", "32x1", "32x2", "48x2"],
                3e11: ["16x1", "16x2", "32x1", "32x2", "48x2"],
                1e12: ["16x1", "16x2", "32x1", "32x2", "48x2"],
                3e12: ["16x2", "32x1", "32x2", "48x2", "64x2"]}


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
    """The TrainConfig fields of one model size "WxL": d_ff = 4W, heads of 16 dimensions."""
    return dict(d_model=width, n_layers=layers, d_ff=4 * width,
                n_heads=max(1, width // HEAD_SIZE))


def parse_budget(text):
    """"1e12:32x2,48x2,64x2" -> (1e12, ["32x2", "48x2", "64x2"]); SweepError if malformed."""
    budget, _, sizes = text.partition(":")
    try:
        budget = float(budget)
    except ValueError:
        raise SweepError(f"{text!r}: write FLOPS:SIZES, e.g. 1e12:32x2,48x2") from None
    if not math.isfinite(budget) or budget <= 0 or not sizes:
        raise SweepError(f"{text!r}: write FLOPS:SIZES with a positive budget, e.g. "
                         "1e12:32x2,48x2")
    sizes = sizes.split(",")
    for size in sizes:
        parse_size(size)
    if len(set(sizes)) != len(sizes):
        raise SweepError(f"{text!r}: a size is given twice")
    return budget, sizes


def choose_learning_rates(rows, margin=LR_MARGIN):
    """{width: peak rate} from a learning-rate sweep's rows (one budget, one seed).

    The rate with the lowest final loss, except that a higher rate must win by more
    than `margin` nats: within that, the lower one is kept, because the rates are
    tuned on short runs and longer runs (the larger budgets) prefer lower rates.
    """
    by_width = {}
    for row in rows:
        by_width.setdefault(row["d_model"], []).append((row["lr"], row["valid_loss"]))
    chosen = {}
    for width, trials in sorted(by_width.items()):
        best = None
        for lr, loss in sorted(trials):
            if best is None or loss < best[1] - margin:
                best = (lr, loss)
        chosen[width] = best[0]
    return chosen


def learning_rate(width):
    """The tuned peak learning rate of a width (LEARNING_RATES, nearest listed width)."""
    nearest = min(LEARNING_RATES, key=lambda w: (abs(w - width), w))
    return LEARNING_RATES[nearest]


# ------------------------------------------------------------------------ counting
def body_params(width, layers):
    """Non-embedding parameters of a "WxL" model, counted by hand (tests check the model).

    Per block: W_q, W_k, W_v, W_o (W x W + bias each), the feed-forward net
    (W x 4W + 4W, 4W x W + W) and two layer norms (2W each); then a final norm.
    """
    attention = 4 * (width * width + width)
    feed_forward = (width * 4 * width + 4 * width) + (4 * width * width + width)
    norms = 2 * 2 * width
    return layers * (attention + feed_forward + norms) + 2 * width


def count_params(model):
    """(all parameters, non-embedding parameters) of a LanguageModel.

    Embedding parameters: the token embedding (tied with the output projection, counted
    once), its output bias, and learned positions if any.
    """
    embedding = sum(v.size for k, v in model.params.items() if k.endswith("embed.W")
                    or k.endswith("_pos.W") or k.startswith("out."))
    return model.n_params, model.n_params - embedding


def flops_per_token(width, layers, vocab, context):
    """Training FLOPs per token of a "WxL" LM, by part (module docstring).

    context: the mean number of keys each query is scored against (the token-weighted
    mean window length, `mean_context`). Returns a dict with "body" (6 N_body),
    "output" (6 V W), "attention" (12 L T W) and "total"; the optimizer update and
    the element-wise work (norms, softmax, GELU) are left out, as in every such count.
    """
    parts = {"body": 6.0 * body_params(width, layers), "output": 6.0 * vocab * width,
             "attention": 12.0 * layers * context * width}
    parts["total"] = parts["body"] + parts["output"] + parts["attention"]
    return parts


def mean_context(lengths):
    """Token-weighted mean window length: sum(T^2) / sum(T) over training windows.

    A window of T tokens has T queries, each scored against T keys (computed in full,
    the causal mask zeroes half), so a token sees on average sum T^2 / sum T keys.
    """
    lengths = np.asarray(lengths, dtype=float)
    return float((lengths ** 2).sum() / lengths.sum())


# ------------------------------------------------------------------------ one run
def run_config(width, layers, steps, lr, seed=0, data_size=0, data="toy", threads=1,
               out_dir="runs/sweep"):
    """The TrainConfig of one sweep run: its size, length, peak rate and its own schedule."""
    warmup = min(steps, max(MIN_WARMUP, round(WARMUP_FRACTION * steps)))
    return TrainConfig(**{**PRESETS["lm"], **SWEEP_TRAINING, **size_config(width, layers),
                          "data": data, "data_size": int(data_size), "max_steps": int(steps),
                          "lr": float(lr), "warmup_steps": warmup,
                          "eval_every": math.ceil(steps / EVALS_PER_RUN),
                          "log_every": math.ceil(steps / EVALS_PER_RUN), "seed": seed,
                          "threads": threads, "out_dir": str(out_dir)})


def corpus_facts(data="toy", n_tokens=200_000, max_tokens=SWEEP_TRAINING["max_tokens"]):
    """Vocabulary, mean context and real tokens per step of the sweep's text.

    Measured on a sample of n_tokens; the numbers settle long before (the toy
    vocabulary is complete within 20,000 tokens), so they hold for every run length.
    """
    cfg = run_config(32, 1, 1, 1e-3, 0, n_tokens, data, 1, "unused")
    task = TASKS["lm"]
    splits, _ = task.load(cfg)
    built = task.build(cfg, splits)
    examples, _ = task.encode(splits["train"], built, cfg)
    lengths = [task.length(e) for e in examples]
    batches = bucket_batches(examples, max_tokens, 0, 0, length=task.length)
    return {"vocab": built.src_tokenizer.vocab_size, "context": mean_context(lengths),
            "tokens_per_step": sum(lengths) / len(batches),
            "text_tokens_per_token": n_tokens / sum(lengths)}


def plan_run(width, layers, budget, facts):
    """Steps and text size of a run of size "WxL" that spends `budget` FLOPs.

    D = budget / flops_per_token; steps = D / (real tokens per step); the text is
    generated SINGLE_PASS_MARGIN times larger than D, so no token is read twice.
    """
    per_token = flops_per_token(width, layers, facts["vocab"], facts["context"])["total"]
    tokens = budget / per_token
    steps = max(1, round(tokens / facts["tokens_per_step"]))
    data_size = math.ceil(SINGLE_PASS_MARGIN * tokens * facts["text_tokens_per_token"])
    return steps, max(data_size, 20_000)


def tokens_seen(examples, max_tokens, seed, steps, task):
    """Real tokens trained on after each of `steps` steps, as the training loop batches them."""
    counts, epoch = [], 0
    while len(counts) < steps:
        for batch in bucket_batches(examples, max_tokens, seed, epoch, length=task.length):
            counts.append(sum(task.length(examples[i]) for i in batch))
            if len(counts) == steps:
                break
        epoch += 1
    return np.cumsum(counts)


def run_one(width, layers, steps, lr, seed=0, data_size=None, data="toy", threads=1,
            log=None):
    """Pretrain one LM of size "WxL" for `steps` steps with its own schedule -> a result row.

    data_size: tokens of text to generate (default: enough for a single pass).
    The row holds the parameter counts, the tokens read and the passes over the text,
    the compute by part (FLOPs), the final validation loss and the validation curve.
    """
    from ..training.loop import train

    if data_size is None:
        data_size = math.ceil(SINGLE_PASS_MARGIN * steps * SWEEP_TRAINING["max_tokens"])
    with tempfile.TemporaryDirectory() as tmp:
        cfg = run_config(width, layers, steps, lr, seed, data_size, data, threads, tmp)
        task = TASKS["lm"]
        start = time.perf_counter()
        history = train(cfg, log=log or (lambda line: None))
        seconds = time.perf_counter() - start
        splits, _ = task.load(cfg)
        built = task.build(cfg, splits)  # the same tokenizer and shapes as the run's
        examples, _ = task.encode(splits["train"], built, cfg)
    lengths = [task.length(e) for e in examples]
    seen = tokens_seen(examples, cfg.max_tokens, cfg.seed, steps, task)
    n_all, n_body = count_params(built.model)
    vocab = built.src_tokenizer.vocab_size
    per_token = flops_per_token(width, layers, vocab, mean_context(lengths))
    curve = [[h["step"], int(seen[h["step"] - 1]), h["valid_loss"]]
             for h in history if h["type"] == "valid"]
    return {"size": f"{width}x{layers}", "d_model": width, "n_layers": layers,
            "params": int(n_all), "non_embedding_params": int(n_body), "vocab": vocab,
            "lr": lr, "warmup_steps": cfg.warmup_steps, "seed": seed, "steps": steps,
            "data_size": int(data_size), "tokens_seen": int(seen[-1]),
            "passes": round(float(seen[-1]) / sum(lengths), 4),
            "flops": {part: value * float(seen[-1]) for part, value in per_token.items()},
            "valid_loss": curve[-1][2], "curve": curve, "seconds": round(seconds, 1)}


def sweep(grid, seeds=(0,), lrs=None, data="toy", threads=1, log=None, facts=None,
          save=None):
    """Train every (seed, budget, size, learning rate) of an IsoFLOP grid -> result rows.

    grid: {budget in FLOPs: ["WxL", ...]}; lrs: None (the tuned LEARNING_RATES) or a
    list of peak rates, each run at every one of them (the learning-rate sweep).
    Seeds are the outer loop, so each seed's whole grid is done before the next one.
    Each row is `run_one`'s plus its "budget". `log(line)` gets one line per run and
    `save(rows)` the rows so far after each run (e.g. to write them to a file).
    """
    if not grid or not seeds:
        raise SweepError("a sweep needs at least one budget with one size, and one seed")
    for budget, sizes in grid.items():
        if budget <= 0 or not sizes:
            raise SweepError(f"budget {budget:g}: must be positive with at least one size")
    facts = facts or corpus_facts(data)
    log = log or (lambda line: None)
    rows = []
    for seed in seeds:
        for budget, sizes in grid.items():
            for size in sizes:
                width, layers = parse_size(size) if isinstance(size, str) else tuple(size)
                steps, data_size = plan_run(width, layers, budget, facts)
                for lr in lrs or [learning_rate(width)]:
                    row = run_one(width, layers, steps, lr, seed, data_size, data, threads)
                    row["budget"] = float(budget)
                    log(f"C {budget:.1e} | {row['size']:>6} ({row['params']:>9,} params) | "
                        f"{steps:>6} steps, {row['tokens_seen']:>10,} tokens "
                        f"({row['passes']:.2f} passes) | lr {lr:g} | seed {seed} | "
                        f"loss {row['valid_loss']:.4f} | {row['seconds']:.0f} s")
                    rows.append(row)
                    if save is not None:
                        save(rows)
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


def fit_parabola(n, loss):
    """Fit loss = a (log n)^2 + b log n + c -> (N at the bottom, loss there, (a, b, c)).

    The IsoFLOP valley of one budget. Needs 3 or more sizes and an upward curvature
    (a > 0); the bottom may lie outside the sizes tried (compare it with them).
    """
    x, y = np.log(np.asarray(n, dtype=float)), np.asarray(loss, dtype=float)
    if len(x) < 3 or len(set(x)) < 3:
        raise ValueError("fit_parabola needs at least three different sizes")
    a, b, c = np.polyfit(x, y, 2)
    if a <= 0:
        raise ValueError(f"the loss against log N curves downward (a = {a:.3g}): no valley")
    x_min = -b / (2 * a)
    return float(math.exp(x_min)), float(c - b * b / (4 * a)), (float(a), float(b), float(c))


def cell_means(rows, key="params"):
    """{budget: (sizes' N, mean loss over seeds, seeds' losses)}, sizes by increasing N."""
    cells = {}
    for row in rows:
        cells.setdefault(row["budget"], {}).setdefault(row[key], []).append(row["valid_loss"])
    out = {}
    for budget in sorted(cells):
        ns = sorted(cells[budget])
        out[budget] = (np.array(ns, dtype=float),
                       np.array([np.mean(cells[budget][n]) for n in ns]),
                       [cells[budget][n] for n in ns])
    return out


def tokens_at(budget_rows, n, key="params"):
    """Tokens a model of n parameters reads with the budget of `budget_rows` (IsoFLOP runs).

    D = C / (FLOPs per token), and FLOPs per token grow with N along the size ladder; in
    log-log axes the runs' (N, D) lie on a near-straight line, fitted and read at n.
    key: which parameter count n is ("params", or "non_embedding_params").
    """
    ns = np.log([row[key] for row in budget_rows])
    ds = np.log([row["tokens_seen"] for row in budget_rows])
    slope, intercept = np.polyfit(ns, ds, 1)
    return float(np.exp(intercept + slope * np.log(n)))


def frontier(rows, cells=None, key="params"):
    """The compute-optimal frontier -> dict of arrays over budgets.

    "budget", "n_opt" and "loss_opt" (each budget's parabola bottom), "d_opt" (the tokens
    read at n_opt, `tokens_at`), "tokens_per_param" (d_opt / n_opt), and the exponents
    "a" (N_opt ~ C^a) and "b" (D_opt ~ C^b) fitted in log-log axes. `cells` replaces the
    losses of `cell_means(rows)` (the bootstrap passes resampled ones).
    """
    cells = cell_means(rows, key) if cells is None else cells
    budgets = np.array(sorted(cells))
    bottoms = [fit_parabola(*cells[budget][:2])[:2] for budget in budgets]
    n_opt = np.array([n for n, _ in bottoms])
    d_opt = np.array([tokens_at([r for r in rows if r["budget"] == budget], n, key)
                      for budget, n in zip(budgets, n_opt)])
    log_c = np.log(budgets)
    return {"budget": budgets, "n_opt": n_opt, "loss_opt": np.array([loss for _, loss in bottoms]),
            "d_opt": d_opt, "tokens_per_param": d_opt / n_opt,
            "a": float(np.polyfit(log_c, np.log(n_opt), 1)[0]),
            "b": float(np.polyfit(log_c, np.log(d_opt), 1)[0])}


def schedule_pairs(rows, longer_rows, tolerance=0.01):
    """Runs beside a point in the middle of a longer schedule, at the same tokens.

    For each run of `rows`, a run of `longer_rows` with the same size and seed whose
    schedule is longer and which was validated within `tolerance` (relative) of the
    run's tokens. Returns one dict per pair: size, seed, steps and tokens of the run,
    own_loss (its final loss, its own schedule ended) and longer_loss (the longer run's
    validation loss at that point, its learning rate not yet decayed), longer_step (the
    step of that point), longer_steps (the longer run's length) and longer_tokens.
    """
    pairs = []
    for run in rows:
        for longer in longer_rows:
            if (longer["size"], longer["seed"]) != (run["size"], run["seed"]) \
                    or longer["steps"] <= run["steps"]:
                continue
            for step, tokens, loss in longer["curve"]:
                if abs(tokens / run["tokens_seen"] - 1) <= tolerance:
                    pairs.append({"size": run["size"], "seed": run["seed"],
                                  "steps": run["steps"], "tokens": run["tokens_seen"],
                                  "own_loss": run["valid_loss"], "longer_loss": loss,
                                  "longer_step": step, "longer_steps": longer["steps"],
                                  "longer_tokens": tokens})
    return pairs


def pooled_seed_std(rows, key="params"):
    """The seed-to-seed standard deviation of the final loss, pooled over all cells.

    sqrt(sum over cells of sum (loss - cell mean)^2 / sum over cells of (seeds - 1)).
    """
    squares, dof = 0.0, 0
    for _, _, seeds in cell_means(rows, key).values():
        for losses in seeds:
            if len(losses) > 1:
                squares += float(((np.array(losses) - np.mean(losses)) ** 2).sum())
                dof += len(losses) - 1
    if dof == 0:
        raise ValueError("pooled_seed_std needs at least one cell with two seeds")
    return math.sqrt(squares / dof)


def resampled_cells(rows, n_boot=1000, seed=0, key="params"):
    """n_boot copies of `cell_means(rows)` with noise of the size the seeds show.

    Each copy adds to every cell's mean a normal error with standard deviation
    pooled_seed_std / sqrt(seeds in the cell): a parametric bootstrap of the training
    noise (seed, batch order). It does not cover a wrong model (a valley that is not a
    parabola, a surface that is not a power law).
    """
    cells = cell_means(rows, key)
    sigma = pooled_seed_std(rows, key)
    rng = np.random.default_rng(seed)
    copies = []
    for _ in range(n_boot):
        copies.append({budget: (ns, losses + rng.normal(size=len(ns)) * sigma
                                / np.sqrt([len(s) for s in seeds]), seeds)
                       for budget, (ns, losses, seeds) in cells.items()})
    return copies


def interval(values, level=0.95):
    """(low, high) percentile interval of bootstrap values (NaNs, failed fits, left out)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def bootstrap_optima(rows, statistic, key="params", n_boot=1000, seed=0, level=0.95):
    """(value, low, high) of statistic(cells) with a parametric bootstrap interval.

    statistic(cells) -> float, cells as `cell_means` gives them; the resamples come
    from `resampled_cells`; a resample whose fit fails (no valley) is left out.
    """
    values = []
    for cells in resampled_cells(rows, n_boot, seed, key):
        try:
            values.append(statistic(cells))
        except ValueError:
            values.append(math.nan)
    return (statistic(cell_means(rows, key)), *interval(values, level))


SURFACE_EXPONENTS = np.round(np.arange(0.01, 1.5001, 0.01), 2)  # the grid of alpha and beta


def fit_loss_surface(n, d, loss, exponents=SURFACE_EXPONENTS, E=None):
    """Fit L = E + A N^-alpha + B D^-beta with E free -> dict(E, A, alpha, B, beta, rms).

    For each (alpha, beta) on the grid, (E, A, B) follow by least squares; the pair with
    the smallest squared error and A, B >= 0 wins. `loss` may be (k,) or (k, m): m
    loss vectors (bootstrap resamples) fitted at once; the values are then arrays (m,).
    E: a fixed irreducible loss instead of a fitted one (only A and B are fitted).
    """
    n, d = np.asarray(n, dtype=float), np.asarray(d, dtype=float)
    y = np.asarray(loss, dtype=float)
    single = y.ndim == 1
    Y = y[:, None] if single else y  # (k, m)
    best_sse = np.full(Y.shape[1], np.inf)
    best = np.zeros((5, Y.shape[1]))  # E, A, alpha, B, beta
    betas = np.asarray(exponents, dtype=float)
    d_terms = d[None, :] ** -betas[:, None]  # (b, k): D^-beta for every beta
    for alpha in exponents:  # all betas at once: a stack of (k, 3) least-squares problems
        X = np.stack([np.ones_like(d_terms), np.broadcast_to(n ** -alpha, d_terms.shape),
                      d_terms], axis=2)  # (b, k, 3)
        if E is None:
            coef = np.linalg.pinv(X) @ Y  # (b, 3, m)
        else:  # E given: fit A and B to L - E, with the first coefficient E itself
            coef = np.linalg.pinv(X[:, :, 1:]) @ (Y - E)  # (b, 2, m)
            coef = np.concatenate([np.full((len(betas), 1, Y.shape[1]), float(E)), coef], 1)
        sse = ((X @ coef - Y) ** 2).sum(axis=1)  # (b, m)
        sse[(coef[:, 1] < 0) | (coef[:, 2] < 0)] = np.inf
        i = sse.argmin(axis=0)  # (m,): the best beta of this alpha, per loss vector
        cols = np.arange(Y.shape[1])
        better = sse[i, cols] < best_sse
        best_sse[better] = sse[i, cols][better]
        found = np.stack([coef[i, 0, cols], coef[i, 1, cols], np.full(len(cols), alpha),
                          coef[i, 2, cols], betas[i]])  # (5, m)
        best[:, better] = found[:, better]
    if not np.all(np.isfinite(best_sse)):
        raise ValueError("no (alpha, beta) on the grid gives A, B >= 0")
    out = dict(zip(("E", "A", "alpha", "B", "beta"), best))
    out["rms"] = np.sqrt(best_sse / len(n))
    return {k: float(v[0]) for k, v in out.items()} if single else out


def cell_points(rows, key="params"):
    """(N, D, mean loss) of every (budget, size) cell, in `cell_means` order -> 3 arrays (k,).

    D is the mean over seeds of the tokens the cell's runs read (seeds differ by a few
    tokens, as batches of whole lines fill a step differently).
    """
    ns, ds, losses = [], [], []
    for budget, (sizes, means, _) in cell_means(rows, key).items():
        for n, loss in zip(sizes, means):
            tokens = [r["tokens_seen"] for r in rows if r["budget"] == budget and r[key] == n]
            ns.append(n)
            ds.append(float(np.mean(tokens)))
            losses.append(loss)
    return np.array(ns), np.array(ds), np.array(losses)


def bootstrap_surface(rows, E=None, key="params", n_boot=1000, seed=0, level=0.95):
    """`fit_loss_surface` on the cells, each value with a parametric bootstrap interval.

    Returns {"E", "A", "alpha", "B", "beta", "rms"}: (value, low, high) each; the
    resampled losses come from `resampled_cells` (the seeds' noise), all fitted at once.
    E: a fixed irreducible loss (then only A, alpha, B, beta are fitted).
    """
    n, d, loss = cell_points(rows, key)
    copies = np.stack([np.concatenate([means for _, means, _ in cells.values()])
                       for cells in resampled_cells(rows, n_boot, seed, key)], axis=1)  # (k, m)
    fit = fit_loss_surface(n, d, loss, E=E)
    boot = fit_loss_surface(n, d, copies, E=E)
    return {name: (fit[name], *interval(boot[name], level)) for name in fit}


def loss_floor(data="toy"):
    """The entropy floor of the sweep's text in nats per token (EOS predicted, as the LM does)."""
    kind = TOY_TEXTS.get(data)
    return entropy_floor(kind, extra_tokens_per_line=1)["nats_per_token"] if kind else None


def plot_isoflop(rows, path=None, ax=None, key="params"):
    """Final loss against parameters, one curve per budget, with its parabola and bottom.

    Returns the figure; saves it to `path` if given.
    """
    from matplotlib.figure import Figure

    if ax is None:
        ax = Figure(figsize=(7, 4.5)).subplots()
    for budget, (ns, losses, seeds) in cell_means(rows, key).items():
        line, = ax.plot(ns, losses, "o", label=f"C = {budget:.1e} FLOPs")
        for n, values in zip(ns, seeds):
            ax.plot([n] * len(values), values, ".", color=line.get_color(), alpha=0.4)
        if len(ns) >= 3:
            try:
                n_opt, l_opt, (a, b, c) = fit_parabola(ns, losses)
            except ValueError:
                continue
            grid = np.geomspace(ns.min() / 1.3, ns.max() * 1.3, 60)
            ax.plot(grid, a * np.log(grid) ** 2 + b * np.log(grid) + c, "-",
                    color=line.get_color(), lw=1)
            ax.plot([n_opt], [l_opt], "*", color=line.get_color(), ms=12)
    ax.set_xscale("log")
    ax.set_xlabel("parameters N" if key == "params" else "non-embedding parameters")
    ax.set_ylabel("final validation loss (nats / token)")
    ax.set_title("IsoFLOP curves (star: the parabola's bottom)")
    ax.legend(fontsize=8)
    fig = ax.figure
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def write_sweep(path, rows, settings, facts):
    """Save a sweep as JSON: its settings, the corpus facts, the entropy floor, the rows."""
    out = {"settings": settings, "training": {**SWEEP_TRAINING,
                                              "warmup_fraction": WARMUP_FRACTION,
                                              "min_warmup": MIN_WARMUP},
           "corpus": facts, "entropy_floor": loss_floor(settings.get("data", "toy")),
           "rows": rows}
    Path(path).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


def read_sweep(path):
    """A JSON file written by `write_sweep` -> its dict (settings, training, corpus, rows)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
