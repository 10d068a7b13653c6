"""Gradient checks: every hand-written backward against central differences.

All checks run in float64 on tiny shapes with a RANDOM upstream gradient:
for a layer y = f(x, ...) we differentiate the scalar L = sum(y * dy), so a
backward that mixes up elements cannot pass by symmetry (an all-ones dy could).

  numerical dL/dx_i = (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)
  relative error    = ||analytic - numerical|| / (||analytic|| + ||numerical||)

`layer_checks()` and `model_checks()` return one Row per check; `npformer
gradcheck` prints them as a table and exits non-zero if any fails. The model checks
cover the three kinds: the encoder-decoder translator, the decoder-only language
model, and classifiers (decoder-only or encoder-only body, pooled, with a head).
tests/test_gradcheck.py runs the same checks. Derivations of each backward: docs/derivations/.
"""
import math
from typing import NamedTuple

import numpy as np

from ..nn import layers as L
from ..nn.config import ModelConfig
from ..nn.masks import additive, causal_mask, combine, padding_mask
from ..models.classifier import Classifier
from ..models.language_model import LanguageModel
from ..models.transformer import Transformer
from ..nn.layers.recurrent import rnn_backward, rnn_forward
from ..nn.tape import Tape

EPS = 1e-6  # finite-difference step in float64
REL_TOL = 1e-7  # bound on the relative error of a float64 check
ABS_TOL = 1e-8  # ...or both gradients below this everywhere: gradients that are zero in
# theory (e.g. the key bias, the K part of b_qkv: softmax ignores a constant added to
# every score of a row), where the relative error compares rounding noise (~1e-10) with
# rounding noise
DIRECTIONS = 3  # random directions per parameter tensor in the whole-model check
ENTRIES = 4  # single entries per parameter tensor in the whole-model check


class Row(NamedTuple):
    name: str  # e.g. "layernorm: dgamma"
    max_abs_err: float
    rel_err: float
    passed: bool


def rel_error(analytic, numeric):
    """Norm-wise relative error; 0 when both are exactly zero."""
    num = np.linalg.norm(np.ravel(analytic) - np.ravel(numeric))
    den = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    return float(num / den) if den > 0 else 0.0


def make_row(name, analytic, numeric, tol=REL_TOL, abs_tol=ABS_TOL):
    """Compare; passes when the relative error <= tol, or when both are zero up to abs_tol."""
    analytic, numeric = np.asarray(analytic, float), np.asarray(numeric, float)
    if analytic.shape != numeric.shape:
        raise ValueError(f"{name}: analytic shape {analytic.shape} != numeric {numeric.shape}")
    max_abs = float(np.max(np.abs(analytic - numeric))) if analytic.size else 0.0
    rel = rel_error(analytic, numeric)
    both_zero = analytic.size == 0 or max(np.abs(analytic).max(), np.abs(numeric).max()) <= abs_tol
    passed = np.isfinite(rel) and np.isfinite(max_abs) and (rel <= tol or both_zero)
    return Row(name, max_abs, rel, bool(passed))


def numerical_gradient(f, x, eps=EPS, indices=None):
    """Central differences of the scalar f() with respect to entries of x.

    x is changed in place and restored. All entries by default, else only the flat
    `indices` (returns a 1-D array).
    """
    flat = x.reshape(-1)  # a view: writing to it perturbs x
    wanted = range(flat.size) if indices is None else indices
    grad = np.zeros(len(wanted), dtype=float)
    for n, i in enumerate(wanted):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        grad[n] = (plus - minus) / (2 * eps)
    return grad.reshape(x.shape) if indices is None else grad


def check_layer(name, forward, backward, args, grad_names, seed=0, kwargs=None):
    """Check a forward/backward pair: `backward(dy, cache)[i]` against finite differences.

    args: the forward's positional arguments; grad_names: {index in args: label}
    for the array arguments whose gradient the backward returns at that index.
    """
    kwargs = kwargs or {}
    rng = np.random.default_rng(seed)
    y, cache = forward(*args, **kwargs)
    dy = rng.normal(size=np.shape(y))

    def scalar():
        return float(np.sum(forward(*args, **kwargs)[0] * dy))

    grads = backward(dy, cache)
    return [make_row(f"{name}: {label}", grads[i], numerical_gradient(scalar, args[i]))
            for i, label in grad_names.items()]


