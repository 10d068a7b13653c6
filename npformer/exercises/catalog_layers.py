"""The exercises for the first layers: linear, ReLU, GELU, masked softmax, layer norm.

Each exercise is an `Exercise` (npformer/exercises/checker.py). Its cases are
small random float64 problems chosen to expose mistakes: leading axes beyond 2-D,
masks with fully masked rows, odd sizes. The references are npformer's own NumPy
twins (npformer/nn/kernels/*_np.py). Beside the catalogued hints, each exercise names
the parts of its outputs (terms, factors, regions: npformer/exercises/diagnose.py)
so that a mistake nobody catalogued is still found by its structure.

Shapes: B batch, T query length, S key length, C features, N rows.
"""
import math

import numpy as np

from ..nn.kernels import activation_np, layernorm_np, matmul_np, softmax_np
from ..nn.masks import additive
from .checker import Case, Exercise, Hint, matches
from .diagnose import Factor, Mistakes, Region, Structure, Term


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


def linear_structure(case, want):
    n = int(np.prod(case.inputs["x"].shape[:-1]))  # rows N
    per_row = (Factor(1.0 / n, f"it is averaged over the N = {n} rows; a gradient sums "
                               f"every row's contribution"),) if n > 1 else ()
    B = case.inputs["x"].shape[0]
    per_sequence = (Factor(1.0 / B, f"it is averaged over the B = {B} sequences; it must sum "
                                    f"over every row of a batch of sequences: flatten the "
                                    f"leading axes first"),) if case.inputs["x"].ndim > 2 \
        and B not in (1, n) else ()
    return {"db": Structure(factors=per_row + per_sequence),
            "dW": Structure(factors=per_row + per_sequence)}


