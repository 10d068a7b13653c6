"""Kernel tests: every jitted kernel against its NumPy twin, and gradient checks.

Part 1 compares `implementations("numba")` with `implementations("numpy")` on
random inputs in float32 and float64. Part 2 checks the backward kernels of BOTH
backends against central finite differences in float64, with a random upstream
gradient dy and loss = (y * dy).sum().
Arrays are small so the file also runs quickly with NUMBA_DISABLE_JIT=1, where
the jitted loops execute as plain Python.
"""
import numpy as np
import pytest
from helpers import assert_close

from npformer.nn import kernels, masks
from npformer.tools.gradcheck import numerical_gradient
from npformer.nn.kernels import matmul_nb

NB = kernels.implementations("numba")
NP = kernels.implementations("numpy")
DTYPES = (np.float32, np.float64)

# Jitted kernel versus NumPy twin: both round differently (summation order,
# float64 accumulators in the jitted code, the CPU's SIMD width), so allow a few
# ulps of the dtype: relative to each entry, plus (assert_close's default atol)
# the same relative bound times the largest entry, for entries that cancel to ~0.
TWIN_TOL = {
    np.dtype(np.float32): dict(rtol=1e-5),
    np.dtype(np.float64): dict(rtol=1e-12),
}
# Gradient checks, float64 only: central differences with step FD_STEP have
# truncation error ~FD_STEP^2 and rounding error ~1e-16/FD_STEP, both ~1e-10.
FD_STEP = 1e-5
GRAD_REL_TOL = 1e-6


# ---------------------------------------------------------------- helpers


def assert_twin(name, actual, expected):
    """The jitted result equals the twin's within TWIN_TOL, and has the same dtype."""
    expected = np.asarray(expected)
    assert np.asarray(actual).dtype == expected.dtype, (
        f"{name}: dtype {np.asarray(actual).dtype} != twin's {expected.dtype}"
    )
    assert_close(name, actual, expected, **TWIN_TOL[expected.dtype])


def assert_grad(name, analytic, numeric):
    """Max-norm relative error max|a - n| / max(|a|, |n|) below GRAD_REL_TOL."""
    diff = np.abs(analytic - numeric)
    scale = max(np.abs(analytic).max(), np.abs(numeric).max(), 1e-12)
    rel = diff.max() / scale
    assert rel < GRAD_REL_TOL, (
        f"{name}: relative error {rel:.3e} >= {GRAD_REL_TOL:g}; max abs diff {diff.max():.3e}, "
        f"mean abs diff {diff.mean():.3e}"
    )


def numerical_grad(f, x):
    """Central-difference gradient of the scalar f() with respect to array x (in place)."""
    return numerical_gradient(f, x, eps=FD_STEP)


def causal_mask(T, dtype):
    """Additive causal mask (npformer.nn.masks). Shapes: -> (1,T,T)"""
    return masks.additive(masks.causal_mask(T), dtype)


def padding_mask(key_lengths, S, dtype):
    """Additive padding mask from per-example key lengths (npformer.nn.masks). Shapes: -> (B,1,S)"""
    ids = (np.arange(S)[None, :] < np.array(key_lengths)[:, None]).astype(int)  # (B,S) 1 = token
    return masks.additive(masks.padding_mask(ids, pad_id=0), dtype)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=kernels.BACKENDS)
def impl(request):
    """The kernel table of one backend: tests using it run for "numba" and "numpy"."""
    return kernels.implementations(request.param)


