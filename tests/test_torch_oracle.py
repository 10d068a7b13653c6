"""PyTorch as an independent oracle for the whole model, forward and backward.

npformer.devtools.torch_reference rebuilds the transformer from torch modules and lets
autograd differentiate it. With identical weights, npformer's logits, loss and
EVERY parameter gradient (hand-written backwards replayed by the tape) must
match it, for several architecture variants, on padded batches of unequal
source/target lengths with label smoothing. Dropout is off: dropout masks come
from different random generators and cannot be matched across frameworks
(npformer's dropout has its own finite-difference check in npformer.tools.gradcheck).

The float64 finite-difference checks (npformer.tools.gradcheck) never depend on
this file; this is a second, independent opinion.

How tensors are compared: max|npformer - torch| <= RTOL * max|torch| (the
tolerance is relative to the tensor's largest entry, so entries that are small
through cancellation are judged on the tensor's scale, not their own).
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from helpers import assert_close  # noqa: E402

from npformer.nn.config import ModelConfig  # noqa: E402
from npformer.models.transformer import Transformer  # noqa: E402
from npformer.models import build_model  # noqa: E402
from npformer.nn.params import embedding_keys  # noqa: E402
from npformer.nn.tape import Tape  # noqa: E402
from npformer.devtools.torch_reference import (  # noqa: E402
    from_npformer, grads_to_npformer, npformer_keys, param_groups, params_to_npformer)

# float64: the two sides do the same arithmetic in a different order (other
# matmul blocking, summation order, fused attention kernel), so they differ by
# rounding only: observed <1e-15 relative on logits/loss, <= 1.2e-14 on gradients.
RTOL_F64 = 1e-10  # logits and loss
GRAD_RTOL_F64 = 1e-9  # every parameter gradient
# float32: unit roundoff is 6e-8; a gradient is a sum over B*T positions of
# products through ~30 ops, computed in a different order on each side, so
# differences of a few hundred ulps of the tensor's largest entry are expected
# (observed ~1e-6 on gradients, ~5e-7 on logits). 1e-4 still catches any real
# bug: a wrong term shifts a gradient by O(1) relative.
RTOL_F32 = 1e-5  # logits and loss
GRAD_RTOL_F32 = 1e-4  # every parameter gradient
# The key bias b_k adds q.b_k to all scores of a query row, and softmax ignores
# a constant shift, so d loss / d b_k = 0 exactly in theory. Both sides return
# rounding noise there; it must be below this fraction of the largest gradient
# entry of the whole model.
ZERO_GRAD_RTOL = {"float64": 1e-12, "float32": 1e-5}
TOLERANCES = {"float64": (RTOL_F64, GRAD_RTOL_F64), "float32": (RTOL_F32, GRAD_RTOL_F32)}

LABEL_SMOOTHING = 0.1
VOCAB = 19  # source vocab (and target vocab when embeddings are shared)
TGT_VOCAB = 17  # target vocab otherwise
PAD = 0

# Three sequences, source length S=7, target length T=5, padded to different
# lengths; every sequence keeps at least one real token (no fully masked row).
SRC = np.array([[5, 6, 7, 8, 9, 10, 2],
                [9, 10, 2, 0, 0, 0, 0],
                [3, 4, 5, 6, 2, 0, 0]])
TGT_IN = np.array([[1, 3, 4, 5, 6],
                   [1, 11, 12, 0, 0],
                   [1, 7, 0, 0, 0]])
TGT_OUT = np.array([[3, 4, 5, 6, 2],
                    [11, 12, 2, 0, 0],
                    [7, 2, 0, 0, 0]])  # padded targets are ignored by the loss

VARIANTS = {
    "pre-LN, tied, sinusoidal": dict(),
    "post-LN, untied, learned positions, 3+2 layers": dict(
        norm_position="post", tie_output=False, positional="learned", n_encoder_layers=3),
    "shared embeddings, gelu, tied": dict(share_embeddings=True, activation="gelu"),
    "pre-LN, untied, gelu, learned positions": dict(
        tie_output=False, activation="gelu", positional="learned"),
}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One torch thread during this module, restored afterwards.

    These tensors are tiny: torch's thread pool only adds contention (measured
    ~40x slower with 2 threads on a busy 2-core machine).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_config(dtype, **changes):
    fields = dict(src_vocab_size=VOCAB, tgt_vocab_size=TGT_VOCAB, d_model=16, n_heads=4,
                  d_ff=24, n_encoder_layers=2, n_decoder_layers=2, max_len=10,
                  dropout=0.0, pad_id=PAD, dtype=dtype, seed=3)
    if changes.get("share_embeddings"):
        fields["tgt_vocab_size"] = VOCAB
    return ModelConfig(**{**fields, **changes})


def make_model(cfg, seed=0):
    """An npformer model of the config's kind, moved off its init (zero biases and unit gammas hide bugs)."""
    model = build_model(cfg)
    rng = np.random.default_rng(seed)
    for p in model.params.values():
        p += (0.1 * rng.normal(size=p.shape)).astype(p.dtype)
    return model


