"""The exercises for dropout, the feed-forward unit, pooling and the sinusoidal positions.

References: npformer/nn/layers (feedforward.py, pooling.py, embedding.py's
sinusoidal_table) in float64; dropout is graded against the learner's own mask
(the right output for the entries they dropped) plus the share of entries dropped.

Shapes: B batch, T length, C d_model, F d_ff, N rows, L positions.
"""
import math

import numpy as np

from ..nn.kernels import activation_np
from ..nn.layers import pool_backward, pool_forward, pool_weights, sinusoidal_table
from .checker import Case, Exercise, Hint, LearnerError, Line, call
from .diagnose import Factor, Mistakes, Region, Structure


def randn(rng, *shape):
    return rng.standard_normal(shape)


# ----------------------------------------------------------------- dropout
SIGMAS = 5  # the share of dropped entries must lie within 5 binomial standard deviations


def dropout_cases(rng):
    def case(label, shape, rate):
        x = randn(rng, *shape)
        x[x == 0] = 1.0  # a zero would look dropped
        inputs = {"x": x, "rate": rate, "seed": int(rng.integers(1 << 30))}
        return Case(f"{label}, x {shape}, rate {rate}", inputs, randn(rng, *shape))
    return [case("rows", (4, 250), 0.1), case("a batch of sequences", (2, 5, 100), 0.5),
            case("rate 0: nothing dropped", (3, 7), 0.0), case("most dropped", (1000,), 0.9)]


def dropout_outputs(exercise, functions, case, got):
    """Forward with a Generator seeded by the case, then backward; the share dropped."""
    x, rate = case.inputs["x"], case.inputs["rate"]
    rng = np.random.default_rng(case.inputs["seed"])
    out = call(functions["forward"], "forward", x.copy(), rate, rng)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise LearnerError("forward must return a pair (output, cache)")
    y = np.asarray(out[0], dtype=np.float64)
    got["y"] = y
    if y.shape == x.shape:
        got["share dropped"] = float(np.mean(y == 0))
    if functions.get("backward") is not None:
        got["dx"] = call(functions["backward"], "backward", case.dout.copy(), out[1])


def dropout_reference(case, got):
    """The right y and dx for the learner's own mask (entries with y == 0 were dropped)."""
    x, rate = case.inputs["x"], case.inputs["rate"]
    y = np.asarray(got.get("y", np.zeros(0)), dtype=np.float64)
    if y.shape == x.shape and np.isfinite(y).all():
        keep = y != 0
    else:  # no usable mask from the learner: any mask of the right rate
        keep = np.random.default_rng(case.inputs["seed"]).random(x.shape) >= rate
    m = keep / (1.0 - rate)
    return {"y": x * m, "dx": case.dout * m, "share dropped": rate}


def share_line(what, got, want, case):
    n = case.inputs["x"].size
    band = SIGMAS * math.sqrt(want * (1 - want) / n) + 1.0 / n
    if abs(got - want) <= band:
        return Line(what, True, "")
    return Line(what, False, f"{got:.1%} of the entries are dropped; with rate {want} expect "
                             f"{want:.0%} +- {band:.1%}")


def dropout_structure(case, want):
    rate = case.inputs["rate"]
    keep = want["y"] != 0
    if rate == 0:
        return {}
    return {
        "y": Structure(factors=(
            Factor((1 - rate) ** 2, "the kept entries are multiplied by (1 - rate); inverted "
                                    "dropout DIVIDES them by (1 - rate), so that E[y] = x"),
            Factor(1 - rate, "the kept entries are not scaled: inverted dropout divides them "
                             "by (1 - rate), so that E[y] = x and evaluation needs no change"))),
        "dx": Structure(
            factors=(Factor(1 - rate, "dx is missing the 1/(1 - rate) of the forward"),
                     Factor((1 - rate) ** 2, "dx multiplies by (1 - rate) instead of dividing")),
            regions=(Region("the dropped entries (where y == 0): the backward must use the "
                            "forward's mask", ~keep),)),
    }


def other_mask(case, got, want):
    """dx is 0 or dy/(1-rate) entry by entry, but its zeros are not where y's zeros are."""
    dx = np.asarray(got["dx"], dtype=np.float64)
    y = np.asarray(got["y"], dtype=np.float64)
    if dx.shape != y.shape or case.inputs["rate"] == 0:
        return False
    scaled = case.dout / (1 - case.inputs["rate"])
    looks_dropout = np.all(np.isclose(dx, 0) | np.isclose(dx, scaled))
    return looks_dropout and np.any((dx == 0) != (y == 0))


def drops_the_kept_share(case, got, want):
    """About 1 - rate of the entries are dropped (rate read as the probability to keep)."""
    rate = case.inputs["rate"]
    if rate in (0.0, 0.5):  # 0: nothing to tell; 0.5: both readings drop half
        return False
    return abs(got["share dropped"] - (1 - rate)) < 0.05


