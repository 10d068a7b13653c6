"""The exercises: cases, references and hints for the layers.

Each exercise is an `Exercise` (npformer/exercises/checker.py). Its cases are
small random float64 problems chosen to expose mistakes: leading axes beyond 2-D,
masks with fully masked rows, repeated token ids, padding, odd sizes. The
references are npformer's own NumPy twins (npformer/kernels/*_np.py) and AdamW
(npformer/optim.py); attention has its reference in solutions.py, checked
against finite differences and PyTorch by tests/test_exercises.py.

Shapes: B batch, T query length, S key length, C features, D head dim, V vocab,
L positions in the table, N rows.
"""
import math

import numpy as np

from ..kernels import activation_np, cross_entropy_np, embedding_np, layernorm_np
from ..kernels import matmul_np, softmax_np
from ..masks import additive
from .checker import Case, Exercise, Hint, matches
from .catalog_attention import ATTENTION, MHA
from .catalog_adamw import ADAMW
from .catalog_block import BLOCK


def randn(rng, *shape):
    return rng.standard_normal(shape)


# ----------------------------------------------------------------- linear
def linear_cases(rng):
    def case(label, lead, c_in, c_out):
        x = randn(rng, *lead, c_in)
        inputs = {"x": x, "W": randn(rng, c_in, c_out), "b": randn(rng, c_out)}
        return Case(f"{label}, x {x.shape}, W {(c_in, c_out)}", inputs, randn(rng, *lead, c_out))
    return [case("rows", (4,), 3, 5), case("batch of sequences", (2, 3), 4, 2),
            case("odd sizes", (1, 1), 7, 1)]


def linear_reference(case):
    x, W, b, dy = case.inputs["x"], case.inputs["W"], case.inputs["b"], case.dout
    x2, dy2 = x.reshape(-1, W.shape[0]), dy.reshape(-1, W.shape[1])  # (N,Cin), (N,Cout)
    y = (matmul_np.matmul(x2, W) + b).reshape(dy.shape)  # (N,Cout) -> (...,Cout)
    dx = matmul_np.matmul(dy2, W.T).reshape(x.shape)  # (N,Cin) -> (...,Cin)
    return {"y": y, "dx": dx, "dW": matmul_np.matmul(x2.T, dy2), "db": dy2.sum(axis=0)}


LINEAR = Exercise(
    name="linear", title="y = x W + b, forward and backward",
    roles=("forward", "backward"), functions=("linear_forward", "linear_backward"),
    outputs=("y", "dx", "dW", "db"), make_cases=linear_cases, reference=linear_reference,
    wrt=(("x", "dx"), ("W", "dW"), ("b", "db")), page="docs/derivations/linear.md",
    hints=(
        Hint("dW has the shape of W (Cin, Cout): dW = x^T dy, not dy^T x.",
             lambda c, got, want: matches(got["dW"], want["dW"].T)),
        Hint("db must sum dy over every row, including all leading axes: "
             "db = dy.reshape(-1, Cout).sum(axis=0) has shape (Cout,).",
             lambda c, got, want: np.shape(got["db"]) != want["db"].shape),
        Hint("dW must sum over every row of a batch of sequences: flatten the leading axes "
             "first, x.reshape(-1, Cin).T @ dy.reshape(-1, Cout).",
             lambda c, got, want: np.shape(got["dW"]) != want["dW"].shape
             and np.shape(got["dW"]) != want["dW"].T.shape),
    ))


# ----------------------------------------------------------------- relu and gelu
def activation_cases(rng):
    def away_from_zero(*shape):  # a kink at 0 would make finite differences meaningless
        x = randn(rng, *shape)
        return np.where(np.abs(x) < 0.05, 0.5, x)
    shapes = [("a vector", (7,)), ("a batch of sequences", (2, 3, 4)), ("one number", (1,))]
    return [Case(f"{label}, x {shape}", {"x": away_from_zero(*shape)}, randn(rng, *shape))
            for label, shape in shapes]