def npformer_loss_and_grads(model):
    tape = Tape()
    model.zero_grad()
    loss = model.loss(SRC, TGT_IN, TGT_OUT, tape=tape, label_smoothing=LABEL_SMOOTHING)
    tape.backward(model.grads, "loss")
    return loss, model.grads


def torch_loss_and_grads(tm):
    tm.zero_grad(set_to_none=True)
    loss = tm.loss(SRC, TGT_IN, TGT_OUT, label_smoothing=LABEL_SMOOTHING)
    loss.backward()
    return loss.item(), grads_to_npformer(tm)


def diff_report(name, actual, expected):
    """Max/mean abs difference and max difference relative to the tensor's largest entry."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    diff = np.abs(actual - expected)
    scale = float(np.abs(expected).max())
    max_abs, mean_abs = float(diff.max()), float(diff.mean())
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else np.inf)
    message = (f"{name}: max abs diff {max_abs:.3e}, mean abs diff {mean_abs:.3e}, "
               f"max|torch| {scale:.3e}, max diff / max|torch| {rel:.3e}")
    return rel, message


def assert_close_to_scale(name, actual, expected, rtol):
    """max |actual - expected| <= rtol * max |expected| (torch's result is the scale)."""
    assert_close(name, actual, expected, rtol=0, atol=rtol * float(np.abs(expected).max()))


def logical_pieces(key, g):
    """Split a packed gradient into the tensors it packs, named as the unpacked keys.

    W_qkv (C,3C) -> W_q, W_k, W_v; b_kv (2C,) -> b_k, b_v; others -> [(key, g)].
    Each piece is compared against torch on its own scale, as separate tensors were.
    """
    prefix, name = key.rsplit(".", 1)
    for packed in ("qkv", "kv"):
        if name.endswith("_" + packed):
            kind = name[: -len(packed) - 1]  # "W" or "b"
            parts = np.split(g, len(packed), axis=-1)
            return [(f"{prefix}.{kind}_{p}", part) for p, part in zip(packed, parts)]
    return [(key, g)]


def is_zero_in_theory(key):
    return key.endswith(".b_k")


# every variant in float64, plus one float32 run of the default architecture
CASES = [(v, "float64") for v in VARIANTS] + [("pre-LN, tied, sinusoidal", "float32")]


@pytest.mark.parametrize("variant,dtype", CASES)
def test_forward_and_every_gradient_match_torch(variant, dtype):
    cfg = make_config(dtype, **VARIANTS[variant])
    rtol, _ = TOLERANCES[dtype]
    model = make_model(cfg)
    tm = from_npformer(model)

    logits = model.forward(SRC, TGT_IN)
    with torch.no_grad():
        t_logits = tm(SRC, TGT_IN).numpy()
    assert logits.dtype == t_logits.dtype == np.dtype(dtype)
    assert_close_to_scale("logits", logits, t_logits, rtol)

    loss, grads = npformer_loss_and_grads(model)
    t_loss, t_grads = torch_loss_and_grads(tm)
    assert_close_to_scale("loss", loss, t_loss, rtol)

    assert_every_gradient_matches(f"{variant}, {dtype}", grads, t_grads, dtype)


def assert_every_gradient_matches(label, grads, t_grads, dtype):
    """Every (unpacked) parameter gradient within the dtype's bound of torch's."""
    grad_rtol = TOLERANCES[dtype][1]
    assert set(grads) == set(t_grads)
    largest = max(float(np.abs(g).max()) for g in t_grads.values())
    zero_bound = ZERO_GRAD_RTOL[dtype] * largest
    failures = []
    for packed_key in grads:
        pieces = zip(logical_pieces(packed_key, grads[packed_key]),
                     logical_pieces(packed_key, t_grads[packed_key]))
        for (key, g_npf), (_, g_torch) in pieces:
            if is_zero_in_theory(key):
                for side, g in (("npformer", g_npf), ("torch", g_torch)):
                    if np.abs(g).max() > zero_bound:
                        failures.append(f"{key}: {side} gradient max {np.abs(g).max():.3e}, "
                                        f"should be 0 up to {zero_bound:.3e}")
                continue
            rel, message = diff_report(key, g_npf, g_torch)
            if not rel <= grad_rtol:
                failures.append(f"{message} > rtol {grad_rtol:g}")
    assert not failures, f"[{label}] gradients differ:\n" + "\n".join(failures)


# --- the decoder-only language model and the classifiers -------------------------------
DECODER_ONLY = dict(kind="decoder-only", n_encoder_layers=0, src_vocab_size=TGT_VOCAB)
ENCODER_ONLY = dict(kind="encoder-only", n_decoder_layers=0, tgt_vocab_size=VOCAB)
LM_VARIANTS = {
    "LM, pre-LN, tied, sinusoidal": dict(DECODER_ONLY),
    "LM, post-LN, untied, learned positions, 3 layers": dict(
        DECODER_ONLY, norm_position="post", tie_output=False, positional="learned",
        n_decoder_layers=3),
    "LM, pre-LN, untied, gelu, learned positions": dict(
        DECODER_ONLY, tie_output=False, activation="gelu", positional="learned"),
}
N_CLASSES = 3
CLASSIFIER_VARIANTS = {
    "classifier, decoder-only body, last": dict(
        DECODER_ONLY, n_classes=N_CLASSES, pooling="last"),
    "classifier, decoder-only body, before_eos": dict(
        DECODER_ONLY, n_classes=N_CLASSES, pooling="before_eos"),
    "classifier, decoder-only body, mean, post-LN, learned positions": dict(
        DECODER_ONLY, n_classes=N_CLASSES, pooling="mean", norm_position="post",
        positional="learned"),
    "classifier, encoder-only body, mean": dict(
        ENCODER_ONLY, n_classes=N_CLASSES, pooling="mean", src_vocab_size=VOCAB),
    "classifier, encoder-only body, first, gelu": dict(
        ENCODER_ONLY, n_classes=N_CLASSES, pooling="first", activation="gelu",
        src_vocab_size=VOCAB),
    "classifier, encoder-only body, last, post-LN": dict(
        ENCODER_ONLY, n_classes=N_CLASSES, pooling="last", norm_position="post",
        src_vocab_size=VOCAB),
}
# classifier inputs: [BOS] text [EOS], padded at the end; the labels use every class
IDS = np.array([[1, 5, 6, 7, 8, 9, 2],
                [1, 9, 10, 2, 0, 0, 0],
                [1, 3, 4, 5, 6, 2, 0]])
LABELS = np.array([2, 0, 1])
NEW_KIND_CASES = ([(v, "float64") for v in {**LM_VARIANTS, **CLASSIFIER_VARIANTS}]
                  + [("LM, pre-LN, tied, sinusoidal", "float32"),
                     ("classifier, decoder-only body, last", "float32"),
                     ("classifier, encoder-only body, mean", "float32")])


@pytest.mark.parametrize("variant,dtype", NEW_KIND_CASES)
def test_language_model_and_classifier_match_torch(variant, dtype):
    """Logits, loss and every parameter gradient of the two new kinds, as for the translator.

    The LM batch has padded rows (ignored targets, masked keys); the classifier
    batch too (the pooling must skip the padding, "last" finds each row's end).
    """
    changes = {**LM_VARIANTS, **CLASSIFIER_VARIANTS}[variant]
    cfg = make_config(dtype, **changes)
    rtol, _ = TOLERANCES[dtype]
    model = make_model(cfg)
    tm = from_npformer(model)
    assert type(tm).__name__ == "Torch" + type(model).__name__
    inputs = (TGT_IN, TGT_OUT) if cfg.n_classes == 0 else (IDS, LABELS)

    logits = model.forward(inputs[0])
    with torch.no_grad():
        t_logits = tm(inputs[0]).numpy()
    assert logits.dtype == t_logits.dtype == np.dtype(dtype)
    assert logits.shape == ((3, 5, TGT_VOCAB) if cfg.n_classes == 0 else (3, N_CLASSES))
    assert_close_to_scale("logits", logits, t_logits, rtol)

    tape = Tape()
    model.zero_grad()
    loss = model.loss(*inputs, tape=tape, label_smoothing=LABEL_SMOOTHING)
    tape.backward(model.grads, "loss")
    tm.zero_grad(set_to_none=True)
    t_loss = tm.loss(*inputs, label_smoothing=LABEL_SMOOTHING)
    t_loss.backward()
    assert_close_to_scale("loss", loss, t_loss.item(), rtol)
    assert_every_gradient_matches(f"{variant}, {dtype}", model.grads, grads_to_npformer(tm),
                                  dtype)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_padding_row_gets_no_lookup_gradient(variant):
    """Whole model: the padding row learns nothing from the lookup, in either framework.

    Untied: the padding row's gradient is exactly zero. Tied: the output
    projection still uses that row (the logit of the padding id), so its
    gradient must be the projection's part alone, sum_(b,t) dlogits[b,t,pad] h[b,t].
    Note: here the masks already make the lookup gradient at padding positions
    exactly zero (padded keys are masked, padded targets ignored), so this test
    checks the end result; the explicit zeroing (npformer's pad_id in
    embedding_backward, torch's padding_idx) is checked by the next test.
    """
    cfg = make_config("float64", **VARIANTS[variant])
    model = make_model(cfg)
    tm = from_npformer(model)
    _, grads = npformer_loss_and_grads(model)

    # torch, with the output projection's share of the padding row computed by hand
    h = tm.decode(torch.from_numpy(TGT_IN), tm.encode(torch.from_numpy(SRC)),
                  torch.from_numpy(SRC))  # (B,T,C)
    logits = tm.project(h)  # (B,T,V)
    logits.retain_grad()
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1),
                                             torch.from_numpy(TGT_OUT).flatten(),
                                             ignore_index=PAD, label_smoothing=LABEL_SMOOTHING)
    loss.backward()
    t_grads = grads_to_npformer(tm)
    from_output = torch.einsum("btc,bt->c", h, logits.grad[..., PAD]).detach().numpy()  # (C,)

    src_key, tgt_key = embedding_keys(cfg)
    for key in dict.fromkeys((src_key, tgt_key)):  # one key when shared
        tied_here = cfg.tie_output and key == tgt_key
        expected = from_output if tied_here else np.zeros(cfg.d_model)
        for side, g in (("npformer", grads[key]), ("torch", t_grads[key])):
            if tied_here:
                assert_close_to_scale(f"{side} {key}[pad] (tied)", g[PAD], expected,
                                      GRAD_RTOL_F64)
            else:
                assert np.all(g[PAD] == 0), f"{side} {key}[pad] = {g[PAD]}, expected exact 0"
        assert np.abs(grads[key][1:]).max() > 0  # the other rows do learn


