"""The fused output projection + loss (layers/output_loss.py) against the unfused pair.

The unfused ops (tied_linear / linear, then cross_entropy) are the reference:
same loss, same dx, dW, db, for tied and untied outputs, padding, smoothing,
blocks that split the rows unevenly, and a block of padding only. Its float64
finite-difference check is in npformer.tools.gradcheck (tests/test_gradcheck.py).
"""
import numpy as np
import pytest
from helpers import assert_close

from npformer.nn import layers as L

# Relative to each entry and (assert_close's default atol) to the tensor's largest entry:
# the fused op sums the rows' contributions to dW and db in blocks, the unfused one in one
# product, so an entry that cancels to ~0 differs by ~eps * max|dW| (2.98e-08 on another CPU,
# where a purely relative bound failed), and float32 eps * a few terms < 2e-5.
TOL = {np.float32: 2e-5, np.float64: 1e-12}


def unfused(x, W, b, targets, ignore_id, smoothing, tied):
    """Reference: logits (B,T,V) in full, then the loss; returns loss, dx, dW, db."""
    if tied:
        logits, out_cache = L.tied_linear_forward(x, W, b)
        backward = L.tied_linear_backward
    else:
        logits, out_cache = L.linear_forward(x, W, b)
        backward = L.linear_backward
    loss, loss_cache = L.cross_entropy_forward(logits, targets, ignore_id, smoothing)
    (dlogits, _) = L.cross_entropy_backward(1.0, loss_cache)
    dx, dW, db = backward(dlogits, out_cache)
    return float(loss), dx, dW, db


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("rows_per_block", [1, 4, 256])
def test_fused_equals_unfused(dtype, tied, rows_per_block):
    rng = np.random.default_rng(3)
    B, T, C, V = 3, 5, 8, 11
    x = rng.standard_normal((B, T, C)).astype(dtype)
    W = rng.standard_normal((V, C) if tied else (C, V)).astype(dtype)
    b = rng.standard_normal(V).astype(dtype)
    targets = rng.integers(1, V, size=(B, T))
    targets[0, :] = 0  # a whole row of padding: with blocks of 1..4, padding-only blocks
    targets[2, 3:] = 0
    want = unfused(x, W, b, targets, 0, 0.1, tied)
    loss, cache = L.output_loss_forward(x, W, b, targets, 0, 0.1, tied, True, rows_per_block)
    dx, dW, db, d_targets = L.output_loss_backward(np.asarray(1.0), cache)
    tol = TOL[dtype]
    assert loss.dtype == dtype and d_targets is None
    assert_close("loss", float(loss), want[0], tol)
    for name, got, ref in (("dx", dx, want[1]), ("dW", dW, want[2]), ("db", db, want[3])):
        assert got.shape == ref.shape and got.dtype == ref.dtype, name
        assert_close(name, got, ref, tol)
    # an upstream gradient other than 1 scales every gradient
    dx3, dW3, db3, _ = L.output_loss_backward(np.asarray(3.0), cache)
    assert_close("dx, dloss=3", dx3, 3 * want[1], tol)
    assert_close("db, dloss=3", db3, 3 * want[3], tol)
    # without gradients: the same loss, no cache
    loss_only, none = L.output_loss_forward(x, W, b, targets, 0, 0.1, tied, False, rows_per_block)
    assert none is None
    assert_close("loss, grad=False", float(loss_only), want[0], tol)


def test_all_padding_gives_zero_loss_and_gradients():
    rng = np.random.default_rng(0)
    x, E, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4)), np.zeros(5)
    loss, cache = L.output_loss_forward(x, E, b, np.zeros((2, 3), int), 0, 0.1)
    assert float(loss) == 0.0
    assert not cache.dx.any() and not cache.dW.any() and not cache.db.any()


def test_targets_that_do_not_match_x_raise():
    with pytest.raises(ValueError, match="targets shape"):
        L.output_loss_forward(np.zeros((2, 3, 4)), np.zeros((5, 4)), np.zeros(5),
                              np.zeros((2, 2), int))