def _attention_checks(r, B, T, S, C, H):
    """Rows for the attention core, self- (padding, causal) and cross-attention."""
    rows = []
    D = C // H
    src = np.array([[3, 4, 5, 0], [6, 0, 0, 0]])  # padded keys
    cross = additive(padding_mask(src, 0), np.float64)  # (B,1,S)
    rows += check_layer("attention core", L.attention_forward, L.attention_backward,
                        [r(B, H, T, D), r(B, H, S, D), r(B, H, S, D), cross],
                        {0: "dq", 1: "dk", 2: "dv"})
    self_weights = [r(C, 3 * C), r(3 * C), r(C, C), r(C)]  # W_qkv, b_qkv, W_o, b_o
    self_names = {1: "dW_qkv", 2: "db_qkv", 3: "dW_o", 4: "db_o"}
    pad = additive(padding_mask(src[:, :T], 0), np.float64)  # (B,1,T)
    rows += check_layer("self-attention (padding)", L.self_attention_forward,
                        L.self_attention_backward, [r(B, T, C), *self_weights, pad, H],
                        {0: "dx", **self_names})
    tgt = np.array([[3, 4, 5], [6, 7, 0]])
    causal = additive(combine(causal_mask(T), padding_mask(tgt, 0)), np.float64)  # (B,T,T)
    rows += check_layer("causal self-attention", L.self_attention_forward,
                        L.self_attention_backward, [r(B, T, C), *self_weights, causal, H],
                        {0: "dx", **self_names})
    cross_weights = [r(C, C), r(C), r(C, 2 * C), r(2 * C), r(C, C), r(C)]  # W_q .. b_o
    rows += check_layer("cross-attention", L.cross_attention_forward, L.cross_attention_backward,
                        [r(B, T, C), r(B, S, C), *cross_weights, cross, H],
                        {0: "dx", 1: "dmemory", 2: "dW_q", 3: "db_q", 4: "dW_kv", 5: "db_kv",
                         6: "dW_o", 7: "db_o"})
    return rows