def test_embedding_layer_padding_row_matches_torch_padding_idx():
    """Layer level: npformer's embedding backward vs F.embedding(padding_idx=pad).

    The random upstream gradient is NONZERO at padding positions, so the padding
    row is zero only because each side drops it on purpose.
    """
    from npformer.nn.layers import embedding_backward, embedding_forward

    rng = np.random.default_rng(1)
    ids = np.array([[3, PAD, 5, 3], [PAD, PAD, 7, 1]])  # token 3 twice, padding three times
    W = rng.normal(size=(9, 6))
    dy = rng.normal(size=(2, 4, 6))
    scale = np.sqrt(6)
    y, cache = embedding_forward(ids, W, scale, PAD)
    _, dW = embedding_backward(dy, cache)

    W_t = torch.tensor(W, requires_grad=True)
    y_t = torch.nn.functional.embedding(torch.from_numpy(ids), W_t, padding_idx=PAD) * scale
    y_t.backward(torch.from_numpy(dy))
    assert_close_to_scale("embedding y", y, y_t.detach().numpy(), RTOL_F64)
    assert_close_to_scale("embedding dW", dW, W_t.grad.numpy(), GRAD_RTOL_F64)
    assert np.all(dW[PAD] == 0) and np.all(W_t.grad.numpy()[PAD] == 0)
    assert np.abs(dW[3]).max() > 0


def test_param_groups_decay_the_same_tensors_as_npformer_adamw():
    """torch_reference.param_groups decays exactly the tensors npformer's AdamW decays.

    (param_groups is for torch.optim.AdamW, e.g. in the benchmarks.) The AdamW update
    rule itself is checked against torch in tests/test_optim.py.
    """
    optim = pytest.importorskip("npformer.training.optim")
    for variant, changes in VARIANTS.items():
        cfg = make_config("float32", **changes)
        model = Transformer(cfg)
        tm = from_npformer(model)
        decay, no_decay = param_groups(tm, weight_decay=0.01)
        assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
        key_of = {id(p): k for k, (p, _) in npformer_keys(tm).items()}
        decayed = sorted(key_of[id(p)] for p in decay["params"])
        assert decayed == sorted(optim.AdamW(model.params).decayed_keys()), variant
        n_torch = sum(p.numel() for g in (decay, no_decay) for p in g["params"])
        assert n_torch == model.n_params, f"{variant}: every parameter in exactly one group"
        assert set(params_to_npformer(tm)) == set(model.params)