DROPOUT = Exercise(
    name="dropout", title="inverted dropout, forward and backward (same mask)",
    roles=("forward", "backward"), functions=("dropout_forward", "dropout_backward"),
    outputs=("y", "dx", "share dropped"), make_cases=dropout_cases,
    reference=dropout_reference, answer_based=True, learner_outputs=dropout_outputs,
    comparators={"share dropped": share_line}, structure=dropout_structure,
    page="docs/derivations/residual_dropout.md",
    hints=(
        Hint("rate is the probability of DROPPING an entry: keep = rng.random(x.shape) >= rate "
             "(you drop about 1 - rate of them).", drops_the_kept_share),
        Hint("the backward must use the SAME mask as the forward (keep it in the cache): a "
             "fresh mask in the backward lets gradient through entries that were dropped.",
             other_mask),
    ))


# ----------------------------------------------------------------- feed-forward unit
def ffn_cases(rng):
    def case(label, lead, C, F, activation):
        inputs = {"x": randn(rng, *lead, C), "W_1": randn(rng, C, F) / math.sqrt(C),
                  "b_1": 0.5 * randn(rng, F), "W_2": randn(rng, F, C) / math.sqrt(F),
                  "b_2": randn(rng, C), "activation": activation}
        return Case(f"{label}, x {(*lead, C)}, F {F}, {activation}", inputs,
                    randn(rng, *lead, C))
    return [case("ReLU, a batch of sequences", (2, 3), 4, 6, "relu"),
            case("GELU, rows", (5,), 4, 3, "gelu"),
            case("ReLU, odd sizes", (1, 1), 3, 2, "relu")]


def ffn_reference(case):
    """npformer/nn/layers/feedforward.py's formulas with the NumPy twins of its kernels."""
    x, W_1, b_1, W_2, b_2, activation = case.inputs.values()
    C = x.shape[-1]
    x2, dy2 = x.reshape(-1, C), case.dout.reshape(-1, C)  # (N,C)
    h = x2 @ W_1 + b_1  # (N,F)
    if activation == "relu":
        a, dact = activation_np.relu_forward(h), activation_np.relu_backward
    else:
        a, dact = activation_np.gelu_forward(h), activation_np.gelu_backward
    da = dy2 @ W_2.T  # (N,F)
    dh = dact(da, h)  # (N,F)
    return {"y": (a @ W_2 + b_2).reshape(x.shape), "dx": (dh @ W_1.T).reshape(x.shape),
            "dW_1": x2.T @ dh, "db_1": dh.sum(axis=0), "dW_2": a.T @ dy2, "db_2": dy2.sum(axis=0)}


def ffn_simulate(case, gate_before_bias=False, no_gate=False):
    """The ReLU unit's gradients with the gate taken from x W_1 (no b_1), or with no gate."""
    x, W_1, b_1, W_2 = (case.inputs[k] for k in ("x", "W_1", "b_1", "W_2"))
    if case.inputs["activation"] != "relu":
        raise ValueError("these switches are about ReLU")
    C = x.shape[-1]
    x2, dy2 = x.reshape(-1, C), case.dout.reshape(-1, C)
    h = x2 @ W_1 + b_1  # (N,F)
    da = dy2 @ W_2.T  # (N,F)
    gate = np.ones_like(h) if no_gate else (x2 @ W_1 > 0) if gate_before_bias else h > 0
    dh = da * gate
    return {"dx": (dh @ W_1.T).reshape(x.shape), "dW_1": x2.T @ dh, "db_1": dh.sum(axis=0)}


FFN_OUTPUTS = ("y", "dx", "dW_1", "db_1", "dW_2", "db_2")

FFN = Exercise(
    name="ffn", title="the feed-forward unit act(x W_1 + b_1) W_2 + b_2, forward and backward",
    roles=("forward", "backward"), functions=("ffn_forward", "ffn_backward"),
    outputs=FFN_OUTPUTS, make_cases=ffn_cases, reference=ffn_reference,
    wrt=(("x", "dx"), ("W_1", "dW_1"), ("b_1", "db_1"), ("W_2", "dW_2"), ("b_2", "db_2")),
    page="docs/derivations/linear.md",
    mistakes=Mistakes(ffn_simulate, {
        "gate_before_bias": "the ReLU gate must come from h = x W_1 + b_1, the activation's "
                            "actual input: the bias b_1 is missing from the gate.",
        "no_gate": "the gradient must pass through the activation's derivative: dh = da * "
                   "(h > 0) for ReLU; yours lets da through everywhere.",
    }),
    hints=())


# ----------------------------------------------------------------- pooling
def pooling_cases(rng):
    def case(label, lengths, T, C, mode):
        key_ok = np.arange(T)[None, :] < np.asarray(lengths)[:, None]  # (B,T) right padding
        inputs = {"x": randn(rng, len(lengths), T, C), "key_ok": key_ok, "mode": mode}
        return Case(f"{label}, lengths {lengths}, T {T}, C {C}", inputs,
                    randn(rng, len(lengths), C))
    return [case("mean, padded", [5, 3, 1], 5, 4, "mean"),
            case("last, padded", [4, 2, 3], 4, 3, "last"),
            case("first", [3, 1], 3, 2, "first"),
            case("mean, no padding", [2, 2], 2, 3, "mean")]