def layer_checks(seed=0):
    """Rows for every layer's backward (tiny float64 shapes)."""
    rng = np.random.default_rng(seed)
    B, T, S, C, H, F, V = 2, 3, 4, 8, 2, 12, 7

    def r(*shape):
        return rng.normal(size=shape)

    rows = []
    ids = np.array([[1, 2, 2], [0, 5, 1]])  # token 2 used twice, pad id 0 once
    # pad_id=-1: no padding row here; that the padding row gets no gradient is
    # a separate test (tests/test_layers.py)
    rows += check_layer("embedding", L.embedding_forward, L.embedding_backward,
                        [ids, r(V, C), math.sqrt(C), -1], {1: "dW"})
    rows += check_layer("positional (learned)", L.positional_forward, L.positional_backward,
                        [r(B, T, C), r(6, C)], {0: "dx", 1: "dP"})
    rows += check_layer("positional (fixed)", L.positional_forward, L.fixed_positional_backward,
                        [r(B, T, C), r(6, C)], {0: "dx"})
    rows += check_layer("positional (offset 2)", L.positional_forward, L.positional_backward,
                        [r(B, T, C), r(6, C), 2], {0: "dx", 1: "dP"})
    rows += check_layer("linear", L.linear_forward, L.linear_backward,
                        [r(B, T, C), r(C, F), r(F)], {0: "dx", 1: "dW", 2: "db"})
    # the recurrent layer (the RNN baseline): T = 3 steps of backpropagation through time;
    # weights scaled by 0.3 so that tanh is not saturated (gradients of a useful size)
    rows += check_layer("recurrent (Elman RNN, BPTT)", rnn_forward, rnn_backward,
                        [r(B, T, C), r(B, C), 0.3 * r(C, C), 0.3 * r(C, C), r(C)],
                        {0: "dx", 1: "dh0", 2: "dW_x", 3: "dW_h", 4: "db"})
    rows += check_layer("tied output", L.tied_linear_forward, L.tied_linear_backward,
                        [r(B, T, C), r(V, C), r(V)], {0: "dx", 1: "dE", 2: "db"})
    rows += check_layer("layernorm", L.layernorm_forward, L.layernorm_backward,
                        [r(B, T, C), 1 + 0.1 * r(C), r(C), 1e-5],
                        {0: "dx", 1: "dgamma", 2: "dbeta"})
    rate = 0.3
    rows += check_layer("dropout", lambda x: L.dropout_forward(x, rate, np.random.default_rng(7)),
                        L.dropout_backward, [r(B, T, C)], {0: "dx"})
    rows += check_layer("residual add", L.add_forward, L.add_backward,
                        [r(B, T, C), r(B, T, C)], {0: "da", 1: "db"})
    for act in ("relu", "gelu"):
        rows += check_layer(f"feed-forward ({act})", L.ffn_forward, L.ffn_backward,
                            [r(B, T, C), r(C, F), r(F), r(F, C), r(C)],
                            {0: "dx", 1: "dW_1", 2: "db_1", 3: "dW_2", 4: "db_2"},
                            kwargs={"activation": act})
    rows += _attention_checks(r, B, T, S, C, H)
    ids = np.array([[1, 5, 6, 2], [1, 7, 2, 0]])  # (B,S): row 1 padded, its last real token is 2
    for mode in ("mean", "first", "last", "before_eos"):
        rows += check_layer(f"pooling ({mode}, padding)", L.pool_forward, L.pool_backward,
                            [r(B, S, C), L.pool_weights(ids != 0, mode, np.float64)], {0: "dx"})
    targets = np.array([[1, 2, 0], [4, 4, 6]])  # one padding target (ignored)
    for smoothing in (0.0, 0.1):
        rows += check_layer(f"cross-entropy (smoothing {smoothing})",
                            L.cross_entropy_forward, L.cross_entropy_backward,
                            [r(B, T, V), targets, 0, smoothing], {0: "dlogits"})
    # the fused output projection + loss, in blocks of 4 rows (6 rows: a full and a part block)
    for tied, W in ((True, r(V, C)), (False, r(C, V))):
        rows += check_layer(f"output + loss ({'tied' if tied else 'untied'}, blocks of 4)",
                            L.output_loss_forward, L.output_loss_backward,
                            [r(B, T, C), W, r(V), targets, 0, 0.1, tied, True, 4],
                            {0: "dx", 1: "dE" if tied else "dW", 2: "db"})
    # a classifier's loss: one label per sequence, class 0 is a label like any other
    rows += check_layer("cross-entropy (class labels)", L.cross_entropy_forward,
                        L.cross_entropy_backward, [r(B, 3), np.array([0, 2]), -1, 0.0],
                        {0: "dlogits"})
    return rows


def parameter_rows(label, model, loss, rng):
    """Rows for every parameter tensor of `model` against central differences of `loss`.

    `loss(tape)` runs the model's loss (recording op "loss" on `tape`, or on none
    when tape is None) and returns it; it must be deterministic (fixed dropout rng).
    Per tensor: DIRECTIONS random directional derivatives (covering every entry at
    once) and ENTRIES single entries.
    """
    tape = Tape()
    model.zero_grad()
    loss(tape)
    tape.backward(model.grads, "loss")
    rows = []
    for key, p in model.params.items():
        g = model.grads[key]
        analytic, numeric = [], []
        for _ in range(DIRECTIONS):
            v = rng.normal(size=p.shape)
            p += EPS * v
            plus = loss(None)
            p -= 2 * EPS * v
            minus = loss(None)
            p += EPS * v
            analytic.append(float(np.sum(g * v)))
            numeric.append((plus - minus) / (2 * EPS))
        idx = rng.integers(0, p.size, size=min(ENTRIES, p.size))
        num = numerical_gradient(lambda: loss(None), p, indices=idx)
        # entries of parameters with (near) zero gradient still must match
        rows.append(make_row(f"model [{label}]: {key}",
                             np.concatenate([analytic, g.reshape(-1)[idx]]),
                             np.concatenate([numeric, num])))
    return rows