LINEAR = Exercise(
    name="linear", title="y = x W + b, forward and backward",
    roles=("forward", "backward"), functions=("linear_forward", "linear_backward"),
    outputs=("y", "dx", "dW", "db"), make_cases=linear_cases, reference=linear_reference,
    wrt=(("x", "dx"), ("W", "dW"), ("b", "db")), page="docs/derivations/linear.md",
    structure=linear_structure,
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


def relu_structure(case, want):
    x = case.inputs["x"]
    regions = (Region("the entries where x <= 0 (ReLU's flat side: no gradient passes)", x <= 0),
               Region("the entries where x > 0 (slope 1: dx = dy there)", x > 0))
    return {"y": Structure(regions=regions), "dx": Structure(regions=regions)}


def gelu_terms(case):
    """The three terms of GELU's dx (product rule and chain rule), by name."""
    x, dy = case.inputs["x"], case.dout
    C, A = activation_np.GELU_C, activation_np.GELU_A
    t = np.tanh(C * (x + A * x**3))
    slope = 0.5 * x * (1 - t**2) * C * dy  # d/du of the gate, times du/dx's first part
    return (Term("0.5 (1 + tanh u) dy (the gate)", 0.5 * (1 + t) * dy),
            Term("0.5 x (1 - tanh^2 u) sqrt(2/pi) dy (the gate's slope, from du/dx = "
                 "sqrt(2/pi) (1 + 3 * 0.044715 x^2))", slope),
            Term("0.5 x (1 - tanh^2 u) sqrt(2/pi) 3 * 0.044715 x^2 dy (from d/dx of "
                 "0.044715 x^3 = 3 * 0.044715 x^2)", slope * 3 * A * x**2))


def gelu_constant(case, got, which):
    """The value of one of GELU's constants that explains the learner's y exactly, or None.

    y = 0.5 x (1 + tanh(c (x + a x^3))) solved entry by entry for c (a fixed) or a (c fixed).
    """
    x = case.inputs["x"]
    y = np.asarray(got["y"], dtype=np.float64)
    if y.shape != x.shape:
        return None
    with np.errstate(all="ignore"):
        u = np.arctanh(2.0 * y / x - 1.0)  # = c (x + a x^3)
        if which == "c":
            values = u / (x + activation_np.GELU_A * x**3)
        else:
            values = (u / activation_np.GELU_C - x) / x**3
    values = values[np.isfinite(values) & (np.abs(x) > 0.3)]  # well-conditioned entries
    if values.size < 2 or np.ptp(values) > 1e-6 * max(1.0, np.abs(values).max()):
        return None
    return float(values.mean())


def gelu_constant_wrong(which, right):
    def test(case, got, want):
        value = gelu_constant(case, got, which)
        return value is not None and abs(value - right) > 1e-6 * abs(right)
    return test


RELU = Exercise(
    name="relu", title="y = max(x, 0), forward and backward",
    roles=("forward", "backward"), functions=("relu_forward", "relu_backward"),
    outputs=("y", "dx"), make_cases=activation_cases, reference=relu_reference,
    wrt=(("x", "dx"),), page="docs/derivations/linear.md", structure=relu_structure,
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
    structure=lambda case, want: {"dx": Structure(terms=gelu_terms(case))},
    hints=(
        Hint("use the tanh approximation of GPT-2 and npformer: 0.5 x (1 + tanh(sqrt(2/pi) "
             "(x + 0.044715 x^3))), not the exact x * Phi(x) with erf.",
             lambda c, got, want: matches(got["y"], gelu_erf(c.inputs["x"]))),
        Hint("GELU is x times a gate: by the product rule dx = dy * (0.5 (1 + tanh u) + "
             "0.5 x (1 - tanh^2 u) du/dx); the second term is missing.",
             lambda c, got, want: matches(got["dx"], c.dout * 0.5 * (1 + np.tanh(
                 activation_np.GELU_C * (c.inputs["x"] + activation_np.GELU_A
                                         * c.inputs["x"] ** 3))))),
        Hint("y has the tanh form with another constant in front: u = sqrt(2/pi) (x + "
             "0.044715 x^3), and sqrt(2/pi) = 0.79788... (not 2/pi, not sqrt(pi/2)).",
             gelu_constant_wrong("c", activation_np.GELU_C)),
        Hint("y has the tanh form with another cubic constant: u = sqrt(2/pi) (x + "
             "0.044715 x^3).",
             gelu_constant_wrong("a", activation_np.GELU_A)),
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


def off_by_y_per_row(case, got, want):
    """dx - right = y * (one number per row), not all zero: the subtracted <dy, y> is wrong."""
    y = want["y"]
    d = np.asarray(got["dx"], dtype=np.float64) - want["dx"]
    if d.shape != y.shape or not np.isfinite(d).all():
        return False
    c = (d * y).sum(-1, keepdims=True) / np.maximum((y * y).sum(-1, keepdims=True), 1e-300)
    return np.abs(c).max() > 1e-8 and np.allclose(d, c * y, rtol=0, atol=1e-9 * (
        1 + np.abs(want["dx"]).max()))


def collapsed_rows(case, got):
    """Rows with a key to attend whose weights are not finite, or all zero (exp(inf - inf)).

    What an overflowing exp leaves, whichever way the row is normalised afterwards.
    """
    y = np.asarray(got["y"], dtype=np.float64)
    if y.shape != np.broadcast_shapes(case.inputs["x"].shape, case.inputs["mask"].shape):
        return False
    attended = np.broadcast_to(case.inputs["mask"].any(axis=-1), y.shape[:-1])  # (B,T)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(y).all(axis=-1) | (np.abs(y).sum(axis=-1) == 0)
    return bool((bad & attended).any())


def softmax_structure(case, want):
    """dx = y * dy - y * <dy, y>: the diagonal of the Jacobian and the sum through every y."""
    y, dy = want["y"], case.dout
    inner = (dy * y).sum(axis=-1, keepdims=True)  # (B,T,1)
    return {"dx": Structure(terms=(
        Term("y * dy", y * dy),
        Term("- y * <dy, y>", -y * inner, variants=(
            ("dx keeps only the diagonal of the softmax Jacobian, y_i (1 - y_i) dy_i: the "
             "off-diagonal entries - y_i y_j dy_j add up to - y * <dy, y>, the whole sum "
             "(<dy, y> includes j = i)", -y * y * dy),)),))}


SOFTMAX = Exercise(
    name="softmax", title="masked softmax over the last axis, forward and backward",
    roles=("forward", "backward"), functions=("softmax_forward", "softmax_backward"),
    outputs=("y", "dx"), make_cases=softmax_cases, reference=softmax_reference,
    wrt=(("x", "dx"),), page="docs/derivations/softmax.md", structure=softmax_structure,
    hints=(
        Hint("the softmax backward is missing the `- <dy, y>` term: every output depends on "
             "every input through the sum, so dx = y * (dy - (dy * y).sum(-1, keepdims=True)).",
             lambda c, got, want: matches(got["dx"], want["y"] * c.dout)),
        Hint("dx differs from the right one by y times one number per row: the number "
             "subtracted from dy is wrong. It is the inner product <dy, y> = (dy * y).sum(-1, "
             "keepdims=True), one per row: dx = y * (dy - <dy, y>).",
             off_by_y_per_row),
        Hint("a row whose keys are ALL masked gives 0/0 = NaN: the convention is all-zero "
             "weights (replace a -inf row maximum by 0 and an empty sum by 1).",
             lambda c, got, want: fully_masked_rows(c).any()
             and not np.isfinite(np.asarray(got["y"], float)).all()),
        Hint("exp overflows for large scores: subtract the row maximum before exp "
             "(softmax does not change when a constant is added to a row).",
             lambda c, got, want: np.abs(c.inputs["x"]).max() > 100 and collapsed_rows(c, got)),
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


def layernorm_simulate(case, gamma_dx=False, mean_term=False, var_term=False, dbeta_mean=False):
    """The layer norm gradients with switched mistakes (each flag True = that mistake)."""
    want = layernorm_reference(case)
    x, dy = case.inputs["x"], case.dout
    rstd, xhat, g = layernorm_parts(case)
    if gamma_dx:
        g = dy  # gamma left out of dx
    dx = rstd * g
    if not mean_term:
        dx = dx - rstd * mean_(g)
    if not var_term:
        dx = dx - rstd * xhat * mean_(g * xhat)
    out = {"dx": dx}
    if dbeta_mean:
        out["dbeta"] = want["dbeta"] / (x.size // x.shape[-1])
    return out


# The mistakes of dx (and dbeta) as switches: each alone, and any two together, are named.
LAYERNORM_MISTAKES = Mistakes(layernorm_simulate, {
    "gamma_dx": "dx is missing gamma: y = gamma * xhat + beta, so the gradient reaching xhat "
                "is g = dy * gamma, and dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).",
    "mean_term": "dx is missing the mean term: the mean depends on every x, which gives "
                 "- mean(g) in dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * "
                 "gamma.",
    "var_term": "dx is missing the variance term - xhat * mean(g * xhat): the variance "
                "depends on x too (dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), "
                "g = dy * gamma).",
    "dbeta_mean": "dbeta sums dy over the rows (every row adds beta); yours averages them.",
})


def by_rows(a):
    """Sum over every row: (...,C) -> (C,)"""
    return a.reshape(-1, a.shape[-1]).sum(axis=0)


def layernorm_structure(case, want):
    x = case.inputs["x"]
    rstd, xhat, g = layernorm_parts(case)
    terms = (Term("rstd * g (g = dy * gamma)", rstd * g),
             Term("- rstd * mean(g) (the mean term)", -rstd * mean_(g)),
             Term("- rstd * xhat * mean(g * xhat) (the variance term)",
                  -rstd * xhat * mean_(g * xhat)))
    return {"dx": Structure(terms=terms, features=(("gamma", case.inputs["gamma"]),)),
            "dgamma": Structure(features=(("gamma", case.inputs["gamma"]),), terms=(
                Term("sum over rows of dy * xhat", want["dgamma"], variants=(
                    ("dgamma must multiply dy by the NORMALISED input xhat (y = gamma * xhat "
                     "+ beta), not by x", by_rows(case.dout * x)),
                    ("dgamma must multiply dy by xhat = (x - mean) * rstd: the rstd is "
                     "missing", by_rows(case.dout * (x - mean_(x)))))),)),
            "y": Structure(terms=(Term("gamma * xhat", case.inputs["gamma"] * xhat),
                                  Term("beta", np.broadcast_to(case.inputs["beta"], xhat.shape))))}


LAYERNORM = Exercise(
    name="layernorm", title="layer norm over the last axis (eps = 1e-5), forward and backward",
    roles=("forward", "backward"), functions=("layernorm_forward", "layernorm_backward"),
    outputs=("y", "dx", "dgamma", "dbeta"), make_cases=layernorm_cases,
    reference=layernorm_reference, page="docs/derivations/layernorm.md",
    wrt=(("x", "dx"), ("gamma", "dgamma"), ("beta", "dbeta")),
    mistakes=LAYERNORM_MISTAKES, structure=layernorm_structure,
    hints=(
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