def pooling_reference(case):
    x, key_ok, mode = case.inputs["x"], case.inputs["key_ok"], case.inputs["mode"]
    y, cache = pool_forward(x, pool_weights(key_ok, mode, np.float64))
    return {"y": y, "dx": pool_backward(case.dout, cache)[0]}


def pooling_simulate(case, mean_over_T=False, last_is_end=False, mean_is_sum=False):
    x, key_ok, mode = case.inputs["x"], case.inputs["key_ok"], case.inputs["mode"]
    B, T, _ = x.shape
    w = pool_weights(key_ok, mode, np.float64)
    if mean_over_T and mode == "mean":
        w = np.full((B, T), 1.0 / T)
    elif mean_is_sum and mode == "mean":
        w = key_ok.astype(np.float64)
    elif last_is_end and mode == "last":
        w = np.zeros((B, T))
        w[:, -1] = 1.0
    else:
        raise ValueError("not this mode")
    return {"y": np.einsum("bt,btc->bc", w, x), "dx": w[:, :, None] * case.dout[:, None, :]}


def pooling_structure(case, want):
    """Padding gets no gradient; a mean's count per row (n real tokens, or T) named."""
    key_ok = case.inputs["key_ok"]
    T, n = key_ok.shape[1], key_ok.sum(axis=1)  # n: real tokens per row, (B,)
    counts = ()
    if case.inputs["mode"] == "mean":
        counts = (("n / T (n real tokens of the row): the mean divides by T, not by the "
                   "number of real tokens", n / T),
                  ("n, the number of real tokens of the row: the mean's 1/n is missing", n))
    padding = Region("the padding positions (they are not part of the text: zero)",
                     ~key_ok[:, :, None])
    return {"y": Structure(rows=counts),
            "dx": Structure(regions=(padding,), rows=tuple(
                (name, np.repeat(count, T)) for name, count in counts))}


POOLING = Exercise(
    name="pooling", title="pooling one vector per sequence (mean, last, first), forward and "
                          "backward",
    roles=("forward", "backward"), functions=("pool_forward", "pool_backward"),
    outputs=("y", "dx"), make_cases=pooling_cases, reference=pooling_reference,
    wrt=(("x", "dx"),), page="docs/derivations/linear.md",
    structure=pooling_structure,
    mistakes=Mistakes(pooling_simulate, {
        "mean_over_T": "the mean runs over the REAL tokens of each row (key_ok), not over all "
                       "T positions: padding must not count, and gets no gradient.",
        "last_is_end": "'last' is the last REAL token of each row, not position T - 1 "
                       "(padding follows the text).",
        "mean_is_sum": "'mean' divides by the number of real tokens of the row: yours sums.",
    }),
    hints=())


# ----------------------------------------------------------------- sinusoidal positions
def sinusoidal_cases(rng):
    return [Case(f"{label}, max_len {L}, d_model {C}", {"max_len": L, "d_model": C}, None)
            for label, L, C in (("a small table", 6, 8), ("odd d_model", 5, 7),
                                ("one position", 1, 4), ("long", 50, 16))]


def sinusoidal_reference(case):
    return {"table": sinusoidal_table(case.inputs["max_len"], case.inputs["d_model"],
                                      dtype=np.float64)}


def sinusoidal_outputs(exercise, functions, case, got):
    got["table"] = call(functions["table"], "sinusoidal_table", case.inputs["max_len"],
                        case.inputs["d_model"])


def sinusoidal_simulate(case, halves=False, exponent_i=False, swapped=False):
    L, C = case.inputs["max_len"], case.inputs["d_model"]
    pos = np.arange(L)[:, None]
    j = np.arange((C + 1) // 2)[None, :]  # frequency index
    angle = pos / 10000.0 ** ((j if exponent_i else 2 * j) / C)
    first, second = (np.cos, np.sin) if swapped else (np.sin, np.cos)
    table = np.zeros((L, C))
    if halves:
        table[:, : (C + 1) // 2] = first(angle)
        table[:, (C + 1) // 2:] = second(angle[:, : C // 2])
    else:
        table[:, 0::2] = first(angle)
        table[:, 1::2] = second(angle[:, : C // 2])
    return {"table": table}


SINUSOIDAL = Exercise(
    name="sinusoidal", title="the fixed sinusoidal position table",
    roles=("table",), functions=("sinusoidal_table",), outputs=("table",),
    make_cases=sinusoidal_cases, reference=sinusoidal_reference,
    learner_outputs=sinusoidal_outputs, page="docs/derivations/embedding.md",
    mistakes=Mistakes(sinusoidal_simulate, {
        "halves": "sin and cos alternate feature by feature (sin on the even features 0, 2, "
                  "4, ..., cos on the odd ones), not in two halves.",
        "exponent_i": "the exponent is 2i/C for the feature pair i (features 2i and 2i+1): "
                      "pos / 10000^(2i/C).",
        "swapped": "sin goes on the even features and cos on the odd ones.",
    }),
    hints=())