def relu_reference(case):
    x = case.inputs["x"]
    return {"y": activation_np.relu_forward(x), "dx": activation_np.relu_backward(case.dout, x)}


def gelu_reference(case):
    x = case.inputs["x"]
    return {"y": activation_np.gelu_forward(x), "dx": activation_np.gelu_backward(case.dout, x)}


def gelu_erf(x):
    """The exact GELU, x * Phi(x), for the hint that spots it."""
    return np.array([0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x.ravel()]
                    ).reshape(x.shape)


RELU = Exercise(
    name="relu", title="y = max(x, 0), forward and backward",
    roles=("forward", "backward"), functions=("relu_forward", "relu_backward"),
    outputs=("y", "dx"), make_cases=activation_cases, reference=relu_reference,
    wrt=(("x", "dx"),), page="docs/derivations/linear.md",
    hints=(
        Hint("dx is the upstream gradient let through where x > 0: dx = dy * (x > 0), "
             "not the mask (x > 0) alone.",
             lambda c, got, want: matches(got["dx"], c.inputs["x"] > 0)),
        Hint("the gate is the sign of the INPUT x: dx = dy * (x > 0), not dy * (dy > 0).",
             lambda c, got, want: matches(got["dx"], np.maximum(c.dout, 0))),
    ))

GELU = Exercise(
    name="gelu", title="GELU (tanh approximation), forward and backward",
    roles=("forward", "backward"), functions=("gelu_forward", "gelu_backward"),
    outputs=("y", "dx"), make_cases=activation_cases, reference=gelu_reference,
    wrt=(("x", "dx"),), page="docs/derivations/linear.md",
    hints=(
        Hint("use the tanh approximation of GPT-2 and npformer: 0.5 x (1 + tanh(sqrt(2/pi) "
             "(x + 0.044715 x^3))), not the exact x * Phi(x) with erf.",
             lambda c, got, want: matches(got["y"], gelu_erf(c.inputs["x"]))),
        Hint("GELU is x times a gate: by the product rule dx = dy * (0.5 (1 + tanh u) + "
             "0.5 x (1 - tanh^2 u) du/dx); the second term is missing.",
             lambda c, got, want: matches(got["dx"], c.dout * 0.5 * (1 + np.tanh(
                 activation_np.GELU_C * (c.inputs["x"] + activation_np.GELU_A
                                         * c.inputs["x"] ** 3))))),
    ))


# ----------------------------------------------------------------- masked softmax
def softmax_cases(rng):
    def case(label, x, mask):
        return Case(f"{label}, x {x.shape}, mask {mask.shape}", {"x": x, "mask": mask},
                    randn(rng, *x.shape))
    B, T, S = 2, 3, 5
    lengths = np.array([5, 3])  # the second sequence has two padding keys
    padding = (np.arange(S)[None, :] < lengths[:, None])[:, None, :]  # (B,1,S)
    causal = np.tril(np.ones((4, 4), dtype=bool))[None]  # (1,T,T)
    first_key_padded = np.ones((B, 1, 4), dtype=bool)
    first_key_padded[1, 0, 0] = False  # with causal: row 0 of sequence 1 sees no key at all
    return [
        case("no mask", randn(rng, B, T, S), np.ones((1, 1, S), dtype=bool)),
        case("padding mask (per key)", randn(rng, B, T, S), padding),
        case("causal mask", randn(rng, B, 4, 4), causal),
        case("causal and padding: a row with every key masked", randn(rng, B, 4, 4),
             causal & first_key_padded),
        case("large scores (exp would overflow)", 800.0 + 10.0 * randn(rng, 1, 2, 3),
             np.ones((1, 1, 3), dtype=bool)),
        case("a single key", randn(rng, 1, 1, 1), np.ones((1, 1, 1), dtype=bool)),
    ]


