"""Shared test helpers: comparisons that say what went wrong, and tiny models."""
import numpy as np

from npformer.nn.config import ModelConfig
from npformer.models.transformer import Transformer

# relative tolerances by dtype, for comparing two computations of the same value
RTOL = {np.dtype("float32"): 1e-4, np.dtype("float64"): 1e-10}


def assert_close(name, actual, expected, rtol, atol=None):
    """Elementwise |actual - expected| <= atol + rtol * |expected|, NaN never close.

    The one comparison of the suite; the message names the tensor and gives the
    number of bad entries and the max / mean difference.

    atol defaults to rtol * max|expected|. Why: two computations of the same tensor
    (another summation order, another BLAS kernel, another CPU's SIMD width) differ
    by rounding errors of the order of eps times the magnitude of the terms summed,
    which is the scale of the tensor's large entries, not of each entry. An entry
    that cancels to nearly zero has a large *relative* error that means nothing
    (2.98e-08 absolute on an entry of 1e-7 failed a pure rtol of 2e-5 on another
    CPU). Pass atol explicitly where a different bound is meant (0 for exact).
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    expected64 = expected.astype(np.float64)
    if atol is None:
        atol = rtol * float(np.abs(expected64).max()) if expected64.size else 0.0
    diff = np.abs(actual.astype(np.float64) - expected64)
    bad = ~(diff <= atol + rtol * np.abs(expected64))  # NaN compares False: bad
    assert not bad.any(), (
        f"{name}: {bad.sum()} of {bad.size} entries differ; max abs diff {np.nanmax(diff):.3e}, "
        f"mean abs diff {np.nanmean(diff):.3e}, NaN {np.isnan(actual).sum()} "
        f"(rtol={rtol:g}, atol={atol:g})")


def tiny_model(dtype="float64", **changes):
    cfg = dict(src_vocab_size=17, tgt_vocab_size=19, d_model=16, n_heads=4, d_ff=24,
               n_encoder_layers=2, n_decoder_layers=2, max_len=12, dropout=0.0, dtype=dtype)
    cfg.update(changes)
    return Transformer(ModelConfig(**cfg))


def toy_batch():
    """A padded batch (pad id 0, BOS 1, EOS 2): source rows of unequal length."""
    src = np.array([[5, 6, 7, 8, 2], [9, 10, 2, 0, 0], [4, 2, 0, 0, 0]])
    tgt_in = np.array([[1, 3, 4, 5, 6], [1, 11, 12, 0, 0], [1, 7, 0, 0, 0]])
    tgt_out = np.array([[3, 4, 5, 6, 2], [11, 12, 2, 0, 0], [7, 2, 0, 0, 0]])
    return src, tgt_in, tgt_out