# ---------------------------------------------------------------- part 1: jitted == twin


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mask_kind", ["padding", "causal"])
def test_softmax_matches_twin(rng, dtype, mask_kind):
    B, H, T = 3, 2, 5
    x = rng.standard_normal((B, H, T, T)).astype(dtype)  # (B,H,T,S), S = T
    if mask_kind == "padding":
        mask = padding_mask([5, 3, 1], T, dtype)  # (B,1,S): Bm = B, Tm = 1
    else:
        mask = causal_mask(T, dtype)  # (1,T,S): Bm = 1, Tm = T
    y = NB["softmax_forward"](x, mask, 0.4)
    assert_twin("softmax y", y, NP["softmax_forward"](x, mask, 0.4))
    dy = rng.standard_normal(x.shape).astype(dtype)
    dx, dx_twin = NB["softmax_backward"](dy, y, 0.4), NP["softmax_backward"](dy, y, 0.4)
    assert_twin("softmax dx", dx, dx_twin)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_fully_masked_row_gives_zeros(rng, dtype):
    x = rng.standard_normal((2, 2, 3, 4)).astype(dtype)  # (B,H,T,S)
    mask = np.zeros((2, 3, 4), dtype)  # (B,T,S): Bm = B, Tm = T
    mask[1, 2, :] = -np.inf  # example 1, query 2 may attend to nothing
    mask[0, :, 3] = -np.inf
    y = NB["softmax_forward"](x, mask, 1.0)
    assert not np.isnan(y).any()
    assert np.all(y[1, :, 2, :] == 0.0), "fully masked row must be all zeros"
    assert np.all(y[0, :, :, 3] == 0.0), "masked keys must get exactly zero weight"
    assert_twin("softmax y, masked row", y, NP["softmax_forward"](x, mask, 1.0))
    dy = rng.standard_normal(x.shape).astype(dtype)
    dx = NB["softmax_backward"](dy, y, 1.0)
    assert np.all(dx[1, :, 2, :] == 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layernorm_matches_twin(rng, dtype):
    N, C = 6, 10
    x = (3.0 + 2.0 * rng.standard_normal((N, C))).astype(dtype)  # non-zero mean on purpose
    gamma = rng.standard_normal(C).astype(dtype)
    beta = rng.standard_normal(C).astype(dtype)
    got = NB["layernorm_forward"](x, gamma, beta, 1e-5)
    want = NP["layernorm_forward"](x, gamma, beta, 1e-5)
    for name, a, b in zip(("y", "mean", "rstd"), got, want):
        assert_twin(f"layernorm {name}", a, b)
    dy = rng.standard_normal((N, C)).astype(dtype)
    _, mean, rstd = want
    got = NB["layernorm_backward"](dy, x, mean, rstd, gamma)
    want = NP["layernorm_backward"](dy, x, mean, rstd, gamma)
    for name, a, b in zip(("dx", "dgamma", "dbeta"), got, want):
        assert_twin(f"layernorm {name}", a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_matches_twin(rng, dtype, smoothing):
    N, V, ignore_id = 7, 11, 0
    logits = (3.0 * rng.standard_normal((N, V))).astype(dtype)  # (N,V)
    targets = rng.integers(1, V, size=N)  # (N,)
    targets[[1, 4]] = ignore_id  # two padding positions
    args = (logits, targets, ignore_id, smoothing)
    loss, n_valid, dlogits = NB["cross_entropy_forward_backward"](*args)
    loss_np, n_valid_np, dlogits_np = NP["cross_entropy_forward_backward"](*args)
    assert isinstance(loss, float) and isinstance(n_valid, int)
    assert n_valid == n_valid_np == N - 2
    assert_close("cross-entropy loss", loss, loss_np, **TWIN_TOL[np.dtype(dtype)])
    assert_twin("cross-entropy dlogits", dlogits, dlogits_np)
    assert np.all(dlogits[[1, 4]] == 0.0), "ignored rows must get zero gradient"


def test_cross_entropy_all_rows_ignored(rng):
    logits = rng.standard_normal((3, 5))
    targets = np.zeros(3, dtype=np.int64)
    loss, n_valid, dlogits = NB["cross_entropy_forward_backward"](logits, targets, 0, 0.1)
    assert (loss, n_valid) == (0.0, 0)
    assert np.all(dlogits == 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["relu", "gelu"])
def test_activations_match_twin(rng, dtype, act):
    forward, backward = f"{act}_forward", f"{act}_backward"
    x = (3.0 * rng.standard_normal((2, 3, 7))).astype(dtype)  # any shape
    dy = rng.standard_normal(x.shape).astype(dtype)
    assert_twin(f"{act} y", NB[forward](x), NP[forward](x))
    assert_twin(f"{act} dx", NB[backward](dy, x), NP[backward](dy, x))
    x_view, dy_view = x.transpose(2, 0, 1), dy.transpose(2, 0, 1)  # non-contiguous
    assert_twin(f"{act} y, strided", NB[forward](x_view), NP[forward](x_view))
    assert_twin(f"{act} dx, strided", NB[backward](dy_view, x_view), NP[backward](dy_view, x_view))


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_relu_matches_twin_and_unfused(rng, dtype):
    h = rng.standard_normal((33, 20)).astype(dtype)
    b = rng.standard_normal(20).astype(dtype)
    da = rng.standard_normal((33, 20)).astype(dtype)
    a_nb, a_np = NB["bias_relu_forward"](h.copy(), b), NP["bias_relu_forward"](h.copy(), b)
    assert_twin("bias+relu a", a_nb, a_np)
    assert_twin("bias+relu a, unfused", a_nb, NP["relu_forward"](h + b))
    (dh_nb, db_nb), (dh_np, db_np) = (NB["bias_relu_backward"](da.copy(), a_nb),
                                      NP["bias_relu_backward"](da.copy(), a_np))
    assert_twin("bias+relu dh", dh_nb, dh_np)
    assert_twin("bias+relu db", db_nb, db_np)
    unfused = NP["relu_backward"](da, h + b)
    assert_twin("bias+relu dh, unfused", dh_nb, unfused)
    assert_twin("bias+relu db, unfused", db_nb, unfused.sum(axis=0))
    with pytest.raises(ValueError):
        NB["bias_relu_forward"](h.T, b[:33] if b.size >= 33 else np.zeros(33, dtype))  # not C-contiguous


def test_gelu_large_inputs_saturate(rng):
    x = np.array([-60.0, -20.0, -1e-3, 0.0, 1e-3, 20.0, 60.0])
    dy = rng.standard_normal(x.shape)
    assert_twin("gelu y, large |x|", NB["gelu_forward"](x), NP["gelu_forward"](x))
    assert_twin("gelu dx, large |x|", NB["gelu_backward"](dy, x), NP["gelu_backward"](dy, x))


# The float32 exp of the jitted kernels (kernels/exp_nb.py): range reduction and a
# degree-7 polynomial, within 2^-23 relative (about 1 ulp) of the true value: measured 8.7e-8.
EXP32_REL_TOL = np.finfo(np.float32).eps


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_matches_twin(rng, dtype):
    x = (20.0 * rng.standard_normal((3, 50))).astype(dtype)
    assert_twin("exp", NB["exp"](x), NP["exp"](x))
    assert_twin("exp, strided", NB["exp"](x[:, ::3]), NP["exp"](x[:, ::3]))


def test_exp32_error_bound_and_edges(impl):
    x = np.linspace(-87.0, 88.0, 2_000_003, dtype=np.float32)  # every binade of the range
    x = np.concatenate([x, np.float32(1e-3) * np.linspace(-1, 1, 1001, dtype=np.float32)])
    y = impl["exp"](x)
    exact = np.exp(x.astype(np.float64))
    rel = np.abs(y - exact) / exact
    assert y.dtype == np.float32
    assert rel.max() <= EXP32_REL_TOL, (
        f"exp32: max relative error {rel.max():.3e} at x={x[rel.argmax()]} > {EXP32_REL_TOL:.3e}")
    edges = np.array([-np.inf, -1e4, -87.5, 0.0, 89.0, np.inf, np.nan], np.float32)
    with np.errstate(over="ignore"):
        y = impl["exp"](edges)
    assert y[0] == 0.0 and y[1] == 0.0 and y[2] == 0.0, "exp far below the range must be 0"
    assert y[3] == 1.0, "exp(0) must be exactly 1"
    assert np.isinf(y[4]) and np.isinf(y[5]), "exp above float32's range must be inf"
    assert np.isnan(y[6]), "exp(NaN) must stay NaN"


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_matches_twin_bit_for_bit(rng, dtype):
    x = rng.standard_normal((6, 7, 9)).astype(dtype)
    for key in (0, 1, 2**40 + 3, 2**63 - 1):
        y = NB["dropout"](x, 0.25, key)
        assert y.dtype == x.dtype
        assert np.array_equal(y, NP["dropout"](x, 0.25, key)), f"dropout masks differ for key {key}"
    assert np.array_equal(NB["dropout"](x.transpose(2, 0, 1), 0.25, 5),
                          NP["dropout"](x.transpose(2, 0, 1), 0.25, 5)), "strided input"


def test_dropout_mask_statistics(impl):
    """Dropout keeps 1 - rate of the elements, and its masks look independent.

    Keep rate within 5 standard deviations; masks of different keys and of
    neighbouring elements are uncorrelated (|correlation| < 5 / sqrt(n)).
    """
    n, rate = 200_000, 0.1
    ones = np.ones(n, np.float32)
    masks = [impl["dropout"](ones, rate, key) != 0 for key in (1, 2, 3, 2**33 + 1)]
    sd = np.sqrt(rate * (1 - rate) / n)
    for m in masks:
        assert abs((1 - m.mean()) - rate) < 5 * sd, f"drop share {1 - m.mean():.4f}, rate {rate}"
    bound = 5 / np.sqrt(n)
    for a, b in [(masks[0], masks[1]), (masks[1], masks[2]), (masks[0], masks[3]),
                 (masks[0][:-1], masks[0][1:])]:  # two keys, and an element with its neighbour
        corr = np.corrcoef(a.astype(float), b.astype(float))[0, 1]
        assert abs(corr) < bound, f"dropout masks correlate: {corr:.4f} (bound {bound:.4f})"
    kept = impl["dropout"](ones, rate, 7)
    assert np.allclose(kept[kept != 0], 1 / (1 - rate)), "kept elements are scaled by 1/(1-rate)"
    assert np.array_equal(impl["dropout"](ones, 0.0, 7), ones), "rate 0 keeps everything"
    with pytest.raises(ValueError):
        impl["dropout"](ones, 1.0, 7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_backward_matches_twin(rng, dtype):
    V, C = 6, 4
    ids = np.array([2, 5, 2, 0, 2, 5])  # (N,), repeated ids must add up
    dy = rng.standard_normal((ids.size, C)).astype(dtype)  # (N,C)
    dW = rng.standard_normal((V, C)).astype(dtype)  # accumulates onto what is there
    expected = NP["embedding_backward"](dW.copy(), ids, dy)
    out = NB["embedding_backward"](dW, ids, dy)
    assert out is dW, "embedding_backward must update dW in place and return it"
    assert_twin("embedding dW", dW, expected)
    dW_big = rng.standard_normal((V, 2 * C)).astype(dtype)
    dW_view = dW_big[:, ::2]  # strided dW: must still be updated in place
    expected = NP["embedding_backward"](dW_view.copy(), ids, dy)
    NB["embedding_backward"](dW_view, ids, dy)
    assert_twin("embedding dW, strided", dW_big[:, ::2], expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M,K,N", [(4, 4, 4), (2, 3, 5), (17, 33, 19)])
@pytest.mark.parametrize("layout", ["a@b", "a.T@b", "a@b.T"])
def test_matmul_matches_twin_and_loops(rng, dtype, M, K, N, layout):
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    if layout == "a.T@b":  # as in x.T @ dy: a transposed view
        a = np.ascontiguousarray(a.T).T
    if layout == "a@b.T":  # as in dy @ W.T: b a transposed view
        b = np.ascontiguousarray(b.T).T
    expected = NP["matmul"](a, b)
    assert_twin(f"matmul {layout} ({M},{K})@({K},{N})", NB["matmul"](a, b), expected)
    loops = matmul_nb.matmul_loops(np.ascontiguousarray(a), np.ascontiguousarray(b))
    assert_twin(f"matmul_loops {layout} ({M},{K})@({K},{N})", loops, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("G,M,K,N", [(5, 4, 4, 4), (3, 2, 3, 5), (4, 9, 16, 7)])
@pytest.mark.parametrize("layout", ["a@b", "aT@b", "a@bT"])
def test_bmm_matches_twin_and_loops(rng, dtype, G, M, K, N, layout):
    a = rng.standard_normal((G, M, K)).astype(dtype)
    b = rng.standard_normal((G, K, N)).astype(dtype)
    if layout == "aT@b":  # as in P.transpose(0,2,1) @ dctx
        a = np.ascontiguousarray(a.transpose(0, 2, 1)).transpose(0, 2, 1)
    if layout == "a@bT":  # as in q @ k.transpose(0,2,1)
        b = np.ascontiguousarray(b.transpose(0, 2, 1)).transpose(0, 2, 1)
    expected = NP["bmm"](a, b)
    assert_twin(f"bmm {layout} G={G} ({M},{K})@({K},{N})", NB["bmm"](a, b), expected)
    loops = matmul_nb.bmm_loops(np.ascontiguousarray(a), np.ascontiguousarray(b))
    assert_twin(f"bmm_loops {layout} G={G} ({M},{K})@({K},{N})", loops, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_loops_match_numpy_on_a_simd_remainder(rng, dtype):
    """N = 37: the vectorised body of the j loop plus its scalar remainder."""
    a = rng.standard_normal((13, 21)).astype(dtype)
    b = rng.standard_normal((21, 37)).astype(dtype)
    assert_twin("matmul_loops", matmul_nb.matmul_loops(a, b), a @ b)
    a3 = rng.standard_normal((3, 9, 17)).astype(dtype)
    b3 = rng.standard_normal((3, 17, 10)).astype(dtype)
    assert_twin("bmm_loops", matmul_nb.bmm_loops(a3, b3), np.matmul(a3, b3))


def test_matmul_mixed_dtypes_follow_numpy(rng):
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal((4, 2))  # float64
    assert_twin("matmul f32 @ f64", NB["matmul"](a, b), NP["matmul"](a, b))


def test_bad_inputs_raise_like_the_twin(impl):
    """The jitted loops do no bounds checks, so the wrappers and kernels check first."""
    x = np.zeros((2, 1, 3, 4))  # (B,H,T,S)
    with pytest.raises(ValueError):
        impl["softmax_forward"](x, np.zeros((3, 1, 4)), 1.0)  # Bm = 3 is neither 1 nor B
    with pytest.raises(IndexError):
        impl["cross_entropy_forward_backward"](np.zeros((2, 5)), np.array([1, 5]), -1, 0.0)
    with pytest.raises(IndexError):
        impl["embedding_backward"](np.zeros((5, 3)), np.array([0, 7]), np.ones((2, 3)))


def test_fastmath_kernels_keep_nan_and_inf(rng):
    """layernorm and softmax_backward use fastmath without 'nnan'/'ninf': check it."""
    x = rng.standard_normal((3, 4))
    x[1, 2] = np.nan
    y = np.full((1, 1, 2, 3), 1.0 / 3.0)  # (B,H,T,S) uniform probabilities
    dy = np.zeros_like(y)
    dy[0, 0, 1, 0] = np.inf
    with np.errstate(invalid="ignore"):  # inf - inf is the point of this test
        y_ln = NB["layernorm_forward"](x, np.ones(4), np.zeros(4), 1e-5)[0]
        dx = NB["softmax_backward"](dy, y, 1.0)
        dx_twin = NP["softmax_backward"](dy, y, 1.0)
    assert np.isnan(y_ln[1]).all() and not np.isnan(y_ln[[0, 2]]).any()
    assert np.array_equal(np.isnan(dx), np.isnan(dx_twin))
    assert np.array_equal(np.isinf(dx), np.isinf(dx_twin))


# ---------------------------------------------------------------- part 2: gradient checks


def test_softmax_gradient(rng, impl):
    x = rng.standard_normal((2, 2, 3, 4))  # (B,H,T,S)
    mask = np.zeros((2, 1, 4))  # (B,1,S) padding mask
    mask[1, 0, 2:] = -np.inf
    scale = 0.7
    dy = rng.standard_normal(x.shape)
    y = impl["softmax_forward"](x, mask, scale)
    dx = impl["softmax_backward"](dy, y, scale)
    dx_num = numerical_grad(lambda: (impl["softmax_forward"](x, mask, scale) * dy).sum(), x)
    assert_grad("softmax dx", dx, dx_num)


def test_layernorm_gradient(rng, impl):
    N, C = 3, 5
    x = 1.0 + rng.standard_normal((N, C))
    gamma = rng.standard_normal(C)
    beta = rng.standard_normal(C)
    dy = rng.standard_normal((N, C))
    _, mean, rstd = impl["layernorm_forward"](x, gamma, beta, 1e-5)
    dx, dgamma, dbeta = impl["layernorm_backward"](dy, x, mean, rstd, gamma)

    def loss():
        return (impl["layernorm_forward"](x, gamma, beta, 1e-5)[0] * dy).sum()

    assert_grad("layernorm dx", dx, numerical_grad(loss, x))
    assert_grad("layernorm dgamma", dgamma, numerical_grad(loss, gamma))
    assert_grad("layernorm dbeta", dbeta, numerical_grad(loss, beta))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_gradient(rng, impl, smoothing):
    N, V, ignore_id = 5, 6, 0
    logits = 2.0 * rng.standard_normal((N, V))
    targets = np.array([3, 0, 1, 5, 2])  # row 1 is padding
    _, _, dlogits = impl["cross_entropy_forward_backward"](logits, targets, ignore_id, smoothing)

    def loss():
        return impl["cross_entropy_forward_backward"](logits, targets, ignore_id, smoothing)[0]

    assert_grad("cross-entropy dlogits", dlogits, numerical_grad(loss, logits))


@pytest.mark.parametrize("act", ["relu", "gelu"])
def test_activation_gradient(rng, impl, act):
    x = rng.standard_normal((3, 4))
    x[np.abs(x) < 0.1] += 0.2  # keep ReLU's kink at 0 out of the finite differences
    dy = rng.standard_normal(x.shape)
    dx = impl[f"{act}_backward"](dy, x)
    dx_num = numerical_grad(lambda: (impl[f"{act}_forward"](x) * dy).sum(), x)
    assert_grad(f"{act} dx", dx, dx_num)