def softmax_reference(case):
    x, mask = case.inputs["x"], case.inputs["mask"]
    y = softmax_np.softmax_forward(x[:, None], additive(mask, x.dtype), 1.0)[:, 0]  # (B,T,S)
    dx = softmax_np.softmax_backward(case.dout[:, None], y[:, None], 1.0)[:, 0]
    return {"y": y, "dx": dx}


def fully_masked_rows(case):
    return ~case.inputs["mask"].any(axis=-1)  # (Bm,Tm) rows with no key to attend


SOFTMAX = Exercise(
    name="softmax", title="masked softmax over the last axis, forward and backward",
    roles=("forward", "backward"), functions=("softmax_forward", "softmax_backward"),
    outputs=("y", "dx"), make_cases=softmax_cases, reference=softmax_reference,
    wrt=(("x", "dx"),), page="docs/derivations/softmax.md",
    hints=(
        Hint("the softmax backward is missing the `- <dy, y>` term: every output depends on "
             "every input through the sum, so dx = y * (dy - (dy * y).sum(-1, keepdims=True)).",
             lambda c, got, want: matches(got["dx"], want["y"] * c.dout)),
        Hint("a row whose keys are ALL masked gives 0/0 = NaN: the convention is all-zero "
             "weights (replace a -inf row maximum by 0 and an empty sum by 1).",
             lambda c, got, want: fully_masked_rows(c).any()
             and not np.isfinite(np.asarray(got["y"], float)).all()),
        Hint("exp overflows for large scores: subtract the row maximum before exp "
             "(softmax does not change when a constant is added to a row).",
             lambda c, got, want: np.abs(c.inputs["x"]).max() > 100
             and not np.isfinite(np.asarray(got["y"], float)).all()),
        Hint("masked keys must get exactly zero weight: set their scores to -inf "
             "(np.where(mask, x, -np.inf)) BEFORE the exp, not after normalising.",
             lambda c, got, want: not c.inputs["mask"].all() and np.any(
                 np.abs(np.where(c.inputs["mask"], 0, np.nan_to_num(got["y"]))) > 1e-12)),
        Hint("the softmax runs over the LAST axis (the keys): each row of y sums to 1 "
             "over S, not over T.",
             lambda c, got, want: np.asarray(got["y"]).shape == want["y"].shape
             and np.allclose(np.asarray(got["y"]).sum(axis=-2), 1.0)
             and not np.allclose(np.asarray(got["y"]).sum(axis=-1), 1.0)),
    ))


# ----------------------------------------------------------------- layer norm
def layernorm_cases(rng):
    def case(label, x):
        C = x.shape[-1]
        inputs = {"x": x, "gamma": 1.0 + 0.5 * randn(rng, C), "beta": randn(rng, C)}
        return Case(f"{label}, x {x.shape}", inputs, randn(rng, *x.shape))
    return [case("rows", randn(rng, 4, 6)), case("batch of sequences", randn(rng, 2, 3, 5)),
            case("large mean, small spread", 100.0 + 0.1 * randn(rng, 3, 4)),
            case("odd sizes", randn(rng, 1, 1, 3))]


def layernorm_reference(case):
    x, gamma, beta = case.inputs["x"], case.inputs["gamma"], case.inputs["beta"]
    x2 = x.reshape(-1, x.shape[-1])  # (...,C) -> (N,C)
    y, mean, rstd = layernorm_np.layernorm_forward(x2, gamma, beta, 1e-5)
    dx, dgamma, dbeta = layernorm_np.layernorm_backward(
        case.dout.reshape(x2.shape), x2, mean, rstd, gamma)
    return {"y": y.reshape(x.shape), "dx": dx.reshape(x.shape), "dgamma": dgamma, "dbeta": dbeta}


def layernorm_parts(case):
    """(rstd, xhat, g) of the case: the pieces the wrong answers are made of."""
    x = case.inputs["x"]
    mean = x.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True) + 1e-5)
    return rstd, (x - mean) * rstd, case.dout * case.inputs["gamma"]