DECODER_ONLY = dict(kind="decoder-only", n_encoder_layers=0)
ENCODER_ONLY = dict(kind="encoder-only", n_decoder_layers=0)
# {label: (model class, ModelConfig changes from TINY)} of the whole-model checks
MODEL_VARIANTS = {
    "pre-LN, tied, dropout": (Transformer, dict(dropout=0.2)),
    "post-LN, untied, learned pos": (Transformer, dict(norm_position="post", tie_output=False,
                                                       positional="learned")),
    "shared embeddings, gelu": (Transformer, dict(share_embeddings=True, activation="gelu")),
    "LM, pre-LN, tied, dropout": (LanguageModel, dict(**DECODER_ONLY, dropout=0.2)),
    "LM, post-LN, untied, learned pos, gelu": (LanguageModel, dict(
        **DECODER_ONLY, norm_position="post", tie_output=False, positional="learned",
        activation="gelu")),
    "classifier, decoder-only body, last, dropout": (Classifier, dict(
        **DECODER_ONLY, n_classes=3, pooling="last", dropout=0.2)),
    "classifier, decoder-only body, before_eos": (Classifier, dict(
        **DECODER_ONLY, n_classes=3, pooling="before_eos")),
    "classifier, encoder-only body, mean, post-LN": (Classifier, dict(
        **ENCODER_ONLY, n_classes=3, pooling="mean", norm_position="post")),
    "classifier, encoder-only body, first, learned pos": (Classifier, dict(
        **ENCODER_ONLY, n_classes=3, pooling="first", positional="learned")),
}
TINY = dict(src_vocab_size=13, tgt_vocab_size=13, d_model=8, n_heads=2, d_ff=12,
            n_encoder_layers=2, n_decoder_layers=2, max_len=8, dtype="float64")


def tiny_config(label, seed=0):
    """The float64 ModelConfig of the whole-model check `label` (a MODEL_VARIANTS key)."""
    return ModelConfig(**{**TINY, **MODEL_VARIANTS[label][1], "seed": seed})


def batch_loss(model):
    """`loss(**kwargs) -> float` of a fixed padded batch of the model's kind.

    Padded target positions (translator, LM) are ignored by the loss, padded keys
    are masked, and the pooling skips padding: each batch has a padded row.
    """
    if isinstance(model, Transformer):
        src = np.array([[5, 6, 7, 8, 2], [9, 10, 2, 0, 0]])  # padded source
        tgt_in = np.array([[1, 3, 4, 5], [1, 11, 12, 0]])
        tgt_out = np.array([[3, 4, 5, 2], [11, 12, 2, 0]])  # padded target (ignored)
        return lambda **kw: model.loss(src, tgt_in, tgt_out, **kw)
    if isinstance(model, LanguageModel):
        ids_in = np.array([[1, 3, 4, 5, 6], [1, 11, 12, 0, 0]])
        ids_out = np.array([[3, 4, 5, 6, 2], [11, 12, 2, 0, 0]])  # padded targets (ignored)
        return lambda **kw: model.loss(ids_in, ids_out, **kw)
    ids = np.array([[1, 5, 6, 7, 2], [1, 8, 2, 0, 0], [1, 9, 10, 2, 0]])  # padded rows
    labels = np.array([0, 2, 1])
    return lambda **kw: model.loss(ids, labels, **kw)


def model_checks(seed=0):
    """Whole models of every kind (MODEL_VARIANTS): rows for every parameter tensor.

    With dropout (a fixed rng) and label smoothing, on the padded batches of `batch_loss`.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for label, (model_class, _) in MODEL_VARIANTS.items():
        model = model_class(tiny_config(label, seed))
        for p in model.params.values():  # move off the init (zero biases, unit gammas)
            p += 0.1 * rng.normal(size=p.shape)
        loss_of = batch_loss(model)

        def loss(tape):
            return loss_of(tape=tape, train=True, rng=np.random.default_rng(123),
                           label_smoothing=0.1)

        rows += parameter_rows(label, model, loss, rng)
    return rows


def format_table(rows, tol=REL_TOL):
    """The gradient-check table printed by `npformer gradcheck`."""
    width = max(len(r.name) for r in rows)
    lines = [f"{'check':<{width}}  {'max abs err':>11}  {'rel err':>9}  result",
             "-" * (width + 33)]
    for r in rows:
        lines.append(f"{r.name:<{width}}  {r.max_abs_err:11.2e}  {r.rel_err:9.2e}  "
                     f"{'pass' if r.passed else 'FAIL'}")
    failed = sum(not r.passed for r in rows)
    lines.append(f"{len(rows) - failed} passed, {failed} failed "
                 f"(float64 central differences, eps={EPS:g}; pass: rel err <= {tol:g} "
                 f"or both gradients zero up to {ABS_TOL:g})")
    return "\n".join(lines)