def mean_(a):
    return a.mean(axis=-1, keepdims=True)


LAYERNORM = Exercise(
    name="layernorm", title="layer norm over the last axis (eps = 1e-5), forward and backward",
    roles=("forward", "backward"), functions=("layernorm_forward", "layernorm_backward"),
    outputs=("y", "dx", "dgamma", "dbeta"), make_cases=layernorm_cases,
    reference=layernorm_reference, page="docs/derivations/layernorm.md",
    wrt=(("x", "dx"), ("gamma", "dgamma"), ("beta", "dbeta")),
    hints=(
        Hint("dx is missing the mean term: the mean depends on every x, which gives "
             "- mean(g) in dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma.",
             lambda c, got, want: matches(got["dx"], (lambda r, xh, g: r * (
                 g - xh * mean_(g * xh)))(*layernorm_parts(c)))),
        Hint("dx is missing the variance term - xhat * mean(g * xhat): the variance depends "
             "on x too (dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma).",
             lambda c, got, want: matches(got["dx"], (lambda r, xh, g: r * (
                 g - mean_(g)))(*layernorm_parts(c)))),
        Hint("the mean and the variance are functions of x, not constants: dx = g * rstd "
             "ignores both; see the two extra terms in docs/derivations/layernorm.md.",
             lambda c, got, want: matches(got["dx"], (lambda r, xh, g: r * g)(
                 *layernorm_parts(c)))),
        Hint("layer norm uses the population variance (divide by C, np.var's default), "
             "not the sample variance (ddof=1).",
             lambda c, got, want: matches(got["y"], c.inputs["gamma"] * (
                 c.inputs["x"] - mean_(c.inputs["x"])) / np.sqrt(
                 c.inputs["x"].var(axis=-1, ddof=1, keepdims=True) + 1e-5) + c.inputs["beta"])),
        Hint("eps goes inside the square root: (x - mean) / sqrt(var + eps).",
             lambda c, got, want: matches(got["y"], c.inputs["gamma"] * (
                 c.inputs["x"] - mean_(c.inputs["x"])) / (np.sqrt(
                 c.inputs["x"].var(axis=-1, keepdims=True)) + 1e-5) + c.inputs["beta"])),
        Hint("dgamma and dbeta have shape (C,): sum over every leading axis "
             "(reshape to (N, C) first), not only the first.",
             lambda c, got, want: np.shape(got["dgamma"]) != want["dgamma"].shape
             or np.shape(got["dbeta"]) != want["dbeta"].shape),
    ))


# ----------------------------------------------------------------- embedding + positions
PAD = 0  # the padding id in these cases (as in npformer's tokenizers)


def embedding_cases(rng):
    def case(label, ids, V, C, L):
        inputs = {"ids": ids, "W": randn(rng, V, C), "P": randn(rng, L, C), "pad_id": PAD}
        return Case(f"{label}, ids {ids.shape}, W {(V, C)}, P {(L, C)}", inputs,
                    randn(rng, *ids.shape, C))
    return [
        case("distinct tokens, no padding", np.array([[1, 2, 3], [4, 5, 6]]), 7, 4, 5),
        case("a repeated token and padding", np.array([[3, 5, 3, 3], [2, 3, 0, 0]]), 6, 3, 6),
        case("one token", np.array([[2]]), 3, 5, 2),
    ]


def embedding_reference(case):
    ids, W, P = case.inputs["ids"], case.inputs["W"], case.inputs["P"]
    B, T = ids.shape
    C = W.shape[1]
    scale = math.sqrt(C)
    y = scale * W[ids] + P[:T]  # (B,T,C)
    dW = embedding_np.embedding_backward(np.zeros_like(W), ids.reshape(-1),
                                         scale * case.dout.reshape(-1, C))  # (V,C)
    dW[case.inputs["pad_id"]] = 0.0
    dP = np.zeros_like(P)
    dP[:T] = case.dout.sum(axis=0)  # (B,T,C) -> (T,C)
    return {"y": y, "dW": dW, "dP": dP}


def fancy_assignment(case):
    """What `dW[ids] += dy` gives: a repeated id keeps only one of its rows."""
    ids, W = case.inputs["ids"], case.inputs["W"]
    C = W.shape[1]
    dW = np.zeros_like(W)
    dW[ids.reshape(-1)] += math.sqrt(C) * case.dout.reshape(-1, C)
    dW[case.inputs["pad_id"]] = 0.0
    return dW


def not_zeroed(case, want):
    """The true scatter-add, with the padding row's gradient left in."""
    ids, W = case.inputs["ids"], case.inputs["W"]
    dW = want["dW"].copy()
    rows = ids.reshape(-1) == case.inputs["pad_id"]
    dW[case.inputs["pad_id"]] = math.sqrt(W.shape[1]) * case.dout.reshape(-1, W.shape[1])[rows].sum(0)
    return dW


EMBEDDING = Exercise(
    name="embedding", title="token embedding * sqrt(C) + learned positions, forward and backward",
    roles=("forward", "backward"), functions=("embedding_forward", "embedding_backward"),
    outputs=("y", "dW", "dP"), make_cases=embedding_cases, reference=embedding_reference,
    wrt=(("W", "dW"), ("P", "dP")), page="docs/derivations/embedding.md",
    fd_allowed=lambda case, name: (np.arange(case.inputs[name].size) // case.inputs[name].shape[1]
                                   != PAD) if name == "W" else np.ones(case.inputs[name].size, bool),
    hints=(
        Hint("a token used twice must receive BOTH gradients: `dW[ids] += dy` keeps only one "
             "of them (fancy-index assignment does not accumulate); use "
             "np.add.at(dW, ids, dy).",
             lambda c, got, want: matches(got["dW"], fancy_assignment(c))),
        Hint("the padding row's gradient must be zero (padding never learns): "
             "set dW[pad_id] = 0 after the scatter.",
             lambda c, got, want: (c.inputs["ids"] == PAD).any()
             and matches(got["dW"], not_zeroed(c, want))),
        Hint("the forward multiplies by sqrt(C), so the gradient does too: "
             "scatter sqrt(C) * dy into dW.",
             lambda c, got, want: matches(got["dW"], want["dW"] / math.sqrt(
                 c.inputs["W"].shape[1]))),
        Hint("every sentence in the batch used position t: dP[t] = dy[:, t].sum(axis=0) "
             "(a sum over the batch, not a mean or one sentence).",
             lambda c, got, want: np.shape(got["dP"]) == want["dP"].shape
             and c.inputs["ids"].shape[0] > 1
             and (matches(got["dP"], want["dP"] / c.inputs["ids"].shape[0])
                  or matches(np.asarray(got["dP"])[:c.inputs["ids"].shape[1]], c.dout[0]))),
        Hint("dP has the shape of the whole table P (L, C): rows T..L-1 were not used and "
             "get zero.",
             lambda c, got, want: np.shape(got["dP"]) != want["dP"].shape),
    ))


# ----------------------------------------------------------------- cross-entropy
def cross_entropy_cases(rng):
    def case(label, logits, targets, smoothing):
        inputs = {"logits": logits, "targets": targets, "pad_id": PAD, "smoothing": smoothing}
        return Case(f"{label}, logits {logits.shape}, smoothing {smoothing}", inputs,
                    float(rng.uniform(0.5, 2.0)))  # a random dloss: 1.0 would hide a missing factor
    V = 5
    return [
        case("no padding", randn(rng, 2, 3, V), rng.integers(1, V, size=(2, 3)), 0.0),
        case("padding and label smoothing", randn(rng, 2, 4, V),
             np.array([[1, 4, 2, 0], [3, 0, 0, 0]]), 0.1),
        case("large logits (exp would overflow)", 500.0 * randn(rng, 1, 3, V),
             np.array([[2, 1, 0]]), 0.1),
        case("two classes, one position", randn(rng, 1, 1, 2), np.array([[1]]), 0.2),
    ]


def cross_entropy_reference(case):
    logits, targets = case.inputs["logits"], case.inputs["targets"]
    V = logits.shape[-1]
    loss, n_valid, dlogits = cross_entropy_np.cross_entropy_forward_backward(
        logits.reshape(-1, V), targets.reshape(-1), case.inputs["pad_id"], case.inputs["smoothing"])
    return {"loss": loss, "dlogits": case.dout * dlogits.reshape(logits.shape)}


def cross_entropy_without_ignoring(case):
    """The loss averaged over every position, padding included."""
    x = dict(case.inputs, pad_id=-1)
    return cross_entropy_reference(Case(case.label, x, case.dout))


def n_valid(case):
    return max(int((case.inputs["targets"] != case.inputs["pad_id"]).sum()), 1)


def smoothing_over_others(case):
    """The loss with q = 1 - eps on the target and eps / (V - 1) on every other class."""
    logits, targets, eps = case.inputs["logits"], case.inputs["targets"], case.inputs["smoothing"]
    V = logits.shape[-1]
    z = logits - logits.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    q = np.full(logits.shape, eps / (V - 1))
    np.put_along_axis(q, targets[..., None], 1.0 - eps, axis=-1)
    valid = targets != case.inputs["pad_id"]
    return float((-(q * logp).sum(-1) * valid).sum() / n_valid(case))


CROSS_ENTROPY = Exercise(
    name="cross_entropy",
    title="mean cross-entropy with label smoothing, padding ignored, forward and backward",
    roles=("forward", "backward"), functions=("cross_entropy_forward", "cross_entropy_backward"),
    outputs=("loss", "dlogits"), make_cases=cross_entropy_cases, reference=cross_entropy_reference,
    wrt=(("logits", "dlogits"),), page="docs/derivations/cross_entropy.md",
    hints=(
        Hint("padding positions must be ignored: average over the positions whose target is "
             "not pad_id, and give padding rows a zero gradient.",
             lambda c, got, want: (c.inputs["targets"] == PAD).any() and (
                 matches(got["loss"], cross_entropy_without_ignoring(c)["loss"])
                 or matches(got["dlogits"], cross_entropy_without_ignoring(c)["dlogits"])
                 or matches(got["dlogits"], want["dlogits"] * n_valid(c)
                            / c.inputs["targets"].size))),
        Hint("the gradient of a MEAN over n non-padding positions carries a 1/n: "
             "dlogits = dloss * (p - q) / n.",
             lambda c, got, want: n_valid(c) > 1
             and matches(got["dlogits"], want["dlogits"] * n_valid(c))),
        Hint("multiply by the upstream gradient: dlogits = dloss * (softmax - q) / n "
             "(dloss is not always 1).",
             lambda c, got, want: matches(got["dlogits"], want["dlogits"] / c.dout)),
        Hint("the sign is flipped: the loss falls when the target's logit rises, so "
             "dlogits = softmax - q, not q - softmax.",
             lambda c, got, want: matches(got["dlogits"], -want["dlogits"])),
        Hint("label smoothing spreads eps over ALL V classes, the target included: "
             "q = (1 - eps) * onehot + eps / V (torch's convention).",
             lambda c, got, want: c.inputs["smoothing"] > 0
             and matches(got["loss"], smoothing_over_others(c))),
        Hint("exp overflows for large logits: subtract the row maximum first "
             "(log-softmax = z - log(sum(exp(z))) with z = logits - max).",
             lambda c, got, want: np.abs(c.inputs["logits"]).max() > 100
             and not np.isfinite(np.asarray(got["loss"], float)).all()),
    ))


EXERCISES = {ex.name: ex for ex in (LINEAR, RELU, GELU, SOFTMAX, LAYERNORM, EMBEDDING,
                                    ATTENTION, MHA, CROSS_ENTROPY, ADAMW, BLOCK)}
